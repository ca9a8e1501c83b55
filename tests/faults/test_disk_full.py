"""A full disk (ENOSPC) while writing any file RRL writes: the buffer checkpoint, a review file, an
rrl-inspect export. The old file survives byte for byte and no temp file is left behind.

tests/core/test_buffer.py (test_failed_save_leaves_previous_good_file_intact) covers a failing
encode and fsync in ReplayBuffer.save; here the disk itself fills up, part-way through a write or
at the rename.
"""

import errno
import os

import pytest

from openrlhf_rrl.atomic import atomic_write_text
from openrlhf_rrl.config import RRLConfig
from openrlhf_rrl.core.buffer import ReplayBuffer
from openrlhf_rrl.core.replay import RetrospectiveReplay
from openrlhf_rrl.core.review import append_review_lines, format_review_line
from openrlhf_rrl.inspect_cli import main as inspect_main


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def replay(make_state, n=20):
    rrl = RetrospectiveReplay(RRLConfig(enable=True))
    for i in range(n):
        rrl.buffer.add(make_state(f"p{i}", (5, i + 6), float(i)))
    return rrl


@pytest.mark.parametrize("left", [0, 200, 1500])  # full at once, after the header, mid-entries
def test_buffer_checkpoint_on_a_full_disk(make_state, tmp_path, full_disk, snapshot, left):
    rrl = replay(make_state)
    path = tmp_path / "rrl_buffer.jsonl"
    rrl.save(path)
    before = snapshot(tmp_path)
    rrl.buffer.add(make_state("new", (5,), 99.0))
    full_disk(tmp_path, left)
    with pytest.raises(OSError) as err:
        rrl.save(path)
    assert err.value.errno == errno.ENOSPC
    assert snapshot(tmp_path) == before  # the old checkpoint, byte for byte, and no temp file
    other = RetrospectiveReplay(RRLConfig(enable=True))
    other.load(path)
    assert len(other.buffer) == 20


def test_buffer_checkpoint_when_the_rename_fails(make_state, tmp_path, monkeypatch, snapshot):
    rrl = replay(make_state)
    path = tmp_path / "rrl_buffer.jsonl"
    rrl.save(path)
    before = snapshot(tmp_path)
    rrl.buffer.add(make_state("new", (5,), 99.0))
    monkeypatch.setattr(os, "replace", enospc)
    with pytest.raises(OSError, match="No space left"):
        rrl.buffer.save(path)
    monkeypatch.undo()
    assert snapshot(tmp_path) == before
    rrl.save(path)  # space again: the next checkpoint goes through
    assert len(ReplayBuffer.load(path)) == 21


def test_review_append_on_a_full_disk(make_state, tmp_path, full_disk, snapshot):
    review = tmp_path / "rrl_review.jsonl"
    key = make_state().key
    append_review_lines(review, [format_review_line(key, "pin")])
    before = snapshot(tmp_path)
    full_disk(tmp_path, 10)
    with pytest.raises(OSError):
        append_review_lines(review, [format_review_line(key, "ban")])
    assert snapshot(tmp_path) == before  # the reviewer's earlier lines are all still there


def test_inspect_export_on_a_full_disk(make_state, tmp_path, full_disk, capsys):
    buf = tmp_path / "rrl_buffer.jsonl"
    replay(make_state).save(buf)
    out = tmp_path / "out"
    out.mkdir()
    assert inspect_main([str(buf), "--html", str(out / "page.html"), "--jsonl", str(out / "rows.jsonl")]) == 0
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    full_disk(out, 100)
    assert inspect_main([str(buf), "--html", str(out / "page.html")]) == 2
    err = capsys.readouterr().err
    assert err == f"rrl-inspect: error: {out / 'page.html'}: cannot write (No space left on device)\n"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old


def test_atomic_write_on_a_full_disk(tmp_path, full_disk, snapshot):
    """The helper behind the trainer's checkpoint and metrics rewrite and every rrl-inspect export."""
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")
    full_disk(tmp_path, 3)
    with pytest.raises(OSError):
        atomic_write_text(path, "new and longer")
    assert snapshot(tmp_path) == {"f.txt": b"old"}
