import random
from collections import Counter

import pytest

from openrlhf_rrl.core.buffer import ReplayBuffer
from openrlhf_rrl.core.errors import RRLConfigError
from openrlhf_rrl.core.policies import PassRatePolicy, PromisePolicy, UncertaintyPolicy, make_policy


def test_make_policy_and_unknown_name():
    assert isinstance(make_policy("promise"), PromisePolicy)
    assert make_policy("passrate", target_pass_rate=0.3).target == 0.3
    assert isinstance(make_policy("uncertainty"), UncertaintyPolicy)
    with pytest.raises(RRLConfigError, match="^--rrl_policy: unknown policy 'greedy'"):
        make_policy("greedy")


def test_promise_is_the_buffers_priority_sampling(make_state):
    buf = ReplayBuffer()
    for i in range(10):
        buf.add(make_state(f"p{i}", (i,), i / 3))
    got = make_policy("promise").select(buf, 4, random.Random(7), {})
    assert [s.key for s in got] == [s.key for s in buf.sample(4, random.Random(7))]
    counts = Counter(make_policy("promise").select(buf, 1, random.Random(s), {})[0].score for s in range(3000))
    assert counts[9 / 3] > counts[0.0] * 5  # high score drawn far more often


def _with_outcomes(make_state, outcomes):
    buf = ReplayBuffer()
    for i, (succ, n) in enumerate(outcomes):
        buf.add(make_state(f"p{i}", (i,), 0.0, successes=succ, continuations=n, restarts=1 if n else 0))
    return buf


def test_passrate_picks_entries_nearest_the_target(make_state):
    # posterior means: 1/10, 9/10, 5/10, 2/10
    buf = _with_outcomes(make_state, [(0, 8), (8, 8), (4, 8), (1, 8)])
    got = PassRatePolicy(target=0.5).select(buf, 2, random.Random(0), {})
    assert [s.prompt_key for s in got] == ["p2", "p3"]
    got = PassRatePolicy(target=0.9).select(buf, 1, random.Random(0), {})
    assert [s.prompt_key for s in got] == ["p1"]
    assert PassRatePolicy().select(buf, 0, random.Random(0), {}) == []


def test_passrate_breaks_ties_at_random_not_by_age(make_state):
    buf = _with_outcomes(make_state, [(0, 0)] * 6)  # all untried: equally near 0.5
    firsts = {PassRatePolicy().select(buf, 1, random.Random(s), {})[0].prompt_key for s in range(40)}
    assert len(firsts) >= 4


def test_uncertainty_prefers_uncertain_entries_and_uses_the_fresh_rate_prior(make_state):
    buf = _with_outcomes(make_state, [(0, 16), (16, 16), (8, 16)])
    pol = UncertaintyPolicy(target=0.5)
    counts = Counter(pol.select(buf, 1, random.Random(s), {})[0].prompt_key for s in range(400))
    assert counts["p2"] > 300
    # two untried entries: the one whose prompt fresh-solves near 0.5 is the more uncertain
    buf = _with_outcomes(make_state, [(0, 0), (0, 0)])
    rates = {"p0": 0.0, "p1": 0.5}
    counts = Counter(UncertaintyPolicy(prior_strength=8).select(buf, 1, random.Random(s), rates)[0].prompt_key
                     for s in range(400))
    assert counts["p1"] > counts["p0"] * 1.5
    assert pol.prior(None) == pol.prior(0.5) and pol.prior(1.0)[0] > pol.prior(1.0)[1]


def test_policies_never_return_banned_or_more_than_k(make_state):
    buf = _with_outcomes(make_state, [(1, 2)] * 8)
    banned = next(buf.entries()).key
    buf.ban(banned)
    for name in ("promise", "passrate", "uncertainty"):
        got = make_policy(name).select(buf, 5, random.Random(0), {})
        assert len(got) == 5 and len({s.key for s in got}) == 5 and banned not in {s.key for s in got}
        assert len(make_policy(name).select(buf, 50, random.Random(0), {})) == 7


def test_passrate_goes_both_ways_head_starts_below_the_target_handicaps_above(make_state):
    buf = ReplayBuffer()
    head = make_state("hard", (1,), 0.0)
    hand = make_state("easy", (2,), 0.0, handicap=True)
    wrong_way = [make_state("hard", (3,), 0.0, handicap=True), make_state("easy", (4,), 0.0)]
    for s in [head, hand] + wrong_way:
        buf.add(s)
    pol = PassRatePolicy(target=0.5)
    rates = {"hard": 0.125, "easy": 0.875}
    got = pol.select(buf, 10, random.Random(0), rates)
    assert {s.key for s in got} == {head.key, hand.key}
    # at the target a prompt needs neither; an unknown rate leaves every entry eligible
    assert pol.select(buf, 10, random.Random(0), {"hard": 0.5, "easy": 0.5}) == []
    assert len(pol.select(buf, 10, random.Random(0), {})) == 4


def test_passrate_prefers_entries_whose_groups_came_back_mixed_over_a_mean_near_the_target(make_state):
    buf = ReplayBuffer()
    # same pass rate 0.5 (8 of 16), but one entry's groups were 0/8 and 8/8, the other's 4/8 twice
    blocky = make_state("p0", (1,), 0.0, restarts=2, continuations=16, successes=8, mixed_groups=0)
    mixed = make_state("p1", (1,), 0.0, restarts=2, continuations=16, successes=6, mixed_groups=2)  # mean 7/18
    untried = make_state("p2", (1,), 0.0)
    for s in (blocky, mixed, untried):
        buf.add(s)
    got = PassRatePolicy().select(buf, 3, random.Random(0), {})
    assert [s.prompt_key for s in got] == ["p1", "p2", "p0"]
