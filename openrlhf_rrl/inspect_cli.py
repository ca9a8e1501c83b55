"""`rrl-inspect`: let a person see what RRL retained and pin or ban entries.

    rrl-inspect BUFFER [--tokenizer DIR] [filters] [--sort ...] [--limit N] [--jsonl OUT] [--html OUT]
    rrl-inspect pin|unpin|ban KEY... --buffer BUFFER   (or --review FILE with full keys)

BUFFER is a file written by ReplayBuffer.save: a live run saves it at each checkpoint (atomically,
so it can be read at any time). pin/unpin/ban append to the review file beside it
(core/review.py), which the running training applies at its next step. The table shows the saved
state plus the review actions the saved buffer has not applied yet ("pending").
Only the standard library is needed, except `--tokenizer` (transformers, loaded offline).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone

from openrlhf_rrl.atomic import atomic_write_text
from openrlhf_rrl.core.buffer import ReplayBuffer
from openrlhf_rrl.core.errors import BufferFileError
from openrlhf_rrl.core.review import (ACTIONS, append_review_lines, default_review_path, format_review_line,
                                      parse_review_line)
from openrlhf_rrl.core.state import RetainedState

SORT_KEYS = ("score", "restarts", "age", "pass_rate")
MIN_KEY_PREFIX = 6


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


# ------------------------------------------------------------------ reading
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


# ------------------------------------------------------------------ output
def _fmt(v, digits=3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _cell(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def render_table(view: BufferView, rows: list[dict], width: int | None = None) -> str:
    width = width or shutil.get_terminal_size((140, 24)).columns
    fixed = [("key", 12), ("score", 7), ("restarts", 8), ("wins/tries", 10), ("pass", 5), ("age", 5),
             ("status", 11)]
    free = max(30, width - sum(w for _, w in fixed) - 2 * (len(fixed) + 1))
    pw = free * 2 // 5
    cols = [("key", 12), ("prompt", pw), ("prefix", free - pw)] + fixed[1:]
    out = [_summary(view, len(rows)), "  ".join(name.ljust(w) for name, w in cols)]
    for r in rows:
        vals = {"key": r["key"][:12], "prompt": r["prompt"] or r["prompt_key"], "prefix": r["prefix"],
                "score": _fmt(r["score"]), "restarts": _fmt(r["restarts"]),
                "wins/tries": f"{r['successes']}/{r['continuations']}", "pass": _fmt(r["pass_rate"], 2),
                "age": _fmt(r["age"]), "status": r["status"]}
        out.append("  ".join(_cell(vals[name], w).ljust(w) for name, w in cols))
    return "\n".join(line.rstrip() for line in out) + "\n"


def _summary(view: BufferView, shown: int) -> str:
    n = len(view.rows)
    untried = sum(1 for r in view.rows if r["restarts"] == 0)
    pinned = sum(1 for r in view.rows if r["pinned"])
    step = "unknown" if view.step is None else view.step
    pend = f", {view.pending} review action(s) pending" if view.pending else ""
    return (f"{view.path}: step {step}, {n} entries ({untried} untried, {pinned} pinned), "
            f"{len(view.banned_keys)} banned keys{pend}; showing {shown}")


def export_jsonl(rows: list[dict], path: str) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


_COLUMNS = [  # (title, row field for sorting, kind)
    ("key", "key", "s"), ("prompt", "prompt", "s"), ("prefix", "prefix", "s"), ("score", "score", "n"),
    ("restarts", "restarts", "n"), ("wins / tries", "successes", "n"), ("pass rate", "pass_rate", "n"),
    ("age", "age", "n"), ("prefix tokens", "prefix_len", "n"), ("status", "status", "s"),
]


def render_html(view: BufferView, rows: list[dict]) -> str:
    """A static page: no external asset, no CDN; click a header to sort, type to filter."""
    e = html.escape
    head = "".join(f'<th data-kind="{kind}" data-field="{name}" title="sort by {e(title)}">{e(title)}'
                   f'<span class="arrow"></span></th>' for title, name, kind in _COLUMNS)
    body = []
    for r in rows:
        cells = {
            "key": f'<code class="key" title="{e(r["key"])}">{e(r["key"])}</code>',
            "prompt": f'<div class="text">{e(r["prompt"] or r["prompt_key"])}</div>',
            "prefix": f'<div class="text prefix">{e(r["prefix"])}</div>',
            "score": e(_fmt(r["score"])),
            "restarts": e(_fmt(r["restarts"])),
            "successes": f'{r["successes"]} / {r["continuations"]}',
            "pass_rate": e(_fmt(r["pass_rate"], 2)),
            "age": e(_fmt(r["age"])),
            "prefix_len": e(_fmt(r["prefix_len"])),
            "status": e(r["status"]),
        }
        tds = []
        for _, name, kind in _COLUMNS:
            v = r[name]
            sort_value = "" if v is None else (repr(float(v)) if kind == "n" else str(v))
            tds.append(f'<td data-v="{e(sort_value)}">{cells[name]}</td>')
        cls = " ".join(c for c in ("pinned" if r["pinned"] else "", "banned" if r["banned"] else "",
                                   "untried" if r["restarts"] == 0 else "") if c)
        body.append(f'<tr class="{cls}">{"".join(tds)}</tr>')
    cfg = ", ".join(f"{k} {v}" for k, v in view.config.items() if k in ("capacity", "per_prompt_capacity",
                                                                        "temperature", "restart_decay"))
    retired = ", ".join(f"{k} {v}" for k, v in view.retired_counts.items() if v)
    return _HTML.format(
        title=e(os.path.basename(view.path)), summary=e(_summary(view, len(rows))), config=e(cfg),
        retired=e(retired or "none"), head=head, body="\n".join(body), buffer=e(view.path))


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>RRL buffer: {title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #1d2330; background: #fff; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }}
.meta {{ color: #505a6b; margin: 2px 0; }}
.controls {{ margin: 10px 0; display: flex; gap: 14px; align-items: center; flex-wrap: wrap; }}
#q {{ width: 320px; padding: 4px 6px; font-size: 14px; }}
table {{ border-collapse: collapse; width: 100%; table-layout: fixed; }}
th, td {{ border-bottom: 1px solid #dde2ea; padding: 4px 6px; vertical-align: top; text-align: left; }}
th {{ background: #2f4a78; color: #fff; cursor: pointer; position: sticky; top: 0; user-select: none; }}
th:nth-child(1) {{ width: 8em; }} th:nth-child(4) {{ width: 4.5em; }} th:nth-child(5) {{ width: 5.5em; }}
th:nth-child(6) {{ width: 5.5em; }} th:nth-child(7) {{ width: 4.5em; }} th:nth-child(8) {{ width: 3.5em; }}
th:nth-child(9) {{ width: 5em; }} th:nth-child(10) {{ width: 7.5em; }}
tr:nth-child(even) td {{ background: #f5f7fb; }}
tr.pinned td {{ background: #e6f4e6; }}
tr.banned td {{ background: #fbe9e9; color: #8a3030; }}
code.key {{ display: block; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; user-select: all;
  font-size: 12px; }}
.text {{ white-space: pre-wrap; word-break: break-word; max-height: 7.5em; overflow: auto;
  font-family: ui-monospace, monospace; font-size: 12px; }}
.prefix {{ color: #14507a; }}
.arrow {{ font-size: 11px; margin-left: 4px; }}
footer {{ margin-top: 12px; color: #505a6b; }}
</style></head>
<body>
<h1>Retained prefixes: {title}</h1>
<p class="meta">{summary}</p>
<p class="meta">buffer: {config}; retired so far: {retired}</p>
<div class="controls">
<input id="q" type="search" placeholder="filter: prompt, prefix, key or status">
<label><input type="checkbox" id="only-pinned"> pinned only</label>
<label><input type="checkbox" id="only-untried"> untried only</label>
<span id="count" class="meta"></span>
</div>
<table id="entries"><thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody></table>
<footer>Pin (keep, replay more) or ban (never replay):
<code>rrl-inspect pin KEY --buffer {buffer}</code>, <code>rrl-inspect ban KEY --buffer {buffer}</code>;
a unique key prefix is enough. A running training applies them at its next step.</footer>
<script>
(function () {{
  var table = document.getElementById("entries"), tbody = table.tBodies[0];
  var rows = Array.prototype.slice.call(tbody.rows);
  var q = document.getElementById("q"), pin = document.getElementById("only-pinned");
  var untried = document.getElementById("only-untried"), count = document.getElementById("count");
  function filter() {{
    var needle = q.value.toLowerCase(), shown = 0;
    rows.forEach(function (r) {{
      var ok = (!needle || r.textContent.toLowerCase().indexOf(needle) >= 0) &&
               (!pin.checked || r.classList.contains("pinned")) &&
               (!untried.checked || r.classList.contains("untried"));
      r.style.display = ok ? "" : "none";
      if (ok) shown++;
    }});
    count.textContent = shown + " of " + rows.length + " rows";
  }}
  var heads = table.tHead.rows[0].cells, state = {{col: -1, dir: 1}};
  function sortBy(col, dir) {{
    state.col = col; state.dir = dir;
    var numeric = heads[col].dataset.kind === "n";
    rows.sort(function (a, b) {{
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      if (x === "" || y === "") return (x === "") - (y === "");  // missing values last
      if (numeric) return dir * (parseFloat(x) - parseFloat(y));
      return dir * x.localeCompare(y);
    }});
    rows.forEach(function (r) {{ tbody.appendChild(r); }});
    Array.prototype.forEach.call(heads, function (h, i) {{
      h.querySelector(".arrow").textContent = i === col ? (dir > 0 ? "\u25b2" : "\u25bc") : "";
    }});
  }}
  Array.prototype.forEach.call(heads, function (th, col) {{
    th.addEventListener("click", function () {{
      sortBy(col, state.col === col ? -state.dir : (th.dataset.kind === "n" ? -1 : 1));
    }});
  }});
  // a link can carry a view: page.html#sort=restarts&dir=asc&q=text&pinned=1&untried=1
  var want = {{}};
  location.hash.slice(1).split("&").forEach(function (kv) {{
    var i = kv.indexOf("=");
    if (i > 0) want[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1));
  }});
  if (want.q) q.value = want.q;
  pin.checked = want.pinned === "1";
  untried.checked = want.untried === "1";
  Array.prototype.forEach.call(heads, function (th, col) {{
    if (th.dataset.field === want.sort) sortBy(col, want.dir === "asc" ? 1 : -1);
  }});
  [q, pin, untried].forEach(function (el) {{ el.addEventListener("input", filter); }});
  [pin, untried].forEach(function (el) {{ el.addEventListener("change", filter); }});
  filter();
}})();
</script>
</body></html>
"""


