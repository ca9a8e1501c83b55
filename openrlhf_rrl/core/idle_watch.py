"""Say so when replay is switched on but does nothing, and why.

A replay run that admits no state and restarts nothing is a baseline run with extra flags; nothing
in its curves says so. A step is idle when it admitted no entry and ran no restart group. After
--rrl_idle_warn_steps idle steps in a row (and again every as many more) the watch logs one warning
naming the first stage of the pipeline that came back empty over those steps: no hard prompt, no
cut point, no candidate the policy keeps, every candidate refused at admission, or entries in the
buffer that no restart slot reached. The count itself is the metric rrl/idle_steps.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .scoring import scorer_agrees


@dataclass
class StepCounts:
    """What one observe() saw, stage by stage (state -> score -> retain -> sample)."""

    fresh_groups: int = 0  # fresh groups observed
    hard_groups: int = 0  # ... below --rrl_hard_threshold: the only ones mined for candidates
    mined_rollouts: int = 0  # rollouts of those groups
    groups_with_success: int = 0  # mined groups with at least one success (what the agree scorer needs)
    response_tokens: int = 0  # their response tokens (for the mean length in the warning)
    cuts: int = 0  # (cut, score) pairs the scorer proposed
    candidates: int = 0  # ... that the policy keeps (passrate: head starts must be correct)
    refused_invalid: int = 0  # candidates the buffer refused: over the length limit, holding EOS, empty
    refused_known: int = 0  # ... retired, solved or banned before
    rejected: int = 0  # ... ranked below a full buffer's (or prompt's) worst entry
    admitted: int = 0
    restart_groups: int = 0
    buffer_size: int = 0  # after the step
    target_share: float = 0.0

    def add(self, other: "StepCounts") -> None:
        for f in fields(self):
            if f.name in ("buffer_size", "target_share"):  # a level, not a count: keep the latest
                setattr(self, f.name, getattr(other, f.name))
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class IdleWatch:
    def __init__(self, warn_after: int, config):
        self.warn_after = warn_after  # 0: never warn (the metric still counts)
        self.config = config
        self.idle_steps = 0
        self.window = StepCounts()

    def update(self, counts: StepCounts) -> str | None:
        """Count this step; return the warning text when one is due."""
        if counts.admitted or counts.restart_groups:
            self.idle_steps, self.window = 0, StepCounts()
            return None
        self.idle_steps += 1
        self.window.add(counts)
        if self.warn_after <= 0 or self.idle_steps % self.warn_after:
            return None
        return (f"RRL is on but idle: no state admitted and no restart run for {self.idle_steps} steps in a row; "
                f"{self.reason(self.window)}")

    def reason(self, w: StepCounts) -> str:
        """The first stage that came back empty over the idle window, with the flag that governs it."""
        c = self.config
        if w.fresh_groups == 0:
            return "no fresh group was observed (every slot was a restart, or no rollout came back)"
        if w.hard_groups == 0:
            return (f"no prompt was hard: every fresh group's success rate was at least --rrl_hard_threshold "
                    f"{c.hard_threshold}, so nothing was mined (raise it, or train on harder prompts)")
        if w.cuts == 0:
            return f"the {c.scorer} scorer found no cut point in {w.mined_rollouts} rollouts of hard prompts: " + (
                self._no_cut_hint(w))
        if w.candidates == 0:
            return (f"--rrl_policy {c.policy} kept none of the {w.cuts} cut points (its head starts must be "
                    f"successful or verified-correct prefixes; give a --rrl_step_checker, or use --rrl_policy promise)")
        if w.admitted == 0 and w.buffer_size == 0:
            reached = w.refused_invalid + w.refused_known + w.rejected
            return (f"none of the {w.candidates} candidates was admitted: of the {reached} that reached the buffer, "
                    f"{w.refused_invalid} were invalid (longer than --rrl_max_prefix_tokens "
                    f"{c.max_prefix_tokens or 'none'}, holding EOS, or empty), {w.refused_known} retired, solved or "
                    f"banned before, {w.rejected} ranked below a full buffer (--rrl_buffer_capacity "
                    f"{c.buffer_capacity}, --rrl_per_prompt_capacity {c.per_prompt_capacity}); the others were "
                    f"near-duplicate depths of one prompt")
        return (f"the buffer holds {w.buffer_size} entries but no restart slot reached them (target share "
                f"{w.target_share:.2f}: see --rrl_replay_share, --rrl_share_schedule, --rrl_start_step "
                f"{c.start_step})")

    def _no_cut_hint(self, w: StepCounts) -> str:
        c = self.config
        mean_len = w.response_tokens / w.mined_rollouts if w.mined_rollouts else 0.0
        limits = (f"responses average {mean_len:.1f} tokens, kept prefixes must lie within "
                  f"[{c.min_prefix_frac}, {c.max_prefix_frac}] of their response and hold at least "
                  f"--rrl_min_prefix_tokens {c.min_prefix_tokens} tokens")
        if c.scorer == "checker":
            return ("the step checker verified no leading part of any failed rollout "
                    f"(--rrl_step_checker {c.step_checker or 'none given'}); " + limits)
        if scorer_agrees(c.scorer) and w.groups_with_success == 0:
            return ("none of the hard groups had a success to agree with (the agree scorer cuts a failed rollout "
                    "only where it parts from a success of its group: more samples per prompt or a hotter sampling "
                    "temperature give rare successes; --rrl_retry_unsolved samples such prompts again at the restart "
                    "temperature, --rrl_agree_probes probes their failed rollouts); " + limits)
        if c.scorer == "critic":
            return "no critic values reached RRL (the critic scorer needs PPO with a critic); " + limits
        if c.scorer == "entropy":
            return "no token entropies reached RRL (this engine may not return them); " + limits
        return limits
