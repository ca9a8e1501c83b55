"""The replay buffer: retained states, their priorities, eviction, retirement, and the buffer file.

Why the rules are what they are (docs/how-rrl-works.md, "The buffer"): the main way replay fails is buffer
takeover - candidates arrive faster than restarts can test them and the buffer fills with untried
or dead states. So every restart decays an entry's priority, entries whose restarts all succeed
(zero gradient) or never succeed (dead end) retire, a prompt solved from scratch retires its
entries, and retired solved/dead/banned keys are remembered so they are not admitted again.
A reviewer's ban is remembered for good (never trimmed like the others): a banned entry is never
replayed again. A state that cannot be restarted (empty prefix, a prefix over the length budget,
a stop token inside the prefix) is refused at admission, whatever produced it. Entries never
restarted retire ("untried") after a number of steps (retire_untried), and cut control may move an
entry's cut along its source response (move_cut: a new key, the restart record reset, merged into an
entry already at the new cut).

All operations a training step does per entry (add, evict, sample one) are O(log n): a sum tree
for proportional sampling and a lazy-deletion min-heap for "lowest priority" eviction.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import random
import tempfile
from collections import OrderedDict
from typing import Iterable, Iterator, Sequence

from .errors import BufferFileError, RRLConfigError
from .state import RetainedState
from .sumtree import SumTree

FILE_FORMAT = "openrlhf-rrl-buffer"
FILE_VERSION = 1

RETIRE_REASONS = ("solved", "dead", "prompt_solved", "evicted", "banned", "stale", "untried")
# Keys retired for these reasons are refused if they come back: re-testing them wastes restarts.
_REMEMBERED_REASONS = frozenset(("solved", "dead", "banned"))
_MAX_EXP = 300.0  # exp(+-300) keeps a sum of 1e6 priorities finite and every priority > 0


class ReplayBuffer:
    """Prioritised store of RetainedState entries, keyed by sha1(prompt ids + prefix ids).

    priority = exp(score / temperature) * restart_decay ** restarts, x10 when pinned.
    Pinned entries are evicted last and never retired automatically; banned ones never enter.
    """

    def __init__(
        self,
        capacity: int = 4096,
        per_prompt_capacity: int = 8,
        temperature: float = 1.0,
        restart_decay: float = 0.7,
        retire_solved_rate: float = 0.75,
        retire_dead_after: int = 16,
        seed: int = 0,
        retire_solved_restart: bool = True,
        max_prefix_tokens: int | None = None,
        stop_token_ids: Iterable[int] = (),
    ):
        _require(isinstance(capacity, int) and not isinstance(capacity, bool) and capacity >= 0,
                 "--rrl_buffer_capacity", "a non-negative integer", capacity)
        _require(isinstance(per_prompt_capacity, int) and not isinstance(per_prompt_capacity, bool)
                 and per_prompt_capacity >= 1,
                 "--rrl_per_prompt_capacity", "an integer >= 1", per_prompt_capacity)
        _require(_num(temperature) and temperature > 0, "--rrl_temperature", "a number > 0", temperature)
        _require(_num(restart_decay) and 0 < restart_decay <= 1, "--rrl_restart_decay",
                 "a number in (0, 1]", restart_decay)
        _require(_num(retire_solved_rate) and retire_solved_rate >= 0, "--rrl_retire_solved_rate",
                 "a number in [0, 1] (above 1 disables)", retire_solved_rate)
        _require(isinstance(retire_dead_after, int) and not isinstance(retire_dead_after, bool)
                 and retire_dead_after >= 0, "--rrl_retire_dead_after",
                 "a non-negative integer (0 disables)", retire_dead_after)
        _require(max_prefix_tokens is None or (isinstance(max_prefix_tokens, int) and not isinstance(
                 max_prefix_tokens, bool) and max_prefix_tokens >= 0), "--rrl_max_prefix_tokens",
                 "an integer >= 0 (0 means no limit)", max_prefix_tokens)
        stop_token_ids = tuple(stop_token_ids or ())
        _require(all(isinstance(t, int) and not isinstance(t, bool) for t in stop_token_ids),
                 "stop_token_ids", "token ids (ints)", stop_token_ids)
        self.capacity = capacity
        self.per_prompt_capacity = per_prompt_capacity
        self.temperature = float(temperature)
        self.restart_decay = float(restart_decay)
        self.retire_solved_rate = float(retire_solved_rate)
        self.retire_dead_after = retire_dead_after
        self.retire_solved_restart = bool(retire_solved_restart)
        self.seed = seed
        self.max_prefix_tokens = max_prefix_tokens or None  # 0 and None: no limit, as the flag
        self.stop_token_ids = stop_token_ids
        self._stop_set = frozenset(stop_token_ids)
        self.max_remembered = max(1024, 4 * capacity)
        self._reset()

    # ---------------------------------------------------------------- internals
    def _reset(self):
        self._rng = random.Random(self.seed)
        self._entries: dict[str, RetainedState] = {}
        self._by_prompt: dict[str, list[str]] = {}
        self._slot: dict[str, int] = {}
        self._tree = SumTree(self.capacity)
        self._slot_key: list[str | None] = [None] * self._tree.size
        self._free: list[int] = []  # freed slots below _high, a min-heap
        self._high = 0  # slots [0, _high) have been used
        self._rank: dict[str, tuple] = {}  # key -> (pinned, priority, last_seen, slot, key)
        self._heap: list[tuple] = []  # lazy: items whose tuple no longer equals _rank[key] are stale
        self._remembered: OrderedDict[str, str] = OrderedDict()  # solved/dead keys, oldest trimmed first
        self._banned: dict[str, None] = {}  # a reviewer's bans: an ordered set, never trimmed
        self.retired_counts = {r: 0 for r in RETIRE_REASONS}
        self.counters = {"added": 0, "merged": 0, "rejected": 0, "refused_retired": 0, "refused_invalid": 0,
                         "restarts": 0, "cut_moves": 0}
        # review file -> how much of it is applied (core/review.py); saved with the entries it changed,
        # so a run resumed from an older checkpoint re-applies exactly the actions made after it
        self.review_marks: dict[str, dict] = {}

    def priority(self, state: RetainedState) -> float:
        if state.banned:
            return 0.0
        x = state.score / self.temperature
        x = _MAX_EXP if x > _MAX_EXP else (-_MAX_EXP if x < -_MAX_EXP else x)
        p = math.exp(x) * self.restart_decay ** state.restarts
        if state.pinned:
            p *= 10.0
        return p if p > 1e-300 else 1e-300

    def _make_rank(self, state: RetainedState, slot: int) -> tuple:
        return (state.pinned, self.priority(state), state.last_seen, slot, state.key)

    def _place(self, state: RetainedState, slot: int) -> None:
        key = state.key
        self._entries[key] = state
        self._by_prompt.setdefault(state.prompt_key, []).append(key)
        self._slot[key] = slot
        self._slot_key[slot] = key
        rank = self._make_rank(state, slot)
        self._rank[key] = rank
        heapq.heappush(self._heap, rank)
        self._tree.set(slot, rank[1])

    def _take_slot(self) -> int:
        if self._free:
            return heapq.heappop(self._free)
        self._high += 1
        return self._high - 1

    def _remove(self, key: str, reason: str | None, free_slot: bool = True) -> int:
        state = self._entries.pop(key)
        keys = self._by_prompt[state.prompt_key]
        keys.remove(key)
        if not keys:
            del self._by_prompt[state.prompt_key]
        slot = self._slot.pop(key)
        del self._rank[key]
        self._slot_key[slot] = None
        if free_slot:
            self._tree.set(slot, 0.0)
            heapq.heappush(self._free, slot)
        if reason is not None:
            self.retired_counts[reason] = self.retired_counts.get(reason, 0) + 1
            if reason in _REMEMBERED_REASONS:
                self._remember(key, reason)
        self._maybe_compact_heap()
        return slot

    def _remember(self, key: str, reason: str) -> None:
        if reason == "banned":
            self._banned[key] = None
            self._remembered.pop(key, None)
            return
        self._remembered[key] = reason
        self._remembered.move_to_end(key)
        while len(self._remembered) > self.max_remembered:
            self._remembered.popitem(last=False)

    def _reprioritise(self, key: str) -> None:
        state = self._entries[key]
        slot = self._slot[key]
        rank = self._make_rank(state, slot)
        if rank != self._rank[key]:
            self._rank[key] = rank
            heapq.heappush(self._heap, rank)
            self._tree.set(slot, rank[1])
            self._maybe_compact_heap()

    def _maybe_compact_heap(self) -> None:
        if len(self._heap) > 4 * len(self._rank) + 64:
            self._heap = list(self._rank.values())
            heapq.heapify(self._heap)

    def _lowest(self) -> tuple | None:
        heap, rank = self._heap, self._rank
        while heap:
            top = heap[0]
            if rank.get(top[4]) == top:
                return top
            heapq.heappop(heap)
        return None

    # ---------------------------------------------------------------- reading
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key) -> bool:
        return key in self._entries

    def get(self, key: str) -> RetainedState | None:
        return self._entries.get(key)

    def entries(self) -> Iterator[RetainedState]:
        return iter(list(self._entries.values()))

    def prompt_entries(self, prompt_key: str) -> list[RetainedState]:
        return [self._entries[k] for k in self._by_prompt.get(prompt_key, ())]

    def prompt_keys(self) -> list[str]:
        return list(self._by_prompt)

    def is_retired(self, key: str) -> str | None:
        """The reason a key was retired for good (solved, dead, banned), or None."""
        if key in self._banned:
            return "banned"
        return self._remembered.get(key)

    def banned_keys(self) -> list[str]:
        return list(self._banned)

    def admission_problem(self, state: RetainedState) -> str | None:
        """Why this state can never be a restart point, or None. Checked for every state that enters,
        from a scorer, a user's file scorer or a (hand-edited) buffer file alike."""
        n = len(state.prefix_ids)
        if n == 0:
            return "empty prefix (a restart from it is a fresh rollout)"
        if self.max_prefix_tokens is not None and n > self.max_prefix_tokens:
            # refused, not clipped: a clipped prefix is a cut no scorer chose, with a score it never earned
            return f"prefix of {n} tokens exceeds --rrl_max_prefix_tokens {self.max_prefix_tokens}"
        if self._stop_set and not self._stop_set.isdisjoint(state.prefix_ids):  # one C-level pass
            i, t = next((i, t) for i, t in enumerate(state.prefix_ids) if t in self._stop_set)
            return f"stop token {t} inside the prefix at position {i} (a restart after it could only stop)"
        return None

    # ---------------------------------------------------------------- writing
    def add(self, state: RetainedState) -> bool:
        """Admit a state; True when its key is in the buffer afterwards (new or merged).

        A duplicate merges into the existing entry (max score, the entry's restart counts kept).
        When the prompt or the buffer is full the lowest-priority entry (pinned last) is evicted,
        unless the newcomer ranks no higher, in which case the newcomer is rejected.
        """
        if not math.isfinite(state.score):
            raise ValueError(f"ReplayBuffer.add: score must be finite, got {state.score!r}")
        if self.admission_problem(state) is not None:
            self.counters["refused_invalid"] += 1
            return False
        key = state.key
        old = self._entries.get(key)
        if old is not None:
            self.counters["merged"] += 1
            if state.banned:
                self.ban(key)
                return False
            changed = False
            if state.score > old.score:
                old.score = state.score
                changed = True
            if state.last_seen > old.last_seen:
                old.last_seen = state.last_seen
                changed = True
            if state.pinned and not old.pinned:
                old.pinned = True
                changed = True
            if len(state.source_ids) > len(old.source_ids):  # more room for cut control; priority unchanged
                old.source_ids = state.source_ids
            if changed:
                self._reprioritise(key)
            return True
        if key in self._remembered or key in self._banned:
            self.counters["refused_retired"] += 1
            return False
        if state.banned:
            self._remember(key, "banned")
            self.retired_counts["banned"] += 1
            return False
        if self.capacity == 0:
            self.counters["rejected"] += 1
            return False
        new_rank = (state.pinned, self.priority(state))
        victim = None
        same_prompt = self._by_prompt.get(state.prompt_key)
        if same_prompt is not None and len(same_prompt) >= self.per_prompt_capacity:
            victim = min(self._rank[k] for k in same_prompt)
        elif len(self._entries) >= self.capacity:
            victim = self._lowest()
        if victim is not None:
            if new_rank <= victim[:2]:
                self.counters["rejected"] += 1
                return False
            # the newcomer takes the victim's slot: one tree update instead of two
            slot = self._remove(victim[4], "evicted", free_slot=False)
        else:
            slot = self._take_slot()
        self._place(state, slot)
        self.counters["added"] += 1
        return True

    def retire(self, key: str, reason: str) -> bool:
        if reason not in RETIRE_REASONS:
            raise ValueError(f"unknown retire reason {reason!r} (expected one of {', '.join(RETIRE_REASONS)})")
        if key not in self._entries:
            return False
        self._remove(key, reason)
        return True

    def pin(self, key: str, pinned: bool = True) -> bool:
        """A reviewer's 'keep this one': priority x10, evicted last, never retired automatically."""
        state = self._entries.get(key)
        if state is None:
            return False
        state.pinned = bool(pinned)
        self._reprioritise(key)
        return True

    def ban(self, key: str) -> bool:
        """A reviewer's 'never this one': removed, and refused if it is found again. A key not in the
        buffer (evicted since the reviewer saw it, or not found yet) is remembered all the same.
        True when an entry was removed."""
        if key in self._entries:
            self._entries[key].banned = True
            self._remove(key, "banned")
            return True
        self._remember(key, "banned")
        return False

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

    def refresh_score(self, key: str, score: float) -> bool:
        """Replace an entry's score (the Monte-Carlo scorer's restart pass rate) and its priority."""
        if not math.isfinite(score):
            raise ValueError(f"ReplayBuffer.refresh_score: score must be finite, got {score!r}")
        state = self._entries.get(key)
        if state is None:
            return False
        state.score = float(score)
        self._reprioritise(key)
        return True

    def update_priority(self, key: str) -> None:
        """Call after changing an entry's fields by hand (score, pinned, restarts)."""
        if key in self._entries:
            if self._entries[key].banned:
                self._remove(key, "banned")
            else:
                self._reprioritise(key)

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

    # ---------------------------------------------------------------- cut control
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
        if remember_old is not None and remember_old not in _REMEMBERED_REASONS:
            raise ValueError(f"move_cut: remember_old must be one of {sorted(_REMEMBERED_REASONS)}, got {remember_old!r}")
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

    def retire_stale(self, step: int, max_age: int) -> int:
        """Retire unpinned entries not found or restarted in the last max_age steps."""
        old = [s.key for s in self._entries.values() if not s.pinned and step - s.last_seen > max_age]
        for key in old:
            self._remove(key, "stale")
        return len(old)

    # ---------------------------------------------------------------- sampling
    def sample(self, k: int, rng=None, exclude_prompts: Iterable[str] = ()) -> list[RetainedState]:
        """k distinct entries drawn in turn proportional to priority (without replacement).

        `rng` is anything with .random() (random.Random, numpy Generator); default: the buffer's own.
        Entries of `exclude_prompts` are not drawn. Banned or retired entries are never in the tree.
        """
        if k <= 0 or not self._entries:
            return []
        rng = self._rng if rng is None else rng
        tree, slot_key, entries = self._tree, self._slot_key, self._entries
        zeroed: list[int] = []
        for pk in exclude_prompts:
            for key in self._by_prompt.get(pk, ()):
                slot = self._slot[key]
                tree.set(slot, 0.0)
                zeroed.append(slot)
        out = []
        try:
            k = min(k, len(entries))
            for i in range(k):
                total = tree.total()
                if total <= 0.0:
                    break
                slot = tree.find(rng.random() * total)
                out.append(entries[slot_key[slot]])
                if i + 1 < k:
                    tree.set(slot, 0.0)
                    zeroed.append(slot)
        finally:
            for slot in zeroed:
                tree.set(slot, self._rank[slot_key[slot]][1])
        return out

    # ---------------------------------------------------------------- state
    def config_dict(self) -> dict:
        return {
            "capacity": self.capacity,
            "per_prompt_capacity": self.per_prompt_capacity,
            "temperature": self.temperature,
            "restart_decay": self.restart_decay,
            "retire_solved_rate": self.retire_solved_rate,
            "retire_dead_after": self.retire_dead_after,
            "retire_solved_restart": self.retire_solved_restart,
            "seed": self.seed,
            "max_prefix_tokens": self.max_prefix_tokens,
            "stop_token_ids": list(self.stop_token_ids),
        }

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
        states, slots = [], []
        for i, e in enumerate(d.get("entries", [])):
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

    # ---------------------------------------------------------------- file
    def save(self, path: str, extra: dict | None = None) -> None:
        """Atomic JSON-lines write: header, one entry per line, {"end": n}. A failure leaves the old file."""
        sd = self.state_dict()
        entries = sd.pop("entries")
        if extra is not None:
            sd["extra"] = extra
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(_encode_line(sd))
                for e in entries:
                    f.write(_encode_line(e))
                f.write(_encode_line({"end": len(entries)}))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        try:  # make the rename itself durable; not possible everywhere
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass

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
    def load(cls, path: str) -> "ReplayBuffer":
        """A new buffer with the file's config and contents."""
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


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _require(ok: bool, flag: str, expected: str, got) -> None:
    if not ok:
        raise RRLConfigError(f"{flag}: expected {expected}, got {got!r}")
