import math
import os
import random

import pytest

from openrlhf_rrl.core import buffer_file as buffer_module  # the file format: what a save writes
from openrlhf_rrl.core.buffer import ReplayBuffer
from openrlhf_rrl.core.errors import BufferFileError, RRLConfigError


# ------------------------------------------------------------------ priority and admission
def test_priority_is_exp_score_over_temperature_times_decay_per_restart(make_state):
    buf = ReplayBuffer(temperature=0.5, restart_decay=0.7)
    s = make_state(score=0.3, restarts=2)
    assert buf.priority(s) == pytest.approx(math.exp(0.3 / 0.5) * 0.7 ** 2)
    assert buf.priority(make_state(score=0.3, restarts=2, pinned=True)) == pytest.approx(10 * buf.priority(s))
    assert buf.priority(make_state(score=0.3, banned=True)) == 0.0
    assert buf.priority(make_state(score=1e9)) < math.inf and buf.priority(make_state(score=-1e9)) > 0


def test_duplicate_merges_keeping_max_score_and_the_entry_counts(make_state):
    buf = ReplayBuffer()
    a = make_state(prefix=(1, 2), score=0.2)
    assert buf.add(a)
    buf.record_restart(a.key, [0.0, 1.0], step=3)
    assert buf.add(make_state(prefix=(1, 2), score=0.9, last_seen=5))
    assert len(buf) == 1
    e = buf.get(a.key)
    assert (e.score, e.restarts, e.continuations, e.successes, e.last_seen) == (0.9, 1, 2, 1, 5)
    assert buf.add(make_state(prefix=(1, 2), score=0.1))
    assert buf.get(a.key).score == 0.9  # a lower score never overwrites
    assert buf.counters["merged"] == 2
    assert buf.priority(e) == buf._tree.get(buf._slot[a.key])  # priority follows the merge


def test_per_prompt_cap_evicts_that_prompts_lowest(make_state, consistent):
    buf = ReplayBuffer(capacity=100, per_prompt_capacity=2)
    buf.add(make_state("a", (1,), 0.5))
    buf.add(make_state("a", (2,), 0.1))
    buf.add(make_state("b", (1,), -5.0))  # lower than everything, other prompt: untouched
    assert buf.add(make_state("a", (3,), 0.3))
    assert sorted(s.prefix_ids for s in buf.prompt_entries("a")) == [(1,), (3,)]
    assert len(buf.prompt_entries("b")) == 1
    assert buf.retired_counts["evicted"] == 1
    # a newcomer ranking no higher than the prompt's lowest is rejected
    assert not buf.add(make_state("a", (4,), 0.3))
    assert not buf.add(make_state("a", (5,), 0.0))
    assert buf.counters["rejected"] == 2
    consistent(buf)


def test_global_cap_evicts_lowest_priority_and_rejects_lower_newcomers(make_state, consistent):
    buf = ReplayBuffer(capacity=3, per_prompt_capacity=8)
    for i, sc in enumerate([0.5, 0.1, 0.9]):
        buf.add(make_state(f"p{i}", (i,), sc))
    assert buf.add(make_state("p9", (9,), 0.4))
    assert sorted(s.score for s in buf.entries()) == [0.4, 0.5, 0.9]
    assert not buf.add(make_state("p8", (8,), 0.2))
    assert not buf.add(make_state("p7", (7,), 0.4))  # ties keep the incumbent
    assert len(buf) == 3
    consistent(buf)


def test_decayed_entry_is_evicted_before_an_untried_one(make_state):
    buf = ReplayBuffer(capacity=2, restart_decay=0.5)
    a, b = make_state("a", (1,), 1.0), make_state("b", (1,), 0.8)
    buf.add(a), buf.add(b)
    for step in range(3):
        buf.record_restart(a.key, [0.0, 1.0], step)  # mixed: stays, but its priority halves each time
    assert buf.priority(buf.get(a.key)) == pytest.approx(math.exp(1.0) / 8)
    assert buf.add(make_state("c", (1,), 0.5))
    assert a.key not in buf and b.key in buf


