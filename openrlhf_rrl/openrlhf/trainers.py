"""OpenRLHF's trainers (sync and async) with the replay-aware generator and experience maker attached.

No registry exists for a custom experience maker in OpenRLHF, so the trainer classes are
subclassed and re-wrapped with ray.remote (install.py puts them where train() looks them up).
Each subclass only swaps its samples generator and experience maker after OpenRLHF's own
__init__, adds the rrl/* metrics to the step's status (OpenRLHF's wandb / tensorboard logging
then writes them as train/rrl/*), saves the buffer with every --ckpt.* checkpoint and restores it
on resume.
"""

from __future__ import annotations

import math
import os

import ray
from openrlhf.trainer import ppo_trainer_async
from openrlhf.trainer.ppo_trainer import PPOTrainer
from openrlhf.utils.logging_utils import init_logger

from ..config import RRLConfig
from .buffer_actor import ReplayBufferClient
from .buffer_actor import saved_steps as buffer_files_steps
from .experience_maker import ReplayExperienceMaker
from .samples_generator import DEFERRED_ATTR, ReplaySamplesGenerator
from .startup_check import episode_stretch

logger = init_logger(__name__)


# ---------------------------------------------------------------------- checkpoint files
def buffer_dir(args) -> str:
    return os.path.join(args.ckpt.path, "rrl_buffer")


def buffer_file(args, global_step: int) -> str:
    return os.path.join(buffer_dir(args), f"global_step{int(global_step)}.jsonl")


def saved_steps(args) -> list[int]:
    return buffer_files_steps(buffer_dir(args))


# the key under a checkpoint's data_loader_state_dict that holds the displaced prompts not yet rolled out
# (the dataloader's own state counts them as consumed); the generator takes it out before the loader loads
DEFERRED_KEY = "rrl_deferred_prompts"


def with_deferred(client_states, deferred):
    """client_states with the deferred prompts added to its dataloader state (a copy; None stays None)."""
    if not client_states or not isinstance(client_states.get("data_loader_state_dict"), dict):
        return client_states
    out = dict(client_states)
    out["data_loader_state_dict"] = dict(client_states["data_loader_state_dict"], **{DEFERRED_KEY: list(deferred)})
    return out


def pop_deferred(loader_state) -> list:
    """Take the deferred prompts out of a checkpoint's dataloader state (in place); [] if none."""
    return [tuple(p) for p in loader_state.pop(DEFERRED_KEY, [])] if isinstance(loader_state, dict) else []


def stretched_max_steps(max_steps: int, args) -> int:
    """OpenRLHF's step count for the learning-rate schedule, as long as an episode with deferred
    displaced prompts can get (startup_check.episode_stretch)."""
    return int(math.ceil(max_steps * episode_stretch(args, RRLConfig.from_args(args))))


def make_samples_generator(strategy, dataloader, eval_dataloader, tokenizer, vllm_engines, buffer):
    config = RRLConfig.from_args(strategy.args)
    return ReplaySamplesGenerator(strategy=strategy, prompts_dataloader=dataloader, eval_dataloader=eval_dataloader,
                                  tokenizer=tokenizer, vllm_engines=vllm_engines, buffer=buffer,
                                  train_prefix=config.train_prefix,
                                  defer_displaced=config.displaced_prompts == "defer",
                                  row_temperatures=config.logprob_temperature == "sampled")


# ---------------------------------------------------------------------- shared by the trainers
def make_buffer_client(args, owner: bool, tokenizer=None) -> ReplayBufferClient:
    config = RRLConfig.from_args(args)
    stops = sorted({t for t in (getattr(tokenizer, "eos_token_id", None), getattr(tokenizer, "pad_token_id", None))
                    if isinstance(t, int)})
    restore = None
    if owner and config.buffer_path and os.path.exists(config.buffer_path) and not args.ckpt.load_enable:
        restore = config.buffer_path  # warm start from a buffer of another run
    # the driver's node (launch.py records it) and a rescue file beside the checkpoints' buffer files
    return ReplayBufferClient(config.to_dict(), owner=owner, restore_path=restore, stop_token_ids=stops,
                              node_id=getattr(args.rrl, "driver_node_id", None),
                              rescue_path=os.path.join(buffer_dir(args), "rescue.jsonl"))


