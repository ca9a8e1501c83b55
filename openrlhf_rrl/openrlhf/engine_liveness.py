"""A call into a vLLM engine that dies while the call is pending raises instead of waiting forever.

vLLM's async client answers a utility call (collective_rpc, reset_prefix_cache, sleep, wake_up) through
a future it resolves when the engine replies. When the engine core dies first (its worker killed by a
signal, say), the client marks itself dead and fails the requests it is generating, but a utility call
already sent, or sent in the moment before the client noticed, keeps a future nobody resolves. In
OpenRLHF that call is the weight sync's update_weight: the policy actor waits on it, the trainer on the
policy actor, and the whole run hangs without a word. Seen as an intermittent stuck end-to-end run (the
worker killed on purpose after step 1; the run then went silent until the harness stopped it). Here the
pending call is watched, and when the engine is reported dead it is cancelled and EngineDeadError
raised, so the run fails and says why.
"""

from __future__ import annotations

import asyncio

POLL_S = 1.0  # how often a pending call looks at the engine's state: a death is reported within this


async def unless_engine_dies(llm, call, poll_s: float = POLL_S):
    """Await `call` (a coroutine on `llm`, vLLM's AsyncLLM); raise EngineDeadError once `llm.errored`."""
    task = asyncio.ensure_future(call)
    while True:
        done, _ = await asyncio.wait({task}, timeout=poll_s)
        if done:
            return task.result()
        if llm.errored:
            task.cancel()
            from vllm.v1.engine.exceptions import EngineDeadError

            raise EngineDeadError("the vLLM engine died while a call to it was pending (its own log above says how)")
