"""RetrospectiveReplay: the one object both the embedded runner and the OpenRLHF glue drive.

Per training step:  plans = rrl.plan(prompts, step)   -> roll out each plan's group
                    metrics = rrl.observe(plans, groups, step)
plan() turns the last share of fresh slots into restarts; observe() learns from what came back:
fresh groups retire solved prompts and (for hard prompts) propose new states under admission
control, restart groups update their entry's pass-rate posterior and may retire it.

With --rrl_policy passrate (Prefix Sampling, both ways) observe() also keeps HANDICAPS, failed
prefixes of mostly passing prompts, and takes head starts only from successful or verified-correct
prefixes. Cut control (--rrl_cut_control; on with passrate) acts on single restart groups, not on
mean pass rates: a mixed group leaves the cut alone, an all-fail group moves a head start's cut one
step later (more of a correct solution given) and an all-pass group one step earlier; a handicap
moves the other way round (a longer failed prefix is a harder start). Entries never restarted are
retired after --rrl_untried_ttl steps.

With --rrl_retry_unsolved (auto: with the agree scorer and hot restarts, retries_on) a hard prompt whose
fresh group had no success is kept as a RETRY (an entry with no prefix, ranked below every cut): its
restart group samples the prompt again at the restart temperature in the restart slots the cuts leave
free, and a mixed retry group is mined like any mixed restart group.
"""

from __future__ import annotations

import logging
import time
from itertools import zip_longest

from .buffer import ReplayBuffer
from .retirement import RETIRE_REASONS
from .cuts import allowed_range, grid_cuts, handicap_cut, moved_cut
from .errors import BufferFileError
from .idle_watch import IdleWatch, StepCounts
from .metrics import StepMetrics, is_informative
from .planner import GroupPlan, PromptRef, ReplayPlanner
from .policies import make_policy
from .review import ReviewReport, apply_review_file, default_review_path
from .schedules import AdaptiveShare, ShareSchedule
from .scoring import make_scorer, scorer_agrees
from .step_checker import load_step_checker, verify_by_agreement
from .trajectory import Trajectory, as_list

# Two candidates of one prompt whose prefixes differ in length by at most this many tokens are
# near-duplicates for admission: keep the better one and spend the admission on another depth.
DEDUPE_TOKENS = 4
# A retry's score, far below the built-in scorers' (agree and checker in [-1, 1], reward and mc the
# reward plus a small bonus): with the promise policy's exp(score / T) priority the cuts take the restart
# slots first, retries fill the ones they leave free, and a full buffer evicts retries first.
RETRY_SCORE = -20.0

log = logging.getLogger(__name__)


def reads_rollouts(config, is_restart: bool, wins) -> bool:
    """Whether observe() may read a group's token ids and per-token signals, given its outcomes: only the
    groups cuts can come from (a hard fresh group; with passrate's both ways a mostly passing one too; with
    the agree scorer a mixed restart group). Every other group is read for its outcomes alone, so a front
    end whose buffer lives in another process sends those without their tokens."""
    wins = [bool(w) for w in wins]
    if not config.enable or not wins:
        return False
    if is_restart:
        return scorer_agrees(config.scorer) and is_informative(wins)
    rate = sum(wins) / len(wins)
    return rate < config.hard_threshold or (config.policy == "passrate" and rate > 1.0 - config.hard_threshold)


def retries_on(config, run_temperature: float | None = None) -> bool:
    """--rrl_retry_unsolved as a decision. auto: with the agree scorer where restart groups sample hotter than
    the run (a retry at the run's own temperature repeats what just failed and measured below the baseline);
    without the run's temperature (run_temperature None) any set --rrl_restart_temperature counts as hotter.
    Both front ends decide it with the run's temperature (config.retry_unsolved_for)."""
    if config.retry_unsolved != "auto":
        return bool(config.enable) and config.retry_unsolved == "on"
    t = config.restart_temperature
    hot = t is not None and (run_temperature is None or t > run_temperature)
    return bool(config.enable) and scorer_agrees(config.scorer) and hot


