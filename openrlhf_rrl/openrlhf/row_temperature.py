"""Per-row temperatures in OpenRLHF's log-prob passes (--rrl_logprob_temperature sampled).

OpenRLHF's Actor divides every row's logits by --rollout.temperature, while a hot restart
(--rrl_restart_temperature) was sampled by vLLM at its own temperature, and vLLM's log-probs
(processed_logprobs, used by the importance correction) are at that temperature. With `sampled`,
each sample carries the temperature it was drawn at (Experience.info[TEMPERATURE_KEY]); the policy's
and the reference's forwards, in the experience maker and in the training step, divide each row's
logits by it instead, so a hot row is on-policy for the tempered policy: its importance weight is 1
at its first update. The scaling is a forward hook on the Actor's inner model, with the Actor's own
scalar temperature set to 1 for the call (one division, in float32, as the Actor does it).
"""

from __future__ import annotations

import contextlib

import torch

# Experience.info key: per sample, the temperature it was sampled at (split and merged per sample by
# OpenRLHF's replay buffer, so it reaches the training step with its row; logged as its batch mean)
TEMPERATURE_KEY = "rrl/temperature"


def per_sample(info, key) -> torch.Tensor | None:
    """An Experience.info entry as a (B,) float32 tensor, or None when the experience does not carry it."""
    values = info.get(key) if info else None
    if values is None:
        return None
    if isinstance(values, list):  # the replay buffer's merge keeps per-sample 0-d tensors as a list
        values = [float(v) for v in values]
    return torch.as_tensor(values, dtype=torch.float32).reshape(-1)


def row_temperatures(info) -> torch.Tensor | None:
    """(B,) sampling temperatures from an experience's info, or None when the run does not carry them."""
    return per_sample(info, TEMPERATURE_KEY)


def _actor_module(model):
    """OpenRLHF's Actor inside a DeepSpeed engine (or the Actor itself)."""
    return getattr(model, "module", model)


@contextlib.contextmanager
def tempered_rows(model, temps: torch.Tensor | None):
    """For the block, `model` (an OpenRLHF Actor, or its DeepSpeed engine) divides row b's logits by
    temps[b] instead of by its own temperature. No-op when temps is None."""
    if temps is None:
        yield
        return
    actor = _actor_module(model)

    def divide(module, inputs, output):
        logits = output["logits"]
        if logits.shape[0] != temps.shape[0]:
            raise ValueError(f"--rrl_logprob_temperature sampled: {temps.shape[0]} row temperatures for a forward "
                             f"of {logits.shape[0]} rows (packed samples are not supported)")
        output["logits"] = logits.float() / temps.to(logits.device)[:, None, None]
        return output

    handle = actor.model.register_forward_hook(divide)
    saved, actor.temperature = actor.temperature, 1.0
    try:
        yield
    finally:
        actor.temperature = saved
        handle.remove()
