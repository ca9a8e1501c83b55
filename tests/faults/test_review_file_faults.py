"""A pin/ban file with bad lines, seen by a running training (RetrospectiveReplay.plan) and by a resume.

Bad lines are reported one each, naming the file and the line number, and the rest still applies;
nothing is applied twice, and a run resumed from an older checkpoint re-applies exactly what came
after that checkpoint (the applied mark is saved with the buffer it changed).
"""

import json
import logging

import pytest

from openrlhf_rrl.config import RRLConfig
from openrlhf_rrl.core.planner import PromptRef
from openrlhf_rrl.core.replay import RetrospectiveReplay
from openrlhf_rrl.core.review import apply_review_file
from openrlhf_rrl.core.trajectory import Trajectory
from openrlhf_rrl.inspect_cli import main as inspect_main


def replay_with_entries(make_state, n=6):
    rrl = RetrospectiveReplay(RRLConfig(enable=True, replay_share=1.0, max_restarts_per_prompt=1))
    states = [make_state(f"p{i}", (5, 6 + i), float(i)) for i in range(n)]
    for s in states:
        assert rrl.buffer.add(s)
    return rrl, states


def prompts(n=8):
    return [PromptRef(f"fresh{i}", (1, i)) for i in range(n)]


def restarted(plans):
    return {p.entry_key for p in plans if p.is_restart}


def test_bad_lines_are_reported_by_number_and_the_rest_applies(make_state, tmp_path, caplog):
    rrl, (a, b, c, d, e, f) = replay_with_entries(make_state)
    rrl.save(tmp_path / "rrl_buffer.jsonl")
    review = tmp_path / "rrl_review.jsonl"
    lines = [
        "# reviewer: ana",
        json.dumps({"key": a.key, "action": "ban"}),
        "{this is not json",
        json.dumps({"key": b.key, "action": "pin"}),
        json.dumps({"key": c.key[:12], "action": "ban"}),  # a short key: only rrl-inspect resolves those
        json.dumps({"key": d.key, "action": "delete"}),
        "",
        json.dumps({"key": e.key, "action": "ban", "note": "prefix leaks the label"}),
    ]
    review.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe\n" + (json.dumps(
        {"key": f.key, "action": "pin"}) + "\n").encode())
    caplog.set_level(logging.INFO, logger="openrlhf_rrl")
    plans = rrl.plan(prompts(), step=1)
    report = rrl.last_review
    assert report.errors == [
        f"{review}:3: not valid JSON (expected {{\"key\": ..., \"action\": \"pin\"|\"unpin\"|\"ban\"}})",
        f"{review}:5: key: expected a 40-character hex entry key, got '{c.key[:12]}'",
        f"{review}:6: action: expected pin, unpin or ban, got 'delete'",
        f"{review}:9: not UTF-8 text",
    ]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == report.errors  # one log line per bad line
    assert [(n, act) for n, act, _, _ in report.applied] == [(2, "ban"), (4, "pin"), (8, "ban"), (10, "pin")]
    assert a.key not in rrl.buffer and e.key not in rrl.buffer
    assert rrl.buffer.get(b.key).pinned and rrl.buffer.get(f.key).pinned
    assert c.key in rrl.buffer and d.key in rrl.buffer  # their lines were bad: nothing happened to them
    assert not restarted(plans) & {a.key, e.key}  # banned at this step's start: not replayed this step
    groups = [[Trajectory(prompt_key=p.prompt.key, prompt_ids=p.prompt.prompt_ids, response_ids=p.prefix_ids + (9, 9),
                          reward=0.0, success=False)] for p in plans]
    assert rrl.observe(plans, groups, step=1)["rrl/retired_banned"] == 2  # the step's metrics count the bans


def test_a_banned_entry_is_never_replayed_again(make_state, tmp_path):
    rrl, states = replay_with_entries(make_state)
    rrl.save(tmp_path / "rrl_buffer.jsonl")
    target = states[-1]  # the highest score: the promise policy's favourite
    assert inspect_main(["ban", target.key[:8], "--buffer", str(tmp_path / "rrl_buffer.jsonl")]) == 0
    for step in range(1, 30):
        plans = rrl.plan(prompts(), step)
        assert target.key not in restarted(plans)
        # the same state found again by a scorer is refused
        assert not rrl.buffer.add(make_state(target.prompt_key, target.prefix_ids, 100.0))
    assert rrl.buffer.retired_counts["banned"] == 1


