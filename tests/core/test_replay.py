"""RetrospectiveReplay end to end on synthetic trajectories (no model: outcomes are scripted)."""

import pytest

from openrlhf_rrl.config import RRLConfig
from openrlhf_rrl.core.errors import BufferFileError
from openrlhf_rrl.core.planner import PromptRef
from openrlhf_rrl.core.replay import RetrospectiveReplay
from openrlhf_rrl.core.trajectory import Trajectory

A = PromptRef("A", (1, 1), label="a")  # hard
B = PromptRef("B", (2, 2), label="b")  # easy
C = PromptRef("C", (3, 3), label="c")
N = 20  # response length


def resp(tag, n=N):
    return tuple(1000 * tag + i for i in range(n))


def group(plan, outcomes, tag=0, verified=None, reward=None):
    """One trajectory per outcome; restarts get prefix + continuation as their full response."""
    out = []
    for j, ok in enumerate(outcomes):
        prefix = tuple(plan.prefix_ids)
        cont = resp(tag * 10 + j, N - len(prefix)) if len(prefix) < N else ()
        out.append(Trajectory(prompt_key=plan.prompt.key, prompt_ids=plan.prompt.prompt_ids,
                              response_ids=prefix + cont, reward=(1.0 if ok else 0.0) if reward is None else reward,
                              success=ok, label=plan.prompt.label, prefix_len=len(prefix),
                              verified_tokens=None if verified is None else verified[j]))
    return out


def config(**kw):
    base = dict(enable=True, replay_share=0.5, scorer="checker", min_prefix_frac=0.0, max_prefix_frac=1.0,
                seed=0)
    base.update(kw)
    return RRLConfig(**base)


def test_end_to_end_restart_revives_a_hard_prompt_and_retires_when_solved():
    rrl = RetrospectiveReplay(config())
    # step 0: empty buffer, all fresh. A fails everywhere (verified 5/8/8/12 tokens), B is easy.
    plans = rrl.plan([A, B], 0)
    assert not any(p.is_restart for p in plans)
    m0 = rrl.observe(plans, [group(plans[0], [False] * 4, 1, verified=[5, 8, 8, 12]),
                             group(plans[1], [True] * 4, 2)], 0)
    assert m0["rrl/candidates"] == 4 and m0["rrl/admitted"] == 1  # admission: 1 slot at share 0.5 of 2 groups
    (entry,) = list(rrl.buffer.entries())
    assert len(entry.prefix_ids) == 12 and entry.prompt_key == "A" and entry.score == pytest.approx(12 / N)
    assert m0["rrl/buffer_size"] == 1 and m0["rrl/untried"] == 1 and m0["rrl/restart_groups"] == 0
    assert rrl.fresh_rates == {"A": 0.0, "B": 1.0}
    assert m0["rrl/informative_fresh_groups"] == 0.0

    # step 1: the LAST slot restarts from A's state; the restart group is mixed (2 of 4)
    plans = rrl.plan([A, C], 1)
    assert [p.is_restart for p in plans] == [False, True] and plans[0].prompt == A
    r = plans[1]
    assert r.prompt.key == "A" and r.prompt.label == "a" and r.entry_key == entry.key and len(r.prefix_ids) == 12
    m1 = rrl.observe(plans, [group(plans[0], [False, True, False, False], 3, verified=[3, 0, 4, 6]),
                             group(r, [True, False, True, False], 4)], 1)
    assert m1["rrl/restart_groups"] == 1 and m1["rrl/replay_share"] == 0.5
    assert m1["rrl/restart_success"] == 0.5
    assert m1["rrl/informative_restart_groups"] == 1.0 and m1["rrl/informative_fresh_groups"] == 1.0
    assert m1["rrl/new_tokens_saved"] == 12 * 4
    # A was solved fresh at this same step (1 of 4), so the restart did not revive it
    assert m1["rrl/revived_prompts"] == 0
    e = rrl.buffer.get(entry.key)
    assert (e.restarts, e.continuations, e.successes, e.last_seen) == (1, 4, 2, 1)

    # step 2: fresh A solved 4/4 -> all of A's entries retire (prompt_solved)
    n_a = len(rrl.buffer.prompt_entries("A"))
    assert n_a >= 1
    plans = rrl.plan([A, B], 2)
    groups = [group(p, [True] * 4, 5 + i) for i, p in enumerate(plans)]
    m2 = rrl.observe(plans, groups, 2)
    assert m2["rrl/retired_prompt_solved"] == n_a
    assert rrl.buffer.prompt_entries("A") == []


