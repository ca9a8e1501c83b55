"""Sampling and training-batch construction on plain transformers models, token-exact for restarts.

One layout serves both: each row is [left padding][prompt][restart prefix][continuation][right
padding]. The context (prompt + prefix) is left-padded to a common width C, so every row starts
decoding at column C, and continuation token j sits at column C + j in the sampler and in the
training forward alike. Position ids are always `cumsum(attention_mask) - 1` (passed explicitly:
with left padding the model's default positions would be wrong). A restart prefix is context
given as token ids, never re-tokenized text, so a restart continues exactly where the stored
rollout stopped.

Log-probs follow OpenRLHF's alignment: a (B, T-1) tensor whose column t is log p(input_ids[:, t+1]),
with an action mask of the same shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counting real tokens only; padding gets 0 (it is masked anyway)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) with every row right-aligned to the longest one."""
    width = max((len(r) for r in rows), default=0)
    ids = [[pad_id] * (width - len(r)) + list(r) for r in rows]
    mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
    return torch.tensor(ids, dtype=torch.long).reshape(len(rows), width), torch.tensor(mask, dtype=torch.long).reshape(len(rows), width)


def _eos_set(eos_id: int | Iterable[int]) -> list[int]:
    return [int(eos_id)] if isinstance(eos_id, int) else [int(e) for e in eos_id]


def _per_row_prefix(prefix_ids, n: int) -> list[list[int]]:
    if not prefix_ids:
        return [[] for _ in range(n)]
    if len(prefix_ids) != n:
        raise ValueError(f"prefix_ids has {len(prefix_ids)} rows for {n} prompts")
    return [list(p) for p in prefix_ids]


def _per_row(value, n: int, cast, name: str) -> list:
    """A scalar broadcast to n rows, or a sequence of n values."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        return [cast(value)] * n
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries for {n} prompts")
    return [cast(v) for v in value]


@dataclass
class Rollout:
    """New tokens of one sampling call. Tensors are (B, N), left-aligned, padded after the end.

    tokens: the continuation (new tokens only), including EOS where emitted, pad_id after it.
    mask: True on real new tokens (up to and including the first EOS).
    sampling_logprobs: log-prob of each token under the distribution it was drawn from
        (temperature-scaled; 0.0 for greedy rows, whose choice is certain).
    logprobs: log-prob under the policy at temperature 1 (what the policy loss uses).
    entropy: entropy of the temperature-1 distribution at each step.
    eos: whether the row emitted EOS within max_new_tokens.
    prompt_ids / prefix_ids: the inputs, kept so a training batch can be rebuilt token-exactly.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    sampling_logprobs: torch.Tensor
    logprobs: torch.Tensor
    entropy: torch.Tensor
    eos: torch.Tensor
    prompt_ids: list[list[int]]
    prefix_ids: list[list[int]]
    temperature: list[float]

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(-1)

    def continuation(self, i: int) -> list[int]:
        """Row i's new tokens as a list (EOS included if emitted)."""
        return self.tokens[i, : int(self.mask[i].sum())].tolist()

    def continuations(self) -> list[list[int]]:
        return [self.continuation(i) for i in range(self.tokens.shape[0])]

    def responses(self) -> list[list[int]]:
        """Full responses for scoring: restart prefix + continuation (pair with the ORIGINAL prompt)."""
        return [p + c for p, c in zip(self.prefix_ids, self.continuations())]