def test_nothing_is_applied_twice_and_a_resume_reapplies_what_came_after_its_checkpoint(make_state, tmp_path):
    rrl, (a, b, c, *_) = replay_with_entries(make_state)
    ckpt = tmp_path / "rrl_buffer.jsonl"
    review = tmp_path / "rrl_review.jsonl"
    review.write_text(json.dumps({"key": a.key, "action": "pin"}) + "\n")
    rrl.save(ckpt)  # the review path is now known: beside the buffer file
    rrl.plan(prompts(), 1)
    assert rrl.buffer.get(a.key).pinned
    rrl.save(ckpt)  # checkpoint: line 1 applied
    rrl.buffer.pin(a.key, False)  # were line 1 applied again, `a` would be pinned again
    with open(review, "a") as fh:
        fh.write(json.dumps({"key": b.key, "action": "ban"}) + "\n")
        fh.write(json.dumps({"key": c.key, "action": "pin"}) + "\n")
    rrl.plan(prompts(), 2)
    assert [n for n, *_ in rrl.last_review.applied] == [2, 3]
    assert not rrl.buffer.get(a.key).pinned and b.key not in rrl.buffer and rrl.buffer.get(c.key).pinned
    rrl.plan(prompts(), 3)
    assert rrl.last_review.applied == []

    # the run dies; it resumes from the checkpoint, which predates lines 2 and 3
    resumed = RetrospectiveReplay(RRLConfig(enable=True, replay_share=1.0))
    resumed.load(ckpt)
    assert b.key in resumed.buffer
    plans = resumed.plan(prompts(), 2)
    assert [n for n, *_ in resumed.last_review.applied] == [2, 3]
    assert b.key not in resumed.buffer and b.key not in restarted(plans) and resumed.buffer.get(c.key).pinned
    assert resumed.buffer.get(a.key).pinned  # line 1 was applied in that checkpoint and is not applied again


def test_inspect_refuses_bad_pin_requests_and_writes_nothing(make_state, tmp_path, capsys):
    rrl, (a, *_) = replay_with_entries(make_state)
    buf = tmp_path / "rrl_buffer.jsonl"
    rrl.save(buf)
    review = tmp_path / "rrl_review.jsonl"
    review.write_text("# start\n")
    cases = [
        (["pin", a.key[:8], "nothere1", "--buffer", str(buf)], "nothere1: expected a hex key"),
        (["pin", "abcdef", "--buffer", str(buf)], "abcdef: no entries of"),
        (["ban", a.key[:8]], "--buffer: give the buffer file"),
        (["ban", a.key[:8], "--review", str(review)], "not a full 40-character key"),
        (["pin", a.key[:8], "--buffer", str(tmp_path / "missing.jsonl")], "no such buffer file"),
    ]
    for argv, why in cases:
        assert inspect_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("rrl-inspect: error: ") and why in err and err.count("\n") == 1, (argv, err)
    assert review.read_text() == "# start\n"  # all or nothing: a bad key anywhere writes no line


@pytest.mark.parametrize("content, errors", [(b"", 0), (b"\x00\x00\n[]\n\n[]\n", 3)])
def test_a_bad_review_file_never_stops_training(make_state, tmp_path, content, errors):
    rrl, _ = replay_with_entries(make_state)
    rrl.save(tmp_path / "rrl_buffer.jsonl")
    (tmp_path / "rrl_review.jsonl").write_bytes(content)
    plans = rrl.plan(prompts(), 1)  # no exception, and the step goes on
    assert len(rrl.last_review.errors) == errors and restarted(plans)


def test_an_unreadable_review_file_is_one_error_line(make_state, tmp_path):
    rrl, _ = replay_with_entries(make_state)
    (tmp_path / "rrl_review.jsonl").mkdir()  # a folder where the file belongs
    report = apply_review_file(rrl.buffer, tmp_path / "rrl_review.jsonl")
    assert len(report.errors) == 1 and report.errors[0].startswith(f"{tmp_path / 'rrl_review.jsonl'}: cannot read")