def test_pinned_entries_are_evicted_last(make_state):
    buf = ReplayBuffer(capacity=2)
    low = make_state("a", (1,), -3.0, pinned=True)
    buf.add(low)
    buf.add(make_state("b", (1,), 0.0))
    assert buf.add(make_state("c", (1,), 2.0))
    assert low.key in buf  # the unpinned one went
    assert buf.add(make_state("d", (1,), 3.0))
    assert low.key in buf
    buf2 = ReplayBuffer(capacity=1)
    buf2.add(make_state("a", (1,), -3.0, pinned=True))
    assert not buf2.add(make_state("b", (1,), 5.0))  # only pinned entries left: they stay
    assert buf2.add(make_state("c", (1,), 5.0, pinned=True))


def test_pin_and_ban(make_state):
    buf = ReplayBuffer()
    s = make_state(score=0.0)
    buf.add(s)
    p0 = buf.priority(buf.get(s.key))
    assert buf.pin(s.key)
    assert buf.priority(buf.get(s.key)) == pytest.approx(10 * p0)
    assert buf.ban(s.key)
    assert s.key not in buf and buf.retired_counts["banned"] == 1
    assert not buf.add(make_state(score=5.0))  # a banned state never comes back
    assert buf.is_retired(s.key) == "banned"
    assert not buf.add(make_state("q", (9,), banned=True))  # arriving banned: refused
    assert len(buf) == 0


def test_non_finite_scores_are_refused(make_state):
    buf = ReplayBuffer()
    with pytest.raises(ValueError, match="score must be finite"):
        buf.add(make_state(score=float("nan")))
    s = make_state(score=0.0)
    buf.add(s)
    with pytest.raises(ValueError, match="score must be finite"):
        buf.refresh_score(s.key, float("inf"))
    assert buf.get(s.key).score == 0.0


def test_capacity_zero_keeps_nothing(make_state):
    buf = ReplayBuffer(capacity=0)
    assert not buf.add(make_state())
    assert len(buf) == 0 and buf.sample(3) == []


@pytest.mark.parametrize("kw,flag", [
    ({"capacity": -1}, "--rrl_buffer_capacity"), ({"per_prompt_capacity": 0}, "--rrl_per_prompt_capacity"),
    ({"temperature": 0}, "--rrl_temperature"), ({"restart_decay": 1.5}, "--rrl_restart_decay"),
    ({"retire_dead_after": -2}, "--rrl_retire_dead_after"), ({"retire_solved_rate": -0.1}, "--rrl_retire_solved_rate"),
])
def test_bad_buffer_arguments_name_the_flag(kw, flag):
    with pytest.raises(RRLConfigError, match=f"^{flag}: expected"):
        ReplayBuffer(**kw)


# ------------------------------------------------------------------ sampling
def test_sample_is_proportional_to_priority(make_state):
    buf = ReplayBuffer(temperature=1.0)
    a, b = make_state("a", (1,), 2.0), make_state("b", (1,), 0.0)
    buf.add(a), buf.add(b)
    rng = random.Random(1)
    n = 20000
    hits = sum(buf.sample(1, rng)[0].key == a.key for _ in range(n))
    p = math.exp(2) / (math.exp(2) + 1)
    assert hits / n == pytest.approx(p, abs=0.01)


def test_sample_without_replacement_and_exclusions(make_state, consistent):
    buf = ReplayBuffer()
    for i in range(6):
        buf.add(make_state(f"p{i % 3}", (i,), i / 10))
    got = buf.sample(10, random.Random(0))
    assert len(got) == 6 and len({s.key for s in got}) == 6
    got = buf.sample(10, random.Random(0), exclude_prompts=["p0", "p2"])
    assert {s.prompt_key for s in got} == {"p1"} and len(got) == 2
    consistent(buf)  # temporary zeroing was undone


def test_sample_uses_the_buffers_own_seeded_rng_by_default(make_state):
    def draws(seed):
        buf = ReplayBuffer(seed=seed)
        for i in range(50):
            buf.add(make_state(f"p{i}", (i,), 0.0))
        return [s.key for s in buf.sample(5)]
    assert draws(3) == draws(3)
    assert draws(3) != draws(4)


def test_sample_accepts_a_numpy_generator(make_state):
    np = pytest.importorskip("numpy")
    buf = ReplayBuffer()
    for i in range(5):
        buf.add(make_state(f"p{i}", (i,), 0.0))
    assert len(buf.sample(3, np.random.default_rng(0))) == 3


