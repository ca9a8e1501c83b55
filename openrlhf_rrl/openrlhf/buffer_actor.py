"""The replay buffer as one named Ray actor, so every node and every trainer process sees one buffer.

The actor wraps core.RetrospectiveReplay and keeps two things the core does not: the RRL step
(batches observed; it drives the share schedule and survives resume) and the original prompt text
of every prompt that has entries, because the user's reward function must get the ORIGINAL prompt
for a restart. Both go into a sidecar file next to the core's buffer file.

The client is what trainer code calls. If the actor dies, the call that notices logs a warning and
the step goes on with fresh prompts only (plan) or without RRL bookkeeping (observe); the owning
client (the trainer's) then starts a new actor from the last saved buffer file. A call that runs past
--rrl_buffer_call_timeout is a hung actor, not a dead one: before it is replaced, it is asked once to
save what it has (a rescue file beside the checkpoints), so the replacement loses nothing it had.

The actor is placed on the driver's node (the one `train_ppo_ray` runs on), not wherever Ray puts a
0-CPU actor, and writes and prunes its checkpoint files itself: on a cluster without a shared file
system they stay on one node, the one a resumed job's driver reads them from.
"""

from __future__ import annotations

import json
import os
import re
import time

import ray

from ..atomic import atomic_write_text
from ..config import RRLConfig
from ..core.planner import GroupPlan, PromptRef
from ..core.replay import RetrospectiveReplay
from ..core.trajectory import Trajectory

BUFFER_ACTOR_NAME = "openrlhf_rrl_buffer"
RESCUE_TIMEOUT_S = 120  # how long a hung actor gets to write its rescue file


def sidecar_path(path: str) -> str:
    return path + ".meta.json"


def saved_steps(directory: str) -> list[int]:
    """The steps of the global_step<N>.jsonl buffer files in `directory`, oldest first."""
    names = os.listdir(directory) if os.path.isdir(directory) else []
    return sorted(int(m.group(1)) for m in (re.fullmatch(r"global_step(\d+)\.jsonl", n) for n in names) if m)


