import pytest
import torch

from openrlhf_rrl.core.errors import RRLConfigError
from openrlhf_rrl.core.scoring import make_scorer

RESP = tuple(range(100, 120))  # 20 tokens, the last one is EOS
LIMITS = dict(min_prefix_frac=0.0, max_prefix_frac=1.0, min_prefix_tokens=1)


def test_unknown_scorer_names_the_flag():
    with pytest.raises(RRLConfigError, match="^--rrl_scorer: unknown scorer 'magic'"):
        make_scorer("magic")


def test_states_carry_prefix_and_cut_facts(make_traj):
    sc = make_scorer("critic", max_cuts=1, **LIMITS)
    vals = [0.0] * 20
    vals[8] = 0.9
    t = make_traj(response=RESP, reward=0.0, values=vals, logprobs=[-0.1 * i for i in range(20)],
                  entropies=[float(i) for i in range(20)], label="42", prompt_ids=(1, 2, 3))
    (s,) = sc.candidates(t, step=7)
    assert s.prefix_ids == RESP[:8] and s.prompt_ids == (1, 2, 3) and s.prompt_key == "p0"
    assert s.prefix_logprobs == pytest.approx(tuple(-0.1 * i for i in range(8)))
    assert (s.score, s.cut_value, s.cut_entropy) == (0.9, 0.9, 8.0)
    assert (s.cut_fraction, s.source_len, s.source_reward, s.label) == (8 / 20, 20, 0.0, "42")
    assert (s.step_found, s.last_seen, s.restarts) == (7, 7, 0)


def test_critic_scorer_only_mines_hard_prompts_and_needs_values(make_traj):
    sc = make_scorer("critic", hard_threshold=0.5, max_cuts=2, **LIMITS)
    vals = [0.1 * (i % 7) for i in range(20)]
    hard = make_traj(response=RESP, values=vals, group_success_rate=0.25)
    assert sorted(s.prefix_ids.__len__() for s in sc.candidates(hard, 0)) == [6, 13]
    assert sc.candidates(make_traj(response=RESP, values=vals, group_success_rate=0.5), 0) == []
    assert sc.candidates(make_traj(response=RESP, values=None), 0) == []


def test_critic_picks_the_best_value_inside_the_length_limits(make_traj):
    vals = [0.0] * 20
    vals[2], vals[12] = 5.0, 1.0  # the best value lies before the allowed range
    sc = make_scorer("critic", max_cuts=1, min_prefix_frac=0.25, max_prefix_frac=0.75)
    (s,) = sc.candidates(make_traj(response=RESP, values=torch.tensor(vals)), 0)
    assert len(s.prefix_ids) == 12 and s.score == 1.0


def test_reward_scorer_cuts_at_boundaries_with_a_depth_bonus(make_traj):
    resp = [5, 5, 9, 5, 5, 5, 9, 5, 5, 9, 5, 2]
    sc = make_scorer("reward", boundary_tokens=[9], cut_bonus=0.1, **LIMITS)
    out = sc.candidates(make_traj(response=resp, reward=0.3), 0)
    assert [len(s.prefix_ids) for s in out] == [3, 7, 10]
    assert [s.score for s in out] == pytest.approx([0.3 + 0.1 * c / 12 for c in (3, 7, 10)])


def test_reward_scorer_falls_back_to_every_k_and_spreads_at_most_max_cuts(make_traj):
    sc = make_scorer("reward", cut_every=2, max_cuts=3, **LIMITS)
    cuts = [len(s.prefix_ids) for s in sc.candidates(make_traj(response=RESP), 0)]
    assert len(cuts) == 3 and cuts == sorted(cuts) and cuts[0] <= 6 and cuts[-1] >= 14  # spread, not bunched
    sc = make_scorer("reward", cut_every=5, max_cuts=10, boundary_tokens=[999], **LIMITS)
    assert [len(s.prefix_ids) for s in sc.candidates(make_traj(response=RESP), 0)] == [5, 10, 15]


