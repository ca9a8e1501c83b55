"""The KV-cache sampler against transformers' generate and against the training forward, restarts
continuing token-exactly, prefix masking, per-row temperature, EOS masking, reproducibility."""

import random

import pytest
import torch

from openrlhf_rrl.runner.sampling import (
    build_training_batch,
    greedy_eval,
    left_pad,
    rollout_training_batch,
    sample,
    sequence_logprobs,
)


@pytest.fixture(scope="module")
def prompts(chain_task):
    items = chain_task.rl_prompts(48, random.Random(5))
    return items, [chain_task.encode_prompt(it) for it in items]


def run(model, task, prompt_ids, prefix_ids=(), temperature=1.0, seed=0, max_new=None):
    gen = torch.Generator().manual_seed(seed)
    return sample(model, prompt_ids, list(prefix_ids), max_new or task.max_new_tokens, temperature,
                  task.eos_id, task.pad_id, gen)


def test_greedy_loop_equals_generate(warm_tiny, chain_task, prompts):
    _, prompt_ids = prompts
    ids, mask = left_pad(prompt_ids, chain_task.pad_id)
    assert (mask == 0).any()  # really left-padded
    out = warm_tiny.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=9,
                             pad_token_id=chain_task.pad_id, eos_token_id=chain_task.eos_id)
    expected = out[:, ids.shape[1]:]
    rollout = run(warm_tiny, chain_task, prompt_ids, temperature=0.0)
    assert len({tuple(r) for r in rollout.continuations()}) > 5  # the model's answers vary
    assert torch.equal(rollout.tokens, expected)
    assert greedy_eval(warm_tiny, prompt_ids, 9, chain_task.eos_id, chain_task.pad_id, batch_size=7) == \
        rollout.continuations()


def with_half_restarts(task, items, prompt_ids):
    """Every other row restarts from a prefix of its correct answer (1..3 values)."""
    return [task.target_ids(it)[: 1 + i % 3] if i % 2 else [] for i, it in enumerate(items)]


def test_loop_logprobs_equal_training_forward(warm_tiny, chain_task, prompts):
    items, prompt_ids = prompts
    prefixes = with_half_restarts(chain_task, items, prompt_ids)
    rollout = run(warm_tiny, chain_task, prompt_ids, prefixes, temperature=1.0)
    batch = rollout_training_batch(rollout, chain_task.pad_id)
    logprobs, entropy = sequence_logprobs(warm_tiny, batch, with_entropy=True)
    recomputed = batch.continuation_view(logprobs)
    assert torch.equal(batch.continuation_mask, rollout.mask)
    assert (recomputed - rollout.logprobs)[rollout.mask].abs().max().item() < 1e-4
    assert (batch.continuation_view(entropy) - rollout.entropy)[rollout.mask].abs().max().item() < 1e-4
    assert torch.equal(rollout.sampling_logprobs, rollout.logprobs)  # temperature 1
    # the loss path has gradients
    (recomputed * rollout.mask).sum().backward()
    assert warm_tiny.model.embed_tokens.weight.grad is not None
    warm_tiny.zero_grad(set_to_none=True)


def test_restart_continues_right_after_the_stored_prefix(warm_tiny, chain_task, prompts):
    items, prompt_ids = prompts
    fresh = run(warm_tiny, chain_task, prompt_ids, temperature=0.0)
    cut = [min(2, len(c) - 1) for c in fresh.continuations()]
    prefixes = [c[:k] for c, k in zip(fresh.continuations(), cut)]
    budgets = [chain_task.max_new_tokens - len(p) for p in prefixes]  # one total response length
    restart = run(warm_tiny, chain_task, prompt_ids, prefixes, temperature=0.0, max_new=budgets)
    # greedy from (prompt + first k tokens) reproduces the rest of the greedy rollout
    for full, pre, cont in zip(fresh.continuations(), prefixes, restart.continuations()):
        assert pre + cont == full
    assert restart.responses() == fresh.continuations()
    assert torch.equal(restart.eos, fresh.eos)
    # the training sequence is prompt + prefix + continuation, token for token
    batch = rollout_training_batch(restart, chain_task.pad_id)
    for i, (p, pre, cont) in enumerate(zip(prompt_ids, prefixes, restart.continuations())):
        row = batch.input_ids[i][batch.attention_mask[i].bool()].tolist()
        assert row == p + pre + cont
        assert row[: len(p) + len(pre)] == p + pre


