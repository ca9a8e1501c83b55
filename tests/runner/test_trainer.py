"""The embedded trainer end to end on the tiny model: restarts, loss masks, rewards, metrics, resume."""

from __future__ import annotations

import json
import math

import pytest
import torch

from openrlhf_rrl.config import RRLConfig
from openrlhf_rrl.runner.models import tiny_qwen2, value_model_from_policy
from openrlhf_rrl.tasks import ChainTask
from openrlhf_rrl.runner.trainer import TrainConfig, Trainer

TIMING_KEYS = {"step_s", "rrl_s", "rrl/overhead_s", "wall_s", "step_time_s", "rrl_overhead_pct"}


@pytest.fixture(scope="module")
def task():
    return ChainTask()


def eager_rrl(**kw) -> RRLConfig:
    """Replay that fires from step 2 on an untrained model: every prompt counts as hard and every
    failed rollout offers cuts every 2 tokens (the reward scorer), so restarts are guaranteed."""
    opts = dict(enable=True, scorer="reward", hard_threshold=1.0, cut_every=2, replay_share=0.5,
                admit_per_step=64, min_prefix_frac=0.0, max_prefix_frac=1.0)
    opts.update(kw)
    return RRLConfig(**opts)


def make_trainer(task, tmp_path, name="run", estimator="reinforce_baseline", rrl=None, steps=4, **kw):
    torch.manual_seed(0)
    policy = tiny_qwen2(task.tokenizer, seed=0)
    critic = value_model_from_policy(policy) if estimator == "gae" else None
    cfg = TrainConfig(steps=steps, prompts_per_step=8, n_samples=4, max_new_tokens=task.max_new_tokens,
                      estimator=estimator, eval_every=2, eval_size=16, rrl=rrl or RRLConfig(), **kw)
    return Trainer(cfg, task, policy, task.tokenizer, tmp_path / f"{name}.jsonl", critic=critic,
                   ckpt_dir=tmp_path / f"ckpt_{name}")


def read_rows(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def strip_timing(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS and k != "config"} for r in rows]


def test_restarts_happen_and_prefix_is_outside_the_loss_mask(task, tmp_path, monkeypatch):
    trainer = make_trainer(task, tmp_path, rrl=eager_rrl())
    seen = []
    original_update = trainer.update

    def spy(batch, rewards, roll, group_sizes):
        seen.append((batch, roll))
        return original_update(batch, rewards, roll, group_sizes)

    monkeypatch.setattr(trainer, "update", spy)
    trainer.run(resume=False)
    rows = [r for r in read_rows(trainer.out_path) if r["kind"] == "train"]
    assert sum(r["restart_groups"] for r in rows) > 0
    assert rows[-1]["rrl/buffer_size"] > 0

    checked = 0
    for batch, roll in seen:
        for i, prefix in enumerate(roll.prefix_ids):
            cont = int(roll.mask[i].sum())
            ctx = batch.context_len
            # the restart prefix sits right before the continuation, token-exact
            assert batch.input_ids[i, ctx - len(prefix):ctx].tolist() == prefix
            # prefix tokens are context: not trained on; continuation tokens are
            assert not batch.action_mask[i, ctx - 1 - len(prefix):ctx - 1].any()
            assert batch.action_mask[i, ctx - 1:ctx - 1 + cont].all()
            checked += bool(prefix)
    assert checked > 0


def test_train_prefix_puts_the_prefix_in_the_loss_mask(task, tmp_path, monkeypatch):
    trainer = make_trainer(task, tmp_path, rrl=eager_rrl(train_prefix=True), steps=3)
    seen = []
    original_update = trainer.update
    monkeypatch.setattr(trainer, "update", lambda b, r, roll, g: seen.append((b, roll)) or original_update(b, r, roll, g))
    trainer.run(resume=False)
    prefixed = [(b, roll, i, p) for b, roll in seen for i, p in enumerate(roll.prefix_ids) if p]
    assert prefixed
    for batch, _, i, prefix in prefixed:
        ctx = batch.context_len
        assert batch.action_mask[i, ctx - 1 - len(prefix):ctx - 1].all()


