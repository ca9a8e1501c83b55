"""Selection policies: which buffer entries to restart from. Each is small; all share the one buffer.

  promise      RRL (the paper): draw proportional to priority (score, decayed by past restarts).
  passrate     Prefix Sampling: entries whose estimated pass rate is nearest the target (0.5): a
               binary reward carries most signal there; untried entries (estimate 0.5) go first.
  uncertainty  Pros: Thompson-sample each entry's pass rate from its Beta posterior, with a prior
               centred on its prompt's fresh success rate; pick the draws nearest the target.

select(buffer, k, rng, fresh_rates) returns up to k entries, best first; the planner may ask for
more than it needs and skip entries of prompts that already have their restart quota.
"""

from __future__ import annotations

import heapq
from typing import Protocol

from .buffer import ReplayBuffer
from .errors import RRLConfigError
from .state import RetainedState

POLICY_NAMES = ("promise", "passrate", "uncertainty")


class Policy(Protocol):
    def select(self, buffer: ReplayBuffer, k: int, rng, fresh_rates: dict) -> list[RetainedState]: ...


class PromisePolicy:
    def select(self, buffer, k, rng, fresh_rates=None):
        return buffer.sample(k, rng)


class PassRatePolicy:
    def __init__(self, target: float = 0.5):
        self.target = target

    def select(self, buffer, k, rng, fresh_rates=None):
        if k <= 0:
            return []
        t = self.target
        # random tie-break so equally close entries (e.g. all untried) are not chosen by age
        ranked = ((abs(s.pass_rate - t), rng.random(), s) for s in buffer.entries())
        return [s for _, _, s in heapq.nsmallest(k, ranked, key=lambda x: (x[0], x[1]))]


class UncertaintyPolicy:
    def __init__(self, target: float = 0.5, prior_strength: float = 2.0):
        self.target = target
        self.prior_strength = prior_strength

    def prior(self, fresh_rate: float | None) -> tuple[float, float]:
        """Beta prior worth `prior_strength` pseudo-samples at the prompt's fresh rate (0.5 if unknown)."""
        r = 0.5 if fresh_rate is None else min(1.0, max(0.0, fresh_rate))
        m = self.prior_strength
        return 0.5 + m * r, 0.5 + m * (1.0 - r)

    def select(self, buffer, k, rng, fresh_rates=None):
        if k <= 0:
            return []
        fresh_rates = fresh_rates or {}
        t = self.target
        draws = []
        for s in buffer.entries():
            a, b = s.posterior(*self.prior(fresh_rates.get(s.prompt_key)))
            draws.append((abs(_beta(rng, a, b) - t), rng.random(), s))
        return [s for _, _, s in heapq.nsmallest(k, draws, key=lambda x: (x[0], x[1]))]


def _beta(rng, a, b):
    if hasattr(rng, "betavariate"):
        return rng.betavariate(a, b)
    return float(rng.beta(a, b))  # numpy Generator


_POLICIES = {"promise": PromisePolicy, "passrate": PassRatePolicy, "uncertainty": UncertaintyPolicy}


def make_policy(name: str, target_pass_rate: float = 0.5):
    if name not in _POLICIES:
        raise RRLConfigError(f"--rrl_policy: unknown policy {name!r} (expected one of {', '.join(POLICY_NAMES)})")
    if name == "promise":
        return PromisePolicy()
    return _POLICIES[name](target=target_pass_rate)
