"""Turn per-run metric files into the numbers a person compares: a markdown table and a plot.

A run's metrics are JSON lines (`metrics/<arm>_s<seed>.jsonl`): `kind: train` rows per step,
`kind: eval` rows every few steps, one `kind: summary` row at the end. Everything here reads those
files only, so a table can be rebuilt from a finished (or copied) output folder.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from openrlhf_rrl.atomic import atomic_write_text


# replay's mechanism, summed over a run's train rows: an arm whose restarts never ran is no replay result
MECHANISM = ("rrl/candidates", "rrl/admitted", "rrl/restart_groups")


@dataclass
class RunCurve:
    arm: str
    seed: int
    eval_steps: list[int] = field(default_factory=list)
    evals: dict[str, list[float]] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    mechanism: dict[str, float] = field(default_factory=lambda: dict.fromkeys(MECHANISM, 0))
    replay_on: bool = False  # train rows carry rrl/* metrics only where replay was switched on


def read_run(path: str | os.PathLike) -> RunCurve:
    name = Path(path).stem  # <arm>_s<seed>
    arm, _, seed = name.rpartition("_s")
    run = RunCurve(arm=arm, seed=int(seed))
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row.get("kind") == "eval":
                run.eval_steps.append(row["step"])
                for key, value in row.items():
                    if key.startswith("eval/"):
                        run.evals.setdefault(key, []).append(value)
            elif row.get("kind") == "summary":
                run.summary = row
            elif row.get("kind") == "train":
                run.replay_on = run.replay_on or MECHANISM[0] in row
                for key in MECHANISM:
                    run.mechanism[key] += row.get(key, 0)
    return run


# kept by compact_rows besides the mechanism: restart groups spent on retries (their share says which kind ran)
RECORD_COUNTS = MECHANISM + ("rrl/retry_groups",)


def compact_rows(rows: list[dict]) -> list[dict]:
    """What the table and plot read, and no more: the eval rows, the summary row and one train row holding
    the run's replay counts (RECORD_COUNTS) summed over its steps. A few KB a run instead of a row per step,
    so a measurement's runs can be kept in the repository and its table and plot redrawn from there."""
    train = [r for r in rows if r.get("kind") == "train"]
    kept = [r for r in rows if r.get("kind") == "eval"]
    if train:
        counted = [k for k in RECORD_COUNTS if any(k in r for r in train)]
        kept.insert(0, {"kind": "train", "step": train[-1]["step"], "steps": len(train),
                        **{k: sum(r.get(k, 0) for r in train) for k in counted}})
    return kept + [r for r in rows if r.get("kind") == "summary"]


def read_runs(out_dir: str | os.PathLike) -> dict[str, list[RunCurve]]:
    """All runs of an output folder, grouped by arm, seeds in order."""
    arms: dict[str, list[RunCurve]] = {}
    for path in sorted(Path(out_dir, "metrics").glob("*.jsonl")):
        run = read_run(path)
        arms.setdefault(run.arm, []).append(run)
    for runs in arms.values():
        runs.sort(key=lambda r: r.seed)
    return arms


def truncated(arms: dict[str, list[RunCurve]], step: int) -> dict[str, list[RunCurve]]:
    """The same runs seen at an earlier horizon: evals up to `step` (summary costs stay whole-run)."""
    out = {}
    for arm, runs in arms.items():
        cut = []
        for r in runs:
            n = sum(1 for s in r.eval_steps if s <= step)
            cut.append(RunCurve(r.arm, r.seed, r.eval_steps[:n], {k: v[:n] for k, v in r.evals.items()}, r.summary,
                                r.mechanism, r.replay_on))
        out[arm] = cut
    return out


def mean_curve(runs: list[RunCurve], key: str) -> tuple[list[int], list[float]]:
    """Seed-mean eval curve over the steps every run has."""
    length = min(len(r.evals.get(key, [])) for r in runs)
    steps = runs[0].eval_steps[:length]
    return steps, [statistics.fmean(r.evals[key][i] for r in runs) for i in range(length)]