# ------------------------------------------------------------------ pin / unpin / ban
def resolve_keys(keys: list[str], buffer_path: str | None) -> list[str]:
    """Full entry keys: a full 40-hex key as given, or a unique prefix of a key in the buffer file."""
    known: list[str] | None = None
    out = []
    for k in keys:
        k = k.strip().lower()
        if len(k) == 40 and all(c in "0123456789abcdef" for c in k):
            out.append(k)
            continue
        if buffer_path is None:
            raise InspectError(f"{k}: not a full 40-character key; give --buffer to use a key prefix")
        if len(k) < MIN_KEY_PREFIX or not all(c in "0123456789abcdef" for c in k):
            raise InspectError(f"{k}: expected a hex key or a key prefix of at least {MIN_KEY_PREFIX} characters")
        if known is None:
            view = load_view(buffer_path)
            known = [r["key"] for r in view.rows] + view.banned_keys
        hits = sorted({x for x in known if x.startswith(k)})
        if len(hits) != 1:
            raise InspectError(f"{k}: {'no' if not hits else len(hits)} entries of {buffer_path} match this key prefix")
        out.append(hits[0])
    return out


def review_command(action: str, args) -> int:
    if args.review is None and args.buffer is None:
        raise InspectError("--buffer: give the buffer file (the review file goes beside it) or --review FILE")
    review = args.review or default_review_path(args.buffer)
    keys = resolve_keys(args.keys, args.buffer)
    at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    by = args.by or os.environ.get("USER") or None
    lines = [format_review_line(k, action, note=args.note, by=by, at=at) for k in keys]
    try:
        append_review_lines(review, lines)
    except OSError as e:  # the file keeps every earlier line (atomic append)
        raise InspectError(f"{review}: cannot write ({e.strerror or e})") from None
    print(f"appended {len(lines)} {action} action(s) to {review}; a running training applies them at its next step")
    return 0