def test_reward_function_gets_original_prompt_and_full_response(task, tmp_path, monkeypatch):
    trainer = make_trainer(task, tmp_path, rrl=eager_rrl(), steps=3)
    calls = []
    original = task.reward_func

    def recording(queries, prompts, labels, **kw):
        calls.append((list(queries), list(prompts), list(labels)))
        return original(queries, prompts, labels, **kw)

    monkeypatch.setattr(task, "reward_func", recording)
    seen = []
    original_update = trainer.update
    monkeypatch.setattr(trainer, "update", lambda b, r, roll, g: seen.append((roll, r)) or original_update(b, r, roll, g))
    trainer.run(resume=False)
    rows_per_step = trainer.cfg.prompts_per_step * trainer.cfg.n_samples
    train_calls = [c for c in calls if len(c[0]) == rows_per_step]  # the evals score 16 prompts per call
    assert len(train_calls) == len(seen)
    restarts = 0
    for (queries, prompts, labels), (roll, rewards) in zip(train_calls, seen):
        for i, (q, p) in enumerate(zip(queries, prompts)):
            # the prompt is the original templated prompt, never prompt + prefix
            assert p == task.tokenizer.decode(roll.prompt_ids[i])
            response = q[len(p):]
            full = task.tokenizer.decode(roll.prefix_ids[i] + roll.continuation(i))
            assert response.strip() == full.strip()
            restarts += bool(roll.prefix_ids[i])
        expected = original(queries, prompts, labels)["rewards"]
        assert torch.equal(rewards, expected)
    assert restarts > 0


def test_metrics_are_consistent(task, tmp_path):
    trainer = make_trainer(task, tmp_path, rrl=eager_rrl(), steps=4)
    trainer.run(resume=False)
    rows = read_rows(trainer.out_path)
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    summary = rows[-1]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert [r["step"] for r in evals] == [0, 2, 4]
    assert summary["kind"] == "summary"
    assert summary["tokens_generated"] == sum(r["tokens"] for r in train)
    for r in train:
        assert 0.0 <= r["reward"] <= 1.0
        assert r["rrl/restart_groups"] == r["restart_groups"]
        assert r["rrl/replay_share"] == pytest.approx(r["restart_groups"] / 8)
        assert 0.0 <= r["rrl_s"] <= r["step_s"]
    assert 0.0 <= summary["rrl_overhead_pct"] < 100.0


def test_baseline_arm_has_no_restarts_and_no_rrl_time(task, tmp_path):
    trainer = make_trainer(task, tmp_path, rrl=RRLConfig(enable=False), steps=2)
    trainer.run(resume=False)
    train = [r for r in read_rows(trainer.out_path) if r["kind"] == "train"]
    assert all(r["restart_groups"] == 0 and r["rrl_s"] == 0.0 for r in train)
    assert not any(k.startswith("rrl/") for r in train for k in r)


@pytest.mark.parametrize("estimator", ["reinforce_baseline", "gae"])
def test_resume_reproduces_the_uninterrupted_curve(task, tmp_path, estimator):
    rrl = eager_rrl() if estimator == "reinforce_baseline" else eager_rrl(scorer="critic")
    whole = make_trainer(task, tmp_path, name="whole", estimator=estimator, rrl=rrl, steps=6, ckpt_every=3)
    whole.run(resume=False)

    first = make_trainer(task, tmp_path, name="split", estimator=estimator, rrl=rrl, steps=6, ckpt_every=3)
    assert first.run(resume=False, stop_after=4) == {"stopped_at": 4}  # killed after step 4, checkpoint at 3
    saved_wall = torch.load(first.ckpt_dir / "trainer.pt", weights_only=True)["run"]["wall_s"]
    assert saved_wall > 0
    second = make_trainer(task, tmp_path, name="split", estimator=estimator, rrl=rrl, steps=6, ckpt_every=3)
    summary = second.run(resume=True)
    assert strip_timing(read_rows(second.out_path)) == strip_timing(read_rows(whole.out_path))
    # the resumed run's wall time counts the segment before the checkpoint too
    assert summary["wall_s"] > saved_wall
    for a, b in zip(whole.policy.parameters(), second.policy.parameters()):
        assert torch.equal(a, b)


def test_openrlhf_optimizer_defaults_warm_up_from_zero_and_decay(task, tmp_path):
    trainer = make_trainer(task, tmp_path, steps=5, lr_scheduler="cosine_with_min_lr", lr_warmup_ratio=0.2,
                           min_lr_ratio=0.1, adam_betas=(0.9, 0.95), lr=1e-3)
    assert trainer.opt.param_groups[0]["betas"] == (0.9, 0.95)
    warm = [p.detach().clone() for p in trainer.policy.parameters()]
    trainer.train_step(1)  # the first update runs at rate 0, as OpenRLHF's warm-up does
    assert all(torch.equal(a, b) for a, b in zip(warm, trainer.policy.parameters()))
    trainer.run(resume=False)
    lrs = [r["lr"] for r in read_rows(trainer.out_path) if r["kind"] == "train"]
    assert lrs == pytest.approx([0.0, 1e-3, 1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))),
                                 1e-3 * 0.55, 1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(3 * math.pi / 4)))])


