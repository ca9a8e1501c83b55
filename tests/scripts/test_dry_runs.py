"""The launch scripts' --dry-run: it starts nothing, and the command it prints is one the launcher
accepts, with the RRL options where the script says.

"Accepts" is checked with the launcher itself (openrlhf_rrl.openrlhf.launch.main) on the printed
arguments: OpenRLHF's own parser plus the RRL flags, the RRL start-up check, then OpenRLHF's own
train_ppo_ray __main__ block (its argument validation) up to train(), which is stopped at its first
step that needs a cluster (get_strategy, after ray.init is skipped). The args train() would get are
then checked, together with the placement rules train() asserts only once Ray is up.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

# torch warns about its own decorators each time the launcher re-runs OpenRLHF's module
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script_method.*:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
REWARD_FILE = str(SCRIPTS / "reward_math.py")
LAUNCHER_MODULE = "openrlhf_rrl.cli.train_ppo_ray"
# the variables the scripts read from the environment: never inherited from the caller's
SCRIPT_VARS = ("MODEL_PATH", "CRITIC_PATH", "DATASET_PATH", "INPUT_KEY", "LABEL_KEY", "REWARD_FUNC", "SAVE_PATH",
               "GPUS_PER_NODE", "VLLM_TP", "RRL_REPLAY_SHARE", "RRL_SCORER", "RRL_SUCCESS_THRESHOLD", "PYTHON",
               "RAY_JOB_ADDRESS", "ESTIMATOR", "N_SAMPLES", "REWARD_KIND", "HELPFUL_RM_PATH", "SAFETY_RM_PATH",
               "RRL_REPO", "RAY", "PLUGIN_SETUP", "RAY_PORT", "DASHBOARD_PORT", "RAY_WAIT_S", "RAY_HEAD_WAIT_S",
               "RAY_HEAD_IP", "RAY_AUTH", "RAY_AUTH_DIR", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH",
               "DATASET", "RRL", "SEED", "DATA_DIR", "EVAL_PATH")


# ---- running the scripts -------------------------------------------------------------------

def record_call(name: str, log: Path) -> str:
    """Bash that appends `name<TAB>arg<TAB>arg...` to `log` as ONE write, so that stand-ins running
    at the same time (the Ray daemons start in the background) never interleave within a line."""
    return f'line=$(printf %s "{name}"; printf "\\t%s" "$@"); printf "%s\\n" "$line" >> "{log}"\n'


def fake_bin(directory: Path, log: Path, names=("python3", "ray", "srun", "scontrol", "sbatch", "pip")) -> Path:
    """Stand-ins for every program a script could start: each records its call in `log`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text("#!/usr/bin/env bash\n" + record_call(name, log))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return directory


def run_script(name, *args, env=None, cwd, fakes: Path | None = None):
    base = {k: v for k, v in os.environ.items() if k not in SCRIPT_VARS and not k.startswith("SLURM_")}
    if fakes is not None:
        base["PATH"] = f"{fakes}{os.pathsep}{base.get('PATH', '')}"
    base.update(env or {})
    return subprocess.run(["bash", str(SCRIPTS / name), *args], cwd=cwd, env=base, capture_output=True, text=True,
                          timeout=60)


