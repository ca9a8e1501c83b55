"""OpenRLHF's own training math, imported from the installed package, plus the three formulas
that cannot be imported without vLLM.

Reused as is (openrlhf.models): `PolicyLoss` (PPO clip, token-level aggregation and the
rollout importance-sampling correction), `ValueLoss`, `compute_approx_kl` (k1/k2/k3),
`compute_reward` (KL-shaped per-token reward with the scalar reward on the last action token),
`masked_mean`. `openrlhf.models` imports `flash_attn` at load time; on a machine without it the
CPU stand-in in `openrlhf_rrl.compat.flash_attn_shim` is registered first.

Written here: group baselines, GAE and discounted returns. OpenRLHF keeps them as methods of
`RemoteExperienceMaker` (openrlhf/trainer/ppo_utils/experience_maker.py), whose module imports
`openrlhf.trainer.ray`, which imports `vllm` at load time; the embedded runner must run without
vLLM. The formulas below follow that method's estimator names and semantics (groups are n
consecutive samples; rloo / reinforce_baseline / dr_grpo / group_norm shaping; advantage
whitening for gae / reinforce / reinforce_baseline), and tests check them against hand
computations.
"""

from __future__ import annotations

import torch

from openrlhf_rrl.compat import flash_attn_shim

flash_attn_shim.install()

from openrlhf.models.loss import PolicyLoss, ValueLoss  # noqa: E402
from openrlhf.models.utils import compute_approx_kl, compute_reward, masked_mean  # noqa: E402

__all__ = [
    "ESTIMATORS",
    "PolicyLoss",
    "ValueLoss",
    "compute_approx_kl",
    "compute_reward",
    "masked_mean",
    "shape_group_rewards",
    "gae",
    "discounted_returns",
    "whiten",
]

# Estimator names as OpenRLHF's --algo.advantage.estimator spells them.
ESTIMATORS = ("gae", "reinforce", "reinforce_baseline", "group_norm", "rloo", "dr_grpo")


def shape_group_rewards(rewards: torch.Tensor, group_sizes: list[int], estimator: str) -> torch.Tensor:
    """Subtract each group's baseline from its scalar rewards (group = consecutive rows).

    Unlike OpenRLHF's single reshape to (-1, n), groups may differ in size here, because a
    restart group and a fresh group need not hold the same number of samples."""
    out = rewards.clone().float()
    start = 0
    for size in group_sizes:
        r = out[start : start + size]
        if estimator == "rloo" and size > 1:
            out[start : start + size] = r - (r.sum() - r) / (size - 1)
        elif estimator in ("reinforce_baseline", "dr_grpo"):
            out[start : start + size] = r - r.mean()
        elif estimator == "group_norm":
            std = r.std() if size > 1 else r.new_zeros(())
            out[start : start + size] = (r - r.mean()) / (std + 1e-9)
        start += size
    return out


@torch.no_grad()
def gae(values: torch.Tensor, rewards: torch.Tensor, action_mask: torch.Tensor, gamma: float, lambd: float):
    """Generalised advantage estimation over per-token rewards; returns (advantages, returns)."""
    values = values * action_mask
    rewards = rewards * action_mask
    last = torch.zeros(values.size(0), dtype=values.dtype, device=values.device)
    advantages = torch.zeros_like(values)
    for t in reversed(range(values.size(1))):
        next_value = values[:, t + 1] if t + 1 < values.size(1) else 0.0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lambd * last
        advantages[:, t] = last
    return advantages, advantages + values


@torch.no_grad()
def discounted_returns(rewards: torch.Tensor, action_mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """REINFORCE returns: the discounted sum of the per-token rewards from each position on."""
    rewards = rewards * action_mask
    running = torch.zeros(rewards.size(0), dtype=rewards.dtype, device=rewards.device)
    returns = torch.zeros_like(rewards)
    for t in reversed(range(rewards.size(1))):
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
    return returns


def whiten(advantages: torch.Tensor, action_mask: torch.Tensor, std: bool = True) -> torch.Tensor:
    """Batch normalisation of advantages over action tokens (OpenRLHF does this for gae / reinforce / reinforce_baseline)."""
    mask = action_mask.float()
    count = mask.sum().clamp(min=1)
    mean = (advantages * mask).sum() / count
    if not std:
        return advantages - mean
    var = ((advantages - mean).pow(2) * mask).sum() / count
    return (advantages - mean) * var.clamp(min=1e-8).rsqrt()