def test_gae_with_a_critic_learns_values_and_harvests_by_value(task, tmp_path):
    trainer = make_trainer(task, tmp_path, estimator="gae", rrl=eager_rrl(scorer="critic"), steps=3)
    trainer.run(resume=False)
    train = [r for r in read_rows(trainer.out_path) if r["kind"] == "train"]
    assert all("value_loss" in r for r in train)
    assert train[-1]["rrl/buffer_size"] > 0
    entries = list(trainer.replay.buffer.entries())
    assert all(e.cut_value is not None for e in entries)


def test_bad_estimator_is_a_one_line_error(task, tmp_path):
    with pytest.raises(ValueError, match="--algo.advantage.estimator"):
        make_trainer(task, tmp_path, estimator="nope")


def test_restart_rows_do_not_enlarge_the_update():
    """Same sequences, same advantages: restart rows (prefix masked) move the policy exactly as far
    as fresh rows whose prefix tokens carry zero advantage; averaging over trained tokens alone
    would scale the restart update up by response / continuation length."""
    from openrlhf_rrl.runner.openrlhf_math import PolicyLoss
    from openrlhf_rrl.runner.trainer import loss_denominator

    torch.manual_seed(0)
    adv = torch.randn(4, 10)
    fresh_mask = torch.ones(4, 10)
    restart_mask = fresh_mask.clone()
    restart_mask[:, :3] = 0  # a 3-token retained prefix: context, not trained
    fresh_adv = adv.clone()
    fresh_adv[:, :3] = 0
    prefixes = [[7, 8, 9]] * 4

    def grad(mask, advantages, denominator):
        logp = torch.randn(4, 10, generator=torch.Generator().manual_seed(1)).requires_grad_()
        loss = PolicyLoss()(logp, logp.detach(), advantages, action_mask=mask, batch_num_tokens=denominator)[0]
        loss.backward()
        return logp.grad

    fresh = grad(fresh_mask, fresh_adv, loss_denominator(fresh_mask, [[]] * 4, "response", False))
    restart = grad(restart_mask, adv, loss_denominator(restart_mask, prefixes, "response", False))
    assert torch.allclose(fresh, restart)
    plain = grad(restart_mask, adv, loss_denominator(restart_mask, prefixes, "trained", False))
    assert torch.allclose(plain, restart * 40 / 28)
    assert loss_denominator(restart_mask, prefixes, "response", True) == 28.0  # --rrl_train_prefix: prefix is trained


def test_length_budget_counts_the_prefix(task, tmp_path, monkeypatch):
    trainer = make_trainer(task, tmp_path, rrl=eager_rrl(), steps=3)
    seen = []
    update = trainer.update
    monkeypatch.setattr(trainer, "update", lambda b, r, roll, g: seen.append(roll) or update(b, r, roll, g))
    trainer.run(resume=False)
    prefixed = 0
    for roll in seen:
        for i, prefix in enumerate(roll.prefix_ids):
            assert len(prefix) + len(roll.continuation(i)) <= trainer.cfg.max_new_tokens
            prefixed += bool(prefix)
    assert prefixed > 0


def test_kl_to_the_warm_model_grows_after_updates(task, tmp_path, monkeypatch):
    trainer = make_trainer(task, tmp_path, rrl=RRLConfig(), steps=3, kl_coef=0.05)
    # an untrained model earns 0 everywhere (no update at all): give the rows some reward to learn from
    gen = torch.Generator().manual_seed(0)
    monkeypatch.setattr(task, "score", lambda items, responses: torch.rand(len(items), generator=gen))
    trainer.run(resume=False)
    kl = [r["kl"] for r in read_rows(trainer.out_path) if r["kind"] == "train"]
    assert kl[0] == pytest.approx(0.0, abs=1e-6)  # the first rollout comes from the reference itself
    assert abs(kl[-1]) > 1e-6


def test_is_correction_weights_hot_rows(task, tmp_path, monkeypatch):
    """Rows sampled at temperature 2 reach PolicyLoss with their sampling log-probs as the rollout
    log-probs; with the correction off they are not passed at all (log-probs at the run's temperature, so the
    hot rows' weights differ from 1)."""
    calls = []
    for flag in (True, False):
        trainer = make_trainer(task, tmp_path, name=f"is{flag}", steps=2, is_correction=flag,
                               rrl=eager_rrl(restart_temperature=2.0, logprob_temperature="run"))
        original = trainer.policy_loss.forward
        monkeypatch.setattr(trainer.policy_loss, "forward",
                            lambda *a, _o=original, _f=flag, **kw: calls.append((_f, kw.get("rollout_log_probs"), a[1]))
                            or _o(*a, **kw))
        trainer.run(resume=False)
    with_is = [(rl, old) for f, rl, old in calls if f]
    assert all(rl is not None for rl, _ in with_is)
    assert any(not torch.allclose(rl, old) for rl, old in with_is)  # hot rows differ from the policy's log-probs
    assert all(rl is None for f, rl, _ in calls if not f)


