"""The start-up check: one line naming the flag, before anything starts."""

import importlib.metadata

import pytest

pytest.importorskip("vllm")

from openrlhf_rrl.core.errors import RRLConfigError  # noqa: E402


@pytest.fixture(scope="module")
def parse():
    from openrlhf.utils.config import hierarchize

    from openrlhf_rrl.openrlhf.arguments import launcher_parser

    parser = launcher_parser()
    return lambda *argv: hierarchize(parser.parse_args(["--vllm.num_engines", "1", *argv]))


def check(args, scorer_given=False):
    from openrlhf_rrl.openrlhf.startup_check import resolve_rrl_config

    return resolve_rrl_config(args, scorer_given)


def test_scorer_defaults_to_the_checker_then_the_critic_then_agreement(parse, tmp_path):
    checker = tmp_path / "checker.py"
    checker.write_text("def step_checker(prompt_ids, response_ids, label):\n    return 0\n")
    assert check(parse("--rrl_enable", "--algo.advantage.estimator", "gae")).scorer == "critic"
    groups = ("--rollout.n_samples_per_prompt", "8")
    assert check(parse("--rrl_enable", "--algo.advantage.estimator", "group_norm", *groups)).scorer == "agree"
    assert check(parse("--rrl_enable", "--rrl_step_checker", str(checker))).scorer == "checker"
    assert check(parse("--rrl_enable", "--algo.advantage.estimator", "group_norm", "--rrl_scorer", "agree",
                       "--rrl_agree_probes", *groups), True).agree_probes is True
    # groups of 2: one success is a rate of 0.5, never below the hard threshold 0.5: agree could never cut
    pairs = ("--rrl_enable", "--algo.advantage.estimator", "group_norm", "--rollout.n_samples_per_prompt", "2")
    assert check(parse(*pairs)).scorer == "reward"
    assert check(parse(*pairs, "--rrl_hard_threshold", "0.75")).scorer == "agree"
    assert check(parse("--rrl_enable", "--algo.advantage.estimator", "gae", "--rrl_scorer", "mc"), True).scorer == "mc"


def test_log_probs_follow_hot_restarts_unless_rows_are_packed_or_the_flag_is_given(parse):
    # restarts at the run's temperature (OpenRLHF's default): run and sampled are the same, auto keeps run
    assert check(parse("--rrl_enable")).logprob_temperature == "run"
    hot = ("--rrl_enable", "--rrl_restart_temperature", "2")
    assert check(parse(*hot)).logprob_temperature == "sampled"  # hot restarts are trained on-policy
    assert check(parse(*hot, "--rollout.temperature", "2")).logprob_temperature == "run"  # not hotter than the run
    assert check(parse(*hot, "--ds.packing_samples")).logprob_temperature == "run"  # packed rows share one temperature
    assert check(parse(*hot, "--rrl_logprob_temperature", "run")).logprob_temperature == "run"
    assert check(parse("--rrl_enable", "--rrl_logprob_temperature", "sampled")).logprob_temperature == "sampled"


def test_retries_come_on_with_agree_where_restarts_are_hotter_than_the_run(parse):
    # GRPO (no critic: agree); OpenRLHF's default restart temperature is the run's own, where a retry would
    # repeat what just failed
    grpo = ("--rrl_enable", "--algo.advantage.estimator", "group_norm", "--rollout.n_samples_per_prompt", "8")
    assert check(parse(*grpo)).scorer == "agree" and check(parse(*grpo)).retry_unsolved == "off"
    hot = (*grpo, "--rrl_restart_temperature", "1.5")
    assert check(parse(*hot)).scorer == "agree" and check(parse(*hot)).retry_unsolved == "on"
    assert check(parse(*hot, "--rollout.temperature", "1.5")).retry_unsolved == "off"  # not hotter than the run
    assert check(parse(*hot, "--rrl_scorer", "reward"), scorer_given=True).retry_unsolved == "off"
    assert check(parse(*grpo, "--rrl_retry_unsolved", "on")).retry_unsolved == "on"