class ReplayBufferActor:
    def __init__(self, config: dict, restore_path: str | None = None, stop_token_ids=()):
        """stop_token_ids: the tokenizer's EOS (and pad) ids, which no retained prefix may contain."""
        self.rrl = RetrospectiveReplay(RRLConfig.from_dict(config), stop_token_ids=tuple(stop_token_ids))
        self.step = 0
        self.prompt_texts: dict[str, str] = {}
        self.restored_from = None
        if restore_path:
            self.load(restore_path)

    # -------------------------------------------------------------- the two calls of a step
    def plan(self, prompts: list[dict], fill: int = 0, displace: bool = True) -> list[dict]:
        """prompts: [{key, prompt_ids, label, text}] -> one plan dict per prompt slot (same length), then up
        to `fill` restarts in extra slots; displace=False keeps every prompt (core/planner.py)."""
        refs = [PromptRef(p["key"], tuple(p["prompt_ids"]), p.get("label")) for p in prompts]
        texts = {p["key"]: p.get("text") for p in prompts}
        out = []
        for plan in self.rrl.plan(refs, self.step, fill=fill, displace=displace):
            key = plan.prompt.key
            out.append({
                "restart": plan.is_restart, "key": key, "prompt_ids": list(plan.prompt.prompt_ids),
                "label": plan.prompt.label, "text": texts.get(key) or self.prompt_texts.get(key),
                "prefix_ids": list(plan.prefix_ids),
                "prefix_logprobs": list(plan.prefix_logprobs) if plan.prefix_logprobs else None,
                "entry_key": plan.entry_key, "temperature": plan.temperature, "step": self.step,
            })
        return out

    def observe(self, groups: list[dict]) -> dict:
        """groups: [{plan: {...}, text, trajectories: [Trajectory fields]}] in batch order -> rrl/* metrics."""
        plans, trajs = [], []
        for g in groups:
            if g.get("mismatched_entry_key"):  # its prompt no longer tokenizes to the stored ids
                self.rrl.buffer.retire(g["mismatched_entry_key"], "stale")
            p = g["plan"]
            plans.append(GroupPlan(prompt=PromptRef(p["key"], tuple(p["prompt_ids"]), p.get("label")),
                                   prefix_ids=tuple(p.get("prefix_ids") or ()), entry_key=p.get("entry_key")))
            trajs.append([Trajectory(**t) for t in g["trajectories"]])
            if g.get("text") and not p.get("entry_key"):
                self.prompt_texts[p["key"]] = g["text"]
        metrics = self.rrl.observe(plans, trajs, self.step)
        self.step += 1
        if len(self.prompt_texts) > 4 * max(16, self.rrl.config.buffer_capacity):
            self._prune_texts()
        metrics["rrl/step"] = self.step
        return metrics

    # -------------------------------------------------------------- state
    def _prune_texts(self) -> None:
        live = {e.prompt_key for e in self.rrl.buffer.entries()}
        self.prompt_texts = {k: v for k, v in self.prompt_texts.items() if k in live}

    def save(self, path: str) -> str:
        """The core's buffer file at `path` and the step + prompt texts beside it, each written atomically."""
        self._prune_texts()
        atomic_write_text(sidecar_path(path), json.dumps({"step": self.step, "prompt_texts": self.prompt_texts}))
        self.rrl.save(path)
        return path

    def load(self, path: str) -> None:
        self.rrl.load(path)
        meta = {}
        if os.path.exists(sidecar_path(path)):
            with open(sidecar_path(path), encoding="utf-8") as fh:
                meta = json.load(fh)
        self.step = int(meta.get("step", 0))
        self.prompt_texts = {str(k): str(v) for k, v in dict(meta.get("prompt_texts", {})).items()}
        self.restored_from = path

    def prune(self, directory: str, keep: int) -> list[str]:
        """Delete all but the newest `keep` global_step*.jsonl files (and sidecars) in `directory`."""
        steps = saved_steps(directory)
        removed = []
        for step in steps[: max(0, len(steps) - max(1, int(keep)))]:
            path = os.path.join(directory, f"global_step{step}.jsonl")
            for p in (path, sidecar_path(path)):
                if os.path.exists(p):
                    os.unlink(p)
                    removed.append(p)
        return removed

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def stats(self) -> dict:
        return {"size": len(self.rrl.buffer), "step": self.step, "restored_from": self.restored_from,
                "entries": [{"key": e.key, "prompt_key": e.prompt_key, "prefix_ids": list(e.prefix_ids),
                             "restarts": e.restarts} for e in self.rrl.buffer.entries()]}

    def pid(self) -> int:
        return os.getpid()


_ACTOR_GONE = tuple({ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError,
                     getattr(ray.exceptions, "ActorUnavailableError", ray.exceptions.RayActorError)})

RemoteReplayBufferActor = ray.remote(num_cpus=0, max_restarts=0)(ReplayBufferActor)