@torch.no_grad()
def sample(model, prompt_ids: list[list[int]], prefix_ids: list[list[int]], max_new_tokens: int | list[int],
           temperature: float | list[float], eos_id: int | Iterable[int], pad_id: int,
           generator: torch.Generator | None = None) -> Rollout:
    """Sample continuations of prompt + prefix with a KV cache, one temperature per row.

    prefix_ids may be [] (no restarts) or hold one list per row ([] where that row has none).
    Temperature 0 means greedy. max_new_tokens may be per row (e.g. the response budget minus the
    restart prefix, so restarts and fresh rollouts share one total length). Stops once every row
    has emitted EOS or used its budget; tokens after a row's end are pad and masked out. The
    random stream depends only on `generator` and the batch shape, so a seeded generator
    reproduces a rollout (generator=None draws from torch's global RNG; all-greedy calls draw
    nothing).
    """
    n = len(prompt_ids)
    prefixes = _per_row_prefix(prefix_ids, n)
    temps = _per_row(temperature, n, float, "temperature")
    budgets = _per_row(max_new_tokens, n, int, "max_new_tokens")
    eos = torch.tensor(_eos_set(eos_id), dtype=torch.long)

    device = next(model.parameters()).device
    contexts = [list(p) + q for p, q in zip(prompt_ids, prefixes)]
    input_ids, attention_mask = left_pad(contexts, pad_id)
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    draw = _TokenDraw(torch.tensor(temps, dtype=torch.float32, device=device), generator)
    budget = torch.tensor(budgets, dtype=torch.long, device=device)

    cols = {k: [] for k in ("tokens", "valid", "sampling_logprobs", "logprobs", "entropy")}
    done = budget <= 0
    emitted_eos = torch.zeros(n, dtype=torch.bool, device=device)
    past = None
    step_ids, step_pos = input_ids, position_ids_from_mask(attention_mask)
    for step in range(max(budgets, default=0)):
        out = model(input_ids=step_ids, attention_mask=attention_mask, position_ids=step_pos,
                    past_key_values=past, use_cache=True, logits_to_keep=1)
        past = out.past_key_values
        token = draw.next_tokens(out.logits[:, -1, :].float(), done, pad_id, cols)
        emitted_eos = emitted_eos | (~done & torch.isin(token, eos.to(device)))
        done = done | emitted_eos | (budget <= step + 1)
        if bool(done.all()):
            break
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=-1)
        step_ids = token[:, None]
        step_pos = attention_mask.sum(-1, keepdim=True) - 1
    return _as_rollout(cols, emitted_eos, prompt_ids, prefixes, temps)


class _TokenDraw:
    """One decoding step's choice per row: greedy where the temperature is 0, else a draw at the row's
    temperature; it records the token, its log-probs (sampling and temperature 1) and the entropy."""

    def __init__(self, temp: torch.Tensor, generator: torch.Generator | None):
        self.greedy = temp <= 0
        self.all_greedy = bool(self.greedy.all())  # then no random numbers are drawn at all
        self.safe_temp = torch.where(self.greedy, torch.ones_like(temp), temp)[:, None]
        self.generator = generator

    def next_tokens(self, logits: torch.Tensor, done: torch.Tensor, pad_id: int, cols: dict) -> torch.Tensor:
        greedy = self.greedy
        logp = torch.log_softmax(logits, dim=-1)
        logp_sampling = torch.log_softmax(logits / self.safe_temp, dim=-1)
        token = logits.argmax(-1)
        if not self.all_greedy:
            drawn = torch.multinomial(logp_sampling.exp(), 1, generator=self.generator).squeeze(-1)
            token = torch.where(greedy, token, drawn)
        token = torch.where(done, torch.full_like(token, pad_id), token)

        cols["tokens"].append(token)
        cols["valid"].append(~done)
        cols["logprobs"].append(logp.gather(-1, token[:, None]).squeeze(-1))
        chosen_sampling = logp_sampling.gather(-1, token[:, None]).squeeze(-1)
        cols["sampling_logprobs"].append(torch.where(greedy, torch.zeros_like(chosen_sampling), chosen_sampling))
        cols["entropy"].append(-(logp.exp() * logp).sum(-1))
        return token


def _as_rollout(cols: dict, emitted_eos: torch.Tensor, prompt_ids, prefixes, temps) -> Rollout:
    """The decoding loop's per-step columns as a Rollout, zero where a row had ended."""
    n = len(prompt_ids)
    if not cols["tokens"]:
        empty = torch.zeros((n, 0))
        return Rollout(empty.long(), empty.bool(), empty, empty, empty, torch.zeros(n, dtype=torch.bool),
                       [list(p) for p in prompt_ids], prefixes, temps)
    valid = torch.stack(cols["valid"], 1).cpu()
    keep = lambda name: torch.stack(cols[name], 1).cpu() * valid  # noqa: E731  (zero where masked)
    return Rollout(
        tokens=torch.stack(cols["tokens"], 1).cpu(),
        mask=valid,
        sampling_logprobs=keep("sampling_logprobs"),
        logprobs=keep("logprobs"),
        entropy=keep("entropy"),
        eos=emitted_eos.cpu(),
        prompt_ids=[list(p) for p in prompt_ids],
        prefix_ids=prefixes,
        temperature=temps,
    )


def greedy_eval(model, prompt_ids: list[list[int]], max_new_tokens: int, eos_id, pad_id: int,
                batch_size: int = 512) -> list[list[int]]:
    """Greedy continuations from scratch, in chunks; for held-out evals."""
    out: list[list[int]] = []
    for start in range(0, len(prompt_ids), batch_size):
        chunk = prompt_ids[start:start + batch_size]
        out += sample(model, chunk, [], max_new_tokens, 0.0, eos_id, pad_id).continuations()
    return out


