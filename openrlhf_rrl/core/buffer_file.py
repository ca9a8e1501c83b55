"""The buffer on disk: its JSON state, and the buffer file (header, one entry per line, end marker).

Part of ReplayBuffer (core/buffer.py), which mixes this in; loading rebuilds the store through its
own _place and _remember, so a loaded buffer holds exactly what admission allows under this run's
flags. Writes go through openrlhf_rrl/atomic.py: a crash or a full disk leaves the previous file.
"""

from __future__ import annotations

import heapq
import json
import os

from ..atomic import atomic_write
from .errors import BufferFileError, RRLConfigError
from .state import RetainedState

FILE_FORMAT = "openrlhf-rrl-buffer"
FILE_VERSION = 1


class BufferFile:
    """state_dict / load_state_dict and the buffer file (mixed into ReplayBuffer)."""

    def state_dict(self) -> dict:
        """Everything, JSON-able: entries (with their slots), counters, retired keys and the rng state."""
        rng = self._rng.getstate()
        entries = []
        for key, state in self._entries.items():
            d = state.to_json()
            d["slot"] = self._slot[key]
            entries.append(d)
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "config": self.config_dict(),
            "counters": dict(self.counters),
            "retired_counts": dict(self.retired_counts),
            "remembered": [[k, r] for k, r in self._remembered.items()] + [[k, "banned"] for k in self._banned],
            "review_marks": {p: dict(m) for p, m in self.review_marks.items()},
            "rng": [rng[0], list(rng[1]), rng[2]],
            "entries": entries,
        }

    def load_state_dict(self, d: dict) -> None:
        """Restore from state_dict(); all or nothing (a bad dict raises ValueError, the buffer is unchanged).

        This buffer's own config (capacity, temperature, ...) wins over the saved one, so a resumed run
        can change flags; entries beyond a smaller capacity are evicted lowest priority first.
        """
        fresh = type(self)(**self.config_dict())
        fresh._load(d)
        self.__dict__.update(fresh.__dict__)

    def _load(self, d: dict) -> None:
        if not isinstance(d, dict):
            raise ValueError("buffer state: expected a JSON object")
        try:
            rng = d["rng"]
            self._rng.setstate((int(rng[0]), tuple(int(x) for x in rng[1]), rng[2]))
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ValueError(f"rng: bad random state ({e})") from None
        for name, target in (("counters", self.counters), ("retired_counts", self.retired_counts)):
            src = d.get(name, {})
            if not isinstance(src, dict) or not all(isinstance(v, int) for v in src.values()):
                raise ValueError(f"{name}: expected an object of integers")
            target.update(src)
        for item in d.get("remembered", []):
            if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
                raise ValueError("remembered: expected [key, reason] pairs")
            self._remember(item[0], item[1])
        marks = d.get("review_marks", {})
        if not isinstance(marks, dict) or not all(
                isinstance(m, dict) and isinstance(m.get("offset"), int) and isinstance(m.get("lines"), int)
                and isinstance(m.get("sha256"), str) for m in marks.values()):
            raise ValueError("review_marks: expected {path: {offset, lines, sha256}}")
        self.review_marks = {str(p): dict(m) for p, m in marks.items()}
        self._load_entries(d.get("entries", []))

    def _load_entries(self, items) -> None:
        """The saved entries that fit this buffer's caps and admission, best first, in their saved slots."""
        states, slots = [], []
        for i, e in enumerate(items):
            if not isinstance(e, dict):
                raise ValueError(f"entry {i}: expected a JSON object")
            e = dict(e)
            slot = e.pop("slot", None)
            try:
                s = RetainedState.from_json(e)
            except ValueError as err:
                raise ValueError(f"entry {i}: {err}") from None
            states.append(s)
            slots.append(slot)
        # Which entries fit this buffer's caps: best first (a reviewer's banned flag sends an entry away).
        keep, seen, per_prompt = set(), set(), {}
        order = sorted(range(len(states)), key=lambda i: (states[i].pinned, self.priority(states[i])), reverse=True)
        for i in order:
            s = states[i]
            if s.key in seen:
                continue
            seen.add(s.key)
            if s.banned:
                self._remember(s.key, "banned")
                self.retired_counts["banned"] += 1
            elif s.key in self._banned:  # banned after this entry was written (a review applied later)
                continue
            elif self.admission_problem(s) is not None:  # e.g. a hand-edited file, or a smaller length budget
                self.counters["refused_invalid"] += 1
            elif len(keep) < self.capacity and per_prompt.get(s.prompt_key, 0) < self.per_prompt_capacity:
                keep.add(i)
                per_prompt[s.prompt_key] = per_prompt.get(s.prompt_key, 0) + 1
            else:
                self.retired_counts["evicted"] += 1
        used = set()
        for i in sorted(keep):
            slot = slots[i]
            if isinstance(slot, int) and 0 <= slot < self.capacity and slot not in used:
                used.add(slot)
            else:
                slots[i] = None
        self._high = max(used) + 1 if used else 0
        self._free = [s for s in range(self._high) if s not in used]
        heapq.heapify(self._free)
        for i in sorted(keep):  # saved order: dict order and tie-breaks come back the same
            slot = slots[i] if slots[i] is not None else self._take_slot()
            self._place(states[i], slot)

    def save(self, path: str, extra: dict | None = None) -> None:
        """Atomic JSON-lines write: header, one entry per line, {"end": n}. A failure leaves the old file."""
        sd = self.state_dict()
        entries = sd.pop("entries")
        if extra is not None:
            sd["extra"] = extra

        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(_encode_line(sd))
                for e in entries:
                    f.write(_encode_line(e))
                f.write(_encode_line({"end": len(entries)}))

        atomic_write(path, write)

    @staticmethod
    def read_file(path: str) -> tuple[dict, dict | None]:
        """(state_dict, extra) of a buffer file; BufferFileError naming the file when it is unusable."""
        path = os.fspath(path)
        try:
            with open(path, "r", encoding="utf-8") as f:
                lines = f.read().split("\n")
        except FileNotFoundError:
            raise BufferFileError(f"{path}: no such buffer file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise BufferFileError(f"{path}: cannot read buffer file ({e})") from None
        if lines and lines[-1] == "":
            lines.pop()
        if not lines:
            raise BufferFileError(f"{path}: empty buffer file")
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError:
            raise BufferFileError(f"{path}: not an {FILE_FORMAT} file (line 1 is not valid JSON)") from None
        if not isinstance(header, dict) or header.get("format") != FILE_FORMAT:
            raise BufferFileError(f"{path}: not an {FILE_FORMAT} file (line 1 has no format {FILE_FORMAT!r})")
        if header.get("version") != FILE_VERSION:
            raise BufferFileError(
                f"{path}: unsupported buffer file version {header.get('version')!r} (this code reads {FILE_VERSION})")
        entries = []
        end = None
        for n, line in enumerate(lines[1:], start=2):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                raise BufferFileError(f"{path}: truncated or corrupted buffer file (line {n} is not valid JSON)") from None
            if isinstance(obj, dict) and set(obj) == {"end"}:
                if n != len(lines):
                    raise BufferFileError(f"{path}: corrupted buffer file (data after the end marker on line {n})")
                end = obj["end"]
                break
            entries.append(obj)
        if end is None:
            raise BufferFileError(f"{path}: truncated buffer file (no end marker after line {len(lines)})")
        if end != len(entries):
            raise BufferFileError(f"{path}: truncated or corrupted buffer file (end marker says {end!r} entries, found {len(entries)})")
        extra = header.pop("extra", None)
        header["entries"] = entries
        return header, extra

    @classmethod
    def load(cls, path: str) -> "BufferFile":
        """A new buffer (of the class this is called on: ReplayBuffer) with the file's config and contents."""
        sd, _ = cls.read_file(path)
        cfg = sd.get("config")
        try:
            buf = cls(**cfg)
        except (TypeError, RRLConfigError) as e:
            raise BufferFileError(f"{os.fspath(path)}: bad buffer config in header ({e})") from None
        buf.load_into(path, _state=sd)
        return buf

    def load_into(self, path: str, _state: dict | None = None) -> dict | None:
        """Replace this buffer's contents by the file's (this buffer's config is kept); returns the
        file's `extra` dict. The file is never modified; on any error this buffer is unchanged."""
        extra = None
        if _state is None:
            _state, extra = self.read_file(path)
        try:
            self.load_state_dict(_state)
        except ValueError as e:
            raise BufferFileError(f"{os.fspath(path)}: corrupted buffer file ({e})") from None
        return extra


def _encode_line(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n"
