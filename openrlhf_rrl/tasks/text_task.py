"""What every text task shares: the prompt record, the fixed eval split, and TextTask (chat templating,
encoding, scoring through an OpenRLHF-style reward function, unique prompts from either split).

A task's reward function has OpenRLHF's signature, `reward_func(queries, prompts, labels, **kwargs)`,
and takes the response as `query[len(prompt):]`, exactly as users write it; TextTask calls it the way
OpenRLHF 0.11's SingleTurnAgentExecutor does (`query = decode(prompt_ids + response_ids)` with special
tokens kept, `prompt` = the chat-templated prompt text). For a restart the response is the retained
prefix plus the new continuation, and the prompt is the ORIGINAL prompt.

Train and eval splits are disjoint by construction: a prompt belongs to the eval split iff a stable
hash of its key falls in the eval share; samplers for training skip eval-split prompts, so the split
does not depend on any seed and eval prompts are never trained on, in warm-up or RL.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class PromptItem:
    """One prompt: `key` is a stable id (task name + canonical text), `text` the user message (before
    the chat template), `label` what the reward compares with, `length` the number of steps."""

    key: str
    text: str
    label: str
    length: int
    hard: bool
    solution: str = ""  # a worked answer where the task has one (warm-up / SFT data)


def in_eval_split(key: str, eval_share: float) -> bool:
    """Whether a prompt key belongs to the held-out split (a fixed hash: seed-independent)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 1_000_000 < round(eval_share * 1_000_000)


def reward_dict(values: list[float]) -> dict:
    rewards = torch.tensor(values, dtype=torch.float32)
    return {"rewards": rewards, "scores": rewards.clone(), "extra_logs": {}}


class TextTask:
    """What both tasks share: chat templating, encoding, scoring through the reward function, and
    sampling of unique prompts from either split."""

    name = "task"
    reward_func = None  # each task sets its OpenRLHF-style reward function

    def __init__(self, tokenizer, eval_share: float, eval_seed: int):
        self.tokenizer = tokenizer
        self.eval_share = eval_share
        self.eval_seed = eval_seed
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id
        # Templating and tokenizing cost ~0.1 ms a prompt; prompts repeat across samples and steps.
        self._encode_cached = lru_cache(maxsize=1 << 16)(self._encode_text)
        self._template_cached = lru_cache(maxsize=1 << 16)(self._render_template)

    # -- prompts -------------------------------------------------------------------------------
    def prompt_text(self, item: PromptItem) -> str:
        """The chat-templated prompt, as OpenRLHF's PromptDataset builds it; also the `prompts`
        argument of reward_func."""
        return self._template_cached(item.text)

    def _render_template(self, text: str) -> str:
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )

    def _encode_text(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_prompt(self, item: PromptItem) -> list[int]:
        """Token ids of the templated prompt (no extra special tokens, as OpenRLHF's executor)."""
        return list(self._encode_cached(self.prompt_text(item)))

    def is_eval(self, item: PromptItem) -> bool:
        return in_eval_split(item.key, self.eval_share)

    def is_hard(self, item: PromptItem) -> bool:
        return item.hard

    # -- rewards -------------------------------------------------------------------------------
    def queries(self, items: list[PromptItem], response_ids: list[list[int]]) -> list[str]:
        """OpenRLHF's query strings: decode(prompt ids + response ids), special tokens kept."""
        sequences = [self.encode_prompt(it) + list(resp) for it, resp in zip(items, response_ids)]
        return self.tokenizer.batch_decode(sequences, skip_special_tokens=False)

    def score(self, items: list[PromptItem], response_ids: list[list[int]]) -> torch.Tensor:
        """Rewards via this task's reward_func, called as OpenRLHF does. For a restart pass the
        ORIGINAL item and the full response (retained prefix + continuation)."""
        out = self.reward_func(
            self.queries(items, response_ids), [self.prompt_text(it) for it in items], [it.label for it in items]
        )
        return out["rewards"]

    # -- sampling ------------------------------------------------------------------------------
    def _draw(self, rng: random.Random, length: int, variant: str) -> PromptItem:
        raise NotImplementedError

    def _draw_from_split(self, rng: random.Random, length: int, variant: str, want_eval: bool) -> PromptItem:
        for _ in range(10_000):
            item = self._draw(rng, length, variant)
            if self.is_eval(item) == want_eval:
                return item
        raise RuntimeError(f"{self.name}: no {'eval' if want_eval else 'train'} prompt of length {length} found")

    def _unique_eval_set(self, n: int, lengths: range, variant: str, seed_offset: int) -> list[PromptItem]:
        rng = random.Random(self.eval_seed * 1_000 + seed_offset)
        seen: set[str] = set()
        out: list[PromptItem] = []
        for _ in range(200 * n):
            if len(out) == n:
                break
            item = self._draw_from_split(rng, rng.choice(lengths), variant, want_eval=True)
            if item.key not in seen:
                seen.add(item.key)
                out.append(item)
        return out