def test_sample_never_returns_retired_or_banned(make_state):
    buf = ReplayBuffer(retire_dead_after=2)
    states = [make_state(f"p{i}", (i,), 3.0 if i < 3 else 0.0) for i in range(6)]
    for s in states:
        buf.add(s)
    buf.ban(states[0].key)
    buf.record_restart(states[1].key, [1.0, 1.0], 1)  # solved
    buf.record_restart(states[2].key, [0.0, 0.0], 1)  # dead
    gone = {states[i].key for i in range(3)}
    for seed in range(50):
        assert not gone & {s.key for s in buf.sample(6, random.Random(seed))}


# ------------------------------------------------------------------ retirement
def test_record_restart_updates_counts_and_retires_solved_states(make_state):
    buf = ReplayBuffer()
    s = make_state(score=1.0)
    buf.add(s)
    assert buf.record_restart(s.key, [1.0, 0.0, 0.2, 0.7], step=4) is None
    e = buf.get(s.key)
    assert (e.restarts, e.continuations, e.successes, e.last_seen) == (1, 4, 2, 4)
    assert buf.record_restart(s.key, [1.0] * 8, step=5) == "solved"
    assert s.key not in buf and buf.retired_counts["solved"] == 1
    assert not buf.add(make_state(score=1.0))  # solved states are not re-admitted
    assert buf.record_restart(s.key, [1.0], step=6) is None  # unknown key: no-op
    assert buf.record_restart("nope", [1.0], step=6) is None


def test_success_threshold_decides_what_counts_as_a_success(make_state):
    buf = ReplayBuffer()
    s = make_state()
    buf.add(s)
    assert buf.record_restart(s.key, [0.6, 0.9], 1, success_threshold=0.8) is None
    assert buf.get(s.key).successes == 1
    assert buf.record_restart(s.key, [0.6, 0.9], 1, success_threshold=0.5) == "solved"


def test_solved_retirement_can_be_switched_off(make_state):
    buf = ReplayBuffer(retire_solved_restart=False)
    s = make_state()
    buf.add(s)
    assert buf.record_restart(s.key, [1.0, 1.0], 1) is None and s.key in buf


def test_dead_after_n_continuations_without_success(make_state):
    buf = ReplayBuffer(retire_dead_after=6)
    dead, alive = make_state("a", (1,)), make_state("b", (1,))
    buf.add(dead), buf.add(alive)
    assert buf.record_restart(dead.key, [0.0] * 4, 1) is None
    assert buf.record_restart(dead.key, [0.0] * 4, 2) == "dead"
    buf.record_restart(alive.key, [1.0, 0.0, 0.0, 0.0], 1)
    assert buf.record_restart(alive.key, [0.0] * 4, 2) is None  # one success ever: not dead
    assert buf.retired_counts["dead"] == 1 and alive.key in buf
    assert buf.is_retired(dead.key) == "dead"


def test_pinned_entries_are_never_retired_automatically(make_state):
    buf = ReplayBuffer(retire_dead_after=2, retire_solved_rate=0.5)
    s = make_state(pinned=True)
    buf.add(s)
    assert buf.record_restart(s.key, [0.0, 0.0, 0.0], 1) is None
    assert buf.record_restart(s.key, [1.0, 1.0], 2) is None
    assert buf.record_fresh(s.prompt_key, 1.0, 3) == 0
    assert buf.retire_untried(1000, 1) == 0
    assert s.key in buf
    assert buf.retire(s.key, "evicted")  # explicit retirement still works


def test_record_fresh_retires_a_solved_prompts_entries(make_state):
    buf = ReplayBuffer(retire_solved_rate=0.75)
    for i in range(3):
        buf.add(make_state("a", (i,)))
    buf.add(make_state("b", (1,)))
    assert buf.record_fresh("a", 0.5, 1) == 0 and len(buf) == 4
    assert buf.record_fresh("a", 0.75, 2) == 3
    assert buf.prompt_entries("a") == [] and len(buf) == 1
    assert buf.retired_counts["prompt_solved"] == 3
    assert buf.add(make_state("a", (0,)))  # prompt_solved is not remembered: it may become hard again


def test_refresh_score(make_state):
    buf = ReplayBuffer()
    s = make_state(score=0.0)
    buf.add(s)
    assert buf.refresh_score(s.key, 2.0)
    assert buf._tree.get(buf._slot[s.key]) == pytest.approx(math.exp(2.0))
    assert not buf.refresh_score("missing", 1.0)


