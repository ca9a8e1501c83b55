"""The named buffer actor on a real (local) Ray: plan/observe, checkpoint round trip, death path."""

import os
import time

import pytest

ray = pytest.importorskip("ray")

from openrlhf_rrl.config import RRLConfig  # noqa: E402

CONFIG = RRLConfig(enable=True, scorer="reward", replay_share=0.5, cut_every=2, hard_threshold=1.0, min_prefix_frac=0.1,
                   max_prefix_frac=0.9, admit_per_step=4).to_dict()


def failing_group(key, text, prompt_ids=(5, 6, 7), response=(9, 10, 11, 12, 13, 14)):
    traj = {"prompt_key": key, "prompt_ids": list(prompt_ids), "response_ids": list(response), "reward": 0.1,
            "success": False, "label": "3 4", "logprobs": [-1.0] * len(response), "values": None, "prefix_len": 0,
            "eos": False}
    plan = {"key": key, "prompt_ids": list(prompt_ids), "label": "3 4", "prefix_ids": [], "entry_key": None}
    return {"plan": plan, "text": text, "trajectories": [traj, dict(traj, reward=0.2)]}


def kill(handle):
    """ray.kill, then wait until the actor is really gone (the kill is asynchronous)."""
    ray.kill(handle, no_restart=True)
    for _ in range(100):
        try:
            ray.get(handle.pid.remote(), timeout=10)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return
    raise AssertionError("actor still alive")


def prompts(*keys):
    return [{"key": k, "prompt_ids": [], "label": "3 4", "text": f"text of {k}"} for k in keys]


def test_plan_observe_and_a_checkpoint_round_trip(local_ray, tmp_path):
    from openrlhf_rrl.openrlhf.buffer_actor import ReplayBufferClient

    client = ReplayBufferClient(CONFIG, owner=True, name="rrl_test_roundtrip")
    client.pop_call_seconds()  # starting the actor is not a step's cost
    t0 = time.perf_counter()
    assert [p["restart"] for p in client.plan(prompts("a", "b"))] == [False, False]  # empty buffer
    metrics = client.observe([failing_group("a", "the prompt a")])
    # the calls' wall time (Ray round trips included), for the step's timing/rrl; popped once
    assert 0 < client.pop_call_seconds() <= time.perf_counter() - t0 and client.pop_call_seconds() == 0.0
    assert metrics["rrl/admitted"] > 0 and metrics["rrl/buffer_available"] == 1.0 and metrics["rrl/step"] == 1
    plans = client.plan(prompts("b", "c"))
    assert [p["restart"] for p in plans] == [False, True]
    restart = plans[1]
    assert restart["key"] == "a" and restart["text"] == "the prompt a" and restart["prompt_ids"] == [5, 6, 7]
    assert restart["prefix_ids"] == [9, 10, 11, 12, 13, 14][: len(restart["prefix_ids"])]
    path = str(tmp_path / "buf.jsonl")
    assert client.save(path) and os.path.exists(path) and os.path.exists(path + ".meta.json")
    before = client.stats()
    other = ReplayBufferClient(CONFIG, owner=True, name="rrl_test_roundtrip_2", restore_path=path)
    after = other.stats()
    assert (after["size"], after["step"], after["restored_from"]) == (before["size"], 1, path)
    assert sorted(e["key"] for e in after["entries"]) == sorted(e["key"] for e in before["entries"])
    assert other.plan(prompts("b", "c"))[1]["text"] == "the prompt a"  # prompt texts survive too


def test_agree_cuts_a_failure_where_it_parts_from_the_success_of_its_group(local_ray):
    """The default outcome-only scorer through the actor: trajectories arrive as dicts over Ray."""
    from openrlhf_rrl.openrlhf.buffer_actor import ReplayBufferClient

    config = dict(CONFIG, scorer="agree")
    client = ReplayBufferClient(config, owner=True, name="rrl_test_agree")
    group = failing_group("a", "the prompt a", response=(9, 10, 11, 12, 13, 14))
    win = dict(group["trajectories"][0], response_ids=[9, 10, 11, 20, 21, 22], reward=1.0, success=True)
    group["trajectories"] = [win, group["trajectories"][0]]
    assert client.observe([group])["rrl/admitted"] == 1
    (entry,) = client.stats()["entries"]
    assert entry["prefix_ids"] == [9, 10, 11]  # where the failure parts from the success


