"""The learning-rate schedule of the runner's optimizers: constant (its measurements) or OpenRLHF's default,
so a runner run can train under the same schedule as a launcher run."""

from __future__ import annotations

import math

LR_SCHEDULERS = ("constant", "cosine_with_min_lr")


def lr_factor(done: int, total: int, scheduler: str, warmup_ratio: float, min_ratio: float) -> float:
    """The learning-rate multiplier after `done` of `total` optimizer steps. cosine_with_min_lr is OpenRLHF's
    default: a linear warm-up over ceil(warmup_ratio x total) steps from 0, then a half cosine from 1 down
    to min_ratio at the last step."""
    if scheduler == "constant":
        return 1.0
    warmup = math.ceil(warmup_ratio * total)
    if done < warmup:
        return done / warmup
    progress = min(1.0, (done - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
