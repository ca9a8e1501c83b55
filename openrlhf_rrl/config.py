"""RRL's flags, shared by the embedded runner's CLI and the OpenRLHF launcher.

Each RRLConfig field is a flag --rrl_<name> with a dotted alias --rrl.<name>, both with dest rrl_<name>
(the embedded runner) or, with dotted_dest=True, dest "rrl.<name>" (the OpenRLHF launcher: OpenRLHF's
hierarchize() turns that into args.rrl.<name>, which reaches every Ray actor).
argparse keeps flag values as strings; from_args/from_dict parse and check them, so every bad value
gives the same one-line RRLConfigError naming the flag, whichever front end read it.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from .core.errors import RRLConfigError
from .core.policies import POLICY_NAMES
from .core.schedules import SCHEDULE_KINDS
from .core.scoring import SCORER_NAMES
from .core.step_checker import is_url

CUT_CONTROL_MODES = ("auto", "on", "off")
LOSS_NORMS = ("response", "trained")
DISPLACED_PROMPTS = ("defer", "drop")
LOGPROB_TEMPERATURES = ("run", "sampled")


def resolve_scorer(config: "RRLConfig", scorer_given: bool, has_step_checker: bool, has_critic: bool,
                   samples_per_prompt: int) -> None:
    """The scorer rule of both front ends (the runner and the OpenRLHF launcher). Without --rrl_scorer:
    checker where a step checker exists, critic under PPO, else agree (the outcome-only scorer that measured
    best, docs/measurements/), or reward where groups are too small for agree to ever cut. An agree that
    could never cut is refused with one line naming the flag."""
    why_not_agree = _agree_cannot_act(samples_per_prompt, config.hard_threshold)
    if not scorer_given:
        config.scorer = ("checker" if has_step_checker else "critic" if has_critic
                         else "reward" if why_not_agree else "agree")
    if config.scorer == "agree" and why_not_agree:
        raise RRLConfigError(f"--rrl_scorer: {why_not_agree}")


def _agree_cannot_act(samples_per_prompt: int, hard_threshold: float) -> str | None:
    """Why --rrl_scorer agree could never cut in this run, or None: it needs a hard group that holds a success,
    and one success in a group of n is a success rate of 1/n."""
    if samples_per_prompt >= 1 and 1.0 / samples_per_prompt < hard_threshold:
        return None
    return (f"agree needs a hard group that holds a success, and with {samples_per_prompt} samples per prompt one "
            f"success is a success rate of {1.0 / max(1, samples_per_prompt):g}, not below --rrl_hard_threshold "
            f"{hard_threshold:g} (more samples per prompt, a higher threshold, or --rrl_scorer reward)")


@dataclass
class RRLConfig:
    enable: bool = False
    replay_share: Any = 0.25  # float in [0, 1] or "auto"
    share_schedule: str = "constant"
    start_step: int = 0
    warmup_steps: int = 0
    total_steps: int | None = None
    share_min: float = 0.05
    share_max: float = 0.5
    buffer_capacity: int = 4096
    per_prompt_capacity: int = 8
    temperature: float = 1.0
    restart_decay: float = 0.7
    scorer: str = "agree"  # without --rrl_scorer the front ends call resolve_scorer()
    step_checker: str | None = None  # path of a .py file with step_checker(prompt_ids, response_ids, label)
    policy: str = "promise"
    target_pass_rate: float = 0.5
    cut_control: str = "auto"  # auto (on with the passrate policy), on, off
    hard_threshold: float = 0.5
    success_threshold: float = 0.5
    min_prefix_frac: float = 0.1
    max_prefix_frac: float = 0.9
    min_prefix_tokens: int = 1
    max_prefix_tokens: int = 0
    cut_every: int = 32
    agree_probes: bool = False
    boundary_tokens: tuple = ()
    admit_per_step: int = -1
    max_restarts_per_prompt: int = 1
    retire_solved_rate: float = 0.75
    retire_dead_after: int = 16
    untried_ttl: int = 50
    idle_warn_steps: int = 20
    restart_temperature: float | None = None
    logprob_temperature: str = "run"  # run (the run's temperature for every row) or sampled (each row's own)
    train_prefix: bool = False
    loss_norm: str = "response"  # response (count a restart's prefix in the token-mean) or trained
    buffer_path: str | None = None
    buffer_call_timeout: float = 600.0
    displaced_prompts: str = "defer"  # defer (every dataset prompt rolled out once per episode) or drop
    seed: int = 0

    def max_share(self) -> float:
        """The largest share of a batch replay may take: the fixed share, or 'auto''s ceiling."""
        return self.share_max if self.replay_share == "auto" else float(self.replay_share)

    def __post_init__(self):
        self.validate()

    def validate(self) -> "RRLConfig":
        """Parse and check every field in place; raises RRLConfigError naming the flag."""
        for f in fields(self):
            setattr(self, f.name, _SPECS[f.name].parse(f.name, getattr(self, f.name)))
        if self.share_min > self.share_max:
            raise RRLConfigError(f"--rrl_share_min: expected <= --rrl_share_max ({self.share_max}), got {self.share_min}")
        if self.min_prefix_frac > self.max_prefix_frac:
            raise RRLConfigError(f"--rrl_min_prefix_frac: expected <= --rrl_max_prefix_frac ({self.max_prefix_frac}), "
                                 f"got {self.min_prefix_frac}")
        if self.share_schedule == "cosine" and self.replay_share != "auto" and (
                self.total_steps is None or self.total_steps <= self.start_step + self.warmup_steps):
            raise RRLConfigError(f"--rrl_total_steps: the cosine schedule needs total_steps > start_step + warmup_steps "
                                 f"({self.start_step + self.warmup_steps}), got {self.total_steps!r}")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["boundary_tokens"] = list(self.boundary_tokens)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RRLConfig":
        """Build from {name: value} (an optional rrl_ prefix on names is accepted)."""
        names = {f.name for f in fields(cls)}
        kw = {}
        for k, v in d.items():
            name = k[4:] if k.startswith("rrl_") or k.startswith("rrl.") else k
            if name not in names:
                raise RRLConfigError(f"--rrl_{name}: unknown RRL option")
            kw[name] = v
        return cls(**kw)

    @classmethod
    def from_args(cls, namespace) -> "RRLConfig":
        """Read an argparse namespace's rrl_* attributes, or its "rrl.*" ones, or (after OpenRLHF's
        hierarchize) the fields of its `rrl` sub-namespace; missing ones take their defaults."""
        kw = {}
        sub = getattr(namespace, "rrl", None)
        flat = vars(namespace) if hasattr(namespace, "__dict__") else {}
        for f in fields(cls):
            for key in ("rrl_" + f.name, "rrl." + f.name):
                if key in flat:
                    kw[f.name] = flat[key]
            if sub is not None and hasattr(sub, f.name):
                kw[f.name] = getattr(sub, f.name)
        return cls(**kw)


