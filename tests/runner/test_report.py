"""results.md shows replay's mechanism per arm, and calls an arm whose restarts never ran inert."""

import json

from openrlhf_rrl.runner.report import write_report


def write_run(out, arm, seed, finals, mechanism=None):
    """A metrics file as the trainer writes it: train rows (rrl/* only where replay is on), evals, a summary."""
    rows = []
    for step, final in enumerate(finals, start=1):
        train = {"kind": "train", "step": step}
        if mechanism is not None:
            train.update({"rrl/candidates": mechanism[0], "rrl/admitted": mechanism[1],
                          "rrl/restart_groups": mechanism[2]})
        rows += [train, {"kind": "eval", "step": step, "eval/hard": final}]
    rows.append({"kind": "summary", "step": len(finals), "tokens_generated": 100, "wall_s": 1.0})
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    (out / "metrics" / f"{arm}_s{seed}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_mechanism_counts_per_run_and_inert_seeds(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, "baseline", seed, [0.1, 0.2])
        write_run(tmp_path, "rrl", seed, [0.1, 0.3], mechanism=(3, 1, 2))  # per step, 2 steps
        # the launcher's old default: candidates on one seed, no restart on either
        write_run(tmp_path, "rrl-idle", seed, [0.1, 0.2], mechanism=(seed, 0, 0))
    table, _ = write_report(tmp_path)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert "| replay per run: candidates / admitted / restart groups |" in rows["arm"]
    assert rows["baseline"].endswith("| - |")
    assert rows["rrl"].endswith("| 6 / 2 / 4 |")
    assert rows["rrl-idle"].endswith("| 1 / 0 / 0 — INERT on 2/2 seeds (no restart ran: not a replay result) |")


def test_panels_plot_each_comparison_and_a_missing_arm_is_a_one_line_error(tmp_path, capsys):
    import pytest
    from PIL import Image

    from openrlhf_rrl.runner.report import main

    for seed in (0, 1):
        for arm in ("baseline", "rrl", "baseline-cosine", "rrl-cosine"):
            write_run(tmp_path, arm, seed, [0.1, 0.2])
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    assert main([str(tmp_path), "--png", str(one), "--panel", "constant=baseline,rrl"]) == 0
    assert main([str(tmp_path), "--png", str(two), "--panel", "constant=baseline,rrl",
                 "--panel", "cosine=baseline-cosine,rrl-cosine"]) == 0
    assert Image.open(two).width == 2 * Image.open(one).width  # one panel per comparison
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--png", str(one), "--panel", "x=baseline,rrl-nope"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--panel" in err and "rrl-nope" in err


def test_compact_rows_keep_the_table_and_curves_and_shrink_the_file(tmp_path):
    from openrlhf_rrl.runner.report import compact_rows, read_runs

    full, compact = tmp_path / "full", tmp_path / "compact"
    for seed in (0, 1):
        write_run(full, "baseline", seed, [0.1, 0.2, 0.25])
        write_run(full, "rrl", seed, [0.1, 0.3, 0.4], mechanism=(3, 1, 2 + seed))
    (compact / "metrics").mkdir(parents=True)
    for path in (full / "metrics").glob("*.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        rows = [dict(r, **{"loss": 0.5, "rrl/retry_groups": 1}) if r["kind"] == "train" and "rrl/candidates" in r
                else dict(r, loss=0.5) if r["kind"] == "train" else r for r in rows]
        kept = compact_rows(rows)
        assert [r["kind"] for r in kept] == ["train", "eval", "eval", "eval", "summary"]
        assert "loss" not in kept[0] and kept[0]["steps"] == 3
        if "rrl" in path.stem:
            assert kept[0]["rrl/retry_groups"] == 3 and kept[0]["rrl/restart_groups"] == 3 * (2 + int(path.stem[-1]))
        (compact / "metrics" / path.name).write_text("".join(json.dumps(r) + "\n" for r in kept))
    assert write_report(full, horizons=[2, 3])[0] == write_report(compact, horizons=[2, 3])[0]
    for arm, runs in read_runs(full).items():
        assert [(r.eval_steps, r.evals, r.replay_on) for r in runs] == \
               [(r.eval_steps, r.evals, r.replay_on) for r in read_runs(compact)[arm]]
