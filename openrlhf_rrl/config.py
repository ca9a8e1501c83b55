"""RRL's flags, shared by the embedded runner's CLI and the OpenRLHF launcher.

Each flag is defined in one place, its RRLConfig field: default, docs group, parsing and checks
(flag_spec.py) and help text; the parsers (add_rrl_arguments), the checks (validate) and docs/flags.md
(scripts/gen_flag_docs.py) are derived from the fields. Each field is a flag --rrl_<name> with a
dotted alias --rrl.<name>, both with dest rrl_<name> (the embedded runner) or, with dotted_dest=True,
dest "rrl.<name>" (the OpenRLHF launcher: OpenRLHF's hierarchize() turns that into args.rrl.<name>,
which reaches every Ray actor).
argparse keeps flag values as strings; from_args/from_dict parse and check them, so every bad value
gives the same one-line RRLConfigError naming the flag, whichever front end read it.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .core.errors import RRLConfigError
from .core.policies import POLICY_NAMES
from .core.replay import retries_on
from .core.schedules import SCHEDULE_KINDS, check_cosine_span
from .core.scoring import SCORER_NAMES
from .flag_spec import FlagSpec

CUT_CONTROL_MODES = ("auto", "on", "off")
RETRY_MODES = ("auto", "on", "off")
LOSS_NORMS = ("response", "trained")
DISPLACED_PROMPTS = ("defer", "drop")
LOGPROB_TEMPERATURES = ("auto", "run", "sampled")


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


def logprob_temperature_for(config: "RRLConfig", run_temperature: float, packing: bool = False) -> str:
    """run or sampled: --rrl_logprob_temperature, with auto decided as both front ends do. auto is sampled where
    replay is on and samples its restart groups at a temperature other than the run's (on-policy hot restarts
    measured better with agree on both tasks and level with the checker: docs/measurements/), else run (no
    replay: the hot baseline measured better with run; restarts at the run's temperature: the two are the
    same; OpenRLHF packing rows with --ds.packing_samples, where each row cannot have its own temperature)."""
    if config.logprob_temperature != "auto":
        return config.logprob_temperature
    hot = config.restart_temperature is not None and config.restart_temperature != run_temperature
    return "sampled" if config.enable and hot and not packing else "run"


def retry_unsolved_for(config: "RRLConfig", run_temperature: float) -> str:
    """on or off: --rrl_retry_unsolved, with auto decided as both front ends do. auto is on with the agree
    scorer where restart groups sample hotter than the run: a retry at the run's own temperature repeats a
    prompt that just failed n times the same way (on the chain task it fell below the baseline, 0.068 vs
    0.115, where retries at temperature 2 were ahead on every seed: docs/measurements/)."""
    if config.retry_unsolved != "auto":
        return config.retry_unsolved
    return "on" if retries_on(config, run_temperature) else "off"


def _agree_cannot_act(samples_per_prompt: int, hard_threshold: float) -> str | None:
    """Why --rrl_scorer agree could never cut in this run, or None: it needs a hard group that holds a success,
    and one success in a group of n is a success rate of 1/n."""
    if samples_per_prompt >= 1 and 1.0 / samples_per_prompt < hard_threshold:
        return None
    return (f"agree needs a hard group that holds a success, and with {samples_per_prompt} samples per prompt one "
            f"success is a success rate of {1.0 / max(1, samples_per_prompt):g}, not below --rrl_hard_threshold "
            f"{hard_threshold:g} (more samples per prompt, a higher threshold, or --rrl_scorer reward)")


# The flag groups of docs/flags.md, in its order; each field below names its group.
SHARE = "On, off and the replay share: when and how much"
CANDIDATES = "What counts as promising: which prefixes become candidates"
BUFFER = "Buffer policy: what is kept, replayed first, and retired"
WATCH = "Watching it"
FILES = "Training and files"
FLAG_GROUPS = (SHARE, CANDIDATES, BUFFER, WATCH, FILES)


_SAME = object()  # runner_default not given: the embedded runner uses the flag's default too


def flag(default, group: str, kind: str, expected: str, help: str, runner_default=_SAME, **check):
    """One RRL flag, in one place: its default, its docs group, how its value is parsed and checked
    (FlagSpec: kind, what is expected, bounds or choices), its help text, and the embedded runner's own
    default where it differs from the OpenRLHF launcher's."""
    metadata = {"group": group, "spec": FlagSpec(kind, expected, help, **check)}
    if runner_default is not _SAME:
        metadata["runner_default"] = runner_default
    return field(default=default, metadata=metadata)


