"""Cut control on the buffer: move an entry's cut along its source response, as a new entry.

Part of ReplayBuffer (core/buffer.py), which mixes this in; it works on the store's internals
(_entries, _remove, _place, _reprioritise, admission_problem). Where to move a cut is decided elsewhere
(cuts.moved_cut, after a restart group came back all-fail or all-pass); here the moved entry gets its
new key, a fresh restart record, and merges into an entry already at the new cut.
"""

from __future__ import annotations

from .retirement import REMEMBERED_REASONS
from .state import RetainedState


class CutControl:
    """Moving entries' cuts (mixed into ReplayBuffer)."""

    def _moved_state(self, key: str, new_len: int, step: int) -> RetainedState | None:
        s = self._entries.get(key)
        if s is None or s.pinned or not isinstance(new_len, int) or isinstance(new_len, bool):
            return None
        c = len(s.prefix_ids)
        if new_len == c or not 1 <= new_len <= c + len(s.source_ids):
            return None
        full = s.prefix_ids + s.source_ids
        lp = s.prefix_logprobs
        new = RetainedState(
            prompt_key=s.prompt_key, prompt_ids=s.prompt_ids, prefix_ids=full[:new_len],
            # log-probs are kept for the part they cover; a later cut has none for its new tokens
            prefix_logprobs=lp[:new_len] if lp is not None and new_len <= len(lp) else None,
            label=s.label, score=s.score, step_found=s.step_found, last_seen=max(s.last_seen, step),
            cut_fraction=new_len / max(1, s.source_len, len(full)), source_len=s.source_len,
            source_reward=s.source_reward, source_ids=full[new_len:], handicap=s.handicap)
        if new.key in self._banned or new.key in self._remembered or self.admission_problem(new) is not None:
            return None
        return new

    def move_target(self, key: str, new_len: int) -> str | None:
        """The key entry `key` would have with its cut moved to `new_len` response tokens, or None when it
        cannot move there: unknown or pinned entry, new_len outside 1..len(prefix)+len(source_ids) or equal to
        the current cut, or a target the buffer refuses (banned, retired for good, invalid)."""
        new = self._moved_state(key, new_len, 0)
        return None if new is None else new.key

    def move_cut(self, key: str, new_len: int, step: int, remember_old: str | None = None) -> str | None:
        """Move an entry's cut along its source response (prefix + source_ids) to `new_len` response tokens.

        The restart record (restarts, successes, mixed groups: the posterior) starts afresh at the new cut;
        critic value, entropy and verified steps at the cut are unknown there. A move onto a (prompt, prefix)
        already in the buffer merges into that entry, which keeps its own record (it was observed at that
        very cut). remember_old ("solved" or "dead") refuses the old cut if a scorer proposes it again,
        without counting a retirement. Returns the entry's key afterwards, or None (nothing changed) where
        move_target is None."""
        if remember_old is not None and remember_old not in REMEMBERED_REASONS:
            raise ValueError(f"move_cut: remember_old must be one of {sorted(REMEMBERED_REASONS)}, got {remember_old!r}")
        new = self._moved_state(key, new_len, step)
        if new is None:
            return None
        existing = self._entries.get(new.key)
        slot = self._remove(key, None, free_slot=existing is not None)
        if remember_old is not None:
            self._remember(key, remember_old)
        self.counters["cut_moves"] += 1
        if existing is None:
            self._place(new, slot)
            return new.key
        self.counters["merged"] += 1
        existing.score = max(existing.score, new.score)
        existing.last_seen = max(existing.last_seen, new.last_seen)
        if len(new.source_ids) > len(existing.source_ids):
            existing.source_ids = new.source_ids
        self._reprioritise(new.key)
        return new.key
