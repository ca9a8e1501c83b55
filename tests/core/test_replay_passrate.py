"""RetrospectiveReplay with the passrate policy (Prefix Sampling, both ways), cut control, eviction of
never-tried entries and a step checker from a file. Outcomes are scripted; no model."""

import pytest

from openrlhf_rrl.config import RRLConfig
from openrlhf_rrl.core.errors import RRLConfigError
from openrlhf_rrl.core.planner import PromptRef
from openrlhf_rrl.core.replay import RetrospectiveReplay
from openrlhf_rrl.core.trajectory import Trajectory

A = PromptRef("A", (1, 1), label="a")
B = PromptRef("B", (2, 2), label="b")
N = 20  # response length; every response ends with EOS, so cuts go up to 18


def resp(tag, n=N):
    return tuple(1000 * tag + i for i in range(n))


def group(plan, outcomes, tag=0, verified=None):
    out = []
    for j, ok in enumerate(outcomes):
        prefix = tuple(plan.prefix_ids)
        out.append(Trajectory(prompt_key=plan.prompt.key, prompt_ids=plan.prompt.prompt_ids,
                              response_ids=prefix + resp(tag * 10 + j, N - len(prefix)), reward=1.0 if ok else 0.0,
                              success=ok, label=plan.prompt.label, prefix_len=len(prefix),
                              verified_tokens=None if verified is None else verified[j]))
    return out


def config(**kw):
    base = dict(enable=True, replay_share=1.0, scorer="reward", policy="passrate", cut_every=5,
                min_prefix_frac=0.0, max_prefix_frac=1.0, admit_per_step=1, seed=0)
    base.update(kw)
    return RRLConfig(**base)


def step(rrl, prompts, outcomes, s, tag=0, verified=None):
    plans = rrl.plan(prompts, s)
    return plans, rrl.observe(plans, [group(p, outcomes, tag + i, verified) for i, p in enumerate(plans)], s)


def only(rrl):
    (e,) = list(rrl.buffer.entries())
    return e


