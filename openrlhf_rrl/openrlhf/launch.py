"""The launcher: OpenRLHF's own train_ppo_ray main, plus RRL when --rrl_enable, plus the CPU mode.

Order: parse (OpenRLHF's parser + RRL flags), check RRL options against the run (one-line error
naming the flag), start the CPU mode's local Ray if asked, then run OpenRLHF's __main__ block as it
is. At the first call train() makes after OpenRLHF's own validation (get_strategy(args)), the CPU
mode switches GPU-only options off and RRL swaps in its classes (the policy actor's swap wraps the
whole run: train_ppo_ray imports that class when its module runs). Without --rrl_enable (and without
CPU mode) nothing of OpenRLHF's run changes: the same args, the same classes.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import sys
import time

from ..core.errors import RRLConfigError
from . import arguments


@contextlib.contextmanager
def _before_strategy(prepare):
    import openrlhf.utils

    original = openrlhf.utils.get_strategy

    def get_strategy(args):
        prepare(args)
        return original(args)

    openrlhf.utils.get_strategy = get_strategy
    try:
        yield
    finally:
        openrlhf.utils.get_strategy = original


def _hierarchized(namespace: argparse.Namespace):
    from openrlhf.utils.config import hierarchize

    return hierarchize(copy.deepcopy(namespace))


def _print_root_cause(since: float) -> None:
    from ..cpu.ray_local import ray_temp_dir
    from ..cpu.ray_logs import report

    text = report(ray_temp_dir(), since)
    if text:
        print(f"[openrlhf-rrl] CPU mode: the run failed; {text}", file=sys.stderr, flush=True)


def _prepare(args, cpu_mode: bool, enabled: bool, scorer_given: bool) -> None:
    """On OpenRLHF's parsed args, before its strategy is built: CPU overrides, then the replay classes."""
    if cpu_mode:
        from ..cpu.flags import apply_cpu_overrides

        for line in apply_cpu_overrides(args):
            print(f"[openrlhf-rrl] CPU mode: {line}", flush=True)
    if enabled:
        import ray

        from .install import install_replay
        from .startup_check import resolve_rrl_config

        # train() has started or joined Ray by now: the buffer actor is placed on this node
        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        install_replay(args, resolve_rrl_config(args, scorer_given), driver_node_id=node)


def _enter_cpu_mode() -> None:
    """Before OpenRLHF (and Ray) are imported: the workers' environment and the CPU patches."""
    import os

    from .. import cpu
    from ..cpu.patches import activate
    from ..cpu.ray_local import worker_env

    os.environ[cpu.ENV_VAR] = "1"
    for key, value in worker_env().items():
        os.environ.setdefault(key, value)
    activate()


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from .. import cpu

    cpu_mode = cpu.requested() or any(a in (arguments.CPU_MODE_FLAG, "--rrl.cpu_mode") for a in argv)
    if cpu_mode:
        _enter_cpu_mode()
    from ..compat import flash_attn_shim

    flash_attn_shim.install()  # import-only stand-in, only where flash-attn is not installed (--help, checks)
    parser = arguments.launcher_parser()
    namespace = parser.parse_args(argv)
    del namespace.rrl_cpu_mode
    enabled = bool(getattr(namespace, "rrl.enable"))
    scorer_given = arguments.rrl_flag_given(argv, "scorer")
    if not enabled:  # exactly OpenRLHF's namespace
        for key in [k for k in vars(namespace) if k.startswith("rrl.")]:
            delattr(namespace, key)
    try:
        if enabled:  # the start-up check, before Ray or any model starts
            from .startup_check import resolve_rrl_config

            resolve_rrl_config(_hierarchized(namespace), scorer_given)
        if cpu_mode:
            from ..cpu.check import check_cpu_mode
            from ..cpu.ray_local import start_local_ray

            for line in check_cpu_mode():
                print(f"[openrlhf-rrl] CPU patch {line}", flush=True)
            start_local_ray(_hierarchized(namespace))

        prepare = functools.partial(_prepare, cpu_mode=cpu_mode, enabled=enabled, scorer_given=scorer_given)
        if enabled:  # train_ppo_ray binds PolicyModelActor when its module runs: swap it for the whole run
            from .install import replay_policy_actor

            policy_actor = replay_policy_actor()
        else:
            policy_actor = contextlib.nullcontext()
        started = time.time()
        try:
            with _before_strategy(prepare), policy_actor:
                arguments.run_openrlhf_main(namespace)
        except Exception:
            if cpu_mode:  # the driver sees only the consequence of a dead worker: say what killed it
                _print_root_cause(started)
            raise
    except (RRLConfigError, cpu.CpuModeError) as e:
        print(f"openrlhf_rrl.cli.train_ppo_ray: error: {e}", file=sys.stderr)
        return 2
    return 0
