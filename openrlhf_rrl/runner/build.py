"""Wire one run together: task, model, critic, warm start, trainer.

Kept apart from the trainer so the trainer stays about one RL step, and so the worker processes
of `rrl-demo` rebuild everything from plain settings (nothing heavy crosses a process boundary).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from openrlhf_rrl.runner.models import load_smollm2, tiny_qwen2, value_model_from_policy
from openrlhf_rrl.runner.sampling import greedy_eval
from openrlhf_rrl.tasks import ArithmeticTask, ChainTask
from openrlhf_rrl.runner.warmup import warm_up

# Greedy success the warm model must reach on the held-out base-skill sets before RL starts.
WARMUP_GATES = {"chain": 0.98, "arithmetic": 0.9}


def cache_dir() -> Path:
    return Path(os.environ.get("RRL_CACHE_DIR", Path.cwd() / ".cache"))


def make_task(name: str, model: str = "tiny", args: dict | None = None):
    """The task of a run; `args` carries the --prompt_data family for --task user."""
    if name == "user":
        from openrlhf_rrl.runner.user_task import UserTask

        a = args or {}
        tokenizer = load_smollm2(cache_dir() / "models")[1] if model == "smollm2" else None
        return UserTask(a["prompt_data"], a["reward_func"], input_key=a.get("input_key", "input"),
                        label_key=a.get("label_key", "label"), apply_chat_template=a.get("apply_chat_template", False),
                        eval_data=a.get("eval_data"), tokenizer=tokenizer, max_new_tokens=a.get("max_new_tokens") or 64)
    if name == "chain":
        if model != "tiny":
            raise ValueError("--task chain: its vocabulary is built in code, use --model tiny")
        return ChainTask()
    if name == "arithmetic":
        if model == "smollm2":
            _, tokenizer = load_smollm2(cache_dir() / "models")
            return ArithmeticTask(tokenizer=tokenizer, instruction="Give the final answer as a number.")
        return ArithmeticTask()
    raise ValueError(f"--task: expected chain, arithmetic or user, got {name!r}")


def base_skill_sets(task, n: int = 256) -> dict:
    """Held-out sets that test what warm-up teaches (never the hard set RL is meant to learn)."""
    sets = task.eval_sets(n)
    return {k: v for k, v in sets.items() if k != "hard"} or sets


def greedy_success(model, task, items, max_new_tokens: int) -> float:
    conts = greedy_eval(model, [task.encode_prompt(it) for it in items], max_new_tokens, task.eos_id, task.pad_id)
    return task.score(items, conts).float().mean().item()


def warm_policy(task, model_name: str, seed: int, progress=None, max_steps: int = 3000, device: str = "cpu"):
    """The policy after warm-up (cached per task, model and seed); returns (model, report)."""
    if model_name == "smollm2":
        model, _ = load_smollm2(cache_dir() / "models")
        return model.to(device), {"warmup_steps": 0, "note": "pretrained SmolLM2-135M-Instruct, no warm-up"}
    model = tiny_qwen2(task.tokenizer, seed=seed).to(device)
    if max_steps <= 0 or not hasattr(task, "warmup_examples"):
        return model, {"warmup_steps": 0, "note": "no warm-up (--warmup.max_steps 0, or a task without warm-up data)"}
    sets = base_skill_sets(task)

    def check(m) -> float:
        return min(greedy_success(m, task, items, task.max_new_tokens) for items in sets.values())

    report = warm_up(model, task, seed, cache_dir(), {"task": task.name, "model": model_name,
                                                       "config": model.config.to_json_string()},
                     check=check, gate=WARMUP_GATES[task.name], max_steps=max_steps, progress=progress)
    return model, report


def warm_model(seed: int, args: dict, progress=None) -> dict:
    task = make_task(args["task"], args["model"], args)
    _, report = warm_policy(task, args["model"], seed, progress, args.get("warmup_max_steps", 3000),
                            args.get("device", "cpu"))
    return report


def build_run(cfg, args: dict, metrics_path, ckpt_dir, progress=None):
    from dataclasses import replace

    from openrlhf_rrl.runner.trainer import Trainer

    task = make_task(args["task"], args["model"], args)
    torch.manual_seed(cfg.seed)
    policy, _ = warm_policy(task, args["model"], cfg.seed, max_steps=args.get("warmup_max_steps", 3000),
                            device=args.get("device", "cpu"))
    critic = value_model_from_policy(policy).to(args.get("device", "cpu")) if cfg.estimator == "gae" else None
    cfg = replace(cfg, max_new_tokens=args.get("max_new_tokens") or task.max_new_tokens)
    engine = None
    if args.get("engine", "transformers") == "vllm":
        from openrlhf_rrl.runner.vllm_engine import VllmSampler

        max_len = min(2048, getattr(policy.config, "max_position_embeddings", 2048))
        engine = VllmSampler(policy, max_model_len=max_len, work_dir=str(Path(ckpt_dir) / "vllm"), seed=cfg.seed)
    return Trainer(cfg, task, policy, task.tokenizer, metrics_path, critic=critic, ckpt_dir=ckpt_dir,
                   progress=progress, engine=engine)
