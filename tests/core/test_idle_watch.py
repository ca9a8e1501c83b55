"""Replay switched on but doing nothing is said in the log, with the reason, and counted (rrl/idle_steps)."""

import logging

from openrlhf_rrl.config import RRLConfig
from openrlhf_rrl.core.planner import PromptRef
from openrlhf_rrl.core.replay import RetrospectiveReplay
from openrlhf_rrl.core.trajectory import Trajectory

HARD, EASY = PromptRef("H", (1, 1), label="h"), PromptRef("E", (2, 2), label="e")


def rollouts(plan, outcomes, n_tokens=9, verified=None):
    return [Trajectory(prompt_key=plan.prompt.key, prompt_ids=plan.prompt.prompt_ids,
                       response_ids=tuple(100 * j + i for i in range(n_tokens)), reward=1.0 if ok else 0.0,
                       success=ok, label=plan.prompt.label, verified_tokens=verified)
            for j, ok in enumerate(outcomes)]


def run(rrl, steps, outcomes_of, caplog, **kw):
    """`steps` steps over [HARD, EASY]; returns each step's rrl/idle_steps and the warnings logged."""
    idle = []
    with caplog.at_level(logging.WARNING, logger="openrlhf_rrl.core.replay"):
        for step in range(steps):
            plans = rrl.plan([HARD, EASY], step)
            groups = [rollouts(p, outcomes_of(p), **kw) for p in plans]
            idle.append(rrl.observe(plans, groups, step)["rrl/idle_steps"])
    return idle, [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def solved_only_by_easy(plan):
    return [plan.prompt.key == "E"] * 4


def test_no_hard_prompt_is_named_after_the_set_number_of_idle_steps(caplog):
    rrl = RetrospectiveReplay(RRLConfig(enable=True, idle_warn_steps=3, hard_threshold=0.5))
    idle, warnings = run(rrl, 7, lambda p: [True, True, True, False], caplog)
    assert idle == [1, 2, 3, 4, 5, 6, 7]
    assert warnings == [
        f"step {s}: RRL is on but idle: no state admitted and no restart run for {n} steps in a row; no prompt was "
        "hard: every fresh group's success rate was at least --rrl_hard_threshold 0.5, so nothing was mined (raise "
        "it, or train on harder prompts)" for s, n in ((2, 3), (5, 6))]


def test_a_checker_that_verifies_nothing_is_named(caplog):
    rrl = RetrospectiveReplay(RRLConfig(enable=True, idle_warn_steps=2, scorer="checker"),
                              step_checker=lambda prompt_ids, response_ids, label: 0)
    idle, warnings = run(rrl, 2, solved_only_by_easy, caplog)
    assert idle == [1, 2] and len(warnings) == 1
    assert ("the checker scorer found no cut point in 8 rollouts of hard prompts: the step checker verified no "
            "leading part of any failed rollout (--rrl_step_checker none given); responses average 9.0 tokens")\
        in warnings[0]


def test_agree_without_a_success_to_agree_with_is_named(caplog):
    rrl = RetrospectiveReplay(RRLConfig(enable=True, idle_warn_steps=2, scorer="agree", retry_unsolved="off"))
    idle, warnings = run(rrl, 2, solved_only_by_easy, caplog)
    assert idle == [1, 2] and len(warnings) == 1
    assert ("the agree scorer found no cut point in 8 rollouts of hard prompts: none of the hard groups had a "
            "success to agree with") in warnings[0] and "--rrl_retry_unsolved" in warnings[0]
    # by default (retries with agree and hot restarts) the unsolved hard prompt is kept and sampled again
    caplog.clear()
    hot = RRLConfig(enable=True, idle_warn_steps=2, scorer="agree", restart_temperature=2.0)
    idle, warnings = run(RetrospectiveReplay(hot), 3, solved_only_by_easy, caplog)
    assert idle == [0, 0, 0] and warnings == []


def test_every_candidate_refused_at_admission_is_named(caplog):
    rrl = RetrospectiveReplay(RRLConfig(enable=True, idle_warn_steps=2, buffer_capacity=0, scorer="reward"))
    _, warnings = run(rrl, 2, solved_only_by_easy, caplog)
    assert len(warnings) == 1
    # 4 rollouts x 4 cuts x 2 steps; per rollout the cuts of a 9-token response are near-duplicate depths
    assert warnings[0].endswith("none of the 32 candidates was admitted: of the 4 that reached the buffer, 0 were "
                                "invalid (longer than --rrl_max_prefix_tokens none, holding EOS, or empty), 0 retired, "
                                "solved or banned before, 4 ranked below a full buffer (--rrl_buffer_capacity 0, "
                                "--rrl_per_prompt_capacity 8); the others were near-duplicate depths of one prompt")


def test_entries_that_no_restart_slot_reaches_are_named_and_admission_resets_the_count(caplog):
    # restarts only from step 100: step 0 admits (not idle), later steps find the prompt again but the
    # per-prompt cap of 1 entry rejects new cuts, and no restart runs
    rrl = RetrospectiveReplay(RRLConfig(enable=True, idle_warn_steps=2, start_step=100, per_prompt_capacity=1,
                                        admit_per_step=1, scorer="reward"))
    idle, warnings = run(rrl, 3, solved_only_by_easy, caplog)
    assert idle[0] == 0 and idle[1:] == [1, 2]
    assert warnings and warnings[-1].endswith("the buffer holds 1 entries but no restart slot reached them (target "
                                              "share 0.00: see --rrl_replay_share, --rrl_share_schedule, "
                                              "--rrl_start_step 100)")


def test_a_working_run_stays_at_zero_and_0_turns_the_warning_off(caplog):
    rrl = RetrospectiveReplay(RRLConfig(enable=True, idle_warn_steps=1, scorer="reward"))
    idle, warnings = run(rrl, 4, solved_only_by_easy, caplog)
    assert idle == [0, 0, 0, 0] and warnings == []
    quiet = RetrospectiveReplay(RRLConfig(enable=True, idle_warn_steps=0))
    idle, warnings = run(quiet, 3, lambda p: [True] * 4, caplog)
    assert idle == [1, 2, 3] and warnings == []
