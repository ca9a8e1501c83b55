"""RRL vs the baseline on the hard-exploration chain task, over several seeds, with its cost.

Prints, per arm: final held-out hard success (mean ± sd over seeds), per-seed wins against the
baseline, the step at which the arm's seed-mean curve first reaches the baseline's final value
(and that step as a fraction of the horizon), tokens generated, wall time per run, ms per step,
and RRL bookkeeping (planning + observing the rollouts) as % of step time. Writes results.md,
curves.png and the per-run metrics to --out.

    .venv/bin/python benchmarks/bench_runner.py                 # 5 seeds x 400 steps
    .venv/bin/python benchmarks/bench_runner.py --seeds 2 --steps 100 --out runs/bench_small

Any other rrl-demo flag (e.g. --rrl_restart_temperature 2) is passed through.
"""

from __future__ import annotations

import argparse
import sys

from openrlhf_rrl.runner.cli import main as demo_main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--out", default="runs/bench_hard")
    args, rest = p.parse_known_args(argv)
    return demo_main(["--task", "chain", "--seeds", str(args.seeds), "--train.num_steps", str(args.steps),
                      "--eval.steps", "25", "--out", args.out, *rest])


if __name__ == "__main__":
    sys.exit(main())
