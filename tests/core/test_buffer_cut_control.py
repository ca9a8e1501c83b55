"""Buffer rules behind the passrate policy and admission: mixed-group counts, moving an entry's cut along
its source response (posterior reset, merge, refusals), handicaps, and eviction of never-tried entries."""

import pytest

from openrlhf_rrl.core.buffer import ReplayBuffer
from openrlhf_rrl.core.state import RetainedState


def entry(prefix=(1, 2, 3, 4), source=(5, 6, 7, 8), prompt="p", **kw):
    kw.setdefault("source_len", len(prefix) + len(source) + 1)
    return RetainedState(prompt_key=prompt, prompt_ids=(9, ord(prompt)), prefix_ids=prefix, source_ids=source, **kw)


def test_record_restart_counts_mixed_groups_and_can_leave_retirement_to_the_caller():
    buf = ReplayBuffer()
    s = entry()
    buf.add(s)
    buf.record_restart(s.key, [1.0, 0.0, 0.0], step=1)
    buf.record_restart(s.key, [0.0, 0.0], step=2)
    e = buf.get(s.key)
    assert (e.restarts, e.mixed_groups) == (2, 1)
    assert e.informative_rate == pytest.approx(2 / 4)
    assert buf.record_restart(s.key, [1.0, 1.0], step=3, retire=False) is None  # all-pass, but kept
    assert s.key in buf and buf.get(s.key).restarts == 3
    assert buf.record_restart(s.key, [1.0, 1.0], step=4) == "solved"


def test_informative_rate_is_half_untried_and_counted_per_group_not_from_the_pass_rate():
    blocky = entry(restarts=2, continuations=16, successes=8, mixed_groups=0)  # 0/8 then 8/8
    mixed = entry(restarts=2, continuations=16, successes=8, mixed_groups=2)  # 4/8 twice
    assert blocky.pass_rate == mixed.pass_rate == 0.5
    assert blocky.informative_rate == 0.25 < entry().informative_rate == 0.5 < mixed.informative_rate == 0.75


def test_move_cut_later_and_earlier_along_the_source_resets_the_posterior():
    buf = ReplayBuffer()
    s = entry(prefix_logprobs=(-0.1, -0.2, -0.3, -0.4), score=0.7, step_found=2, cut_value=0.5, verified_steps=2,
              restarts=3, continuations=12, successes=0, mixed_groups=0)
    buf.add(s)
    k = buf.move_cut(s.key, 6, step=10)
    assert k is not None and s.key not in buf and len(buf) == 1
    e = buf.get(k)
    assert e.prefix_ids == (1, 2, 3, 4, 5, 6) and e.source_ids == (7, 8)
    assert (e.restarts, e.continuations, e.successes, e.mixed_groups) == (0, 0, 0, 0)
    assert (e.score, e.step_found, e.last_seen, e.source_len) == (0.7, 2, 10, 9)
    assert e.cut_fraction == pytest.approx(6 / 9)
    assert e.prefix_logprobs is None and e.cut_value is None and e.verified_steps is None  # unknown at the new cut
    k2 = buf.move_cut(k, 3, step=11)
    e = buf.get(k2)
    assert e.prefix_ids == (1, 2, 3) and e.source_ids == (4, 5, 6, 7, 8)
    assert buf.counters["cut_moves"] == 2 and sum(buf.retired_counts.values()) == 0  # a move is no retirement
    # log-probs survive an earlier move for the part they cover
    t = entry(prompt="q", prefix_logprobs=(-0.1, -0.2, -0.3, -0.4))
    buf.add(t)
    assert buf.get(buf.move_cut(t.key, 2, step=1)).prefix_logprobs == (-0.1, -0.2)


def test_move_cut_refuses_out_of_range_pinned_banned_remembered_and_invalid_targets():
    buf = ReplayBuffer(max_prefix_tokens=6, stop_token_ids=(7,))
    s = entry()
    buf.add(s)
    for bad in (0, 4, 9, 100, True):
        assert buf.move_target(s.key, bad) is None and buf.move_cut(s.key, bad, 1) is None
    assert buf.move_target(s.key, 7) is None  # stop token 7 inside the prefix
    assert buf.move_target("nope", 2) is None
    target = RetainedState("p", (9, ord("p")), (1, 2)).key
    assert buf.move_target(s.key, 2) == target
    buf.ban(target)
    assert buf.move_target(s.key, 2) is None
    solved = buf.move_cut(s.key, 3, step=1, remember_old="solved")
    assert solved is not None and buf.is_retired(s.key) == "solved"  # the old cut is refused if proposed again
    assert buf.add(entry()) is False and buf.counters["refused_retired"] == 1
    assert buf.move_target(solved, 4) is None  # back onto the remembered cut: refused
    buf.pin(solved)
    assert buf.move_target(solved, 5) is None  # a reviewer's pinned cut stays where it is
    assert len(buf) == 1 and buf.get(solved).prefix_ids == (1, 2, 3)
    with pytest.raises(ValueError):
        buf.move_cut(solved, 2, 1, remember_old="evicted")


