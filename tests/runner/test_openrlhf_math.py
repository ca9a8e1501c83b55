"""The runner's training math: OpenRLHF's own functions really come from the installed package, and
the three formulas written here (group baselines, GAE, returns) match hand computations."""

from __future__ import annotations

import inspect

import pytest
import torch

from openrlhf_rrl.runner import openrlhf_math as orl


def test_loss_and_kl_come_from_the_installed_openrlhf():
    for obj in (orl.PolicyLoss, orl.ValueLoss, orl.compute_approx_kl, orl.compute_reward, orl.masked_mean):
        assert inspect.getmodule(obj).__name__.startswith("openrlhf.models"), obj


def test_group_baselines_match_hand_computation():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    sizes = [4, 2]
    base = orl.shape_group_rewards(r, sizes, "reinforce_baseline")
    assert base.tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25, 0.0, 0.0])
    rloo = orl.shape_group_rewards(r, sizes, "rloo")
    assert rloo.tolist() == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3, 0.0, 0.0])
    grpo = orl.shape_group_rewards(r, sizes, "group_norm")
    std = torch.tensor([1.0, 0.0, 0.0, 0.0]).std().item()
    assert grpo[:4].tolist() == pytest.approx([0.75 / std, -0.25 / std, -0.25 / std, -0.25 / std], rel=1e-5)
    assert grpo[4:].tolist() == pytest.approx([0.0, 0.0])  # an all-pass group carries no signal
    assert torch.equal(orl.shape_group_rewards(r, sizes, "reinforce"), r)


def test_gae_matches_the_recursion_by_hand():
    values = torch.tensor([[0.5, 0.2, 0.1]])
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    mask = torch.ones(1, 3)
    gamma, lam = 0.9, 0.8
    adv, ret = orl.gae(values, rewards, mask, gamma, lam)
    d2 = 1.0 - 0.1
    d1 = 0.0 + gamma * 0.1 - 0.2
    d0 = 0.0 + gamma * 0.2 - 0.5
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    assert adv[0].tolist() == pytest.approx([a0, a1, a2])
    assert ret[0].tolist() == pytest.approx([a0 + 0.5, a1 + 0.2, a2 + 0.1])


def test_masked_positions_carry_no_reward_or_value():
    values = torch.tensor([[9.0, 0.3, 0.2]])
    rewards = torch.tensor([[5.0, 0.0, 1.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0]])  # position 0 is a restart prefix
    adv, _ = orl.gae(values, rewards, mask, 1.0, 1.0)
    assert adv[0, 1:].tolist() == pytest.approx([1.0 - 0.3, 1.0 - 0.2])
    ret = orl.discounted_returns(rewards, mask, 1.0)
    assert ret[0].tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_reward_lands_on_the_last_action_token_via_openrlhf():
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    kl = torch.zeros(1, 4)
    token_rewards = orl.compute_reward(torch.tensor([2.0]), 0.0, kl, action_mask=mask)
    assert token_rewards.tolist() == [[0.0, 0.0, 2.0, 0.0]]


def test_whiten_normalises_over_action_tokens_only():
    adv = torch.tensor([[1.0, 2.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    out = orl.whiten(adv, mask)
    assert out[0, :2].tolist() == pytest.approx([-1.0, 1.0], abs=1e-4)
    assert orl.whiten(adv, mask, std=False)[0, :2].tolist() == pytest.approx([-0.5, 0.5])
