import pytest

from openrlhf_rrl.core.errors import RRLConfigError
from openrlhf_rrl.core.schedules import AdaptiveShare, ShareSchedule


def test_constant_is_zero_before_start_then_share():
    s = ShareSchedule("constant", 0.3, start_step=5, warmup_steps=10)
    assert [s(t) for t in (0, 4, 5, 6, 1000)] == [0.0, 0.0, 0.3, 0.3, 0.3]


def test_linear_ramps_over_warmup_after_start():
    s = ShareSchedule("linear", 0.4, start_step=10, warmup_steps=4)
    assert [s(t) for t in (9, 10, 11, 12, 14, 100)] == pytest.approx([0, 0, 0.1, 0.2, 0.4, 0.4])
    assert ShareSchedule("linear", 0.4)(0) == 0.4  # no warm-up: full share at once


def test_cosine_warms_up_then_decays_to_zero_by_total_steps():
    s = ShareSchedule("cosine", 0.5, start_step=0, warmup_steps=10, total_steps=110)
    assert s(5) == pytest.approx(0.25)
    assert s(10) == pytest.approx(0.5)
    assert s(60) == pytest.approx(0.25)
    assert s(110) == pytest.approx(0.0) and s(500) == pytest.approx(0.0)
    vals = [s(t) for t in range(10, 111)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


def test_schedule_values_stay_in_unit_interval():
    for kind in ("constant", "linear", "cosine"):
        s = ShareSchedule(kind, 1.0, start_step=3, warmup_steps=7, total_steps=50)
        assert all(0.0 <= s(t) <= 1.0 for t in range(0, 80))


@pytest.mark.parametrize("args,flag", [
    (("exp", 0.2), "--rrl_share_schedule"), (("constant", 1.5), "--rrl_replay_share"),
    (("constant", -0.1), "--rrl_replay_share"), (("cosine", 0.2), "--rrl_total_steps"),
])
def test_bad_schedules_name_the_flag(args, flag):
    with pytest.raises(RRLConfigError, match=f"^{flag}: "):
        ShareSchedule(*args)


def test_adaptive_share_follows_informative_groups_within_bounds():
    a = AdaptiveShare(lo=0.1, hi=0.3, step_size=0.05, smoothing=0.0)
    assert a.share == pytest.approx(0.2) and a(0) == pytest.approx(0.2)
    a.update(0.8, 0.2)
    assert a.share == pytest.approx(0.25)
    for _ in range(5):
        a.update(0.8, 0.2)
    assert a.share == pytest.approx(0.3)  # capped at hi
    for _ in range(10):
        a.update(0.0, 0.5)
    assert a.share == pytest.approx(0.1)  # floored at lo
    a.update(None, 0.5)  # no restart groups this step: no evidence, no change
    assert a.share == pytest.approx(0.1)


def test_adaptive_share_smooths_and_round_trips():
    a = AdaptiveShare(lo=0.0, hi=1.0, init=0.5, step_size=0.1, smoothing=0.9, start_step=3)
    assert a(2) == 0.0 and a(3) == 0.5
    a.update(0.6, 0.5)
    a.update(0.0, 0.5)  # one bad step does not outweigh the smoothed history at once
    assert a.ema_restart == pytest.approx(0.54)
    assert a.share == pytest.approx(0.7)
    b = AdaptiveShare(lo=0.0, hi=1.0)
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()
    with pytest.raises(RRLConfigError, match="^--rrl_share_min"):
        AdaptiveShare(lo=0.6, hi=0.4)
