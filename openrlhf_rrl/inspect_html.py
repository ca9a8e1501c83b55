"""rrl-inspect --html: one static page of a buffer's entries (no external asset, no CDN), sortable by any
column and filtered as you type."""

from __future__ import annotations

import html
import os

from openrlhf_rrl.inspect_view import BufferView, fmt, summary_line


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
            "score": e(fmt(r["score"])),
            "restarts": e(fmt(r["restarts"])),
            "successes": f'{r["successes"]} / {r["continuations"]}',
            "pass_rate": e(fmt(r["pass_rate"], 2)),
            "age": e(fmt(r["age"])),
            "prefix_len": e(fmt(r["prefix_len"])),
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
        title=e(os.path.basename(view.path)), summary=e(summary_line(view, len(rows))), config=e(cfg),
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
