"""CPU mode: OpenRLHF's own Ray PPO pipeline, and the plugin on it, on a machine with no GPU.

For CI and for a user's first smoke test of a launch script before the cluster. It is switched on
explicitly (RRL_CPU_MODE=1, or the launcher's --rrl_cpu_mode, which sets it), never by detection,
and it refuses to run where a GPU is visible. Importing this package imports nothing heavy: the
.pth hook (pth_hook.py) imports it at every interpreter start of the virtual environment.
"""

import os

ENV_VAR = "RRL_CPU_MODE"


class CpuModeError(RuntimeError):
    """CPU mode cannot run here; the message is one line and says what to change."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def requested() -> bool:
    return os.environ.get(ENV_VAR, "") == "1"


def gpu_visible() -> bool:
    """A GPU this process could use: an NVIDIA/AMD device node, or torch (when already imported) sees one."""
    if any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd")):
        return True
    import sys

    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_available())
    except Exception:  # a patched or half-initialised torch: count it as no GPU
        return False
