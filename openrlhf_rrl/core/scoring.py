"""Scorers: which cut points of a trajectory become buffer candidates, and how promising each is.

Every scorer only mines trajectories of HARD prompts (group success rate below hard_threshold):
an easy prompt needs no head start. Every scorer obeys the same length limits (clip_cuts), and
picks its cuts among the allowed positions, so a limit never silently empties a scorer's choice.

  critic   PPO: cut where the critic's value is highest; score = that value (the paper's rule).
  reward   critic-free: cuts at step boundaries, else every K tokens, else (a response shorter than the
           stride) at evenly spread fractions of it; score = reward + a small bonus for deeper cuts, so
           partial credit and rare successes rank first.
  checker  cut at the longest prefix a step checker verified, in failed rollouts; score = the
           verified fraction (worked best in docs/measurements/; needs a process checker).
  entropy  ExTra: cut before the most uncertain tokens; score = the entropy there.
  mc       like reward, but the score is replaced by the restart pass rate (Monte-Carlo refresh).
  agree    critic-free and checker-free: a failed rollout is verified up to where it parts from a
           successful rollout of the same group (the outcome reward as a step checker); cut there, as
           checker does. Restart groups are mined too, so each mixed restart proposes a deeper cut.
  file:x.py  score_func(prompt_ids, response_ids, reward, label, **kw) -> [(cut, score), ...].

Step checkers (--rrl_step_checker: a .py file or a served process reward model) live in step_checker.py.
"""

from __future__ import annotations

import importlib.util
import math
import os
from typing import Protocol

from .cuts import allowed_range, grid_cuts, top_entropy_cuts, top_value_cuts
from .errors import RRLConfigError
from .state import RetainedState
from .trajectory import Trajectory, as_list

SCORER_NAMES = ("critic", "reward", "checker", "entropy", "mc", "agree")


class Scorer(Protocol):
    refresh_from_restarts: bool

    def scored(self, traj: Trajectory) -> list[tuple[int, float]]: ...

    def state_at(self, traj: Trajectory, c: int, score: float, step: int) -> RetainedState: ...

    def candidates(self, traj: Trajectory, step: int) -> list[RetainedState]: ...


def _finite_at(xs, i):
    """xs[i] as a float when present and finite, else None (the buffer file stores no NaN)."""
    if xs is None or i >= len(xs):
        return None
    x = float(xs[i])
    return x if math.isfinite(x) else None


def _finite_tuple(xs, n):
    if xs is None or len(xs) < n:
        return None
    out = tuple(float(x) for x in xs[:n])
    return out if all(math.isfinite(x) for x in out) else None