class ReplayTrainerMixin:
    """train_step / checkpoint overrides shared by the sync PPOTrainer and the async TrainingActor."""

    def _attach_replay(self, vllm_engines):
        self.rrl_config = RRLConfig.from_args(self.args)
        self.rrl = make_buffer_client(self.args, owner=True, tokenizer=self.tokenizer)
        self.experience_maker = ReplayExperienceMaker(
            self.actor_model_group, self.critic_model_group, self.reward_model_group, self.reference_model_group,
            self.kl_ctl, self.strategy, self.tokenizer, buffer=self.rrl, config=self.rrl_config)
        self._deferred = []  # displaced prompts not yet rolled out, as of the last trained batch
        if hasattr(self, "samples_generator"):  # the sync trainer generates in-process
            self.samples_generator = make_samples_generator(
                self.strategy, self.prompts_dataloader, self.eval_dataloader, self.tokenizer, vllm_engines, self.rrl)

    def train_step(self, rollout_samples, global_step):
        if rollout_samples:
            self._deferred = getattr(rollout_samples[0], DEFERRED_ATTR, None) or []
        status, global_step = super().train_step(rollout_samples, global_step)
        status.update(self.experience_maker.pop_metrics())
        return status, global_step

    def save_logs_and_checkpoints(self, global_step, logs_dict=None, client_states=None):
        super().save_logs_and_checkpoints(global_step, logs_dict, with_deferred(client_states, self._deferred))
        if global_step % self.args.ckpt.save_steps == 0:
            if self.rrl.save(buffer_file(self.args, global_step)):
                # as many buffer files as OpenRLHF keeps checkpoints, pruned on the node that wrote them
                self.rrl.prune(buffer_dir(self.args), self.args.ckpt.max_num)
            if self.rrl_config.buffer_path:
                self.rrl.save(self.rrl_config.buffer_path)
                self.rrl.last_saved = buffer_file(self.args, global_step)

    def init_checkpoint_states(self):
        states = super().init_checkpoint_states()
        if hasattr(self, "samples_generator"):  # sync: the generator is here (async: it reads them in load_state_dict)
            self.samples_generator.restore_deferred(pop_deferred(states.get("data_loader_state_dict")))
        step = int(states.get("global_step", 0) or 0)
        if step > 0:
            earlier = [s for s in saved_steps(self.args) if s <= step]
            if not earlier:
                logger.warning(f"[openrlhf-rrl] resuming at step {step} with no saved replay buffer under "
                               f"{buffer_dir(self.args)}: starting with an empty buffer")
            elif self.rrl.load(buffer_file(self.args, earlier[-1])):
                logger.info(f"[openrlhf-rrl] replay buffer restored from {buffer_file(self.args, earlier[-1])}")
        return states


class ReplayPPOTrainer(ReplayTrainerMixin, PPOTrainer.__ray_actor_class__):
    def __init__(self, pretrain, strategy, actor_model_group, critic_model_group, reward_model_group,
                 reference_model_group, vllm_engines, **generate_kwargs):
        super().__init__(pretrain, strategy, actor_model_group, critic_model_group, reward_model_group,
                         reference_model_group, vllm_engines, **generate_kwargs)
        self._attach_replay(vllm_engines)

    def get_max_steps(self):
        return stretched_max_steps(super().get_max_steps(), self.args)


class ReplayTrainingActor(ReplayTrainerMixin, ppo_trainer_async.TrainingActor.__ray_actor_class__):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._attach_replay(kwargs.get("vllm_engines"))

    def broadcast_to_vllm(self):
        """OpenRLHF's own, called through this class. Ray wraps every actor method in a tracing shim that
        it pickles by value; OpenRLHF's TrainingActor.broadcast_to_vllm uses a bare super(), and its
        by-value copy would point at a copy of TrainingActor that is not among this class's bases."""
        return ppo_trainer_async.TrainingActor.__ray_actor_class__.broadcast_to_vllm(self)


class ReplayGenerateSamplesActor(ppo_trainer_async.GenerateSamplesActor.__ray_actor_class__):
    def __init__(self, pretrain, strategy, vllm_engines, **kwargs):
        super().__init__(pretrain, strategy, vllm_engines, **kwargs)
        self.samples_generator = make_samples_generator(
            strategy, self.prompts_dataloader, self.eval_dataloader, self.samples_generator.tokenizer, vllm_engines,
            make_buffer_client(strategy.args, owner=False))

    def get_max_steps(self):
        return stretched_max_steps(super().get_max_steps(), self.args)

    def load_state_dict(self, state_dict):
        self.samples_generator.restore_deferred(pop_deferred(state_dict))
        return super().load_state_dict(state_dict)


class ReplayPPOTrainerAsync(ppo_trainer_async.PPOTrainerAsync.__ray_actor_class__):
    """PPOTrainerAsync builds its generator and training actors from module globals in its own
    __init__: point those at the replay-aware ones for the duration of that call."""

    def __init__(self, *args, **kwargs):
        saved = ppo_trainer_async.GenerateSamplesActor, ppo_trainer_async.TrainingActor
        ppo_trainer_async.GenerateSamplesActor = ray.remote(ReplayGenerateSamplesActor)
        ppo_trainer_async.TrainingActor = ray.remote(ReplayTrainingActor)
        try:
            super().__init__(*args, **kwargs)
        finally:
            ppo_trainer_async.GenerateSamplesActor, ppo_trainer_async.TrainingActor = saved
