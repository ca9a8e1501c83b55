"""The embedded RL trainer: one process, one model, OpenRLHF's loss math, the core's replay.

One step = plan (which groups restart from a retained prefix) -> sample -> reward through the
task's OpenRLHF-style `reward_func` -> advantages (GAE with a critic, REINFORCE++ or a group
baseline) -> one policy update (OpenRLHF's `PolicyLoss`) -> tell the replay what happened.
Without RRL the same code runs with every group fresh, on the same prompt stream and the same
number of sampled sequences per step, so the two arms differ only by the replay.

Every source of randomness is an explicit generator whose state is in the checkpoint, so a run
resumed from its last checkpoint produces the same curve as an uninterrupted one.
"""

from __future__ import annotations

import copy
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from openrlhf_rrl.atomic import atomic_write
from openrlhf_rrl.config import RRLConfig, logprob_temperature_for, retry_unsolved_for
from openrlhf_rrl.core.errors import RRLConfigError
from openrlhf_rrl.core.planner import GroupPlan, PromptRef
from openrlhf_rrl.core.replay import RetrospectiveReplay
from openrlhf_rrl.core.step_checker import load_step_checker, verified_share
from openrlhf_rrl.core.trajectory import Trajectory
from openrlhf_rrl.runner import openrlhf_math as orl
from openrlhf_rrl.runner.lr_schedule import LR_SCHEDULERS, lr_factor
from openrlhf_rrl.runner.run_state import RunState, jsonable, truncate_metrics, write_row
from openrlhf_rrl.runner.sampling import build_training_batch, greedy_eval, sample, sequence_logprobs
from openrlhf_rrl.tasks import PromptItem


@dataclass
class TrainConfig:
    """Knobs of one RL run; names follow OpenRLHF's flags where the meaning is the same."""

    steps: int = 300
    prompts_per_step: int = 32  # --rollout.batch_size
    n_samples: int = 8  # --rollout.n_samples_per_prompt
    max_new_tokens: int = 9  # --rollout.max_new_tokens
    temperature: float = 1.0  # --rollout.temperature
    hard_temperature: float | None = None  # exploration knob of a tuned baseline: hotter sampling on hard prompts
    # the step checker as a dense process reward: reward = outcome + weight x verified fraction of the response
    # (--reward.process_weight); the fair reference for replay that cuts with the same checker
    process_reward_weight: float = 0.0
    estimator: str = "reinforce_baseline"  # --algo.advantage.estimator
    no_std_norm: bool = False  # --algo.advantage.no_std_norm
    gamma: float = 1.0
    lambd: float = 0.95
    kl_coef: float = 0.0  # --algo.kl.init_coef (0: no reference model is kept)
    kl_estimator: str = "k1"
    eps_clip: float = 0.2
    lr: float = 3e-4  # --actor.learning_rate
    critic_lr: float = 1e-3  # --critic.learning_rate
    grad_clip: float = 1.0
    # OpenRLHF's optimizer defaults are cosine_with_min_lr (3% warm-up, down to 0.1x) and betas (0.9, 0.95);
    # the runner's measurements used a constant rate and torch's betas, which stay its defaults
    lr_scheduler: str = "constant"  # --actor.lr_scheduler
    lr_warmup_ratio: float = 0.03  # --actor.lr_warmup_ratio
    min_lr_ratio: float = 0.1  # --actor.min_lr_ratio
    adam_betas: tuple[float, float] = (0.9, 0.999)  # --actor.adam.betas
    is_correction: bool = False  # OpenRLHF's rollout IS correction for rows sampled at a temperature != 1
    # the loss normalisation of restart rows is rrl.loss_norm (--rrl_loss_norm, alias --actor.loss_norm)
    eval_every: int = 50
    eval_size: int = 512
    ckpt_every: int = 0
    seed: int = 0
    rrl: RRLConfig = field(default_factory=RRLConfig)