# ------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rrl-inspect", description="Show, export, pin and ban RRL's retained prefixes.")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("show", help="table of a buffer file (the default command)")
    s.add_argument("buffer", help="buffer file (JSON lines from ReplayBuffer.save; a live run's checkpoint works)")
    s.add_argument("--tokenizer", help="Hugging Face tokenizer folder to decode token ids (offline); default: show ids")
    s.add_argument("--review", help="review file (default: rrl_review.jsonl beside the buffer file)")
    s.add_argument("--prompt", help="only prompts containing this text (case-insensitive; key or decoded text)")
    s.add_argument("--min-score", type=float, dest="min_score", help="only entries scoring at least this")
    s.add_argument("--untried", action="store_true", help="only entries never restarted")
    s.add_argument("--pinned", action="store_true", help="only pinned entries (pending pins included)")
    s.add_argument("--banned", action="store_true", help="only banned entries and banned keys")
    s.add_argument("--sort", choices=SORT_KEYS, default="score", help="sort column, largest first (default: score)")
    s.add_argument("--asc", action="store_true", help="smallest first")
    s.add_argument("--limit", type=int, help="show at most N rows")
    s.add_argument("--jsonl", help="write the selected rows to this JSON-lines file")
    s.add_argument("--html", help="write the selected rows as a static, self-contained HTML page")
    for action in ACTIONS:
        a = sub.add_parser(action, help={"pin": "keep entries and replay them more", "unpin": "undo a pin",
                                         "ban": "never replay entries again"}[action])
        a.add_argument("keys", nargs="+", metavar="KEY", help="entry keys (a unique prefix with --buffer)")
        a.add_argument("--buffer", help="the buffer file: resolves key prefixes; the review file goes beside it")
        a.add_argument("--review", help="review file (default: rrl_review.jsonl beside --buffer)")
        a.add_argument("--note", help="why (kept in the review file)")
        a.add_argument("--by", help="who (default: $USER)")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0] not in ("show",) + ACTIONS:
        argv.insert(0, "show")  # `rrl-inspect BUFFER` is `rrl-inspect show BUFFER`
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command in ACTIONS:
            return review_command(args.command, args)
        if args.limit is not None and args.limit < 0:
            raise InspectError(f"--limit: expected an integer >= 0, got {args.limit}")
        tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
        view = load_view(args.buffer, tokenizer, args.review)
        rows = select_rows(view, prompt=args.prompt, min_score=args.min_score, untried=args.untried,
                           pinned=args.pinned, banned=args.banned, sort=args.sort, ascending=args.asc,
                           limit=args.limit)
        for target, write in ((args.jsonl, lambda p: export_jsonl(rows, p)),
                              (args.html, lambda p: atomic_write_text(p, render_html(view, rows)))):
            if target:
                try:
                    write(target)
                except OSError as e:  # a full disk, say: the old file at `target` is left as it was
                    raise InspectError(f"{target}: cannot write ({e.strerror or e})") from None
                print(f"wrote {target} ({len(rows)} rows)")
        if not (args.jsonl or args.html):
            sys.stdout.write(render_table(view, rows))
        return 0
    except (InspectError, BufferFileError) as e:
        print(f"rrl-inspect: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. the review file's folder is read-only
        where = f"{e.filename}: " if e.filename else ""
        print(f"rrl-inspect: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
