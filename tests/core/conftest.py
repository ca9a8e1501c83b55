"""Buffer invariant check for the core tests (make_state / make_traj live in tests/conftest.py)."""

import pytest



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