def test_head_starts_come_only_from_successful_or_verified_prefixes():
    rrl = RetrospectiveReplay(config(admit_per_step=10))
    _, m = step(rrl, [A], [True, False, False, False], 0, tag=1)
    # the successful response gives cuts 5, 10, 15; the unverified failures give none
    assert m["rrl/candidates"] == 3 and m["rrl/admitted"] == 3
    assert {e.prefix_ids[0] // 1000 for e in rrl.buffer.entries()} == {10}
    for e in rrl.buffer.entries():
        assert not e.handicap and len(e.prefix_ids) + len(e.source_ids) == 18  # room up to the last allowed cut
    # with a step checker (any scorer) failed responses give their verified part, and only that
    rrl = RetrospectiveReplay(config(admit_per_step=10), step_checker=lambda p, r, label: 10)
    _, m = step(rrl, [A], [False, False], 0, tag=1)
    assert m["rrl/candidates"] == 4  # cuts 5 and 10 of each response; 15 is beyond the verified part
    assert sorted(len(e.prefix_ids) for e in rrl.buffer.entries()) == [5, 10]  # near-identical depths deduped
    assert all(len(e.prefix_ids) + len(e.source_ids) == 10 for e in rrl.buffer.entries())


def test_head_start_cut_moves_later_after_all_fail_and_earlier_after_all_pass():
    rrl = RetrospectiveReplay(config())
    step(rrl, [A], [True, False, False, False], 0, tag=1)
    e0 = only(rrl)
    assert len(e0.prefix_ids) == 15  # the deepest cut of the successful response ranks first
    plans, m = step(rrl, [A], [False] * 4, 1, tag=2)
    assert plans[0].entry_key == e0.key and m["rrl/informative_restart_groups"] == 0.0
    e1 = only(rrl)
    assert m["rrl/cuts_moved_later"] == 1 and m["rrl/cuts_moved_earlier"] == 0
    assert len(e1.prefix_ids) == 18 and e1.prefix_ids[:15] == e0.prefix_ids and e1.source_ids == ()
    assert (e1.restarts, e1.continuations, e1.successes, e1.last_seen) == (0, 0, 0, 1)  # posterior reset
    plans, m = step(rrl, [A], [True] * 4, 2, tag=3)
    e2 = only(rrl)
    assert m["rrl/cuts_moved_earlier"] == 1 and m["rrl/retired_solved"] == 0
    assert len(e2.prefix_ids) == 13 and rrl.buffer.is_retired(e1.key) == "solved"
    # a mixed group leaves the cut where it is and counts as informative
    plans, m = step(rrl, [A], [True, False, True, False], 3, tag=4)
    e3 = only(rrl)
    assert e3.key == e2.key and (e3.restarts, e3.mixed_groups) == (1, 1)
    assert m["rrl/cuts_moved_later"] == m["rrl/cuts_moved_earlier"] == 0
    assert m["rrl/informative_restart_groups"] == 1.0


def test_handicaps_for_mostly_passing_prompts_move_the_other_way():
    rrl = RetrospectiveReplay(config())
    _, m = step(rrl, [B], [True, True, True, False], 0, tag=1)  # 3/4 passes: a handicap from the failure
    h = only(rrl)
    assert m["rrl/candidates"] == 1 and h.handicap and h.score == 0.75
    assert h.prefix_ids == resp(13)[:10] and h.source_ids == resp(13)[10:18]  # the middle grid cut
    assert rrl.buffer.prompt_entries("B")  # not retired by B's own fresh success: that is what it is for
    plans, m = step(rrl, [B], [True] * 4, 1, tag=2)  # still too easy: a longer failed prefix
    assert plans[0].entry_key == h.key and m["rrl/cuts_moved_later"] == 1
    h1 = only(rrl)
    assert len(h1.prefix_ids) == 15 and h1.handicap
    plans, m = step(rrl, [B], [False] * 4, 2, tag=3)  # too hard now, but cut 10 was solved 4/4: it stays
    h2 = only(rrl)
    assert m["rrl/cuts_moved_earlier"] == 0 and h2.key == h1.key and h2.restarts == 1


def test_direction_follows_the_prompts_fresh_rate():
    rrl = RetrospectiveReplay(config())
    step(rrl, [A], [True, False, False, False], 0, tag=1)
    step(rrl, [A, B], [True, True, True, True], 1, tag=2)  # A now solved fresh at 1.0 -> its head start retires
    assert not rrl.buffer.prompt_entries("A")
    rrl = RetrospectiveReplay(config(retire_solved_rate=1.0))
    step(rrl, [A], [True, False, False, False], 0, tag=1)
    plans = rrl.plan([B], 1)
    rrl.observe(plans, [group(plans[0], [True, False] * 2, 2)], 1)  # restart runs: A is still hard
    rrl.fresh_rates["A"] = 0.5  # at the target, A needs no head start: no restart is planned
    assert not any(p.is_restart for p in rrl.plan([B], 2))


def test_without_cut_control_all_pass_still_retires_and_other_policies_keep_the_old_rules():
    rrl = RetrospectiveReplay(config(cut_control="off"))
    step(rrl, [A], [True, False, False, False], 0, tag=1)
    _, m = step(rrl, [A], [True] * 4, 1, tag=2)
    assert m["rrl/retired_solved"] == 1 and len(rrl.buffer) == 0
    rrl = RetrospectiveReplay(config(policy="promise", admit_per_step=10))
    assert not rrl.cut_control and not rrl.both_ways
    _, m = step(rrl, [B], [True, True, True, False], 0)
    assert m["rrl/candidates"] == 0  # no handicaps outside passrate
    _, m = step(rrl, [A], [False] * 2, 1, tag=1)
    assert m["rrl/admitted"] == 3 and all(e.source_ids == () for e in rrl.buffer.entries())  # no source stored


def test_cut_control_with_another_policy_and_a_source_that_cannot_move():
    rrl = RetrospectiveReplay(config(policy="uncertainty", cut_control="on", retire_dead_after=8))
    step(rrl, [A], [False] * 4, 0, tag=1)  # an unverified failure: admitted, but no correct tokens to move into
    e = only(rrl)
    assert not e.handicap and e.source_ids == ()
    _, m = step(rrl, [A], [False] * 4, 1, tag=2)
    assert m["rrl/cuts_moved_later"] == 0 and only(rrl).restarts == 1
    _, m = step(rrl, [A], [False] * 4, 2, tag=3)
    assert m["rrl/retired_dead"] == 1  # the usual rule applies when the cut cannot move


def test_untried_entries_retire_after_the_ttl():
    rrl = RetrospectiveReplay(config(start_step=100, untried_ttl=2, admit_per_step=2))
    _, m = step(rrl, [A], [True, False, False], 0, tag=1)
    assert m["rrl/admitted"] == 2 and m["rrl/restart_groups"] == 0
    for s in (1, 2):
        _, m = step(rrl, [B], [True, True], s, tag=1 + s)
        assert m["rrl/retired_untried"] == 0 and m["rrl/untried"] == 2
    _, m = step(rrl, [B], [True, True], 3, tag=5)
    assert m["rrl/retired_untried"] == 2 and m["rrl/buffer_size"] == 0
    rrl = RetrospectiveReplay(config(start_step=100, untried_ttl=0))
    step(rrl, [A], [True, False, False], 0, tag=1)
    _, m = step(rrl, [B], [True, True], 500, tag=2)
    assert m["rrl/retired_untried"] == 0 and m["rrl/buffer_size"] == 1


def test_step_checker_from_a_file_is_used_when_none_is_passed_in_code(tmp_path):
    f = tmp_path / "check.py"
    f.write_text("def step_checker(prompt_ids, response_ids, label):\n"
                 "    assert isinstance(prompt_ids, list) and label == 'a'\n"
                 "    return 9, 3\n")
    rrl = RetrospectiveReplay(config(scorer="checker", policy="promise", step_checker=str(f)))
    step(rrl, [A], [False], 0, tag=1)
    e = only(rrl)
    assert len(e.prefix_ids) == 9 and e.verified_steps == 3
    rrl = RetrospectiveReplay(config(scorer="checker", policy="promise", step_checker=str(f)),
                              step_checker=lambda p, r, label: 12)
    step(rrl, [A], [False], 0, tag=1)
    assert len(only(rrl).prefix_ids) == 12  # the checker passed in code wins


@pytest.mark.parametrize("text,message", [
    ("x = 1\n", r"^--rrl_step_checker: .*check.py defines no step_checker\(prompt_ids, response_ids, label\)$"),
    ("def step_checker(:\n", r"^--rrl_step_checker: cannot load .*check.py: SyntaxError"),
    ("raise RuntimeError('no GPU')\n", r"^--rrl_step_checker: cannot load .*check.py: RuntimeError: no GPU$"),
])
def test_a_bad_step_checker_file_is_one_line_naming_the_flag(tmp_path, text, message):
    f = tmp_path / "check.py"
    f.write_text(text)
    with pytest.raises(RRLConfigError, match=message) as err:
        RetrospectiveReplay(config(step_checker=str(f)))
    assert "\n" not in str(err.value)


def test_a_step_checker_returning_nonsense_is_named(tmp_path):
    f = tmp_path / "check.py"
    f.write_text("def step_checker(prompt_ids, response_ids, label):\n    return 'all of it'\n")
    rrl = RetrospectiveReplay(config(scorer="checker", step_checker=str(f)))
    plans = rrl.plan([A], 0)
    with pytest.raises(RRLConfigError, match=r"^--rrl_step_checker: .*check.py: step_checker returned 'all of it'"):
        rrl.observe(plans, [group(plans[0], [False], 1)], 0)
    nofile = tmp_path / "gone.py"
    with pytest.raises(RRLConfigError, match="^--rrl_step_checker: step checker file not found"):
        RetrospectiveReplay(config(step_checker=str(nofile)))


def test_cut_state_survives_save_and_load(tmp_path):
    rrl = RetrospectiveReplay(config())
    step(rrl, [B], [True, True, True, False], 0, tag=1)
    step(rrl, [B], [True] * 4, 1, tag=2)
    path = tmp_path / "rrl.jsonl"
    rrl.save(path)
    other = RetrospectiveReplay(config())
    other.load(path)
    assert other.state_dict() == rrl.state_dict()
    assert only(other).handicap and only(other).source_ids == only(rrl).source_ids
