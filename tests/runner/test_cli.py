"""`rrl-demo`: bad flags are one-line errors; a small run writes the table, the plot and the metrics."""

from __future__ import annotations

import json

import pytest

from openrlhf_rrl.runner.cli import main, parse


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--arms", "baseline,nope"], "--arms"),
        (["--rrl_replay_share", "1.5"], "--rrl_replay_share"),
        (["--rrl.scorer", "magic"], "--rrl_scorer"),
        (["--rrl_buffer_capacity", "-3"], "--rrl_buffer_capacity"),
        (["--train.num_steps", "0"], "--train.num_steps"),
        (["--rrl_scorer", "agree", "--rollout.n_samples_per_prompt", "2"], "--rrl_scorer: agree needs a hard group"),
    ],
)
def test_bad_flags_give_one_line_errors(argv, flag, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert flag in err


def test_scorer_follows_the_task_unless_given():
    args, rrl = parse(["--task", "chain"])
    assert rrl.scorer == "checker"
    args, rrl = parse(["--task", "arithmetic", "--algo.advantage.estimator", "gae"])
    assert rrl.scorer == "critic"
    args, rrl = parse(["--task", "chain", "--rrl.scorer", "entropy"])
    assert rrl.scorer == "entropy"
    # outcome reward only: agreement with a success, unless a group is too small to hold a hard success
    assert parse(["--task", "arithmetic"])[1].scorer == "agree"
    assert parse(["--task", "arithmetic", "--rollout.n_samples_per_prompt", "2"])[1].scorer == "reward"
    assert parse(["--task", "arithmetic", "--rollout.n_samples_per_prompt", "2",
                  "--rrl_hard_threshold", "0.6"])[1].scorer == "agree"


def test_quick_preset_and_dotted_flags():
    args, _ = parse(["--quick", "--rollout.batch_size", "16"])
    assert (args.steps, args.seeds, args.prompts_per_step) == (200, 2, 16)


def test_actor_loss_norm_is_an_alias_of_rrl_loss_norm():
    from openrlhf_rrl.runner.cli import job_configs

    for argv, expected in (([], "response"), (["--actor.loss_norm", "trained"], "trained"),
                           (["--rrl_loss_norm", "trained"], "trained"), (["--rrl.loss_norm", "trained"], "trained")):
        args, rrl = parse(argv)
        assert rrl.loss_norm == expected
        assert {j["cfg"].rrl.loss_norm for j in job_configs(args, rrl)} == {expected}  # what the trainer reads
    with pytest.raises(SystemExit):  # argparse's choices, naming --actor.loss_norm
        parse(["--actor.loss_norm", "nope"])
    assert main(["--rrl_loss_norm", "nope"]) == 2


@pytest.mark.slow
def test_small_demo_writes_table_plot_and_metrics(tmp_path):
    out = tmp_path / "demo"
    code = main(["--out", str(out), "--train.num_steps", "3", "--seeds", "1", "--eval.steps", "1",
                 "--eval_size", "8", "--warmup.max_steps", "0", "--no_progress", "--workers", "2",
                 "--rollout.batch_size", "4", "--rollout.n_samples_per_prompt", "2", "--rrl_replay_share", "0.5"])
    assert code == 0
    table = (out / "results.md").read_text()
    assert "| baseline | 1 |" in table and "| rrl | 1 |" in table
    for arm in ("baseline", "rrl"):
        rows = [json.loads(line) for line in open(out / "metrics" / f"{arm}_s0.jsonl")]
        assert [r["step"] for r in rows if r["kind"] == "eval"] == [0, 1, 2, 3]
        assert rows[-1]["kind"] == "summary" and rows[-1]["tokens_generated"] > 0
    config = json.loads((out / "config.json").read_text())
    assert {j["arm"] for j in config["jobs"]} == {"baseline", "rrl"}

    import matplotlib.image as mpimg

    img = mpimg.imread(out / "curves.png")
    assert img.shape[0] > 300 and img.shape[1] > 500
    assert img[..., :3].std() > 0.05  # axes, lines and text, not a blank canvas


def test_killing_the_runner_kills_its_worker_jobs(tmp_path):
    """A killed rrl-demo / grid must not leave its jobs running (they would keep writing into --out)."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    script = tmp_path / "pool.py"
    script.write_text("import time\nfrom openrlhf_rrl.runner.pool import run_in_pool\n\n"
                      "def nap(item, args, queue):\n    time.sleep(120)\n\n"
                      "if __name__ == '__main__':\n    run_in_pool(nap, [1, 2], {}, 2, 0, 'nap', False)\n")
    proc = subprocess.Popen([sys.executable, str(script)])
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.time() + 60
        while len(parent.children()) < 3 and time.time() < deadline:  # the queue's manager and 2 workers
            time.sleep(0.2)
        time.sleep(2)  # past the workers' initializer
        children = parent.children()
        assert len(children) >= 3
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        gone, alive = psutil.wait_procs(children, timeout=20)
        assert alive == [], [" ".join(p.cmdline())[:80] for p in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