def test_a_move_onto_an_existing_entry_merges_into_it(consistent):
    buf = ReplayBuffer()
    there = entry(prefix=(1, 2, 3, 4, 5), source=(6,), score=0.2, restarts=2, continuations=8, successes=3,
                  mixed_groups=2, last_seen=1)
    mover = entry(score=0.9, restarts=1, continuations=4, successes=0)
    buf.add(there)
    buf.add(mover)
    assert buf.move_cut(mover.key, 5, step=7) == there.key
    assert len(buf) == 1 and mover.key not in buf
    e = buf.get(there.key)
    # the existing entry keeps its own record (observed at this very cut), the better score and more source
    assert (e.restarts, e.successes, e.mixed_groups) == (2, 3, 2)
    assert (e.score, e.last_seen, e.source_ids) == (0.9, 7, (6, 7, 8))
    consistent(buf)


def test_duplicate_admission_keeps_the_longer_source():
    buf = ReplayBuffer()
    buf.add(entry(source=(5,)))
    buf.add(entry(source=(5, 6, 7)))
    assert len(buf) == 1 and next(buf.entries()).source_ids == (5, 6, 7)


def test_handicaps_stay_when_their_prompt_is_solved_fresh():
    buf = ReplayBuffer(retire_solved_rate=0.75)
    head, hand = entry(prefix=(1,)), entry(prefix=(2,), handicap=True)
    buf.add(head)
    buf.add(hand)
    assert buf.record_fresh("p", 1.0, step=3) == 1
    assert [e.key for e in buf.entries()] == [hand.key]


def test_retire_untried_evicts_never_tried_entries_by_age_since_last_seen(consistent):
    buf = ReplayBuffer()
    old = entry(prefix=(1,), last_seen=0)
    tried = entry(prefix=(2,), last_seen=0, restarts=1, continuations=2, successes=1)
    pinned = entry(prefix=(3,), last_seen=0, pinned=True)
    young = entry(prefix=(4,), last_seen=5)
    for s in (old, tried, pinned, young):
        buf.add(s)
    assert buf.retire_untried(step=10, ttl=0) == 0  # 0 = off
    assert buf.retire_untried(step=10, ttl=10) == 0  # exactly ttl steps old: kept
    assert buf.retire_untried(step=11, ttl=10) == 1
    assert old.key not in buf and {tried.key, pinned.key, young.key} <= set(e.key for e in buf.entries())
    assert buf.retired_counts["untried"] == 1 and buf.is_retired(old.key) is None  # may come back later
    assert buf.add(entry(prefix=(1,), last_seen=11))
    consistent(buf)


def test_buffer_file_keeps_source_and_handicap_and_still_reads_files_without_them(tmp_path):
    buf = ReplayBuffer()
    s = entry(handicap=True, mixed_groups=1, restarts=1, continuations=2, successes=1)
    plain = entry(prompt="q", source=())
    buf.add(s)
    buf.add(plain)
    path = tmp_path / "b.jsonl"
    buf.save(path)
    lines = path.read_text().splitlines()
    assert '"source_ids"' in lines[1] and '"handicap":true' in lines[1]
    assert "source_ids" not in lines[2] and "handicap" not in lines[2] and "mixed_groups" not in lines[2]
    back = ReplayBuffer.load(path)
    assert back.get(s.key) == s and back.get(plain.key) == plain
    # a file written before these fields existed: no source (the cut can only move earlier), no handicap
    old = tmp_path / "old.jsonl"
    old.write_text("\n".join([lines[0], lines[2], lines[3].replace("2", "1")]) + "\n")
    (e,) = list(ReplayBuffer.load(old).entries())
    assert (e.source_ids, e.handicap, e.mixed_groups) == ((), False, 0)
