"""One retained state: a prompt plus the start of a response that RRL may restart from.

An entry carries everything a selection policy needs so that RRL (promise), pass-rate targeting
(Prefix Sampling), uncertainty (Pros), PrefixRL and failure prefixes are all small policies over
the same buffer: its restart outcomes (a Beta posterior comes for free), where it was cut, and the
critic value / token entropy at the cut when known. For cut control (the passrate policy) it also
keeps the source response's tokens beyond the cut that the cut may move into (source_ids), whether
it is a handicap (a failed prefix for a mostly passing prompt), and how many of its restart groups
came back mixed.
"""

from __future__ import annotations

import hashlib
import math
import sys
from array import array
from dataclasses import dataclass, field, fields
from typing import Any


def state_key(prompt_ids, prefix_ids) -> str:
    """sha1 of the token ids, so the same (prompt, prefix) found twice merges into one entry."""
    p = array("q", prompt_ids)
    r = array("q", prefix_ids)
    if sys.byteorder != "little":  # the key must not depend on the machine that wrote the file
        p.byteswap()
        r.byteswap()
    h = hashlib.sha1(len(p).to_bytes(8, "little"))
    h.update(p.tobytes())
    h.update(r.tobytes())
    return h.hexdigest()


@dataclass(slots=True)
class RetainedState:
    prompt_key: str
    prompt_ids: tuple
    prefix_ids: tuple  # response tokens kept; the prompt is not included
    prefix_logprobs: tuple | None = None  # rollout log-probs of the prefix (only for --rrl_train_prefix)
    label: Any = None  # ground truth handed to the reward function, JSON-serialisable
    score: float = 0.0
    step_found: int = 0
    restarts: int = 0  # restart groups run from this state
    continuations: int = 0  # samples drawn from it over all restarts
    successes: int = 0  # successful continuations
    last_seen: int = 0  # last step it was found or restarted
    cut_fraction: float = 0.0  # len(prefix) / len(source response)
    source_len: int = 0
    source_reward: float = 0.0
    cut_value: float | None = None  # critic value at the cut (PPO)
    cut_entropy: float | None = None  # policy entropy at the cut (ExTra)
    verified_steps: int | None = None  # steps a checker verified in the prefix
    pinned: bool = False  # a reviewer wants it kept: evicted last, never auto-retired
    banned: bool = False  # a reviewer rejected it: never sampled, never re-admitted
    # additions go here, each with a default: positional construction and old buffer files keep working
    source_ids: tuple = ()  # source response tokens beyond the prefix that cut control may move the cut into
    handicap: bool = False  # a failed prefix that makes a mostly passing prompt harder (passrate policy)
    mixed_groups: int = 0  # restart groups from this cut with mixed outcomes (the informative ones)
    # a hard prompt no sample has solved yet, kept to be sampled again from the prompt itself at the restart
    # temperature (empty prefix; --rrl_retry_unsolved): the only entry that may keep no prefix
    retry: bool = False
    key: str = field(init=False, default="")

    def __post_init__(self):
        if type(self.prompt_ids) is not tuple:
            self.prompt_ids = tuple(self.prompt_ids)
        if type(self.prefix_ids) is not tuple:
            self.prefix_ids = tuple(self.prefix_ids)
        if self.prefix_logprobs is not None and type(self.prefix_logprobs) is not tuple:
            self.prefix_logprobs = tuple(self.prefix_logprobs)
        if type(self.source_ids) is not tuple:
            self.source_ids = tuple(self.source_ids)
        self.key = state_key(self.prompt_ids, self.prefix_ids)

    @property
    def failures(self) -> int:
        return self.continuations - self.successes

    def posterior(self, prior_a: float = 1.0, prior_b: float = 1.0) -> tuple[float, float]:
        """Beta(a, b) belief about the pass rate of a continuation from this state."""
        return prior_a + self.successes, prior_b + self.failures

    @property
    def pass_rate(self) -> float:
        """Posterior mean under a uniform prior: 0.5 for an untried state."""
        a, b = self.posterior()
        return a / (a + b)

    @property
    def informative_rate(self) -> float:
        """Estimated chance that a restart group from this cut comes back MIXED (some pass, some fail):
        (mixed + 1) / (groups + 2), 0.5 when untried. Counted per group, not from the pass rate: a policy
        that errs the same way every time gives 0/8 and 8/8 groups whose mean is 0.5 and whose gradient is 0."""
        return (self.mixed_groups + 1) / (self.restarts + 2)

    def to_json(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in _OMIT_AT_DEFAULT and v == _OMIT_AT_DEFAULT[f.name]:
                continue  # so a file without these features stays readable by older versions
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_json(cls, d: dict) -> "RetainedState":
        """Rebuild from to_json(); a wrong type raises ValueError naming the field (the key is recomputed)."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown field")
        kw = {}
        for name, kind, required in _SCHEMA:
            if name not in d:
                if required:
                    raise ValueError(f"{name}: missing")
                continue
            kw[name] = _check(name, kind, d[name])
        return cls(**kw)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _check(name, kind, v):
    ok = True
    if kind == "str":
        ok = isinstance(v, str)
    elif kind == "ids":
        ok = isinstance(v, list) and all(_is_int(x) for x in v)
        v = tuple(v) if ok else v
    elif kind == "floats?":
        if v is not None:
            ok = isinstance(v, list) and all(_is_num(x) for x in v)
            v = tuple(float(x) for x in v) if ok else v
    elif kind == "int":
        ok = _is_int(v)
    elif kind == "int?":
        ok = v is None or _is_int(v)
    elif kind == "num":
        ok = _is_num(v)
        v = float(v) if ok else v
    elif kind == "num?":
        ok = v is None or _is_num(v)
        v = float(v) if ok and v is not None else v
    elif kind == "bool":
        ok = isinstance(v, bool)
    elif kind == "any":
        ok = True
    if not ok:
        raise ValueError(f"{name}: expected {_KIND_WORDS[kind]}, got {v!r:.60}")
    return v


_KIND_WORDS = {
    "str": "a string",
    "ids": "a list of token ids (ints)",
    "floats?": "a list of numbers or null",
    "int": "an integer",
    "int?": "an integer or null",
    "num": "a finite number",
    "num?": "a finite number or null",
    "bool": "true or false",
    "any": "any JSON value",
}

_SCHEMA = [
    ("prompt_key", "str", True),
    ("prompt_ids", "ids", True),
    ("prefix_ids", "ids", True),
    ("prefix_logprobs", "floats?", False),
    ("label", "any", False),
    ("score", "num", False),
    ("step_found", "int", False),
    ("restarts", "int", False),
    ("continuations", "int", False),
    ("successes", "int", False),
    ("last_seen", "int", False),
    ("cut_fraction", "num", False),
    ("source_len", "int", False),
    ("source_reward", "num", False),
    ("cut_value", "num?", False),
    ("cut_entropy", "num?", False),
    ("verified_steps", "int?", False),
    ("pinned", "bool", False),
    ("banned", "bool", False),
    ("source_ids", "ids", False),
    ("handicap", "bool", False),
    ("mixed_groups", "int", False),
    ("retry", "bool", False),
]

# Fields added after the first release: written only when set, and optional when read.
_OMIT_AT_DEFAULT = {"source_ids": (), "handicap": False, "mixed_groups": 0, "retry": False}
