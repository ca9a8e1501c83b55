"""Throughput of ReplayBuffer insert and sample at 1k, 10k and 100k entries (target: >= 100,000 ops/s at 100k).

What is counted, exactly:
  * the buffer is first filled to capacity (not timed);
  * an "insert" is one ReplayBuffer.add(state) of a NEW key into the FULL buffer, with a score above the
    current minimum, so every insert evicts the lowest-priority entry (the worst case: heap pop, one
    sum-tree update, dict and per-prompt bookkeeping);
  * a "sample" is one ReplayBuffer.sample(1) (one proportional draw, sum-tree descent);
  * "mixed" alternates one insert and one sample; ops/s = (inserts + samples) / wall seconds.
RetainedState objects (and so their sha1 keys) are built before the clock starts: the timing is the
buffer's own work, not building states. Single process, time.perf_counter, best of --repeats runs.

    python benchmarks/bench_buffer.py            # 1k, 10k, 100k
    python benchmarks/bench_buffer.py --quick    # smaller, a few seconds
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from openrlhf_rrl.core.buffer import ReplayBuffer  # noqa: E402
from openrlhf_rrl.core.state import RetainedState  # noqa: E402


def make_states(n: int, n_prompts: int, score_lo: float, score_hi: float, rng: random.Random, tag: int):
    """n distinct states over n_prompts prompts; scores rise with i so each later one outranks the buffer's minimum."""
    out = []
    for i in range(n):
        p = rng.randrange(n_prompts)
        score = score_lo + (score_hi - score_lo) * (i + rng.random()) / n
        out.append(RetainedState(prompt_key=f"p{p}", prompt_ids=(p, 1, 2, 3), prefix_ids=(tag, i, 7, 8, 9),
                                 score=score))
    return out


def run(size: int, n_ops: int, repeats: int) -> dict:
    best = {"insert": 0.0, "sample": 0.0, "mixed": 0.0}
    evicted = 0
    for r in range(repeats):
        rng = random.Random(r)
        # ~1 prompt per 4 entries, per-prompt cap 16: the per-prompt path is taken now and then
        n_prompts = max(1, size // 4)
        buf = ReplayBuffer(capacity=size, per_prompt_capacity=16, seed=r)
        for s in make_states(size * 2, n_prompts, 0.0, 1.0, rng, tag=0):
            buf.add(s)
            if len(buf) >= size:
                break
        while len(buf) < size:  # top up if per-prompt caps rejected some
            for s in make_states(size, n_prompts * 4, 0.0, 1.0, rng, tag=1):
                buf.add(s)
                if len(buf) >= size:
                    break
        ins = make_states(n_ops, n_prompts, 2.0, 3.0, rng, tag=2)
        mixed = make_states(n_ops // 2, n_prompts, 3.0, 4.0, rng, tag=3)
        sample, add = buf.sample, buf.add
        before = buf.retired_counts["evicted"]

        t = time.perf_counter()
        for s in ins:
            add(s)
        best["insert"] = max(best["insert"], n_ops / (time.perf_counter() - t))

        t = time.perf_counter()
        for _ in range(n_ops):
            sample(1)
        best["sample"] = max(best["sample"], n_ops / (time.perf_counter() - t))

        t = time.perf_counter()
        for s in mixed:
            add(s)
            sample(1)
        best["mixed"] = max(best["mixed"], 2 * len(mixed) / (time.perf_counter() - t))
        evicted = buf.retired_counts["evicted"] - before
        assert len(buf) == size
    best["evicted_share"] = evicted / (n_ops + n_ops // 2)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="sizes 1k and 10k, fewer ops: a few seconds")
    ap.add_argument("--ops", type=int, default=None, help="timed operations per kind (default 50k, quick 10k)")
    ap.add_argument("--repeats", type=int, default=None, help="runs per size, best kept (default 3, quick 1)")
    args = ap.parse_args(argv)
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    n_ops = args.ops or (10_000 if args.quick else 50_000)
    repeats = args.repeats or (1 if args.quick else 3)
    print(f"ReplayBuffer throughput, {n_ops} timed ops per kind, best of {repeats}, Python {sys.version.split()[0]}")
    print(f"{'entries':>9} | {'insert ops/s':>13} | {'sample ops/s':>13} | {'mixed ops/s':>13} | evicting inserts")
    print("-" * 78)
    worst_mixed = None
    for size in sizes:
        r = run(size, n_ops, repeats)
        print(f"{size:>9,} | {r['insert']:>13,.0f} | {r['sample']:>13,.0f} | {r['mixed']:>13,.0f} | "
              f"{100 * r['evicted_share']:.0f}%")
        worst_mixed = r["mixed"]
    target = 100_000
    note = "" if sizes[-1] == 100_000 else " (the target is set at 100,000 entries: run without --quick)"
    print(f"target: >= {target:,} mixed ops/s at 100,000 entries; at {sizes[-1]:,} got {worst_mixed:,.0f} "
          f"({'met' if worst_mixed >= target else 'NOT met'}){note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
