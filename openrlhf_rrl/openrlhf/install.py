"""Put the replay-aware classes where OpenRLHF's train() looks them up, in the launcher's process.

train() imports PPOTrainer / PPOTrainerAsync lazily and create_vllm_engines() reads RolloutRayActor
from its module at call time, so replacing those three module attributes before train() runs is
enough; Ray ships the subclasses to the workers by reference (openrlhf_rrl is importable there).
train_ppo_ray binds PolicyModelActor by `from ... import` when its module runs, before train():
that swap (replay_policy_actor) wraps the run of that module instead.
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import ray


def rrl_namespace(config, driver_node_id=None) -> SimpleNamespace:
    """args.rrl as every actor reads it: the checked, typed RRL options and the driver's Ray node (where
    the buffer actor is placed)."""
    return SimpleNamespace(**config.to_dict(), driver_node_id=driver_node_id)


def install_replay(args, config, driver_node_id=None) -> None:
    """Give every actor the RRL options as args.rrl.* and swap in the replay classes."""
    import openrlhf.trainer.ppo_trainer as sync_trainer
    import openrlhf.trainer.ppo_trainer_async as async_trainer
    import openrlhf.trainer.ray.vllm_engine as vllm_engine

    from .restart_rollout import ReplayRolloutActor
    from .trainers import ReplayPPOTrainer, ReplayPPOTrainerAsync

    args.rrl = rrl_namespace(config, driver_node_id)
    sync_trainer.PPOTrainer = ray.remote(ReplayPPOTrainer)
    async_trainer.PPOTrainerAsync = ray.remote(ReplayPPOTrainerAsync)
    vllm_engine.RolloutRayActor = ray.remote(ReplayRolloutActor)


@contextlib.contextmanager
def replay_policy_actor():
    """OpenRLHF's PolicyModelActor and ReferenceModelActor replaced by the replay-aware ones (same Ray
    options) for the duration."""
    import openrlhf.trainer.ray.launcher as launcher
    import openrlhf.trainer.ray.ppo_actor as ppo_actor

    from .policy_actor import ReplayPolicyModelActor, ReplayReferenceModelActor

    swaps = [(ppo_actor, "PolicyModelActor", ReplayPolicyModelActor),
             (launcher, "ReferenceModelActor", ReplayReferenceModelActor)]
    originals = [getattr(module, name) for module, name, _ in swaps]
    for (module, name, cls), original in zip(swaps, originals):
        setattr(module, name, ray.remote(**original._default_options)(cls))
    try:
        yield
    finally:
        for (module, name, _), original in zip(swaps, originals):
            setattr(module, name, original)