def test_unknown_retire_reason(make_state):
    buf = ReplayBuffer()
    new = make_state("b", (1,), last_seen=9)
    buf.add(new)
    with pytest.raises(ValueError, match="unknown retire reason"):
        buf.retire(new.key, "bored")


# ------------------------------------------------------------------ state dict and file
def _filled(make_state, n=20, **kw):
    buf = ReplayBuffer(capacity=16, per_prompt_capacity=3, seed=5, **kw)
    rng = random.Random(0)
    for i in range(n):
        buf.add(make_state(f"p{i % 7}", (i, i + 1), rng.uniform(-1, 1), label={"ans": i},
                           prefix_logprobs=(-0.25,) * 2, cut_value=0.5 if i % 2 else None))
    keys = [s.key for s in buf.entries()]
    buf.record_restart(keys[0], [1.0, 0.0], 3)
    buf.record_restart(keys[1], [1.0, 1.0], 3)
    buf.pin(keys[2])
    buf.ban(keys[3])
    buf.sample(4)  # advance the rng
    return buf


def test_state_dict_round_trip_is_exact_and_sampling_continues_identically(make_state, consistent):
    buf = _filled(make_state)
    sd = buf.state_dict()
    other = ReplayBuffer(capacity=16, per_prompt_capacity=3, seed=5)
    other.load_state_dict(sd)
    assert other.state_dict() == sd
    consistent(other)
    # the rng state comes from the dict, not from the constructor's seed
    reseeded = ReplayBuffer(capacity=16, per_prompt_capacity=3, seed=99)
    reseeded.load_state_dict(sd)
    assert [s.key for s in reseeded.sample(5)] == [s.key for s in other.sample(5)]
    other.load_state_dict(sd)
    assert [s.key for s in other.sample(5)] == [s.key for s in buf.sample(5)]
    assert other.is_retired(next(iter(r for r, _ in sd["remembered"]))) is not None


def test_save_writes_header_entries_and_end_marker(make_state, tmp_path):
    import json
    buf = _filled(make_state)
    path = tmp_path / "buf.jsonl"
    buf.save(path, extra={"note": 1})
    lines = path.read_text().splitlines()
    head = json.loads(lines[0])
    assert head["format"] == "openrlhf-rrl-buffer" and head["version"] == 1 and head["extra"] == {"note": 1}
    assert head["config"]["capacity"] == 16 and "retired_counts" in head and "entries" not in head
    assert json.loads(lines[-1]) == {"end": len(buf)}
    assert len(lines) == len(buf) + 2
    assert {json.loads(ln)["prompt_key"] for ln in lines[1:-1]} == set(buf.prompt_keys())
    assert [f for f in os.listdir(tmp_path) if f != "buf.jsonl"] == []  # no temp file left


def test_save_load_round_trip(make_state, tmp_path):
    buf = _filled(make_state)
    path = tmp_path / "buf.jsonl"
    buf.save(path)
    assert ReplayBuffer.load(path).state_dict() == buf.state_dict()
    other = ReplayBuffer(capacity=16, per_prompt_capacity=3, seed=5)
    assert other.load_into(path) is None
    assert other.state_dict() == buf.state_dict()
    buf.save(path, extra={"x": [1, 2]})
    assert ReplayBuffer(capacity=16, per_prompt_capacity=3).load_into(path) == {"x": [1, 2]}


