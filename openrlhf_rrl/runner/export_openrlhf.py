"""The chain task and the runner's warm models as files OpenRLHF and vLLM read as they are.

    python -m openrlhf_rrl.runner.export_openrlhf OUT --seeds 0,1,2 [--prompts 4096] [--eval_size 256]

writes, for the OpenRLHF path's effect grid (the runner's comparison, run through the launcher):

    OUT/seed<k>/model/      the runner's warmed tiny model of seed k, as a Llama (see below) with the
                            chain task's word tokenizer and chat template (--actor.model_name_or_path)
    OUT/prompts.jsonl       training prompts from the task's train split ({"prompt": chat, "label"},
                            --data.prompt_dataset with --data.input_key prompt --data.label_key label
                            --data.apply_chat_template)
    OUT/eval.jsonl          the runner's held-out sets (hard, mid, base_long), same format, each row's set
                            as its "datasource" (--eval.dataset; OpenRLHF logs eval_<set>_pass1)
    OUT/reward_func.py      the chain task's outcome reward (1 for the exact answer, else 0; --reward.remote_url)
    OUT/step_checker.py     its step checker over token ids (--rrl_step_checker; the process-reward baseline's
                            RRL_STEP_CHECKER in scripts/reward_process.py)

The runner's model is a Qwen2, but transformers 5 gives any model of type qwen2 Qwen2's own BPE
tokenizer class, which would re-tokenize the word vocabulary; a Llama keeps the saved tokenizer. A Qwen2
layer is a Llama layer with biases on q, k and v, so the export is a Llama with attention_bias on and a
zero o_proj bias: the same function (export_llama checks the logits), loadable by AutoModelForCausalLM,
OpenRLHF and vLLM. Warm-ups come from the runner's cache (.cache/warmup), trained first where missing.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from openrlhf_rrl.atomic import atomic_write_text
from openrlhf_rrl.tasks import ChainTask

REWARD_FILE = '''"""The chain task's outcome reward as an OpenRLHF reward file (written by openrlhf_rrl.runner.export_openrlhf):
1.0 iff the response is the label's values followed by <eos> (what follows <eos> is ignored), else 0.0."""
import torch


def reward_func(queries, prompts, labels, **kwargs):
    rewards = []
    for query, prompt, label in zip(queries, prompts, labels):
        words = query[len(prompt):].split()
        if "<eos>" in words:
            words = words[: words.index("<eos>") + 1]
        rewards.append(1.0 if words == label.split() + ["<eos>"] else 0.0)
    r = torch.tensor(rewards, dtype=torch.float32)
    return {"rewards": r, "scores": r.clone(), "extra_logs": {}}
'''

STEP_CHECKER_FILE = '''"""The chain task's step checker over token ids (written by openrlhf_rrl.runner.export_openrlhf): how many
leading response tokens are the right values (the full answer with <eos> counts them all)."""
VALUE_IDS = {value_ids!r}
EOS_ID = {eos_id!r}


def step_checker(prompt_ids, response_ids, label):
    target = [VALUE_IDS[int(v)] for v in label.split()] + [EOS_ID]
    n = 0
    for got, want in zip(response_ids, target):
        if int(got) != want:
            break
        n += 1
    return n
'''


def export_llama(qwen2, out_dir: str | Path, tokenizer) -> Path:
    """Save a Qwen2ForCausalLM as the LlamaForCausalLM computing the same function, with `tokenizer`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    q = qwen2.config
    config = LlamaConfig(
        vocab_size=q.vocab_size, hidden_size=q.hidden_size, intermediate_size=q.intermediate_size,
        num_hidden_layers=q.num_hidden_layers, num_attention_heads=q.num_attention_heads,
        num_key_value_heads=q.num_key_value_heads, max_position_embeddings=q.max_position_embeddings,
        rms_norm_eps=q.rms_norm_eps, hidden_act=q.hidden_act, tie_word_embeddings=q.tie_word_embeddings,
        attention_bias=True, rope_parameters=dict(q.rope_parameters), pad_token_id=q.pad_token_id,
        eos_token_id=q.eos_token_id, bos_token_id=q.bos_token_id)
    llama = LlamaForCausalLM(config)
    state = {k: v.detach().clone() for k, v in qwen2.state_dict().items()}
    for i in range(q.num_hidden_layers):  # Qwen2 has no o_proj bias: a zero one is the same function
        state[f"model.layers.{i}.self_attn.o_proj.bias"] = torch.zeros(q.hidden_size)
    missing, unexpected = llama.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise RuntimeError(f"export_llama: weights do not map (missing {missing}, unexpected {unexpected})")
    llama.tie_weights()
    llama.eval()
    ids = torch.arange(min(16, q.vocab_size))[None]
    with torch.no_grad():
        gap = (llama(input_ids=ids).logits - qwen2.eval()(input_ids=ids).logits).abs().max().item()
    if gap > 1e-4:
        raise RuntimeError(f"export_llama: the Llama's logits differ from the Qwen2's by {gap:.2e}")
    llama.generation_config.pad_token_id = q.pad_token_id
    llama.generation_config.eos_token_id = q.eos_token_id
    out_dir = Path(out_dir)
    llama.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _prompt_rows(items, datasource: str | None = None) -> str:
    tag = {"datasource": datasource} if datasource else {}
    return "".join(json.dumps({"prompt": [{"role": "user", "content": it.text}], "label": it.label, **tag}) + "\n"
                   for it in items)


def export_task(task: ChainTask, out: Path, n_prompts: int, eval_size: int, seed: int = 0) -> dict:
    """prompts.jsonl (train split), eval.jsonl (the runner's held-out sets, each row tagged with its set as
    OpenRLHF's "datasource", so its eval logs eval_<set>_pass1 per set), reward and checker files."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"prompts": out / "prompts.jsonl", "eval": out / "eval.jsonl"}
    atomic_write_text(paths["prompts"], _prompt_rows(task.rl_prompts(n_prompts, random.Random(seed))))
    atomic_write_text(paths["eval"], "".join(_prompt_rows(items, name) for name, items in task.eval_sets(eval_size).items()))
    paths["reward"] = out / "reward_func.py"
    atomic_write_text(paths["reward"], REWARD_FILE)
    paths["step_checker"] = out / "step_checker.py"
    atomic_write_text(paths["step_checker"], STEP_CHECKER_FILE.format(value_ids=task.value_token_ids(), eos_id=task.eos_id))
    return {k: str(v) for k, v in paths.items()}


def main(argv=None) -> int:
    from openrlhf_rrl.runner.build import warm_policy

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="folder to write (created)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated warm-up seeds, one model folder each")
    p.add_argument("--prompts", type=int, default=4096, help="training prompts to write")
    p.add_argument("--eval_size", type=int, default=256, help="prompts per held-out set")
    args = p.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    task = ChainTask()
    out = Path(args.out)
    written = export_task(task, out, args.prompts, args.eval_size)
    for seed in seeds:
        policy, report = warm_policy(task, "tiny", seed)
        written[f"model_seed{seed}"] = str(export_llama(policy, out / f"seed{seed}" / "model", task.tokenizer))
        print(f"seed {seed}: warm model ({'cached' if report.get('cached') else 'trained now'}) -> "
              f"{written[f'model_seed{seed}']}", flush=True)
    print(json.dumps(written, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