def printed_commands(text: str) -> list[list[str]]:
    """The commands a dry run printed: backslash-continued lines joined, '#' comments dropped, each
    split as the shell would."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(words)
    return commands


def launcher_argv(text: str) -> list[str]:
    """The arguments of the one printed `python3 -m openrlhf_rrl.cli.train_ppo_ray` command."""
    found = [c for c in printed_commands(text) if LAUNCHER_MODULE in c]
    assert len(found) == 1, text
    words = found[0]
    i = words.index(LAUNCHER_MODULE)
    assert words[i - 1] == "-m"
    return words[i + 1:]


# ---- the launcher's verdict ----------------------------------------------------------------

@dataclass
class Verdict:
    accepted: bool
    args: object = None  # what OpenRLHF's train() would receive
    message: str = ""


DRIVER_NODE = "node-of-the-driver"  # the Ray node id the launcher's stand-in runtime context reports


class _ReachedTrain(BaseException):
    pass


@pytest.fixture(scope="module")
def launcher():
    """launcher(argv) -> Verdict: the real launcher run on argv, stopped where train() would start Ray's
    actors. Module attributes it changes (the replay classes, get_strategy, ray.is_initialized) are
    restored after each call."""
    pytest.importorskip("vllm", reason="OpenRLHF's train_ppo_ray imports vLLM (requirements/openrlhf.txt)")
    pytest.importorskip("openrlhf", reason="OpenRLHF 0.11.2 is not installed (requirements/no-deps.txt)")
    from openrlhf_rrl.compat import flash_attn_shim

    flash_attn_shim.install()
    import ray
    import openrlhf.trainer.ppo_trainer as sync_trainer
    import openrlhf.trainer.ppo_trainer_async as async_trainer
    import openrlhf.trainer.ray.vllm_engine as vllm_engine
    import openrlhf.utils

    from openrlhf_rrl.openrlhf import launch

    def check(argv) -> Verdict:
        reached = {}

        def stop_at_strategy(args):
            reached["args"] = args
            raise _ReachedTrain

        out = io.StringIO()
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("RRL_CPU_MODE", raising=False)
            mp.setattr(ray, "is_initialized", lambda: True)  # train() would otherwise ray.init()
            # ... so the node the launcher records for the buffer actor is this stand-in's
            mp.setattr(ray, "get_runtime_context", lambda: SimpleNamespace(get_node_id=lambda: DRIVER_NODE))
            mp.setattr(openrlhf.utils, "get_strategy", stop_at_strategy)
            for module, name in ((sync_trainer, "PPOTrainer"), (async_trainer, "PPOTrainerAsync"),
                                 (vllm_engine, "RolloutRayActor")):
                mp.setattr(module, name, getattr(module, name))  # restored after the launcher swaps them
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                    rc = launch.main(list(argv))
            except _ReachedTrain:
                return Verdict(True, reached["args"], out.getvalue())
            except SystemExit as e:  # argparse
                return Verdict(False, message=f"exit {e.code}: {out.getvalue()}")
            except AssertionError as e:  # OpenRLHF's own validation
                return Verdict(False, message=f"OpenRLHF: {e}")
        return Verdict(False, message=f"launcher returned {rc}: {out.getvalue()}")

    return check


def placement_problems(args) -> list[str]:
    """What train() and DeepSpeed would refuse about GPU counts, checked before any cluster exists."""
    problems = []
    world = args.actor.num_nodes * args.actor.num_gpus_per_node
    if args.train.colocate_all:
        if args.vllm.num_engines and not args.train.async_enable:
            engines = args.vllm.num_engines * args.vllm.tensor_parallel_size
            if engines != world:
                problems.append(f"vLLM engines cover {engines} GPUs, the colocated actor {world}")
        groups = {"ref": args.algo.kl.init_coef > 0, "critic": bool(args.critic.model_name_or_path),
                  "reward": not args.reward.remote_url}
        for group, used in groups.items():
            sub = getattr(args, group)
            if used and sub.num_nodes * sub.num_gpus_per_node != world:
                problems.append(f"{group} on {sub.num_nodes}x{sub.num_gpus_per_node} GPUs, actor on {world}")
    shards = args.ds.ring_attn_size * args.ds.tensor_parallel_size
    if (args.train.batch_size * shards) % (args.train.micro_batch_size * world):
        problems.append(f"train.batch_size {args.train.batch_size} is not a multiple of "
                        "micro batch x data-parallel size")
    return problems


def value(args, dotted):
    for part in dotted.split("."):
        args = getattr(args, part)
    return args


# ---- every script, its variants -------------------------------------------------------------

GPU_RECIPE = "train_grpo_gsm8k_math_qwen1p5b.sh"
# what both arms of the GPU recipe share, on either data set (docs/gpu_recipe.md)
GPU_RECIPE_COMMON = {
    "actor.model_name_or_path": "Qwen/Qwen2.5-1.5B-Instruct", "algo.advantage.estimator": "group_norm",
    "critic.model_name_or_path": None, "reward.remote_url": [REWARD_FILE], "algo.kl.use_loss": True,
    "algo.kl.estimator": "k3", "actor.lr_scheduler": "constant", "rollout.n_samples_per_prompt": 8,
    "vllm.num_engines": 8, "vllm.tensor_parallel_size": 1, "train.colocate_all": True, "train.seed": 1,
    "eval.temperature": 0.0, "eval.n_samples_per_prompt": 1, "eval.steps": 10}

CASES = {
    "ppo_single_node": ("train_ppo_rrl_single_node.sh", {}, {
        "algo.advantage.estimator": "gae", "rrl.scorer": "critic", "train.colocate_all": True,
        "vllm.enable_sleep": True, "ds.enable_sleep": True, "reward.remote_url": [REWARD_FILE],
        "critic.model_name_or_path": "Qwen/Qwen2.5-Math-1.5B-Instruct", "vllm.num_engines": 4}),
    "ppo_single_node_ray_job": ("train_ppo_rrl_single_node.sh",
                                {"RAY_JOB_ADDRESS": "http://127.0.0.1:8265", "GPUS_PER_NODE": "4", "VLLM_TP": "1"},
                                {"actor.num_gpus_per_node": 4, "vllm.num_engines": 4, "rrl.scorer": "critic"}),
    "grpo_math": ("train_grpo_rrl_math.sh", {}, {
        "algo.advantage.estimator": "group_norm", "rrl.scorer": "agree", "critic.model_name_or_path": None,
        "reward.remote_url": [REWARD_FILE], "algo.kl.use_loss": True, "algo.kl.estimator": "k3",
        "vllm.enable_sleep": True, "ds.enable_sleep": True, "rrl.success_threshold": 0.5}),
    "reinforce_baseline_math": ("train_grpo_rrl_math.sh", {"ESTIMATOR": "reinforce_baseline"}, {
        "algo.advantage.estimator": "reinforce_baseline", "rrl.scorer": "agree", "algo.kl.estimator": "k2"}),
    "reinforce_math_mc": ("train_grpo_rrl_math.sh", {"ESTIMATOR": "reinforce", "RRL_SCORER": "mc"}, {
        "algo.advantage.estimator": "reinforce", "rrl.scorer": "mc", "algo.kl.use_loss": False}),
    "dialogue_helpful": ("train_rlhf_dialogue_rrl.sh", {}, {
        "algo.advantage.estimator": "gae", "rrl.scorer": "critic", "data.apply_chat_template": True,
        "reward.model_name_or_path": "OpenRLHF/Llama-3-8b-rm-700k", "reward.remote_url": None,
        "critic.model_name_or_path": "OpenRLHF/Llama-3-8b-rm-700k", "rrl.success_threshold": 0.0}),
    "dialogue_safety": ("train_rlhf_dialogue_rrl.sh", {"REWARD_KIND": "safety", "SAFETY_RM_PATH": "/models/safety rm"},
                        {"reward.model_name_or_path": "/models/safety rm", "rrl.scorer": "critic"}),
    "dialogue_no_critic_mc": ("train_rlhf_dialogue_rrl.sh", {"ESTIMATOR": "reinforce_baseline"}, {
        "algo.advantage.estimator": "reinforce_baseline", "rrl.scorer": "mc", "critic.model_name_or_path": None}),
    "slurm": ("slurm_train_rrl.sbatch", {}, {
        "actor.num_nodes": 2, "ref.num_nodes": 2, "vllm.num_engines": 8, "rrl.scorer": "agree",
        "algo.advantage.estimator": "group_norm"}),
    "slurm_4_nodes": ("slurm_train_rrl.sbatch", {"SLURM_JOB_NUM_NODES": "4", "ESTIMATOR": "reinforce_baseline"}, {
        "actor.num_nodes": 4, "vllm.num_engines": 16, "algo.advantage.estimator": "reinforce_baseline"}),
    "gpu_recipe_gsm8k": (GPU_RECIPE, {}, dict(GPU_RECIPE_COMMON, **{
        "rrl.scorer": "agree", "rrl.replay_share": 0.25, "rrl.seed": 1, "rollout.max_new_tokens": 1024,
        "data.max_len": 1536})),
    "gpu_recipe_gsm8k_baseline": (GPU_RECIPE, {"RRL": "0"}, dict(GPU_RECIPE_COMMON, **{
        "rollout.max_new_tokens": 1024, "data.max_len": 1536})),
    "gpu_recipe_math": (GPU_RECIPE, {"DATASET": "math"}, dict(GPU_RECIPE_COMMON, **{
        "rrl.scorer": "agree", "rrl.replay_share": 0.25, "rollout.max_new_tokens": 3072, "data.max_len": 4096})),
    "gpu_recipe_math_baseline": (GPU_RECIPE, {"DATASET": "math", "RRL": "0"}, dict(GPU_RECIPE_COMMON, **{
        "rollout.max_new_tokens": 3072, "data.max_len": 4096})),
    "gpu_recipe_math_seed3": (GPU_RECIPE, {"DATASET": "math", "SEED": "3"}, {"train.seed": 3, "rrl.seed": 3}),
}
# the cases that run OpenRLHF without replay: the printed command has no --rrl_* flag at all
BASELINE_CASES = {"gpu_recipe_gsm8k_baseline", "gpu_recipe_math_baseline"}


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory):
    """Every case's dry run, from an empty directory, with every program it could start faked."""
    results = {}
    for case, (script, env, _) in CASES.items():
        work = tmp_path_factory.mktemp(case)
        log = work / "calls.log"
        fakes = fake_bin(work / "bin", log)
        cwd = work / "cwd"
        cwd.mkdir()
        proc = run_script(script, "--dry-run", env=env, cwd=cwd, fakes=fakes)
        results[case] = (proc, log, cwd)
    return results


