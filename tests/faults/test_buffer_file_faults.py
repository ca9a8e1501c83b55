"""Damaged buffer files, seen by everything that reads one: the training's resume and rrl-inspect.

ReplayBuffer.load / load_into on truncated, corrupted, wrong-version, foreign and empty files is
covered in tests/core/test_buffer.py (test_bad_files_raise_one_line_errors_naming_the_file_and_stay_untouched);
here the same kinds of damage, plus a few more, go through RetrospectiveReplay.load (a resumed run)
and the rrl-inspect CLI. In every case: one line naming the file, the file untouched, nothing changed.
"""

import pytest

from openrlhf_rrl.config import RRLConfig
from openrlhf_rrl.core.buffer import ReplayBuffer
from openrlhf_rrl.core.errors import BufferFileError
from openrlhf_rrl.core.replay import RetrospectiveReplay
from openrlhf_rrl.inspect_cli import main as inspect_main


def saved_replay(make_state, path):
    rrl = RetrospectiveReplay(RRLConfig(enable=True))
    for i in range(5):
        rrl.buffer.add(make_state(f"p{i}", (5, i + 6), float(i)))
    rrl.last_step = 7
    rrl.save(path)
    return rrl


def damaged(lines):
    header, body, end = lines[0], lines[1:-1], lines[-1]
    yield "truncated: end marker lost", (lines[:-1], "truncated buffer file")
    yield "truncated mid-line", (lines[:2] + [lines[2][:17]], "truncated or corrupted")
    overwritten = [header, body[0], "\x00\x00\x00garbage"] + body[2:] + [end]
    yield "a line overwritten", (overwritten, "line 3 is not valid JSON")
    yield "an entry lost", ([header] + body[1:] + [end], "end marker says 5 entries, found 4")
    yield "wrong version", ([header.replace('"version":1', '"version":99')] + lines[1:], "version 99")
    yield "bad field in an entry", ([header, body[0].replace('"score":0.0', '"score":"high"')] + body[1:] + [end],
                                    "score: expected a finite number")
    yield "header only", ([header], "no end marker")
    yield "not a buffer file", (['{"step": 3}'] + lines[1:], "not an openrlhf-rrl-buffer file")


def write_damaged(case, make_state, tmp_path):
    """A good buffer file damaged as `case` says: (path, its bytes, the expected reason)."""
    good = tmp_path / "good.jsonl"
    saved_replay(make_state, good)
    bad_lines, why = dict(damaged(good.read_text().splitlines()))[case]
    bad = tmp_path / "bad.jsonl"
    data = ("\n".join(bad_lines) + "\n").encode()
    bad.write_bytes(data)
    return bad, data, why


@pytest.mark.parametrize("case", [c for c, _ in damaged(["h", "a", "b", "e"])])
def test_damaged_file_resume_fails_cleanly(case, make_state, tmp_path):
    bad, data, why = write_damaged(case, make_state, tmp_path)

    rrl = RetrospectiveReplay(RRLConfig(enable=True))
    rrl.buffer.add(make_state("mine", (5,)))
    before = rrl.state_dict()
    with pytest.raises(BufferFileError) as err:
        rrl.load(bad)
    msg = str(err.value)
    assert msg.startswith(f"{bad}: ") and why in msg and "\n" not in msg
    assert rrl.state_dict() == before and rrl.review_path is None  # nothing changed, not even where reviews go
    assert bad.read_bytes() == data  # the file is left as it is, for a person to look at


@pytest.mark.parametrize("case", [c for c, _ in damaged(["h", "a", "b", "e"])])
def test_damaged_file_inspect_says_one_line_and_exits_2(case, make_state, tmp_path, capsys):
    bad, data, why = write_damaged(case, make_state, tmp_path)
    out_html = tmp_path / "page.html"
    assert inspect_main([str(bad), "--html", str(out_html)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rrl-inspect: error: {bad}: ") and why in err and err.count("\n") == 1
    assert bad.read_bytes() == data and not out_html.exists()


def test_not_utf8_and_not_a_file(make_state, tmp_path, capsys):
    bad = tmp_path / "binary.jsonl"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BufferFileError, match=f"^{bad}: cannot read buffer file"):
        ReplayBuffer.load(bad)
    assert inspect_main([str(tmp_path)]) == 2  # a folder where a file belongs
    assert capsys.readouterr().err.startswith(f"rrl-inspect: error: {tmp_path}: cannot read buffer file")


def test_windows_line_endings_lose_nothing(make_state, tmp_path):
    good = tmp_path / "good.jsonl"
    rrl = saved_replay(make_state, good)
    crlf = tmp_path / "crlf.jsonl"
    crlf.write_bytes(good.read_bytes().replace(b"\n", b"\r\n"))  # copied through a tool that converts
    other = RetrospectiveReplay(RRLConfig(enable=True))
    other.load(crlf)
    assert other.state_dict() == rrl.state_dict()
