"""Fixtures of the OpenRLHF integration tests: the tiny model/prompts/reward files, a CPU-mode Ray
cluster held open for runs that need an external one, and a runner for the launcher as a user
runs it (a subprocess), with its per-step metrics parsed from OpenRLHF's own log lines."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

# OpenRLHF imports flash_attn at load time; where it is not installed, the project's import-only
# stand-in lets the real classes import (a no-op where flash-attn exists)
from openrlhf_rrl.compat.flash_attn_shim import install as _install_flash_attn_shim  # noqa: E402

_install_flash_attn_shim()

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STEP_LINE = re.compile(r"Global step (\d+): (\{.*\})\s*$")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray in this process for one test module (the buffer actor, the generator's engines)."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             _temp_dir=os.environ.get("RRL_RAY_TMPDIR"))
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny Llama + word tokenizer, chain prompts and a reward file (openrlhf_rrl.cpu.tiny_assets)."""
    from openrlhf_rrl.cpu.tiny_assets import write_tiny_assets

    out = tmp_path_factory.mktemp("tiny")
    paths = write_tiny_assets(str(out), n_prompts=64)
    paths["dir"] = str(out)
    return paths


def base_args(tiny, ckpt_dir, estimator="group_norm", max_samples=12, extra=(), correction="token"):
    """Flags of a small run: 4 prompts x 2 samples per step, 8 new tokens, colocated, ZeRO-2."""
    return [
        "--actor.model_name_or_path", tiny["model"], "--actor.num_nodes", "1", "--actor.num_gpus_per_node", "1",
        "--ref.num_gpus_per_node", "1", "--reward.num_gpus_per_node", "1", "--critic.num_gpus_per_node", "1",
        "--vllm.num_engines", "1", "--vllm.tensor_parallel_size", "1", "--vllm.gpu_memory_utilization", "0.5",
        "--train.colocate_all", "--data.prompt_dataset", tiny["prompts"], "--data.input_key", "prompt",
        "--data.label_key", "label", "--data.apply_chat_template", "--reward.remote_url", tiny["reward"],
        "--algo.advantage.estimator", estimator, "--algo.kl.init_coef", "0", "--rollout.n_samples_per_prompt", "2",
        "--rollout.batch_size", "4", "--rollout.micro_batch_size", "2", "--train.batch_size", "8",
        "--train.micro_batch_size", "2", "--data.max_len", "24", "--rollout.max_new_tokens", "8",
        "--data.max_samples", str(max_samples), "--train.num_episodes", "1", "--ds.zero_stage", "2",
        "--algo.advantage.is_correction_level", correction, "--train.seed", "42",
        "--ckpt.path", os.path.join(ckpt_dir, "ds"), "--ckpt.output_dir", os.path.join(ckpt_dir, "out"),
        *extra,
    ]


# the GPU-only options spelled as their CPU equivalents, for stock OpenRLHF runs (the launcher's CPU
# mode sets these itself)
CPU_FLAGS = ["--vllm.sync_backend", "gloo", "--vllm.enforce_eager", "--ds.attn_implementation", "eager"]


def python_stacks(root_pid: int) -> str:
    """Where a stuck run is stuck: py-spy's dump of the run's own processes and of every Ray worker on the
    machine (`ray::...`; the stock CLI's workers belong to the helper cluster, not to the run). py-spy
    comes with ray[default]; without it, the processes' names are all there is."""
    import shutil

    import psutil

    procs = []
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        pass
    seen = {p.pid for p in procs}
    for p in psutil.process_iter(["cmdline"]):
        if p.pid not in seen and (p.info["cmdline"] or [""])[0].startswith("ray::"):
            procs.append(p)
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    out = []
    for p in procs:
        try:
            name = " ".join(p.cmdline())[:120]
        except psutil.Error:
            continue
        if "python" not in name and not name.startswith("ray::"):
            continue
        dump = "(py-spy not installed)"
        if os.path.exists(spy):
            res = subprocess.run([spy, "dump", "--pid", str(p.pid)], capture_output=True, text=True, timeout=60)
            dump = (res.stdout or res.stderr).strip()
        out.append(f"--- pid {p.pid}: {name}\n{dump}")
    return "\n".join(out) or "no Python process left to dump"


class Run:
    def __init__(self, rc, output, seconds, started=0.0, stacks=""):
        self.rc, self.output, self.seconds, self.started = rc, output, seconds, started
        self.stacks = stacks
        self.steps = []
        for line in output.splitlines():
            m = STEP_LINE.search(line)
            if m:
                # OpenRLHF prints the status dict; nan/inf are its only non-literal values
                self.steps.append(eval(m.group(2), {"__builtins__": {}}, {"nan": float("nan"), "inf": float("inf")}))

    def tail(self, n=60):
        """The last n lines, then what Ray's process logs say killed a worker (an engine's exit signal, a
        traceback): the driver's own output shows only the consequence."""
        from openrlhf_rrl.cpu.ray_local import ray_temp_dir
        from openrlhf_rrl.cpu.ray_logs import report

        cause = report(ray_temp_dir(), self.started) or "Ray's process logs name no cause"
        stacks = f"\n\nstacks of the stuck run (py-spy):\n{self.stacks}" if self.stacks else ""
        return "\n".join(self.output.splitlines()[-n:]) + "\n\n" + cause + stacks