def test_a_dead_actor_means_fresh_prompts_a_warning_and_a_restart_from_the_last_save(local_ray, tmp_path):
    from openrlhf_rrl.openrlhf.buffer_actor import ReplayBufferClient

    client = ReplayBufferClient(CONFIG, owner=True, name="rrl_test_death")
    client.observe([failing_group("a", "the prompt a")])
    path = str(tmp_path / "saved.jsonl")
    assert client.save(path)
    saved = client.stats()["size"]
    client.observe([failing_group("z", "the prompt z", response=(20, 21, 22, 23, 24, 25))])  # not saved
    assert client.stats()["size"] > saved
    old_pid = ray.get(client._actor.pid.remote())

    kill(client._actor)
    plans = client.plan(prompts("b", "c"))
    assert [p["restart"] for p in plans] == [False, False]  # this batch: fresh prompts only
    assert client.actor_restarts == 1 and "replay buffer actor unavailable" in client.last_warning
    assert "restarted it from " + path in client.last_warning

    stats = client.stats()
    assert stats["restored_from"] == path and stats["size"] == saved and stats["step"] == 1
    assert ray.get(client._actor.pid.remote()) != old_pid
    assert [p["restart"] for p in client.plan(prompts("b", "c"))] == [False, True]  # replay is back

    kill(client._actor)
    metrics = client.observe([failing_group("a", "the prompt a")])
    assert metrics["rrl/buffer_available"] == 0.0 and metrics["rrl/buffer_actor_restarts"] == 2.0


def test_a_non_owner_falls_back_until_the_actor_exists(local_ray):
    from openrlhf_rrl.openrlhf.buffer_actor import ReplayBufferClient

    reader = ReplayBufferClient(CONFIG, owner=False, name="rrl_test_late")
    assert [p["restart"] for p in reader.plan(prompts("a"))] == [False]
    assert "the trainer restarts it" in reader.last_warning
    owner = ReplayBufferClient(CONFIG, owner=True, name="rrl_test_late")
    owner.observe([failing_group("a", "A")])
    assert reader.stats()["size"] == owner.stats()["size"] > 0  # one buffer, seen from both


def test_the_actor_runs_on_the_given_node_and_prunes_its_own_files(local_ray, tmp_path):
    from openrlhf_rrl.openrlhf.buffer_actor import ReplayBufferClient

    here = ray.get_runtime_context().get_node_id()
    client = ReplayBufferClient(CONFIG, owner=True, name="rrl_test_node", node_id=here)
    assert ray.get(client._actor.node_id.remote()) == here
    client.observe([failing_group("a", "the prompt a")])
    for step in (2, 4, 6):
        assert client.save(str(tmp_path / f"global_step{step}.jsonl"))
    (tmp_path / "global_step_notes.txt").write_text("not a buffer file")
    removed = client.prune(str(tmp_path), keep=2)
    assert sorted(os.path.basename(p) for p in removed) == ["global_step2.jsonl", "global_step2.jsonl.meta.json"]
    assert sorted(os.listdir(tmp_path)) == ["global_step4.jsonl", "global_step4.jsonl.meta.json",
                                           "global_step6.jsonl", "global_step6.jsonl.meta.json",
                                           "global_step_notes.txt"]


def test_a_hung_call_saves_the_actors_state_before_it_is_replaced(local_ray, tmp_path):
    """--rrl_buffer_call_timeout: a call past it counts as a hung actor. Here the call is 'hung' (a limit of 0 s:
    its result cannot be there when it is asked for; 1 ms was not always enough, a warm local Ray answers
    in less); the replacement must start from what the old actor had, not from the last checkpoint."""
    from openrlhf_rrl.openrlhf.buffer_actor import ReplayBufferClient

    rescue = str(tmp_path / "rescue.jsonl")
    client = ReplayBufferClient(dict(CONFIG, buffer_call_timeout=60.0), owner=True, name="rrl_test_hung",
                                rescue_path=rescue)
    client.observe([failing_group("a", "the prompt a")])
    before = client.stats()
    assert before["size"] > 0 and client.last_saved is None  # nothing was ever checkpointed
    old_pid = ray.get(client._actor.pid.remote())
    client.call_timeout = 0.0
    metrics = client.observe([failing_group("z", "the prompt z", response=(20, 21, 22, 23, 24, 25))])
    client.call_timeout = 60.0
    assert metrics["rrl/buffer_actor_restarts"] == 1.0 and "GetTimeoutError" in client.last_warning
    after = client.stats()
    assert client.last_saved == rescue and after["restored_from"] == rescue
    assert ray.get(client._actor.pid.remote()) != old_pid
    # the slow call itself finished inside the old actor before it saved: nothing since the start is lost
    assert after["step"] == 2 and after["size"] >= before["size"]
