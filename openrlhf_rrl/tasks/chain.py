"""The chain task, the hard-exploration task RRL is meant for (docs/how-rrl-works.md): chains of modular
operations whose short versions are learnable, whose long versions need a skill late in the chain that
warm-up never shows, and whose reward comes only at the very end. Generated in code from a seed, with
a held-out eval split (text_task.py) and a step checker (a process reward).
"""

from __future__ import annotations

import random
from functools import lru_cache

from openrlhf_rrl.core.step_checker import common_prefix_len

from .text_task import PromptItem, TextTask, reward_dict
from .tokenizer import EOS, build_word_tokenizer


def chain_reward_func(queries, prompts, labels, **kwargs) -> dict:
    """1.0 iff the response is exactly the label's values followed by EOS (what follows EOS is
    ignored), else 0.0. Written the way users write OpenRLHF reward files."""
    values = []
    for query, prompt, label in zip(queries, prompts, labels):
        words = query[len(prompt):].split()
        if EOS in words:
            words = words[: words.index(EOS) + 1]
        values.append(1.0 if words == label.split() + [EOS] else 0.0)
    return reward_dict(values)


class ChainTask(TextTask):
    """`a0 op1 ... opL =` -> the L running values mod `modulus`, then EOS.

    Base ops: `+k` (v -> v+k) and `*k` (v -> v*k). Hard prompts (L >= hard_min_length) use a NEW op
    `k-` (v -> k-v) at steps i >= new_op_from_step (1-based), with probability new_op_share per such
    step (1.0: every late step, the setting of every grid in docs/measurements/). Warm-up shows base
    ops only, at every length 1..max_length, so long chains are not a length-generalisation problem
    (not learnable in a CPU budget, in the project's early trials): only the late new op is unknown.
    Partial progress earns no reward but is checkable (`verified_tokens`, a process reward).
    """

    name = "chain"
    reward_func = staticmethod(chain_reward_func)
    has_step_checker = True

    def __init__(self, modulus: int = 5, max_length: int = 8, hard_min_length: int = 6, new_op_from_step: int = 5,
                 new_op_share: float = 1.0, rl_base_long_share: float = 0.0, eval_share: float = 0.1,
                 eval_seed: int = 999):
        if not 1 <= new_op_from_step <= hard_min_length <= max_length:
            raise ValueError("need 1 <= new_op_from_step <= hard_min_length <= max_length")
        self.modulus = modulus
        self.max_length = max_length
        self.hard_min_length = hard_min_length
        self.new_op_from_step = new_op_from_step
        self.new_op_share = new_op_share
        self.rl_base_long_share = rl_base_long_share
        self.max_new_tokens = max_length + 1  # the values plus EOS
        super().__init__(build_word_tokenizer(self.vocabulary()), eval_share, eval_seed)
        self._value_ids = [self.tokenizer.convert_tokens_to_ids(str(v)) for v in range(modulus)]

    def value_token_ids(self) -> list[int]:
        """The token id of each value 0..modulus-1 (what a step checker over token ids compares with)."""
        return list(self._value_ids)

    def vocabulary(self) -> list[str]:
        m = range(self.modulus)
        return [str(v) for v in m] + [f"+{k}" for k in m] + [f"*{k}" for k in m] + [f"{k}-" for k in m] + ["="]

    def apply_op(self, op: str, value: int) -> int:
        if op[0] == "+":
            return (value + int(op[1:])) % self.modulus
        if op[0] == "*":
            return (value * int(op[1:])) % self.modulus
        return (int(op[:-1]) - value) % self.modulus

    def make_item(self, start: int, ops: list[str]) -> PromptItem:
        """The item for an explicit chain (also handy in tests)."""
        value, values = start, []
        for op in ops:
            value = self.apply_op(op, value)
            values.append(value)
        text = " ".join([str(start), *ops, "="])
        hard = any(op.endswith("-") for op in ops)
        return PromptItem(key=f"chain:{text}", text=text, label=" ".join(map(str, values)), length=len(ops), hard=hard)

    def _draw(self, rng: random.Random, length: int, variant: str) -> PromptItem:
        """variant 'base': base ops only; 'rl': the new op late in long chains."""
        ops = []
        for step in range(1, length + 1):
            late = variant == "rl" and length >= self.hard_min_length and step >= self.new_op_from_step
            if late and rng.random() < self.new_op_share:
                ops.append(f"{rng.randrange(self.modulus)}-")
            else:
                ops.append(f"{rng.choice('+*')}{rng.randrange(self.modulus)}")
        return self.make_item(rng.randrange(self.modulus), ops)

    # -- data streams --------------------------------------------------------------------------
    def rl_prompts(self, n: int, rng: random.Random) -> list[PromptItem]:
        """RL prompts from the train split: L uniform in 1..max_length; long ones carry the new op
        (optionally a share of long base-op chains, against forgetting)."""
        out = []
        for _ in range(n):
            length = rng.randint(1, self.max_length)
            variant = "rl"
            if length >= self.hard_min_length and rng.random() < self.rl_base_long_share:
                variant = "base"
            out.append(self._draw_from_split(rng, length, variant, want_eval=False))
        return out

    def warmup_examples(self, n: int, rng: random.Random) -> tuple[list[list[int]], list[list[int]]]:
        """Supervised warm-up pairs from the train split, base ops only, L uniform in 1..max_length:
        (prompt ids, target response ids = values + EOS)."""
        items = [self._draw_from_split(rng, rng.randint(1, self.max_length), "base", False) for _ in range(n)]
        return [self.encode_prompt(it) for it in items], [self.target_ids(it) for it in items]

    def eval_sets(self, n: int = 512) -> dict[str, list[PromptItem]]:
        """Fixed held-out sets (from eval_seed): 'hard' = new-op chains L >= hard_min_length, 'mid' =
        L 3..hard_min_length-1 (base ops), 'base_long' = base-op chains L >= hard_min_length (a
        forgetting probe: RL never shows long base-op chains unless rl_base_long_share > 0)."""
        long_lengths = range(self.hard_min_length, self.max_length + 1)
        return {
            "hard": self._unique_eval_set(n, long_lengths, "rl", 1),
            "mid": self._unique_eval_set(n, range(min(3, self.hard_min_length - 1), self.hard_min_length), "base", 2),
            "base_long": self._unique_eval_set(n, long_lengths, "base", 3),
        }

    # -- checking ------------------------------------------------------------------------------
    def target_ids(self, item: PromptItem) -> list[int]:
        """The correct response as token ids: the values, then EOS."""
        return list(self._label_ids(item.label))

    @lru_cache(maxsize=1 << 14)
    def _label_ids(self, label: str) -> tuple[int, ...]:
        # the step checker runs on every failed rollout of a hard prompt: parse each label once
        return tuple(self._value_ids[int(v)] for v in label.split()) + (self.eos_id,)

    def verified_tokens(self, item: PromptItem, response_ids: list[int]) -> int:
        """How many leading response tokens are correct (a step checker, i.e. a process reward:
        disclose it when cuts use it). The full answer with EOS scores length + 1."""
        return common_prefix_len(response_ids, self._label_ids(item.label))
