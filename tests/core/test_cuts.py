import pytest

from openrlhf_rrl.core.cuts import (boundary_cuts, clip_cuts, every_k_cuts, grid_cuts, handicap_cut,
                                    moved_cut, top_entropy_cuts, top_value_cuts)


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


# ------------------------------------------------------------------ passrate: handicaps and cut control
def test_grid_cuts_use_boundaries_inside_the_range_else_the_stride():
    resp = [5, 9, 6, 7, 9, 8, 13, 4, 4, 4]
    assert grid_cuts(resp, range(1, 9), {9}) == [2, 5]
    assert grid_cuts(resp, range(3, 9), {9}) == [5]
    assert grid_cuts(resp, range(6, 9), {9}, stride=3) == [6]  # no boundary in range: stride
    assert grid_cuts(resp, range(1, 9), (), stride=4) == [4, 8]


def test_handicap_cut_keeps_the_first_unverified_step_else_the_middle():
    allowed = range(1, 20)
    grid = [4, 8, 12, 16]
    assert handicap_cut(grid, allowed, verified_tokens=9) == 12  # the prefix holds the wrong step
    assert handicap_cut(grid, allowed, verified_tokens=17) == 19  # no grid cut after it: the end
    assert handicap_cut(grid, allowed, verified_tokens=19) is None  # all of the range is verified
    assert handicap_cut(grid, allowed) == 8  # no checker: the middle of the grid
    assert handicap_cut([], range(3, 8)) == 5
    assert handicap_cut(grid, range(0)) is None


def test_moved_cut_steps_by_boundaries_or_stride_and_stops_at_the_ends():
    full = [1, 9, 1, 1, 9, 1, 1, 1, 9, 1, 1, 1]  # boundary 9: cuts after it at 2, 5, 9
    assert moved_cut(full, 5, True, 1, 11, {9}) == 9
    assert moved_cut(full, 9, True, 1, 11, {9}) == 11  # past the last boundary: the end of the range
    assert moved_cut(full, 11, True, 1, 11, {9}) is None
    assert moved_cut(full, 5, False, 1, 11, {9}) == 2
    assert moved_cut(full, 2, False, 1, 11, {9}) == 1  # before the first boundary: the start
    assert moved_cut(full, 1, False, 1, 11, {9}) is None
    assert moved_cut(full, 5, True, 3, 8, {9}) == 8  # boundary 9 is out of range
    # no boundaries: the stride, clipped into [lo, hi]
    assert moved_cut(full, 4, True, 2, 10, (), stride=3) == 7
    assert moved_cut(full, 9, True, 2, 10, (), stride=3) == 10
    assert moved_cut(full, 4, False, 2, 10, (), stride=3) == 2
    assert moved_cut(full, 4, True, 5, 4, ()) is None  # empty range
