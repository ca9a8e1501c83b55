"""A fair comparison in one command: tuned baselines and replay policies, same seeds, one pool.

Every arm starts from the same warm model per seed and sees the same prompt stream and the same
number of sampled sequences per step. Each arm is a name and a list of rrl-demo flags; the table
compares every arm with the reference arm (--reference, default the best baseline by final mean
when "best" is given) and is read off the same curves at each horizon (--horizons: H and 2H).

    .venv/bin/python benchmarks/grid.py --task chain --out runs/grid-chain    # the default grids below
    .venv/bin/python benchmarks/grid.py --task arithmetic --out runs/grid-arithmetic
    .venv/bin/python benchmarks/grid.py --seeds 5 --steps 800 --horizons 400,800 --device cuda \\
        --arm "baseline-hot2=--arms baseline --rollout.hard_temperature 2" --arm "rrl=--arms rrl"

Writes results.md (one table per horizon), curves.png and metrics/<arm>_s<seed>.jsonl to --out.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

from openrlhf_rrl.atomic import atomic_write_text
from openrlhf_rrl.runner.cli import job_configs, parse, run_job, warm_job
from openrlhf_rrl.runner.pool import run_in_pool
from openrlhf_rrl.runner.report import read_runs, write_report

# The default grids: the baseline over learning rate x exploration (temperature 2 on hard prompts,
# which beat temperature 1 at the default lr), each replay policy at the runner's defaults.
_POLICIES = [
    "rrl=--arms rrl",
    "rrl-passrate=--arms rrl --rrl_policy passrate",
    "rrl-uncertainty=--arms rrl --rrl_policy uncertainty",
]
# The chain task's replay arms cut with its step checker; these baselines get that checker as a dense
# process reward (outcome + w x verified share), w tuned, at the best outcome baseline's lr and exploration.
# Prefixed "pr-", they are not candidates for the outcome-only reference: they know more than it does.
_PROCESS_REWARD = [f"pr-baseline-w{w}=--arms baseline --rollout.hard_temperature 2 --actor.learning_rate 1e-3 "
                   f"--reward.process_weight {w}" for w in ("0.25", "0.5", "1")]
# Replay with the outcome reward alone (no checker, no critic): agree (the default without a checker or critic),
# also with the baseline's best exploration (hard prompts sampled at T=2: the setting that measured best on both
# tasks, with the default --rrl_logprob_temperature auto) and a larger share, and the blind cutters
_OUTCOME_ONLY = [
    "rrl-agree=--arms rrl --rrl_scorer agree",
    "rrl-agree-hot2=--arms rrl --rrl_scorer agree --rollout.hard_temperature 2",
    "rrl-agree-hot2-share05=--arms rrl --rrl_scorer agree --rollout.hard_temperature 2 --rrl_replay_share 0.5",
    "rrl-agree-hot2-probes=--arms rrl --rrl_scorer agree --rollout.hard_temperature 2 --rrl_agree_probes",
    # replay's own hot sampling of the prompts it knows are hard, where the run has one temperature (OpenRLHF)
    "rrl-agree-retry=--arms rrl --rrl_scorer agree --rrl_retry_unsolved on",
    "rrl-agree-hot2-retry=--arms rrl --rrl_scorer agree --rollout.hard_temperature 2 --rrl_retry_unsolved on",
    "rrl-reward=--arms rrl --rrl_scorer reward",
    "rrl-mc=--arms rrl --rrl_scorer mc",
]
# PPO with a critic, the paper's own setting: the critic scorer against PPO baselines tuned over lr x exploration
_PPO = [
    "ppo-baseline=--arms baseline --algo.advantage.estimator gae",
    "ppo-baseline-hot2=--arms baseline --algo.advantage.estimator gae --rollout.hard_temperature 2",
    "ppo-baseline-hot2-lr1e-3=--arms baseline --algo.advantage.estimator gae --rollout.hard_temperature 2 "
    "--actor.learning_rate 1e-3",
    "ppo-baseline-lr1e-3=--arms baseline --algo.advantage.estimator gae --actor.learning_rate 1e-3",
    "ppo-rrl-critic=--arms rrl --algo.advantage.estimator gae --rrl_scorer critic",
    "ppo-rrl-critic-hot2=--arms rrl --algo.advantage.estimator gae --rrl_scorer critic --rollout.hard_temperature 2",
]
# Hot rows (restarts at T=2, the baselines' hard prompts at T=2) and the temperature their log-probs are taken
# at: replay's default (--rrl_logprob_temperature auto) takes them at the temperature they were sampled at
# (sampled); these arms take them at the run's (run), and give the best baseline sampled, so each side has both
_TEMPERED = [
    "rrl-run=--arms rrl --rrl_logprob_temperature run",
    "rrl-agree-hot2-run=--arms rrl --rrl_scorer agree --rollout.hard_temperature 2 --rrl_logprob_temperature run",
    "baseline-hot2-lr1e-3-tempered=--arms baseline --rollout.hard_temperature 2 --actor.learning_rate 1e-3 "
    "--rrl_logprob_temperature sampled",
]
DEFAULT_GRIDS = {
    # the hard task: H = 400, 2H = 800 steps
    "chain": (800, "400,800", [
        "baseline-hot2-lr1e-4=--arms baseline --rollout.hard_temperature 2 --actor.learning_rate 1e-4",
        "baseline-hot2=--arms baseline --rollout.hard_temperature 2",
        "baseline-hot2-lr1e-3=--arms baseline --rollout.hard_temperature 2 --actor.learning_rate 1e-3",
        "baseline-hot2-lr3e-3=--arms baseline --rollout.hard_temperature 2 --actor.learning_rate 3e-3",
        "baseline-lr1e-3=--arms baseline --actor.learning_rate 1e-3",
    ] + _POLICIES + _OUTCOME_ONLY + _PROCESS_REWARD + _TEMPERED + _PPO),
    # the GSM8K-style task: already ~0.85 after warm-up, so the question is whether replay costs anything
    "arithmetic": (200, "100,200", [
        "baseline=--arms baseline",
        "baseline-lr1e-4=--arms baseline --actor.learning_rate 1e-4",
        "baseline-hot2=--arms baseline --rollout.hard_temperature 2",
    ] + _POLICIES + [  # and each policy at the lr that is best for the baseline here
        f"{name}-lr1e-4={flags} --actor.learning_rate 1e-4" for name, flags in (a.split("=", 1) for a in _POLICIES)]),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/grid")
    p.add_argument("--task", default="chain")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=None, help="RL steps per run (default: the task's grid's)")
    p.add_argument("--horizons", default=None, help="comma-separated steps to read the table at (default: the "
                                                    "task's grid's, H and 2H)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--reference", default="best,best:pr-baseline,best:ppo-baseline",
                   help="comma-separated arms to compare with, one table set each; 'best' is the baseline arm "
                        "(name starting 'baseline') with the highest final mean, 'best:PREFIX' the best arm whose "
                        "name starts with PREFIX (default: the best outcome baseline, then the best process-reward "
                        "baseline and the best PPO baseline, where the grid has them)")
    p.add_argument("--arm", action="append", default=None, help='"name=rrl-demo flags" (repeatable)')
    args = p.parse_args(argv)
    steps, horizons, arms = DEFAULT_GRIDS.get(args.task, DEFAULT_GRIDS["chain"])
    args.steps = args.steps or steps
    args.horizons = args.horizons or horizons
    out = Path(args.out)
    common = ["--task", args.task, "--seeds", str(args.seeds), "--train.num_steps", str(args.steps),
              "--eval.steps", "25", "--device", args.device, "--out", str(out), "--no_progress"]
    jobs, args_dict = [], None
    for spec in args.arm or arms:
        name, _, flags = spec.partition("=")
        demo_args, rrl = parse(common + shlex.split(flags))
        for job in job_configs(demo_args, rrl):
            jobs.append({**job, "arm": name})
        args_dict = args_dict or {k: v for k, v in vars(demo_args).items()
                                  if isinstance(v, (str, int, float, bool, list, type(None)))}
    t0 = time.perf_counter()
    seeds = sorted({j["seed"] for j in jobs})
    run_in_pool(warm_job, seeds, args_dict, args.workers, 0, "warm-up", True)
    run_in_pool(run_job, jobs, args_dict, args.workers, sum(j["cfg"].steps for j in jobs), "RL steps", True)
    arms = read_runs(out)
    horizons = [int(h) for h in args.horizons.split(",") if h]
    sections = []
    for reference in resolve_references(args.reference, arms):
        table, _ = write_report(out, key="eval/hard", baseline=reference, horizons=horizons)
        sections.append(f"# {args.task}: every arm vs {reference}, {args.seeds} seeds\n\n{table}")
        print(table)
        print(f"reference arm: {reference}")
    atomic_write_text(out / "results.md", "\n".join(sections))
    print(f"wall {time.perf_counter() - t0:.0f} s; wrote {out / 'results.md'}")
    return 0


def resolve_references(spec: str, arms: dict) -> list[str]:
    """The reference arms of a --reference spec; a 'best:PREFIX' that matches no arm is left out."""
    out = []
    for ref in (r.strip() for r in spec.split(",") if r.strip()):
        if ref == "best" or ref.startswith("best:"):
            prefix = ref.partition(":")[2] or "baseline"
            finals = {a: statistics.fmean(r.evals["eval/hard"][-1] for r in runs)
                      for a, runs in arms.items() if a.startswith(prefix)}
            if finals:
                out.append(max(finals, key=finals.get))
        elif ref in arms:
            out.append(ref)
        else:
            raise SystemExit(f"grid.py: --reference: no arm named {ref!r} (arms: {', '.join(arms)})")
    return out


if __name__ == "__main__":
    sys.exit(main())
