"""rrl-inspect on a buffer the embedded runner wrote: table, filters, sorts, decoding, exports, the
pin/ban loop with a training that resumes, and the HTML page rendered by headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from urllib.parse import quote

import pytest
import torch

from openrlhf_rrl.config import RRLConfig
from openrlhf_rrl.core.buffer import ReplayBuffer
from openrlhf_rrl.core.state import RetainedState
from openrlhf_rrl.inspect_cli import main
from openrlhf_rrl.inspect_html import render_html
from openrlhf_rrl.inspect_view import load_view, select_rows

CHROMIUM = "/usr/bin/chromium"


def rrl_config() -> RRLConfig:
    # an untrained model solves nothing: every prompt is hard (threshold 1.0 = every unsolved group),
    # and the 9-token responses are cut every 2 tokens (the default stride of 32 would never cut)
    return RRLConfig(enable=True, scorer="reward", hard_threshold=1.0, cut_every=2)


def make_trainer(task, root, steps):
    from openrlhf_rrl.runner.models import tiny_qwen2
    from openrlhf_rrl.runner.trainer import TrainConfig, Trainer

    torch.manual_seed(0)
    cfg = TrainConfig(steps=steps, prompts_per_step=8, n_samples=4, eval_every=100, eval_size=16,
                      max_new_tokens=task.max_new_tokens, ckpt_every=3, rrl=rrl_config())
    return Trainer(cfg, task, tiny_qwen2(task.tokenizer, seed=0), task.tokenizer, out_path=root / "m.jsonl",
                   ckpt_dir=root / "ckpt")


@pytest.fixture(scope="module")
def task():
    from openrlhf_rrl.tasks import ChainTask

    return ChainTask()


@pytest.fixture(scope="module")
def run_dir(task, tmp_path_factory):
    """Three runner steps with a checkpoint at step 3: ckpt/rrl_buffer.jsonl, as a live run leaves it."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("run")
    make_trainer(task, root, steps=3).run(resume=False)
    assert (root / "ckpt" / "rrl_buffer.jsonl").exists()
    return root


@pytest.fixture
def buffer_file(run_dir, tmp_path):
    """A private copy of the run's checkpoint folder, so tests may add review files to it."""
    shutil.copytree(run_dir / "ckpt", tmp_path / "ckpt")
    return tmp_path / "ckpt" / "rrl_buffer.jsonl"


