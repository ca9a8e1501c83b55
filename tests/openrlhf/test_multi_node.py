"""GRPO + RRL as a cluster runs it, on this CPU: 2 vLLM engines, 2 DeepSpeed policy ranks (data parallel
over gloo) and the reference model on 2 ranks (KL on), on a Ray cluster of two nodes (two raylets on this
machine, one logical GPU each), through the plugin's launcher."""

from collections import Counter

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("vllm")


def test_two_engines_and_two_ranks_on_two_nodes(tiny, tmp_path, two_node_ray_cluster, pipeline):
    from transformers import AutoTokenizer

    audit, rewards = tmp_path / "restarts.jsonl", tmp_path / "rewards.jsonl"
    run = pipeline.run_launcher(pipeline.base_args(tiny, str(tmp_path / "ckpt"), "group_norm", max_samples=8, extra=[
        "--rrl_cpu_mode", "--rrl_enable", "--rrl_replay_share", "0.75", "--rrl_cut_every", "2",
        "--rrl_hard_threshold", "1.0", "--rrl_scorer", "reward", "--ckpt.disable_ds",
        "--actor.num_nodes", "2", "--actor.num_gpus_per_node", "1", "--ref.num_nodes", "2",
        "--ref.num_gpus_per_node", "1", "--vllm.num_engines", "2", "--algo.kl.init_coef", "0.01"]),
        {"RAY_ADDRESS": two_node_ray_cluster.address, "RRL_ROLLOUT_LOG": str(audit), "RRL_TEST_REWARD_LOG": str(rewards)})
    # 8 prompts, 4 a batch: step 1 fresh; step 2 restarts up to 3 groups and defers their prompts; step 3 rolls
    # those out and restarts fill its empty slots. A short last batch split over 2 ranks in micro-batches of 2
    # left one rank waiting in a collective the other never entered (a hang, before the fill): every batch
    # is now whole micro-batches on both ranks
    assert run.rc == 0 and len(run.steps) == 3, run.tail()
    assert all(s["rollout/num_samples"] % 4 == 0 for s in run.steps) and run.steps[0]["rollout/num_samples"] == 8
    assert run.steps[1]["rrl/restart_groups"] >= 1 and run.steps[2]["rrl/restart_groups"] >= 1

    # where the parts ran: one rank of each model group and one engine on each node; one buffer actor
    by_class = {}
    for a in two_node_ray_cluster.actors():
        by_class.setdefault(a["class"], []).append(a)
    for cls in ("ReplayPolicyModelActor", "ReplayReferenceModelActor", "ReplayRolloutActor"):
        assert len(by_class.get(cls, [])) == 2 and len({a["node"] for a in by_class[cls]}) == 2, (cls, by_class.keys())
    assert len(by_class["ReplayBufferActor"]) == 1
    # ... and it had one writer: its step counter rose by one per trained batch
    assert [s["rrl/step"] for s in run.steps] == [1, 2, 3]

    # restarts were dispatched to both engines: the reward file runs in the engine that sampled the row
    tokenizer = AutoTokenizer.from_pretrained(tiny["model"])
    restarts, calls = pipeline.read_jsonl(audit), pipeline.read_jsonl(rewards)
    engine_pids = {a["pid"] for a in by_class["ReplayRolloutActor"]}
    pid_of = {(c["query"], c["prompt"]): c["pid"] for c in calls}
    restart_pids = {pid_of[(tokenizer.decode(r["sequence"], skip_special_tokens=False), r["prompt"])] for r in restarts}
    assert restart_pids == engine_pids, (restart_pids, engine_pids)
    # every dataset prompt rolled out fresh exactly once
    fresh = Counter(c["prompt"] for c in calls) - Counter(r["prompt"] for r in restarts)
    assert len(fresh) == 8 and set(fresh.values()) == {2}

    # the policy ranks trained with the counting normaliser, KL to the reference stayed small
    assert "--rrl_loss_norm response: the token-mean counts restart prefix tokens" in run.output
    assert all(abs(s["kl"]) < 1.0 for s in run.steps) and max(s["actor_grad_norm"] for s in run.steps) > 0