# ------------------------------------------------------------------ parsing and help per field
class _Spec:
    def __init__(self, kind: str, expected: str, help: str, lo=None, hi=None, lo_open=False, choices=None,
                 none_ok=False):
        self.kind, self.expected, self.help = kind, expected, help
        self.lo, self.hi, self.lo_open, self.choices, self.none_ok = lo, hi, lo_open, choices, none_ok

    def fail(self, name, v):
        shown = v if isinstance(v, str) and v.strip() else repr(v)
        raise RRLConfigError(f"--rrl_{name}: expected {self.expected}, got {shown}")

    def parse(self, name: str, v):
        if self.none_ok and (v is None or (isinstance(v, str) and v.strip().lower() in ("", "none", "null"))):
            return None
        k = self.kind
        if k == "flag":
            if isinstance(v, bool):
                return v
            if isinstance(v, str) and v.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return v.strip().lower() in ("1", "true", "yes", "on")
            self.fail(name, v)
        if k == "share":
            if isinstance(v, str) and v.strip().lower() == "auto":
                return "auto"
            x = _to_float(v)
            if x is None or not 0.0 <= x <= 1.0:
                self.fail(name, v)
            return x
        if k == "str":
            if not isinstance(v, str) or (self.choices and v not in self.choices):
                self.fail(name, v)
            return v
        if k == "pyfile":
            if not isinstance(v, str) or not v.strip():
                self.fail(name, v)
            if is_url(v):  # a served checker: contacted at the first check, not while parsing
                return v.strip()
            if not os.path.isfile(v):
                raise RRLConfigError(f"--rrl_{name}: step checker file not found: {v}")
            return v
        if k == "scorer":
            if not isinstance(v, str):
                self.fail(name, v)
            if v.startswith("file:"):
                if not os.path.isfile(v[5:]):
                    raise RRLConfigError(f"--rrl_scorer: scorer file not found: {v[5:]}")
                return v
            if v not in SCORER_NAMES:
                self.fail(name, v)
            return v
        if k == "ids":
            if isinstance(v, str):
                parts = [p for p in v.replace(" ", ",").split(",") if p]
                try:
                    return tuple(int(p) for p in parts)
                except ValueError:
                    self.fail(name, v)
            if isinstance(v, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                return tuple(v)
            self.fail(name, v)
        if k == "int":
            x = _to_int(v)
        else:
            x = _to_float(v)
        if x is None or (self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo)) or (
                self.hi is not None and x > self.hi):
            self.fail(name, v)
        return x