@pytest.mark.parametrize("argv,message", [
    (["--algo.advantage.estimator", "reinforce", "--rrl_scorer", "critic"],
     "--rrl_scorer: critic needs a critic, and --algo.advantage.estimator reinforce has none"),
    (["--rrl_scorer", "checker"], "--rrl_scorer: checker needs a step checker; give --rrl_step_checker file.py or the URL of a served one"),
    (["--rrl_scorer", "entropy"], "--rrl_scorer: entropy is not available with OpenRLHF"),
    (["--rrl_train_prefix"], "--rrl_train_prefix: the replayed prefix was sampled by an older policy"),
    (["--rrl_replay_share", "2"], "--rrl_replay_share: expected a number in [0, 1] or 'auto', got 2"),
    (["--vllm.num_engines", "0"], "--rrl_enable: restarts run on the vLLM engines"),
    (["--rrl_replay_share", "0.9", "--rollout.batch_size", "4"],
     "--rrl_displaced_prompts: defer needs a fresh prompt in every batch, and a replay share of 0.9 fills all 4"),
    (["--rrl_replay_share", "auto", "--rrl_share_max", "1"],
     "--rrl_displaced_prompts: defer needs a fresh prompt in every batch, and a replay share of 1.0 fills all"),
    (["--rrl_logprob_temperature", "sampled", "--ds.packing_samples"],
     "--rrl_logprob_temperature: sampled divides each row's logits by its own temperature, and --ds.packing_samples"),
    (["--rrl_displaced_prompts", "keep"], "--rrl_displaced_prompts: expected one of defer, drop, got keep"),
    (["--rrl_scorer", "agree", "--rollout.n_samples_per_prompt", "2"],
     "--rrl_scorer: agree needs a hard group that holds a success, and with 2 samples per prompt one success"),
])
def test_options_that_do_not_fit_the_algorithm_stop_with_one_line_naming_the_flag(parse, argv, message):
    with pytest.raises(RRLConfigError) as err:
        check(parse("--rrl_enable", *argv), scorer_given=any("scorer" in a for a in argv))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_deferring_displaced_prompts_stretches_the_learning_rate_schedule_to_the_longest_episode(parse):
    from openrlhf_rrl.openrlhf.trainers import stretched_max_steps

    # 8 prompts a batch, 2 of them restarts at most: an episode has at most 8/6 as many batches
    args = parse("--rrl_enable", "--rrl_replay_share", "0.25", "--rollout.batch_size", "8")
    assert check(args).displaced_prompts == "defer" and stretched_max_steps(30, args) == 40
    auto = parse("--rrl_enable", "--rrl_replay_share", "auto", "--rrl_share_max", "0.5", "--rollout.batch_size", "8")
    assert stretched_max_steps(30, auto) == 60  # auto may reach its ceiling
    # drop keeps OpenRLHF's count; so does a share too small to take a slot of the generation batch
    assert stretched_max_steps(30, parse("--rrl_enable", "--rrl_displaced_prompts", "drop")) == 30
    assert stretched_max_steps(30, parse("--rrl_enable", "--rrl_replay_share", "0.05", "--rollout.batch_size", "8",
                                         "--rollout.vllm_generate_batch_size", "8")) == 30
    # and the replay check passes a share at 1 with drop (no prompt is waiting for a fresh slot)
    assert check(parse("--rrl_enable", "--rrl_replay_share", "1", "--rrl_displaced_prompts", "drop")).replay_share == 1.0


def test_train_prefix_is_accepted_with_importance_correction(parse):
    c = check(parse("--rrl_enable", "--rrl_train_prefix", "--algo.advantage.is_correction_level", "token"))
    assert c.train_prefix is True


def test_an_unsupported_openrlhf_version_is_named(parse, monkeypatch):
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.9.0" if name == "openrlhf" else real(name))
    with pytest.raises(RRLConfigError, match=r"^--rrl_enable: OpenRLHF 0.9.0 is installed; openrlhf-rrl supports 0.11.2$"):
        check(parse("--rrl_enable"))


def test_the_launcher_exits_2_with_the_one_line_error(capsys):
    from openrlhf_rrl.openrlhf.launch import main

    rc = main(["--vllm.num_engines", "1", "--rrl_enable", "--rrl_scorer", "critic",
               "--algo.advantage.estimator", "group_norm"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("openrlhf_rrl.cli.train_ppo_ray: error: --rrl_scorer: critic needs a critic")


def test_the_checker_scorer_is_accepted_with_a_step_checker_file(parse, tmp_path):
    checker = tmp_path / "checker.py"
    checker.write_text("def step_checker(prompt_ids, response_ids, label):\n    return 0\n")
    c = check(parse("--rrl_enable", "--rrl_scorer", "checker", "--rrl_step_checker", str(checker)), True)
    assert (c.scorer, c.step_checker) == ("checker", str(checker))


def test_docs_name_every_rrl_flag():
    import os
    from dataclasses import fields

    from openrlhf_rrl.config import RRLConfig

    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "openrlhf.md"), encoding="utf-8").read()
    missing = [f.name for f in fields(RRLConfig) if f"`--rrl_{f.name}`" not in text]
    assert not missing, f"docs/openrlhf.md does not list: {missing}"


def test_the_actors_read_the_driver_node_the_launcher_recorded(parse, monkeypatch):
    """The buffer actor is pinned to the driver's node: the node id the launcher records survives the
    swap that hands every actor its typed RRL options (it was once overwritten there)."""
    import openrlhf.trainer.ppo_trainer as sync_trainer
    import openrlhf.trainer.ppo_trainer_async as async_trainer
    import openrlhf.trainer.ray.vllm_engine as vllm_engine

    from openrlhf_rrl.openrlhf.install import install_replay

    for module, name in ((sync_trainer, "PPOTrainer"), (async_trainer, "PPOTrainerAsync"),
                         (vllm_engine, "RolloutRayActor")):
        monkeypatch.setattr(module, name, getattr(module, name))  # restored after the test
    args = parse("--rrl_enable", "--rrl_replay_share", "0.25")
    install_replay(args, check(args), driver_node_id="node-of-the-driver")
    assert args.rrl.driver_node_id == "node-of-the-driver" and args.rrl.replay_share == 0.25
    assert sync_trainer.PPOTrainer.__ray_actor_class__.__name__ == "ReplayPPOTrainer"
