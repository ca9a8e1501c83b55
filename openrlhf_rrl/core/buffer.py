"""The replay buffer: retained states, their priorities, admission, eviction and sampling.

Why the rules are what they are (docs/how-rrl-works.md, "The buffer"): the main way replay fails is buffer
takeover - candidates arrive faster than restarts can test them and the buffer fills with untried
or dead states. So every restart decays an entry's priority, a full buffer or prompt evicts its
lowest-priority entry (pinned last) for a better newcomer, and a state that cannot be restarted
(empty prefix, a prefix over the length budget, a stop token inside the prefix) is refused at
admission, whatever produced it. A reviewer's pin (x10, evicted last) and ban (never replayed) act here.

The rest of the buffer, one concept per file: retirement.py (when entries leave for good, and which
keys are refused if they come back), cut_control.py (moving an entry's cut along its source
response), buffer_file.py (its JSON state and the buffer file).

All operations a training step does per entry (add, evict, sample one) are O(log n): a sum tree
for proportional sampling and a lazy-deletion min-heap for "lowest priority" eviction.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import OrderedDict
from typing import Iterable, Iterator

from .buffer_file import FILE_FORMAT, FILE_VERSION, BufferFile
from .cut_control import CutControl
from .errors import RRLConfigError
from .retirement import REMEMBERED_REASONS, RETIRE_REASONS, RetirementRules
from .state import RetainedState
from .sumtree import SumTree

__all__ = ["FILE_FORMAT", "FILE_VERSION", "RETIRE_REASONS", "ReplayBuffer"]

_MAX_EXP = 300.0  # exp(+-300) keeps a sum of 1e6 priorities finite and every priority > 0


class ReplayBuffer(RetirementRules, CutControl, BufferFile):
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
            if reason in REMEMBERED_REASONS:
                self._remember(key, reason)
        self._maybe_compact_heap()
        return slot

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

    def banned_keys(self) -> list[str]:
        return list(self._banned)

    def admission_problem(self, state: RetainedState) -> str | None:
        """Why this state can never be a restart point, or None. Checked for every state that enters,
        from a scorer, a user's file scorer or a (hand-edited) buffer file alike."""
        n = len(state.prefix_ids)
        if n == 0 and not state.retry:
            return "empty prefix (a restart from it is a fresh rollout; only a retry entry keeps none)"
        if n and state.retry:
            return "a retry entry with a prefix (a retry restarts from the prompt itself)"
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
            return self._merge(old, state)
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

    def _merge(self, old: RetainedState, state: RetainedState) -> bool:
        """A state found again: the entry keeps the best score, the latest sighting and a pin; a ban
        removes it. True when the entry stays."""
        self.counters["merged"] += 1
        if state.banned:
            self.ban(old.key)
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
            self._reprioritise(old.key)
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


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _require(ok: bool, flag: str, expected: str, got) -> None:
    if not ok:
        raise RRLConfigError(f"{flag}: expected {expected}, got {got!r}")
