"""The GSM8K-style task: template word problems with a last-integer reward, for SmolLM2 or the tiny
model. Generated in code from a seed, with a held-out eval split (text_task.py); no step checker.
"""

from __future__ import annotations

import random
import re

from .text_task import PromptItem, TextTask, reward_dict
from .tokenizer import build_word_tokenizer

_INTEGER = re.compile(r"-?\d+")


def arithmetic_reward_func(queries, prompts, labels, **kwargs) -> dict:
    """1.0 iff the last integer in the response equals the label (OpenRLHF math style), else 0.0."""
    values = []
    for query, prompt, label in zip(queries, prompts, labels):
        found = _INTEGER.findall(query[len(prompt):])
        values.append(1.0 if found and int(found[-1]) == int(label) else 0.0)
    return reward_dict(values)


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


class ArithmeticTask(TextTask):
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