@dataclass
class RRLConfig:
    # On, off and the replay share: when and how much
    enable: bool = flag(
        False, SHARE, "flag", "a flag",
        "Turn Retrospective Replay on; off, the run is plain RL.")
    replay_share: Any = flag(
        0.25, SHARE, "share", "a number in [0, 1] or 'auto'",
        "Fraction of each batch's groups restarted from the buffer (the last slots of the batch), or 'auto' "
        "to steer it within [--rrl_share_min, --rrl_share_max] by how often restart groups have mixed "
        "outcomes. Lower it when restart groups are mostly all-pass or all-fail; try auto when unsure.")
    share_schedule: str = flag(
        "constant", SHARE, "str", "one of " + ", ".join(SCHEDULE_KINDS),
        "How the share moves over steps: constant, linear (ramp up over --rrl_warmup_steps) or cosine (ramp, "
        "then decay to 0 by --rrl_total_steps). Use linear if a sudden change of batch mix destabilises "
        "training.",
        choices=SCHEDULE_KINDS)
    start_step: int = flag(
        0, SHARE, "int", "an integer >= 0",
        "No restarts before this step (candidates are still collected). Raise it so the policy first learns "
        "the skills needed to finish a restart.",
        lo=0)
    warmup_steps: int = flag(
        0, SHARE, "int", "an integer >= 0",
        "Steps over which linear/cosine ramp the share up from 0 after --rrl_start_step. Set it when a sudden "
        "switch to restarts makes training jumpy.",
        lo=0)
    total_steps: int | None = flag(
        None, SHARE, "int", "an integer >= 1 or none",
        "Length of the run, needed by the cosine schedule (set it to the run's step count); the other "
        "schedules ignore it.",
        lo=1, none_ok=True)
    share_min: float = flag(
        0.05, SHARE, "float", "a number in [0, 1]",
        "Lowest share 'auto' may choose. Keep it above 0: at 0 no restart runs and auto can no longer see "
        "whether restarts pay.",
        lo=0.0, hi=1.0)
    share_max: float = flag(
        0.5, SHARE, "float", "a number in [0, 1]",
        "Highest share 'auto' may choose. Lower it to cap how much of a batch replay can take.",
        lo=0.0, hi=1.0)
    max_restarts_per_prompt: int = flag(
        1, SHARE, "int", "an integer >= 1",
        "Restart groups of one prompt in one step. 1 spreads restarts over prompts; raise it only when few "
        "prompts are hard.",
        lo=1)
    restart_temperature: float | None = flag(
        None, SHARE, "float", "a number > 0 or none",
        "Sampling temperature of restart groups; none means the run's own. Raise it if restart groups fail or "
        "pass all together. The embedded runner samples them hotter by default: restarts from one prefix "
        "otherwise fail or pass as a block (no gradient within the group; docs/measurements/).",
        lo=0.0, lo_open=True, none_ok=True, runner_default=2.0)
    logprob_temperature: str = flag(
        "auto", SHARE, "str", "one of " + ", ".join(LOGPROB_TEMPERATURES),
        "The temperature a row's log-probs are taken at, in the policy's, the reference's and the importance "
        "correction's passes. run: the run's, for every row (OpenRLHF divides by --rollout.temperature; the "
        "embedded runner trains the untempered policy), so a hot restart (--rrl_restart_temperature) is "
        "trained as if the run's policy had sampled it: off-policy, and with importance correction its "
        "weights blow up. sampled: each row's own sampling temperature, so a hot row is on-policy for the "
        "tempered policy (importance weight 1 at its first update); in the runner it applies to "
        "--rollout.hard_temperature rows too. OpenRLHF: not with --ds.packing_samples. auto: sampled where "
        "replay is on and samples its restart groups at a temperature other than the run's (on the chain task "
        "it lifted the outcome-only agree scorer from 0.140 to 0.207 at 400 steps and was level with the "
        "checker's run, and on the GSM8K-style task it turned agree's small loss into a draw: "
        "docs/measurements/), else run (no replay: the hot baseline measured better with run; restarts at the "
        "run's temperature, where the two are the same; OpenRLHF with --ds.packing_samples).",
        choices=LOGPROB_TEMPERATURES)

    # What counts as promising: which prefixes become candidates
    scorer: str = flag(
        "agree", CANDIDATES, "scorer", "one of " + ", ".join(SCORER_NAMES) + " or file:path.py",
        "How cut points are chosen and scored: critic (PPO values), reward (critic-free), checker (longest "
        "verified prefix; needs a step checker), entropy (ExTra), mc (reward, then the restart pass rate), "
        "agree (outcome reward only: a failed rollout is cut where it parts from a successful rollout of the "
        "same group, fresh or restart; no checker or critic is used), or file:path.py with "
        "score_func(prompt_ids, response_ids, reward, label, **kw). When it is not given, both front ends "
        "pick checker where a step checker is given, critic under PPO (gae), else agree (the outcome-only "
        "scorer that measured best: docs/measurements/).")
    step_checker: str | None = flag(
        None, CANDIDATES, "pyfile", "a path to a .py file, an http(s) URL, or none",
        "A Python file defining step_checker(prompt_ids, response_ids, label) -> how many leading response "
        "tokens are verified correct (an int), or (tokens, steps); loaded like an OpenRLHF reward file. Or "
        "the http(s) URL of a served process reward model (like --reward.remote_url), which gets a POST of "
        "JSON {\"prompt_ids\": [[...], ...], \"response_ids\": [[...], ...], \"labels\": [...]} (token ids) and "
        "answers {\"verified_tokens\": [int, ...]}, optionally with \"steps\". Used when the code passes no "
        "checker, by the checker scorer, the passrate policy's head starts and handicaps, and cut control. "
        "Set it when your task can check partial solutions (a process reward).",
        none_ok=True)
    hard_threshold: float = flag(
        0.5, CANDIDATES, "float", "a number in [0, 1]",
        "Only prompts whose fresh group succeeds less often than this give candidates (with --rrl_policy "
        "passrate, prompts succeeding more often than 1 minus this also give handicaps). Lower it to keep "
        "only the hardest prompts.",
        lo=0.0, hi=1.0)
    success_threshold: float = flag(
        0.5, CANDIDATES, "float", "a number",
        "A continuation counts as a success when its reward is at least this. Match it to your reward's "
        "scale.")
    min_prefix_frac: float = flag(
        0.1, CANDIDATES, "float", "a number in [0, 1]",
        "Shortest kept prefix as a fraction of its response. Raise it when short prefixes give restarts no "
        "real head start.",
        lo=0.0, hi=1.0)
    max_prefix_frac: float = flag(
        0.9, CANDIDATES, "float", "a number in [0, 1]",
        "Longest kept prefix as a fraction of its response; lower it so restarts leave real work to do.",
        lo=0.0, hi=1.0)
    min_prefix_tokens: int = flag(
        1, CANDIDATES, "int", "an integer >= 0",
        "Shortest kept prefix in tokens. Raise it to skip prefixes too short to hold a partial solution.",
        lo=0)
    max_prefix_tokens: int = flag(
        0, CANDIDATES, "int", "an integer >= 0",
        "Longest kept prefix in tokens; 0 means no limit. The buffer refuses longer states from any source "
        "(it does not clip them). Set it when long prefixes crowd out the generation budget.",
        lo=0)
    cut_every: int = flag(
        32, CANDIDATES, "int", "an integer >= 1",
        "Token stride of cuts when no --rrl_boundary_tokens match (reward and mc scorers), and of cut "
        "control's moves. Where the stride lands no cut inside a response (one shorter than it), those "
        "scorers cut it at 4 evenly spread fractions of its allowed range instead. Lower it for short "
        "step-structured responses.",
        lo=1)
    boundary_tokens: tuple = flag(
        (), CANDIDATES, "ids", "comma-separated token ids",
        "Token ids that end a reasoning step (e.g. the newline id); cuts go right after them, and cut control "
        "moves one step at a time. Set them for step-structured tasks.")
    agree_probes: bool = flag(
        False, CANDIDATES, "flag", "on or off",
        "With --rrl_scorer agree: also cut the failed rollouts of hard groups that have no success (where "
        "agreement verifies nothing) at the reward scorer's cuts, as unverified probes admitted after the "
        "verified cuts; a probe's restart group that succeeds is mined like any mixed restart group, and a "
        "probe that never succeeds retires as dead (--rrl_retire_dead_after).")
    retry_unsolved: str = flag(
        "auto", CANDIDATES, "str", "one of " + ", ".join(RETRY_MODES),
        "Keep a hard prompt whose fresh group had no success at all as a retry entry: a restart group samples "
        "it again from the prompt itself at --rrl_restart_temperature, in the restart slots the buffer's cuts "
        "leave free (retries score far below every cut, and are evicted first). A success there gives the agree "
        "scorer a success to agree with; a retry that never succeeds retires as dead (--rrl_retire_dead_after). "
        "It is replay's own way to sample the prompts it knows are hard again, where the run samples every "
        "prompt at one temperature (OpenRLHF). auto: on with --rrl_scorer agree where --rrl_restart_temperature is "
        "above the run's temperature (the embedded runner's default, 2; in OpenRLHF set it): a retry at the "
        "run's own temperature repeats what just failed and measured below the baseline (docs/measurements/).",
        choices=RETRY_MODES)

    # Buffer policy: what is kept, replayed first, and retired
    buffer_capacity: int = flag(
        4096, BUFFER, "int", "an integer >= 0",
        "Most retained states kept; the lowest priority is evicted. Lower it if the buffer fills with untried "
        "states (takeover).",
        lo=0)
    per_prompt_capacity: int = flag(
        8, BUFFER, "int", "an integer >= 1",
        "Most retained states of one prompt, so a few hard prompts cannot fill the buffer. Lower it if a few "
        "prompts hold most entries.",
        lo=1)
    admit_per_step: int = flag(
        -1, BUFFER, "int", "an integer >= -1",
        "New buffer entries admitted per step, best first; -1 means as many as the restart slots of a batch "
        "at the nominal share. Lower it if rrl/untried keeps growing.",
        lo=-1)
    temperature: float = flag(
        1.0, BUFFER, "float", "a number > 0",
        "Priority temperature: priority = exp(score / T). Lower it to favour the top-scored states more "
        "strongly.",
        lo=0.0, lo_open=True)
    restart_decay: float = flag(
        0.7, BUFFER, "float", "a number in (0, 1]",
        "Priority factor per restart already run from a state, so untested states get their turn. 1 disables "
        "the decay; lower it when the same entries are restarted over and over.",
        lo=0.0, hi=1.0, lo_open=True)
    policy: str = flag(
        "promise", BUFFER, "str", "one of " + ", ".join(POLICY_NAMES),
        "Which entries restart: promise (the paper: by priority), passrate (Prefix Sampling, both ways: "
        "successful or verified-correct prefixes as head starts for prompts failing more often than "
        "--rrl_target_pass_rate, failed prefixes as handicaps for prompts passing more often; entries "
        "likeliest to give mixed groups first; cut control on) or uncertainty (Thompson draw nearest the "
        "target). Try passrate if restart groups come back all-pass or all-fail.",
        choices=POLICY_NAMES)
    target_pass_rate: float = flag(
        0.5, BUFFER, "float", "a number in [0, 1]",
        "Pass rate the passrate and uncertainty policies aim for; binary rewards carry most signal near 0.5, "
        "so change it only for graded rewards.",
        lo=0.0, hi=1.0)
    cut_control: str = flag(
        "auto", BUFFER, "str", "one of " + ", ".join(CUT_CONTROL_MODES),
        "Move each entry's cut along its source response after an uninformative restart group: a head start's "
        "cut goes one step later after an all-fail group and earlier after an all-pass one (a handicap's the "
        "other way round); the entry's record restarts at the new cut. auto: on with --rrl_policy passrate. "
        "Turn it on with other policies when restart groups keep coming back 0/n or n/n.",
        choices=CUT_CONTROL_MODES)
    retire_solved_rate: float = flag(
        0.75, BUFFER, "float", "a number in [0, 1]",
        "A prompt whose fresh group succeeds at least this often retires its entries (no head start needed). "
        "Lower it to stop helping prompts sooner.",
        lo=0.0, hi=1.0)
    retire_dead_after: int = flag(
        16, BUFFER, "int", "an integer >= 0",
        "A state retires after this many continuations without a success; 0 never retires dead states. Lower "
        "it when rrl/restart_success stays near 0 and dead states hold the buffer.",
        lo=0)
    untried_ttl: int = flag(
        50, BUFFER, "int", "an integer >= 0",
        "Entries never restarted are retired (rrl/retired_untried) this many steps after they were last "
        "found; 0 keeps them. Lower it when rrl/untried keeps growing (buffer takeover).",
        lo=0)

    # Watching it
    idle_warn_steps: int = flag(
        20, WATCH, "int", "an integer >= 0",
        "Warn (in the log, with the reason) after this many steps in a row that admitted no state and ran no "
        "restart, and again every as many more; rrl/idle_steps counts them. 0 turns the warning off. A replay "
        "run that stays idle is a baseline run: read the reason before comparing it with one.",
        lo=0)

    # Training and files
    train_prefix: bool = flag(
        False, FILES, "flag", "a flag",
        "Also train on the replayed prefix tokens, with the stored rollout log-probs and importance "
        "correction; off (default) masks them as prompt-side context. Leave it off unless you study it: the "
        "prefix was sampled by an older policy.")
    loss_norm: str = flag(
        "response", FILES, "str", "one of " + ", ".join(LOSS_NORMS),
        "What the token-mean policy loss divides by. response: the action tokens plus each restart row's "
        "masked prefix tokens, so a restart row's token weighs what it would had the whole response been "
        "sampled this step and replay does not enlarge the update; trained: the action tokens only "
        "(OpenRLHF's own), so the more of a batch is restarts, the more each trained token weighs. With "
        "--rrl_train_prefix the prefix is trained and both are the same. In OpenRLHF it applies to "
        "--actor.loss_agg_mode token-mean and needs --train.dynamic_batch_enable off. Keep response unless "
        "you compare the two.",
        choices=LOSS_NORMS)
    buffer_path: str | None = flag(
        None, FILES, "str", "a path",
        "Where the buffer is saved and resumed from (JSON lines); none keeps it in memory only. Set it to "
        "resume a job with its buffer and to review it with rrl-inspect (the review file goes beside it).",
        none_ok=True)
    buffer_call_timeout: float = flag(
        600.0, FILES, "float", "a number of seconds > 0",
        "OpenRLHF launcher: how long one call to the buffer actor may take before the actor counts as hung; "
        "it is then asked to save its state and is replaced from that file (or the last checkpoint). Raise it "
        "for very large buffers on a slow file system.",
        lo=0.0, lo_open=True)
    displaced_prompts: str = flag(
        "defer", FILES, "str", "one of " + ", ".join(DISPLACED_PROMPTS),
        "OpenRLHF launcher: what becomes of the dataset prompt whose slot a restart group takes. defer: it is "
        "rolled out in the next batch, before new prompts, so an episode still rolls out every prompt once; "
        "the episode gets longer by its restart groups (same batch size per step), and the learning-rate "
        "schedule is stretched to the longest episode replay can make (OpenRLHF's step count x n / (n - "
        "restart slots), n the generation batch, at the largest share), so a decaying schedule ends a little "
        "above its floor when the buffer was sometimes empty. drop: it is not rolled out in this episode, so "
        "the run has the baseline's steps and compute (compute-matched comparisons); about a replay share of "
        "the data is then never seen in a one-episode run.",
        choices=DISPLACED_PROMPTS)
    seed: int = flag(
        0, FILES, "int", "an integer",
        "Seed of the buffer's and the planner's random draws. Vary it with the training seed when comparing "
        "seeds.")

    def max_share(self) -> float:
        """The largest share of a batch replay may take: the fixed share, or 'auto''s ceiling."""
        return self.share_max if self.replay_share == "auto" else float(self.replay_share)

    def __post_init__(self):
        self.validate()

    def validate(self) -> "RRLConfig":
        """Parse and check every field in place; raises RRLConfigError naming the flag."""
        for f in fields(self):
            setattr(self, f.name, FLAG_SPECS[f.name].parse(f.name, getattr(self, f.name)))
        if self.share_min > self.share_max:
            raise RRLConfigError(f"--rrl_share_min: expected <= --rrl_share_max ({self.share_max}), got {self.share_min}")
        if self.min_prefix_frac > self.max_prefix_frac:
            raise RRLConfigError(f"--rrl_min_prefix_frac: expected <= --rrl_max_prefix_frac ({self.max_prefix_frac}), "
                                 f"got {self.min_prefix_frac}")
        if self.share_schedule == "cosine" and self.replay_share != "auto":
            check_cosine_span(self.total_steps, self.start_step, self.warmup_steps)
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