def test_a_stride_longer_than_the_response_falls_back_to_fractions_of_it(make_traj):
    """The launcher's defaults (stride 32) on a 9-token answer gave no cut at all: replay stayed idle."""
    for name in ("reward", "mc"):
        sc = make_scorer(name)  # every default: stride 32, prefixes within [0.1, 0.9] of the response
        cuts = [len(s.prefix_ids) for s in sc.candidates(make_traj(response=range(9)), 0)]
        assert cuts == [1, 3, 5, 7]  # 4 evenly spread over the allowed cuts 1..7 (the last token is EOS)
    # a stride that fits keeps its own cuts
    sc = make_scorer("reward", cut_every=3)
    assert [len(s.prefix_ids) for s in sc.candidates(make_traj(response=range(9)), 0)] == [3, 6]


def test_length_limits_and_eos_apply_to_every_scorer(make_traj, tmp_path):
    f = tmp_path / "s.py"
    f.write_text("def score_func(prompt_ids, response_ids, reward, label, **kw):\n"
                 "    return [(c, 1.0) for c in range(0, len(response_ids) + 1)]\n")
    t = make_traj(response=RESP, values=[1.0] * 20, entropies=[1.0] * 20, verified_tokens=19)
    limits = dict(min_prefix_frac=0.2, max_prefix_frac=0.6, min_prefix_tokens=5, max_prefix_tokens=11,
                  cut_every=1, max_cuts=100)
    for name in ("critic", "reward", "checker", "entropy", "mc", f"file:{f}"):
        cuts = [len(s.prefix_ids) for s in make_scorer(name, **limits).candidates(t, 0)]
        assert cuts and all(5 <= c <= 11 for c in cuts), name
    # without limits, nothing at or after the EOS token (index 19)
    for name in ("critic", "reward", "entropy", f"file:{f}"):
        cuts = [len(s.prefix_ids) for s in make_scorer(name, cut_every=1, max_cuts=100, **LIMITS).candidates(t, 0)]
        assert max(cuts) == 18 and min(cuts) >= 1, name
    t_trunc = make_traj(response=RESP, eos=False)  # cut by max length: no EOS, the last token may be kept
    assert max(len(s.prefix_ids) for s in make_scorer("reward", cut_every=1, max_cuts=100, **LIMITS)
               .candidates(t_trunc, 0)) == 19


def test_restart_trajectories_only_give_cuts_deeper_than_their_prefix(make_traj):
    sc = make_scorer("reward", cut_every=1, max_cuts=100, **LIMITS)
    cuts = [len(s.prefix_ids) for s in sc.candidates(make_traj(response=RESP, prefix_len=12), 0)]
    assert min(cuts) == 13


def test_checker_scorer_cuts_failed_rollouts_at_the_verified_prefix(make_traj):
    sc = make_scorer("checker", **LIMITS)
    (s,) = sc.candidates(make_traj(response=RESP, verified_tokens=9, verified_steps=3), 0)
    assert len(s.prefix_ids) == 9 and s.score == pytest.approx(9 / 20) and s.verified_steps == 3
    assert sc.candidates(make_traj(response=RESP, verified_tokens=9, success=True), 0) == []
    assert sc.candidates(make_traj(response=RESP, verified_tokens=None), 0) == []
    assert sc.candidates(make_traj(response=RESP, verified_tokens=0), 0) == []
    # a verified prefix longer than allowed is shortened (its prefixes are verified too)
    (s,) = make_scorer("checker", max_prefix_frac=0.5).candidates(make_traj(response=RESP, verified_tokens=17), 0)
    assert len(s.prefix_ids) == 10


def test_entropy_scorer_cuts_before_uncertain_tokens(make_traj):
    ent = [0.1] * 20
    ent[6], ent[14] = 2.5, 1.5
    sc = make_scorer("entropy", max_cuts=2, **LIMITS)
    out = sc.candidates(make_traj(response=RESP, entropies=ent), 0)
    assert [(len(s.prefix_ids), s.score, s.cut_entropy) for s in out] == [(6, 2.5, 2.5), (14, 1.5, 1.5)]
    assert sc.candidates(make_traj(response=RESP), 0) == []


