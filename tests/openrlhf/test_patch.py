"""patches/: the per-release patch applies, and OpenRLHF's own CLI then hands --rrl_* runs to the plugin."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("vllm")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(scope="module")
def patched(tmp_path_factory):
    out = tmp_path_factory.mktemp("patched")
    proc = subprocess.run(["bash", os.path.join(ROOT, "patches", "check_patch.sh")], cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ, PATCHED_OUT=str(out), PYTHON=sys.executable), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "openrlhf-0.11.2.patch applies to openrlhf 0.11.2" in proc.stdout
    return str(out)


def cli_help(patched, *argv):
    env = dict(os.environ, PYTHONPATH=patched, RRL_CPU_MODE="1")  # the CPU mode's flash_attn stand-in
    proc = subprocess.run([sys.executable, "-m", "openrlhf.cli.train_ppo_ray", *argv, "--help"], cwd=patched,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_patched_openrlhf_cli_delegates_rrl_runs_to_the_plugin(patched):
    text = cli_help(patched, "--rrl_enable")
    assert "Retrospective Replay (RRL)" in text and "--rrl.replay_share" in text and "--actor.model_name_or_path" in text


def test_patched_openrlhf_cli_without_rrl_flags_is_unchanged(patched):
    text = cli_help(patched)
    assert "--actor.model_name_or_path" in text and "--rrl_enable" not in text


def test_the_patch_does_not_apply_twice(patched):
    proc = subprocess.run(["patch", "-p1", "-d", patched, "--forward", "--dry-run"], cwd=ROOT, capture_output=True,
                          text=True, stdin=open(os.path.join(ROOT, "patches", "openrlhf-0.11.2.patch")))
    assert proc.returncode != 0  # already applied: a second run is refused, not doubled