FLAG_SPECS: dict[str, FlagSpec] = {f.name: f.metadata["spec"] for f in fields(RRLConfig)}


def default_text(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, tuple):
        return ",".join(map(str, v)) or "none"
    return str(v)


def flag_default(f, runner: bool = False):
    """A flag's default in the OpenRLHF launcher, or (runner=True) in the embedded runner."""
    return f.metadata.get("runner_default", f.default) if runner else f.default


def add_rrl_arguments(parser: argparse.ArgumentParser, dotted_dest: bool = False,
                      runner: bool = False) -> argparse.ArgumentParser:
    """Register every RRLConfig field as --rrl_<name> and --rrl.<name> (dest rrl_<name>, or rrl.<name>),
    with the embedded runner's defaults where runner=True."""
    group = parser.add_argument_group("Retrospective Replay (RRL)")
    for f in fields(RRLConfig):
        spec = FLAG_SPECS[f.name]
        opts = (f"--rrl_{f.name}", f"--rrl.{f.name}")
        dest = f"rrl.{f.name}" if dotted_dest else f"rrl_{f.name}"
        default = flag_default(f, runner)
        if spec.kind == "flag":
            group.add_argument(*opts, dest=dest, action="store_true", default=default,
                               help=f"{spec.help} (default: off)")
        else:
            group.add_argument(*opts, dest=dest, type=str, default=default, metavar="VALUE",
                               help=f"{spec.help} (default: {default_text(default)})")
    return parser