def first_step_reaching(steps: list[int], values: list[float], target: float) -> int | None:
    for step, value in zip(steps, values):
        if value >= target - 1e-12:
            return step
    return None


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def summarize(arms: dict[str, list[RunCurve]], key: str, baseline: str = "baseline") -> list[dict]:
    """One row per arm: final success, per-seed wins, steps to the baseline's final value, cost."""
    base_runs = arms.get(baseline)
    base_final_by_seed = {r.seed: r.evals[key][-1] for r in base_runs} if base_runs else {}
    base_steps, base_curve = mean_curve(base_runs, key) if base_runs else ([], [])
    target = base_curve[-1] if base_curve else None
    rows = []
    for arm, runs in arms.items():
        finals = [r.evals[key][-1] for r in runs if r.evals.get(key)]
        steps, curve = mean_curve(runs, key)
        reach = first_step_reaching(steps, curve, target) if target is not None else None
        horizon = base_steps[-1] if base_steps else None
        wins = sum(1 for r in runs if r.seed in base_final_by_seed and r.evals[key][-1] > base_final_by_seed[r.seed])
        step_s = [r.summary.get("step_time_s", 0.0) for r in runs]
        overhead = [r.summary.get("rrl_overhead_pct", 0.0) for r in runs]
        rows.append(
            {
                "arm": arm,
                "seeds": len(runs),
                "final": _mean_sd(finals),
                "final_mean": statistics.fmean(finals) if finals else math.nan,
                "auc": statistics.fmean(curve) if curve else math.nan,
                "wins": f"{wins}/{len(runs)}" if arm != baseline else "-",
                "steps_to_baseline_final": reach,
                "steps_ratio": (reach / horizon) if (reach is not None and horizon) else None,
                "tokens": statistics.fmean(r.summary.get("tokens_generated", 0) for r in runs),
                "wall_s": statistics.fmean(r.summary.get("wall_s", 0.0) for r in runs),
                "step_ms": 1000 * statistics.fmean(step_s) if step_s else math.nan,
                "rrl_overhead_pct": statistics.fmean(overhead) if overhead else 0.0,
                "mechanism": {k: statistics.fmean(r.mechanism[k] for r in runs) for k in MECHANISM},
                "replay_on": any(r.replay_on for r in runs),
                "inert_seeds": sum(1 for r in runs if r.replay_on and r.mechanism["rrl/restart_groups"] == 0),
            }
        )
    return rows


def _mechanism_cell(row: dict) -> str:
    """Mean counts per run; '-' where replay was off; INERT where a seed ran no restart at all."""
    m = row["mechanism"]
    if not row["replay_on"]:
        return "-"
    cell = " / ".join(f"{m[k]:.0f}" for k in MECHANISM)
    if row["inert_seeds"]:
        cell += f" — INERT on {row['inert_seeds']}/{row['seeds']} seeds (no restart ran: not a replay result)"
    return cell


