"""Your own task in the embedded runner, in OpenRLHF's conventions.

`--prompt_data train.jsonl --input_key question --label_key answer --apply_chat_template
--reward_func reward.py [--eval_data eval.jsonl]`: the same JSONL fields and the same reward file
OpenRLHF's `--data.prompt_dataset` / `--reward.remote_url file.py` take, so a small workflow can be
tried here first (effect and cost in results.md) and then moved to the cluster unchanged. With
`--model PATH` (your own checkpoint) and `--warmup_data sft.jsonl` (prompt under --input_key, answer
under --output_key) the run starts from a model that already solves the easy cases.

The reward file defines `reward_func(queries, prompts, labels, **kwargs)` returning a tensor of
rewards or a dict with "rewards"; for a restart it gets the ORIGINAL prompt and the full response
(retained prefix + continuation), exactly as for a fresh rollout.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import re
from pathlib import Path

import torch

from openrlhf_rrl.core.errors import RRLConfigError
from openrlhf_rrl.tasks import PromptItem, TextTask
from openrlhf_rrl.tasks.tokenizer import build_word_tokenizer

_WORDS = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]")


def read_jsonl(path: str, flag: str, input_key: str, label_key: str | None) -> list[dict]:
    """Rows of a JSONL file; a bad line or a missing key is a one-line error naming flag and line."""
    p = Path(path)
    if not p.is_file():
        raise RRLConfigError(f"{flag}: no such file: {path}")
    rows = []
    with open(p, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RRLConfigError(f"{flag}: {path}:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or input_key not in row:
                raise RRLConfigError(f"{flag}: {path}:{n}: no field {input_key!r} (--input_key)")
            if label_key and label_key not in row:
                raise RRLConfigError(f"{flag}: {path}:{n}: no field {label_key!r} (--label_key)")
            rows.append(row)
    if not rows:
        raise RRLConfigError(f"{flag}: {path} holds no prompts")
    return rows


def load_reward_func(path: str):
    """`reward_func` from a Python file, as OpenRLHF loads a reward file."""
    p = Path(path)
    if not p.is_file() or p.suffix != ".py":
        raise RRLConfigError(f"--reward_func: expected a .py file, got {path}")
    spec = importlib.util.spec_from_file_location("rrl_user_reward", p)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: say which and why, in one line
        raise RRLConfigError(f"--reward_func: {path} failed to load: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, "reward_func", None)
    if not callable(fn):
        raise RRLConfigError(f"--reward_func: {path} defines no function reward_func(queries, prompts, labels)")
    return fn


def _as_reward_dict(out, n: int) -> dict:
    rewards = out["rewards"] if isinstance(out, dict) else out
    rewards = torch.as_tensor(rewards, dtype=torch.float32).reshape(-1)
    if rewards.numel() != n:
        raise ValueError(f"--reward_func: returned {rewards.numel()} rewards for {n} queries")
    return {"rewards": rewards}


class UserTask(TextTask):
    """Prompts and labels from JSONL, rewards from the user's file; the eval split is --eval_data,
    or a fixed hashed share of --prompt_data held out from training."""

    name = "user"
    has_step_checker = False

    def __init__(self, prompt_data: str, reward_func: str, input_key: str = "input", label_key: str = "label",
                 apply_chat_template: bool = False, eval_data: str | None = None, tokenizer=None,
                 max_new_tokens: int = 64, eval_share: float = 0.1, eval_seed: int = 999,
                 warmup_data: str | None = None, output_key: str = "output"):
        train_rows = read_jsonl(prompt_data, "--prompt_data", input_key, label_key)
        eval_rows = read_jsonl(eval_data, "--eval_data", input_key, label_key) if eval_data else []
        # supervised warm-up pairs, in OpenRLHF's SFT conventions: the prompt under --input_key, the answer
        # under --output_key
        self.warmup_rows = read_jsonl(warmup_data, "--warmup_data", input_key, output_key) if warmup_data else []
        self.warmup_data, self.input_key, self.output_key = warmup_data, input_key, output_key
        self.apply_chat_template = apply_chat_template
        self.max_new_tokens = max_new_tokens
        user_fn = load_reward_func(reward_func)
        self.reward_func = lambda q, p, l, **kw: _as_reward_dict(user_fn(q, p, l, **kw), len(q))  # noqa: E731
        if tokenizer is None:
            # the tiny model: one token per word or symbol of the data (prompts, labels, warm-up answers)
            words = [w for row in train_rows + eval_rows + self.warmup_rows for key in (input_key, label_key, output_key)
                     for w in _WORDS.findall(str(row.get(key, "")))]
            tokenizer = build_word_tokenizer(words, split_punctuation=True)
        super().__init__(tokenizer, eval_share if not eval_rows else 0.0, eval_seed)

        def item(row) -> PromptItem:
            text = str(row[input_key])
            return PromptItem(key=f"user:{text}", text=text, label=str(row.get(label_key, "")), length=0, hard=False)

        items = [item(r) for r in train_rows]
        if eval_rows:
            self.train_items, self.eval_items = items, [item(r) for r in eval_rows]
        else:
            self.train_items = [it for it in items if not self.is_eval(it)]
            self.eval_items = [it for it in items if self.is_eval(it)] or items[:1]
        if not self.train_items:
            raise RRLConfigError("--prompt_data: every prompt fell into the held-out share; give --eval_data")

    @property
    def has_warmup_data(self) -> bool:
        return bool(self.warmup_rows)

    def warmup_signature(self) -> dict:
        """What a cached warm-up depends on besides the model: the file's bytes and how they are read."""
        digest = hashlib.sha256(Path(self.warmup_data).read_bytes()).hexdigest()[:16]
        return {"warmup_data": digest, "keys": [self.input_key, self.output_key], "chat": self.apply_chat_template}

    def warmup_examples(self, n: int, rng: random.Random) -> tuple[list[list[int]], list[list[int]]]:
        """n supervised pairs drawn from --warmup_data: (templated prompt ids, answer ids + EOS)."""
        rows = [rng.choice(self.warmup_rows) for _ in range(n)]
        items = [PromptItem(key=f"user:{r[self.input_key]}", text=str(r[self.input_key]), label="", length=0,
                            hard=False) for r in rows]
        targets = [list(self._encode_cached(str(r[self.output_key]))) + [self.eos_id] for r in rows]
        return [self.encode_prompt(it) for it in items], targets

    def prompt_text(self, item: PromptItem) -> str:
        return super().prompt_text(item) if self.apply_chat_template else item.text

    def rl_prompts(self, n: int, rng: random.Random) -> list[PromptItem]:
        return [rng.choice(self.train_items) for _ in range(n)]

    def eval_sets(self, n: int = 512) -> dict[str, list[PromptItem]]:
        return {"heldout": self.eval_items[:n]}
