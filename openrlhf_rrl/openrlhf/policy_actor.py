"""OpenRLHF's policy actor with the token-mean's normaliser counting restart prefixes (--rrl_loss_norm),
and the policy and reference actors taking per-row temperatures (row_temperature.py).

OpenRLHF averages the token-level policy loss over the optimizer step's action tokens:
ActorPPOTrainer.ppo_train pairs each micro-batch with `iter_grad_accum_global_norm(..., mask_fn)`,
whose normaliser reads only `mask_fn(e).sum()` (the token count) and each row's `sum > 0` (the
sample count). A restart row's prefix lies outside its action mask, so the more of a batch is
restarts, the smaller that count and the more each trained token weighs: replay would enlarge the
update. With --rrl_loss_norm response, during fit() in this actor's process only, mask_fn's mask gets
one more column holding each row's masked prefix tokens (experience_maker.MASKED_PREFIX_KEY), so the
count is what it would be had every response been sampled in full this step; the sample count and
everything else in the loss stay OpenRLHF's. The runner does the same (runner.trainer.loss_denominator).
"""

from __future__ import annotations

import contextlib

import torch
from openrlhf.trainer.ray import launcher, ppo_actor
from openrlhf.utils.logging_utils import init_logger

from .experience_maker import MASKED_PREFIX_KEY
from .row_temperature import per_sample, row_temperatures, tempered_rows

logger = init_logger(__name__)


def counts_prefix(args) -> bool:
    """Whether this run's loss normaliser counts masked prefix tokens: --rrl_enable, --rrl_loss_norm response,
    and the token-mean loss (with seq-mean-token-mean each row weighs the same whatever its length)."""
    rrl = getattr(args, "rrl", None)
    return (bool(getattr(rrl, "enable", False)) and getattr(rrl, "loss_norm", "response") == "response"
            and args.actor.loss_agg_mode == "token-mean")


def response_token_mask(experience, action_mask: torch.Tensor) -> torch.Tensor:
    """What the normaliser reads instead of the action mask: row sums = action tokens + masked prefix tokens.
    A row with no action token stays empty (OpenRLHF's sample count is unchanged)."""
    prefix = per_sample(experience.info, MASKED_PREFIX_KEY)
    if prefix is None:
        return action_mask
    prefix = prefix.to(action_mask.device).reshape(-1, 1)
    mask = action_mask.reshape(action_mask.shape[0], -1).float()
    return torch.cat([mask, prefix * (mask.sum(dim=-1, keepdim=True) > 0)], dim=1)


def counting_global_norm(original):
    """iter_grad_accum_global_norm with mask_fn's mask replaced by response_token_mask."""
    def iter_grad_accum_global_norm(data_iter, strategy, accumulated_gradient, mask_fn):
        return original(data_iter, strategy, accumulated_gradient, lambda e: response_token_mask(e, mask_fn(e)))

    return iter_grad_accum_global_norm


@contextlib.contextmanager
def prefix_counting_norm():
    """ppo_actor's normaliser counts masked prefix tokens for the duration (ppo_train reads it at call time)."""
    original = ppo_actor.iter_grad_accum_global_norm
    ppo_actor.iter_grad_accum_global_norm = counting_global_norm(original)
    try:
        yield
    finally:
        ppo_actor.iter_grad_accum_global_norm = original


@contextlib.contextmanager
def tempered_training_steps(trainer):
    """The trainer's training_step divides each row's logits by the row's sampling temperature (when its
    experience carries them: --rrl_logprob_temperature sampled) for the duration."""
    original = trainer.training_step

    def training_step(experience, *args, **kwargs):
        with tempered_rows(trainer.actor, row_temperatures(experience.info)):
            return original(experience, *args, **kwargs)

    trainer.training_step = training_step
    try:
        yield
    finally:
        trainer.training_step = original


class ReplayPolicyModelActor(ppo_actor.PolicyModelActor.__ray_actor_class__):
    def init_model_from_pretrained(self, strategy, *args, **kwargs):
        out = super().init_model_from_pretrained(strategy, *args, **kwargs)
        if counts_prefix(strategy.args) and strategy.is_rank_0():
            logger.info("[openrlhf-rrl] --rrl_loss_norm response: the token-mean counts restart prefix tokens")
        return out

    def forward(self, *args, row_temperature=None, **kwargs):
        with tempered_rows(self.actor, row_temperature):
            return super().forward(*args, **kwargs)

    def fit(self, kl_ctl: float = 0):
        with contextlib.ExitStack() as stack:
            if getattr(getattr(self.strategy.args, "rrl", None), "logprob_temperature", "run") == "sampled":
                stack.enter_context(tempered_training_steps(self.trainer))
            if counts_prefix(self.strategy.args):
                stack.enter_context(prefix_counting_norm())
            return super().fit(kl_ctl)


class ReplayReferenceModelActor(launcher.ReferenceModelActor.__ray_actor_class__):
    def forward(self, *args, row_temperature=None, **kwargs):
        with tempered_rows(self.model, row_temperature):
            return super().forward(*args, **kwargs)
