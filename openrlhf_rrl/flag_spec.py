"""How one RRL flag's value is parsed and checked, whichever front end read it (config.py's `flag`).

argparse keeps flag values as strings; a FlagSpec turns a string (or a value from a dict or a buffer
file) into the typed value, or raises the one-line RRLConfigError naming the flag.
"""

from __future__ import annotations

import math
import os

from .core.errors import RRLConfigError
from .core.scoring import SCORER_NAMES
from .core.step_checker import is_url


class FlagSpec:
    def __init__(self, kind: str, expected: str, help: str, lo=None, hi=None, lo_open=False, choices=None,
                 none_ok=False):
        self.kind, self.expected, self.help = kind, expected, help
        self.lo, self.hi, self.lo_open, self.choices, self.none_ok = lo, hi, lo_open, choices, none_ok

    def fail(self, name, v):
        shown = v if isinstance(v, str) and v.strip() else repr(v)
        raise RRLConfigError(f"--rrl_{name}: expected {self.expected}, got {shown}")

    def parse(self, name: str, v):
        if self.none_ok and (v is None or (isinstance(v, str) and v.strip().lower() in ("", "none", "null"))):
            return None
        k = self.kind
        if k == "flag":
            if isinstance(v, bool):
                return v
            if isinstance(v, str) and v.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return v.strip().lower() in ("1", "true", "yes", "on")
            self.fail(name, v)
        if k == "share":
            if isinstance(v, str) and v.strip().lower() == "auto":
                return "auto"
            x = _to_float(v)
            if x is None or not 0.0 <= x <= 1.0:
                self.fail(name, v)
            return x
        if k == "str":
            if not isinstance(v, str) or (self.choices and v not in self.choices):
                self.fail(name, v)
            return v
        if k == "pyfile":
            if not isinstance(v, str) or not v.strip():
                self.fail(name, v)
            if is_url(v):  # a served checker: contacted at the first check, not while parsing
                return v.strip()
            if not os.path.isfile(v):
                raise RRLConfigError(f"--rrl_{name}: step checker file not found: {v}")
            return v
        if k == "scorer":
            if not isinstance(v, str):
                self.fail(name, v)
            if v.startswith("file:"):
                if not os.path.isfile(v[5:]):
                    raise RRLConfigError(f"--rrl_scorer: scorer file not found: {v[5:]}")
                return v
            if v not in SCORER_NAMES:
                self.fail(name, v)
            return v
        if k == "ids":
            if isinstance(v, str):
                parts = [p for p in v.replace(" ", ",").split(",") if p]
                try:
                    return tuple(int(p) for p in parts)
                except ValueError:
                    self.fail(name, v)
            if isinstance(v, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                return tuple(v)
            self.fail(name, v)
        if k == "int":
            x = _to_int(v)
        else:
            x = _to_float(v)
        if x is None or (self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo)) or (
                self.hi is not None and x > self.hi):
            self.fail(name, v)
        return x


def _to_int(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            return None
    return None


def _to_float(v):
    if isinstance(v, bool):
        return None
    try:
        x = float(v) if isinstance(v, (int, float, str)) else None
    except ValueError:
        return None
    return x if x is not None and math.isfinite(x) else None
