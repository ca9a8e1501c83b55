"""The runner's learning-rate schedule is OpenRLHF's default where asked (checked against transformers' own
scheduler, which OpenRLHF uses) and constant otherwise; the flags reach the trainer."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from openrlhf_rrl.runner.cli import job_configs, parse
from openrlhf_rrl.runner.lr_schedule import lr_factor


@pytest.mark.parametrize("total, warmup_ratio, min_ratio", [(400, 0.03, 0.1), (37, 0.1, 0.0), (5, 0.0, 0.2)])
def test_cosine_with_min_lr_is_transformers_schedule(total, warmup_ratio, min_ratio):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = get_cosine_with_min_lr_schedule_with_warmup(
        opt, num_warmup_steps=math.ceil(total * warmup_ratio),  # as OpenRLHF's strategy computes it
        num_training_steps=total, min_lr_rate=min_ratio)
    for done in range(total):
        assert lr_factor(done, total, "cosine_with_min_lr", warmup_ratio, min_ratio) == pytest.approx(
            opt.param_groups[0]["lr"], abs=1e-9), done
        opt.step()
        reference.step()


def test_constant_is_one_at_every_step():
    assert {lr_factor(d, 50, "constant", 0.03, 0.1) for d in range(50)} == {1.0}


def test_optimizer_flags_reach_the_trainer_and_default_to_the_runners_own():
    args, rrl = parse([])
    cfg = job_configs(args, rrl)[0]["cfg"]
    assert (cfg.lr_scheduler, cfg.adam_betas) == ("constant", (0.9, 0.999))
    args, rrl = parse(["--actor.lr_scheduler", "cosine_with_min_lr", "--actor.adam.betas", "0.9", "0.95",
                       "--actor.lr_warmup_ratio", "0.05", "--actor.min_lr_ratio", "0.2"])
    cfg = job_configs(args, rrl)[0]["cfg"]
    assert (cfg.lr_scheduler, cfg.adam_betas, cfg.lr_warmup_ratio, cfg.min_lr_ratio) == (
        "cosine_with_min_lr", (0.9, 0.95), 0.05, 0.2)
    with pytest.raises(SystemExit):
        parse(["--actor.lr_scheduler", "linear"])
