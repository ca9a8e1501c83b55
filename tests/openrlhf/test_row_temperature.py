"""--rrl_logprob_temperature sampled on OpenRLHF's real Actor (the tiny model, on CPU): each row's logits are
divided by the temperature it was sampled at, in the experience maker's and the training step's forwards."""

from types import SimpleNamespace

import pytest

pytest.importorskip("vllm")

import torch  # noqa: E402


@pytest.fixture(scope="module")
def actor_at(tiny):
    from openrlhf.models.actor import Actor

    cache = {}

    def make(temperature):
        if temperature not in cache:
            cache[temperature] = Actor(tiny["model"], attn_implementation="eager", param_dtype="bf16",
                                       temperature=temperature).float().eval()  # fp32 compute
        return cache[temperature]

    return make


def batch():
    torch.manual_seed(0)
    sequences = torch.randint(3, 20, (3, 12))  # ids inside the tiny word vocabulary
    attention_mask = torch.ones_like(sequences)
    action_mask = torch.ones(3, 6)
    return sequences, action_mask, attention_mask


def test_each_row_gets_the_log_probs_of_its_own_temperature(actor_at):
    from openrlhf_rrl.openrlhf.row_temperature import tempered_rows

    sequences, action_mask, attention_mask = batch()
    run = actor_at(1.0)  # the run's --rollout.temperature
    with torch.no_grad():
        untempered = run(sequences, action_mask, attention_mask)
        with tempered_rows(run, torch.tensor([1.0, 2.0, 0.5])):
            mixed = run(sequences, action_mask, attention_mask)
        at = {t: actor_at(t)(sequences, action_mask, attention_mask) for t in (2.0, 0.5)}
    assert torch.allclose(mixed[0], untempered[0], atol=1e-6)
    assert torch.allclose(mixed[1], at[2.0][1], atol=1e-5) and torch.allclose(mixed[2], at[0.5][2], atol=1e-5)
    assert not torch.allclose(mixed[1], untempered[1], atol=1e-3)
    assert run.temperature == 1.0 and not run.model._forward_hooks  # nothing stays behind
    with torch.no_grad():  # a run at --rollout.temperature 2: a row at 2 keeps its log-probs, one at 1 changes
        hot_run = actor_at(2.0)
        with tempered_rows(hot_run, torch.tensor([2.0, 1.0, 2.0])):
            rows = hot_run(sequences, action_mask, attention_mask)
    assert torch.allclose(rows[0], at[2.0][0], atol=1e-5) and torch.allclose(rows[1], untempered[1], atol=1e-5)


def test_the_training_step_reads_the_temperatures_its_experience_carries(actor_at):
    """What the importance correction compares: vLLM drew row 1 at T=2 (its log-probs are at T=2); the
    training forward at the row's own temperature gives the same log-probs, so the weight is exp(0) = 1."""
    from openrlhf_rrl.openrlhf.policy_actor import tempered_training_steps
    from openrlhf_rrl.openrlhf.row_temperature import TEMPERATURE_KEY

    sequences, action_mask, attention_mask = batch()
    run = actor_at(1.0)
    with torch.no_grad():
        rollout_log_probs = torch.stack([run(sequences, action_mask, attention_mask)[0],
                                         actor_at(2.0)(sequences, action_mask, attention_mask)[1],
                                         run(sequences, action_mask, attention_mask)[2]])

    class Trainer:  # ActorPPOTrainer's training_step, as far as the log-probs go
        actor = run

        def training_step(self, experience, kl_ctl, step):
            with torch.no_grad():
                return self.actor(experience.sequences, experience.action_mask, experience.attention_mask)

    trainer = Trainer()
    experience = SimpleNamespace(sequences=sequences, action_mask=action_mask, attention_mask=attention_mask,
                                 info={TEMPERATURE_KEY: [torch.tensor(1.0), torch.tensor(2.0), torch.tensor(1.0)]})
    with tempered_training_steps(trainer):
        log_probs = trainer.training_step(experience, 0.0, 0)
    assert (log_probs - rollout_log_probs).abs().max().item() < 1e-5  # importance weights all 1
    plain = trainer.training_step(experience, 0.0, 0)  # the context is over: OpenRLHF's own again
    assert (plain[1] - rollout_log_probs[1]).abs().max().item() > 1e-3
