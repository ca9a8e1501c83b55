"""Why a CPU-mode run died, from Ray's own per-process log files.

When vLLM's engine worker dies, the driver sees only the consequence (`EngineDeadError`,
`RuntimeError: cancelled` in vLLM's shared-memory queue); the worker's exit code or traceback is
written to the log files of the Ray actor that hosts the engine (session_*/logs/worker-*.out|err
under Ray's temp folder). `root_cause` picks those lines out, names the actor and the file, and
spells out a signal behind a negative exit code (-4 is SIGILL), so a failed smoke run says why.
"""

from __future__ import annotations

import glob
import os
import re
import signal

# a line that names a cause by itself
CAUSE = re.compile(r"died unexpectedly|exit ?code|Fatal Python error|Segmentation fault|Illegal instruction"
                   r"|\bSIG(?:ILL|SEGV|KILL|ABRT|BUS|FPE)\b|out of memory|OutOfMemory|oom[- ]kill", re.IGNORECASE)
TRACEBACK = "Traceback (most recent call last)"
EXIT_CODE = re.compile(r"exit ?code[:=(\s]{0,3}(-?\d+)", re.IGNORECASE)
# multiprocessing's resource tracker complains at every shutdown (shared memory it did not see freed):
# noise in a passing run as much as in a failing one
NOISE = re.compile(r"resource_tracker")
# Ray prefixes forwarded lines with "(ActorName pid=123)" (the same event then repeats across files), and
# vLLM's logger each line of a traceback it logs with "ERROR 11-30 18:22:22 [core.py:1512] "
PREFIX = re.compile(r"^\s*\([^)]*pid=\d+[^)]*\)\s*")
VLLM_PREFIX = re.compile(r"^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \d\d-\d\d [\d:]+ \[[^\]]*\] ")


def _signal_note(code: int) -> str:
    try:
        return f"  [exit code {code} = {signal.Signals(-code).name}]" if code < 0 else ""
    except ValueError:
        return ""


def log_files(ray_temp_dir: str, since: float) -> list[str]:
    """The logs of Ray's worker processes (actors and tasks, with whatever their subprocesses print) of
    every session under ray_temp_dir, written to at or after `since`."""
    paths = glob.glob(os.path.join(ray_temp_dir, "session_*", "logs", "worker-*"))
    fresh = [p for p in paths if os.path.isfile(p) and p.endswith((".out", ".err")) and os.path.getmtime(p) >= since]
    return sorted(fresh, key=os.path.getmtime)


def _actor_name(lines: list[str]) -> str:
    for line in lines[:5]:
        if line.startswith(":actor_name:"):
            return line[len(":actor_name:"):].strip()
    return ""


FAULT = "Fatal Python error"  # faulthandler's report of a fatal signal, then the stack, innermost first
FAULT_FRAMES = 3


def _causes(lines: list[str]) -> list[str]:
    """The cause lines of one file: CAUSE lines (an exit code only when it is not 0), each traceback's
    exception (the first unindented line after its frames), unless the traceback is the tracker's noise,
    and after a fatal signal's report the innermost frames of the stack it names."""
    found, frames, fault_frames = [], None, 0
    for line in lines:
        body = PREFIX.sub("", line.rstrip())
        if fault_frames and body.lstrip().startswith("File "):
            found.append("    at " + body.strip())
            fault_frames -= 1
            continue
        if FAULT in body:
            fault_frames = FAULT_FRAMES
        logged = VLLM_PREFIX.match(body)
        if logged and (frames is not None or TRACEBACK in body):  # a traceback vLLM logged line by line
            body = body[logged.end():]
        if TRACEBACK in body:
            frames = []
        elif frames is not None and body and not body.startswith((" ", "\t")):
            if not any(NOISE.search(f) for f in frames + [body]):
                found.append(body)
            frames = None
        elif frames is not None:
            frames.append(body)
        elif CAUSE.search(body) and not NOISE.search(body):
            codes = [int(c) for c in EXIT_CODE.findall(body)]
            if codes and all(c == 0 for c in codes):
                continue
            found.append(body + "".join(_signal_note(c) for c in codes))
    return found


def root_cause(paths: list[str], limit: int = 30) -> list[str]:
    """'file (actor): line' for each distinct cause line in these log files, oldest file first."""
    seen, out = set(), []
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                lines = fh.read().splitlines()
        except OSError:
            continue
        actor = _actor_name(lines)
        where = os.path.basename(path) + (f" ({actor})" if actor else "")
        for cause in _causes(lines):
            if cause not in seen:
                seen.add(cause)
                out.append(f"{where}: {cause}")
    return out[-limit:]


def report(ray_temp_dir: str, since: float, limit: int = 30) -> str:
    """The cause lines as one block for a failed run ('' when Ray's logs name none)."""
    lines = root_cause(log_files(ray_temp_dir, since), limit)
    if not lines:
        return ""
    return f"root cause, from Ray's process logs under {ray_temp_dir}:\n" + "\n".join("  " + s for s in lines)
