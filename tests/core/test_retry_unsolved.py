"""--rrl_retry_unsolved: a hard prompt no fresh sample solved is kept as a retry (no prefix), restarted hot."""

import random

from openrlhf_rrl.config import RRLConfig, retry_unsolved_for
from openrlhf_rrl.core.buffer import ReplayBuffer
from openrlhf_rrl.core.planner import GroupPlan, PromptRef
from openrlhf_rrl.core.replay import RETRY_SCORE, RetrospectiveReplay
from openrlhf_rrl.core.state import RetainedState
from openrlhf_rrl.core.trajectory import Trajectory

P = PromptRef("P", (1, 2), label="p")
Q = PromptRef("Q", (3, 4), label="q")
WIN = (10, 11, 12, 13, 14, 15, 16, 17, 18, 19)


def traj(ref, ids, ok, prefix_len=0):
    return Trajectory(prompt_key=ref.key, prompt_ids=ref.prompt_ids, response_ids=tuple(ids), reward=float(ok),
                      success=ok, label=ref.label, prefix_len=prefix_len)


def lost(ref, tag=60):
    return [traj(ref, WIN[:3] + (tag + j,) * 7, False) for j in range(8)]


def _replay(**kw):
    kw.setdefault("scorer", "agree")
    cfg = RRLConfig(enable=True, replay_share=0.5, start_step=0, warmup_steps=0, seed=0,
                    admit_per_step=8, restart_temperature=2.0, **kw)
    return RetrospectiveReplay(cfg)


def test_an_all_fail_hard_group_becomes_one_retry_of_its_prompt():
    rrl = _replay(retry_unsolved="on")
    m = rrl.observe([GroupPlan(prompt=P)], [lost(P)], step=1)
    (entry,) = rrl.buffer.entries()
    assert entry.retry and entry.prefix_ids == () and entry.prompt_ids == P.prompt_ids
    assert entry.score == RETRY_SCORE and m["rrl/admitted"] == 1
    # found again: the one entry, not a second one
    rrl.observe([GroupPlan(prompt=P)], [lost(P, tag=70)], step=2)
    assert len(rrl.buffer) == 1


def test_auto_retries_with_agree_only_and_off_or_a_success_means_no_retry():
    assert _replay().retries and not _replay(scorer="reward").retries and not _replay(scorer="checker").retries
    assert _replay(scorer="reward", retry_unsolved="on").retries
    rrl = _replay(retry_unsolved="off")
    rrl.observe([GroupPlan(prompt=P)], [lost(P)], step=1)
    assert len(rrl.buffer) == 0
    rrl = _replay(retry_unsolved="on")
    mixed = [traj(P, WIN, True)] + lost(P)[1:]
    rrl.observe([GroupPlan(prompt=P)], [mixed], step=1)
    assert rrl.buffer.entries() and not any(e.retry for e in rrl.buffer.entries())


def test_a_retry_restarts_from_the_prompt_hot_and_its_mixed_group_is_mined():
    rrl = _replay(retry_unsolved="on")
    rrl.observe([GroupPlan(prompt=P)], [lost(P)], step=1)
    plans = rrl.plan([Q, Q], step=2)
    restart = plans[-1]
    assert restart.is_restart and restart.prompt.key == "P" and restart.prefix_ids == () and restart.temperature == 2.0
    group = [traj(P, WIN, True)] + [traj(P, WIN[:6] + (80 + j,) * 4, False) for j in range(7)]
    m = rrl.observe(plans, [lost(Q, tag=30), group], step=2)
    assert m["rrl/retry_groups"] == 1 and m["rrl/restart_groups"] == 1 and m["rrl/revived_prompts"] == 1
    cuts = [e for e in rrl.buffer.entries() if e.prompt_key == "P" and not e.retry]
    assert [e.prefix_ids for e in cuts] == [WIN[:6]]  # where the failures parted from the retry's success


def test_cuts_take_the_restart_slots_first_and_retries_fill_the_rest():
    rrl = _replay(retry_unsolved="on")
    refs = [PromptRef(f"R{i}", (5, i), label="r") for i in range(6)]
    rrl.observe([GroupPlan(prompt=r) for r in refs], [lost(r) for r in refs], step=1)
    mixed = [traj(P, WIN, True)] + [traj(P, WIN[:6] + (80 + j,) * 4, False) for j in range(7)]
    rrl.observe([GroupPlan(prompt=P)], [mixed], step=2)
    assert sum(e.retry for e in rrl.buffer.entries()) == 6 and len(rrl.buffer) == 7
    for step in range(3, 8):  # two restart slots: the one cut every time, one retry beside it
        plans = [p for p in rrl.plan([Q] * 4, step) if p.is_restart]
        assert len(plans) == 2 and sum(p.prefix_ids == WIN[:6] for p in plans) == 1


def test_the_buffer_keeps_no_prefix_only_for_a_retry_and_files_round_trip_it(tmp_path):
    buf = ReplayBuffer(capacity=8)
    plain = RetainedState(prompt_key="P", prompt_ids=(1, 2), prefix_ids=())
    assert buf.admission_problem(plain).startswith("empty prefix")
    assert buf.admission_problem(RetainedState(prompt_key="P", prompt_ids=(1, 2), prefix_ids=(5,), retry=True))
    retry = RetainedState(prompt_key="P", prompt_ids=(1, 2), prefix_ids=(), retry=True, score=RETRY_SCORE)
    assert buf.admission_problem(retry) is None and buf.add(retry)
    path = str(tmp_path / "buf.jsonl")
    buf.save(path)
    loaded = ReplayBuffer(capacity=8)
    loaded.load_into(path)
    (back,) = loaded.entries()
    assert back.retry and back.prefix_ids == () and back.key == retry.key
    assert loaded.sample(1, random.Random(0))[0].key == retry.key


def test_cut_control_leaves_a_retry_where_it_is():
    rrl = _replay(retry_unsolved="on", policy="passrate")
    rrl.observe([GroupPlan(prompt=P)], [lost(P)], step=1)
    (entry,) = rrl.buffer.entries()
    plan = GroupPlan(prompt=P, prefix_ids=(), entry_key=entry.key, temperature=2.0)
    m = rrl.observe([plan], [lost(P, tag=40)], step=2)
    assert m["rrl/cuts_moved_later"] == 0 and m["rrl/retry_groups"] == 1
    assert [e.prefix_ids for e in rrl.buffer.entries() if e.retry] == [()]


def test_auto_means_agree_with_restarts_hotter_than_the_run():
    agree = RRLConfig(enable=True, scorer="agree", restart_temperature=2.0)
    assert retry_unsolved_for(agree, 1.0) == "on"
    assert retry_unsolved_for(agree, 2.0) == "off"  # a retry at the run's own temperature repeats what failed
    assert retry_unsolved_for(RRLConfig(enable=True, scorer="agree"), 1.0) == "off"  # restarts at the run's
    assert retry_unsolved_for(RRLConfig(enable=True, scorer="checker", restart_temperature=2.0), 1.0) == "off"
    assert retry_unsolved_for(RRLConfig(enable=True, scorer="checker", retry_unsolved="on"), 1.0) == "on"
    assert retry_unsolved_for(RRLConfig(enable=False, scorer="agree", restart_temperature=2.0), 1.0) == "off"
