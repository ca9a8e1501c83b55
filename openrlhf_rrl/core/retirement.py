"""Retirement: when an entry leaves the buffer for good, and which keys are refused if they come back.

Part of ReplayBuffer (core/buffer.py), which mixes this in; it works on the store's internals
(_entries, _by_prompt, _remove, _remembered, _banned). Why each rule exists (docs/how-rrl-works.md,
"The buffer"): an entry whose restarts all succeed teaches nothing more ("solved"), one whose restarts
never succeed is a dead end ("dead"), a prompt the policy now solves from scratch needs no head start
("prompt_solved"), and candidates no restart ever got round to are what a taken-over buffer is full
of ("untried"). Solved, dead and banned keys are remembered, so re-testing them wastes no restarts.
"""

from __future__ import annotations

from typing import Iterable, Sequence

RETIRE_REASONS = ("solved", "dead", "prompt_solved", "evicted", "banned", "stale", "untried")
# Keys retired for these reasons are refused if they come back: re-testing them wastes restarts.
REMEMBERED_REASONS = frozenset(("solved", "dead", "banned"))


class RetirementRules:
    """The buffer's retirement rules and its memory of retired keys (mixed into ReplayBuffer)."""

    def _remember(self, key: str, reason: str) -> None:
        if reason == "banned":
            self._banned[key] = None
            self._remembered.pop(key, None)
            return
        self._remembered[key] = reason
        self._remembered.move_to_end(key)
        while len(self._remembered) > self.max_remembered:
            self._remembered.popitem(last=False)

    def is_retired(self, key: str) -> str | None:
        """The reason a key was retired for good (solved, dead, banned), or None."""
        if key in self._banned:
            return "banned"
        return self._remembered.get(key)

    def retire(self, key: str, reason: str) -> bool:
        if reason not in RETIRE_REASONS:
            raise ValueError(f"unknown retire reason {reason!r} (expected one of {', '.join(RETIRE_REASONS)})")
        if key not in self._entries:
            return False
        self._remove(key, reason)
        return True

    def record_restart(self, key: str, rewards: Sequence[float], step: int,
                       success_threshold: float = 0.5, retire: bool = True) -> str | None:
        """Count one restart group from `key` (a continuation succeeds when reward >= threshold).

        Retires the entry as "solved" when every continuation of this group succeeded (nothing
        left to learn there) and as "dead" after retire_dead_after continuations with no success;
        retire=False only counts (the caller moves the cut instead, see move_cut).
        Returns the retire reason or None; an unknown key is a no-op.
        """
        state = self._entries.get(key)
        if state is None:
            return None
        n = len(rewards)
        wins = sum(1 for r in rewards if r >= success_threshold)
        state.restarts += 1
        state.continuations += n
        state.successes += wins
        if 0 < wins < n:
            state.mixed_groups += 1
        state.last_seen = max(state.last_seen, step)
        self.counters["restarts"] += 1
        reason = None
        if retire and not state.pinned:
            if self.retire_solved_restart and n > 0 and wins == n:
                reason = "solved"
            elif self.retire_dead_after > 0 and state.continuations >= self.retire_dead_after and state.successes == 0:
                reason = "dead"
        if reason is not None:
            self._remove(key, reason)
        else:
            self._reprioritise(key)
        return reason

    def record_fresh(self, prompt_key: str, success_rate: float, step: int) -> int:
        """A fresh group of this prompt solved it at `success_rate`; at retire_solved_rate or above
        its entries retire ("prompt_solved"): the policy no longer needs a head start there.
        Handicaps (failed prefixes kept to make a mostly passing prompt harder) stay."""
        if success_rate < self.retire_solved_rate:
            return 0
        n = 0
        for state in self.prompt_entries(prompt_key):
            if not state.pinned and not state.handicap:
                self._remove(state.key, "prompt_solved")
                n += 1
        return n

    def retire_missing_prompts(self, known_prompt_keys: Iterable[str]) -> int:
        """Retire ("stale") every entry whose prompt is no longer in the data set, pinned ones too: the
        data set decides what is trained on, and a prompt removed from it (a wrong label, say) must
        not come back through the buffer. Call it after resuming with a changed data set."""
        known = known_prompt_keys if isinstance(known_prompt_keys, (set, frozenset, dict)) else set(known_prompt_keys)
        gone = [key for pk, keys in self._by_prompt.items() if pk not in known for key in keys]
        for key in gone:
            self._remove(key, "stale")
        return len(gone)

    def retire_untried(self, step: int, ttl: int) -> int:
        """Retire ("untried") unpinned entries never restarted whose last sighting (found, found again, or
        cut moved) is more than `ttl` steps before `step`: candidates that restarts never got round to
        are what a taken-over buffer is full of. ttl <= 0 disables."""
        if ttl <= 0:
            return 0
        old = [s.key for s in self._entries.values() if s.restarts == 0 and not s.pinned and step - s.last_seen > ttl]
        for key in old:
            self._remove(key, "untried")
        return len(old)
