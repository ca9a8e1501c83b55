"""Ask Linux for AMX tile state before any kernel can use it (stdlib only: it runs at interpreter start).

On x86 CPUs with AMX (Sapphire Rapids and later), Linux traps a process's first tile instruction
unless the process asked for the large register state first (arch_prctl ARCH_REQ_XCOMP_PERM); the
trap kills it with SIGILL. The permission is per process, kept across fork() and cleared by exec().
vLLM-CPU picks its AMX attention kernel for bf16 models without asking; oneDNN asks only when it
runs an AMX kernel of its own, so whether vLLM's worker died depended on which ran first: the
intermittent `EngineDeadError` (worker exit code -4) of the CPU-mode end-to-end runs. The CPU
mode's .pth hook calls `request_amx()` in every process of a run, vLLM's spawned workers included.
On CPUs without AMX (or not Linux/x86-64) it does nothing and returns False.
"""

from __future__ import annotations

import ctypes
import platform
import sys

SYS_ARCH_PRCTL = 158  # x86-64 syscall number
ARCH_GET_XCOMP_SUPP = 0x1021
ARCH_GET_XCOMP_PERM = 0x1022
ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18


def _x86_64_linux() -> bool:
    return sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")


def _features(option: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    mask = ctypes.c_uint64(0)
    if libc.syscall(SYS_ARCH_PRCTL, option, ctypes.byref(mask)) != 0:
        return 0
    return mask.value


def amx_supported() -> bool:
    """The CPU and the kernel offer AMX tile data to user space."""
    return _x86_64_linux() and bool(_features(ARCH_GET_XCOMP_SUPP) >> XFEATURE_XTILEDATA & 1)


def amx_permitted() -> bool:
    """This process may execute AMX tile instructions now."""
    return _x86_64_linux() and bool(_features(ARCH_GET_XCOMP_PERM) >> XFEATURE_XTILEDATA & 1)


def request_amx() -> bool:
    """Ask for AMX tile state for this process; True when it is granted (False where there is no AMX)."""
    if not amx_supported():
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
    return amx_permitted()