@dataclass
class TrainingBatch:
    """A padded batch for the training forward, in the sampler's layout.

    input_ids / attention_mask / position_ids: (B, T).
    action_mask: (B, T-1), True where input_ids[:, t+1] is trained on (OpenRLHF's alignment).
    context_len: C, the width of the left-padded context; continuation token j of every row is
        input column C + j, its log-prob column C - 1 + j. `continuation_view` cuts (B, T-1)
        tensors to the (B, N) layout of `Rollout`.
    continuation_mask: (B, N), True on real continuation tokens.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    action_mask: torch.Tensor
    context_len: int
    continuation_mask: torch.Tensor

    def continuation_view(self, per_action: torch.Tensor) -> torch.Tensor:
        """(B, T-1) -> (B, N): the columns of the continuation tokens, aligned with Rollout."""
        width = self.continuation_mask.shape[1]
        return per_action[:, self.context_len - 1: self.context_len - 1 + width]


def build_training_batch(prompt_ids: list[list[int]], continuation_ids: list[list[int]],
                         prefix_ids: list[list[int]] | None = None, *, pad_id: int,
                         train_prefix: bool = False) -> TrainingBatch:
    """Pad prompt + prefix + continuation for the training forward.

    The restart prefix is part of the input but, by default, not of the action mask: its tokens
    were sampled by an older policy and are context now. train_prefix=True puts them in the mask
    (then the loss needs their stored log-probs and an importance correction).
    Continuations must already stop at their first EOS (a Rollout's do).
    """
    n = len(prompt_ids)
    prefixes = _per_row_prefix(prefix_ids or [], n)
    contexts = [list(p) + q for p, q in zip(prompt_ids, prefixes)]
    ctx_ids, ctx_mask = left_pad(contexts, pad_id)
    context_len = ctx_ids.shape[1]
    width = max((len(c) for c in continuation_ids), default=0)
    cont_ids = torch.tensor([list(c) + [pad_id] * (width - len(c)) for c in continuation_ids],
                            dtype=torch.long).reshape(n, width)
    cont_mask = torch.tensor([[True] * len(c) + [False] * (width - len(c)) for c in continuation_ids],
                             dtype=torch.bool).reshape(n, width)

    input_ids = torch.cat([ctx_ids, cont_ids], dim=1)
    attention_mask = torch.cat([ctx_mask, cont_mask.long()], dim=1)
    targets = torch.zeros_like(input_ids, dtype=torch.bool)
    targets[:, context_len:] = cont_mask
    if train_prefix:
        for i, prefix in enumerate(prefixes):
            if prefix:
                targets[i, context_len - len(prefix): context_len] = True
    return TrainingBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        action_mask=targets[:, 1:],
        context_len=context_len,
        continuation_mask=cont_mask,
    )


def rollout_training_batch(rollout: Rollout, pad_id: int, train_prefix: bool = False) -> TrainingBatch:
    """The training batch of a Rollout, token-exact (same ids, same columns as when sampled)."""
    return build_training_batch(rollout.prompt_ids, rollout.continuations(), rollout.prefix_ids,
                                pad_id=pad_id, train_prefix=train_prefix)


def sequence_logprobs(model, batch: TrainingBatch, with_entropy: bool = False, temperature=None):
    """Log-probs (B, T-1) of input_ids[:, 1:] at temperature 1, or at each row's `temperature` ((B,)
    tensor) when given, with gradients; optionally also the per-position entropy (of the same
    distribution). Logits are computed only from the first trained column on (SmolLM2's 49k
    vocabulary makes full-sequence logits large); earlier columns are 0.
    """
    total = batch.input_ids.shape[1]
    trained_cols = batch.action_mask.any(0).nonzero()
    first = int(trained_cols[0]) if len(trained_cols) else total - 1
    keep = total - first  # logits for positions first .. T-1; the last predicts nothing
    device = next(model.parameters()).device
    out = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                position_ids=batch.position_ids.to(device), use_cache=False, logits_to_keep=keep)
    logits = out.logits[:, :-1, :].float()
    if temperature is not None:
        logits = logits / temperature.to(device=logits.device, dtype=logits.dtype)[:, None, None]
    logp_all = torch.log_softmax(logits, dim=-1)
    targets = batch.input_ids[:, first + 1:].to(device)
    chosen = logp_all.gather(-1, targets[..., None]).squeeze(-1)
    pad = torch.zeros(chosen.shape[0], first, dtype=chosen.dtype, device=device)
    logprobs = torch.cat([pad, chosen], dim=1)
    if not with_entropy:
        return logprobs
    entropy = torch.cat([pad, -(logp_all.exp() * logp_all).sum(-1)], dim=1)
    return logprobs, entropy