@pytest.fixture(scope="module")
def tokenizer_dir(task, tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    task.tokenizer.save_pretrained(path)
    return path


def saved_entries(path):
    return list(ReplayBuffer.load(path).entries())


def test_table_of_a_runner_buffer(buffer_file, capsys):
    entries = saved_entries(buffer_file)
    assert len(entries) >= 4 and any(e.restarts for e in entries) and any(not e.restarts for e in entries)
    assert main([str(buffer_file)]) == 0
    out = capsys.readouterr().out.splitlines()
    untried = sum(1 for e in entries if e.restarts == 0)
    assert out[0] == (f"{buffer_file}: step 3, {len(entries)} entries ({untried} untried, 0 pinned), "
                      f"0 banned keys; showing {len(entries)}")
    assert out[1].split()[:6] == ["key", "prompt", "prefix", "score", "restarts", "wins/tries"]
    assert sorted(line[:12] for line in out[2:]) == sorted(e.key[:12] for e in entries)
    # no tokenizer: the prompt is named by its key, the prefix shown as token ids
    best = max(entries, key=lambda e: (e.score, [-ord(c) for c in e.key]))
    first = next(line for line in out[2:] if line.startswith(best.key[:12]))
    assert " ".join(map(str, best.prefix_ids[:3])) in first


def test_filters_and_sorts(buffer_file):
    entries = saved_entries(buffer_file)
    view = load_view(buffer_file)
    assert view.step == 3
    by_restarts = select_rows(view, sort="restarts")
    assert [r["restarts"] for r in by_restarts] == sorted((e.restarts for e in entries), reverse=True)
    assert {r["key"] for r in select_rows(view, untried=True)} == {e.key for e in entries if e.restarts == 0}
    by_age = select_rows(view, sort="age", ascending=True)
    assert [r["age"] for r in by_age] == sorted(3 - e.step_found for e in entries)
    tried = select_rows(view, sort="pass_rate")
    rates = [r["pass_rate"] for r in tried]
    n_tried = sum(1 for e in entries if e.continuations)
    assert all(x is not None for x in rates[:n_tried]) and all(x is None for x in rates[n_tried:])
    assert rates[:n_tried] == sorted(rates[:n_tried], reverse=True)
    some = entries[0].prompt_key
    same_prompt = {e.key for e in entries if e.prompt_key == some}
    assert {r["key"] for r in select_rows(view, prompt=some.upper())} == same_prompt
    cut = sorted(e.score for e in entries)[len(entries) // 2]
    assert {r["key"] for r in select_rows(view, min_score=cut)} == {e.key for e in entries if e.score >= cut}
    assert len(select_rows(view, limit=2)) == 2 and select_rows(view, pinned=True) == []


def test_tokenizer_decodes_prompt_and_prefix(buffer_file, tokenizer_dir, task, tmp_path):
    out = tmp_path / "rows.jsonl"
    assert main([str(buffer_file), "--tokenizer", str(tokenizer_dir), "--jsonl", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    entries = {e.key: e for e in saved_entries(buffer_file)}
    assert {r["key"] for r in rows} == set(entries)
    for r in rows:
        e = entries[r["key"]]
        assert r["prefix"] == task.tokenizer.decode(list(e.prefix_ids), skip_special_tokens=False)
        assert r["prompt"] == e.prompt_key.split(":", 1)[1]  # the chain task's key holds the prompt text
        assert (r["prefix_ids"], r["restarts"], r["score"]) == (list(e.prefix_ids), e.restarts, e.score)


def test_bad_tokenizer_is_one_line_naming_the_flag(buffer_file, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(buffer_file), "--tokenizer", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rrl-inspect: error: --tokenizer: cannot load a tokenizer from {tmp_path / 'empty'}")
    assert err.count("\n") == 1


def test_pin_and_ban_reach_a_resumed_training(buffer_file, task, capsys):
    """A person bans one entry and pins another in a live run's checkpoint; the run (here: resumed
    from that checkpoint) applies both at its next step and never restarts the banned entry."""
    root = buffer_file.parent.parent
    entries = sorted(saved_entries(buffer_file), key=lambda e: (-e.score, e.key))
    banned, pinned = entries[0], entries[1]
    assert main(["ban", banned.key[:10], "--buffer", str(buffer_file), "--note", "looks wrong"]) == 0
    assert main(["pin", pinned.key, "--buffer", str(buffer_file)]) == 0
    capsys.readouterr()
    review = buffer_file.parent / "rrl_review.jsonl"
    assert [json.loads(x)["action"] for x in review.read_text().splitlines()] == ["ban", "pin"]
    # before the training reads it, the table shows both as pending
    view = load_view(buffer_file)
    status = {r["key"]: r["status"] for r in view.rows}
    assert (status[banned.key], status[pinned.key], view.pending) == ("ban pending", "pin pending", 2)

    trainer = make_trainer(task, root, steps=6)
    planned = []
    original_plan = trainer.replay.plan

    def spy(prompts, step):
        plans = original_plan(prompts, step)
        planned.extend(p.entry_key for p in plans if p.is_restart)
        return plans

    trainer.replay.plan = spy
    trainer.run(resume=True)
    assert planned and banned.key not in planned
    after = ReplayBuffer.load(buffer_file)  # the checkpoint of step 6
    assert banned.key not in after and after.is_retired(banned.key) == "banned"
    assert after.get(pinned.key).pinned
    view = load_view(buffer_file)
    assert view.pending == 0 and view.step == 6
    rows = select_rows(view, banned=True)
    assert [(r["key"], r["status"]) for r in rows] == [(banned.key, "banned")]  # only its key is kept
    assert [r["key"] for r in select_rows(view, pinned=True)] == [pinned.key]


def test_html_escapes_text_and_needs_nothing_from_outside(tmp_path):
    buf = ReplayBuffer()
    buf.add(RetainedState(prompt_key="<script>alert(1)</script> & co", prompt_ids=(1, 2), prefix_ids=(3,), score=1.0))
    path = tmp_path / "b.jsonl"
    buf.save(path)
    page = render_html(load_view(path), select_rows(load_view(path)))
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert page.count("<script>") == 1  # the page's own sorting/filtering code, inline
    for outside in ("http://", "https://", "<link", " src=", "@import", "url("):
        assert outside not in page


def chromium(tmp_path, *args, url):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install the Debian package `chromium` (apt-get install -y chromium)")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", *args, url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_html_page_renders_in_headless_chromium(buffer_file, tokenizer_dir, tmp_path):
    np = pytest.importorskip("numpy")
    Image = pytest.importorskip("PIL.Image")
    page = tmp_path / "buffer.html"
    assert main([str(buffer_file), "--tokenizer", str(tokenizer_dir), "--html", str(page)]) == 0
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,800", url=page.as_uri())
    img = Image.open(shot).convert("L")
    assert img.size == (1200, 800)
    pixels = np.asarray(img, dtype=np.float64)
    assert pixels.std() > 10  # not a blank page: text, the header band, row stripes
    assert (pixels < 100).mean() > 0.02  # the dark header band and text are there
    keep = os.environ.get("RRL_KEEP_SCREENSHOT")  # a path: copy the screenshot there to look at it
    if keep:
        shutil.copy(shot, keep)


def test_html_sorts_and_filters_in_the_browser(buffer_file, tmp_path):
    """The page's script runs in Chromium: a view in the link sorts and filters the table."""
    page = tmp_path / "buffer.html"
    assert main([str(buffer_file), "--html", str(page)]) == 0
    entries = saved_entries(buffer_file)
    dom = chromium(tmp_path, "--dump-dom", url=page.as_uri() + "#sort=restarts&dir=asc")
    order = re.findall(r'<code class="key" title="([0-9a-f]{40})">', dom)
    restarts = {e.key: e.restarts for e in entries}
    assert sorted(order) == sorted(restarts) and [restarts[k] for k in order] == sorted(restarts.values())
    assert f"{len(entries)} of {len(entries)} rows" in dom
    some = next(e for e in entries if e.restarts == 0).prompt_key.split(":", 1)[1]
    dom = chromium(tmp_path, "--dump-dom", url=page.as_uri() + "#untried=1&q=" + quote(some))
    rows = re.findall(r'<tr class="([^"]*)"( style="display: none;")?><td data-v="([0-9a-f]{40})"', dom)
    shown = {key for _, hidden, key in rows if not hidden}
    want = {e.key for e in entries if e.restarts == 0 and some.lower() in e.prompt_key.lower()}
    assert want and len(want) < len(entries) and len(rows) == len(entries)
    assert shown == want and f"{len(want)} of {len(entries)} rows" in dom
