import argparse
from dataclasses import fields

import pytest

from openrlhf_rrl.config import RRLConfig, add_rrl_arguments
from openrlhf_rrl.core.errors import RRLConfigError


def parser():
    return add_rrl_arguments(argparse.ArgumentParser(prog="train"))


def cfg(*argv):
    return RRLConfig.from_args(parser().parse_args(list(argv)))


def test_defaults_are_sensible_for_an_llm_run():
    c = cfg()
    assert c == RRLConfig()
    assert (c.enable, c.replay_share, c.buffer_capacity, c.per_prompt_capacity) == (False, 0.25, 4096, 8)
    assert (c.policy, c.scorer, c.restart_temperature, c.admit_per_step) == ("promise", "agree", None, -1)
    assert (c.success_threshold, c.hard_threshold, c.retire_solved_rate, c.retire_dead_after) == (0.5, 0.5, 0.75, 16)


VALUES = {
    "replay_share": ("0.4", 0.4), "share_schedule": ("cosine", "cosine"), "start_step": ("3", 3),
    "warmup_steps": ("2", 2), "total_steps": ("100", 100), "share_min": ("0.1", 0.1), "share_max": ("0.6", 0.6),
    "buffer_capacity": ("128", 128), "per_prompt_capacity": ("2", 2), "temperature": ("0.5", 0.5),
    "restart_decay": ("0.9", 0.9), "scorer": ("critic", "critic"), "policy": ("passrate", "passrate"),
    "target_pass_rate": ("0.3", 0.3), "hard_threshold": ("0.2", 0.2), "success_threshold": ("1", 1.0),
    "min_prefix_frac": ("0.2", 0.2), "max_prefix_frac": ("0.8", 0.8), "min_prefix_tokens": ("4", 4),
    "max_prefix_tokens": ("512", 512), "cut_every": ("16", 16), "boundary_tokens": ("13,198", (13, 198)),
    "admit_per_step": ("7", 7), "max_restarts_per_prompt": ("2", 2), "retire_solved_rate": ("0.9", 0.9),
    "retire_dead_after": ("32", 32), "restart_temperature": ("1.2", 1.2), "buffer_path": ("/tmp/b.jsonl", "/tmp/b.jsonl"),
    "seed": ("9", 9), "cut_control": ("on", "on"), "retry_unsolved": ("off", "off"), "untried_ttl": ("20", 20), "idle_warn_steps": ("5", 5),
    "loss_norm": ("trained", "trained"), "buffer_call_timeout": ("30", 30.0), "displaced_prompts": ("drop", "drop"),
    "logprob_temperature": ("sampled", "sampled"),
    "step_checker": (__file__, __file__),  # any existing file parses; it is loaded by RetrospectiveReplay
}
FLAGS = {"enable", "train_prefix", "agree_probes"}


def test_every_field_has_a_flag_and_a_test_value():
    assert {f.name for f in fields(RRLConfig)} == set(VALUES) | FLAGS


@pytest.mark.parametrize("name", sorted(VALUES))
def test_underscore_flag_and_dotted_alias_parse_to_the_same_dest(name):
    text, value = VALUES[name]
    extra = ["--rrl_total_steps", "100"] if name == "share_schedule" else []
    a = parser().parse_args([f"--rrl_{name}", text] + extra)
    b = parser().parse_args([f"--rrl.{name}", text] + extra)
    assert getattr(a, f"rrl_{name}") == getattr(b, f"rrl_{name}") == text
    assert getattr(RRLConfig.from_args(a), name) == getattr(RRLConfig.from_args(b), name) == value


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_store_true_flags(name):
    assert getattr(cfg(), name) is False
    assert getattr(cfg(f"--rrl_{name}"), name) is True
    assert getattr(cfg(f"--rrl.{name}"), name) is True


def test_replay_share_accepts_auto():
    assert cfg("--rrl_replay_share", "auto").replay_share == "auto"
    assert cfg("--rrl.replay_share", "AUTO").replay_share == "auto"
    assert cfg("--rrl_restart_temperature", "none").restart_temperature is None


