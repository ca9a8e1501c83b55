"""Turn a batch of prompts into group plans: which groups start fresh and which restart from a prefix.

The LAST round(share * n) fresh slots become restarts, so the batch size and the order in which
prompts are drawn stay exactly as without RRL (the displaced prompts are simply not rolled out
this step): a run with replay and one without see the same prompt stream and the same compute.

A short batch (the last of a pass over the prompts) can ask for `fill` extra slots that only restarts
take, appended after the prompts, so it trains at full size; with `displace=False` no prompt gives
its slot up (a prompt displaced then could not be rolled out later in the pass).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from .buffer import ReplayBuffer


@dataclass
class PromptRef:
    key: str
    prompt_ids: tuple
    label: Any = None


@dataclass
class GroupPlan:
    prompt: PromptRef
    prefix_ids: tuple = ()
    prefix_logprobs: tuple | None = None
    entry_key: str | None = None  # the buffer entry this group restarts from
    temperature: float | None = None  # sampling temperature for this group; None = the run's own

    @property
    def is_restart(self) -> bool:
        return self.entry_key is not None


def _seed_for(seed: int, step: int) -> int:
    # a plain integer mix: stable across processes (str hashing is salted), distinct per (seed, step)
    return (int(seed) * 1_000_003 + int(step)) & 0xFFFFFFFFFFFF


def restart_slots(share: float, n_prompts: int) -> int:
    """Restart groups in a batch of n_prompts groups at this share (rounded, at most the batch)."""
    return min(n_prompts, int(math.floor(share * n_prompts + 0.5)))


class ReplayPlanner:
    def __init__(self, schedule, policy, max_restarts_per_prompt: int = 1, seed: int = 0,
                 restart_temperature: float | None = None):
        self.schedule = schedule
        self.policy = policy
        self.max_restarts_per_prompt = max_restarts_per_prompt
        self.seed = seed
        self.restart_temperature = restart_temperature
        self.last_slots = 0  # restart slots the schedule asked for at the last plan()

    def slots(self, n_prompts: int, step: int) -> int:
        return restart_slots(self.schedule(step), n_prompts)

    def plan(self, prompts: list[PromptRef], step: int, buffer: ReplayBuffer,
             fresh_rates: dict | None = None, fill: int = 0, displace: bool = True) -> list[GroupPlan]:
        n = len(prompts)
        want = (self.slots(n, step) if displace else 0) + max(0, fill)
        self.last_slots = want
        chosen = []
        if want > 0 and len(buffer) > 0:
            rng = random.Random(_seed_for(self.seed, step))
            # Draw a few more entries than slots (the per-prompt quota skips some), and draw again,
            # wider, only when that was not enough: most steps then touch ~2x slots entries, not
            # slots x per_prompt_capacity.
            ask = min(len(buffer), 2 * want)
            while True:
                chosen, per_prompt = [], {}
                for entry in self.policy.select(buffer, ask, rng, fresh_rates or {}):
                    if per_prompt.get(entry.prompt_key, 0) >= self.max_restarts_per_prompt:
                        continue
                    per_prompt[entry.prompt_key] = per_prompt.get(entry.prompt_key, 0) + 1
                    chosen.append(entry)
                    if len(chosen) == want:
                        break
                reachable = min(len(buffer), want * max(1, buffer.per_prompt_capacity))
                if len(chosen) == want or ask >= reachable:
                    break
                ask = min(reachable, 4 * ask)
        displaced = max(0, len(chosen) - max(0, fill))  # the fill slots are taken first
        plans = [GroupPlan(prompt=p) for p in prompts[: n - displaced]]
        for e in chosen:
            plans.append(GroupPlan(prompt=PromptRef(e.prompt_key, e.prompt_ids, e.label), prefix_ids=e.prefix_ids,
                                   prefix_logprobs=e.prefix_logprobs, entry_key=e.key,
                                   temperature=self.restart_temperature))
        return plans
