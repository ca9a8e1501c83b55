"""What a rollout hands back to RRL: one sampled response with its reward and optional per-token signals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


@dataclass
class Trajectory:
    prompt_key: str
    prompt_ids: Sequence[int]
    response_ids: Sequence[int]  # the FULL response: for a restart, prefix + continuation
    reward: float
    success: bool
    label: Any = None
    logprobs: Sequence[float] | None = None  # per response token, from the rollout
    values: Sequence[float] | None = None  # critic value per response position (PPO)
    entropies: Sequence[float] | None = None  # policy entropy per response token
    verified_tokens: int | None = None  # leading response tokens a step checker verified
    group_success_rate: float = 0.0  # success rate of this trajectory's group (set by RRL from the group)
    prefix_len: int = 0  # leading response tokens that came from a restart prefix
    eos: bool = True  # the response ended with EOS (its last token); False when cut by max length
    # additions to the agreed interface go after `eos`, so positional construction keeps working
    verified_steps: int | None = None  # reasoning steps in the verified tokens, when the checker says
    # --rrl_scorer agree: the successful response of the group this one agrees with for verified_tokens tokens
    # (its stop token dropped), along which cut control may move a head start later
    agreed_ids: Sequence[int] | None = None

    @property
    def eos_pos(self) -> int | None:
        return len(self.response_ids) - 1 if self.eos and len(self.response_ids) > 0 else None


def as_list(x):
    """Token ids (a list, tuple, tensor or array) as a plain list; None stays None."""
    if x is None:
        return None
    return x.tolist() if hasattr(x, "tolist") else list(x)
