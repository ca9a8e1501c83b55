"""What one training step sends to the replay buffer actor in OpenRLHF, at cluster scale.

A synthetic batch shaped like a 7B GRPO step (--prompts x --samples, --tokens per sequence, response
log-probs and, with --critic, values; --hard_share of the groups hold one success, the rest all pass)
goes the way the glue sends it: ReplayExperienceMaker.groups() turns OpenRLHF's experiences into the
observe() payload (the groups cuts can come from with their token ids, log-probs and values as numpy
arrays, every other group as outcomes alone), Ray serializes it, and a real ReplayBufferActor in a local
Ray runs observe(). Printed per step, best of --repeats:

  build    groups(): tensors -> the payload (the trainer's side)
  bytes    the payload's size as Ray serializes it (cloudpickle)
  send     ray.put of the payload plus the actor's ray.get of it (an echo call: transfer only)
  observe  the whole observe() call on the actor: the same transfer plus the buffer's own work (mining,
           scoring, admission)

    .venv/bin/python benchmarks/bench_buffer_traffic.py                       # 1024 samples x 2048 tokens
    .venv/bin/python benchmarks/bench_buffer_traffic.py --prompts 16 --tokens 256 --repeats 1   # quick

The experiences are plain objects holding the tensors OpenRLHF's Experience holds (sequences,
attention and action masks, rollout log-probs, values, info["reward"], index): a stand-in for the
GPU pipeline, which cannot run here; groups() and trajectory() are the glue's own code.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402


def synthetic_step(prompts: int, samples: int, tokens: int, prompt_len: int, critic: bool, hard_share: float,
                   seed: int = 0):
    """(rollout_samples, experiences) of one step: every `samples` consecutive rows a group; a hard
    prompt's group holds one success, an easy one's all successes."""
    g = torch.Generator().manual_seed(seed)
    n = prompts * samples
    vocab = 32000
    sequences = torch.randint(5, vocab, (n, tokens), generator=g)
    for p in range(prompts):  # a group shares its prompt
        sequences[p * samples:(p + 1) * samples, :prompt_len] = sequences[p * samples, :prompt_len]
    hard = torch.rand(prompts, generator=g) < hard_share
    reward = torch.ones(n)
    for p in range(prompts):
        if hard[p]:
            reward[p * samples + 1:(p + 1) * samples] = 0.0
    experience = SimpleNamespace(
        sequences=sequences, attention_mask=torch.ones(n, tokens, dtype=torch.long),
        action_mask=torch.ones(n, tokens - 1, dtype=torch.bool),
        rollout_log_probs=-torch.rand(n, tokens - 1, generator=g), action_log_probs=None,
        values=torch.randn(n, tokens - 1, generator=g) if critic else None,
        info={"reward": reward}, truncated=torch.zeros(n, dtype=torch.bool), index=list(range(n)))
    rollout_samples = [SimpleNamespace(rrl={"key": f"p{i // samples}", "prompt_len": prompt_len, "restart": False,
                                            "prefix_len": 0, "entry_key": None},
                                       labels=[str(i // samples)], prompts=[f"prompt {i // samples}"]) for i in range(n)]
    return rollout_samples, [experience]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=128)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--tokens", type=int, default=2048, help="sequence length (prompt + response)")
    p.add_argument("--prompt_len", type=int, default=512)
    p.add_argument("--hard_share", type=float, default=0.25, help="share of prompts whose group has one success")
    p.add_argument("--critic", action="store_true", help="send critic values too (PPO with GAE)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    import ray

    from openrlhf_rrl.compat import flash_attn_shim

    flash_attn_shim.install()  # OpenRLHF imports flash_attn at load time; a stand-in where it is not installed
    from openrlhf_rrl.config import RRLConfig
    from openrlhf_rrl.openrlhf.buffer_actor import RemoteReplayBufferActor
    from openrlhf_rrl.openrlhf.experience_maker import ReplayExperienceMaker

    maker = object.__new__(ReplayExperienceMaker)  # groups() and trajectory() read only these
    maker.args = SimpleNamespace(rollout=SimpleNamespace(n_samples_per_prompt=args.samples))
    maker.config = RRLConfig(enable=True)
    maker.tokenizer = SimpleNamespace(eos_token_id=2)
    maker.critic_model_group = object() if args.critic else None

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        @ray.remote(num_cpus=0)
        class Echo:
            def take(self, payload) -> int:
                return len(payload)

        echo = Echo.remote()
        buffer = RemoteReplayBufferActor.remote(RRLConfig(enable=True, scorer="agree").to_dict())
        ray.get(echo.take.remote([]))
        n = args.prompts * args.samples
        print(f"{n} samples x {args.tokens} tokens ({args.prompt_len} prompt), {args.prompts} groups, "
              f"hard share {args.hard_share}, critic values {'on' if args.critic else 'off'}")
        best: dict[str, float] = {}
        for r in range(args.repeats):
            rollout_samples, experiences = synthetic_step(args.prompts, args.samples, args.tokens, args.prompt_len,
                                                          args.critic, args.hard_share, seed=r)
            t = time.perf_counter()
            groups, _ = maker.groups(rollout_samples, experiences)
            build = time.perf_counter() - t
            size = len(ray.cloudpickle.dumps(groups))
            t = time.perf_counter()
            ray.get(echo.take.remote(ray.put(groups)))
            send = time.perf_counter() - t
            t = time.perf_counter()
            ray.get(buffer.observe.remote(groups))
            observe = time.perf_counter() - t  # the whole call: the payload's transfer plus the buffer's work
            for key, value in (("build_s", build), ("bytes", size), ("send_s", send), ("observe_s", observe)):
                best[key] = min(best.get(key, value), value)
            print(f"  repeat {r + 1}: build {build * 1e3:.0f} ms, {size / 1e6:.1f} MB, send {send * 1e3:.0f} ms, "
                  f"observe {observe * 1e3:.0f} ms", flush=True)
        print(f"best: build {best['build_s'] * 1e3:.0f} ms + send {best['send_s'] * 1e3:.0f} ms = "
              f"{(best['build_s'] + best['send_s']) * 1e3:.0f} ms of traffic per step ({best['bytes'] / 1e6:.1f} MB); "
              f"the whole observe call {best['observe_s'] * 1e3:.0f} ms (target: traffic < 50 ms)")
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
