"""The replay-aware experience maker: after OpenRLHF has computed rewards, values and advantages of a
batch, hand every group to the buffer (candidates from hard fresh groups, outcomes of restart groups).

Nothing of OpenRLHF's experience is changed: make_experience_batch runs as it is, and the buffer
reads from its result the token ids, the raw reward, the critic's values (PPO with GAE) and the
rollout log-probs (or the actor's, when vLLM did not return them) of each sample. One per-sample
count is added to each experience's info: the restart prefix tokens outside the action mask, which
the actor's loss normaliser counts with --rrl_loss_norm response (policy_actor.py).

The groups dynamic filtering dropped (samples_generator.FILTERED_ATTR) are observed too, from their
raw samples: token ids, reward and vLLM's log-probs, but no critic values or actor log-probs, which
OpenRLHF never computes for them (so the critic scorer proposes no cut in them).

Only what the buffer can use travels to its actor: a group cuts can come from (core.replay.reads_rollouts:
a hard fresh group, a mixed restart group with agree, ...) goes with its token ids and per-token signals as
numpy arrays; every other group goes as outcomes alone (reward, success, no tokens).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import torch
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker

from ..core.replay import reads_rollouts

from .row_temperature import row_temperatures
from .samples_generator import FILTERED_ATTR, PLAN_SECONDS_ATTR

AUDIT_LOG_ENV = "RRL_ROLLOUT_LOG"  # a JSONL path: one line per restart sample, for review and the tests
# Experience.info key: per sample, its restart prefix tokens outside the action mask (0 for fresh rows, and
# for every row with --rrl_train_prefix). OpenRLHF splits and merges info per sample on the way through
# its replay buffer, so the count reaches the actor with its row; the actor logs info keys as step metrics
# (the per-sample mean).
MASKED_PREFIX_KEY = "rrl/masked_prefix_tokens"


def _row(tensor, b, start, length):
    """One row's slice as a float32 array (pickled as one buffer, not a list of Python floats)."""
    if tensor is None:
        return None
    return tensor[b, start:start + length].detach().float().cpu().numpy()