def test_prefix_is_outside_the_action_mask_unless_asked(chain_task):
    prompt_ids = [[4, 10, 24], [5, 11, 12, 24]]
    prefixes = [[], [6, 7]]
    continuations = [[5, 1], [8, 1]]
    default = build_training_batch(prompt_ids, continuations, prefixes, pad_id=chain_task.pad_id)
    trained = build_training_batch(prompt_ids, continuations, prefixes, pad_id=chain_task.pad_id, train_prefix=True)
    for batch, extra in ((default, 0), (trained, 2)):
        targets = batch.input_ids[:, 1:][batch.action_mask]
        assert batch.action_mask.sum(1).tolist() == [2, 2 + extra]
        expected = [5, 1] + ([6, 7] if extra else []) + [8, 1]
        assert targets.tolist() == expected
    assert default.context_len == 6 and default.input_ids[1].tolist() == [5, 11, 12, 24, 6, 7, 8, 1]
    assert default.position_ids[0].tolist()[-5:] == [0, 1, 2, 3, 4]


def test_per_row_temperature(warm_tiny, chain_task, prompts):
    _, prompt_ids = prompts
    row = prompt_ids[0]
    rows = [row] * 32
    temps = [0.0] * 8 + [1.0] * 8 + [2.5] * 16
    a = run(warm_tiny, chain_task, rows, temperature=temps, seed=1)
    b = run(warm_tiny, chain_task, rows, temperature=temps, seed=2)
    greedy = a.continuations()[0]
    assert all(c == greedy for c in a.continuations()[:8] + b.continuations()[:8])  # temp 0: deterministic
    assert greedy == run(warm_tiny, chain_task, [row], temperature=0.0).continuation(0)
    assert len({tuple(c) for c in a.continuations()[16:]}) > 3  # hot rows explore
    m = a.mask
    assert torch.all(a.sampling_logprobs[:8][m[:8]] == 0)
    assert torch.equal(a.sampling_logprobs[8:16], a.logprobs[8:16])
    assert not torch.allclose(a.sampling_logprobs[16:][m[16:]], a.logprobs[16:][m[16:]])
    # a hot row's tokens are less likely under the temperature-1 policy than the greedy row's
    assert a.logprobs[16:][m[16:]].mean() < a.logprobs[:8][m[:8]].mean()
    # the training forward at each row's own temperature gives back the sampling log-probs
    batch = rollout_training_batch(a, chain_task.pad_id)
    tempered = batch.continuation_view(sequence_logprobs(warm_tiny, batch, temperature=torch.tensor(
        [t if t > 0 else 1.0 for t in temps])))
    assert (tempered - a.sampling_logprobs)[8:][m[8:]].abs().max().item() < 1e-4


def test_everything_after_eos_is_masked(warm_tiny, chain_task, prompts):
    _, prompt_ids = prompts
    r = run(warm_tiny, chain_task, prompt_ids, temperature=1.5, seed=3)
    eos_id = chain_task.eos_id
    for i in range(len(prompt_ids)):
        cont = r.continuation(i)
        assert eos_id not in cont[:-1]
        assert r.eos[i].item() == (cont[-1] == eos_id)
        tail = slice(len(cont), None)
        assert (r.tokens[i, tail] == chain_task.pad_id).all() and not r.mask[i, tail].any()
        assert (r.logprobs[i, tail] == 0).all() and (r.entropy[i, tail] == 0).all()
    short = [p for p, c in zip(prompt_ids, r.continuations()) if len(c) <= 3 and c[-1] == eos_id]
    if short:  # a batch whose rows all stop early stops early
        early = run(warm_tiny, chain_task, short, temperature=0.0)
        assert early.eos.all() and early.tokens.shape[1] < chain_task.max_new_tokens