def _to_int(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            return None
    return None


def _to_float(v):
    if isinstance(v, bool):
        return None
    try:
        x = float(v) if isinstance(v, (int, float, str)) else None
    except ValueError:
        return None
    return x if x is not None and math.isfinite(x) else None


_SPECS: dict[str, _Spec] = {
    "enable": _Spec("flag", "a flag", "Turn Retrospective Replay on; off, the run is plain RL."),
    "replay_share": _Spec(
        "share", "a number in [0, 1] or 'auto'",
        "Fraction of each batch's groups restarted from the buffer (the last slots of the batch), or 'auto' "
        "to steer it within [--rrl_share_min, --rrl_share_max] by how often restart groups have mixed outcomes. "
        "Lower it when restart groups are mostly all-pass or all-fail; try auto when unsure."),
    "share_schedule": _Spec(
        "str", "one of " + ", ".join(SCHEDULE_KINDS), "How the share moves over steps: constant, linear (ramp "
        "up over --rrl_warmup_steps) or cosine (ramp, then decay to 0 by --rrl_total_steps). Use linear if a "
        "sudden change of batch mix destabilises training.", choices=SCHEDULE_KINDS),
    "start_step": _Spec("int", "an integer >= 0", "No restarts before this step (candidates are still "
                        "collected). Raise it so the policy first learns the skills needed to finish a restart.", lo=0),
    "warmup_steps": _Spec("int", "an integer >= 0", "Steps over which linear/cosine ramp the share up from 0 "
                          "after --rrl_start_step. Set it when a sudden switch to restarts makes training jumpy.", lo=0),
    "total_steps": _Spec("int", "an integer >= 1 or none", "Length of the run, needed by the cosine schedule (set it to the "
                         "run's step count); the other schedules ignore it.",
                         lo=1, none_ok=True),
    "share_min": _Spec("float", "a number in [0, 1]", "Lowest share 'auto' may choose. Keep it above 0: at 0 "
                       "no restart runs and auto can no longer see whether restarts pay.", lo=0.0, hi=1.0),
    "share_max": _Spec("float", "a number in [0, 1]", "Highest share 'auto' may choose. Lower it to cap how much of a "
                       "batch replay can take.", lo=0.0, hi=1.0),
    "buffer_capacity": _Spec("int", "an integer >= 0", "Most retained states kept; the lowest priority is "
                             "evicted. Lower it if the buffer fills with untried states (takeover).", lo=0),
    "per_prompt_capacity": _Spec("int", "an integer >= 1", "Most retained states of one prompt, so a few hard "
                                 "prompts cannot fill the buffer. Lower it if a few prompts hold most entries.", lo=1),
    "temperature": _Spec("float", "a number > 0", "Priority temperature: priority = exp(score / T). Lower it "
                         "to favour the top-scored states more strongly.", lo=0.0, lo_open=True),
    "restart_decay": _Spec("float", "a number in (0, 1]", "Priority factor per restart already run from a "
                           "state, so untested states get their turn. 1 disables the decay; lower it when the same "
                           "entries are restarted over and over.", lo=0.0, hi=1.0,
                           lo_open=True),
    "scorer": _Spec("scorer", "one of " + ", ".join(SCORER_NAMES) + " or file:path.py",
                    "How cut points are chosen and scored: critic (PPO values), reward (critic-free), checker "
                    "(longest verified prefix; needs a step checker), entropy (ExTra), mc (reward, then the "
                    "restart pass rate), agree (outcome reward only: a failed rollout is cut where it parts from a "
                    "successful rollout of the same group, fresh or restart; no checker or critic is used), or "
                    "file:path.py with score_func(prompt_ids, response_ids, reward, label, **kw). When it is not "
                    "given, both front ends pick checker where a step checker is given, critic under PPO (gae), else "
                    "agree (the outcome-only scorer that measured best: docs/measurements/)."),
    "step_checker": _Spec("pyfile", "a path to a .py file, an http(s) URL, or none",
                          "A Python file defining step_checker(prompt_ids, response_ids, label) -> how many leading "
                          "response tokens are verified correct (an int), or (tokens, steps); loaded like an OpenRLHF "
                          "reward file. Or the http(s) URL of a served process reward model (like "
                          "--reward.remote_url), which gets a POST of JSON {\"prompt_ids\": [[...], ...], "
                          "\"response_ids\": [[...], ...], \"labels\": [...]} (token ids) and answers "
                          "{\"verified_tokens\": [int, ...]}, optionally with \"steps\". Used when the code passes "
                          "no checker, by the checker scorer, the passrate policy's head starts and handicaps, and cut "
                          "control. Set it when your task can check "
                          "partial solutions (a process reward).", none_ok=True),
    "policy": _Spec("str", "one of " + ", ".join(POLICY_NAMES),
                    "Which entries restart: promise (the paper: by priority), passrate (Prefix Sampling, both ways: "
                    "successful or verified-correct prefixes as head starts for prompts failing more often than "
                    "--rrl_target_pass_rate, failed prefixes as handicaps for prompts passing more often; entries "
                    "likeliest to give mixed groups first; cut control on) or uncertainty (Thompson draw nearest "
                    "the target). Try passrate if restart groups come back all-pass or all-fail.",
                    choices=POLICY_NAMES),
    "target_pass_rate": _Spec("float", "a number in [0, 1]", "Pass rate the passrate and uncertainty policies "
                              "aim for; binary rewards carry most signal near 0.5, so change it only for graded rewards.", lo=0.0, hi=1.0),
    "cut_control": _Spec("str", "one of " + ", ".join(CUT_CONTROL_MODES),
                         "Move each entry's cut along its source response after an uninformative restart group: a "
                         "head start's cut goes one step later after an all-fail group and earlier after an "
                         "all-pass one (a handicap's the other way round); the entry's record restarts at the "
                         "new cut. auto: on with --rrl_policy passrate. Turn it on with other policies when "
                         "restart groups keep coming back 0/n or n/n.", choices=CUT_CONTROL_MODES),
    "hard_threshold": _Spec("float", "a number in [0, 1]", "Only prompts whose fresh group succeeds less often "
                            "than this give candidates (with --rrl_policy passrate, prompts succeeding more often than "
                            "1 minus this also give handicaps). Lower it to keep only the hardest prompts.", lo=0.0, hi=1.0),
    "success_threshold": _Spec("float", "a number", "A continuation counts as a success when its reward is "
                               "at least this. Match it to your reward's scale."),
    "min_prefix_frac": _Spec("float", "a number in [0, 1]", "Shortest kept prefix as a fraction of its response. "
                             "Raise it when short prefixes give restarts no real head start.",
                             lo=0.0, hi=1.0),
    "max_prefix_frac": _Spec("float", "a number in [0, 1]", "Longest kept prefix as a fraction of its response; "
                             "lower it so restarts leave real work to do.", lo=0.0, hi=1.0),
    "min_prefix_tokens": _Spec("int", "an integer >= 0", "Shortest kept prefix in tokens. Raise it to skip prefixes "
                               "too short to hold a partial solution.", lo=0),
    "max_prefix_tokens": _Spec("int", "an integer >= 0", "Longest kept prefix in tokens; 0 means no limit. The "
                               "buffer refuses longer states from any source (it does not clip them). Set it when long "
                               "prefixes crowd out the generation budget.", lo=0),
    "cut_every": _Spec("int", "an integer >= 1", "Token stride of cuts when no --rrl_boundary_tokens match "
                       "(reward and mc scorers), and of cut control's moves. Where the stride lands no cut inside a "
                       "response (one shorter than it), those scorers cut it at 4 evenly spread fractions of its "
                       "allowed range instead. Lower it for short step-structured responses.", lo=1),
    "agree_probes": _Spec("flag", "on or off", "With --rrl_scorer agree: also cut the failed rollouts of hard groups "
                          "that have no success (where agreement verifies nothing) at the reward scorer's cuts, as "
                          "unverified probes admitted after the verified cuts; a probe's restart group that succeeds "
                          "is mined like any mixed restart group, and a probe that never succeeds retires as dead "
                          "(--rrl_retire_dead_after)."),
    "boundary_tokens": _Spec("ids", "comma-separated token ids", "Token ids that end a reasoning step (e.g. the "
                             "newline id); cuts go right after them, and cut control moves one step at a time. Set "
                             "them for step-structured tasks."),
    "admit_per_step": _Spec("int", "an integer >= -1", "New buffer entries admitted per step, best first; -1 "
                            "means as many as the restart slots of a batch at the nominal share. Lower it if "
                            "rrl/untried keeps growing.", lo=-1),
    "max_restarts_per_prompt": _Spec("int", "an integer >= 1", "Restart groups of one prompt in one step. "
                                     "1 spreads restarts over prompts; raise it only when few prompts are hard.", lo=1),
    "retire_solved_rate": _Spec("float", "a number in [0, 1]", "A prompt whose fresh group succeeds at least "
                                "this often retires its entries (no head start needed). Lower it to stop helping "
                                "prompts sooner.", lo=0.0, hi=1.0),
    "retire_dead_after": _Spec("int", "an integer >= 0", "A state retires after this many continuations "
                               "without a success; 0 never retires dead states. Lower it when rrl/restart_success "
                               "stays near 0 and dead states hold the buffer.", lo=0),
    "untried_ttl": _Spec("int", "an integer >= 0", "Entries never restarted are retired (rrl/retired_untried) "
                         "this many steps after they were last found; 0 keeps them. Lower it when rrl/untried "
                         "keeps growing (buffer takeover).", lo=0),
    "idle_warn_steps": _Spec("int", "an integer >= 0", "Warn (in the log, with the reason) after this many steps "
                             "in a row that admitted no state and ran no restart, and again every as many more; "
                             "rrl/idle_steps counts them. 0 turns the warning off. A replay run that stays idle is "
                             "a baseline run: read the reason before comparing it with one.", lo=0),
    "restart_temperature": _Spec("float", "a number > 0 or none", "Sampling temperature of restart groups; "
                                 "none means the run's own. Raise it if restart groups fail or pass all together.",
                                 lo=0.0, lo_open=True, none_ok=True),
    "logprob_temperature": _Spec(
        "str", "one of " + ", ".join(LOGPROB_TEMPERATURES),
        "The temperature a row's log-probs are taken at, in the policy's, the reference's and the importance "
        "correction's passes. run: the run's, for every row (OpenRLHF divides by --rollout.temperature; the "
        "embedded runner trains the untempered policy), so a hot restart (--rrl_restart_temperature) is "
        "trained as if the run's policy had sampled it: off-policy, and with importance correction its "
        "weights blow up. sampled: each row's own sampling temperature, so a hot row is on-policy for the "
        "tempered policy (importance weight 1 at its first update); in the runner it applies to "
        "--rollout.hard_temperature rows too. OpenRLHF: not with --ds.packing_samples.",
        choices=LOGPROB_TEMPERATURES),
    "train_prefix": _Spec("flag", "a flag", "Also train on the replayed prefix tokens, with the stored rollout "
                          "log-probs and importance correction; off (default) masks them as prompt-side context. "
                          "Leave it off unless you study it: the prefix was sampled by an older policy."),
    "loss_norm": _Spec("str", "one of " + ", ".join(LOSS_NORMS),
                       "What the token-mean policy loss divides by. response: the action tokens plus each restart "
                       "row's masked prefix tokens, so a restart row's token weighs what it would had the whole "
                       "response been sampled this step and replay does not enlarge the update; trained: the action "
                       "tokens only (OpenRLHF's own), so the more of a batch is restarts, the more each trained "
                       "token weighs. With --rrl_train_prefix the prefix is trained and both are the same. In "
                       "OpenRLHF it applies to --actor.loss_agg_mode token-mean and needs --train.dynamic_batch_enable "
                       "off. Keep response unless you compare the two.", choices=LOSS_NORMS),
    "buffer_path": _Spec("str", "a path", "Where the buffer is saved and resumed from (JSON lines); none "
                         "keeps it in memory only. Set it to resume a job with its buffer and to review it with "
                         "rrl-inspect (the review file goes beside it).", none_ok=True),
    "buffer_call_timeout": _Spec("float", "a number of seconds > 0", "OpenRLHF launcher: how long one call to the "
                                 "buffer actor may take before the actor counts as hung; it is then asked to save its "
                                 "state and is replaced from that file (or the last checkpoint). Raise it for very "
                                 "large buffers on a slow file system.", lo=0.0, lo_open=True),
    "displaced_prompts": _Spec(
        "str", "one of " + ", ".join(DISPLACED_PROMPTS),
        "OpenRLHF launcher: what becomes of the dataset prompt whose slot a restart group takes. defer: it is "
        "rolled out in the next batch, before new prompts, so an episode still rolls out every prompt once; the "
        "episode gets longer by its restart groups (same batch size per step), and the learning-rate schedule is "
        "stretched to the longest episode replay can make (OpenRLHF's step count x n / (n - restart slots), n the "
        "generation batch, at the largest share), so "
        "a decaying schedule ends a little above its floor when the buffer was sometimes empty. drop: it is not "
        "rolled out in this episode, so the run has the baseline's steps and compute (compute-matched "
        "comparisons); about a replay share of the data is then never seen in a one-episode run.",
        choices=DISPLACED_PROMPTS),
    "seed": _Spec("int", "an integer", "Seed of the buffer's and the planner's random draws. Vary it "
                       "with the training seed when comparing seeds."),
}


def _default_text(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, tuple):
        return ",".join(map(str, v)) or "none"
    return str(v)


def add_rrl_arguments(parser: argparse.ArgumentParser, dotted_dest: bool = False) -> argparse.ArgumentParser:
    """Register every RRLConfig field as --rrl_<name> and --rrl.<name> (dest rrl_<name>, or rrl.<name>)."""
    group = parser.add_argument_group("Retrospective Replay (RRL)")
    for f in fields(RRLConfig):
        spec = _SPECS[f.name]
        opts = (f"--rrl_{f.name}", f"--rrl.{f.name}")
        dest = f"rrl.{f.name}" if dotted_dest else f"rrl_{f.name}"
        if spec.kind == "flag":
            group.add_argument(*opts, dest=dest, action="store_true", default=f.default,
                               help=f"{spec.help} (default: off)")
        else:
            group.add_argument(*opts, dest=dest, type=str, default=f.default, metavar="VALUE",
                               help=f"{spec.help} (default: {_default_text(f.default)})")
    return parser
