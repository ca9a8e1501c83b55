"""--rrl_step_checker http://...: a step checker served over HTTP (RemoteStepChecker), against a real
local server (http.server on 127.0.0.1, a free port, in a thread; no mocks). The server applies the same
rule as a step_checker .py file, so replay through the URL and through the file must agree."""

import argparse
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from openrlhf_rrl.config import RRLConfig, add_rrl_arguments
from openrlhf_rrl.core.errors import RRLConfigError
from openrlhf_rrl.core.planner import PromptRef
from openrlhf_rrl.core.replay import RetrospectiveReplay
from openrlhf_rrl.core.step_checker import FileStepChecker, RemoteStepChecker, load_step_checker
from openrlhf_rrl.core.trajectory import Trajectory


def cfg(*argv):
    return RRLConfig.from_args(add_rrl_arguments(argparse.ArgumentParser(prog="train")).parse_args(list(argv)))

# the known rule, shared by the server and the .py file: uses all three inputs, so a mix-up shows
RULE = """
def step_checker(prompt_ids, response_ids, label):
    tokens = (prompt_ids[0] + len(label) + 5 * (response_ids[0] // 1000)) % 13 + 3
    return tokens, tokens // 4
"""
_ns = {}
exec(RULE, _ns)
rule = _ns["step_checker"]

N = 20
PROMPTS = [PromptRef(k, (i + 1, 7), label="x" * (i + 1)) for i, k in enumerate("ABCD")]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(k, raising=False)


class Server:
    """A served step checker: answers with RULE, after `fail_first` replies of HTTP `status`, or
    always with `reply` (raw bytes) when given. `requests` holds every decoded request body."""

    def __init__(self, fail_first=0, status=503, reply=None, steps=True):
        self.requests, self.fail_first, self.status, self.reply, self.steps = [], fail_first, status, reply, steps
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                if len(outer.requests) <= outer.fail_first:
                    code, data = outer.status, b"busy"
                elif outer.reply is not None:
                    code, data = 200, outer.reply
                else:
                    out = [rule(p, r, lab) for p, r, lab in zip(body["prompt_ids"], body["response_ids"],
                                                                 body["labels"])]
                    d = {"verified_tokens": [t for t, _ in out]}
                    if outer.steps:
                        d["steps"] = [s for _, s in out]
                    code, data = 200, json.dumps(d).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/check"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def serve():
    servers = []

    def start(**kw):
        servers.append(Server(**kw))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def down_url():
    """An address nobody listens on: a port just bound and released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/check"


def config(**kw):
    base = dict(enable=True, replay_share=1.0, scorer="checker", policy="promise", cut_every=5,
                min_prefix_frac=0.0, max_prefix_frac=1.0, admit_per_step=100, seed=0)
    base.update(kw)
    return RRLConfig(**base)


def run(rrl, outcomes_per_prompt, steps=2):
    """Scripted fresh groups for every prompt, `steps` times; the buffer's entries afterwards."""
    for s in range(steps):
        plans = rrl.plan(PROMPTS, s)
        groups = []
        for i, plan in enumerate(plans):
            prefix = tuple(plan.prefix_ids)
            groups.append([Trajectory(prompt_key=plan.prompt.key, prompt_ids=plan.prompt.prompt_ids,
                                      response_ids=prefix + tuple(1000 * (100 * s + 10 * i + j) + t
                                                                  for t in range(N - len(prefix))),
                                      reward=float(ok), success=ok, label=plan.prompt.label, prefix_len=len(prefix))
                           for j, ok in enumerate(outcomes_per_prompt[i % len(outcomes_per_prompt)])])
        rrl.observe(plans, groups, s)
    return sorted((e.prompt_key, e.prefix_ids, e.verified_steps, e.handicap, round(e.score, 9))
                  for e in rrl.buffer.entries())


def test_load_step_checker_picks_remote_for_urls_and_file_otherwise(tmp_path):
    f = tmp_path / "check.py"
    f.write_text(RULE)
    assert isinstance(load_step_checker(str(f)), FileStepChecker)
    for url in ("http://127.0.0.1:1/x", "https://prm.example/check", " HTTP://host/ "):
        c = load_step_checker(url)
        assert isinstance(c, RemoteStepChecker) and c.url == url.strip()


@pytest.mark.parametrize("scorer,policy,outcomes,checked", [
    ("checker", "promise", [[False, False, False], [False, True, False, False]], 12),
    # passrate: head starts from hard prompts (3 failed rollouts each) and handicaps of easy ones (1 each)
    ("reward", "passrate", [[False, False, False], [True, True, True, False]], 8),
])
def test_replay_through_the_url_matches_the_same_rule_in_a_file(tmp_path, serve, scorer, policy, outcomes, checked):
    f = tmp_path / "check.py"
    f.write_text(RULE)
    srv = serve()
    by_file = run(RetrospectiveReplay(config(scorer=scorer, policy=policy, step_checker=str(f))), outcomes)
    by_url = run(RetrospectiveReplay(config(scorer=scorer, policy=policy, step_checker=srv.url)), outcomes)
    assert by_file and by_url == by_file
    assert any(steps for _, _, steps, _, _ in by_url)  # the server's "steps" arrived too
    # one POST per step (the second step is all restarts: nothing to check), carrying every failed
    # rollout the step had to check, as token ids
    (body,) = srv.requests
    assert len(body["response_ids"]) == len(body["prompt_ids"]) == len(body["labels"]) == checked
    assert all(isinstance(t, int) for r in body["response_ids"] for t in r)