def test_a_hot_restart_row_is_on_policy_for_the_tempered_policy_with_sampled_logprobs(task, tmp_path, monkeypatch):
    """--rrl_logprob_temperature sampled: a restart row sampled at T=2 gets its policy log-probs at T=2 too, so
    its importance weight (rollout vs old log-probs) is 1 at its first update; with run it is not. auto (the
    default) is sampled here: replay is on and its restarts are hotter than the run."""
    seen = {}
    for mode in ("auto", "sampled", "run"):
        trainer = make_trainer(task, tmp_path, name=f"lt_{mode}", steps=2, is_correction=True,
                               rrl=eager_rrl(restart_temperature=2.0, logprob_temperature=mode))
        original = trainer.update
        monkeypatch.setattr(trainer, "update", lambda batch, rewards, roll, sizes, _o=original, _m=mode:
                            seen.setdefault(_m, []).append((batch, roll)) or _o(batch, rewards, roll, sizes))
        calls = []
        loss = trainer.policy_loss.forward
        monkeypatch.setattr(trainer.policy_loss, "forward",
                            lambda *a, _o=loss, _m=mode, **kw: calls.append((kw["rollout_log_probs"], a[1])) or _o(*a, **kw))
        summary = trainer.run(resume=False)
        assert summary["logprob_temperature"] == ("sampled" if mode == "auto" else mode)  # what auto became
        hot_rows_ratio = []
        for (batch, roll), (rollout_lp, old) in zip(seen[mode], calls):
            hot = torch.tensor([t == 2.0 for t in roll.temperature])
            if hot.any():
                mask = batch.continuation_mask[hot]
                log_ratio = batch.continuation_view(old.cpu() - rollout_lp.cpu())[hot][mask]
                hot_rows_ratio.append(log_ratio.abs().max().item())
        assert hot_rows_ratio, mode  # restarts at T=2 ran
        seen[mode] = max(hot_rows_ratio)
    assert seen["sampled"] < 1e-4 and seen["auto"] < 1e-4  # importance weight exp(0) = 1 on every hot token
    assert seen["run"] > 0.1  # trained as if the untempered policy had sampled them


def test_auto_log_prob_temperature_keeps_run_for_a_hot_baseline(task, tmp_path):
    """Without replay, auto is run: the hot baseline (--rollout.hard_temperature 2) measured better with it."""
    baseline = make_trainer(task, tmp_path, name="hot_base", hard_temperature=2.0,
                            rrl=RRLConfig(enable=False, restart_temperature=2.0))
    assert baseline.logprob_temperature == "run"


def test_process_reward_adds_the_verified_share_and_success_stays_the_outcome(task, tmp_path, monkeypatch):
    """--reward.process_weight: the baseline gets the step checker that replay's checker scorer gets."""
    trainer = make_trainer(task, tmp_path, steps=2, process_reward_weight=0.5)
    seen = []
    original_update = trainer.update

    def spy(batch, rewards, roll, group_sizes):
        seen.append((rewards.clone(), roll.responses()))
        return original_update(batch, rewards, roll, group_sizes)

    monkeypatch.setattr(trainer, "update", spy)
    trainer.run(resume=False)
    rewards, responses = seen[0]
    rows = [it for it in trainer.prompts_for(1) for _ in range(trainer.cfg.n_samples)]
    outcome = task.score(rows, responses).float()
    verified = torch.tensor([min(1.0, task.verified_tokens(it, r) / len(r)) for it, r in zip(rows, responses)])
    assert verified.max() > 0  # the untrained model gets some leading tokens right
    assert torch.allclose(rewards, outcome + 0.5 * verified)
    train = [r for r in read_rows(tmp_path / "run.jsonl") if r["kind"] == "train"]
    # success is the outcome alone: the shaped reward's mean is higher than the success rate it reports
    assert train[0]["reward"] == pytest.approx(rewards.mean().item())
    assert train[0]["fresh_success"] == pytest.approx(outcome.view(-1, trainer.cfg.n_samples).mean().item())


def test_process_reward_needs_a_step_checker(tmp_path):
    from openrlhf_rrl.core.errors import RRLConfigError
    from openrlhf_rrl.runner.cli import parse
    from openrlhf_rrl.tasks import ArithmeticTask

    with pytest.raises(RRLConfigError, match="^--reward.process_weight: --task arithmetic has no step checker"):
        parse(["--task", "arithmetic", "--reward.process_weight", "0.5"])
    with pytest.raises(RRLConfigError, match="^--reward.process_weight: expected a number >= 0, got -1.0"):
        parse(["--reward.process_weight", "-1"])
    arithmetic = ArithmeticTask()
    with pytest.raises(RRLConfigError, match="^--reward.process_weight: needs a step checker"):
        make_trainer(arithmetic, tmp_path, process_reward_weight=0.5)
