"""A local Ray for the CPU mode: loopback only, no dashboard, its files inside the cache folder.

OpenRLHF asks Ray for GPUs ({"GPU": 1, "CPU": 1} bundles, num_gpus on every model actor). Ray's
GPU count is a logical resource, so the CPU mode declares enough logical GPUs for the run's
placement to fit; no process uses them (torch, DeepSpeed and vLLM all run on the CPU here). That
keeps Ray itself unpatched.
"""

from __future__ import annotations

import os
import tempfile

from . import ENV_VAR, CpuModeError

# environment every Ray worker (and vLLM's engine subprocess under it) needs in CPU mode
WORKER_ENV_DEFAULTS = {
    ENV_VAR: "1",
    "DS_ACCELERATOR": "cpu",
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache per engine
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": "1",
    "NCCL_DEBUG": "WARN",
    # Ray otherwise swaps 127.0.0.1 for the machine's interface address; this keeps it on loopback
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    # Ray starts its worker processes at niceness 15: beside any other CPU-heavy process (a second job, a
    # benchmark) every actor of the run then gets a few % of a core, and a smoke run of minutes takes
    # hours. The raylet reads this when ray.init starts it; Ray's own job drivers run at 0 too.
    "RAY_worker_niceness": "0",
}
# passed through to workers when set (every cache inside the project: see scripts/env.sh)
PASS_THROUGH_PREFIXES = ("RRL_",)  # the project's own switches and logs
PASS_THROUGH = ("TMPDIR", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE",
                "TORCH_EXTENSIONS_DIR", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "XDG_CACHE_HOME",
                "XDG_CONFIG_HOME", "VLLM_CACHE_ROOT", "VLLM_CONFIG_ROOT", "VLLM_RPC_BASE_PATH", "VLLM_NO_USAGE_STATS",
                "DO_NOT_TRACK", "MPLCONFIGDIR", "WANDB_MODE", "WANDB_DIR", "OMP_NUM_THREADS",
                "PYTHONPATH")


def logical_gpus_needed(args) -> int:
    """Logical GPUs that OpenRLHF's placement asks for with these options (generous; unused)."""
    a = args
    need = a.actor.num_nodes * a.actor.num_gpus_per_node
    need += a.ref.num_nodes * a.ref.num_gpus_per_node
    need += a.critic.num_nodes * a.critic.num_gpus_per_node
    need += a.reward.num_nodes * a.reward.num_gpus_per_node
    need += (a.vllm.num_engines or 0) * a.vllm.tensor_parallel_size
    return max(4, need)


def worker_env() -> dict:
    env = {k: os.environ.get(k, v) for k, v in WORKER_ENV_DEFAULTS.items()}
    env[ENV_VAR] = "1"
    env.update({k: v for k, v in os.environ.items() if k in PASS_THROUGH or k.startswith(PASS_THROUGH_PREFIXES)})
    return env


def ray_temp_dir() -> str:
    """Where the CPU mode's Ray keeps its sessions (and so its per-process logs)."""
    return os.environ.get("RRL_RAY_TMPDIR") or os.path.join(tempfile.gettempdir(), "rrl-ray")


def start_local_ray(args) -> None:
    """Connect to the Ray cluster at RAY_ADDRESS if one is set (it must declare logical GPUs), else
    start a private local one for this run."""
    import ray

    for k, v in worker_env().items():
        os.environ.setdefault(k, v)
    if not ray.is_initialized() and os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], runtime_env={"env_vars": worker_env()})
    if ray.is_initialized():
        if ray.cluster_resources().get("GPU", 0) < 1:
            raise CpuModeError("CPU mode: the Ray cluster has no GPU resource; let the launcher start Ray (unset "
                               "RAY_ADDRESS), or start it with `ray start --head --num-gpus 8 --node-ip-address 127.0.0.1`")
        return
    init_private_ray(logical_gpus_needed(args), runtime_env={"env_vars": worker_env()}, log_to_driver=True)


def init_private_ray(gpus: int, **options) -> None:
    """A one-node Ray for this machine alone: `gpus` logical GPUs (no process uses them) and 4 CPUs more,
    bound to 127.0.0.1 with no dashboard, its sessions under ray_temp_dir()."""
    import ray

    temp_dir = ray_temp_dir()
    os.makedirs(temp_dir, exist_ok=True)
    ray.init(address="local", num_cpus=gpus + 4, num_gpus=gpus, include_dashboard=False,
             _node_ip_address="127.0.0.1", _temp_dir=temp_dir, **options)


def serve(num_gpus: int = 8, nodes: int = 1) -> None:
    """Hold a CPU-mode Ray cluster open for other processes (OpenRLHF's own stock CLI in CPU mode, a run
    spread over several nodes): prints RAY_ADDRESS=..., then answers each `actors` line on stdin with one
    JSON line (every actor's class, node, state and pid: where a run placed its parts) until stdin closes
    or the process is terminated. With nodes > 1, that many raylets run on this machine (Ray's own
    multi-node test cluster), num_gpus logical GPUs each: a rehearsal of a cluster on one machine."""
    import json
    import signal
    import sys

    import ray
    from ray.cluster_utils import Cluster

    os.environ.update(worker_env())
    os.environ.pop("RAY_ADDRESS", None)
    cluster = None
    if nodes > 1:
        node = {"num_cpus": num_gpus + 4, "num_gpus": num_gpus, "node_ip_address": "127.0.0.1"}
        # Ray's test cluster records its address under $RAY_TMPDIR/ray without creating that folder (on a
        # fresh machine it is missing): point it into this helper's own folder and create it.
        temp_dir = ray_temp_dir()
        os.environ["RAY_TMPDIR"] = temp_dir
        os.makedirs(os.path.join(temp_dir, "ray"), exist_ok=True)
        cluster = Cluster(initialize_head=True, head_node_args=dict(node, include_dashboard=False, temp_dir=temp_dir,
                                                                    object_store_memory=512 * 1024 ** 2))
        for _ in range(nodes - 1):
            cluster.add_node(**node, object_store_memory=512 * 1024 ** 2)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address)
    else:
        init_private_ray(num_gpus)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print(f"RAY_ADDRESS={ray.get_runtime_context().gcs_address}", flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "actors":
                table = ray._private.state.actors()
                print(json.dumps([{"class": a["ActorClassName"], "node": a["Address"]["NodeID"], "state": a["State"],
                                   "pid": a.get("Pid"), "name": a.get("Name")} for a in table.values()]), flush=True)
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()


if __name__ == "__main__":
    import argparse

    cli = argparse.ArgumentParser(description=serve.__doc__.splitlines()[0])
    cli.add_argument("--nodes", type=int, default=1, help="raylets on this machine (a multi-node rehearsal)")
    cli.add_argument("--gpus", type=int, default=8, help="logical GPUs per node (no process uses them)")
    opts = cli.parse_args()
    serve(opts.gpus, opts.nodes)
