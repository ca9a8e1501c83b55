"""A person's say over the buffer: a review file of pin / unpin / ban actions that a running training
applies at its next step (RetrospectiveReplay.plan calls apply_review_file).

The file is JSON lines, one action per line, `#` comments and blank lines allowed:

    {"key": "<40-hex entry key>", "action": "pin"}      keep it, replay it more (priority x10)
    {"key": "...", "action": "unpin"}
    {"key": "...", "action": "ban", "note": "leaks the answer"}   never replay it again

Optional string fields "note", "by" and "at" say why, who and when; they are kept for the record.

Why it is applied the way it is:
- rrl-inspect only ever appends (write a temp copy + rename), so a reader sees the old or the new
  file, never half of it; a person editing by hand may leave an unfinished last line, which waits.
- Each action sets a state (pinned, unpinned, banned for good), so applying a file twice gives the
  same buffer as applying it once. What is applied is marked in the buffer (byte offset, line count
  and sha256 of the applied bytes), and the mark is saved with the buffer: a run resumed from an older
  checkpoint re-applies exactly the actions made after that checkpoint, and nothing is applied twice
  in one run. If the applied part of the file changed (rewritten by hand), the whole file is applied
  again from line 1, which is safe for the same reason.
- A bad line is reported by its line number, naming the file, and skipped; the rest still applies.
  Reading the file never raises: a broken review file must not stop a training.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Iterable

REVIEW_FILE_NAME = "rrl_review.jsonl"
ACTIONS = ("pin", "unpin", "ban")
_KEY = re.compile(r"^[0-9a-f]{40}$")
_FIELDS = {"key", "action", "note", "by", "at"}


def default_review_path(buffer_path: str | os.PathLike) -> str:
    """The review file of a buffer file: rrl_review.jsonl in the same folder (no flag to keep in sync)."""
    return os.path.join(os.path.dirname(os.path.abspath(os.fspath(buffer_path))), REVIEW_FILE_NAME)


@dataclass
class ReviewAction:
    line: int
    key: str
    action: str
    note: str | None = None


@dataclass
class ReviewReport:
    path: str
    applied: list = field(default_factory=list)  # (line, action, key, outcome)
    errors: list = field(default_factory=list)  # one line each: "<path>:<line>: <why>"
    pending_line: int | None = None  # an unfinished last line (no newline, not valid JSON yet): next time
    reapplied_from_top: bool = False  # the applied part of the file changed: applied again from line 1

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.errors)

    def summary(self) -> str:
        kinds = {}
        for _, action, _, _ in self.applied:
            kinds[action] = kinds.get(action, 0) + 1
        done = ", ".join(f"{n} {a}" for a, n in sorted(kinds.items())) or "no action"
        extra = f", {len(self.errors)} bad line(s) skipped" if self.errors else ""
        again = " (file changed: re-applied from line 1)" if self.reapplied_from_top else ""
        return f"{self.path}: applied {done}{extra}{again}"


def parse_review_line(text: str) -> ReviewAction | None:
    """One line of a review file -> an action, None for a blank or comment line; ValueError saying why."""
    s = text.strip()
    if not s or s.startswith("#"):
        return None
    try:
        obj = json.loads(s)
    except json.JSONDecodeError:
        raise ValueError("not valid JSON (expected {\"key\": ..., \"action\": \"pin\"|\"unpin\"|\"ban\"})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (expected key, action, note, by, at)")
    key, action = obj.get("key"), obj.get("action")
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(f"key: expected a 40-character hex entry key, got {key!r:.60}")
    if action not in ACTIONS:
        raise ValueError(f"action: expected pin, unpin or ban, got {action!r:.30}")
    for name in ("note", "by", "at"):
        if name in obj and not isinstance(obj[name], str):
            raise ValueError(f"{name}: expected a string, got {obj[name]!r:.30}")
    return ReviewAction(line=0, key=key, action=action, note=obj.get("note"))


def apply_action(buffer, action: ReviewAction) -> str:
    """Apply one action; returns what happened, in words."""
    key = action.key
    if action.action == "ban":
        if buffer.is_retired(key) == "banned":
            return "already banned"
        return "banned" if buffer.ban(key) else "banned (not in the buffer now: refused if it is found again)"
    if buffer.is_retired(key) == "banned":
        return f"not {action.action}ned: banned earlier (a ban is final)"
    if key not in buffer:
        return f"not {action.action}ned: not in the buffer (retired or evicted)"
    buffer.pin(key, action.action == "pin")
    return f"{action.action}ned"


def apply_review_file(buffer, path: str | os.PathLike) -> ReviewReport:
    """Apply the actions of `path` not yet applied to `buffer`; never raises for a bad or missing file."""
    path = os.fspath(path)
    report = ReviewReport(path=path)
    mark_key = os.path.abspath(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return report
    except OSError as e:
        report.errors.append(f"{path}: cannot read review file ({e.strerror or e})")
        return report
    mark = buffer.review_marks.get(mark_key)
    offset, line_no = 0, 0
    if mark is not None:
        same = mark["offset"] <= len(data) and hashlib.sha256(data[:mark["offset"]]).hexdigest() == mark["sha256"]
        if same and mark.get("open") and mark["offset"] < len(data):
            # the last applied line had no newline yet: it may only have gained one since
            same = data[mark["offset"]:mark["offset"] + 1] == b"\n"
            offset = mark["offset"] + 1
        else:
            offset = mark["offset"]
        if same:
            line_no = mark["lines"]
        else:
            offset = 0
            report.reapplied_from_top = True
    pos, open_line = offset, False
    while pos < len(data):
        end = data.find(b"\n", pos)
        complete = end >= 0
        raw = data[pos:end] if complete else data[pos:]
        err, action = None, None
        try:
            action = parse_review_line(raw.decode("utf-8"))
        except UnicodeDecodeError:
            err = "not UTF-8 text"
        except ValueError as e:
            err = str(e)
        if not complete and err is not None:
            report.pending_line = line_no + 1  # probably still being written: try again next step
            break
        line_no += 1
        pos = end + 1 if complete else len(data)
        open_line = not complete
        if err is not None:
            report.errors.append(f"{path}:{line_no}: {err}")
        elif action is not None:
            action.line = line_no
            report.applied.append((line_no, action.action, action.key, apply_action(buffer, action)))
    new_mark = {"offset": pos, "lines": line_no, "sha256": hashlib.sha256(data[:pos]).hexdigest()}
    if open_line:
        new_mark["open"] = True
    buffer.review_marks[mark_key] = new_mark
    return report


def format_review_line(key: str, action: str, note: str | None = None, by: str | None = None,
                       at: str | None = None) -> str:
    """One review-file line; checks the key and action so a written file always parses."""
    obj = {"key": key, "action": action}
    for name, value in (("note", note), ("by", by), ("at", at)):
        if value is not None:
            obj[name] = value
    line = json.dumps(obj, ensure_ascii=False)
    parse_review_line(line)  # raises ValueError for a bad key or action
    return line + "\n"


def append_review_lines(path: str | os.PathLike, lines: Iterable[str]) -> None:
    """Append to a review file atomically: copy + new lines to a temp file, then rename over it.

    A reader (the training) sees the old or the new file, never half a line, and the bytes already
    there stay byte-identical, so the training's applied mark still matches. A lock file serialises
    two reviewers appending at once (where the OS has flock)."""
    path = os.fspath(path)
    text = "".join(lines)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    lock_fd = os.open(os.path.join(directory, "." + os.path.basename(path) + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl

            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: no lock, the rename is still atomic
            pass
        try:
            with open(path, "rb") as fh:
                old = fh.read()
        except FileNotFoundError:
            old = b""
        if old and not old.endswith(b"\n"):
            old += b"\n"  # a hand-written last line without newline stays a line of its own
        from ..atomic import atomic_write

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                fh.write(old)
                fh.write(text.encode("utf-8"))

        atomic_write(path, write)
    finally:
        os.close(lock_fd)