def _corrupt_cases(lines):
    yield "truncated (last line lost)", lines[:-1]
    yield "truncated mid-line", lines[:-2] + [lines[-2][: len(lines[-2]) // 2]]
    yield "garbage line", lines[:2] + ["{not json"] + lines[3:]
    yield "end count wrong", lines[:-1] + ['{"end": 999}']
    yield "wrong version", [lines[0].replace('"version":1', '"version":2')] + lines[1:]
    yield "not a buffer file", ['{"hello": 1}'] + lines[1:]
    yield "empty", []
    yield "bad entry field", lines[:1] + [lines[1].replace('"prompt_key":', '"prompt_key":5,"x":')] + lines[2:]
    yield "data after end", lines + ['{"prompt_key": "p"}']


def test_bad_files_raise_one_line_errors_naming_the_file_and_stay_untouched(make_state, tmp_path):
    buf = _filled(make_state)
    good = tmp_path / "good.jsonl"
    buf.save(good)
    lines = good.read_text().splitlines()
    seen = set()
    for name, bad_lines in _corrupt_cases(lines):
        path = tmp_path / f"bad-{len(seen)}.jsonl"
        data = ("\n".join(bad_lines) + ("\n" if bad_lines else "")).encode()
        path.write_bytes(data)
        target = ReplayBuffer(capacity=16, per_prompt_capacity=3)
        target.add(make_state("keep", (1,)))
        before = target.state_dict()
        with pytest.raises(BufferFileError) as err:
            target.load_into(path)
        msg = str(err.value)
        assert msg.startswith(str(path) + ": ") and "\n" not in msg, name
        seen.add(msg.split(": ", 1)[1])
        with pytest.raises(BufferFileError):
            ReplayBuffer.load(path)
        assert path.read_bytes() == data, name  # the file is never modified
        assert target.state_dict() == before, name  # a failed load changes nothing
    assert len(seen) >= 6  # each kind of damage gets its own explanation
    with pytest.raises(BufferFileError, match="no such buffer file"):
        ReplayBuffer.load(tmp_path / "missing.jsonl")
    with pytest.raises(BufferFileError, match="version 2"):
        p = tmp_path / "v2.jsonl"
        p.write_text("\n".join([lines[0].replace('"version":1', '"version":2')] + lines[1:]) + "\n")
        ReplayBuffer.load(p)


def test_failed_save_leaves_previous_good_file_intact(make_state, tmp_path, monkeypatch):
    buf = _filled(make_state)
    path = tmp_path / "buf.jsonl"
    buf.save(path)
    good = path.read_bytes()
    buf.add(make_state("new", (5,), 9.0))

    calls = {"n": 0}
    real = buffer_module._encode_line

    def flaky(obj):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk full")
        return real(obj)

    monkeypatch.setattr(buffer_module, "_encode_line", flaky)
    with pytest.raises(OSError, match="disk full"):
        buf.save(path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["buf.jsonl"]  # the temp file was cleaned up
    monkeypatch.setattr(buffer_module, "_encode_line", real)

    def no_fsync(fd):
        raise OSError("fsync failed")
    monkeypatch.setattr(buffer_module.os, "fsync", no_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        buf.save(path)
    assert path.read_bytes() == good
    monkeypatch.undo()
    buf.save(path)
    assert ReplayBuffer.load(path).state_dict() == buf.state_dict()


def test_unserialisable_label_fails_save_without_damage(make_state, tmp_path):
    buf = ReplayBuffer()
    buf.add(make_state("a", (1,)))
    path = tmp_path / "b.jsonl"
    buf.save(path)
    good = path.read_bytes()
    buf.add(make_state("b", (1,), label=object()))
    with pytest.raises(TypeError):
        buf.save(path)
    assert path.read_bytes() == good


def test_reviewer_edits_in_the_file_take_effect(make_state, tmp_path):
    import json
    buf = ReplayBuffer()
    a, b = make_state("a", (1,)), make_state("b", (1,))
    buf.add(a), buf.add(b)
    path = tmp_path / "b.jsonl"
    buf.save(path)
    lines = path.read_text().splitlines()
    out = [lines[0]]
    for ln in lines[1:-1]:
        d = json.loads(ln)
        if d["prompt_key"] == "a":
            d["banned"] = True
        else:
            d["pinned"] = True
        out.append(json.dumps(d))
    path.write_text("\n".join(out + [lines[-1]]) + "\n")
    loaded = ReplayBuffer.load(path)
    assert a.key not in loaded and loaded.get(b.key).pinned
    assert loaded.retired_counts["banned"] == 1
    assert not loaded.add(make_state("a", (1,)))


def test_loading_into_a_smaller_buffer_keeps_the_best(make_state, consistent):
    big = ReplayBuffer(capacity=10)
    for i in range(10):
        big.add(make_state(f"p{i}", (i,), float(i)))
    small = ReplayBuffer(capacity=4)
    small.load_state_dict(big.state_dict())
    assert sorted(s.score for s in small.entries()) == [6.0, 7.0, 8.0, 9.0]
    assert small.retired_counts["evicted"] == 6
    consistent(small)
    assert small.add(make_state("new", (1,), 20.0))
    consistent(small)