def markdown_table(rows: list[dict], key: str) -> str:
    head = (
        f"| arm | seeds | final {key} (mean ± sd) | seed wins vs baseline | steps to baseline final (ratio) "
        "| mean over evals | tokens generated | wall s / run | ms / step | RRL bookkeeping % of step "
        "| replay per run: candidates / admitted / restart groups |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        reach = "not reached" if r["steps_to_baseline_final"] is None else f"{r['steps_to_baseline_final']}"
        if r["steps_ratio"] is not None:
            reach += f" ({r['steps_ratio']:.2f}x)"
        lines.append(
            f"| {r['arm']} | {r['seeds']} | {r['final']} | {r['wins']} | {reach} | {r['auc']:.3f} "
            f"| {r['tokens']:.0f} | {r['wall_s']:.0f} | {r['step_ms']:.0f} | {r['rrl_overhead_pct']:.2f} "
            f"| {_mechanism_cell(r)} |"
        )
    return head + "\n".join(lines) + "\n"


def _draw(ax, arms: dict[str, list[RunCurve]], key: str, legend_size: str = "medium") -> None:
    """Seed-mean eval success vs step per arm, with the min..max band over seeds, on one axis."""
    for arm, runs in arms.items():
        steps, curve = mean_curve(runs, key)
        length = len(steps)
        lo = [min(r.evals[key][i] for r in runs) for i in range(length)]
        hi = [max(r.evals[key][i] for r in runs) for i in range(length)]
        (line,) = ax.plot(steps, curve, marker="o", markersize=3, label=f"{arm} (mean of {len(runs)} seeds)")
        ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("RL step")
    ax.set_ylabel(f"held-out success ({key.removeprefix('eval/')}, greedy)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=legend_size)


def _save(fig, path: str | os.PathLike) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = Path(str(path) + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def plot_curves(arms: dict[str, list[RunCurve]], key: str, path: str | os.PathLike, title: str) -> None:
    """Seed-mean eval success vs step per arm, with the min..max band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    _draw(ax, arms, key)
    ax.set_title(title)
    _save(fig, path)


def plot_panels(arms: dict[str, list[RunCurve]], key: str, path: str | os.PathLike,
                panels: dict[str, list[str]]) -> None:
    """One panel per comparison (title -> its arms), side by side on a shared y axis: a grid with many
    arms read as pairs (each replay arm next to its own baseline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    missing = sorted({a for names in panels.values() for a in names} - set(arms))
    if missing:
        raise ValueError(f"--panel: no metrics for arm(s) {', '.join(missing)}; the grid has {', '.join(sorted(arms))}")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), dpi=120, sharey=True, squeeze=False)
    for ax, (title, names) in zip(axes[0], panels.items()):
        _draw(ax, {a: arms[a] for a in names}, key, legend_size="small")  # long arm names stay inside the panel
        ax.set_title(title)
    _save(fig, path)


def write_report(out_dir: str | os.PathLike, key: str = "eval/hard", title: str = "", baseline: str = "baseline",
                 horizons: list[int] | None = None) -> tuple[str, list[dict]]:
    """Write results.md and curves.png into out_dir; returns the markdown and the rows (of the
    last horizon). With `horizons`, one table per horizon read off the same curves (H and 2H)."""
    arms = read_runs(out_dir)
    parts, rows = [], []
    for h in horizons or [None]:
        seen = truncated(arms, h) if h is not None else arms
        rows = summarize(seen, key, baseline=baseline)
        head = f"## at step {h}\n\n" if h is not None else ""
        parts.append(head + markdown_table(rows, key))
    table = "\n".join(parts)
    atomic_write_text(Path(out_dir, "results.md"), f"# {title or 'RRL vs baseline'}\n\n{table}")
    plot_curves(arms, key, Path(out_dir, "curves.png"), title or f"{key} vs step")
    return table, rows


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Re-plot a finished grid folder (its metrics/ files) as panels, "
                                            "one comparison per panel.")
    p.add_argument("out_dir", help="a grid's output folder (holds metrics/<arm>_s<seed>.jsonl)")
    p.add_argument("--panel", action="append", required=True, help='"title=arm,arm,..." (repeatable, one per panel)')
    p.add_argument("--key", default="eval/hard", help="the eval metric to plot")
    p.add_argument("--png", required=True, help="where to write the figure")
    args = p.parse_args(argv)
    panels = {}
    for spec in args.panel:
        title, sep, names = spec.partition("=")
        if not sep or not names:
            p.error(f'--panel: expected "title=arm,arm", got {spec!r}')
        panels[title] = [n.strip() for n in names.split(",") if n.strip()]
    try:
        plot_panels(read_runs(args.out_dir), args.key, args.png, panels)
    except ValueError as exc:
        p.error(str(exc))
    print(args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