class BaseScorer:
    """Shared part: hard-prompt gate, length limits, building RetainedState objects."""

    refresh_from_restarts = False
    # verified prefixes come from agreement with the group's successes (step_checker.verify_by_agreement),
    # never from a step checker; mixed restart groups are mined as well as fresh ones
    verifies_by_agreement = False

    def __init__(self, hard_threshold: float = 0.5, min_prefix_frac: float = 0.1, max_prefix_frac: float = 0.9,
                 min_prefix_tokens: int = 1, max_prefix_tokens: int | None = None, cut_every: int = 32,
                 boundary_tokens=(), max_cuts: int = 4, cut_bonus: float = 0.1, stop_token_ids=()):
        self.hard_threshold = hard_threshold
        self.min_prefix_frac = min_prefix_frac
        self.max_prefix_frac = max_prefix_frac
        self.min_prefix_tokens = min_prefix_tokens
        self.max_prefix_tokens = max_prefix_tokens
        self.cut_every = cut_every
        self.boundary_tokens = frozenset(int(t) for t in (boundary_tokens or ()))
        self.max_cuts = max_cuts
        self.cut_bonus = cut_bonus
        # EOS (and other stop tokens) can sit inside a response, e.g. a turn end in a multi-turn
        # rollout: no cut may keep one, since a restart after it could only stop
        self.stop_token_ids = tuple(int(t) for t in (stop_token_ids or ()))

    def allowed_cuts(self, traj: Trajectory) -> range:
        """Cuts within the length limits, before EOS and (for a restart) deeper than its prefix."""
        n = len(traj.response_ids)
        eos_pos = traj.eos_pos
        if self.stop_token_ids:
            ids = as_list(traj.response_ids)
            for t in self.stop_token_ids:
                if t in ids:
                    i = ids.index(t)
                    eos_pos = i if eos_pos is None else min(eos_pos, i)
        r = allowed_range(n, self.min_prefix_frac, self.max_prefix_frac, self.min_prefix_tokens,
                          self.max_prefix_tokens, eos_pos=eos_pos)
        return range(max(r.start, traj.prefix_len + 1), max(r.start, r.stop))

    def scored_cuts(self, traj: Trajectory, allowed: range) -> list[tuple[int, float]]:
        """(cut, score) pairs; cuts outside `allowed` are dropped by the caller."""
        raise NotImplementedError

    def candidates(self, traj: Trajectory, step: int) -> list[RetainedState]:
        return [self.state_at(traj, c, score, step) for c, score in self.scored(traj)]

    def scored(self, traj: Trajectory) -> list[tuple[int, float]]:
        """The (cut, score) pairs this scorer proposes for `traj`: cheap, no state built yet, so a
        caller that admits only a few candidates per step materialises only those."""
        if traj.group_success_rate >= self.hard_threshold:
            return []
        allowed = self.allowed_cuts(traj)
        if not allowed:
            return []
        # a NaN/inf score (a diverged critic, say) would poison the priority sums: drop it
        return [(int(c), float(s)) for c, s in self.scored_cuts(traj, allowed)
                if int(c) in allowed and math.isfinite(float(s))]

    @staticmethod
    def state_at(traj: Trajectory, c: int, score: float, step: int) -> RetainedState:
        """The retained state `traj` cut after its first `c` response tokens."""
        response = tuple(int(t) for t in as_list(traj.response_ids))
        n = len(response)
        return RetainedState(
            prompt_key=traj.prompt_key,
            prompt_ids=tuple(int(t) for t in as_list(traj.prompt_ids)),
            prefix_ids=response[:c],
            prefix_logprobs=_finite_tuple(as_list(traj.logprobs), c),
            label=traj.label,
            score=score,
            step_found=step,
            last_seen=step,
            cut_fraction=c / n,
            source_len=n,
            source_reward=float(traj.reward),
            cut_value=_finite_at(as_list(traj.values), c),
            cut_entropy=_finite_at(as_list(traj.entropies), c),
            verified_steps=traj.verified_steps,
        )

    def _spread(self, cuts: list[int]) -> list[int]:
        """At most max_cuts cuts, evenly spread: several depths give a reverse curriculum."""
        m = self.max_cuts
        if m <= 0 or len(cuts) <= m:
            return cuts
        return sorted({cuts[int((i + 0.5) * len(cuts) / m)] for i in range(m)})


class CriticScorer(BaseScorer):
    def scored_cuts(self, traj, allowed):
        values = as_list(traj.values)
        if values is None:
            return []
        allowed = allowed[: max(0, len(values) - allowed.start)]
        picked = top_value_cuts([values[c] for c in allowed], self.max_cuts)
        return [(allowed[i], values[allowed[i]]) for i in picked]


class RewardScorer(BaseScorer):
    def stride_or_boundary_cuts(self, traj, allowed):
        grid = grid_cuts(as_list(traj.response_ids), allowed, self.boundary_tokens, self.cut_every)
        # a response shorter than the stride would give no cut at all (replay idle, silently): spread the
        # cuts over its allowed range instead
        return self._spread(grid or list(allowed))

    def scored_cuts(self, traj, allowed):
        n = len(traj.response_ids)
        return [(c, float(traj.reward) + self.cut_bonus * c / n) for c in self.stride_or_boundary_cuts(traj, allowed)]


class MonteCarloScorer(RewardScorer):
    """Starts from the reward score; RetrospectiveReplay then sets score = restart pass rate."""

    refresh_from_restarts = True


