"""Installing the plugin into an existing OpenRLHF environment, as a cluster user does (README): the wheel
adds its own package and nothing else, pip would change no installed version, and the launcher starts."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # built from a copy of the tracked tree: a build/ folder left in the checkout could package stale files
    source = tmp_path_factory.mktemp("source") / "openrlhf-rrl"
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(out), str(source)], check=True, capture_output=True, text=True)
    (path,) = out.glob("openrlhf_rrl-*.whl")
    return path


def test_the_wheel_holds_the_package_and_asks_only_for_what_an_openrlhf_environment_has(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert all(n.startswith(("openrlhf_rrl/", "openrlhf_rrl-")) for n in names)  # no file outside its package
    assert "openrlhf_rrl/cli/train_ppo_ray.py" in names and "openrlhf_rrl/tasks/chain.py" in names
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    core = [r for r in requires if "extra ==" not in r]
    assert sorted(core) == ["numpy", "torch"]  # the runner's transformers pin stays an extra
    # pip's own answer, in this environment (OpenRLHF, torch, vLLM installed): nothing to install or change
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--report", str(report),
                    "-q", *core], check=True, capture_output=True, text=True)
    assert json.loads(report.read_text())["install"] == []


def test_the_launcher_starts_from_the_installed_wheel(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, text=True)
    env = {**os.environ, "PYTHONPATH": str(target)}  # ahead of this checkout's editable install
    where = subprocess.run([sys.executable, "-c", "import openrlhf_rrl; print(openrlhf_rrl.__file__)"], cwd="/",
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert where == str(target / "openrlhf_rrl" / "__init__.py")
    r = subprocess.run([sys.executable, "-m", "openrlhf_rrl.cli.train_ppo_ray", "--help"], cwd="/", env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "--rrl_enable" in r.stdout and "--actor.model_name_or_path" in r.stdout