@pytest.mark.parametrize("argv,message", [
    (["--rrl_replay_share", "1.5"], "--rrl_replay_share: expected a number in [0, 1] or 'auto', got 1.5"),
    (["--rrl.replay_share", "lots"], "--rrl_replay_share: expected a number in [0, 1] or 'auto', got lots"),
    (["--rrl_buffer_capacity", "-1"], "--rrl_buffer_capacity: expected an integer >= 0, got -1"),
    (["--rrl_buffer_capacity", "many"], "--rrl_buffer_capacity: expected an integer >= 0, got many"),
    (["--rrl_per_prompt_capacity", "0"], "--rrl_per_prompt_capacity: expected an integer >= 1, got 0"),
    (["--rrl_scorer", "vibes"], "--rrl_scorer: expected one of critic, reward, checker, entropy, mc, agree or file:path.py, got vibes"),
    (["--rrl_scorer", "file:/no/such/scorer.py"], "--rrl_scorer: scorer file not found: /no/such/scorer.py"),
    (["--rrl_policy", "greedy"], "--rrl_policy: expected one of promise, passrate, uncertainty, got greedy"),
    (["--rrl_share_schedule", "exp"], "--rrl_share_schedule: expected one of constant, linear, cosine, got exp"),
    (["--rrl_share_schedule", "cosine"], "--rrl_total_steps: the cosine schedule needs total_steps"),
    (["--rrl_temperature", "0"], "--rrl_temperature: expected a number > 0, got 0"),
    (["--rrl_restart_decay", "0"], "--rrl_restart_decay: expected a number in (0, 1], got 0"),
    (["--rrl_share_min", "0.6"], "--rrl_share_min: expected <= --rrl_share_max (0.5), got 0.6"),
    (["--rrl_min_prefix_frac", "0.95"], "--rrl_min_prefix_frac: expected <= --rrl_max_prefix_frac"),
    (["--rrl_boundary_tokens", "13,x"], "--rrl_boundary_tokens: expected comma-separated token ids, got 13,x"),
    (["--rrl_admit_per_step", "-2"], "--rrl_admit_per_step: expected an integer >= -1, got -2"),
    (["--rrl_hard_threshold", "nan"], "--rrl_hard_threshold: expected a number in [0, 1], got nan"),
    (["--rrl_restart_temperature", "-1"], "--rrl_restart_temperature: expected a number > 0 or none, got -1"),
    (["--rrl.policy", "Passrate"], "--rrl_policy: expected one of promise, passrate, uncertainty, got Passrate"),
    (["--rrl_cut_control", "maybe"], "--rrl_cut_control: expected one of auto, on, off, got maybe"),
    (["--rrl.cut_control", "1"], "--rrl_cut_control: expected one of auto, on, off, got 1"),
    (["--rrl_untried_ttl", "-1"], "--rrl_untried_ttl: expected an integer >= 0, got -1"),
    (["--rrl.untried_ttl", "5.5"], "--rrl_untried_ttl: expected an integer >= 0, got 5.5"),
    (["--rrl_step_checker", "/no/such/check.py"], "--rrl_step_checker: step checker file not found: /no/such/check.py"),
    (["--rrl.step_checker", "/no/such/check.py"], "--rrl_step_checker: step checker file not found: /no/such/check.py"),
])
def test_bad_values_give_one_line_errors_naming_the_flag(argv, message):
    with pytest.raises(RRLConfigError) as err:
        cfg(*argv)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_new_options_default_to_auto_cut_control_a_50_step_ttl_and_no_checker():
    c = cfg()
    assert (c.cut_control, c.untried_ttl, c.step_checker) == ("auto", 50, None)
    assert cfg("--rrl_step_checker", "none").step_checker is None
    assert cfg("--rrl.untried_ttl", "0").untried_ttl == 0


def test_help_states_every_default():
    text = " ".join(parser().format_help().split())
    for f in fields(RRLConfig):
        assert f"--rrl_{f.name}" in text and f"--rrl.{f.name}" in text
    for snippet in ("(default: 4096)", "(default: 0.25)", "(default: promise)", "(default: agree)",
                    "(default: none)", "(default: -1)", "(default: off)"):
        assert snippet in text


def test_from_dict_and_to_dict_round_trip():
    c = RRLConfig.from_dict({"rrl_replay_share": "auto", "buffer_capacity": 16, "rrl.boundary_tokens": [13]})
    assert (c.replay_share, c.buffer_capacity, c.boundary_tokens) == ("auto", 16, (13,))
    assert RRLConfig.from_dict(c.to_dict()) == c
    with pytest.raises(RRLConfigError, match="^--rrl_colour: unknown RRL option"):
        RRLConfig.from_dict({"colour": 1})
    with pytest.raises(RRLConfigError, match="^--rrl_buffer_capacity: "):
        RRLConfig(buffer_capacity=-5)
    with pytest.raises(RRLConfigError, match="^--rrl_enable: "):
        RRLConfig(enable="maybe")


def test_from_args_reads_only_rrl_attributes_of_a_foreign_namespace():
    ns = argparse.Namespace(rrl_buffer_capacity=10, lr=1e-5, rrl_policy="uncertainty")
    c = RRLConfig.from_args(ns)
    assert (c.buffer_capacity, c.policy, c.replay_share) == (10, "uncertainty", 0.25)


def test_dotted_dest_reaches_a_hierarchized_namespace():
    # the OpenRLHF launcher: dest "rrl.<name>", then OpenRLHF's hierarchize() makes args.rrl.<name>
    from types import SimpleNamespace

    p = add_rrl_arguments(argparse.ArgumentParser(prog="train"), dotted_dest=True)
    ns = p.parse_args(["--rrl_enable", "--rrl.replay_share", "0.4", "--rrl_buffer_capacity", "9"])
    flat = vars(ns)
    assert flat["rrl.enable"] is True and flat["rrl.replay_share"] == "0.4" and flat["rrl.buffer_capacity"] == "9"
    c = RRLConfig.from_args(ns)
    assert (c.enable, c.replay_share, c.buffer_capacity) == (True, 0.4, 9)
    nested = SimpleNamespace(lr=1, rrl=SimpleNamespace(**{k.split(".", 1)[1]: v for k, v in flat.items()}))
    assert RRLConfig.from_args(nested) == c


def test_auto_log_prob_temperature_is_sampled_only_for_replay_with_hot_restarts():
    from openrlhf_rrl.config import logprob_temperature_for

    def mode(**kw):
        return logprob_temperature_for(RRLConfig(**kw), run_temperature=1.0)

    assert mode(enable=True, restart_temperature=2.0) == "sampled"
    assert mode(enable=False, restart_temperature=2.0) == "run"  # a baseline's hot rows keep run
    assert mode(enable=True, restart_temperature=None) == "run"  # restarts at the run's temperature
    assert mode(enable=True, restart_temperature=1.0) == "run"
    assert mode(enable=True, restart_temperature=2.0, logprob_temperature="run") == "run"
    assert mode(enable=False, logprob_temperature="sampled") == "sampled"
    assert logprob_temperature_for(RRLConfig(enable=True, restart_temperature=2.0), 1.0, packing=True) == "run"