def test_mc_scorer_uses_reward_cuts_and_asks_for_restart_refresh(make_traj):
    mc, rw = make_scorer("mc", cut_every=4, **LIMITS), make_scorer("reward", cut_every=4, **LIMITS)
    t = make_traj(response=RESP, reward=0.5)
    assert [(s.prefix_ids, s.score) for s in mc.candidates(t, 0)] == [(s.prefix_ids, s.score) for s in rw.candidates(t, 0)]
    assert mc.refresh_from_restarts and not rw.refresh_from_restarts


def test_file_scorer_calls_score_func_with_the_trajectory(make_traj, tmp_path):
    f = tmp_path / "my_scorer.py"
    f.write_text(
        "def score_func(prompt_ids, response_ids, reward, label, **kw):\n"
        "    assert kw['group_success_rate'] == 0.25 and 'allowed_cuts' in kw\n"
        "    return [(len(response_ids) // 2, reward + len(prompt_ids)), (0, 9.0), (len(response_ids), 9.0)]\n")
    sc = make_scorer(f"file:{f}", **LIMITS)
    (s,) = sc.candidates(make_traj(response=RESP, reward=0.5, label="x", group_success_rate=0.25), 0)
    assert len(s.prefix_ids) == 10 and s.score == 3.5


def test_file_scorer_errors_name_the_flag(tmp_path):
    with pytest.raises(RRLConfigError, match="^--rrl_scorer: scorer file not found: .*nope.py"):
        make_scorer(f"file:{tmp_path}/nope.py")
    f = tmp_path / "empty.py"
    f.write_text("x = 1\n")
    with pytest.raises(RRLConfigError, match="^--rrl_scorer: .*empty.py defines no score_func"):
        make_scorer(f"file:{f}")
    g = tmp_path / "broken.py"
    g.write_text("def score_func(:\n")
    with pytest.raises(RRLConfigError, match="^--rrl_scorer: cannot load .*broken.py: SyntaxError"):
        make_scorer(f"file:{g}")


def test_tensor_inputs_are_accepted(make_traj):
    sc = make_scorer("critic", max_cuts=1, **LIMITS)
    t = make_traj(response=torch.tensor(RESP), prompt_ids=torch.tensor([1, 2]),
                  values=torch.linspace(0, 1, 20), logprobs=torch.zeros(20))
    (s,) = sc.candidates(t, 0)
    assert s.prefix_ids == RESP[:18] and s.prompt_ids == (1, 2) and all(type(x) is int for x in s.prefix_ids)


def test_non_finite_scores_are_dropped(make_traj):
    vals = [float("nan")] * 20
    vals[5] = 0.5
    vals[7] = float("inf")
    out = make_scorer("critic", max_cuts=3, **LIMITS).candidates(make_traj(response=RESP, values=vals), 0)
    assert [len(s.prefix_ids) for s in out] == [5]
    ent = [float("nan")] * 20
    lp = [-0.1] * 20
    lp[1] = float("-inf")
    (s,) = make_scorer("reward", cut_every=8, max_cuts=1, **LIMITS).candidates(
        make_traj(response=RESP, values=[float("nan")] * 20, entropies=ent, logprobs=lp), 0)
    assert (s.cut_value, s.cut_entropy, s.prefix_logprobs) == (None, None, None)  # the buffer file stores no NaN


def test_which_scorers_agree_is_read_from_the_scorer_classes():
    from openrlhf_rrl.core.scoring import SCORER_NAMES, make_scorer, scorer_agrees

    assert [n for n in SCORER_NAMES if scorer_agrees(n)] == ["agree"]
    assert all(scorer_agrees(n) == make_scorer(n).verifies_by_agreement for n in SCORER_NAMES)
    assert not scorer_agrees("file:my_scorer.py") and not scorer_agrees(None)