def test_revived_prompts_count_prompts_first_solved_through_a_restart():
    rrl = RetrospectiveReplay(config(admit_per_step=5))
    plans = rrl.plan([A, C], 0)
    rrl.observe(plans, [group(plans[0], [False] * 2, 1, verified=[6, 12]),
                        group(plans[1], [False] * 2, 2, verified=[7, 14])], 0)
    assert len(rrl.buffer) == 4
    plans = rrl.plan([B, B], 1)  # one fresh (B, solved), one restart of A or C
    restart = plans[1]
    m = rrl.observe(plans, [group(plans[0], [True, True], 3), group(restart, [True, False], 4)], 1)
    assert m["rrl/revived_prompts"] == 1 and restart.prompt.key in rrl.solved_prompts
    # the same prompt revived again later does not count twice
    plans = rrl.plan([B, B], 2)
    again = [p for p in plans if p.is_restart and p.prompt.key == restart.prompt.key]
    groups = [group(p, [True, False], 6 + i) for i, p in enumerate(plans)]
    m = rrl.observe(plans, groups, 2)
    assert m["rrl/revived_prompts"] == (0 if again else 1)


def test_restart_outcomes_retire_solved_and_dead_states():
    rrl = RetrospectiveReplay(config(admit_per_step=5, retire_dead_after=4, replay_share=1.0))
    plans = rrl.plan([A, C], 0)
    rrl.observe(plans, [group(plans[0], [False], 1, verified=[10]), group(plans[1], [False], 2, verified=[10])], 0)
    plans = rrl.plan([B, B], 1)
    assert all(p.is_restart for p in plans) and {p.prompt.key for p in plans} == {"A", "C"}
    outcomes = {"A": [True] * 4, "C": [False] * 4}
    m = rrl.observe(plans, [group(p, outcomes[p.prompt.key], 3 + i) for i, p in enumerate(plans)], 1)
    assert m["rrl/retired_solved"] == 1 and m["rrl/retired_dead"] == 1
    assert m["rrl/informative_restart_groups"] == 0.0 and len(rrl.buffer) == 0


def test_admission_control_limits_and_dedupes_near_cuts():
    rrl = RetrospectiveReplay(config(admit_per_step=10))
    plans = rrl.plan([A], 0)
    # verified cuts 5 and 7 are within 4 tokens (near-duplicates); 14 is a different depth
    m = rrl.observe(plans, [group(plans[0], [False] * 3, 1, verified=[5, 7, 14])], 0)
    assert m["rrl/candidates"] == 3 and m["rrl/admitted"] == 2
    assert sorted(len(s.prefix_ids) for s in rrl.buffer.entries()) == [7, 14]  # the better of the near pair
    rrl = RetrospectiveReplay(config(admit_per_step=0))
    plans = rrl.plan([A], 0)
    assert rrl.observe(plans, [group(plans[0], [False] * 3, 1, verified=[5, 9, 14])], 0)["rrl/admitted"] == 0


