"""Where to cut a response. Pure functions returning sorted cut positions c; the kept prefix is response[:c].

Each reflects one source of "this point is worth restarting from": a step boundary (a finished
reasoning step), a fixed stride, a high critic value (PPO, the paper), a high-entropy token (ExTra:
cut just before the token the policy was unsure about), or the longest prefix a step checker
verified. clip_cuts applies the length limits every scorer shares.

Two rules of the passrate policy (Prefix Sampling) live here too: where to cut a failed response to
HANDICAP a mostly passing prompt (handicap_cut), and cut control, one step of moving an entry's cut
along its source response after a restart group that came back all-fail or all-pass (moved_cut).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence


def boundary_cuts(response_ids: Sequence[int], boundary_ids: Iterable[int]) -> list[int]:
    """Positions right after a boundary token (newline, step separator): restarts begin a fresh step."""
    b = set(boundary_ids)
    if not b:
        return []
    return [i + 1 for i, t in enumerate(response_ids) if t in b]


def every_k_cuts(n: int, k: int) -> list[int]:
    """Every k tokens (k, 2k, ... < n): the fallback when the task has no step boundary."""
    if k <= 0:
        raise ValueError(f"every_k_cuts: k must be >= 1, got {k}")
    return list(range(k, n, k))


def top_value_cuts(values: Sequence[float], k: int) -> list[int]:
    """The k positions of highest critic value; values[c] is V(prompt + response[:c]) as in OpenRLHF."""
    return _top_k(values, k)


def top_entropy_cuts(entropies: Sequence[float], k: int) -> list[int]:
    """The k positions before the most uncertain tokens (entropies[c] belongs to token c), so a
    restart re-decides exactly the choice the policy was unsure about."""
    return _top_k(entropies, k)


def grid_cuts(response_ids: Sequence[int], allowed: range, boundary_ids: Iterable[int] = (),
              stride: int = 32) -> list[int]:
    """The step grid inside `allowed`: positions after boundary tokens when any fall there, else every
    `stride` tokens (the reward scorer's cut points, and the steps cut control moves by)."""
    cuts = [c for c in boundary_cuts(response_ids, boundary_ids) if c in allowed]
    if not cuts:
        cuts = [c for c in every_k_cuts(len(response_ids), max(1, stride)) if c in allowed]
    return cuts


def handicap_cut(grid: Sequence[int], allowed: range, verified_tokens: int | None = None) -> int | None:
    """Where a FAILED response becomes a handicap (a failure prefix for a mostly passing prompt): the first
    grid cut after the part a step checker verified, so the prefix holds the first wrong step; without a
    checker, the middle grid cut (the middle of the allowed range if the grid is empty). Cut control then
    finds the depth at which the handicap gives mixed groups."""
    if not allowed:
        return None
    if verified_tokens is not None:
        after = [c for c in grid if c > verified_tokens]
        if after:
            return after[0]
        return None if verified_tokens >= allowed[-1] else allowed[-1]
    if grid:
        return grid[(len(grid) - 1) // 2]
    return allowed[(len(allowed) - 1) // 2]


def moved_cut(full_ids: Sequence[int], cut: int, later: bool, lo: int, hi: int, boundary_ids: Iterable[int] = (),
              stride: int = 32) -> int | None:
    """One step of cut control: the cut `later` or earlier along the source response `full_ids`, kept in
    [lo, hi]. A step is one reasoning step (the next or previous position after a boundary token) when the
    response has boundaries in [lo, hi], else `stride` tokens; past the last boundary the cut goes to the end
    of the range. None when the cut cannot move that way (already at the end)."""
    if hi < lo:
        return None
    stride = max(1, stride)
    grid = [p for p in boundary_cuts(full_ids, boundary_ids) if lo <= p <= hi]
    if later:
        if cut >= hi:
            return None
        if grid:
            return next((p for p in grid if p > cut), hi)
        return max(lo, min(hi, cut + stride))
    if cut <= lo:
        return None
    if grid:
        return next((p for p in reversed(grid) if p < cut), lo)
    return min(hi, max(lo, cut - stride))


def allowed_range(response_len: int, min_frac: float = 0.0, max_frac: float = 1.0, min_tokens: int = 1,
                  max_tokens: int | None = None, eos_pos: int | None = None) -> range:
    """All cuts clip_cuts keeps, as a range (O(1) membership, no list of every position)."""
    # the 1e-9 forgives float noise: 0.07 * 100 is 7.000000000000001, and a 7-token cut is meant to pass
    lo = max(1, min_tokens, math.ceil(min_frac * response_len - 1e-9))
    hi = min(response_len - 1, math.floor(max_frac * response_len + 1e-9))
    if max_tokens is not None and max_tokens > 0:
        hi = min(hi, max_tokens)
    if eos_pos is not None:
        hi = min(hi, eos_pos - 1)
    return range(lo, max(lo, hi + 1))


def clip_cuts(cuts: Iterable[int], response_len: int, min_frac: float = 0.0, max_frac: float = 1.0,
              min_tokens: int = 1, max_tokens: int | None = None, eos_pos: int | None = None) -> list[int]:
    """Keep cuts that leave something on both sides and respect the length limits.

    Drops 0 and the full length (nothing kept / nothing left to generate) and any cut at or after
    the EOS token (a restart there could only stop). max_tokens None or <= 0 means no limit.
    """
    ok = allowed_range(response_len, min_frac, max_frac, min_tokens, max_tokens, eos_pos)
    return sorted({int(c) for c in cuts if c in ok})


def _top_k(xs: Sequence[float], k: int) -> list[int]:
    if k <= 0:
        return []
    xs = [float(x) for x in xs]
    # NaN breaks sorting and inf is no real value or entropy: neither can be a top cut
    order = sorted((i for i in range(len(xs)) if math.isfinite(xs[i])), key=lambda i: (-xs[i], i))
    return sorted(order[:k])
