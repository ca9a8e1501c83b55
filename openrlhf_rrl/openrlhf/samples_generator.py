"""The buffer-sampling hook in OpenRLHF's SamplesGenerator: a share of each batch's groups restart.

OpenRLHF's own _dispatch_prompts_to_vllm still does all the work (sampling params, length budget,
n samples per prompt, engine load balancing); the hook only asks the buffer for a plan of the
batch and, for the plan's restart slots, routes the call to the engine's generate_restart_responses
(restart_rollout.py) instead of generate_responses. Each restart is one group of n continuations,
so OpenRLHF's grouping of n consecutive samples (advantages, filtering) holds as it is. Evaluation
and dynamic-filtering refills stay fresh.

Two promises to the user's recipe are kept here as well:
- the dataset prompt whose slot a restart takes is deferred to the next batch (PromptQueue), so an
  episode still rolls out every prompt once (--rrl_displaced_prompts defer; drop is the old behaviour);
- the groups dynamic filtering drops (all-pass, all-fail) are still handed to the buffer: they ride
  with the batch's first sample (FILTERED_ATTR) to the experience maker, which observes them with the
  trained ones. They stay out of training, as the user asked.
"""

from __future__ import annotations

import hashlib
from collections import deque
from copy import deepcopy

import torch
from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator

from .row_temperature import TEMPERATURE_KEY


# the attribute of a batch's first sample that carries the groups dynamic filtering dropped (a list of
# Experiences, n per group, in rollout order); read by ReplayExperienceMaker
FILTERED_ATTR = "rrl_filtered"
# ... and the displaced prompts not yet rolled out after this batch ((prompt, label) pairs), which the
# trainer saves with a checkpoint so a resumed run still rolls them out
DEFERRED_ATTR = "rrl_deferred"


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
                           "temperature": float(kwargs["sampling_params"].temperature),
                           "prefix_ids": list(plan["prefix_ids"]), "prompt_ids": list(plan["prompt_ids"])}}
        return self.engine.generate_restart_responses.remote(restart=restart, **kwargs)


class _RoutingEngine:
    """Stands in for one vLLM engine handle during a dispatch: restart slots go to the restart method."""

    def __init__(self, engine, plans):
        self.engine = engine
        self.get_num_unfinished_requests = engine.get_num_unfinished_requests
        self.generate_responses = _RoutingCall(engine, plans)


class PromptQueue:
    """The training dataloader's prompts one at a time, prompts displaced by restarts first.

    It stands in for the dataloader iterator OpenRLHF's generator draws from, in the same item shape
    (index, prompts, labels, images) with one prompt per item, so a displaced prompt is rolled out
    at the next draw, before any new one, and nothing of a loader batch is left behind."""

    def __init__(self, source):
        self.source = source
        self.deferred: deque = deque()  # (prompt, label, image) displaced by a restart, oldest first
        self.unread: deque = deque()  # the rest of the last loader item
        self.drained = False  # the loader and the deferred prompts are both used up

    def __iter__(self):
        return self

    def __next__(self):
        if not self.deferred and not self.unread:
            try:
                _, prompts, labels, images = next(self.source)
            except StopIteration:
                self.drained = True
                raise
            self.unread.extend(zip(prompts, labels, images or [None] * len(prompts)))
        prompt, label, image = (self.deferred or self.unread).popleft()
        return None, [prompt], [label], [image]

    def defer(self, items) -> None:
        self.deferred.extend(items)


class ReplaySamplesGenerator(SamplesGenerator):
    def __init__(self, *args, buffer, train_prefix: bool = False, defer_displaced: bool = True,
                 row_temperatures: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.buffer = buffer
        self.train_prefix = train_prefix
        self.defer_displaced = defer_displaced
        self.row_temperatures = row_temperatures  # --rrl_logprob_temperature sampled (row_temperature.py)
        self._plan_next_dispatch = False
        self._evaluating = False
        self._queue: PromptQueue | None = None
        self._restored_deferred: list = []  # displaced prompts of a resumed checkpoint, rolled out first
        self._rolled_out: list = []  # every sample of the current _generate_vllm call, before the filter
        self._filtered: list = []  # samples the filter dropped, not yet handed to the experience maker

    def generate_samples(self, **generate_kwargs):
        if self.defer_displaced and getattr(self, "_dataloader_iter", None) is None \
                and not getattr(self, "_sample_buffer", None):
            # a new pass over the prompts (OpenRLHF would start one with iter(prompts_dataloader))
            self._queue = PromptQueue(iter(self.prompts_dataloader))
            self._queue.defer(self._restored_deferred)
            self._restored_deferred = []
            self._dataloader_iter, self._sample_buffer = self._queue, []
        self._plan_next_dispatch = True  # the batch's first dispatch; dynamic-filtering refills stay fresh
        try:
            rollout_samples, *rest = super().generate_samples(**generate_kwargs)
        finally:
            self._plan_next_dispatch = False
        if rollout_samples:
            setattr(rollout_samples[0], FILTERED_ATTR, self._filtered)
            setattr(rollout_samples[0], DEFERRED_ATTR, self.deferred_prompts())
            self._filtered = []
        return (rollout_samples, *rest)

    def deferred_prompts(self) -> list:
        """The displaced prompts not yet rolled out, as (prompt, label) pairs: saved with a checkpoint."""
        return [(p, lab) for p, lab, _ in self._queue.deferred] if self._queue is not None else []

    def restore_deferred(self, pairs) -> None:
        self._restored_deferred = [(p, lab, None) for p, lab in pairs or []]

    def _generate_vllm(self, dataloader_iter, num_prompts, dynamic_filtering, **generate_kwargs):
        self._rolled_out = []
        accepted, consumed, exhausted = super()._generate_vllm(dataloader_iter, num_prompts, dynamic_filtering,
                                                               **generate_kwargs)
        if dynamic_filtering:
            kept = {id(e) for e in accepted}
            self._filtered.extend(e for e in self._rolled_out if id(e) not in kept)
        self._rolled_out = []
        return accepted, consumed, exhausted

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
        if self.defer_displaced and (self._queue is None or self._queue.drained):
            # the pass's last batch: a prompt displaced now could not be rolled out in this pass
            return super()._dispatch_prompts_to_vllm(prompts, labels, images=images, **generate_kwargs)
        plans = self.buffer.plan([{"key": prompt_key(p), "prompt_ids": [], "label": lab, "text": p}
                                  for p, lab in zip(prompts, labels)])
        for plan in plans:
            plan["train_prefix"] = self.train_prefix
            if plan["restart"] and not plan.get("text"):  # a buffer restored without its prompt texts
                plan["text"] = self.tokenizer.decode(plan["prompt_ids"], skip_special_tokens=False)
        if self.defer_displaced:
            self._queue.defer((p, lab, None) for p, lab, plan in zip(prompts, labels, plans) if plan["restart"])
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
        if self.row_temperatures:  # the temperature vLLM drew this row at (greedy rows: none, i.e. 1)
            t = float(tag.get("temperature") or generate_kwargs.get("temperature", 1.0))
            experience.info[TEMPERATURE_KEY] = torch.tensor([t if t > 0 else 1.0])
        experience.rrl = tag  # read by ReplayExperienceMaker; survives the async trainer's queue (pickled)
        self._rolled_out.append(experience)
        return experience