def test_default_admission_follows_the_nominal_share_even_before_replay_starts():
    rrl = RetrospectiveReplay(config(replay_share=0.25, start_step=100, admit_per_step=-1))
    prompts = [PromptRef(f"h{i}", (50 + i,)) for i in range(8)]
    plans = rrl.plan(prompts, 0)
    assert not any(p.is_restart for p in plans)
    m = rrl.observe(plans, [group(p, [False, False], i, verified=[9, 15]) for i, p in enumerate(plans)], 0)
    assert m["rrl/candidates"] == 16 and m["rrl/admitted"] == 2  # round(0.25 * 8)
    assert rrl.admit_limit(1) == 1  # at least one


def test_only_hard_prompts_give_candidates():
    rrl = RetrospectiveReplay(config(admit_per_step=10, hard_threshold=0.5))
    plans = rrl.plan([A, B], 0)
    m = rrl.observe(plans, [group(plans[0], [True, False, False], 1, verified=[6, 6, 12]),  # 1/3: hard
                            group(plans[1], [True, True, False], 2, verified=[6, 6, 12])], 0)  # 2/3: not hard
    assert {s.prompt_key for s in rrl.buffer.entries()} == {"A"} and m["rrl/admitted"] == 2


def test_mc_scorer_refreshes_score_with_restart_pass_rate():
    rrl = RetrospectiveReplay(config(scorer="mc", cut_every=5, admit_per_step=1, replay_share=1.0))
    plans = rrl.plan([A], 0)
    rrl.observe(plans, [group(plans[0], [False, False], 1, reward=0.2)], 0)
    (entry,) = list(rrl.buffer.entries())
    assert entry.score == pytest.approx(0.2 + 0.1 * len(entry.prefix_ids) / N)
    plans = rrl.plan([B], 1)
    rrl.observe(plans, [group(plans[0], [True, False, False, False], 2)], 1)
    e = rrl.buffer.get(entry.key)
    assert e.score == pytest.approx(e.pass_rate) == pytest.approx(2 / 6)


def test_step_checker_fills_missing_verified_tokens():
    calls = []

    def checker(prompt_ids, response_ids, label):
        calls.append(label)
        return 9, 3

    rrl = RetrospectiveReplay(config(admit_per_step=1), step_checker=checker)
    plans = rrl.plan([A], 0)
    rrl.observe(plans, [group(plans[0], [False], 1)], 0)
    (e,) = list(rrl.buffer.entries())
    assert calls == ["a"] and len(e.prefix_ids) == 9 and e.verified_steps == 3


def test_disabled_rrl_plans_fresh_only_and_keeps_nothing():
    rrl = RetrospectiveReplay(config(enable=False))
    plans = rrl.plan([A, B], 0)
    assert not any(p.is_restart for p in plans)
    m = rrl.observe(plans, [group(plans[0], [False], 1, verified=[9]), group(plans[1], [True], 2)], 0)
    assert m["rrl/admitted"] == 0 and m["rrl/buffer_size"] == 0 and m["rrl/target_share"] == 0.0
    assert m["rrl/overhead_s"] >= 0


def test_auto_share_rises_when_restart_groups_are_more_informative():
    rrl = RetrospectiveReplay(config(replay_share="auto", share_min=0.1, share_max=0.9, admit_per_step=4))
    start = rrl.schedule.share
    plans = rrl.plan([A, C], 0)
    rrl.observe(plans, [group(plans[0], [False] * 2, 1, verified=[6, 13]),
                        group(plans[1], [False] * 2, 2, verified=[6, 13])], 0)
    for step in range(1, 4):
        plans = rrl.plan([B, B, B, B], step)
        groups = [group(p, [True, False] if p.is_restart else [True, True], 10 * step + i) for i, p in enumerate(plans)]
        m = rrl.observe(plans, groups, step)
        if m["rrl/restart_groups"]:
            assert m["rrl/informative_restart_groups"] == 1.0 and m["rrl/informative_fresh_groups"] == 0.0
    assert rrl.schedule.share > start