class Trainer:
    def __init__(self, cfg: TrainConfig, task, policy, tokenizer, out_path: str | os.PathLike,
                 critic=None, ckpt_dir: str | os.PathLike | None = None,
                 progress: Callable[[int], None] | None = None, engine=None):
        """engine: None samples with the policy itself (transformers); a runner.vllm_engine.VllmSampler
        samples on vLLM and gets the new weights after every update."""
        if cfg.estimator not in orl.ESTIMATORS:
            raise ValueError(f"--algo.advantage.estimator: expected one of {', '.join(orl.ESTIMATORS)}, got {cfg.estimator!r}")
        if cfg.estimator == "gae" and critic is None:
            raise ValueError("--algo.advantage.estimator gae needs a critic")
        if engine is not None and cfg.is_correction:
            raise ValueError("--rollout.is_correction: not with --engine vllm (it returns temperature-1 log-probs only)")
        if engine is not None and cfg.rrl.enable and cfg.rrl.scorer == "entropy":
            raise ValueError("--rrl_scorer entropy: not with --engine vllm (it returns no token entropies)")
        self.engine = engine
        self.cfg, self.task, self.policy, self.tok, self.critic = cfg, task, policy, tokenizer, critic
        self.out_path = Path(out_path)
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        self.ckpt_dir = Path(ckpt_dir) if ckpt_dir else None
        self.progress = progress or (lambda step: None)
        self.device = next(policy.parameters()).device
        if cfg.lr_scheduler not in LR_SCHEDULERS:
            raise ValueError(f"--actor.lr_scheduler: expected one of {', '.join(LR_SCHEDULERS)}, got {cfg.lr_scheduler!r}")
        self.opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr, betas=tuple(cfg.adam_betas))
        self.critic_opt = (torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr, betas=tuple(cfg.adam_betas))
                           if critic is not None else None)
        self.ref = None
        if cfg.kl_coef > 0:  # a frozen copy of the warm model is the KL reference
            self.ref = copy.deepcopy(policy).eval().requires_grad_(False)
        self.policy_loss = orl.PolicyLoss(
            clip_eps_low=cfg.eps_clip, clip_eps_high=cfg.eps_clip,
            is_correction_level="token" if cfg.is_correction else "off", is_correction_mode="clip",
            is_correction_threshold=(0.0, 5.0),
        )
        self.value_loss = orl.ValueLoss(clip_eps=0.2)
        checker = getattr(task, "verified_tokens", None) if getattr(task, "has_step_checker", False) else None
        step_checker = None
        if checker is not None:
            step_checker = lambda prompt_ids, response_ids, label: checker(self._item(None, label), response_ids)  # noqa: E731
        elif cfg.rrl.step_checker:
            step_checker = load_step_checker(cfg.rrl.step_checker)
        if cfg.process_reward_weight and step_checker is None:
            raise RRLConfigError("--reward.process_weight: needs a step checker (a task that has one, or "
                                 "--rrl_step_checker FILE.py)")
        self.step_checker = step_checker
        self.logprob_temperature = logprob_temperature_for(cfg.rrl, cfg.temperature)  # run or sampled
        self.retry_unsolved = retry_unsolved_for(cfg.rrl, cfg.temperature)  # on or off
        self.replay = None
        if cfg.rrl.enable:
            self.replay = RetrospectiveReplay(replace(cfg.rrl, retry_unsolved=self.retry_unsolved),
                                              step_checker=step_checker, stop_token_ids=(tokenizer.eos_token_id,))
        self._items: dict[str, PromptItem] = {}
        self._eval_sets = None
        self.state = RunState(cfg.seed, self.device)

    # ----------------------------------------------------------------- one step
    def prompts_for(self, step: int) -> list[PromptItem]:
        """The prompt stream depends on (seed, step) only: both arms see the same prompts."""
        items = self.task.rl_prompts(self.cfg.prompts_per_step, random.Random(f"{self.cfg.seed}/{step}"))
        self._items.update((it.key, it) for it in items)
        return items

    def _item(self, key: str | None, label) -> PromptItem:
        """The task item of a prompt key; a restart of a prompt from an earlier (or pre-resume) step is
        rebuilt from its key, which holds the prompt text."""
        if key in self._items:
            return self._items[key]
        text = key.split(":", 1)[1] if key else ""
        return PromptItem(key=key or "", text=text, label=label, length=0, hard=False)

    def row_temperature(self, plan: GroupPlan, item: PromptItem) -> float:
        if plan.is_restart:
            return plan.temperature if plan.temperature is not None else self.cfg.temperature
        if self.cfg.hard_temperature is not None and self.task.is_hard(item):
            return self.cfg.hard_temperature
        return self.cfg.temperature

    def train_step(self, step: int) -> dict:
        cfg, t0 = self.cfg, time.perf_counter()
        items = self.prompts_for(step)
        refs = [PromptRef(key=it.key, prompt_ids=tuple(self.task.encode_prompt(it)), label=it.label) for it in items]
        rrl_s, t = 0.0, time.perf_counter()
        if self.replay is None:
            plans = [GroupPlan(prompt=r) for r in refs]
        else:
            plans = self.replay.plan(refs, step)
            rrl_s = time.perf_counter() - t

        n = cfg.n_samples
        rows, row_items, roll = self.rollout(plans)
        prompt_ids, prefix_ids = roll.prompt_ids, roll.prefix_ids
        continuations = roll.continuations()
        responses = roll.responses()  # restart prefix + continuation
        self.state.tokens_generated += sum(len(c) for c in continuations)

        # The user's reward function sees the ORIGINAL prompt and the full response (prefix + continuation).
        outcome = self.task.score(row_items, responses).float()
        rewards = outcome + cfg.process_reward_weight * self.verified_fraction(rows, responses).to(outcome.device) \
            if cfg.process_reward_weight else outcome

        batch = build_training_batch(prompt_ids, continuations, prefix_ids, pad_id=self.tok.pad_token_id,
                                     train_prefix=cfg.rrl.train_prefix)
        rate_factor = self.set_lr(step)
        metrics = self.update(batch, rewards, roll, [n] * len(plans))
        metrics["lr"] = cfg.lr * rate_factor
        values = metrics.pop("_values", None)
        if self.engine is not None:
            self.engine.sync(self.policy)  # the next rollout must come from the updated policy

        successes = outcome >= cfg.rrl.success_threshold  # a process reward never turns a failure into a success
        group_success = successes.float().view(len(plans), n).mean(dim=1)
        if self.replay is not None:
            t = time.perf_counter()
            metrics.update(self.replay_observe(plans, responses, rewards, successes, group_success, roll, values, step))
            rrl_s += time.perf_counter() - t

        fresh = [g for g, p in enumerate(plans) if not p.is_restart]
        hard = [g for g in fresh if self.task.is_hard(row_items[g * n])]
        elapsed = time.perf_counter() - t0
        self.state.train_time_s += elapsed
        self.state.rrl_time_s += rrl_s
        metrics.update({
            "kind": "train", "step": step,
            "reward": rewards.mean().item(),
            "fresh_success": group_success[fresh].mean().item() if fresh else 0.0,
            "fresh_hard_success": group_success[hard].mean().item() if hard else 0.0,
            "restart_groups": sum(p.is_restart for p in plans),
            "tokens": sum(len(c) for c in continuations),
            "step_s": elapsed, "rrl_s": rrl_s,
        })
        return metrics

    def rollout(self, plans: list[GroupPlan]):
        """n samples of every plan (a restart continues its prefix): the rows' plans, their prompt items, and
        the Rollout."""
        rows = [plan for plan in plans for _ in range(self.cfg.n_samples)]
        row_items = [self._item(p.prompt.key, p.prompt.label) for p in rows]
        prompt_ids = [list(p.prompt.prompt_ids) for p in rows]
        prefix_ids = [list(p.prefix_ids) for p in rows]
        temps = [self.row_temperature(p, it) for p, it in zip(rows, row_items)]
        self.policy.eval()
        # the length budget counts the prefix: a restart may add only what a fresh rollout could
        budgets = [max(1, self.cfg.max_new_tokens - len(p)) for p in prefix_ids]
        sampler = self.engine.sample if self.engine is not None else sample
        roll = sampler(self.policy, prompt_ids, prefix_ids, budgets, temps,
                       eos_id=self.tok.eos_token_id, pad_id=self.tok.pad_token_id, generator=self.state.sample_gen)
        return rows, row_items, roll

    def verified_fraction(self, rows: list[GroupPlan], responses: list[list[int]]) -> torch.Tensor:
        """The share of each response (prefix included) the step checker verifies correct, in [0, 1]."""
        out = []
        for plan, response in zip(rows, responses):
            verdict = self.step_checker(list(plan.prompt.prompt_ids), list(response), plan.prompt.label)
            out.append(verified_share(verdict, len(response)))
        return torch.tensor(out, dtype=torch.float32)

    def replay_observe(self, plans, responses, rewards, successes, group_success, roll, values, step) -> dict:
        """Hand every group's trajectories (full responses, rewards, per-token signals) to the replay.

        Tensors are turned into lists once, up front: per-element tensor indexing would cost more
        than the whole replay bookkeeping."""
        n = self.cfg.n_samples
        lengths = roll.mask.sum(-1).tolist()
        logprobs, entropy, eos = roll.logprobs.tolist(), roll.entropy.tolist(), roll.eos.tolist()
        reward_list, success_list, rates = rewards.tolist(), successes.tolist(), group_success.tolist()
        groups = []
        for g, plan in enumerate(plans):
            pre = len(plan.prefix_ids)
            stored = list(plan.prefix_logprobs) if plan.prefix_logprobs else [0.0] * pre
            zeros = [0.0] * pre
            group = []
            for i in range(g * n, (g + 1) * n):
                cont = lengths[i]
                group.append(Trajectory(
                    prompt_key=plan.prompt.key, prompt_ids=plan.prompt.prompt_ids,
                    response_ids=responses[i], reward=reward_list[i], success=success_list[i],
                    label=plan.prompt.label,
                    logprobs=stored + logprobs[i][:cont] if pre else logprobs[i][:cont],
                    values=None if values is None else values[i][: pre + cont],
                    entropies=zeros + entropy[i][:cont] if pre else entropy[i][:cont],
                    group_success_rate=rates[g], prefix_len=pre, eos=eos[i],
                ))
            groups.append(group)
        return self.replay.observe(plans, groups, step)

    def logprob_temperatures(self, roll) -> torch.Tensor | None:
        """Per row, the temperature its log-probs are taken at (policy, reference and so the IS ratio):
        None (1 for every row: the runner's policy is the untempered one) with --rrl_logprob_temperature
        run; each row's own sampling temperature (1 for greedy rows) with sampled, so a hot row (a hot
        restart, a --rollout.hard_temperature row) is trained on-policy for the tempered policy."""
        if self.logprob_temperature != "sampled":
            return None
        return torch.tensor([t if t > 0 else 1.0 for t in roll.temperature], dtype=torch.float32)

    def set_lr(self, step: int) -> float:
        """Scale both optimizers' rates for this step (1-based) by the schedule; returns the factor. A pure
        function of the step, so a resumed run continues the same schedule."""
        cfg = self.cfg
        factor = lr_factor(step - 1, cfg.steps, cfg.lr_scheduler, cfg.lr_warmup_ratio, cfg.min_lr_ratio)
        for opt, base in ((self.opt, cfg.lr), (self.critic_opt, cfg.critic_lr)):
            for group in opt.param_groups if opt is not None else ():
                group["lr"] = base * factor
        return factor

    def update(self, batch, rewards: torch.Tensor, roll, group_sizes: list[int]) -> dict:
        """One on-policy update with OpenRLHF's losses; returns metrics (and the critic's values per
        response token, under "_values", for the replay's critic scorer)."""
        cfg, dev = self.cfg, self.device
        mask = batch.action_mask.float().to(dev)
        rewards = rewards.to(dev)
        self.policy.train()
        temps = self.logprob_temperatures(roll)
        log_probs = sequence_logprobs(self.policy, batch, temperature=temps)
        old = log_probs.detach()  # one update per rollout: the rollout policy is the current one
        kl = torch.zeros_like(old)
        if self.ref is not None:
            with torch.no_grad():
                ref_lp = sequence_logprobs(self.ref, batch, temperature=temps)
            kl = orl.compute_approx_kl(old, ref_lp, kl_estimator=cfg.kl_estimator) * mask

        values = None
        if self.critic is not None:
            with torch.no_grad():
                values = self._critic_values(batch)
        if cfg.estimator == "gae":
            token_rewards = orl.compute_reward(rewards, cfg.kl_coef, kl, action_mask=mask)
            advantages, returns = orl.gae(values, token_rewards, mask, cfg.gamma, cfg.lambd)
        else:
            shaped = orl.shape_group_rewards(rewards, group_sizes, cfg.estimator)
            token_rewards = orl.compute_reward(shaped, cfg.kl_coef, kl, action_mask=mask)
            advantages = returns = orl.discounted_returns(token_rewards, mask, cfg.gamma)
        if cfg.estimator in ("gae", "reinforce", "reinforce_baseline"):
            advantages = orl.whiten(advantages, mask, std=not cfg.no_std_norm)

        # Rows drawn at a temperature != 1 (hot restarts, a hot baseline) are off-policy for the
        # temperature-1 policy: OpenRLHF's rollout importance-sampling correction weights them (with
        # --rrl_logprob_temperature sampled their log-probs are tempered too, and the weight is 1).
        rollout_lp = old.clone()
        view = batch.continuation_view(rollout_lp)
        view.copy_(torch.where(batch.continuation_mask.to(dev), roll.sampling_logprobs.to(dev), view))
        loss, clip_ratio, ppo_kl, is_kl, _ = self.policy_loss(
            log_probs, old, advantages, action_mask=mask, rollout_log_probs=rollout_lp if cfg.is_correction else None,
            batch_num_tokens=loss_denominator(mask, roll.prefix_ids, cfg.rrl.loss_norm, cfg.rrl.train_prefix))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
        self.opt.step()
        out = {"policy_loss": loss.item(), "grad_norm": float(grad_norm), "kl": orl.masked_mean(kl, mask).item()}

        if self.critic is not None:
            self.critic.train()
            new_values = self._critic_values(batch)
            vloss = self.value_loss(new_values, values, returns, action_mask=mask)
            self.critic_opt.zero_grad(set_to_none=True)
            vloss.backward()
            torch.nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.grad_clip)
            self.critic_opt.step()
            out["value_loss"] = vloss.item()
            out["_values"] = self._response_values(batch, values, roll)
        return out

    def _critic_values(self, batch) -> torch.Tensor:
        """Critic values aligned with the action mask: column t = value of the state before token t+1."""
        dev = self.device
        v = self.critic(input_ids=batch.input_ids.to(dev), attention_mask=batch.attention_mask.to(dev),
                        position_ids=batch.position_ids.to(dev))
        return v[:, :-1]

    @staticmethod
    def _response_values(batch, values: torch.Tensor, roll) -> list[list[float]]:
        """Per row, the value of the state after k response tokens (k = 0 .. len-1), prefix included."""
        out = []
        for i, prefix in enumerate(roll.prefix_ids):
            start = batch.context_len - len(prefix) - 1  # the column before response token 0
            length = len(prefix) + int(roll.mask[i].sum())
            out.append(values[i, start:start + length].tolist())
        return out

    # ----------------------------------------------------------------- eval
    @torch.no_grad()
    def evaluate(self, step: int) -> dict:
        self.policy.eval()
        if self._eval_sets is None:
            self._eval_sets = self.task.eval_sets(self.cfg.eval_size)
        row = {"kind": "eval", "step": step}
        for name, items in self._eval_sets.items():
            conts = greedy_eval(self.policy, [self.task.encode_prompt(it) for it in items], self.cfg.max_new_tokens,
                                self.tok.eos_token_id, self.tok.pad_token_id)
            row[f"eval/{name}"] = self.task.score(items, conts).float().mean().item()
        return row

    # ----------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> None:
        if self.ckpt_dir is None:
            return
        state = {
            "policy": self.policy.state_dict(), "opt": self.opt.state_dict(),
            "critic": self.critic.state_dict() if self.critic is not None else None,
            "critic_opt": self.critic_opt.state_dict() if self.critic_opt is not None else None,
            "run": self.state.state_dict(),
        }
        atomic_write(self.ckpt_dir / "trainer.pt", lambda tmp: torch.save(state, tmp))
        if self.replay is not None:
            self.replay.save(self.ckpt_dir / "rrl_buffer.jsonl")

    def load_checkpoint(self) -> bool:
        path = self.ckpt_dir / "trainer.pt" if self.ckpt_dir else None
        if path is None or not path.exists():
            return False
        state = torch.load(path, weights_only=True, map_location=self.device)
        self.policy.load_state_dict(state["policy"])
        self.opt.load_state_dict(state["opt"])
        if self.critic is not None:
            self.critic.load_state_dict(state["critic"])
            self.critic_opt.load_state_dict(state["critic_opt"])
        run = state["run"]
        run["sample_gen"] = run["sample_gen"].cpu()  # generator states are CPU byte tensors
        self.state.load_state_dict(run)
        if self.replay is not None:
            self.replay.load(self.ckpt_dir / "rrl_buffer.jsonl")
        return True

    # ----------------------------------------------------------------- the run
    def run(self, resume: bool = True, stop_after: int | None = None) -> dict:
        """Train to cfg.steps (or stop early after `stop_after` steps, for tests of resume)."""
        cfg = self.cfg
        resumed = resume and self.load_checkpoint()
        if resumed and self.engine is not None:
            self.engine.sync(self.policy)
        if resumed:
            truncate_metrics(self.out_path, self.state.step)
        elif self.out_path.exists():
            self.out_path.unlink()
        mark = time.perf_counter()
        with open(self.out_path, "a", encoding="utf-8") as log:
            if self.state.step == 0:
                write_row(log, self.evaluate(0))
            done = 0
            while self.state.step < cfg.steps:
                step = self.state.step + 1
                row = self.train_step(step)
                self.state.step = step
                write_row(log, row)
                if step % cfg.eval_every == 0 or step == cfg.steps:
                    write_row(log, self.evaluate(step))
                now = time.perf_counter()
                self.state.wall_s += now - mark
                mark = now
                if cfg.ckpt_every and step % cfg.ckpt_every == 0:
                    log.flush()
                    self.save_checkpoint()
                self.progress(step)
                done += 1
                if stop_after is not None and done >= stop_after and step < cfg.steps:
                    return {"stopped_at": step}
            summary = {
                "kind": "summary", "step": self.state.step,
                "wall_s": self.state.wall_s + time.perf_counter() - mark,
                "tokens_generated": self.state.tokens_generated,
                "step_time_s": self.state.train_time_s / max(1, self.state.step),
                "rrl_overhead_pct": 100.0 * self.state.rrl_time_s / max(1e-9, self.state.train_time_s),
                "config": jsonable(asdict(cfg)),
                "logprob_temperature": self.logprob_temperature,  # what --rrl_logprob_temperature auto became
                "retry_unsolved": self.retry_unsolved,  # what --rrl_retry_unsolved auto became
            }
            write_row(log, summary)
        return summary


def loss_denominator(mask: torch.Tensor, prefix_ids: list[list[int]], mode: str, train_prefix: bool) -> float:
    """Token count the policy loss is averaged over (OpenRLHF's `batch_num_tokens`).

    A restart row trains on its continuation only. Averaging over trained tokens alone would give
    each of them more weight the more of the batch is restarts, so the same advantages would move
    the policy further under replay. Counting the (untrained) prefix tokens as well keeps the weight
    of a token what it would be had the whole response been sampled in this step. `mode` is
    --rrl_loss_norm (--actor.loss_norm): "response" counts the prefix, "trained" does not."""
    trained = float(mask.sum())
    if mode == "trained" or train_prefix:
        return max(trained, 1.0)
    if mode != "response":
        raise ValueError(f"--rrl_loss_norm: expected response or trained, got {mode!r}")
    return max(trained + sum(len(p) for p in prefix_ids), 1.0)
