"""Wire one run together: task, model, critic, warm start, trainer.

Kept apart from the trainer so the trainer stays about one RL step, and so the worker processes
of `rrl-demo` rebuild everything from plain settings (nothing heavy crosses a process boundary).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from openrlhf_rrl.runner.models import (load_local_model, load_local_tokenizer, smollm2_dir, tiny_qwen2,
                                         value_model_from_policy)
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
        tokenizer = None if model == "tiny" else load_local_tokenizer(pretrained_dir(model))
        return UserTask(a["prompt_data"], a["reward_func"], input_key=a.get("input_key", "input"),
                        label_key=a.get("label_key", "label"), apply_chat_template=a.get("apply_chat_template", False),
                        eval_data=a.get("eval_data"), tokenizer=tokenizer, max_new_tokens=a.get("max_new_tokens") or 64,
                        warmup_data=a.get("warmup_data"), output_key=a.get("output_key", "output"))
    if name == "chain":
        if model != "tiny":
            raise ValueError("--task chain: its vocabulary is built in code, use --model tiny")
        return ChainTask()
    if name == "arithmetic":
        if model != "tiny":
            return ArithmeticTask(tokenizer=load_local_tokenizer(pretrained_dir(model)),
                                  instruction="Give the final answer as a number.")
        return ArithmeticTask()
    raise ValueError(f"--task: expected chain, arithmetic or user, got {name!r}")


def base_skill_sets(task, n: int = 256) -> dict:
    """Held-out sets that test what warm-up teaches (never the hard set RL is meant to learn)."""
    sets = task.eval_sets(n)
    return {k: v for k, v in sets.items() if k != "hard"} or sets


def greedy_success(model, task, items, max_new_tokens: int) -> float:
    conts = greedy_eval(model, [task.encode_prompt(it) for it in items], max_new_tokens, task.eos_id, task.pad_id)
    return task.score(items, conts).float().mean().item()


def pretrained_dir(model_name: str) -> Path:
    """The folder of --model smollm2 (converted into the cache once) or --model PATH."""
    return smollm2_dir(cache_dir() / "models") if model_name == "smollm2" else Path(model_name)


def warm_policy(task, model_name: str, seed: int, progress=None, max_steps: int = 3000, device: str = "cpu",
                lr: float | None = None):
    """The policy after warm-up (cached per task, model and seed); returns (model, report). The tiny model is
    warmed on the built-in task's data until it passes the task's gate; a pretrained model (smollm2, --model
    PATH) and the tiny model on your task are warmed only on --warmup_data, for --warmup.max_steps steps."""
    tiny = model_name == "tiny"
    user_data = getattr(task, "has_warmup_data", None)  # None: a built-in task, with warm-up data of its own
    model = tiny_qwen2(task.tokenizer, seed=seed) if tiny else load_local_model(pretrained_dir(model_name))[0]
    model = model.to(device)
    if not tiny and not user_data:
        return model, {"warmup_steps": 0, "note": f"pretrained {model_name}, no warm-up (no --warmup_data)"}
    if max_steps <= 0 or user_data is False:
        return model, {"warmup_steps": 0, "note": "no warm-up (--warmup.max_steps 0, or a task without warm-up data)"}
    sets = base_skill_sets(task)

    def check(m) -> float:
        return min(greedy_success(m, task, items, task.max_new_tokens) for items in sets.values())

    where = model_name if model_name in ("tiny", "smollm2") else os.path.abspath(model_name)
    signature = {"task": task.name, "model": where, "config": model.config.to_json_string()}
    if user_data:  # your data: a fixed number of steps, at a pretrained model's rate unless the tiny model
        report = warm_up(model, task, seed, cache_dir(), {**signature, **task.warmup_signature()}, check=check,
                         gate=None, max_steps=max_steps, lr=lr or (3e-3 if tiny else 1e-5),
                         batch_size=256 if tiny else 16, progress=progress)
    else:
        report = warm_up(model, task, seed, cache_dir(), signature, check=check, gate=WARMUP_GATES[task.name],
                         max_steps=max_steps, progress=progress, **({"lr": lr} if lr else {}))
    return model, report


def warm_model(seed: int, args: dict, progress=None) -> dict:
    task = make_task(args["task"], args["model"], args)
    _, report = warm_policy(task, args["model"], seed, progress, args.get("warmup_max_steps", 3000),
                            args.get("device", "cpu"), args.get("warmup_lr"))
    return report


def build_run(cfg, args: dict, metrics_path, ckpt_dir, progress=None):
    from dataclasses import replace

    from openrlhf_rrl.runner.trainer import Trainer

    task = make_task(args["task"], args["model"], args)
    torch.manual_seed(cfg.seed)
    policy, _ = warm_policy(task, args["model"], cfg.seed, max_steps=args.get("warmup_max_steps", 3000),
                            device=args.get("device", "cpu"), lr=args.get("warmup_lr"))
    critic = value_model_from_policy(policy).to(args.get("device", "cpu")) if cfg.estimator == "gae" else None
    cfg = replace(cfg, max_new_tokens=args.get("max_new_tokens") or task.max_new_tokens)
    engine = None
    if args.get("engine", "transformers") == "vllm":
        from openrlhf_rrl.runner.vllm_engine import VllmSampler

        max_len = min(2048, getattr(policy.config, "max_position_embeddings", 2048))
        engine = VllmSampler(policy, max_model_len=max_len, work_dir=str(Path(ckpt_dir) / "vllm"), seed=cfg.seed)
    return Trainer(cfg, task, policy, task.tokenizer, metrics_path, critic=critic, ckpt_dir=ckpt_dir,
                   progress=progress, engine=engine)
