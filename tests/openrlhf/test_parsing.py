"""The launcher's parser is OpenRLHF's own (the real installed one) plus the RRL flags."""

import json
import os

import pytest

from openrlhf_rrl.config import RRLConfig

pytest.importorskip("vllm")

DATA = os.path.join(os.path.dirname(__file__), "data", "openrlhf_example_argv.json")
EXAMPLES = json.load(open(DATA, encoding="utf-8"))["scripts"]


@pytest.fixture(scope="module")
def parsers():
    from openrlhf_rrl.openrlhf.arguments import launcher_parser, openrlhf_parser

    return openrlhf_parser(), launcher_parser()


def decision(parser, argv):
    """'ok' with the parsed values, or 'rejected' (argparse's exit 2)."""
    try:
        return "ok", {k: v for k, v in vars(parser.parse_args(argv)).items() if not k.startswith("rrl")}
    except SystemExit as e:
        assert e.code == 2
        return "rejected", None


def test_the_captured_parser_is_openrlhfs_train_ppo_ray(parsers):
    stock, _ = parsers
    dests = {a.dest for a in stock._actions}
    assert {"actor.model_name_or_path", "algo.advantage.estimator", "vllm.num_engines", "ckpt.path"} <= dests
    assert not any(d.startswith("rrl") for d in dests)


@pytest.mark.parametrize("script", sorted(EXAMPLES))
def test_example_scripts_get_the_same_decision_with_and_without_rrl_enable(parsers, script, capsys):
    stock, launcher = parsers
    argv = EXAMPLES[script]
    expected = decision(stock, argv)
    assert decision(launcher, argv) == expected
    with_rrl = decision(launcher, argv + ["--rrl_enable"])
    assert with_rrl == expected


def _flag_units(argv):
    """Each example flag with the values that follow it, as one unit."""
    units, i = [], 0
    while i < len(argv):
        j = i + 1
        while j < len(argv) and not argv[j].startswith("--"):
            j += 1
        units.append(argv[i:j])
        i = j
    return units


ALL_UNITS = sorted({tuple(u) for argv in EXAMPLES.values() for u in _flag_units(argv)})


def test_every_example_flag_alone_gets_the_same_decision(parsers, capsys):
    stock, launcher = parsers
    differing = []
    for unit in ALL_UNITS:
        expected = decision(stock, list(unit))
        if decision(launcher, list(unit)) != expected or decision(launcher, list(unit) + ["--rrl_enable"]) != expected:
            differing.append(unit)
    assert not differing
    # the examples hold flags this release rejects (e.g. --algo.advantage.is_correction_enable from
    # 0.11.0): the launcher rejects them too
    assert any(decision(stock, list(u))[0] == "rejected" for u in ALL_UNITS)


def test_rrl_flags_and_dotted_aliases_reach_args_rrl_after_hierarchize(parsers):
    from openrlhf.utils.config import hierarchize

    _, launcher = parsers
    ns = launcher.parse_args(["--rrl_enable", "--rrl.replay_share", "0.4", "--rrl_scorer", "mc",
                              "--algo.advantage.estimator", "group_norm"])
    args = hierarchize(ns)
    assert args.rrl.enable is True and args.rrl.replay_share == "0.4" and args.rrl.scorer == "mc"
    assert args.algo.advantage.estimator == "group_norm"
    config = RRLConfig.from_args(args)
    assert (config.enable, config.replay_share, config.scorer) == (True, 0.4, "mc")


def test_help_lists_every_rrl_flag_with_help_text(parsers):
    _, launcher = parsers
    text = " ".join(launcher.format_help().split())
    for name in RRLConfig.__dataclass_fields__:
        assert f"--rrl_{name}" in text and f"--rrl.{name}" in text
    assert "Retrospective Replay (RRL)" in text and "--rrl_cpu_mode" in text
    assert "--actor.model_name_or_path" in text  # and OpenRLHF's own


def test_unknown_rrl_flag_is_rejected(parsers, capsys):
    _, launcher = parsers
    assert decision(launcher, ["--rrl_colour", "blue"])[0] == "rejected"
