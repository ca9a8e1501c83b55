"""--rrl_scorer agree: the outcome reward as a step checker (agreement with a success of the same group)."""

from openrlhf_rrl.config import RRLConfig
from openrlhf_rrl.core.planner import GroupPlan, PromptRef
from openrlhf_rrl.core.replay import RetrospectiveReplay
from openrlhf_rrl.core.step_checker import common_prefix_len, verify_by_agreement
from openrlhf_rrl.core.trajectory import Trajectory

P = PromptRef("P", (1, 2), label="p")
WIN = (10, 11, 12, 13, 14, 15, 16, 17, 18, 19)


def traj(ids, ok, prefix_len=0):
    return Trajectory(prompt_key="P", prompt_ids=P.prompt_ids, response_ids=tuple(ids), reward=float(ok),
                      success=ok, label=P.label, prefix_len=prefix_len)


def parted_at(k, tag=90):
    """WIN's first k tokens, then wrong ones."""
    return WIN[:k] + tuple(tag + i for i in range(len(WIN) - k))


def test_common_prefix_len():
    assert common_prefix_len((1, 2, 3), (1, 2, 4, 5)) == 2
    assert common_prefix_len((), (1,)) == 0
    assert common_prefix_len((7, 8), (7, 8)) == 2


def test_a_failure_is_verified_up_to_where_it_parts_from_the_nearest_success():
    other_win = WIN[:3] + (50, 51, 52, 53, 54, 55, 56)
    group = [traj(WIN, True), traj(other_win, True), traj(parted_at(6), False), traj(other_win[:5] + (0,) * 5, False)]
    verify_by_agreement(group)
    assert [t.verified_tokens for t in group] == [10, 10, 6, 5]


def test_a_group_without_a_success_stays_unverified():
    group = [traj(parted_at(6), False), traj(parted_at(2), False)]
    verify_by_agreement(group)
    assert [t.verified_tokens for t in group] == [None, None]


def _replay(**kw):
    kw.setdefault("retry_unsolved", "off")  # the cuts agreement gives (retries: test_retry_unsolved.py)
    cfg = RRLConfig(enable=True, scorer="agree", replay_share=0.5, start_step=0, warmup_steps=0, seed=0,
                    admit_per_step=8, **kw)
    # a step checker handed in by the code is never asked: agreement is the only verifier
    def checker(*a):
        raise AssertionError("the step checker must not be called with --rrl_scorer agree")
    return RetrospectiveReplay(cfg, step_checker=checker)


def test_fresh_group_cuts_failures_where_they_part_from_the_success():
    rrl = _replay()
    group = [traj(WIN, True)] + [traj(parted_at(8, tag=90 + j), False) for j in range(3)] + \
        [traj(parted_at(2, tag=80 + j), False) for j in range(4)]
    m = rrl.observe([GroupPlan(prompt=P)], [group], step=1)
    assert sorted(e.prefix_ids for e in rrl.buffer.entries()) == [WIN[:2], WIN[:8]]
    assert m["rrl/admitted"] == 2


def test_an_all_fail_group_gives_nothing_and_a_mostly_passing_prompt_is_not_mined():
    rrl = _replay()
    rrl.observe([GroupPlan(prompt=P)], [[traj(parted_at(6, tag=90 + j), False) for j in range(8)]], step=1)
    assert len(rrl.buffer) == 0
    easy = [traj(WIN, True)] * 5 + [traj(parted_at(6, tag=90 + j), False) for j in range(3)]
    rrl.observe([GroupPlan(prompt=P)], [easy], step=2)
    assert len(rrl.buffer) == 0


def test_a_mixed_restart_group_proposes_a_deeper_cut():
    rrl = _replay()
    rrl.observe([GroupPlan(prompt=P)], [[traj(WIN, True)] + [traj(parted_at(3, tag=90 + j), False)
                                                            for j in range(7)]], step=1)
    (entry,) = rrl.buffer.entries()
    plan = GroupPlan(prompt=P, prefix_ids=entry.prefix_ids, entry_key=entry.key)
    restart = [traj(WIN, True, prefix_len=3)] + [traj(parted_at(8, tag=90 + j), False, prefix_len=3)
                                                  for j in range(7)]
    m = rrl.observe([plan], [restart], step=2)
    assert m["rrl/admitted"] == 1
    assert sorted(e.prefix_ids for e in rrl.buffer.entries()) == [WIN[:3], WIN[:8]]
    # an all-fail restart group proposes nothing (there is no success to agree with)
    before = len(rrl.buffer)
    rrl.observe([plan], [[traj(parted_at(8, tag=70 + j), False, prefix_len=3) for j in range(8)]], step=3)
    assert len(rrl.buffer) <= before


def test_cut_control_may_move_a_head_start_along_the_success_it_agrees_with():
    rrl = _replay(policy="passrate")
    win = traj(WIN + (99,), True)  # 99: the stop token, never part of a source
    win.eos = True
    rrl.observe([GroupPlan(prompt=P)], [[win] + [traj(parted_at(4, tag=90 + j) + (0,), False)
                                               for j in range(7)]], step=1)
    (entry,) = rrl.buffer.entries()
    assert entry.prefix_ids == WIN[:4] and entry.source_ids == WIN[4:]
    # an all-fail restart group moves the head start later, into the success's tokens
    plan = GroupPlan(prompt=P, prefix_ids=entry.prefix_ids, entry_key=entry.key)
    m = rrl.observe([plan], [[traj(WIN[:4] + (70 + j,) * 7, False, prefix_len=4) for j in range(8)]], step=2)
    assert m["rrl/cuts_moved_later"] == 1
    (moved,) = rrl.buffer.entries()
    assert len(moved.prefix_ids) > 4 and moved.prefix_ids == WIN[:len(moved.prefix_ids)]


def test_probes_cut_a_group_without_a_success_below_every_verified_cut():
    rrl = _replay(agree_probes=True, cut_every=2)
    fail_all = PromptRef("Q", (3, 4), label="q")
    lost = [Trajectory(prompt_key="Q", prompt_ids=fail_all.prompt_ids, response_ids=parted_at(5, tag=60 + j),
                       reward=0.0, success=False, label="q") for j in range(8)]
    mixed = [traj(WIN, True)] + [traj(parted_at(6, tag=90 + j), False) for j in range(7)]
    m = rrl.observe([GroupPlan(prompt=fail_all), GroupPlan(prompt=P)], [lost, mixed], step=1)
    entries = sorted(rrl.buffer.entries(), key=lambda e: -e.score)
    assert entries[0].prompt_key == "P" and entries[0].prefix_ids == WIN[:6] and entries[0].score > 0
    probes = [e for e in entries if e.prompt_key == "Q"]
    assert probes and all(-1 < e.score < 0 for e in probes)
    assert m["rrl/admitted"] == len(entries)
    # without probes the all-fail group gives nothing
    rrl = _replay(cut_every=2)
    rrl.observe([GroupPlan(prompt=fail_all), GroupPlan(prompt=P)], [lost, mixed], step=1)
    assert {e.prompt_key for e in rrl.buffer.entries()} == {"P"}
