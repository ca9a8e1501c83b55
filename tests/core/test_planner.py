import pytest

from openrlhf_rrl.core.buffer import ReplayBuffer
from openrlhf_rrl.core.planner import GroupPlan, PromptRef, ReplayPlanner
from openrlhf_rrl.core.policies import make_policy
from openrlhf_rrl.core.schedules import ShareSchedule


def prompts(n):
    return [PromptRef(f"q{i}", (i, 1), label=f"L{i}") for i in range(n)]


def buffer_with(make_state, n_prompts, per_prompt=1, **kw):
    buf = ReplayBuffer(per_prompt_capacity=max(8, per_prompt), **kw)
    for p in range(n_prompts):
        for j in range(per_prompt):
            buf.add(make_state(f"b{p}", (p, j, 9), score=0.1 * j, label=f"gt{p}",
                               prefix_logprobs=(-0.5, -0.5, -0.5)))
    return buf


def planner(share, policy="promise", **kw):
    return ReplayPlanner(ShareSchedule("constant", share), make_policy(policy), **kw)


def test_restarts_replace_the_last_fresh_slots(make_state):
    ps = prompts(8)
    plans = planner(0.25, restart_temperature=1.3).plan(ps, 0, buffer_with(make_state, 10), {})
    assert len(plans) == 8
    assert [p.prompt for p in plans[:6]] == ps[:6] and not any(p.is_restart for p in plans[:6])
    assert all(p.is_restart for p in plans[6:])
    for p in plans[6:]:
        assert p.prompt.key.startswith("b") and p.prompt.label == f"gt{p.prompt.key[1:]}"
        assert p.prefix_ids[-1] == 9 and p.prefix_logprobs == (-0.5,) * 3 and p.temperature == 1.3
    assert all(p.temperature is None and p.prefix_ids == () and p.entry_key is None for p in plans[:6])


@pytest.mark.parametrize("share,n,want", [(0.25, 8, 2), (0.3, 10, 3), (0.5, 5, 3), (0.1, 4, 0), (1.0, 6, 6), (0.0, 6, 0)])
def test_number_of_restarts_is_rounded_share_of_the_batch(make_state, share, n, want):
    plans = planner(share).plan(prompts(n), 0, buffer_with(make_state, 20), {})
    assert sum(p.is_restart for p in plans) == want and len(plans) == n


def test_fewer_entries_than_slots_gives_fewer_restarts(make_state):
    plans = planner(0.5).plan(prompts(10), 0, buffer_with(make_state, 2), {})
    assert sum(p.is_restart for p in plans) == 2
    assert [p.prompt.key for p in plans[:8]] == [f"q{i}" for i in range(8)]
    assert not any(p.is_restart for p in planner(0.5).plan(prompts(10), 0, ReplayBuffer(), {}))


@pytest.mark.parametrize("policy", ["promise", "passrate", "uncertainty"])
def test_at_most_max_restarts_per_prompt(make_state, policy):
    buf = buffer_with(make_state, 1, per_prompt=6)  # one prompt, six states
    plans = planner(1.0, policy).plan(prompts(4), 0, buf, {})
    assert sum(p.is_restart for p in plans) == 1
    plans = planner(1.0, policy, max_restarts_per_prompt=3).plan(prompts(4), 0, buf, {})
    restarts = [p for p in plans if p.is_restart]
    assert len(restarts) == 3 and len({p.entry_key for p in restarts}) == 3
    buf = buffer_with(make_state, 5, per_prompt=6)
    plans = planner(1.0, policy, max_restarts_per_prompt=2).plan(prompts(10), 0, buf, {})
    keys = [p.prompt.key for p in plans if p.is_restart]
    assert len(keys) == 10 and max(keys.count(k) for k in set(keys)) == 2


@pytest.mark.parametrize("policy", ["promise", "passrate", "uncertainty"])
def test_plans_are_deterministic_for_seed_and_step(make_state, policy):
    def keys(seed, step):
        buf = buffer_with(make_state, 30, per_prompt=2)
        plans = planner(0.5, policy, seed=seed).plan(prompts(8), step, buf, {"b1": 0.2})
        return [p.entry_key for p in plans]
    assert keys(0, 3) == keys(0, 3)
    assert len({tuple(keys(0, s)) for s in range(6)}) > 1
    assert len({tuple(keys(s, 3)) for s in range(6)}) > 1


def test_no_restarts_before_start_step(make_state):
    p = ReplayPlanner(ShareSchedule("constant", 0.5, start_step=10), make_policy("promise"))
    buf = buffer_with(make_state, 10)
    assert not any(x.is_restart for x in p.plan(prompts(8), 9, buf, {}))
    assert p.last_slots == 0
    assert sum(x.is_restart for x in p.plan(prompts(8), 10, buf, {})) == 4 and p.last_slots == 4


def test_group_plan_is_restart():
    assert not GroupPlan(PromptRef("a", (1,))).is_restart
    assert GroupPlan(PromptRef("a", (1,)), prefix_ids=(2,), entry_key="k").is_restart


def test_fill_slots_append_restarts_after_every_prompt_and_are_taken_before_any_prompt_is_displaced(make_state):
    ps = prompts(3)  # a pass's short last batch of a 6-prompt batch size
    plans = planner(0.5).plan(ps, 0, buffer_with(make_state, 10), {}, fill=3, displace=False)
    assert [p.prompt for p in plans[:3]] == ps and all(p.is_restart for p in plans[3:]) and len(plans) == 6
    # displacing as usual (drop): round(0.5 * 3) = 2 prompts give their slots up, on top of the 3 filled
    plans = planner(0.5).plan(ps, 0, buffer_with(make_state, 10), {}, fill=3)
    assert [p.prompt for p in plans[:1]] == ps[:1] and sum(p.is_restart for p in plans) == 5 and len(plans) == 6
    # a buffer of 2 entries fills 2 of the 3 extra slots and displaces nobody
    plans = planner(0.5).plan(ps, 0, buffer_with(make_state, 2), {}, fill=3)
    assert [p.prompt for p in plans[:3]] == ps and sum(p.is_restart for p in plans) == 2
    plans = planner(0.5).plan(ps, 0, ReplayBuffer(), {}, fill=3)
    assert [p.prompt for p in plans] == ps  # an empty buffer: the batch stays short
