"""The buffer-sampling hook in OpenRLHF's SamplesGenerator: a share of each batch's groups restart.

OpenRLHF's own _dispatch_prompts_to_vllm still does all the work (sampling params, length budget,
n samples per prompt, engine load balancing); the hook only asks the buffer for a plan of the
batch and, for the plan's restart slots, routes the call to the engine's generate_restart_responses
(restart_rollout.py) instead of generate_responses. Each restart is one group of n continuations,
so OpenRLHF's grouping of n consecutive samples (advantages, filtering) holds as it is. Evaluation
and dynamic-filtering refills stay fresh.
"""

from __future__ import annotations

import hashlib
from copy import deepcopy

from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator


def prompt_key(prompt: str) -> str:
    """A prompt's identity in the buffer: a hash of its text (stable across processes and resumes)."""
    return hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:16]


class _RoutingCall:
    def __init__(self, engine, plans):
        self.engine, self.plans = engine, plans

    def remote(self, **kwargs):
        plan = next(self.plans)
        if not plan["restart"]:
            return self.engine.generate_responses.remote(**kwargs)
        fresh_temperature = kwargs["sampling_params"].temperature  # the run's own, before the restart's
        if plan.get("temperature") is not None:
            kwargs["sampling_params"] = deepcopy(kwargs["sampling_params"])
            kwargs["sampling_params"].temperature = float(plan["temperature"])
        restart = {"prompt_ids": plan["prompt_ids"], "prefix_ids": plan["prefix_ids"], "fresh_temperature": fresh_temperature,
                   "prefix_logprobs": plan.get("prefix_logprobs"), "train_prefix": plan["train_prefix"],
                   "tag": {"restart": True, "key": plan["key"], "entry_key": plan["entry_key"],
                           "prefix_ids": list(plan["prefix_ids"]), "prompt_ids": list(plan["prompt_ids"])}}
        return self.engine.generate_restart_responses.remote(restart=restart, **kwargs)


class _RoutingEngine:
    """Stands in for one vLLM engine handle during a dispatch: restart slots go to the restart method."""

    def __init__(self, engine, plans):
        self.engine = engine
        self.get_num_unfinished_requests = engine.get_num_unfinished_requests
        self.generate_responses = _RoutingCall(engine, plans)


class ReplaySamplesGenerator(SamplesGenerator):
    def __init__(self, *args, buffer, train_prefix: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.buffer = buffer
        self.train_prefix = train_prefix
        self._plan_next_dispatch = False
        self._evaluating = False

    def generate_samples(self, **generate_kwargs):
        self._plan_next_dispatch = True  # the batch's first dispatch; dynamic-filtering refills stay fresh
        try:
            return super().generate_samples(**generate_kwargs)
        finally:
            self._plan_next_dispatch = False

    def generate_eval_samples(self, **generate_kwargs):
        self._evaluating = True
        try:
            return super().generate_eval_samples(**generate_kwargs)
        finally:
            self._evaluating = False

    def _dispatch_prompts_to_vllm(self, prompts, labels, *, images=None, **generate_kwargs):
        if self._evaluating or not self._plan_next_dispatch or any(images or []):
            return super()._dispatch_prompts_to_vllm(prompts, labels, images=images, **generate_kwargs)
        self._plan_next_dispatch = False
        plans = self.buffer.plan([{"key": prompt_key(p), "prompt_ids": [], "label": lab, "text": p}
                                  for p, lab in zip(prompts, labels)])
        for plan in plans:
            plan["train_prefix"] = self.train_prefix
            if plan["restart"] and not plan.get("text"):  # a buffer restored without its prompt texts
                plan["text"] = self.tokenizer.decode(plan["prompt_ids"], skip_special_tokens=False)
        engines, route = self.vllm_engines, iter(plans)
        self.vllm_engines = [_RoutingEngine(e, route) for e in engines]
        try:
            return super()._dispatch_prompts_to_vllm([p["text"] for p in plans], [p["label"] for p in plans],
                                                     images=[None] * len(plans), **generate_kwargs)
        finally:
            self.vllm_engines = engines

    def _process_response_into_experience(self, response, **generate_kwargs):
        experience = super()._process_response_into_experience(response, **generate_kwargs)
        tag = response.get("rrl")
        if tag is None:  # a fresh group
            start = response["action_ranges"][0][0] if response["action_ranges"] else len(response["observation_tokens"])
            tag = {"restart": False, "key": prompt_key(response["prompt"]), "entry_key": None, "prompt_len": start,
                   "prefix_len": 0}
        elif tag.get("restart") and not self.train_prefix:
            # OpenRLHF measures a response by its action range, which starts after a masked prefix; the
            # length budget and the DAPO overlong penalty are about the whole response, prefix included
            experience.response_length = experience.response_length + int(tag.get("prefix_len", 0))
        experience.rrl = tag  # read by ReplayExperienceMaker; survives the async trainer's queue (pickled)
        return experience
