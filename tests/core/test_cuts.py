import pytest

from openrlhf_rrl.core.cuts import (boundary_cuts, checker_cut, clip_cuts, every_k_cuts, top_entropy_cuts,
                                    top_value_cuts)


def test_boundary_cuts_fall_right_after_boundary_tokens():
    resp = [5, 9, 6, 7, 9, 8, 13]
    assert boundary_cuts(resp, {9}) == [2, 5]
    assert boundary_cuts(resp, {9, 13}) == [2, 5, 7]
    assert boundary_cuts(resp, set()) == []


def test_every_k_cuts():
    assert every_k_cuts(10, 3) == [3, 6, 9]
    assert every_k_cuts(9, 3) == [3, 6]
    assert every_k_cuts(2, 5) == []
    with pytest.raises(ValueError):
        every_k_cuts(10, 0)


def test_top_value_and_entropy_cuts_are_sorted_positions_of_the_largest():
    vals = [0.1, 0.9, 0.3, 0.8, 0.2]
    assert top_value_cuts(vals, 2) == [1, 3]
    assert top_value_cuts(vals, 0) == []
    assert top_value_cuts(vals, 10) == [0, 1, 2, 3, 4]
    assert top_entropy_cuts([0.0, 2.0, 2.0, 1.0], 1) == [1]  # ties: earliest
    assert top_entropy_cuts([0.0, 2.0, 0.5, 3.0], 2) == [1, 3]
    assert top_value_cuts([float("nan"), 0.2, float("inf"), 0.1], 3) == [1, 3]


def test_checker_cut():
    assert checker_cut(7) == [7]
    assert checker_cut(0) == [] and checker_cut(None) == []


def test_clip_cuts_drops_empty_and_full_prefixes():
    assert clip_cuts([0, 1, 5, 10], 10) == [1, 5]
    assert clip_cuts([5, 5, 3], 10) == [3, 5]  # sorted, unique


def test_clip_cuts_length_limits():
    cuts = list(range(0, 21))
    assert clip_cuts(cuts, 20, min_frac=0.25, max_frac=0.5) == [5, 6, 7, 8, 9, 10]
    assert clip_cuts(cuts, 20, min_tokens=15) == [15, 16, 17, 18, 19]
    assert clip_cuts(cuts, 20, max_tokens=3) == [1, 2, 3]
    assert clip_cuts(cuts, 20, max_tokens=0) == list(range(1, 20))  # 0 = no limit
    assert clip_cuts(cuts, 20, min_frac=0.6, max_frac=0.4) == []
    kept = clip_cuts(range(101), 100, min_frac=0.07, max_frac=0.29)
    assert (kept[0], kept[-1]) == (7, 29)  # 0.07 * 100 = 7.000000000000001 and 0.29 * 100 = 28.999999999999996


def test_clip_cuts_drops_cuts_at_or_after_eos():
    # response of 10 tokens whose EOS is at index 6 (then padding): a prefix must end before it
    assert clip_cuts(range(11), 10, eos_pos=6) == [1, 2, 3, 4, 5]
    assert clip_cuts(range(11), 10, eos_pos=9) == list(range(1, 9))