class ReplayExperienceMaker(RemoteExperienceMaker):
    def __init__(self, *args, buffer, config, **kwargs):
        super().__init__(*args, **kwargs)
        self.buffer = buffer
        self.config = config
        self._metrics: dict = {}
        self._row_temperatures = None  # set for the duration of make_experience

    def make_experience(self, samples_list):
        # per micro-batch, its rows' sampling temperatures (--rrl_logprob_temperature sampled), for the
        # policy's and the reference's forwards that _dispatch_forward sends
        self._row_temperatures = [row_temperatures(s.info) for s in samples_list]
        try:
            return super().make_experience(samples_list)
        finally:
            self._row_temperatures = None

    def _dispatch_forward(self, group, sync_condition, **kwargs):
        temps = self._row_temperatures
        if temps and all(t is not None for t in temps) and group is not None and group in (
                self.actor_model_group, self.initial_model_group):
            kwargs["row_temperature"] = temps
        return super()._dispatch_forward(group, sync_condition, **kwargs)

    def make_experience_batch(self, rollout_samples):
        filtered = (getattr(rollout_samples[0], FILTERED_ATTR, None) if rollout_samples else None) or []
        experiences = super().make_experience_batch(rollout_samples)
        for e in experiences:
            e.info[MASKED_PREFIX_KEY] = self.masked_prefix_tokens(rollout_samples, e)
        t0 = time.perf_counter()
        groups, glue = self.groups(rollout_samples, experiences, filtered)
        built = time.perf_counter() - t0
        metrics = self.buffer.observe(groups)
        metrics.update(glue)
        # RRL's cost this step: building the buffer's view, the batch's plan (timed by the generator, which
        # may run in another actor), and this client's calls (observe)
        planned = getattr(rollout_samples[0], PLAN_SECONDS_ATTR, 0.0) if rollout_samples else 0.0
        pop = getattr(self.buffer, "pop_call_seconds", None)
        metrics["timing/rrl"] = built + planned + (pop() if pop is not None else 0.0)
        self._metrics = metrics
        return experiences

    def pop_metrics(self) -> dict:
        metrics, self._metrics = self._metrics, {}
        return metrics

    @staticmethod
    def masked_prefix_tokens(rollout_samples, e) -> torch.Tensor:
        """(B,) float: per row of `e`, the restart prefix tokens in its sequence outside its action mask."""
        counts = []
        for b, i in enumerate(e.index):
            tag = getattr(rollout_samples[i], "rrl", None) or {}
            n, p = int(tag.get("prefix_len") or 0), tag.get("prompt_len")
            if n and p:
                p = int(p)
                n = max(0, min(n, int(e.attention_mask[b].sum().item()) - p))  # as much of it as the row holds
                # response token j sits at action index p - 1 + j
                n -= int(e.action_mask[b, p - 1:p - 1 + n].sum().item())
            else:
                n = 0
            counts.append(float(n))
        return torch.tensor(counts, dtype=torch.float32)

    # ------------------------------------------------------------------ building the buffer's view
    def groups(self, rollout_samples, experiences, filtered=()):
        """Groups of n consecutive samples (OpenRLHF's own grouping) as the buffer actor's observe() input:
        the trained ones, located in `experiences`, then the filtered ones, read from their raw samples."""
        where = {}
        for e in experiences:
            for b, i in enumerate(e.index):
                where[i] = (e, b)
        trained = [(s, *where[i]) for i, s in enumerate(rollout_samples)]
        n = self.args.rollout.n_samples_per_prompt
        groups, restart_rows, mismatches = [], [], 0
        for located in (trained, [(s, s, 0) for s in filtered]):
            for start in range(0, len(located), n):
                members = located[start:start + n]
                tags = [getattr(s, "rrl", None) for s, _, _ in members]
                if any(t is None for t in tags) or len({(t["key"], t.get("entry_key")) for t in tags}) != 1:
                    continue  # not a group this plugin dispatched (should not happen): leave it out of the buffer
                tag, first = tags[0], members[0][0]
                rewards = [self.reward(e, b) for _, e, b in members]
                wins = [r >= self.config.success_threshold for r in rewards]
                if reads_rollouts(self.config, bool(tag["restart"]), wins):
                    rows = [self.trajectory(*m) for m in members]
                else:  # the buffer reads this group's outcomes only
                    rows = [{"prompt_key": tag["key"], "prompt_ids": (), "response_ids": (), "reward": r,
                             "success": w, "prefix_len": int(tag.get("prefix_len", 0))} for r, w in zip(rewards, wins)]
                # observe() reads a group's prompt ids from its trajectories: the plan names the prompt by key
                plan = {"key": tag["key"], "prompt_ids": (), "label": first.labels[0],
                        "prefix_ids": tag.get("prefix_ids", []), "entry_key": tag.get("entry_key")}
                group = {"plan": plan, "text": first.prompts[0], "trajectories": rows}
                if tag.get("prompt_mismatch_entry"):  # a restart skipped as a fresh group: its entry is retired
                    group["mismatched_entry_key"] = tag["prompt_mismatch_entry"]
                    mismatches += 1
                groups.append(group)
                if tag["restart"]:
                    restart_rows.extend(members)
        glue = {"rrl/prompt_mismatch": float(mismatches), "rrl/filtered_groups": float(len(filtered) // max(1, n))}
        return groups, dict(self.restart_checks(restart_rows), **glue)

    @staticmethod
    def reward(e, b) -> float:
        return float(e.info["reward"][b].item())

    def trajectory(self, sample, e, b) -> dict:
        """One sample as core.Trajectory fields: token ids, values and log-probs (indexed by response
        position) as numpy arrays."""
        tag = sample.rrl
        length = int(e.attention_mask[b].sum().item())
        tokens = e.sequences[b, :length].detach().cpu().numpy().astype(np.int32)  # any vocabulary fits
        p = int(tag["prompt_len"])
        response = tokens[p:]
        # action index t scores token t+1: response token j sits at action index p - 1 + j
        logprobs = _row(e.rollout_log_probs if e.rollout_log_probs is not None else e.action_log_probs,
                        b, p - 1, len(response))
        values = _row(e.values, b, p - 1, len(response)) if self.critic_model_group is not None else None
        reward = self.reward(e, b)
        truncated = bool(e.truncated[b].item()) if e.truncated is not None else False
        eos_id = self.tokenizer.eos_token_id
        return {"prompt_key": tag["key"], "prompt_ids": tokens[:p], "response_ids": response, "reward": reward,
                "success": reward >= self.config.success_threshold, "label": sample.labels[0],
                "logprobs": logprobs, "values": values, "prefix_len": int(tag.get("prefix_len", 0)),
                "eos": bool(len(response)) and int(response[-1]) == eos_id and not truncated}

    def restart_checks(self, rows) -> dict:
        """Per batch: how restarts looked from the trainer's side (and an audit line per restart sample),
        read from the experiences' tensors: did each row continue its stored prompt and prefix, and is the
        prefix outside its action mask."""
        out = {"rrl/restart_samples": float(len(rows))}
        if not rows:
            return out
        log_path = os.environ.get(AUDIT_LOG_ENV)
        mismatched, prefix_in_loss, prefix_tokens = 0, 0, 0
        lines = []
        for sample, e, b in rows:
            tag = sample.rrl
            p, stored = int(tag["prompt_len"]), [int(t) for t in tag.get("prefix_ids", [])]
            length = int(e.attention_mask[b].sum().item())
            seq = e.sequences[b, :length]
            stored_prompt = tag.get("prompt_ids")
            continued = seq[p:p + len(stored)].tolist() == stored and (
                stored_prompt is None or seq[:p].tolist() == [int(t) for t in stored_prompt])
            mismatched += 0 if continued else 1
            if p >= 1:
                prefix_in_loss += int(e.action_mask[b, p - 1:min(p - 1 + len(stored), length - 1)].sum().item())
            prefix_tokens += len(stored)
            if log_path:
                full = [int(t) for t in seq.tolist()]
                lines.append({"entry_key": tag.get("entry_key"), "prompt_key": tag["key"], "prompt_ids": full[:p],
                              "stored_prefix_ids": stored, "sequence": full,
                              "action_mask": [int(x) for x in e.action_mask[b, : len(full) - 1].tolist()],
                              "reward": self.reward(e, b), "prompt": sample.prompts[0], "label": sample.labels[0],
                              "train_prefix": bool(self.config.train_prefix)})
        out["rrl/prefix_tokens_mean"] = prefix_tokens / len(rows)
        out["rrl/prefix_mismatch"] = float(mismatched)
        out["rrl/prefix_in_loss_frac"] = prefix_in_loss / max(1, prefix_tokens)
        if lines:
            os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
            with open(log_path, "a", encoding="utf-8") as fh:
                for line in lines:
                    fh.write(json.dumps(line) + "\n")
        return out