SILENCE_S = int(os.environ.get("RRL_E2E_SILENCE_S", "600"))  # lower it to hunt a hang in a loop of runs


def run_module(module: str, argv, env_extra=None, timeout=1800, silence=SILENCE_S, on_line=None) -> Run:
    """Run `python -m module argv` as a user does. A run that prints nothing for `silence` seconds is stuck
    and is stopped, as is one still going after `timeout`; a slow or loaded machine only makes a run slower
    (a fixed limit of a few minutes failed every run beside a second CPU-heavy job, and 300 s of silence
    was reached once on an overloaded machine while vLLM started). Whatever it printed is kept, the reason
    it was stopped ends its output, and the stacks of its Python processes go to Run.stacks.
    on_line(line, pid) sees each line as it is printed."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # lines as they are printed: silence must mean silence
    env.update(env_extra or {})
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", module, *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines, last = [], [t0]

    def pump():
        for line in proc.stdout:
            lines.append(line)
            last[0] = time.time()
            if on_line is not None:
                on_line(line, proc.pid)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    stopped = None
    while proc.poll() is None and stopped is None:
        time.sleep(1)
        now = time.time()
        if now - last[0] > silence:
            stopped = f"no output for {silence} s: stuck"
        elif now - t0 > timeout:
            stopped = f"still running after {timeout} s"
    stacks = ""
    if stopped:
        try:
            stacks = python_stacks(proc.pid)
        except Exception as exc:  # a dump that fails must not hide why the run was stopped
            stacks = f"could not dump the stacks: {exc!r}"
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the Ray daemons it started
        except ProcessLookupError:
            pass
        proc.wait()
    reader.join(timeout=30)
    output = "".join(lines) + (f"\n[test harness] stopped the run after {time.time() - t0:.0f} s: {stopped}\n"
                               if stopped else "")
    return Run(proc.returncode, output, time.time() - t0, started=t0, stacks=stacks)


def run_launcher(argv, env_extra=None) -> Run:
    return run_module("openrlhf_rrl.cli.train_ppo_ray", argv, env_extra)


class HeldCluster:
    """A CPU-mode Ray cluster held by a helper process (python -m openrlhf_rrl.cpu.ray_local); ended by
    closing its stdin. actors() asks it where every actor ran (class, node, state, pid)."""

    def __init__(self, *flags):
        import json

        self._json = json
        # A fresh temp folder, as on a clean CI machine: Ray's test cluster once failed there only, on a
        # folder that earlier local runs had left behind.
        self._temp = tempfile.mkdtemp(prefix="held-ray-")
        env = dict(os.environ, RRL_CPU_MODE="1", TMPDIR=self._temp)
        env.pop("RAY_ADDRESS", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "openrlhf_rrl.cpu.ray_local", *flags], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.address, lines = None, []
        for line in self.proc.stdout:
            lines.append(line)
            if line.startswith("RAY_ADDRESS="):
                self.address = line.strip().split("=", 1)[1]
                break
        if self.address is None:
            self.proc.kill()
            raise RuntimeError("the CPU-mode Ray helper did not start:\n" + "".join(lines[-30:]))

    def actors(self) -> list[dict]:
        self.proc.stdin.write("actors\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith("["):
                return self._json.loads(line)
        raise RuntimeError("the CPU-mode Ray helper ended without answering")

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        shutil.rmtree(self._temp, ignore_errors=True)


@pytest.fixture(scope="session")
def cpu_ray_cluster():
    """A CPU-mode Ray cluster for runs of OpenRLHF's own stock CLI, which cannot start one itself."""
    cluster = HeldCluster()
    yield cluster.address
    cluster.close()


@pytest.fixture
def two_node_ray_cluster():
    """Two raylets on this machine, one logical GPU each: OpenRLHF's placement then puts one rank of each
    model group on each node, as on a cluster of two one-GPU machines."""
    cluster = HeldCluster("--nodes", "2", "--gpus", "1")
    yield cluster
    cluster.close()


def read_jsonl(path) -> list[dict]:
    """A JSON-lines file a run wrote (the restart audit, the tiny reward file's call log, the buffer)."""
    import json

    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="session")
def pipeline():
    """The helpers above, for test modules (--import-mode=importlib cannot import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(base_args=base_args, run_launcher=run_launcher, run_module=run_module, cpu_flags=CPU_FLAGS,
                           read_jsonl=read_jsonl)
