"""What a runner run keeps across processes: its RunState (in the checkpoint) and its metrics file.

A resumed run loads the RunState, so its generators continue where they stopped, and truncates the
metrics file to the checkpoint's step, so the curve has no gaps or repeats.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from openrlhf_rrl.atomic import atomic_write


class RunState:
    """Everything that changes during a run and must survive a restart of the process."""

    def __init__(self, seed: int, device: torch.device | str = "cpu"):
        self.step = 0
        self.sample_gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + 17)
        self.tokens_generated = 0
        self.train_time_s = 0.0
        self.rrl_time_s = 0.0
        self.wall_s = 0.0  # the whole run's, evals included, summed over resumed segments

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "sample_gen": self.sample_gen.get_state(),
            "tokens_generated": self.tokens_generated,
            "train_time_s": self.train_time_s,
            "rrl_time_s": self.rrl_time_s,
            "wall_s": self.wall_s,
        }

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self.sample_gen.set_state(state["sample_gen"])
        self.tokens_generated = state["tokens_generated"]
        self.train_time_s = state["train_time_s"]
        self.rrl_time_s = state["rrl_time_s"]
        self.wall_s = state.get("wall_s", 0.0)  # absent from checkpoints of older versions


def write_row(fh, row: dict) -> None:
    """One metrics row (a JSON line)."""
    fh.write(json.dumps(row) + "\n")


def jsonable(obj):
    """obj as JSON can hold it (anything else as its str)."""
    return json.loads(json.dumps(obj, default=str))


def truncate_metrics(path: Path, step: int) -> None:
    """Drop rows a killed run wrote after its last checkpoint, so the resumed file has no gaps or repeats."""
    if not path.exists():
        return
    keep = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break  # a half-written last line of a killed run
            if row.get("kind") != "summary" and row.get("step", 0) <= step:
                keep.append(line if line.endswith("\n") else line + "\n")
    atomic_write(path, lambda tmp: Path(tmp).write_text("".join(keep), encoding="utf-8"))