def test_plans_and_metrics_are_reproducible():
    def run():
        rrl = RetrospectiveReplay(config(admit_per_step=3, policy="uncertainty"))
        out = []
        for step in range(4):
            plans = rrl.plan([A, B, C, PromptRef("D", (4,))], step)
            groups = [group(p, [(step + i + j) % 3 == 0 for j in range(3)], 10 * step + i, verified=[4, 9, 15])
                      for i, p in enumerate(plans)]
            m = rrl.observe(plans, groups, step)
            m.pop("rrl/overhead_s")
            out.append(([p.entry_key for p in plans], m))
        return out, rrl.state_dict()
    assert run() == run()


def test_save_and_load_resume_the_whole_state(tmp_path):
    rrl = RetrospectiveReplay(config(admit_per_step=3, replay_share="auto"))
    plans = rrl.plan([A, C], 0)
    rrl.observe(plans, [group(plans[0], [False, True], 1, verified=[6, 13]),
                        group(plans[1], [False] * 2, 2, verified=[6, 13])], 0)
    rrl.schedule.share = 0.33
    path = tmp_path / "rrl.jsonl"
    rrl.save(path)
    other = RetrospectiveReplay(config(admit_per_step=3, replay_share="auto"))
    other.load(path)
    assert other.state_dict() == rrl.state_dict()
    assert other.schedule.share == 0.33 and other.solved_prompts == {"A"}
    assert [p.entry_key for p in other.plan([B, B], 1)] == [p.entry_key for p in rrl.plan([B, B], 1)]
    # a truncated file is refused, naming it, and changes nothing
    lines = path.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines[:-1]) + "\n")
    fresh = RetrospectiveReplay(config(admit_per_step=3, replay_share="auto"))
    before = fresh.state_dict()
    with pytest.raises(BufferFileError, match=f"^{bad}: truncated"):
        fresh.load(bad)
    assert fresh.state_dict() == before
    other2 = RetrospectiveReplay(config(admit_per_step=3, replay_share="auto"))
    other2.load_state_dict(rrl.state_dict())
    assert other2.state_dict() == rrl.state_dict()


def test_observe_checks_lengths():
    rrl = RetrospectiveReplay(config())
    with pytest.raises(ValueError, match="2 plans but 1 trajectory groups"):
        rrl.observe(rrl.plan([A, B], 0), [[]], 0)


def test_async_order_an_entry_retired_at_step_k_is_never_planned_after_k_plus_1():
    """OpenRLHF's async trainer plans step k+1 before step k is observed. An entry retired when step k is
    observed may still be in k+1's plan (planned before), but never in a plan made after that."""
    rrl = RetrospectiveReplay(config(replay_share=0.5, admit_per_step=1, max_restarts_per_prompt=4))
    plans0 = rrl.plan([A, B], 0)
    rrl.observe(plans0, [group(plans0[0], [False] * 4, 1, verified=[6, 6, 6, 6]), group(plans0[1], [True] * 4, 2)], 0)
    (entry,) = list(rrl.buffer.entries())
    plans_k = rrl.plan([B, C], 1)  # step k restarts the entry ...
    plans_k1 = rrl.plan([B, C], 2)  # ... and so does k+1, planned before k is observed
    assert [p.entry_key for p in plans_k if p.is_restart] == [entry.key] == [p.entry_key for p in plans_k1 if p.is_restart]
    # step k's restart group solves it n/n: retired
    rrl.observe(plans_k, [group(p, [True] * 4, 3) for p in plans_k], 1)
    assert entry.key not in rrl.buffer
    # step k+1's restart group of the retired entry comes back: counted, neither a crash nor a resurrection
    m = rrl.observe(plans_k1, [group(p, [False, True, False, False], 4) for p in plans_k1], 2)
    assert m["rrl/restart_groups"] == 1 and entry.key not in rrl.buffer
    for step in range(3, 8):
        later = rrl.plan([B, C], step)
        assert entry.key not in [p.entry_key for p in later]
        rrl.observe(later, [group(p, [True] * 4, 5) for p in later], step)