class RetrospectiveReplay:
    def __init__(self, config, step_checker=None, stop_token_ids=()):
        """config: an RRLConfig. step_checker(prompt_ids, response_ids, label) -> verified tokens (int) or
        (tokens, steps); used to fill Trajectory.verified_tokens when missing (checker scorer, passrate
        policy, cut control); None: the one config.step_checker names (a .py file or a served checker's
        http(s) URL), if any. A checker with check_many(prompt_ids_list, response_ids_list, labels) -> one
        verdict per response gets all of a step's failed rollouts in one call.
        stop_token_ids: the tokenizer's EOS (and turn-end) ids; no retained prefix may contain one."""
        self.config = config
        c = config
        if step_checker is None and getattr(c, "step_checker", None):
            step_checker = load_step_checker(c.step_checker)
        self.step_checker = step_checker
        self.both_ways = c.policy == "passrate"  # head starts AND handicaps (Prefix Sampling)
        self.cut_control = c.cut_control == "on" or (c.cut_control == "auto" and c.policy == "passrate")
        self.retries = retries_on(c)  # hard prompts nothing solved are kept and sampled again (empty prefix)
        # verified prefixes are needed by the checker scorer, passrate's head starts, and cut control
        self._wants_verified = c.scorer == "checker" or self.both_ways or self.cut_control
        self.buffer = ReplayBuffer(capacity=c.buffer_capacity, per_prompt_capacity=c.per_prompt_capacity,
                                   temperature=c.temperature, restart_decay=c.restart_decay,
                                   retire_solved_rate=c.retire_solved_rate, retire_dead_after=c.retire_dead_after,
                                   seed=c.seed, max_prefix_tokens=c.max_prefix_tokens or None,
                                   stop_token_ids=stop_token_ids)
        self.scorer = make_scorer(c.scorer, hard_threshold=c.hard_threshold, min_prefix_frac=c.min_prefix_frac,
                                  max_prefix_frac=c.max_prefix_frac, min_prefix_tokens=c.min_prefix_tokens,
                                  max_prefix_tokens=c.max_prefix_tokens or None, cut_every=c.cut_every,
                                  boundary_tokens=c.boundary_tokens, stop_token_ids=stop_token_ids,
                                  **({"probes": c.agree_probes} if c.scorer == "agree" else {}))
        if self.scorer.verifies_by_agreement:
            self.step_checker = None  # outcome only: agreement with a success is the only verifier
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
        self.idle_watch = IdleWatch(c.idle_warn_steps, c)

    # ------------------------------------------------------------------ plan
    def plan(self, prompts: list[PromptRef], step: int, fill: int = 0, displace: bool = True) -> list[GroupPlan]:
        """One plan per prompt slot, then up to `fill` restarts in extra slots (a short batch topped up)."""
        t0 = time.perf_counter()
        if not self.config.enable:
            plans = [GroupPlan(prompt=p) for p in prompts]
        else:
            self._retired_at_plan = dict(self.buffer.retired_counts)  # so this step's metrics count review bans
            self.apply_review()
            plans = self.planner.plan(prompts, step, self.buffer, self.fresh_rates, fill=fill, displace=displace)
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
        """Learn from a step's groups, in order: fresh groups (state), cut candidates (score), restart
        outcomes (retire or move the cut), admission (retain), then the step's metrics."""
        t0 = time.perf_counter()
        if len(plans) != len(trajectories):
            raise ValueError(f"observe: {len(plans)} plans but {len(trajectories)} trajectory groups")
        self.last_step = step
        m = StepMetrics()
        counts = StepCounts()  # stage by stage, for the idle watch
        retired_before = self._retired_at_plan or dict(self.buffer.retired_counts)
        self._retired_at_plan = None
        m.target_share = self.schedule(step) if self.config.enable else 0.0
        groups = list(zip(plans, trajectories))
        # fresh groups first, so that a prompt solved from scratch this step is not counted as revived
        fresh_info, mined = self._observe_fresh(groups, step)
        candidates = self._score_candidates(groups, mined, counts)
        restart_info, restart_wins, restart_total = self._observe_restarts(groups, step, m)
        m.candidates = len(candidates)
        if self.config.enable:
            self._retain(candidates, len(plans), step, m, counts)
        self._close_step(m, counts, fresh_info, restart_info, restart_wins, restart_total, len(plans), len(mined))
        m.retired = {r: self.buffer.retired_counts.get(r, 0) - retired_before.get(r, 0) for r in RETIRE_REASONS}
        m.overhead_s = self._plan_seconds + time.perf_counter() - t0
        self._plan_seconds = 0.0
        return m.to_dict()

    def _observe_fresh(self, groups, step: int) -> tuple[list[bool], list[tuple]]:
        """Fresh groups: each prompt's success rate, a solved prompt's entries retired; returns whether
        each group was informative, and the groups to mine: (group, rate, handicap?) of hard prompts, and
        with passrate's both ways, of mostly passing ones (their failures become handicaps)."""
        c = self.config
        fresh_info, mined = [], []
        for plan, group in groups:
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
            if reads_rollouts(c, False, wins):  # a hard prompt, or (passrate's both ways) a mostly passing one
                mined.append((group, rate, rate >= c.hard_threshold))
        return fresh_info, mined

    def _score_candidates(self, groups, mined: list[tuple], counts: StepCounts) -> list[tuple]:
        """Cut candidates (score, cut, trajectory, handicap?) of the mined groups, after verifying their
        failures (agreement with a success, or the step checker). `mined` may grow: with the agree scorer a
        mixed restart group of a hard prompt shows where a continuation parts from a success."""
        c = self.config
        if c.enable and self.scorer.verifies_by_agreement:
            for plan, group in groups:
                rate = self.fresh_rates.get(plan.prompt.key, 0.0)
                if plan.is_restart and group and rate < c.hard_threshold and is_informative([t.success for t in group]):
                    mined.append((group, rate, False))
            for group, _, _ in mined:
                verify_by_agreement(group)
        # one step checker call for the whole step when it can take a batch (a served checker: one POST)
        self._verify([t for group, _, _ in mined for t in group])
        candidates = []
        for group, rate, handicap in mined:
            has_success = any(t.success for t in group)
            if self.retries and not handicap and group[0].prefix_len == 0 and not has_success:
                candidates.append((RETRY_SCORE, 0, group[0], False))  # a retry: the prompt itself, hot
            counts.mined_rollouts += len(group)
            counts.groups_with_success += has_success
            for t in group:
                counts.response_tokens += len(t.response_ids)
                if not handicap:
                    t.group_success_rate = rate
                    for cut, score in self.scorer.scored(t):
                        counts.cuts += 1
                        # passrate: a head start is a successful or a verified-correct prefix
                        if not self.both_ways or t.success or (t.verified_tokens is not None
                                                               and cut <= t.verified_tokens):
                            candidates.append((score, cut, t, False))
                elif not t.success:
                    t.group_success_rate = rate
                    cut = self._handicap_cut(t)
                    if cut is not None:
                        counts.cuts += 1
                        candidates.append((rate, cut, t, True))
        return candidates

    def _observe_restarts(self, groups, step: int, m: StepMetrics) -> tuple[list[bool], int, int]:
        """Restart groups: each entry's record (it may retire), cut control on an all-pass or all-fail
        group, revived prompts; returns whether each group was informative, and wins / continuations."""
        c = self.config
        restart_info, restart_wins, restart_total = [], 0, 0
        for plan, group in groups:
            if not plan.is_restart or not group:
                continue
            wins = [bool(t.success) for t in group]
            m.restart_groups += 1
            m.retry_groups += not plan.prefix_ids
            restart_wins += sum(wins)
            restart_total += len(wins)
            restart_info.append(is_informative(wins))
            m.new_tokens_saved += len(plan.prefix_ids) * len(group)
            key = plan.prompt.key
            if any(wins) and key not in self.solved_prompts:
                m.revived_prompts += 1
                self.solved_prompts.add(key)
            all_pass = all(wins)
            new_len = self._controlled_cut(plan.entry_key, all_pass) if c.enable and (
                all_pass or not any(wins)) else None
            self.buffer.record_restart(plan.entry_key, [1.0 if w else 0.0 for w in wins], step, success_threshold=0.5,
                                       retire=new_len is None)
            if new_len is not None:
                old_len = len(self.buffer.get(plan.entry_key).prefix_ids)
                # a cut solved n/n is refused if proposed again, like a retired solved entry
                self.buffer.move_cut(plan.entry_key, new_len, step, remember_old="solved" if all_pass else None)
                if new_len > old_len:
                    m.cuts_moved_later += 1
                else:
                    m.cuts_moved_earlier += 1
                continue
            if self.scorer.refresh_from_restarts:
                entry = self.buffer.get(plan.entry_key)
                if entry is not None:
                    self.buffer.refresh_score(plan.entry_key, entry.pass_rate)
        return restart_info, restart_wins, restart_total

    def _retain(self, candidates: list[tuple], n_groups: int, step: int, m: StepMetrics, counts: StepCounts) -> None:
        """Retire entries no restart got round to, then admit the best candidates up to the step's limit;
        what admission refused is counted for the idle watch."""
        self.buffer.retire_untried(step, self.config.untried_ttl)
        refused_before = dict(self.buffer.counters)
        m.admitted = self._admit(candidates, self.admit_limit(n_groups), step)
        for field, counter in (("refused_invalid", "refused_invalid"), ("refused_known", "refused_retired"),
                               ("rejected", "rejected")):
            setattr(counts, field, self.buffer.counters[counter] - refused_before[counter])

    def _close_step(self, m: StepMetrics, counts: StepCounts, fresh_info: list[bool], restart_info: list[bool],
                    restart_wins: int, restart_total: int, n_groups: int, n_mined: int) -> None:
        """The step's shares and rates, the adaptive share's update, and the idle watch's verdict."""
        c = self.config
        m.informative_fresh_groups = sum(fresh_info) / len(fresh_info) if fresh_info else 0.0
        m.informative_restart_groups = sum(restart_info) / len(restart_info) if restart_info else 0.0
        if c.enable:
            self.schedule.update(m.informative_restart_groups if restart_info else None,
                                 m.informative_fresh_groups if fresh_info else None)
        m.restart_success = restart_wins / restart_total if restart_total else 0.0
        m.replay_share = m.restart_groups / n_groups if n_groups else 0.0
        m.buffer_size = len(self.buffer)
        if c.enable:
            counts.fresh_groups, counts.hard_groups, counts.candidates = len(fresh_info), n_mined, m.candidates
            counts.admitted, counts.restart_groups = m.admitted, m.restart_groups
            counts.buffer_size, counts.target_share = m.buffer_size, m.target_share
            warning = self.idle_watch.update(counts)
            if warning:
                log.warning("step %d: %s", self.last_step, warning)
            m.idle_steps = self.idle_watch.idle_steps
        m.untried = sum(1 for e in self.buffer.entries() if e.restarts == 0)

    def _verify(self, ts: list[Trajectory]) -> None:
        """Fill in place (a copy per trajectory was a measurable share of the bookkeeping) the verified
        prefix of each failed rollout in `ts` that lacks one, when the step checker is needed (checker
        scorer, passrate policy, cut control): one check_many call when the checker has one (a served
        checker), else one call per rollout. Verified prefixes of successful ones are the whole response."""
        if self.step_checker is None or not self._wants_verified:
            return
        todo = [t for t in ts if t.verified_tokens is None and not t.success]
        if not todo:
            return
        many = getattr(self.step_checker, "check_many", None)
        if many is not None:
            outs = many([t.prompt_ids for t in todo], [t.response_ids for t in todo], [t.label for t in todo])
        else:
            outs = [self.step_checker(t.prompt_ids, t.response_ids, t.label) for t in todo]
        for t, out in zip(todo, outs):
            if isinstance(out, tuple):
                t.verified_tokens, t.verified_steps = out
            else:
                t.verified_tokens = out

    def _handicap_cut(self, t: Trajectory) -> int | None:
        """Where the failed rollout `t` of a mostly passing prompt becomes a handicap (cuts.handicap_cut)."""
        c = self.config
        allowed = self.scorer.allowed_cuts(t)
        grid = grid_cuts(as_list(t.response_ids), allowed, c.boundary_tokens, c.cut_every)
        return handicap_cut(grid, allowed, t.verified_tokens)

    def _source_end(self, t: Trajectory, cut: int, handicap: bool) -> int:
        """How far cut control may move this candidate's cut later: into correct tokens only for a head
        start (all of a successful response, the verified part of a failed one, else nowhere), into the
        rest of the failed response for a handicap; never past the scorer's length limits."""
        allowed = self.scorer.allowed_cuts(t)
        end = allowed[-1] if allowed else cut
        if not handicap and not t.success:
            if t.agreed_ids is not None:  # the success it agrees with is correct all along
                return max(cut, len(t.agreed_ids))
            end = min(end, t.verified_tokens) if t.verified_tokens is not None else cut
        return max(cut, end)

    def _controlled_cut(self, key: str | None, all_pass: bool) -> int | None:
        """Cut control's new cut for entry `key` after an all-pass (or all-fail) restart group, or None when
        it stays (control off, pinned or unknown entry, already at the end of its range, target refused)."""
        entry = self.buffer.get(key) if self.cut_control and key is not None else None
        if entry is None or entry.pinned or entry.retry:
            return None
        c = self.config
        full = entry.prefix_ids + entry.source_ids
        n = max(entry.source_len, len(full))
        r = allowed_range(n, c.min_prefix_frac, c.max_prefix_frac, c.min_prefix_tokens, c.max_prefix_tokens or None)
        later = all_pass == entry.handicap  # head start: later after all-fail; handicap: later after all-pass
        new = moved_cut(full, len(entry.prefix_ids), later, r.start, min(r.stop - 1, len(full)),
                        c.boundary_tokens, c.cut_every)
        if new is None or self.buffer.move_target(key, new) is None:
            return None
        return new

    def _admit(self, candidates: list[tuple[float, int, Trajectory, bool]], limit: int, step: int) -> int:
        """Best first; skip near-duplicate depths of one prompt; stop after `limit` new entries.

        candidates are (score, cut, trajectory, handicap); a RetainedState is built only for those reached.
        Head starts and handicaps take turns (each best first), so neither kind crowds out the other."""
        if limit <= 0 or not candidates:
            return 0
        kinds = [sorted((i for i in range(len(candidates)) if candidates[i][3] == h),
                        key=lambda i: (-candidates[i][0], i)) for h in (False, True)]
        order = [i for pair in zip_longest(*kinds) for i in pair if i is not None]
        kept_lens: dict[str, list[int]] = {}
        admitted = 0
        for i in order:
            score, cut, traj, handicap = candidates[i]
            lens = kept_lens.setdefault(traj.prompt_key, [])
            if cut and any(abs(cut - x) <= DEDUPE_TOKENS for x in lens):  # a retry (cut 0) is no depth
                continue
            if cut:
                lens.append(cut)
            s = self.scorer.state_at(traj, cut, score, step)
            s.handicap, s.retry = handicap, cut == 0
            if self.cut_control and cut:
                end = self._source_end(traj, cut, handicap)
                source = traj.agreed_ids if traj.agreed_ids is not None and not handicap else traj.response_ids
                s.source_ids = tuple(int(x) for x in as_list(source)[cut:end])
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
