"""The buffer-sampling hook in OpenRLHF's SamplesGenerator: a share of each batch's groups restart.

OpenRLHF's own _dispatch_prompts_to_vllm still does all the work (sampling params, length budget,
n samples per prompt, engine load balancing); the hook only asks the buffer for a plan of the
batch and, for the plan's restart slots, routes the call to the engine's generate_restart_responses
(restart_rollout.py) instead of generate_responses. Each restart is one group of n continuations,
so OpenRLHF's grouping of n consecutive samples (advantages, filtering) holds as it is. Evaluation
and dynamic-filtering refills stay fresh.

Three promises to the user's recipe are kept here as well:
- the dataset prompt whose slot a restart takes is deferred to the next batch (PromptQueue), so an
  episode still rolls out every prompt once (--rrl_displaced_prompts defer; drop is the old behaviour);
- the last, short batch of a pass is topped up with restarts to full size (trimmed to whole micro-batches
  per data-parallel rank where the buffer cannot fill it), so several ranks train it in step;
- the groups dynamic filtering drops (all-pass, all-fail) are still handed to the buffer: they ride
  with the batch's first sample (FILTERED_ATTR) to the experience maker, which observes them with the
  trained ones. They stay out of training, as the user asked.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from copy import deepcopy

import torch
from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator
from openrlhf.utils.logging_utils import init_logger

from .row_temperature import TEMPERATURE_KEY


# the attribute of a batch's first sample that carries the groups dynamic filtering dropped (a list of
# Experiences, n per group, in rollout order); read by ReplayExperienceMaker
FILTERED_ATTR = "rrl_filtered"
# ... and the displaced prompts not yet rolled out after this batch ((prompt, label) pairs), which the
# trainer saves with a checkpoint so a resumed run still rolls them out
DEFERRED_ATTR = "rrl_deferred"
# ... and the seconds this generator's buffer client spent on the batch's plan: the async trainer runs the
# generator in its own actor, whose client the experience maker cannot read, so the time rides with the batch
PLAN_SECONDS_ATTR = "rrl_plan_seconds"

logger = init_logger(__name__)


def prompt_key(prompt: str) -> str:
    """A prompt's identity in the buffer: a hash of its text (stable across processes and resumes)."""
    return hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:16]


def data_parallel_size(args) -> int:
    """How many chunks OpenRLHF cuts a batch into: the least common multiple of the data-parallel sizes of
    the model groups it is split over (the policy and, where they exist, the reference, critic and reward
    models; ring- and tensor-parallel copies share one chunk)."""
    copies = max(1, args.ds.ring_attn_size * args.ds.tensor_parallel_size)
    groups = [args.actor]
    if args.algo.kl.init_coef > 0:
        groups.append(args.ref)
    if args.critic.model_name_or_path:
        groups.append(args.critic)
    if not args.reward.remote_url:
        groups.append(args.reward)
    return math.lcm(*(max(1, g.num_nodes * g.num_gpus_per_node // copies) for g in groups))


def even_sample_count(samples: int, group: int, micro: int, ranks: int) -> int:
    """The most samples, at most `samples`, that are whole groups and give each of `ranks` ranks the same
    number of whole micro-batches (OpenRLHF cuts a batch into micro-batches, then into one contiguous chunk
    of them per rank: 3 micro-batches over 2 ranks leave one rank a step behind in every collective)."""
    unit = math.lcm(group, micro * ranks)
    return samples // unit * unit


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
        if rollout_samples and len(rollout_samples) < self.args.rollout.batch_size * self.args.rollout.n_samples_per_prompt:
            rollout_samples = self._even_over_ranks(rollout_samples)
        if rollout_samples:
            setattr(rollout_samples[0], FILTERED_ATTR, self._filtered)
            setattr(rollout_samples[0], DEFERRED_ATTR, self.deferred_prompts())
            setattr(rollout_samples[0], PLAN_SECONDS_ATTR, self.buffer.pop_call_seconds())
            self._filtered = []
        return (rollout_samples, *rest)

    def _batch_prompts(self) -> int:
        """Prompts per vLLM call: OpenRLHF's --rollout.vllm_generate_batch_size, else the batch size."""
        return getattr(self.args.rollout, "vllm_generate_batch_size", None) or self.args.rollout.batch_size

    def _even_over_ranks(self, samples: list) -> list:
        """A short batch the restarts could not top up (a small buffer, dynamic filtering at the end of the
        data) trimmed to a size every data-parallel rank trains in step: restart groups leave first, then
        the last fresh groups. The buffer still sees the groups left out whose reward is already known (they
        ride as filtered groups)."""
        ranks = data_parallel_size(self.args)
        if ranks <= 1 or self.args.train.dynamic_batch_enable:  # dynamic batching balances the ranks itself
            return samples
        n = self.args.rollout.n_samples_per_prompt
        keep = even_sample_count(len(samples), n, self.args.rollout.micro_batch_size, ranks) // n
        groups = [samples[i:i + n] for i in range(0, len(samples), n)]
        if keep >= len(groups):
            return samples
        leave = sorted(range(len(groups)), key=lambda i: (not groups[i][0].rrl.get("restart"), -i))
        leave = set(leave[:len(groups) - keep])
        # the buffer reads a group's reward from its raw samples: a reward model's comes later, in training
        seen = [e for i in sorted(leave) for e in groups[i] if "reward" in e.info]
        self._filtered.extend(seen)
        logger.warning(f"[openrlhf-rrl] a short batch of {len(groups)} groups: {len(leave)} left out of training so "
                       f"each of {ranks} data-parallel ranks trains whole micro-batches in step"
                       + (" (the buffer still sees them)" if seen else ""))
        return [e for i, g in enumerate(groups) if i not in leave for e in g]

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
        # the pass's last batch: a prompt displaced now could not be rolled out in this pass
        last_of_pass = self.defer_displaced and (self._queue is None or self._queue.drained)
        # a short batch (the loader ran dry) is topped up with restarts to full size: OpenRLHF splits a
        # batch over its data-parallel ranks, and a short one can leave them with unequal micro-batch
        # counts, one rank then waiting in a collective the others never enter
        fill = max(0, self._batch_prompts() - len(prompts))
        if last_of_pass and not fill:
            return super()._dispatch_prompts_to_vllm(prompts, labels, images=images, **generate_kwargs)
        plans = self.buffer.plan([{"key": prompt_key(p), "prompt_ids": [], "label": lab, "text": p}
                                  for p, lab in zip(prompts, labels)], fill=fill, displace=not last_of_pass)
        for plan in plans:
            plan["train_prefix"] = self.train_prefix
            if plan["restart"] and not plan.get("text"):  # a buffer restored without its prompt texts
                plan["text"] = self.tokenizer.decode(plan["prompt_ids"], skip_special_tokens=False)
        kept = sum(not plan["restart"] for plan in plans)  # the prompts before the first restart slot
        if self.defer_displaced:
            self._queue.defer((p, lab, None) for p, lab in zip(prompts[kept:], labels[kept:]))
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