class ReplayBufferClient:
    """Calls the named buffer actor; survives its death (see the module docstring)."""

    def __init__(self, config: dict, owner: bool, name: str = BUFFER_ACTOR_NAME, restore_path: str | None = None,
                 stop_token_ids=(), node_id: str | None = None, rescue_path: str | None = None):
        """node_id: where the actor must run (the driver's node); rescue_path: where a hung actor saves its
        state before it is replaced (None: it is replaced from the last save)."""
        self.config, self.owner, self.name = dict(config), owner, name
        self.stop_token_ids = [int(t) for t in stop_token_ids]
        self.node_id, self.rescue_path = node_id, rescue_path
        self.call_timeout = float(self.config.get("buffer_call_timeout", 600.0))
        self.last_saved = restore_path  # what a replacement actor starts from
        self.actor_restarts = 0
        self.call_seconds = 0.0  # wall time of this client's calls since pop_call_seconds (Ray round trips)
        self.last_warning = None
        self._actor = None
        if owner:
            self._start(restore_path)

    def _start(self, restore_path):
        options = {"name": self.name, "get_if_exists": True}
        if self.node_id:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(self.node_id, soft=False)
        self._actor = RemoteReplayBufferActor.options(**options).remote(self.config, restore_path, self.stop_token_ids)

    def _handle(self):
        if self._actor is None:
            self._actor = ray.get_actor(self.name)  # raises ValueError while there is none
        return self._actor

    def pop_call_seconds(self) -> float:
        """Seconds this client spent in calls to the actor since the last pop (what RRL costs a step)."""
        seconds, self.call_seconds = self.call_seconds, 0.0
        return seconds

    def _call(self, method: str, *args, fallback=None, what: str = ""):
        t0 = time.perf_counter()
        try:
            return self._call_actor(method, *args, fallback=fallback, what=what)
        finally:
            self.call_seconds += time.perf_counter() - t0

    def _call_actor(self, method: str, *args, fallback=None, what: str = ""):
        # only a dead, hung or missing actor is handled here: an error raised inside the actor's own
        # code (a RayTaskError) is a bug and propagates
        try:
            handle = self._handle()
        except ValueError as e:
            self._lost(e, what)
            return fallback
        try:
            return ray.get(getattr(handle, method).remote(*args), timeout=self.call_timeout)
        except _ACTOR_GONE as e:
            self._lost(e, what)
            return fallback

    def _lost(self, error, what: str) -> None:
        from openrlhf.utils.logging_utils import init_logger

        logger = init_logger(__name__)
        dead, self._actor = self._actor, None
        if self.owner:
            if dead is not None and isinstance(error, ray.exceptions.GetTimeoutError) and self.rescue_path:
                self._rescue(dead, logger)
            if dead is not None:
                try:
                    ray.kill(dead, no_restart=True)
                except Exception:
                    pass
            self.actor_restarts += 1
            self._start(self.last_saved)
            restart = f"restarted it from {self.last_saved or 'an empty buffer (nothing saved yet)'}"
        else:
            restart = "the trainer restarts it"
        self.last_warning = f"[openrlhf-rrl] replay buffer actor unavailable ({type(error).__name__}); {what}; {restart}"
        logger.warning(self.last_warning)

    def _rescue(self, slow, logger) -> None:
        """A hung actor still holds everything since the last save: ask it once to write it out."""
        try:
            ray.get(slow.save.remote(self.rescue_path), timeout=RESCUE_TIMEOUT_S)
        except Exception as e:  # dead or still hung: the replacement starts from the last save
            logger.warning(f"[openrlhf-rrl] the slow buffer actor could not save its state ({type(e).__name__}); "
                           f"its replacement starts from {self.last_saved or 'an empty buffer'}")
            return
        self.last_saved = self.rescue_path

    # -------------------------------------------------------------- the calls
    def plan(self, prompts: list[dict], fill: int = 0, displace: bool = True) -> list[dict]:
        fresh = [dict(p, restart=False, prefix_ids=[], prefix_logprobs=None, entry_key=None, temperature=None)
                 for p in prompts]
        return self._call("plan", prompts, fill, displace, fallback=fresh,
                          what="this batch uses fresh prompts only")

    def observe(self, groups: list[dict]) -> dict:
        metrics = self._call("observe", groups, fallback=None, what="this batch is not recorded in the buffer")
        out = dict(metrics or {})
        out["rrl/buffer_available"] = 0.0 if metrics is None else 1.0
        out["rrl/buffer_actor_restarts"] = float(self.actor_restarts)
        return out

    def save(self, path: str) -> bool:
        done = self._call("save", path, fallback=None, what="the buffer was not saved at this checkpoint")
        if done:
            self.last_saved = path
        return bool(done)

    def load(self, path: str) -> bool:
        done = self._call("load", path, fallback=False, what=f"the buffer was not restored from {path}")
        if done is not False:
            self.last_saved = path
            return True
        return False

    def prune(self, directory: str, keep: int) -> list[str]:
        return self._call("prune", directory, keep, fallback=[], what="old buffer files were not pruned") or []

    def stats(self) -> dict | None:
        return self._call("stats", fallback=None, what="no stats")
