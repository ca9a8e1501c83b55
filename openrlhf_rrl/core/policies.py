"""Selection policies: which buffer entries to restart from. Each is small; all share the one buffer.

  promise      RRL (the paper): draw proportional to priority (score, decayed by past restarts).
  passrate     Prefix Sampling, both ways: head starts (successful or verified-correct prefixes) for
               prompts whose fresh pass rate is below the target, handicaps (failed prefixes) for
               prompts above it; among those, the entries most likely to give a MIXED restart group
               (the only kind with a gradient), counted per group, then the pass rate nearest the
               target. RetrospectiveReplay adds the rest of the method: handicap candidates and cut
               control (each entry's cut moves after all-fail / all-pass groups).
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
    """Rules, in order:
    1. direction: a head start is eligible while its prompt's latest fresh pass rate is below the target
       (or unknown), a handicap while it is above; at the target a prompt needs neither;
    2. informative first: highest estimated chance of a mixed restart group (RetainedState.informative_rate,
       counted per group at the current cut: 0.5 untried, up after a mixed group, down after 0/n or n/n);
    3. then the posterior pass rate nearest the target; 4. then at random (not by age)."""

    def __init__(self, target: float = 0.5):
        self.target = target

    def eligible(self, state, fresh_rate: float | None) -> bool:
        if fresh_rate is None:
            return True
        return fresh_rate > self.target if state.handicap else fresh_rate < self.target

    def select(self, buffer, k, rng, fresh_rates=None):
        if k <= 0:
            return []
        fresh_rates = fresh_rates or {}
        t = self.target
        ranked = []
        for s in buffer.entries():
            if self.eligible(s, fresh_rates.get(s.prompt_key)):
                ranked.append((-s.informative_rate, abs(s.pass_rate - t), rng.random(), s))
        return [x[3] for x in heapq.nsmallest(k, ranked, key=lambda x: x[:3])]


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
