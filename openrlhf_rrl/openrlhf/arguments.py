"""OpenRLHF's own train_ppo_ray parser, plus the RRL flags.

OpenRLHF builds its parser inside `if __name__ == "__main__"` of openrlhf/cli/train_ppo_ray.py, so
there is no function to call. We run that block and stop it at its parse_args() call, keeping
the parser object: every OpenRLHF flag, its defaults and its checks stay exactly OpenRLHF's, in
whatever release is installed. The RRL flags are added with dotted dests ("rrl.enable"), which
OpenRLHF's hierarchize() turns into args.rrl.* on every actor.
"""

from __future__ import annotations

import argparse
import contextlib
import runpy
import sys

OPENRLHF_CLI = "openrlhf.cli.train_ppo_ray"
CPU_MODE_FLAG = "--rrl_cpu_mode"


class _Captured(BaseException):
    def __init__(self, parser):
        self.parser = parser


@contextlib.contextmanager
def _parse_args_replaced(fn):
    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = fn
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args = original


def openrlhf_parser() -> argparse.ArgumentParser:
    """The parser OpenRLHF's train_ppo_ray builds (its __main__ block, stopped at parse_args)."""
    def capture(self, *args, **kwargs):
        raise _Captured(self)

    saved_argv = sys.argv
    try:
        with _parse_args_replaced(capture):
            runpy.run_module(OPENRLHF_CLI, run_name="__main__", alter_sys=False)
    except _Captured as c:
        return c.parser
    finally:
        sys.argv = saved_argv
    raise RuntimeError(f"{OPENRLHF_CLI} ran without calling parse_args(): unsupported OpenRLHF layout")


def add_launcher_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The RRL flags (--rrl_<name> and --rrl.<name>, dest rrl.<name>) and the CPU mode switch."""
    from ..config import add_rrl_arguments

    add_rrl_arguments(parser, dotted_dest=True)
    parser.add_argument(CPU_MODE_FLAG, "--rrl.cpu_mode", dest="rrl_cpu_mode", action="store_true", default=False,
                        help="Run on this machine's CPU (sets RRL_CPU_MODE=1): a smoke test of the launch script "
                             "before the cluster, or CI. Refused where a GPU is visible. (default: off)")
    return parser


def launcher_parser() -> argparse.ArgumentParser:
    return add_launcher_arguments(openrlhf_parser())


def run_openrlhf_main(namespace: argparse.Namespace) -> None:
    """Run OpenRLHF's train_ppo_ray __main__ block as it is, with `namespace` as its parse_args() result:
    its own validation, then its own train(args)."""
    def parsed(self, *args, **kwargs):
        return namespace

    with _parse_args_replaced(parsed):
        runpy.run_module(OPENRLHF_CLI, run_name="__main__", alter_sys=False)


def rrl_flag_given(argv, name: str) -> bool:
    """Whether the user wrote --rrl_<name> or --rrl.<name> (also as --flag=value)."""
    forms = (f"--rrl_{name}", f"--rrl.{name}")
    return any(a in forms or a.split("=", 1)[0] in forms for a in argv)
