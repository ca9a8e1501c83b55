"""Step checkers: how many leading tokens of a (failed) response are verified correct, a process reward.

--rrl_step_checker x.py   step_checker(prompt_ids, response_ids, label) -> verified tokens, or (tokens,
                          steps), loaded the same way as a file scorer (FileStepChecker);
--rrl_step_checker http(s)://...   a served process reward model, JSON over HTTP (RemoteStepChecker),
                          asked once per training step for all the rollouts it must check.
Used by the checker scorer, the passrate policy's head starts and handicaps, and cut control.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request

from .errors import RRLConfigError
from .scoring import load_user_function
from .trajectory import as_list


class FileStepChecker:
    """--rrl_step_checker file.py: step_checker(prompt_ids, response_ids, label) -> how many leading response
    tokens are verified correct (an int), or (tokens, steps). None means "cannot tell" (no verified prefix)."""

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self.fn = load_user_function(self.path, "step_checker", "--rrl_step_checker", "step checker file",
                                     "step_checker(prompt_ids, response_ids, label)")

    def __call__(self, prompt_ids, response_ids, label):
        out = self.fn(as_list(prompt_ids), as_list(response_ids), label)
        if out is None or _is_count(out):
            return out
        if isinstance(out, tuple) and len(out) == 2 and (out[0] is None or _is_count(out[0])) and (
                out[1] is None or _is_count(out[1])):
            return out
        raise RRLConfigError(f"--rrl_step_checker: {self.path}: step_checker returned {out!r:.60}; expected "
                             f"verified tokens (an int >= 0), (tokens, steps) or None")


def verified_share(verdict, response_len: int) -> float:
    """The share of a response of response_len tokens that a checker's verdict (tokens, (tokens, steps) or
    None) verifies correct, in [0, 1]: the dense process reward a baseline gets from the same checker."""
    tokens = verdict[0] if isinstance(verdict, tuple) else verdict
    return min(1.0, (tokens or 0) / response_len) if response_len > 0 else 0.0


def common_prefix_len(a, b) -> int:
    """How many leading tokens two responses share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def verify_by_agreement(group) -> None:
    """The outcome reward as a step checker (--rrl_scorer agree): in a group with a success, each failed
    rollout is verified up to where it parts from the nearest successful rollout of the group (kept as its
    agreed_ids: cut control may move a head start along it), a success is verified whole. Filled in place;
    a group without a success is left unverified (nothing is known)."""
    wins = [as_list(t.response_ids)[: len(t.response_ids) - 1 if t.eos else None] for t in group if t.success]
    if not wins:
        return
    for t in group:
        ids = as_list(t.response_ids)
        if t.success:
            t.verified_tokens = len(ids)
            continue
        t.verified_tokens, t.agreed_ids = max(((common_prefix_len(ids, w), w) for w in wins), key=lambda p: p[0])


def _is_count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def is_url(path_or_url) -> bool:
    """True for an http:// or https:// address (a served step checker), False for a file path."""
    return isinstance(path_or_url, str) and path_or_url.strip().lower().startswith(("http://", "https://"))


class RemoteStepChecker:
    """--rrl_step_checker http(s)://host:port/path: a process reward model served over HTTP, the way
    OpenRLHF's --reward.remote_url serves a reward model. Same call as FileStepChecker, plus check_many,
    which RetrospectiveReplay uses to check all of a step's failed rollouts in one request.

    Protocol: POST, Content-Type application/json, body
        {"prompt_ids": [[int, ...], ...], "response_ids": [[int, ...], ...], "labels": [label, ...]}
    (one entry per response, in order; response_ids exclude the prompt); reply HTTP 200 with
        {"verified_tokens": [int, ...]}                 optionally  "steps": [int, ...]
    of the same length: how many leading tokens of each response are verified correct (null: cannot
    tell) and, if given, how many steps. Token ids, not text: the replay buffer holds token ids and the
    core has no tokenizer; a server that needs text decodes them with the policy's tokenizer.

    A connection error, timeout or 5xx reply is retried `retries` times, waiting backoff_s, 2*backoff_s,
    ...; then, or at once on a 4xx or a malformed reply, one RRLConfigError line naming
    --rrl_step_checker and the URL. Nothing is contacted until the first check.
    """

    def __init__(self, url: str, timeout_s: float = 60.0, retries: int = 3, backoff_s: float = 0.5):
        self.url = url.strip()
        self.timeout_s = timeout_s
        self.retries = max(0, int(retries))
        self.backoff_s = backoff_s

    def __call__(self, prompt_ids, response_ids, label):
        return self.check_many([prompt_ids], [response_ids], [label])[0]

    def check_many(self, prompt_ids, response_ids, labels) -> list:
        """One verdict per response (verified tokens, (tokens, steps), or None), in one POST."""
        n = len(response_ids)
        if n == 0:
            return []
        body = json.dumps({"prompt_ids": [as_list(p) for p in prompt_ids],
                           "response_ids": [as_list(r) for r in response_ids],
                           "labels": list(labels)}, default=str).encode()
        return self._parse(self._post(body), n)

    def _fail(self, what: str):
        raise RRLConfigError(f"--rrl_step_checker: {self.url}: {what}")

    def _post(self, body: bytes) -> bytes:
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            req = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                    return r.read()
            except urllib.error.HTTPError as e:
                e.close()
                if e.code < 500:  # the request itself is wrong: retrying cannot help
                    self._fail(f"HTTP {e.code} {e.reason}")
                last = f"HTTP {e.code} {e.reason}"
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:  # refused, DNS, timeout
                last = f"{type(e).__name__}: {getattr(e, 'reason', None) or e}"
        self._fail(f"no answer after {self.retries + 1} tries ({last})")

    def _parse(self, raw: bytes, n: int) -> list:
        expected = (f'expected JSON {{"verified_tokens": [{n} ints >= 0 or null]}}, optionally with '
                    f'"steps" of the same length')
        try:
            d = json.loads(raw)
        except ValueError:
            d = None
        tokens = d.get("verified_tokens") if isinstance(d, dict) else None
        steps = d.get("steps") if isinstance(d, dict) else None

        def ok(xs):
            return isinstance(xs, list) and len(xs) == n and all(x is None or _is_count(x) for x in xs)

        if not ok(tokens) or (steps is not None and not ok(steps)):
            shown = raw[:80].decode("utf-8", "replace")
            self._fail(f"malformed reply {shown!r}; {expected}")
        return list(tokens) if steps is None else list(zip(tokens, steps))


def load_step_checker(path_or_url: str) -> FileStepChecker | RemoteStepChecker:
    """The step checker of --rrl_step_checker, ready to call: a served one for an http(s) URL, else the
    step_checker of a .py file; RRLConfigError naming the flag when unusable."""
    if is_url(path_or_url):
        return RemoteStepChecker(path_or_url)
    return FileStepChecker(path_or_url)