class CheckerScorer(BaseScorer):
    def scored_cuts(self, traj, allowed):
        if traj.success or traj.verified_tokens is None:
            return []
        # every prefix of a verified prefix is verified: clip the cut down into the allowed range
        c = min(traj.verified_tokens, allowed[-1])
        if c not in allowed:
            return []
        return [(c, c / len(traj.response_ids))]


class AgreementScorer(CheckerScorer, RewardScorer):
    """The checker scorer over prefixes verified by agreement with a success of the same group. With probes, a
    failed rollout of a group without a success (nothing verified) is cut at the reward scorer's cuts, scored below
    every verified cut (-1 + depth): restarts then tell which of those prefixes can still succeed."""

    verifies_by_agreement = True

    def __init__(self, probes: bool = False, **opts):
        super().__init__(**opts)
        self.probes = probes

    def scored_cuts(self, traj, allowed):
        if traj.verified_tokens is not None or traj.success:
            return CheckerScorer.scored_cuts(self, traj, allowed)
        if not self.probes:
            return []
        n = len(traj.response_ids)
        return [(c, -1.0 + c / n) for c in self.stride_or_boundary_cuts(traj, allowed)]


class EntropyScorer(BaseScorer):
    def scored_cuts(self, traj, allowed):
        ent = as_list(traj.entropies)
        if ent is None:
            return []
        allowed = allowed[: max(0, len(ent) - allowed.start)]
        picked = top_entropy_cuts([ent[c] for c in allowed], self.max_cuts)
        return [(allowed[i], ent[allowed[i]]) for i in picked]


class FileScorer(BaseScorer):
    """A user's score_func from a .py file, loaded like an OpenRLHF reward file."""

    def __init__(self, path: str, **opts):
        super().__init__(**opts)
        self.path = path
        self.score_func = load_user_function(path, "score_func", "--rrl_scorer", "scorer file",
                                             "score_func(prompt_ids, response_ids, reward, label, **kw)")

    def scored_cuts(self, traj, allowed):
        out = self.score_func(
            prompt_ids=as_list(traj.prompt_ids), response_ids=as_list(traj.response_ids), reward=traj.reward,
            label=traj.label, success=traj.success, logprobs=as_list(traj.logprobs), values=as_list(traj.values),
            entropies=as_list(traj.entropies), verified_tokens=traj.verified_tokens,
            group_success_rate=traj.group_success_rate, prefix_len=traj.prefix_len, allowed_cuts=allowed)
        return [(int(c), float(s)) for c, s in (out or [])]


def load_user_function(path: str, name: str, flag: str, what: str, signature: str):
    """Function `name` from the user's Python file at `path`, loaded like an OpenRLHF reward file; a
    missing or broken file or function is one RRLConfigError line naming `flag` and the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise RRLConfigError(f"{flag}: {what} not found: {path}")
    spec = importlib.util.spec_from_file_location(f"rrl_user_{name}", path)
    if spec is None or spec.loader is None:
        raise RRLConfigError(f"{flag}: cannot load {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's file: report it on one line, naming the file
        raise RRLConfigError(f"{flag}: cannot load {path}: {type(e).__name__}: {e}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise RRLConfigError(f"{flag}: {path} defines no {signature}")
    return fn


_SCORERS = {"critic": CriticScorer, "reward": RewardScorer, "checker": CheckerScorer,
            "entropy": EntropyScorer, "mc": MonteCarloScorer,
            "agree": AgreementScorer}


def scorer_agrees(name) -> bool:
    """Whether the --rrl_scorer of this name verifies cuts by agreement with a success of the group (its
    class's verifies_by_agreement), read from the name alone: what the front ends and the idle watch ask
    before any scorer exists."""
    return bool(getattr(_SCORERS.get(name), "verifies_by_agreement", False))


def make_scorer(name: str, **opts) -> BaseScorer:
    """Build a scorer by its --rrl_scorer name; opts are BaseScorer's keyword arguments."""
    if isinstance(name, str) and name.startswith("file:"):
        return FileScorer(name[len("file:"):], **opts)
    if name not in _SCORERS:
        raise RRLConfigError(f"--rrl_scorer: unknown scorer {name!r} (expected one of "
                             f"{', '.join(SCORER_NAMES)} or file:path.py)")
    return _SCORERS[name](**opts)
