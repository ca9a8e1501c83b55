"""The review file: parsing, applying each action, and applying every line exactly once."""

import json
import os

import pytest

from openrlhf_rrl.core.buffer import ReplayBuffer
from openrlhf_rrl.core.review import (append_review_lines, apply_review_file, default_review_path,
                                      format_review_line, parse_review_line)


def filled(make_state, n=4):
    buf = ReplayBuffer(capacity=16)
    states = [make_state(f"p{i}", (i + 1,), float(i)) for i in range(n)]
    for s in states:
        buf.add(s)
    return buf, states


def line(key, action, **kw):
    return json.dumps({"key": key, "action": action, **kw}) + "\n"


def test_parse_accepts_actions_comments_and_blank_lines():
    k = "a" * 40
    assert parse_review_line("  # a comment") is None and parse_review_line("   ") is None
    a = parse_review_line(json.dumps({"key": k, "action": "ban", "note": "leaks the answer", "by": "ana"}))
    assert (a.key, a.action, a.note) == (k, "ban", "leaks the answer")


@pytest.mark.parametrize("text, why", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"key": "' + "a" * 40 + '", "action": "pinn"}', "action: expected pin, unpin or ban"),
    ('{"key": "abc", "action": "pin"}', "key: expected a 40-character hex entry key"),
    ('{"key": "' + "a" * 40 + '", "acton": "pin"}', "unknown field 'acton'"),
    ('{"key": "' + "a" * 40 + '", "action": "pin", "note": 5}', "note: expected a string"),
])
def test_parse_rejects_bad_lines_saying_why(text, why):
    with pytest.raises(ValueError, match=why):
        parse_review_line(text)


def test_pin_unpin_ban_act_on_the_buffer(make_state, tmp_path):
    buf, (a, b, c, d) = filled(make_state)
    path = tmp_path / "review.jsonl"
    path.write_text(line(a.key, "pin") + line(b.key, "pin") + line(b.key, "unpin") + line(c.key, "ban"))
    report = apply_review_file(buf, path)
    assert [(n, act) for n, act, _, _ in report.applied] == [(1, "pin"), (2, "pin"), (3, "unpin"), (4, "ban")]
    assert buf.get(a.key).pinned and not buf.get(b.key).pinned
    assert c.key not in buf and buf.is_retired(c.key) == "banned"
    assert not buf.add(make_state("p2", (3,), 9.0))  # a banned entry never comes back
    assert report.errors == [] and "applied 1 ban, 2 pin, 1 unpin" in report.summary()


def test_ban_of_a_key_not_in_the_buffer_is_remembered(make_state, tmp_path):
    buf, _ = filled(make_state)
    later = make_state("later", (7,), 1.0)
    path = tmp_path / "review.jsonl"
    path.write_text(line(later.key, "ban") + line(later.key, "pin"))
    report = apply_review_file(buf, path)
    assert "not in the buffer now" in report.applied[0][3]
    assert "a ban is final" in report.applied[1][3]
    assert not buf.add(later) and buf.is_retired(later.key) == "banned"


def test_bans_outlive_the_trimmed_memory_of_solved_and_dead_keys(make_state):
    buf = ReplayBuffer(capacity=4)
    banned = make_state("x", (1,))
    buf.add(banned)
    buf.ban(banned.key)
    for i in range(buf.max_remembered + 10):  # far more solved retirements than the memory keeps
        s = make_state(f"s{i}", (1,))
        buf.add(s)
        buf.record_restart(s.key, [1.0], step=i)
    assert buf.is_retired(banned.key) == "banned" and not buf.add(make_state("x", (1,)))
    copy = ReplayBuffer(capacity=4)
    copy.load_state_dict(buf.state_dict())
    assert copy.is_retired(banned.key) == "banned" and copy.state_dict() == buf.state_dict()


def test_each_line_applies_once_and_appended_lines_apply_next_time(make_state, tmp_path):
    buf, (a, b, c, _) = filled(make_state)
    path = tmp_path / "review.jsonl"
    append_review_lines(path, [format_review_line(a.key, "pin")])
    assert len(apply_review_file(buf, path).applied) == 1
    assert apply_review_file(buf, path).applied == []  # nothing new: nothing applied again
    buf.pin(a.key, False)  # had line 1 been applied again, `a` would be pinned again
    append_review_lines(path, [format_review_line(b.key, "ban"), format_review_line(c.key, "pin")])
    report = apply_review_file(buf, path)
    assert [(n, act) for n, act, _, _ in report.applied] == [(2, "ban"), (3, "pin")]
    assert not buf.get(a.key).pinned and b.key not in buf and buf.get(c.key).pinned


def test_a_rewritten_file_is_applied_again_from_the_top(make_state, tmp_path):
    buf, (a, b, _, _) = filled(make_state)
    path = tmp_path / "review.jsonl"
    path.write_text(line(a.key, "pin"))
    apply_review_file(buf, path)
    path.write_text("# edited by hand\n" + line(b.key, "pin"))
    report = apply_review_file(buf, path)
    assert report.reapplied_from_top and [(n, k) for n, _, k, _ in report.applied] == [(2, b.key)]
    assert buf.get(a.key).pinned and buf.get(b.key).pinned  # actions set states: applying again is harmless


def test_last_line_without_newline(make_state, tmp_path):
    buf, (a, b, c, _) = filled(make_state)
    path = tmp_path / "review.jsonl"
    full = line(a.key, "pin")
    path.write_text(full + line(b.key, "pin")[:30])  # someone is still typing line 2
    report = apply_review_file(buf, path)
    assert len(report.applied) == 1 and report.pending_line == 2 and report.errors == []
    path.write_text(full + line(b.key, "pin").rstrip("\n"))  # finished, but an editor left no newline
    report = apply_review_file(buf, path)
    assert [(n, k) for n, _, k, _ in report.applied] == [(2, b.key)]
    append_review_lines(path, [format_review_line(c.key, "ban")])  # adds the newline, then line 3
    report = apply_review_file(buf, path)
    assert [(n, k) for n, _, k, _ in report.applied] == [(3, c.key)] and not report.reapplied_from_top


def test_missing_file_is_a_no_op_and_append_creates_it(make_state, tmp_path):
    buf, (a, _, _, _) = filled(make_state)
    path = tmp_path / "sub" / "review.jsonl"
    report = apply_review_file(buf, path)
    assert not report.changed and buf.review_marks == {}
    note = format_review_line(a.key, "pin", note="good start", by="ana", at="2026-11-26T00:00:00Z")
    append_review_lines(path, [note])
    assert json.loads(path.read_text())["note"] == "good start"
    assert sorted(os.listdir(path.parent)) == [".review.jsonl.lock", "review.jsonl"]  # no temp file left


def test_format_refuses_what_would_not_parse():
    with pytest.raises(ValueError, match="action"):
        format_review_line("a" * 40, "delete")


def test_default_review_path_sits_beside_the_buffer(tmp_path):
    assert default_review_path(tmp_path / "ckpt" / "rrl_buffer.jsonl") == str(tmp_path / "ckpt" / "rrl_review.jsonl")
