"""Per-step RRL metrics, logged under rrl/*: enough to see both the effect and the cost of replay,
and to catch buffer takeover early (many untried entries, few informative restart groups)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .retirement import RETIRE_REASONS


def is_informative(successes) -> bool:
    """A group with mixed outcomes: the only kind that gives a non-zero group-baseline advantage."""
    n = len(successes)
    k = sum(1 for s in successes if s)
    return 0 < k < n


@dataclass
class StepMetrics:
    buffer_size: int = 0
    replay_share: float = 0.0  # restart groups / all groups this step (what actually ran)
    target_share: float = 0.0  # what the schedule asked for
    restart_groups: int = 0
    retry_groups: int = 0  # restart groups that re-sampled an unsolved hard prompt from scratch (--rrl_retry_unsolved)
    restart_success: float = 0.0  # success rate over all restart continuations (0 when none)
    revived_prompts: int = 0  # prompts first ever solved through a restart, this step
    new_tokens_saved: int = 0  # prefix tokens reused instead of generated (prefix length x continuations)
    retired: dict = field(default_factory=lambda: {r: 0 for r in RETIRE_REASONS})  # this step, by reason
    overhead_s: float = 0.0  # wall time spent in RRL's plan + observe this step
    informative_restart_groups: float = 0.0  # share of restart groups with mixed outcomes
    informative_fresh_groups: float = 0.0  # share of fresh groups with mixed outcomes
    untried: int = 0  # buffer entries never restarted
    candidates: int = 0  # states the scorer proposed this step
    admitted: int = 0  # new entries that entered the buffer this step
    cuts_moved_later: int = 0  # cut control: entries whose cut moved later this step (harder head start / handicap)
    cuts_moved_earlier: int = 0  # ... moved earlier
    idle_steps: int = 0  # steps in a row that admitted nothing and ran no restart (core/idle_watch.py)

    def to_dict(self) -> dict:
        d = {
            "rrl/buffer_size": self.buffer_size,
            "rrl/replay_share": self.replay_share,
            "rrl/target_share": self.target_share,
            "rrl/restart_groups": self.restart_groups,
            "rrl/retry_groups": self.retry_groups,
            "rrl/restart_success": self.restart_success,
            "rrl/revived_prompts": self.revived_prompts,
            "rrl/new_tokens_saved": self.new_tokens_saved,
            "rrl/overhead_s": self.overhead_s,
            "rrl/informative_restart_groups": self.informative_restart_groups,
            "rrl/informative_fresh_groups": self.informative_fresh_groups,
            "rrl/untried": self.untried,
            "rrl/candidates": self.candidates,
            "rrl/admitted": self.admitted,
            "rrl/cuts_moved_later": self.cuts_moved_later,
            "rrl/cuts_moved_earlier": self.cuts_moved_earlier,
            "rrl/idle_steps": self.idle_steps,
        }
        for reason in RETIRE_REASONS:
            d[f"rrl/retired_{reason}"] = self.retired.get(reason, 0)
        return d
