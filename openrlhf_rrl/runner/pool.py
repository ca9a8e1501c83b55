"""The runner's worker processes: one job per (arm, seed) in a spawn pool, one progress bar, no orphans.

rrl-demo and benchmarks/grid.py both run their jobs here.
"""

from __future__ import annotations

import multiprocessing as mp
import os


def die_with_parent(parent_pid: int) -> None:
    """Pool initializer: the worker is killed when the process that runs the pool dies (Linux's
    PR_SET_PDEATHSIG), so a killed rrl-demo or grid leaves no orphan job writing into --out beside
    the next run's (seen: a killed grid's workers went on for minutes)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: nothing to ask for
        return
    if os.getppid() != parent_pid:  # the parent died before the request was made
        os._exit(1)


def run_in_pool(fn, items, args_dict: dict, workers: int, total: int, desc: str, show: bool):
    """Run fn(item, args_dict, queue) in worker processes, with one tqdm bar fed by the queue."""
    from tqdm import tqdm

    from multiprocessing.managers import SyncManager

    ctx = mp.get_context("spawn")
    manager = SyncManager(ctx=ctx)  # the progress queue's server, as ctx.Manager() but dying with us too
    manager.start(die_with_parent, (os.getpid(),))
    with manager:
        queue = manager.Queue()
        with ctx.Pool(processes=max(1, min(workers, len(items))), initializer=die_with_parent,
                      initargs=(os.getpid(),)) as pool:
            pending = [pool.apply_async(fn, (item, args_dict, queue)) for item in items]
            bar = tqdm(total=total, desc=desc, disable=not show, dynamic_ncols=True)
            seen: dict = {}
            while not all(p.ready() for p in pending) or not queue.empty():
                try:
                    msg = queue.get(timeout=0.2)
                except Exception:
                    continue
                if msg[0] == "step":
                    _, name, step = msg
                    bar.update(step - seen.get(name, 0))
                    seen[name] = step
                    bar.set_postfix_str(name)
                else:
                    _, seed, step, score = msg
                    bar.set_postfix_str(f"seed {seed}: step {step}, greedy {score:.2f}")
            bar.close()
            return [p.get() for p in pending]
