"""What rrl-inspect shows of a buffer file: the saved entries as display rows (decoded where a tokenizer is
given), the review actions not yet applied, filters and sorting, and the one-line summary that the text
table and the HTML page share. Only the standard library, except a tokenizer (transformers, offline).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from openrlhf_rrl.core.buffer import ReplayBuffer
from openrlhf_rrl.core.errors import BufferFileError
from openrlhf_rrl.core.review import default_review_path, parse_review_line
from openrlhf_rrl.core.state import RetainedState

SORT_KEYS = ("score", "restarts", "age", "pass_rate")


class InspectError(Exception):
    """Bad input to rrl-inspect: one line naming the flag or file."""


@dataclass
class BufferView:
    path: str
    step: int | None  # the training step of the save (None for files without it)
    config: dict
    counters: dict
    retired_counts: dict
    rows: list = field(default_factory=list)
    banned_keys: list = field(default_factory=list)  # banned for good (content no longer stored)
    review_path: str | None = None
    pending: int = 0  # review actions the saved buffer has not applied yet


def load_tokenizer(path: str):
    """A Hugging Face tokenizer folder, offline (no hub access)."""
    if not os.path.isdir(path):
        raise InspectError(f"--tokenizer: no such folder: {path}")
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as e:  # transformers raises many kinds; the user needs one line
        raise InspectError(f"--tokenizer: cannot load a tokenizer from {path} ({type(e).__name__}: "
                           f"{' '.join(str(e).split())[:200]})") from None


def _decoder(tokenizer):
    if tokenizer is None:
        return lambda ids: " ".join(map(str, ids))
    return lambda ids: tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def read_review_actions(review_path: str, applied_lines: int) -> dict:
    """key -> the action still pending (lines after `applied_lines`); ban is final, later lines win otherwise."""
    pending: dict[str, str] = {}
    try:
        with open(review_path, "rb") as fh:
            lines = fh.read().split(b"\n")
    except OSError:
        return pending
    for n, raw in enumerate(lines, start=1):
        if n <= applied_lines:
            continue
        try:
            action = parse_review_line(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue  # the training reports bad lines; the view just skips them
        if action is not None and pending.get(action.key) != "ban":
            pending[action.key] = action.action
    return pending


def load_view(buffer_path: str, tokenizer=None, review_path: str | None = None) -> BufferView:
    """Read a buffer file into display rows; BufferFileError (naming the file) when it is unusable."""
    state, extra = ReplayBuffer.read_file(buffer_path)
    step = (extra or {}).get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        step = None
    entries = []
    for i, d in enumerate(state["entries"]):
        d = dict(d) if isinstance(d, dict) else d
        if isinstance(d, dict):
            d.pop("slot", None)
        try:
            entries.append(RetainedState.from_json(d))
        except ValueError as e:
            raise BufferFileError(f"{buffer_path}: corrupted buffer file (entry {i}: {e})") from None
    if step is None:
        step = max((max(e.last_seen, e.step_found) for e in entries), default=None)
    review_path = review_path or default_review_path(buffer_path)
    mark = state.get("review_marks", {}).get(os.path.abspath(review_path), {})
    pending = read_review_actions(review_path, mark.get("lines", 0) if isinstance(mark, dict) else 0)
    view = BufferView(path=os.fspath(buffer_path), step=step, config=state.get("config", {}),
                      counters=state.get("counters", {}), retired_counts=state.get("retired_counts", {}),
                      review_path=review_path, pending=len(pending))
    view.banned_keys = [k for k, r in state.get("remembered", []) if r == "banned"]
    decode = _decoder(tokenizer)
    # without a tokenizer the prompt is named by its key (readable text in most data sets) and the
    # prefix shown as token ids
    prompt_text = decode if tokenizer is not None else None
    for e in entries:
        view.rows.append(_row(e, step, decode, pending.get(e.key), prompt_text))
    return view


def _row(e: RetainedState, now: int | None, decode, pending: str | None, prompt_text=None) -> dict:
    pinned, banned = e.pinned, e.banned
    status = []
    if pending == "ban":
        banned = True
        status.append("ban pending")
    elif pending == "pin" and not pinned:
        pinned = True
        status.append("pin pending")
    elif pending == "unpin" and pinned:
        pinned = False
        status.append("unpin pending")
    if not status:
        status = ["banned"] if banned else (["pinned"] if pinned else [])
    return {
        "key": e.key,
        "prompt_key": e.prompt_key,
        "prompt": prompt_text(e.prompt_ids) if prompt_text else e.prompt_key,
        "prefix": decode(e.prefix_ids),
        "prompt_ids": list(e.prompt_ids),
        "prefix_ids": list(e.prefix_ids),
        "prefix_len": len(e.prefix_ids),
        "score": e.score,
        "restarts": e.restarts,
        "continuations": e.continuations,
        "successes": e.successes,
        # observed rate; None when untried (the policies' posterior mean is pass_rate_posterior)
        "pass_rate": e.successes / e.continuations if e.continuations else None,
        "pass_rate_posterior": e.pass_rate,
        "step_found": e.step_found,
        "last_seen": e.last_seen,
        "age": None if now is None else now - e.step_found,
        "idle": None if now is None else now - e.last_seen,
        "cut_fraction": e.cut_fraction,
        "source_reward": e.source_reward,
        "label": e.label,
        "pinned": pinned,
        "banned": banned,
        "status": ", ".join(status),
    }


# ------------------------------------------------------------------ filtering and sorting
def select_rows(view: BufferView, prompt: str | None = None, min_score: float | None = None,
                untried: bool = False, pinned: bool = False, banned: bool = False, sort: str = "score",
                ascending: bool = False, limit: int | None = None) -> list[dict]:
    rows = list(view.rows)
    if banned:
        rows = [r for r in rows if r["banned"]]
        shown = {r["key"] for r in rows}
        rows += [_key_only_row(k) for k in view.banned_keys if k not in shown]
    if pinned:
        rows = [r for r in rows if r["pinned"]]
    if untried:
        rows = [r for r in rows if r["restarts"] == 0]
    if prompt:
        needle = prompt.lower()
        rows = [r for r in rows if needle in r["prompt_key"].lower() or needle in r["prompt"].lower()]
    if min_score is not None:
        rows = [r for r in rows if r["score"] is not None and r["score"] >= min_score]
    # missing values (untried pass rate, key-only rows) go last in either direction
    present = [r for r in rows if r[sort] is not None]
    missing = [r for r in rows if r[sort] is None]
    present.sort(key=lambda r: (r[sort], r["key"]) if ascending else (-r[sort], r["key"]))
    rows = present + missing
    return rows if limit is None else rows[:limit]


def _key_only_row(key: str) -> dict:
    return {"key": key, "prompt_key": "", "prompt": "", "prefix": "(removed: only the key is kept)",
            "prompt_ids": [], "prefix_ids": [], "prefix_len": 0, "score": None, "restarts": 0, "continuations": 0,
            "successes": 0, "pass_rate": None, "pass_rate_posterior": None, "step_found": None, "last_seen": None,
            "age": None, "idle": None, "cut_fraction": None, "source_reward": None, "label": None,
            "pinned": False, "banned": True, "status": "banned"}


def fmt(v, digits=3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def summary_line(view: BufferView, shown: int) -> str:
    n = len(view.rows)
    untried = sum(1 for r in view.rows if r["restarts"] == 0)
    pinned = sum(1 for r in view.rows if r["pinned"])
    step = "unknown" if view.step is None else view.step
    pend = f", {view.pending} review action(s) pending" if view.pending else ""
    return (f"{view.path}: step {step}, {n} entries ({untried} untried, {pinned} pinned), "
            f"{len(view.banned_keys)} banned keys{pend}; showing {shown}")
