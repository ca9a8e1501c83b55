"""Property tests: whatever sequence of operations runs, the buffer's invariants hold."""

import os
import random
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openrlhf_rrl.core.buffer import ReplayBuffer
from openrlhf_rrl.core.state import RetainedState

PROMPTS = [f"p{i}" for i in range(5)]

add_op = st.tuples(st.just("add"), st.integers(0, 4), st.integers(0, 11),
                   st.sampled_from([-1.0, 0.0, 0.25, 0.5, 1.0, 3.0]), st.booleans(), st.booleans())
sample_op = st.tuples(st.just("sample"), st.integers(0, 8), st.lists(st.integers(0, 4), max_size=2))
restart_op = st.tuples(st.just("restart"), st.integers(0, 50), st.integers(0, 4), st.integers(1, 4))
fresh_op = st.tuples(st.just("fresh"), st.integers(0, 4), st.sampled_from([0.0, 0.5, 0.8, 1.0]))
ban_op = st.tuples(st.just("ban"), st.integers(0, 50))
ops = st.lists(st.one_of(add_op, add_op, add_op, sample_op, restart_op, fresh_op, ban_op), max_size=60)
configs = st.tuples(st.integers(0, 10), st.integers(1, 4), st.sampled_from([0.5, 1.0]), st.integers(0, 6))


def state(p, i, score, pinned, banned):
    return RetainedState(prompt_key=PROMPTS[p], prompt_ids=(p,), prefix_ids=(i, i % 3), score=score,
                         pinned=pinned and i % 4 == 0, banned=banned and i % 5 == 0)


def run(config, operations, consistent):
    cap, ppc, decay, dead = config
    buf = ReplayBuffer(capacity=cap, per_prompt_capacity=ppc, restart_decay=decay, retire_dead_after=dead, seed=1)
    gone = set()  # keys retired for good: solved, dead, banned
    step = 0
    for op in operations:
        step += 1
        kind = op[0]
        if kind == "add":
            s = state(*op[1:])
            buf.add(s)
            if s.banned:
                gone.add(s.key)
        elif kind == "sample":
            got = buf.sample(op[1], random.Random(step), exclude_prompts=[PROMPTS[p] for p in op[2]])
            keys = [g.key for g in got]
            assert len(keys) == len(set(keys)) <= op[1]
            assert all(k in buf and k not in gone and not g.banned for k, g in zip(keys, got))
            assert not {g.prompt_key for g in got} & {PROMPTS[p] for p in op[2]}
        elif kind == "restart":
            entries = list(buf.entries())
            if entries:
                e = entries[op[1] % len(entries)]
                reason = buf.record_restart(e.key, [1.0] * op[2] + [0.0] * (op[3] - min(op[2], op[3])), step)
                if reason in ("solved", "dead"):
                    gone.add(e.key)
        elif kind == "fresh":
            buf.record_fresh(PROMPTS[op[1]], op[2], step)
        elif kind == "ban":
            entries = list(buf.entries())
            if entries:
                e = entries[op[1] % len(entries)]
                buf.ban(e.key)
                gone.add(e.key)
        assert len(buf) <= cap
        for pk in PROMPTS:
            assert len(buf.prompt_entries(pk)) <= ppc
        assert not gone & {e.key for e in buf.entries()}
        consistent(buf)
    return buf


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=configs, operations=ops)
def test_invariants_hold_and_state_dict_round_trips(config, operations, consistent):
    buf = run(config, operations, consistent)
    sd = buf.state_dict()
    copy = ReplayBuffer(**buf.config_dict())
    copy.load_state_dict(sd)
    assert copy.state_dict() == sd
    consistent(copy)
    # the copy behaves identically from here on
    assert [s.key for s in copy.sample(3)] == [s.key for s in buf.sample(3)]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=configs, operations=ops)
def test_save_load_round_trips_exactly(config, operations, consistent):
    buf = run(config, operations, consistent)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "b.jsonl")
        buf.save(path)
        assert ReplayBuffer.load(path).state_dict() == buf.state_dict()
