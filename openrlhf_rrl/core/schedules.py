"""Replay share over training steps: what fraction of a batch's groups restart from the buffer.

Replay only pays once the policy can finish what it once started, so the share is 0 before
start_step; a linear warm-up avoids a sudden change of the batch mix; cosine hands the batch back
to fresh prompts towards the end. AdaptiveShare ("auto") steers by the quantity that the
measurements (docs/measurements/) found matters: the share of restart groups with MIXED outcomes
(the only groups with a gradient).
"""

from __future__ import annotations

import math

from .errors import RRLConfigError

SCHEDULE_KINDS = ("constant", "linear", "cosine")


def _check_share(share, flag="--rrl_replay_share"):
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
        raise RRLConfigError(f"{flag}: expected a number in [0, 1] or 'auto', got {share!r}")


def check_cosine_span(total_steps: int | None, start_step: int, warmup_steps: int) -> None:
    """The cosine schedule decays over the steps after the warm-up, so it needs the run's length."""
    if total_steps is None or total_steps <= start_step + warmup_steps:
        raise RRLConfigError(f"--rrl_total_steps: the cosine schedule needs total_steps > start_step + "
                             f"warmup_steps ({start_step + warmup_steps}), got {total_steps!r}")


class ShareSchedule:
    def __init__(self, kind: str = "constant", share: float = 0.25, start_step: int = 0,
                 warmup_steps: int = 0, total_steps: int | None = None):
        if kind not in SCHEDULE_KINDS:
            raise RRLConfigError(f"--rrl_share_schedule: expected one of {', '.join(SCHEDULE_KINDS)}, got {kind!r}")
        _check_share(share)
        if start_step < 0:
            raise RRLConfigError(f"--rrl_start_step: expected an integer >= 0, got {start_step!r}")
        if warmup_steps < 0:
            raise RRLConfigError(f"--rrl_warmup_steps: expected an integer >= 0, got {warmup_steps!r}")
        if kind == "cosine":
            check_cosine_span(total_steps, start_step, warmup_steps)
        self.kind, self.share = kind, float(share)
        self.start_step, self.warmup_steps, self.total_steps = start_step, warmup_steps, total_steps

    @property
    def nominal(self) -> float:
        """The share the schedule aims at (for admission control before replay starts)."""
        return self.share

    def __call__(self, step: int) -> float:
        if step < self.start_step:
            return 0.0
        if self.kind == "constant":
            return self.share
        t = step - self.start_step
        if self.warmup_steps > 0 and t < self.warmup_steps:
            return self.share * t / self.warmup_steps
        if self.kind == "linear":
            return self.share
        span = self.total_steps - self.start_step - self.warmup_steps
        x = min(1.0, (t - self.warmup_steps) / span)
        return self.share * 0.5 * (1.0 + math.cos(math.pi * x))

    def update(self, informative_restart: float | None, informative_fresh: float | None) -> None:
        """Fixed schedules ignore feedback; present so callers treat both kinds alike."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, d: dict) -> None:
        pass


class AdaptiveShare:
    """Raise the share while restart groups are more often mixed (informative) than fresh ones,
    lower it otherwise; both rates are smoothed (EMA) and the share stays in [lo, hi]."""

    def __init__(self, lo: float = 0.0, hi: float = 0.5, init: float | None = None, step_size: float = 0.02,
                 smoothing: float = 0.8, start_step: int = 0):
        _check_share(lo, "--rrl_share_min")
        _check_share(hi, "--rrl_share_max")
        if lo > hi:
            raise RRLConfigError(f"--rrl_share_min: expected <= --rrl_share_max ({hi}), got {lo}")
        self.lo, self.hi, self.step_size, self.smoothing = float(lo), float(hi), step_size, smoothing
        self.start_step = start_step
        self.share = (lo + hi) / 2 if init is None else min(hi, max(lo, init))
        self.ema_restart: float | None = None
        self.ema_fresh: float | None = None

    @property
    def nominal(self) -> float:
        return self.share

    def __call__(self, step: int) -> float:
        return 0.0 if step < self.start_step else self.share

    def update(self, informative_restart: float | None, informative_fresh: float | None) -> None:
        """Feed this step's shares of mixed-outcome groups; None = no such groups this step."""
        a = self.smoothing
        if informative_fresh is not None:
            self.ema_fresh = informative_fresh if self.ema_fresh is None else a * self.ema_fresh + (1 - a) * informative_fresh
        if informative_restart is None or self.ema_fresh is None:
            return
        self.ema_restart = informative_restart if self.ema_restart is None else a * self.ema_restart + (1 - a) * informative_restart
        if self.ema_restart > self.ema_fresh:
            self.share = min(self.hi, self.share + self.step_size)
        elif self.ema_restart < self.ema_fresh:
            self.share = max(self.lo, self.share - self.step_size)

    def state_dict(self) -> dict:
        return {"share": self.share, "ema_restart": self.ema_restart, "ema_fresh": self.ema_fresh}

    def load_state_dict(self, d: dict) -> None:
        self.share = float(d.get("share", self.share))
        self.ema_restart = d.get("ema_restart")
        self.ema_fresh = d.get("ema_fresh")
