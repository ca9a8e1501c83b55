"""benchmarks/grid.py: every arm on the same seeds, a table per horizon, and the reference arm is the
baseline with the best final mean."""

import importlib.util
import json
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = "--warmup.max_steps 0 --eval.steps 2 --eval_size 8 --rollout.batch_size 4 --rollout.n_samples_per_prompt 2"


def load_grid():
    spec = importlib.util.spec_from_file_location("rrl_bench_grid", ROOT / "benchmarks" / "grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_default_grid_tunes_the_baseline_and_runs_every_policy():
    grid = load_grid()
    for task, (steps, horizons, arms) in grid.DEFAULT_GRIDS.items():
        names = [a.split("=", 1)[0] for a in arms]
        assert {"rrl", "rrl-passrate", "rrl-uncertainty"} <= set(names), task
        baselines = [a for a in arms if a.startswith("baseline")]
        assert len({("learning_rate" in a, "hard_temperature" in a) for a in baselines}) >= 2, task
        assert [int(h) for h in horizons.split(",")] == [steps // 2, steps], task


def test_the_chain_grid_gives_the_checker_to_tuned_baselines_and_runs_outcome_only_replay():
    grid = load_grid()
    names = [a.split("=", 1)[0] for a in grid.DEFAULT_GRIDS["chain"][2]]
    weights = [a.split("--reward.process_weight ")[1] for a in grid.DEFAULT_GRIDS["chain"][2] if "process_weight" in a]
    assert len(weights) >= 3 and all(n.startswith("pr-") for n in names if "pr-baseline" in n)
    assert {"rrl-agree", "rrl-agree-hot2", "rrl-agree-retry", "rrl-reward", "rrl-mc"} <= set(names)
    # PPO: the critic scorer against PPO baselines tuned over learning rate and exploration
    ppo = [a for a in grid.DEFAULT_GRIDS["chain"][2] if "--algo.advantage.estimator gae" in a]
    assert any("--rrl_scorer critic" in a for a in ppo)
    ppo_baselines = [a for a in ppo if a.startswith("ppo-baseline")]
    assert len({("learning_rate" in a, "hard_temperature" in a) for a in ppo_baselines}) == 4  # lr x exploration
    # each side gets both log-prob temperatures: replay's default (sampled) and run, the baseline's (run) and sampled
    given = {a.split("=", 1)[0]: a.split("--rrl_logprob_temperature ")[1] for a in grid.DEFAULT_GRIDS["chain"][2]
             if "--rrl_logprob_temperature" in a}
    assert given == {"rrl-run": "run", "rrl-agree-hot2-run": "run", "baseline-hot2-lr1e-3-tempered": "sampled"}


def test_references_best_of_a_prefix_and_named_arms():
    from openrlhf_rrl.runner.report import RunCurve

    def arm(final):
        return [RunCurve("x", 0, [1], {"eval/hard": [final]})]

    grid = load_grid()
    arms = {"baseline-a": arm(0.1), "baseline-b": arm(0.3), "pr-baseline-w1": arm(0.5), "rrl": arm(0.4)}
    assert grid.resolve_references("best,best:pr-baseline", arms) == ["baseline-b", "pr-baseline-w1"]
    assert grid.resolve_references("best:pr-,rrl", {k: v for k, v in arms.items() if k != "pr-baseline-w1"}) == ["rrl"]
    with pytest.raises(SystemExit, match="--reference: no arm named 'nope'"):
        grid.resolve_references("nope", arms)


@pytest.mark.slow
def test_grid_reads_every_arm_at_both_horizons_against_the_best_baseline(tmp_path, capsys):
    out = tmp_path / "grid"
    code = load_grid().main([
        "--out", str(out), "--seeds", "1", "--steps", "4", "--horizons", "2,4", "--workers", "2",
        "--arm", f"baseline-a=--arms baseline --actor.learning_rate 1e-4 {SMALL}",
        "--arm", f"baseline-b=--arms baseline --actor.learning_rate 1e-3 {SMALL}",
        "--arm", f"rrl=--arms rrl --rrl_replay_share 0.5 {SMALL}"])
    assert code == 0
    finals = {}
    for arm in ("baseline-a", "baseline-b"):
        rows = [json.loads(line) for line in open(out / "metrics" / f"{arm}_s0.jsonl")]
        finals[arm] = statistics.fmean(r["eval/hard"] for r in rows if r["kind"] == "eval" and r["step"] == 4)
    best = max(finals, key=finals.get)
    assert f"reference arm: {best}\n" in capsys.readouterr().out
    table = (out / "results.md").read_text()
    assert "## at step 2" in table and "## at step 4" in table
    for arm in ("baseline-a", "baseline-b", "rrl"):
        assert table.count(f"| {arm} | 1 |") == 2  # one row per horizon