@pytest.mark.parametrize("case", sorted(CASES))
def test_dry_run_prints_the_command_and_starts_nothing(dry_runs, case):
    proc, log, cwd = dry_runs[case]
    assert proc.returncode == 0, proc.stderr
    assert not log.exists(), f"the dry run started: {log.read_text()}"
    assert list(cwd.iterdir()) == [], "the dry run wrote files"
    argv = launcher_argv(proc.stdout)
    assert ("--rrl_enable" in argv) == (case not in BASELINE_CASES)
    # one flag per line: every printed line of the launcher command holds at most one --flag
    lines = proc.stdout[proc.stdout.index(LAUNCHER_MODULE):].splitlines()
    assert all(sum(w.startswith("--") for w in shlex.split(line.rstrip("\\"))) <= 1 for line in lines[1:])


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_launcher_accepts_the_printed_command(dry_runs, launcher, case):
    proc, _, _ = dry_runs[case]
    verdict = launcher(launcher_argv(proc.stdout))
    assert verdict.accepted, verdict.message
    args = verdict.args
    if case in BASELINE_CASES:  # exactly OpenRLHF's namespace: no RRL options at all
        assert not hasattr(args, "rrl")
    else:
        assert args.rrl.enable is True
        assert 0 < args.rrl.replay_share <= 1
        assert args.rrl.buffer_path and args.rrl.buffer_path.endswith("rrl_buffer.jsonl")
        assert args.rrl.driver_node_id == DRIVER_NODE  # where every actor will place the buffer actor
    for key, expected in CASES[case][2].items():
        assert value(args, key) == expected, key
    assert placement_problems(args) == []