def test_per_row_budget(warm_tiny, chain_task, prompts):
    _, prompt_ids = prompts
    budgets = [i % 4 for i in range(len(prompt_ids))]
    r = run(warm_tiny, chain_task, prompt_ids, temperature=1.0, max_new=budgets)
    assert all(len(c) <= b for c, b in zip(r.continuations(), budgets))
    assert r.tokens.shape[1] <= 3 and not r.mask[[i for i, b in enumerate(budgets) if b == 0]].any()
    assert all(r.eos[i] == (c[-1:] == [chain_task.eos_id]) for i, c in enumerate(r.continuations()))


def test_same_seed_same_rollout(warm_tiny, chain_task, prompts):
    _, prompt_ids = prompts
    a, b, c = (run(warm_tiny, chain_task, prompt_ids, seed=s) for s in (9, 9, 10))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logprobs, b.logprobs)
    assert not torch.equal(a.tokens, c.tokens)


def test_supervised_batch_without_prefixes(chain_task):
    batch = build_training_batch([[4, 24], [5, 10, 24]], [[4, 1], [6, 1]], pad_id=0)
    assert batch.input_ids.tolist() == [[0, 4, 24, 4, 1], [5, 10, 24, 6, 1]]
    assert batch.attention_mask.tolist() == [[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert batch.action_mask.long().tolist() == [[0, 0, 1, 1], [0, 0, 1, 1]]


@pytest.mark.slow
def test_sampler_on_smollm2(smollm2):
    """The same loop on a real Llama-architecture model with a 49k vocabulary and its chat template."""
    from openrlhf_rrl.tasks import ArithmeticTask

    model, tok = smollm2
    task = ArithmeticTask(tokenizer=tok)
    items = task.eval_sets(2)["all"]
    prompt_ids = [task.encode_prompt(it) for it in items]
    for it, p in zip(items, prompt_ids):
        assert tok.decode(p, skip_special_tokens=False) == task.prompt_text(it)
    ids, mask = left_pad(prompt_ids, tok.pad_token_id)
    expected = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=8,
                              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)[:, ids.shape[1]:]
    greedy = sample(model, prompt_ids, [], 8, 0.0, tok.eos_token_id, tok.pad_token_id)
    assert torch.equal(greedy.tokens, expected)
    prefixes = [c[:3] if i % 2 else [] for i, c in enumerate(greedy.continuations())]
    rollout = sample(model, prompt_ids, prefixes, 6, 1.0, tok.eos_token_id, tok.pad_token_id,
                     torch.Generator().manual_seed(0))
    batch = rollout_training_batch(rollout, tok.pad_token_id)
    with torch.no_grad():
        recomputed = batch.continuation_view(sequence_logprobs(model, batch))
    assert (recomputed - rollout.logprobs)[rollout.mask].abs().max().item() < 1e-3
    # reward_func sees an ordinary OpenRLHF query
    scores = task.score(items, rollout.responses())
    assert scores.shape == (2,) and set(scores.tolist()) <= {0.0, 1.0}


def test_greedy_sampling_leaves_the_global_rng_alone(warm_tiny, chain_task, prompts):
    _, prompt_ids = prompts
    torch.manual_seed(0)
    expected = torch.rand(2)
    torch.manual_seed(0)
    greedy_eval(warm_tiny, prompt_ids, 9, chain_task.eos_id, chain_task.pad_id)
    assert torch.equal(torch.rand(2), expected)
