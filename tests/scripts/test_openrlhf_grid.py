"""benchmarks/openrlhf_grid.py: OpenRLHF's tensorboard scalars become the runner's metrics rows, so the
OpenRLHF path's grid is read with the runner's own table and plot."""

import importlib.util
import json
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_grid():
    spec = importlib.util.spec_from_file_location("rrl_openrlhf_grid", ROOT / "benchmarks" / "openrlhf_grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tensorboard_scalars_become_train_eval_and_summary_rows_the_report_reads(tmp_path):
    from openrlhf_rrl.runner.report import read_runs, summarize

    grid = load_grid()
    tags = {"train/reward": {1: 0.1, 2: 0.2}, "train/rrl/candidates": {1: 4.0, 2: 6.0},
            "train/rrl/admitted": {1: 2.0, 2: 1.0}, "train/rrl/restart_groups": {1: 0.0, 2: 3.0},
            "train/rollout/num_samples": {1: 256.0, 2: 256.0}, "train/rollout/response_length_mean": {1: 8.0, 2: 6.0},
            "train/timing/step_total": {1: 3.0, 2: 5.0}, "train/rrl/overhead_s": {1: 0.04, 2: 0.04},
            "train/rrl/masked_prefix_tokens": {1: 0.0, 2: 0.5},
            "eval/eval_hard_pass1": {0: 0.1, 2: 0.3}, "eval/eval_mid_pass1": {0: 0.9, 2: 0.95},
            "eval/eval_base_long_pass1": {0: 0.5, 2: 0.4}}
    rows = grid.metrics_rows(tags, wall_s=60.0)
    train = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2] and train[1]["rrl/restart_groups"] == 3.0
    evals = [r for r in rows if r["kind"] == "eval"]
    assert evals == [{"kind": "eval", "step": 0, "eval/hard": 0.1, "eval/mid": 0.9, "eval/base_long": 0.5},
                     {"kind": "eval", "step": 2, "eval/hard": 0.3, "eval/mid": 0.95, "eval/base_long": 0.4}]
    summary = rows[-1]
    # step 2's restart rows count their stored prefix in the response length: not generated at that step
    assert summary["tokens_generated"] == 256 * 8 + 256 * (6 - 0.5) and summary["step_time_s"] == 4.0
    assert abs(summary["rrl_overhead_pct"] - 1.0) < 1e-9  # 0.08 s of 8 s

    assert grid.evals_above_one(rows) == []
    shaped = grid.metrics_rows({**tags, "eval/eval_mid_pass1": {0: 0.9, 2: 1.2}}, wall_s=60.0)
    assert grid.evals_above_one(shaped) == ["eval/mid"]  # a process reward on the eval set: no success rate

    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "rrl-agree_s0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (row,) = summarize(read_runs(tmp_path), "eval/hard", baseline="none")
    assert row["final_mean"] == 0.3 and row["mechanism"]["rrl/restart_groups"] == 3.0 and row["inert_seeds"] == 0


def test_every_run_is_the_launcher_in_cpu_mode_on_the_exported_task_with_the_runners_sizes(tmp_path):
    grid = load_grid()
    flags = grid.base_flags(tmp_path / "assets", seed=2, steps=10, eval_every=5, run_dir=tmp_path / "run")
    joined = shlex.join(flags)
    assert flags[0] == "--rrl_cpu_mode" and f"{tmp_path}/assets/seed2/model" in joined
    assert "--rollout.batch_size 32" in joined and "--rollout.n_samples_per_prompt 8" in joined
    assert "--train.batch_size 256" in joined  # one optimizer step per rollout, as the runner does
    assert "--data.max_samples 320" in joined and "--train.seed 2" in joined
    assert "--algo.advantage.estimator reinforce_baseline" in joined and "--algo.kl.init_coef 0" in joined
    names = [a.split("=", 1)[0] for a in grid.DEFAULT_ARMS]
    assert any(n.startswith("baseline") for n in names) and {"rrl-checker-const", "rrl-agree-const"} <= set(names)
    checker = dict(a.split("=", 1) for a in grid.DEFAULT_ARMS)["rrl-checker-const"].format(assets="A")
    assert "--rrl_step_checker A/step_checker.py" in checker and "--rrl_displaced_prompts drop" in checker
    # every default arm trains with the runner's optimizer, not OpenRLHF's decaying default
    assert all(grid.RUNNER_OPTIMIZER in arm for arm in grid.DEFAULT_ARMS)


def test_an_arms_leading_env_words_set_its_environment_and_the_process_baseline_gets_the_checker(tmp_path):
    grid = load_grid()
    arms = dict(a.split("=", 1) for a in grid.DEFAULT_ARMS)
    env, flags = grid.arm_command(arms["baseline-process-t1.5-lr1e-3-const"], tmp_path, seed=1)
    _, checker_flags = grid.arm_command(arms["rrl-checker-const"], tmp_path, seed=1)
    checker_file = checker_flags[checker_flags.index("--rrl_step_checker") + 1]
    assert env["RRL_STEP_CHECKER"] == checker_file  # the baseline's process reward reads replay's checker
    assert env["RRL_TOKENIZER"] == f"{tmp_path}/seed1/model" and env["RRL_OUTCOME_REWARD"] == f"{tmp_path}/reward_func.py"
    # OpenRLHF's eval reports the reward: the eval set's prompts get the outcome alone, as in every other arm
    base = grid.base_flags(tmp_path, 1, 400, 25, tmp_path / "run")
    assert env["RRL_PROCESS_EVAL_DATASET"] == base[base.index("--eval.dataset") + 1]
    reward_file = Path(flags[flags.index("--reward.remote_url") + 1])
    assert reward_file == ROOT / "scripts" / "reward_process.py" and reward_file.exists()
    assert not any("=" in word and word.split("=", 1)[0].isupper() for word in flags)
    assert grid.arm_command("--actor.adam.lr 1e-3 --x A=B", tmp_path, 0) == ({}, ["--actor.adam.lr", "1e-3", "--x", "A=B"])


def test_only_seeds_picks_a_subset_of_the_grids_seeds_and_names_the_flag_on_bad_input(capsys):
    import argparse

    import pytest

    grid = load_grid()
    parser = argparse.ArgumentParser()
    assert grid.selected_seeds(parser, 3, None) == [0, 1, 2]
    assert grid.selected_seeds(parser, 3, "2") == [2] and grid.selected_seeds(parser, 5, "1,3") == [1, 3]
    for bad in ("3", "x", ""):
        with pytest.raises(SystemExit):
            grid.selected_seeds(parser, 3, bad)
        assert "--only_seeds" in capsys.readouterr().err


def test_record_keeps_every_finished_runs_compact_metrics_where_the_report_reads_them(tmp_path):
    from openrlhf_rrl.runner.report import read_runs

    grid = load_grid()
    rows = grid.metrics_rows({"train/reward": {1: 0.1, 2: 0.2}, "train/rrl/restart_groups": {1: 2.0, 2: 3.0},
                              "eval/eval_hard_pass1": {2: 0.3}}, wall_s=9.0)
    (tmp_path / "out" / "metrics").mkdir(parents=True)
    (tmp_path / "out" / "metrics" / "rrl_s0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    grid.write_record(tmp_path / "out", tmp_path / "doc")
    (run,) = read_runs(tmp_path / "doc")["rrl"]
    assert run.evals == {"eval/hard": [0.3]} and run.mechanism["rrl/restart_groups"] == 5.0
    assert run.summary["wall_s"] == 9.0
