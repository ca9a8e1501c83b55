"""Tasks for the embedded runner, generated in code from a seed, each with a held-out eval split.

`ChainTask` is the hard-exploration task RRL is meant for (docs/how-rrl-works.md):
chains of modular operations whose short versions are learnable, whose long versions need a skill
late in the chain that warm-up never shows, and whose reward comes only at the very end.
`ArithmeticTask` is a GSM8K-style stand-in (template word problems, last-integer reward) for
SmolLM2 or the tiny model.

Both expose an OpenRLHF-style `reward_func(queries, prompts, labels, **kwargs)` that takes the
response as `query[len(prompt):]`, exactly as users write it; the runner calls it the way
OpenRLHF 0.11's SingleTurnAgentExecutor does (`query = decode(prompt_ids + response_ids)` with
special tokens kept, `prompt` = the chat-templated prompt text). For a restart the response is the
retained prefix plus the new continuation, and the prompt is the ORIGINAL prompt.

Train and eval splits are disjoint by construction: a prompt belongs to the eval split iff a
stable hash of its key falls in the eval share; samplers for training skip eval-split prompts, so
the split does not depend on any seed and eval prompts are never trained on, in warm-up or RL.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from functools import lru_cache

import torch

from openrlhf_rrl.core.step_checker import common_prefix_len

from .tokenizer import EOS, build_word_tokenizer


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


def _reward_dict(values: list[float]) -> dict:
    rewards = torch.tensor(values, dtype=torch.float32)
    return {"rewards": rewards, "scores": rewards.clone(), "extra_logs": {}}


def chain_reward_func(queries, prompts, labels, **kwargs) -> dict:
    """1.0 iff the response is exactly the label's values followed by EOS (what follows EOS is
    ignored), else 0.0. Written the way users write OpenRLHF reward files."""
    values = []
    for query, prompt, label in zip(queries, prompts, labels):
        words = query[len(prompt):].split()
        if EOS in words:
            words = words[: words.index(EOS) + 1]
        values.append(1.0 if words == label.split() + [EOS] else 0.0)
    return _reward_dict(values)


_INTEGER = re.compile(r"-?\d+")


def arithmetic_reward_func(queries, prompts, labels, **kwargs) -> dict:
    """1.0 iff the last integer in the response equals the label (OpenRLHF math style), else 0.0."""
    values = []
    for query, prompt, label in zip(queries, prompts, labels):
        found = _INTEGER.findall(query[len(prompt):])
        values.append(1.0 if found and int(found[-1]) == int(label) else 0.0)
    return _reward_dict(values)


class _TextTask:
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


class ChainTask(_TextTask):
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


# Word problems: a start sentence, then one or two operations per sentence, then the question.
_PEOPLE = [("Ana", "She", "her", "her"), ("Ben", "He", "him", "his"), ("Carla", "She", "her", "her"),
           ("Dev", "He", "him", "his"), ("Eva", "She", "her", "her"), ("Finn", "He", "him", "his"),
           ("Gita", "She", "her", "her"), ("Hugo", "He", "him", "his")]
_THINGS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "cards", "shells"]
# (template, sign): {k} amount, {other} another person, {poss} possessive, {things} the item.
_STEPS = [
    ("buys {k} more", +1),
    ("finds {k} more", +1),
    ("gets {k} more from {other}", +1),
    ("gives {k} to {other}", -1),
    ("loses {k}", -1),
    ("doubles {poss} {things}", 2),
]
_SOLUTION_WORDS = ["The", "answer", "is", "+", "-", "*", "=", ",", "."]


class ArithmeticTask(_TextTask):
    """GSM8K-style word problems from templates; label = the final integer; the reward parses the
    last integer of the response.

    Tokenizer: by default a small word-level one built from the templates' closed vocabulary
    (punctuation split off, English-style decoding, so natural sentences round-trip exactly), which
    the tiny model can use; pass SmolLM2's tokenizer to pose the same problems to SmolLM2. Problem
    texts are ordinary English either way, so the two share prompts, labels and the reward function.
    `solution_text` gives a worked answer ("3 + 4 = 7, 7 - 2 = 5. The answer is 5.") for warm-up.
    There is no step checker: cuts come from a critic or Monte-Carlo refresh, not verified tokens.
    """

    name = "arithmetic"
    reward_func = staticmethod(arithmetic_reward_func)
    has_step_checker = False

    def __init__(self, tokenizer=None, max_steps: int = 5, hard_min_steps: int = 4, max_value: int = 40,
                 instruction: str = "", eval_share: float = 0.1, eval_seed: int = 999,
                 max_new_tokens: int | None = None):
        if max_value < 12:
            raise ValueError("max_value must be >= 12 (start values go up to 12)")
        self.max_steps = max_steps
        self.hard_min_steps = hard_min_steps
        self.max_value = max_value
        self.instruction = instruction
        if tokenizer is None:
            tokenizer = build_word_tokenizer(self.vocabulary(), split_punctuation=True)
            default_new = 6 * max_steps + 8  # "a + k = b," per step, then "The answer is N." EOS
        else:
            default_new = 128  # SmolLM2 explains itself before the number
        self.max_new_tokens = max_new_tokens or default_new
        super().__init__(tokenizer, eval_share, eval_seed)

    def vocabulary(self) -> list[str]:
        words = [str(v) for v in range(self.max_value + 1)]
        for name, subj, obj, poss in _PEOPLE:
            words += [name, subj, obj, poss]
        words += _THINGS + _SOLUTION_WORDS + ["has", "and", "How", "many", "does", "have", "now", "?"]
        for template, _ in _STEPS:
            words += [w for w in template.split() if not w.startswith("{")]
        words += re.findall(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]", self.instruction)
        return words

    def _draw(self, rng: random.Random, length: int, variant: str = "") -> PromptItem:
        name, subj, _, poss = rng.choice(_PEOPLE)
        others = [p for p in _PEOPLE if p[0] != name]
        things = rng.choice(_THINGS)
        value = rng.randint(2, 12)
        start = value
        clauses, equations = [], []
        for _ in range(length):
            for _attempt in range(100):
                template, sign = rng.choice(_STEPS)
                k = rng.randint(1, 9)
                new = value + k if sign == 1 else value - k if sign == -1 else value * 2
                if 0 <= new <= self.max_value:
                    break
            else:  # always possible: "buys 1 more" from a small value, or "loses 1" from a large one
                template, sign, k = ("loses {k}", -1, 1) if value > 0 else ("buys {k} more", +1, 1)
                new = value + sign * k
            other = rng.choice(others)
            clause = template.format(k=k, other=other[0], poss=poss, things=things)
            symbol = "+" if sign == 1 else "-" if sign == -1 else "*"
            equations.append(f"{value} {symbol} {k if sign != 2 else 2} = {new}")
            clauses.append(clause)
            value = new
        sentences = [f"{name} has {start} {things}."]
        i = 0
        while i < len(clauses):
            if i + 1 < len(clauses) and rng.random() < 0.5:
                sentences.append(f"{subj} {clauses[i]} and {clauses[i + 1]}.")
                i += 2
            else:
                sentences.append(f"{subj} {clauses[i]}.")
                i += 1
        sentences.append(f"How many {things} does {name} have now?")
        if self.instruction:
            sentences.append(self.instruction)
        text = " ".join(sentences)
        solution = f"{', '.join(equations)}. The answer is {value}."
        return PromptItem(key=f"arithmetic:{text}", text=text, label=str(value), length=length,
                          hard=length >= self.hard_min_steps, solution=solution)

    def solution_text(self, item: PromptItem) -> str:
        """A worked answer ("3 + 4 = 7, 7 - 2 = 5. The answer is 5.") for supervised warm-up."""
        return item.solution

    # -- data streams --------------------------------------------------------------------------
    def rl_prompts(self, n: int, rng: random.Random) -> list[PromptItem]:
        """RL prompts from the train split, steps uniform in 1..max_steps."""
        return [self._draw_from_split(rng, rng.randint(1, self.max_steps), "", False) for _ in range(n)]

    def warmup_examples(self, n: int, rng: random.Random) -> tuple[list[list[int]], list[list[int]]]:
        """Supervised pairs from the train split: (prompt ids, worked-solution ids + EOS)."""
        items = [self._draw_from_split(rng, rng.randint(1, self.max_steps), "", False) for _ in range(n)]
        targets = [list(self._encode_cached(self.solution_text(it))) + [self.eos_id] for it in items]
        return [self.encode_prompt(it) for it in items], targets

    def eval_sets(self, n: int = 512) -> dict[str, list[PromptItem]]:
        """Fixed held-out sets: 'all' (steps 1..max_steps) and 'hard' (steps >= hard_min_steps)."""
        return {
            "all": self._unique_eval_set(n, range(1, self.max_steps + 1), "", 1),
            "hard": self._unique_eval_set(n, range(self.hard_min_steps, self.max_steps + 1), "", 2),
        }