def test_the_reward_file_the_scripts_name_exists(dry_runs):
    for case in ("ppo_single_node", "grpo_math", "slurm", "gpu_recipe_math_baseline"):
        argv = launcher_argv(dry_runs[case][0].stdout)
        assert Path(argv[argv.index("--reward.remote_url") + 1]).is_file()


def test_ray_job_submit_wraps_the_launcher(dry_runs):
    proc = dry_runs["ppo_single_node_ray_job"][0]
    (command,) = [c for c in printed_commands(proc.stdout) if LAUNCHER_MODULE in c]
    assert command[:3] == ["ray", "job", "submit"]
    assert "--address=http://127.0.0.1:8265" in command
    assert command[command.index("--") + 1:command.index("--") + 4] == ["python3", "-m", LAUNCHER_MODULE]


def test_extra_arguments_reach_the_launcher_and_the_last_value_wins(launcher, tmp_path):
    name = "it's a \"run\" $HOME `x` *"  # printed shell-quoted, read back unchanged
    proc = run_script("train_grpo_rrl_math.sh", "--dry-run", "--rrl_replay_share", "0.4", "--rrl.start_step", "0",
                      "--logger.wandb.run_name", name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    verdict = launcher(launcher_argv(proc.stdout))
    assert verdict.accepted, verdict.message
    assert (verdict.args.rrl.replay_share, verdict.args.rrl.start_step) == (0.4, 0)
    assert verdict.args.logger.wandb.run_name == name


# ---- the GPU recipe: two arms of one command -----------------------------------------------

def without_rrl_flags(argv: list[str]) -> list[str]:
    """argv less every --rrl_* flag and the values that follow it."""
    kept, skipping = [], False
    for word in argv:
        if word.startswith("--"):
            skipping = word.startswith("--rrl")
        if not skipping:
            kept.append(word)
    return kept


@pytest.mark.parametrize("dataset", ["gsm8k", "math"])
def test_gpu_recipe_arms_differ_only_in_the_rrl_flags(tmp_path, dataset):
    env = {"DATASET": dataset, "SAVE_PATH": "/exp/run"}
    rrl = launcher_argv(run_script(GPU_RECIPE, "--dry-run", env=dict(env, RRL="1"), cwd=tmp_path).stdout)
    baseline = launcher_argv(run_script(GPU_RECIPE, "--dry-run", env=dict(env, RRL="0"), cwd=tmp_path).stdout)
    assert without_rrl_flags(rrl) == baseline
    assert [w for w in rrl if w.startswith("--rrl")] == ["--rrl_enable", "--rrl_scorer", "--rrl_replay_share",
                                                        "--rrl_seed", "--rrl_buffer_path"]
    data = {"gsm8k": ("gsm8k_train.jsonl", "gsm8k_test.jsonl"), "math": ("math_train.jsonl", "math500_test.jsonl")}
    train, held_out = (str(tmp_path / "data" / name) for name in data[dataset])
    assert baseline[baseline.index("--data.prompt_dataset") + 1] == train
    assert baseline[baseline.index("--eval.dataset") + 1] == held_out


def test_gpu_recipe_runs_keep_apart_by_data_set_arm_and_seed(dry_runs):
    outputs = {case: launcher_argv(dry_runs[case][0].stdout) for case in CASES if case.startswith("gpu_recipe")}
    dirs = {case: argv[argv.index("--ckpt.output_dir") + 1] for case, argv in outputs.items()}
    assert len({Path(d).name for d in dirs.values()}) == len(dirs)  # each case ran in its own directory
    assert dirs["gpu_recipe_math_baseline"].endswith("exp/grpo-qwen1p5b-math-baseline-s1")
    assert dirs["gpu_recipe_math_seed3"].endswith("exp/grpo-qwen1p5b-math-rrl-s3")


def test_gpu_recipe_runs_what_its_dry_run_prints(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("gsm8k_train.jsonl", "gsm8k_test.jsonl"):
        (data / name).write_text('{"prompt": "1 + 1?", "label": "2"}\n')
    log = tmp_path / "calls.log"
    env = {"DATA_DIR": str(data), "SAVE_PATH": str(tmp_path / "save")}
    proc = run_script(GPU_RECIPE, env=env, cwd=tmp_path, fakes=fake_bin(tmp_path / "bin", log))
    assert proc.returncode == 0, proc.stderr
    (call,) = [line.split("\t") for line in log.read_text().splitlines()]
    dry = run_script(GPU_RECIPE, "--dry-run", env=env, cwd=tmp_path)
    assert call[:3] == ["python3", "-m", LAUNCHER_MODULE] and call[3:] == launcher_argv(dry.stdout)
    assert (tmp_path / "save").is_dir()


def test_gpu_recipe_without_its_data_stops_before_starting(tmp_path):
    log = tmp_path / "calls.log"
    proc = run_script(GPU_RECIPE, env={"DATASET": "math", "DATA_DIR": str(tmp_path / "none")}, cwd=tmp_path,
                      fakes=fake_bin(tmp_path / "bin", log))
    assert proc.returncode == 2
    assert "math_train.jsonl not found: make the data files first" in proc.stderr and proc.stdout == ""
    assert not log.exists() and not (tmp_path / "exp").exists()


@pytest.mark.parametrize("script, env, extra, refusal", [
    ("train_grpo_rrl_math.sh", {"RRL_SCORER": "critic"}, [], "--rrl_scorer: critic needs a critic"),
    ("train_ppo_rrl_single_node.sh", {}, ["--rrl_replay_share", "1.5"], "--rrl_replay_share"),
    ("train_rlhf_dialogue_rrl.sh", {}, ["--rrl_colour", "blue"], "unrecognized arguments: --rrl_colour"),
    ("train_ppo_rrl_single_node.sh", {}, ["--train.async_enable"],
     "Async RLHF is not supported with --vllm.enable_sleep"),
])
def test_the_check_tells_a_refused_command_apart(launcher, tmp_path, script, env, extra, refusal):
    """The same path refuses what the launcher or OpenRLHF refuses, so an accepted case means something."""
    proc = run_script(script, "--dry-run", *extra, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # the script itself composes it
    verdict = launcher(launcher_argv(proc.stdout))
    assert not verdict.accepted
    assert refusal in verdict.message


def test_placement_check_finds_engines_that_do_not_cover_the_actor(dry_runs, launcher):
    argv = launcher_argv(dry_runs["ppo_single_node"][0].stdout) + ["--vllm.num_engines", "2"]
    verdict = launcher(argv)
    assert verdict.accepted  # OpenRLHF's parser lets it through; train() would assert after ray.init
    assert placement_problems(verdict.args) == ["vLLM engines cover 4 GPUs, the colocated actor 8"]


@pytest.mark.parametrize("script, env, message", [
    ("train_grpo_rrl_math.sh", {"ESTIMATOR": "gae"}, "ESTIMATOR=gae: use group_norm, reinforce_baseline or reinforce"),
    ("train_rlhf_dialogue_rrl.sh", {"REWARD_KIND": "safety"}, "set SAFETY_RM_PATH"),
    ("train_rlhf_dialogue_rrl.sh", {"REWARD_KIND": "harmless"}, "REWARD_KIND=harmless"),
    ("train_ppo_rrl_single_node.sh", {"GPUS_PER_NODE": "6", "VLLM_TP": "4"}, "not a multiple of VLLM_TP"),
    ("slurm_train_rrl.sbatch", {"PLUGIN_SETUP": "maybe"}, "PLUGIN_SETUP=maybe"),
    ("slurm_train_rrl.sbatch", {"RAY_AUTH": "maybe"}, "RAY_AUTH=maybe: use token or off"),
    (GPU_RECIPE, {"DATASET": "aime"}, "DATASET=aime: use gsm8k or math"),
    (GPU_RECIPE, {"RRL": "yes"}, "RRL=yes: use 1 (with replay) or 0 (without)"),
    (GPU_RECIPE, {"SEED": "one"}, "SEED=one: use a whole number"),
])
def test_scripts_refuse_bad_settings_before_printing(tmp_path, script, env, message):
    proc = run_script(script, "--dry-run", env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("script", ["train_ppo_rrl_single_node.sh", "train_grpo_rrl_math.sh",
                                    "train_rlhf_dialogue_rrl.sh", "slurm_train_rrl.sbatch", GPU_RECIPE])
def test_help_prints_the_header_and_runs_nothing(tmp_path, script):
    log = tmp_path / "calls.log"
    proc = run_script(script, "--help", cwd=tmp_path, fakes=fake_bin(tmp_path / "bin", log))
    assert proc.returncode == 0
    assert "Edit:" in proc.stdout and "--dry-run" in proc.stdout
    assert not any(line.startswith(("#", "SBATCH")) for line in proc.stdout.splitlines())
    assert not log.exists()


# ---- the SLURM script ----------------------------------------------------------------------

def test_slurm_dry_run_orders_check_head_workers_then_submit(dry_runs):
    commands = printed_commands(dry_runs["slurm_4_nodes"][0].stdout)
    kinds = []
    for c in commands:
        if c[0] == "srun" and "-c" in c and "import" in c[c.index("-c") + 1]:
            kinds.append("check")
        elif c[0] == "srun" and "--head" in c:
            kinds.append("head")
        elif c[0] == "srun" and "start" in c:
            kinds.append("worker " + c[c.index("-w") + 1])
        elif "job" in c and c[c.index("job") - 1:c.index("job") + 2] == ["ray", "job", "submit"]:
            kinds.append("submit")
    assert kinds == ["check", "head", "worker node1", "worker node2", "worker node3", "submit"]
    check = commands[0]
    assert "--ntasks-per-node=1" in check and "--nodes=4" in check
    assert "import" in check[-1] and "openrlhf_rrl" in check[-1]
    worker = next(c for c in commands if "node1" in c)
    assert "--address=node0:6379" in worker and "--block" in worker
    # closed by default: the dashboard on the head's cluster address, every Ray process with the job's token
    head = next(c for c in commands if "--head" in c)
    assert "--dashboard-host=node0" in head and not any("0.0.0.0" in w for c in commands for w in c)
    ray_steps = [c for c in commands if "ray" in c or "start" in c or "ray.init" in " ".join(c)]
    assert len(ray_steps) == 6  # head, 3 workers, the wait, the submit
    token = "RAY_AUTH_TOKEN_PATH=" + str(Path.home() / ".ray-job-tokens" / "dry-run.token")
    assert all(c[c.index("env"):c.index("env") + 3] == ["env", "RAY_AUTH_MODE=token", token] for c in ray_steps)


def test_slurm_without_token_auth_says_what_is_open(tmp_path):
    proc = run_script("slurm_train_rrl.sbatch", "--dry-run", env={"RAY_AUTH": "off"}, cwd=tmp_path)
    assert proc.returncode == 0
    assert "# WARNING: RAY_AUTH=off: whoever reaches node0:8265 can run code on the cluster" in proc.stdout
    assert "RAY_AUTH_MODE=disabled" in proc.stdout and "RAY_AUTH_TOKEN_PATH" not in proc.stdout


def test_slurm_install_mode_installs_the_repo_on_every_node_first(tmp_path):
    proc = run_script("slurm_train_rrl.sbatch", "--dry-run", env={"PLUGIN_SETUP": "install", "RRL_REPO": "/shared/rrl"},
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first = printed_commands(proc.stdout)[0]
    assert first == ["srun", "--nodes=2", "--ntasks-per-node=1", "python3", "-m", "pip", "install", "--no-deps",
                     "/shared/rrl"]
    assert "/shared/rrl/scripts/reward_math.py" in launcher_argv(proc.stdout)


def test_slurm_script_outside_slurm_refuses_to_run(tmp_path):
    log = tmp_path / "calls.log"
    proc = run_script("slurm_train_rrl.sbatch", cwd=tmp_path, fakes=fake_bin(tmp_path / "bin", log))
    assert proc.returncode == 2 and "submit it with sbatch" in proc.stderr
    assert not log.exists()


def test_slurm_job_runs_the_dry_run_commands_in_order(tmp_path):
    """Inside a (faked) SLURM job: srun / scontrol / ray / python are stand-ins that record their calls."""
    log = tmp_path / "calls.log"
    fakes = fake_bin(tmp_path / "bin", log, names=("ray", "srun", "python3"))
    (fakes / "scontrol").write_text('#!/usr/bin/env bash\nprintf "gpu01\\ngpu02\\ngpu03\\n"\n')
    (fakes / "srun").write_text(
        "#!/usr/bin/env bash\n" + record_call("srun", log) +
        'for a in "$@"; do [ "$a" = hostname ] && echo "10.0.0.1 fe80::1"; done; exit 0\n')
    # the wait step, like the real one, returns once every node's Ray daemon has started
    # the submit step records the authentication it runs under: mode, and the token file's permissions and size
    (fakes / "ray").write_text(
        "#!/usr/bin/env bash\n" + record_call("ray", log) +
        f'printf "auth\\t%s\\t%s\\t%s\\n" "$RAY_AUTH_MODE" "$(stat -c %a "$RAY_AUTH_TOKEN_PATH")" '
        f'"$(wc -c < "$RAY_AUTH_TOKEN_PATH")" >> "{tmp_path / "auth.log"}"\n')
    (fakes / "python3").write_text(
        "#!/usr/bin/env bash\n" + record_call("python3", log) +
        f'for _ in $(seq 600); do [ "$(grep -o "\tstart\t" "{log}" | wc -l)" -ge 3 ] && exit 0; sleep 0.05; done; exit 1\n')
    for f in fakes.iterdir():
        f.chmod(0o755)
    env = {"SLURM_JOB_NODELIST": "gpu[01-03]", "SLURM_JOB_NUM_NODES": "3", "SLURM_CPUS_PER_TASK": "32",
           "RAY_HEAD_WAIT_S": "0", "RAY_WAIT_S": "30", "SAVE_PATH": str(tmp_path / "save"), "SLURM_JOB_ID": "4242",
           "RAY_AUTH_DIR": str(tmp_path / "tokens")}
    proc = run_script("slurm_train_rrl.sbatch", env=env, cwd=tmp_path, fakes=fakes)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = [line.split("\t") for line in log.read_text().splitlines()]
    # the Ray daemons run in the background, so their stand-ins may log in any order; the
    # foreground steps (head address, plugin check, wait for the GPUs, submit) log in order
    daemons = [c for c in calls if c[0] == "srun" and "start" in c]
    foreground = [c for c in calls if c not in daemons]
    assert [c[0] for c in foreground] == ["srun", "srun", "python3", "ray"]
    address, check, wait, submit = foreground
    assert "hostname" in address and address[address.index("-w") + 1] == "gpu01"
    assert "--nodes=3" in check and "--ntasks-per-node=1" in check and "openrlhf_rrl" in check[-1]
    assert wait[-2:] == ["10.0.0.1:6379", "24"]  # waited for 3 nodes x 8 GPUs
    assert submit[:4] == ["ray", "job", "submit", "--address=http://10.0.0.1:8265"]
    # token authentication: one fresh 64-hex-digit token, readable by the user only, for every Ray process;
    # the dashboard bound to the head's cluster address; the token deleted when the job ends
    token_file = tmp_path / "tokens" / "4242.token"
    assert (tmp_path / "auth.log").read_text() == "auth\ttoken\t600\t64\n"
    assert not token_file.exists() and oct((tmp_path / "tokens").stat().st_mode & 0o777) == "0o700"
    by_node = {c[c.index("-w") + 1]: c for c in daemons}
    assert sorted(by_node) == ["gpu01", "gpu02", "gpu03"] and len(daemons) == 3
    head = by_node["gpu01"]
    assert "--head" in head and "--node-ip-address=10.0.0.1" in head and "--num-cpus=32" in head
    assert "--dashboard-host=10.0.0.1" in head
    assert all(f"RAY_AUTH_TOKEN_PATH={token_file}" in c and "RAY_AUTH_MODE=token" in c for c in daemons)
    assert all("--address=10.0.0.1:6379" in by_node[n] and "--head" not in by_node[n] for n in ("gpu02", "gpu03"))
    dry = run_script("slurm_train_rrl.sbatch", "--dry-run", env=dict(env, RAY_HEAD_IP="10.0.0.1"), cwd=tmp_path,
                     fakes=fakes)
    assert submit[submit.index(LAUNCHER_MODULE) + 1:] == launcher_argv(dry.stdout)
    assert (tmp_path / "save").is_dir()
