"""Factories shared by the core tests (fixtures: tests have no package, see pytest.ini)."""

import pytest

from openrlhf_rrl.core.state import RetainedState
from openrlhf_rrl.core.trajectory import Trajectory


def _state(prompt="p0", prefix=(1,), score=0.0, **kw):
    pid = kw.pop("prompt_ids", (100 + sum(map(ord, prompt)), len(prompt)))
    return RetainedState(prompt_key=prompt, prompt_ids=tuple(pid), prefix_ids=tuple(prefix), score=score, **kw)


def _traj(prompt="p0", response=tuple(range(10, 30)), reward=0.0, success=False, **kw):
    kw.setdefault("prompt_ids", (1, 2, 3))
    return Trajectory(prompt_key=prompt, response_ids=tuple(response), reward=reward, success=success, **kw)


@pytest.fixture
def make_state():
    """make_state(prompt, prefix, score, **fields) -> RetainedState with stable prompt ids per prompt key."""
    return _state


@pytest.fixture
def make_traj():
    """make_traj(prompt, response, reward, success, **fields) -> Trajectory."""
    return _traj


def check_buffer_consistent(buf):
    """Internal invariants: tree leaves = priorities, sum = total, heap/rank/slots agree."""
    keys = list(buf._entries)
    assert len(set(keys)) == len(keys)
    assert set(buf._rank) == set(keys) == set(buf._slot)
    total = 0.0
    for k in keys:
        s = buf._entries[k]
        assert s.key == k and not s.banned
        slot = buf._slot[k]
        assert buf._slot_key[slot] == k
        assert buf._tree.get(slot) == buf.priority(s)
        total += buf.priority(s)
    occupied = set(buf._slot.values())
    for i in range(buf._tree.size):
        if i not in occupied:
            assert buf._tree.get(i) == 0.0
    assert abs(buf._tree.total() - total) <= 1e-9 * max(1.0, total)
    assert len(buf) <= buf.capacity
    for pk in buf.prompt_keys():
        assert 1 <= len(buf.prompt_entries(pk)) <= buf.per_prompt_capacity


@pytest.fixture
def consistent():
    return check_buffer_consistent
