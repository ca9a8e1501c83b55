"""The start-up check: an unsupported OpenRLHF, or RRL options that do not fit the run's algorithm,
stop the launcher before anything starts, with one line naming the flag to change."""

from __future__ import annotations

from ..config import RRLConfig, logprob_temperature_for, resolve_scorer, retry_unsolved_for
from ..core.errors import RRLConfigError
from ..core.planner import restart_slots

# scorers the OpenRLHF integration can feed: entropy needs per-token entropies, which OpenRLHF's
# experiences do not carry; checker needs --rrl_step_checker
OPENRLHF_SCORERS = ("critic", "reward", "mc", "checker", "agree")


def has_critic(args) -> bool:
    """OpenRLHF keeps a critic exactly for GAE (cli/train_ppo_ray.py drops it for every other estimator)."""
    return args.algo.advantage.estimator == "gae"


def check_openrlhf_version() -> None:
    from .. import SUPPORTED_OPENRLHF_VERSIONS, unsupported_openrlhf

    problem = unsupported_openrlhf()
    if problem == "not installed":
        raise RRLConfigError("--rrl_enable: OpenRLHF is not installed (pip install openrlhf==0.11.2)")
    if problem is not None:
        raise RRLConfigError(f"--rrl_enable: OpenRLHF {problem}; openrlhf-rrl supports "
                             f"{', '.join(SUPPORTED_OPENRLHF_VERSIONS)}")


def dispatch_size(args) -> int:
    """Prompts in one planned dispatch: OpenRLHF's vLLM generation batch (the rollout batch by default)."""
    return int(getattr(args.rollout, "vllm_generate_batch_size", None) or args.rollout.batch_size)


def episode_stretch(args, config: RRLConfig) -> float:
    """How much longer an episode can get when displaced prompts are deferred: a batch of n prompts
    rolls out at least n - slots dataset prompts, so an episode has at most n / (n - slots) times as
    many batches as OpenRLHF counts (1 with --rrl_displaced_prompts drop)."""
    if config.displaced_prompts != "defer":
        return 1.0
    n = dispatch_size(args)
    return n / (n - restart_slots(config.max_share(), n))


def resolve_rrl_config(args, scorer_given: bool) -> RRLConfig:
    """The run's RRLConfig from args.rrl, checked against the OpenRLHF options; raises RRLConfigError."""
    check_openrlhf_version()
    config = RRLConfig.from_args(args)
    estimator = args.algo.advantage.estimator
    resolve_scorer(config, scorer_given, bool(config.step_checker), has_critic(args),
                   int(args.rollout.n_samples_per_prompt))
    config.logprob_temperature = logprob_temperature_for(config, float(args.rollout.temperature),
                                                         packing=bool(args.ds.packing_samples))
    config.retry_unsolved = retry_unsolved_for(config, float(args.rollout.temperature))
    if config.scorer == "critic" and not has_critic(args):
        raise RRLConfigError(f"--rrl_scorer: critic needs a critic, and --algo.advantage.estimator {estimator} "
                             f"has none (use gae, or --rrl_scorer agree, reward or mc)")
    if not config.scorer.startswith("file:") and config.scorer not in OPENRLHF_SCORERS:
        raise RRLConfigError(f"--rrl_scorer: {config.scorer} is not available with OpenRLHF (its experiences carry "
                             f"no token entropies); use {', '.join(OPENRLHF_SCORERS)} or file:path.py")
    if config.scorer == "checker" and not config.step_checker:
        raise RRLConfigError("--rrl_scorer: checker needs a step checker; give --rrl_step_checker file.py or the URL of a served one")
    if config.train_prefix and args.algo.advantage.is_correction_level == "off":
        raise RRLConfigError("--rrl_train_prefix: the replayed prefix was sampled by an older policy; it needs "
                             "--algo.advantage.is_correction_level token or seq so its stored rollout log-probs "
                             "are importance-corrected")
    if config.loss_norm == "response" and args.train.dynamic_batch_enable:
        raise RRLConfigError("--rrl_loss_norm: response is not supported with --train.dynamic_batch_enable (its "
                             "loss normaliser is computed in the replay buffer); use --rrl_loss_norm trained or "
                             "turn dynamic batching off")
    if config.logprob_temperature == "sampled" and args.ds.packing_samples:
        raise RRLConfigError("--rrl_logprob_temperature: sampled divides each row's logits by its own temperature, "
                             "and --ds.packing_samples packs the rows into one (use run, or no packing)")
    n = dispatch_size(args)
    if config.displaced_prompts == "defer" and restart_slots(config.max_share(), n) >= n:
        raise RRLConfigError(f"--rrl_displaced_prompts: defer needs a fresh prompt in every batch, and a replay "
                             f"share of {config.max_share()} fills all {n} slots of a batch with restarts (lower "
                             f"--rrl_replay_share / --rrl_share_max, or use drop)")
    if not args.vllm.num_engines:
        raise RRLConfigError("--rrl_enable: restarts run on the vLLM engines; set --vllm.num_engines >= 1")
    if getattr(args.data, "max_images_per_prompt", 0) > 0:
        raise RRLConfigError("--rrl_enable: vision-language prompts are not supported by RRL restarts "
                             "(--data.max_images_per_prompt 0)")
    return config.validate()