def test_the_checker_scorer_cuts_at_the_served_verified_tokens(serve):
    srv = serve(steps=False)
    entries = run(RetrospectiveReplay(config(step_checker=srv.url)), [[False, False]], steps=1)
    expected = {(p.key, rule(list(p.prompt_ids), [1000 * (10 * i + j)], p.label)[0])
                for i, p in enumerate(PROMPTS) for j in range(2)}
    assert {(k, len(prefix)) for k, prefix, *_ in entries} == expected
    assert all(steps is None for _, _, steps, _, _ in entries)


def test_a_server_failing_twice_with_503_is_retried(serve):
    srv = serve(fail_first=2)
    c = RemoteStepChecker(srv.url, retries=3, backoff_s=0.01)
    assert c([5, 6], [3000, 1], "ab") == rule([5, 6], [3000, 1], "ab")
    assert len(srv.requests) == 3
    assert c.check_many([], [], []) == [] and len(srv.requests) == 3  # nothing to check: no request


def test_a_server_that_keeps_failing_gives_one_line_naming_the_flag_and_url(serve):
    srv = serve(fail_first=99)
    with pytest.raises(RRLConfigError) as err:
        RemoteStepChecker(srv.url, retries=2, backoff_s=0.01)([1], [2], "a")
    msg = str(err.value)
    assert msg.startswith(f"--rrl_step_checker: {srv.url}: no answer after 3 tries") and "503" in msg
    assert "\n" not in msg and len(srv.requests) == 3


def test_a_server_that_is_down_gives_one_line_naming_the_flag_and_url():
    url = down_url()
    with pytest.raises(RRLConfigError) as err:
        RemoteStepChecker(url, retries=1, backoff_s=0.01, timeout_s=5)([1], [2], "a")
    msg = str(err.value)
    assert msg.startswith(f"--rrl_step_checker: {url}: no answer after 2 tries") and "\n" not in msg


def test_a_4xx_reply_is_not_retried(serve):
    srv = serve(fail_first=99, status=404)
    with pytest.raises(RRLConfigError, match=r"^--rrl_step_checker: http://127\.0\.0\.1:\d+/check: HTTP 404"):
        RemoteStepChecker(srv.url, retries=3, backoff_s=0.01)([1], [2], "a")
    assert len(srv.requests) == 1


@pytest.mark.parametrize("reply", [
    b'{"verified_tokens": [1, 2, 3]}',  # wrong length
    b'{"verified_tokens": [1.5, 2]}',  # not ints
    b'{"verified_tokens": ["3", 2]}',
    b'{"verified_tokens": [true, 2]}',
    b'{"verified_tokens": [-1, 2]}',
    b'{"verified_tokens": [1, 2], "steps": [1]}',  # steps of the wrong length
    b'{"tokens": [1, 2]}',  # wrong key
    b'[1, 2]',
    b'<html>oops</html>',  # not JSON
])
def test_a_malformed_reply_gives_one_line_naming_the_url_and_what_was_expected(serve, reply):
    srv = serve(reply=reply)
    with pytest.raises(RRLConfigError) as err:
        RemoteStepChecker(srv.url, backoff_s=0.01).check_many([[1], [1]], [[2], [3]], ["a", "b"])
    msg = str(err.value)
    assert msg.startswith(f"--rrl_step_checker: {srv.url}: malformed reply") and "\n" not in msg
    assert 'expected JSON {"verified_tokens": [2 ints >= 0 or null]}' in msg
    assert len(srv.requests) == 1  # a malformed reply is not retried


def test_null_means_cannot_tell(serve):
    srv = serve(reply=b'{"verified_tokens": [null, 4], "steps": [null, 1]}')
    assert RemoteStepChecker(srv.url).check_many([[1], [1]], [[2], [3]], ["a", "b"]) == [(None, None), (4, 1)]


def test_config_accepts_a_url_without_contacting_it_and_still_checks_paths():
    url = down_url()
    assert cfg("--rrl_step_checker", url).step_checker == url
    https = "https://prm.example:8443/verify"
    assert cfg("--rrl.step_checker", https).step_checker == https
    rrl = RetrospectiveReplay(config(step_checker=url))  # built, not yet contacted
    assert isinstance(rrl.step_checker, RemoteStepChecker) and rrl.step_checker.url == url
    with pytest.raises(RRLConfigError) as err:
        cfg("--rrl_step_checker", "/no/such/check.py")
    assert str(err.value) == "--rrl_step_checker: step checker file not found: /no/such/check.py"
