"""RetrospectiveReplay: the one object both the embedded runner and the OpenRLHF glue drive.

Per training step:  plans = rrl.plan(prompts, step)   -> roll out each plan's group
                    metrics = rrl.observe(plans, groups, step)
plan() turns the last share of fresh slots into restarts; observe() learns from what came back:
fresh groups retire solved prompts and (for hard prompts) propose new states under admission
control, restart groups update their entry's pass-rate posterior and may retire it.
"""

from __future__ import annotations

import time

import logging

from .buffer import RETIRE_REASONS, ReplayBuffer
from .errors import BufferFileError
from .metrics import StepMetrics, is_informative
from .planner import GroupPlan, PromptRef, ReplayPlanner
from .policies import make_policy
from .review import ReviewReport, apply_review_file, default_review_path
from .schedules import AdaptiveShare, ShareSchedule
from .scoring import make_scorer
from .trajectory import Trajectory

# Two candidates of one prompt whose prefixes differ in length by at most this many tokens are
# near-duplicates for admission: keep the better one and spend the admission on another depth.
DEDUPE_TOKENS = 4

log = logging.getLogger(__name__)


class RetrospectiveReplay:
    def __init__(self, config, step_checker=None, stop_token_ids=()):
        """config: an RRLConfig. step_checker(prompt_ids, response_ids, label) -> verified tokens (int) or
        (tokens, steps); used to fill Trajectory.verified_tokens for the checker scorer when missing.
        stop_token_ids: the tokenizer's EOS (and turn-end) ids; no retained prefix may contain one."""
        self.config = config
        self.step_checker = step_checker
        c = config
        self.buffer = ReplayBuffer(capacity=c.buffer_capacity, per_prompt_capacity=c.per_prompt_capacity,
                                   temperature=c.temperature, restart_decay=c.restart_decay,
                                   retire_solved_rate=c.retire_solved_rate, retire_dead_after=c.retire_dead_after,
                                   seed=c.seed, max_prefix_tokens=c.max_prefix_tokens or None,
                                   stop_token_ids=stop_token_ids)
        self.scorer = make_scorer(c.scorer, hard_threshold=c.hard_threshold, min_prefix_frac=c.min_prefix_frac,
                                  max_prefix_frac=c.max_prefix_frac, min_prefix_tokens=c.min_prefix_tokens,
                                  max_prefix_tokens=c.max_prefix_tokens or None, cut_every=c.cut_every,
                                  boundary_tokens=c.boundary_tokens, stop_token_ids=stop_token_ids)
        self.policy = make_policy(c.policy, target_pass_rate=c.target_pass_rate)
        if c.replay_share == "auto":
            self.schedule = AdaptiveShare(lo=c.share_min, hi=c.share_max, start_step=c.start_step)
        else:
            self.schedule = ShareSchedule(c.share_schedule, c.replay_share, c.start_step, c.warmup_steps, c.total_steps)
        self.planner = ReplayPlanner(self.schedule, self.policy, c.max_restarts_per_prompt, c.seed,
                                     restart_temperature=c.restart_temperature)
        self.fresh_rates: dict[str, float] = {}  # latest fresh-group success rate per prompt
        self.solved_prompts: set[str] = set()  # prompts with at least one success ever (fresh or restart)
        self.last_step: int | None = None  # the last observed step (saved, so rrl-inspect can show ages)
        # a reviewer's pin/ban file (core/review.py), applied at every plan(); unless set, it is the
        # rrl_review.jsonl beside the buffer file, known once the buffer is saved or loaded
        self.review_path: str | None = None
        self.last_review: ReviewReport | None = None
        self._plan_seconds = 0.0
        self._retired_at_plan: dict | None = None

    # ------------------------------------------------------------------ plan
    def plan(self, prompts: list[PromptRef], step: int) -> list[GroupPlan]:
        t0 = time.perf_counter()
        if not self.config.enable:
            plans = [GroupPlan(prompt=p) for p in prompts]
        else:
            self._retired_at_plan = dict(self.buffer.retired_counts)  # so this step's metrics count review bans
            self.apply_review()
            plans = self.planner.plan(prompts, step, self.buffer, self.fresh_rates)
        self._plan_seconds += time.perf_counter() - t0
        return plans

    def apply_review(self) -> ReviewReport | None:
        """Apply the reviewer's new pin/unpin/ban lines (see core/review.py); bad lines are logged as
        warnings, one each, and skipped. Called by plan(), so a file written now acts at the next step."""
        if self.review_path is None:
            return None
        report = apply_review_file(self.buffer, self.review_path)
        for line in report.errors:
            log.warning("%s", line)
        if report.applied:
            log.info("%s", report.summary())
        self.last_review = report
        return report

    def admit_limit(self, n_groups: int) -> int:
        """New entries per step: the flag, or (-1) as many as the restart slots at the nominal share, so
        candidates do not arrive faster than restarts can test them (buffer takeover)."""
        if self.config.admit_per_step >= 0:
            return self.config.admit_per_step
        return max(1, int(self.schedule.nominal * n_groups + 0.5))

    # ------------------------------------------------------------------ observe
    def observe(self, plans: list[GroupPlan], trajectories: list[list[Trajectory]], step: int) -> dict:
        t0 = time.perf_counter()
        if len(plans) != len(trajectories):
            raise ValueError(f"observe: {len(plans)} plans but {len(trajectories)} trajectory groups")
        self.last_step = step
        c = self.config
        m = StepMetrics()
        retired_before = self._retired_at_plan or dict(self.buffer.retired_counts)
        self._retired_at_plan = None
        m.target_share = self.schedule(step) if c.enable else 0.0

        fresh_info, restart_info = [], []
        candidates = []
        # fresh groups first, so that a prompt solved from scratch this step is not counted as revived
        for plan, group in zip(plans, trajectories):
            if plan.is_restart or not group:
                continue
            wins = [bool(t.success) for t in group]
            rate = sum(wins) / len(wins)
            key = plan.prompt.key
            self.fresh_rates[key] = rate
            if any(wins):
                self.solved_prompts.add(key)
            fresh_info.append(is_informative(wins))
            if not c.enable:
                continue
            self.buffer.record_fresh(key, rate, step)
            if rate < c.hard_threshold:
                for t in group:
                    t = self._prepared(t, rate)
                    candidates.extend((score, cut, t) for cut, score in self.scorer.scored(t))

        restart_wins = restart_total = 0
        for plan, group in zip(plans, trajectories):
            if not plan.is_restart or not group:
                continue
            wins = [bool(t.success) for t in group]
            m.restart_groups += 1
            restart_wins += sum(wins)
            restart_total += len(wins)
            restart_info.append(is_informative(wins))
            m.new_tokens_saved += len(plan.prefix_ids) * len(group)
            key = plan.prompt.key
            if any(wins) and key not in self.solved_prompts:
                m.revived_prompts += 1
                self.solved_prompts.add(key)
            self.buffer.record_restart(plan.entry_key, [1.0 if w else 0.0 for w in wins], step, success_threshold=0.5)
            if self.scorer.refresh_from_restarts:
                entry = self.buffer.get(plan.entry_key)
                if entry is not None:
                    self.buffer.refresh_score(plan.entry_key, entry.pass_rate)

        m.candidates = len(candidates)
        if c.enable:
            m.admitted = self._admit(candidates, self.admit_limit(len(plans)), step)

        m.informative_fresh_groups = sum(fresh_info) / len(fresh_info) if fresh_info else 0.0
        m.informative_restart_groups = sum(restart_info) / len(restart_info) if restart_info else 0.0
        if c.enable:
            self.schedule.update(m.informative_restart_groups if restart_info else None,
                                 m.informative_fresh_groups if fresh_info else None)
        m.restart_success = restart_wins / restart_total if restart_total else 0.0
        m.replay_share = m.restart_groups / len(plans) if plans else 0.0
        m.buffer_size = len(self.buffer)
        m.untried = sum(1 for e in self.buffer.entries() if e.restarts == 0)
        m.retired = {r: self.buffer.retired_counts.get(r, 0) - retired_before.get(r, 0) for r in RETIRE_REASONS}
        m.overhead_s = self._plan_seconds + time.perf_counter() - t0
        self._plan_seconds = 0.0
        return m.to_dict()

    def _prepared(self, t: Trajectory, rate: float) -> Trajectory:
        """The trajectory with its group's success rate and, for the checker scorer, its verified
        prefix, filled in place (a copy per trajectory was a measurable share of the bookkeeping).
        Only failed rollouts are checked: the checker scorer cuts nothing else."""
        t.group_success_rate = rate
        if (t.verified_tokens is None and not t.success and self.step_checker is not None
                and self.config.scorer == "checker"):
            out = self.step_checker(t.prompt_ids, t.response_ids, t.label)
            if isinstance(out, tuple):
                t.verified_tokens, t.verified_steps = out
            else:
                t.verified_tokens = out
        return t

    def _admit(self, candidates: list[tuple[float, int, Trajectory]], limit: int, step: int) -> int:
        """Best first; skip near-duplicate depths of one prompt; stop after `limit` new entries.

        candidates are (score, cut, trajectory); a RetainedState is built only for those reached."""
        if limit <= 0 or not candidates:
            return 0
        order = sorted(range(len(candidates)), key=lambda i: (-candidates[i][0], i))
        kept_lens: dict[str, list[int]] = {}
        admitted = 0
        for i in order:
            score, cut, traj = candidates[i]
            lens = kept_lens.setdefault(traj.prompt_key, [])
            if any(abs(cut - x) <= DEDUPE_TOKENS for x in lens):
                continue
            lens.append(cut)
            s = self.scorer.state_at(traj, cut, score, step)
            was_there = s.key in self.buffer
            if self.buffer.add(s) and not was_there:
                admitted += 1
                if admitted >= limit:
                    break
        return admitted

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"buffer": self.buffer.state_dict(), **self._extra_state()}

    def _extra_state(self) -> dict:
        return {"fresh_rates": dict(self.fresh_rates), "solved_prompts": sorted(self.solved_prompts),
                "schedule": self.schedule.state_dict(), "step": self.last_step}

    def load_state_dict(self, d: dict) -> None:
        parsed = self._parse_extra(d)
        self.buffer.load_state_dict(d["buffer"])
        self._apply_extra(parsed)

    @staticmethod
    def _parse_extra(d: dict | None) -> tuple:
        d = d or {}
        fresh = {str(k): float(v) for k, v in dict(d.get("fresh_rates", {})).items()}
        solved = {str(k) for k in d.get("solved_prompts", [])}
        sched = d.get("schedule", {})
        if not isinstance(sched, dict) or not all(v is None or isinstance(v, (int, float)) for v in sched.values()):
            raise ValueError("schedule: expected an object of numbers")
        step = d.get("step")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise ValueError("step: expected an integer or null")
        return fresh, solved, sched, step

    def _apply_extra(self, parsed: tuple) -> None:
        self.fresh_rates, self.solved_prompts, sched, self.last_step = parsed
        self.schedule.load_state_dict(sched)

    def save(self, path: str) -> None:
        """One file: the buffer's JSON lines, with RRL's own state in the header's "extra"."""
        self.buffer.save(path, extra=self._extra_state())
        if self.review_path is None:
            self.review_path = default_review_path(path)

    def load(self, path: str) -> None:
        """Resume from save(); on a bad file (BufferFileError naming it) nothing here changes."""
        state, extra = ReplayBuffer.read_file(path)
        try:
            parsed = self._parse_extra(extra)
        except (TypeError, ValueError, AttributeError) as e:
            raise BufferFileError(f"{path}: corrupted RRL state in the header ({e})") from None
        self.buffer.load_into(path, _state=state)
        self._apply_extra(parsed)
        if self.review_path is None:
            self.review_path = default_review_path(path)
