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
import json
import os
import shutil
import sys
from datetime import datetime, timezone

from openrlhf_rrl.atomic import atomic_write_text
from openrlhf_rrl.core.errors import BufferFileError
from openrlhf_rrl.core.review import ACTIONS, append_review_lines, default_review_path, format_review_line
from openrlhf_rrl.inspect_html import render_html
from openrlhf_rrl.inspect_view import (SORT_KEYS, BufferView, InspectError, fmt, load_tokenizer, load_view, select_rows,
                                       summary_line)

MIN_KEY_PREFIX = 6


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
    out = [summary_line(view, len(rows)), "  ".join(name.ljust(w) for name, w in cols)]
    for r in rows:
        vals = {"key": r["key"][:12], "prompt": r["prompt"] or r["prompt_key"], "prefix": r["prefix"],
                "score": fmt(r["score"]), "restarts": fmt(r["restarts"]),
                "wins/tries": f"{r['successes']}/{r['continuations']}", "pass": fmt(r["pass_rate"], 2),
                "age": fmt(r["age"]), "status": r["status"]}
        out.append("  ".join(_cell(vals[name], w).ljust(w) for name, w in cols))
    return "\n".join(line.rstrip() for line in out) + "\n"


def export_jsonl(rows: list[dict], path: str) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


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
