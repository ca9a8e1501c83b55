import random

import pytest

from openrlhf_rrl.core.sumtree import SumTree


def test_find_maps_cumulative_intervals_to_slots():
    t = SumTree(5)
    for i, w in enumerate([1.0, 0.0, 2.0, 3.0, 0.0]):
        t.set(i, w)
    assert t.total() == 6.0
    assert [t.find(u) for u in (0.0, 0.99, 1.0, 2.99, 3.0, 5.99)] == [0, 0, 2, 2, 3, 3]


def test_rounding_at_the_end_never_lands_on_a_zero_slot():
    t = SumTree(8)
    t.set(3, 0.1)
    t.set(6, 0.2)
    assert t.find(t.total()) == 6
    assert t.find(t.total() * 2) == 6


def test_no_residue_after_removing_a_huge_weight():
    t = SumTree(4)
    t.set(0, 1e-200)
    t.set(1, 1e250)
    t.set(1, 0.0)
    assert t.total() == 1e-200
    assert t.find(0.5e-200) == 0


def test_draws_are_proportional():
    t = SumTree(3)
    for i, w in enumerate([1.0, 3.0, 6.0]):
        t.set(i, w)
    rng = random.Random(0)
    counts = [0, 0, 0]
    for _ in range(20000):
        counts[t.find(rng.random() * t.total())] += 1
    assert [c / 20000 for c in counts] == pytest.approx([0.1, 0.3, 0.6], abs=0.015)
