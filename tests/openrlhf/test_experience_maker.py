"""The replay-aware generator and experience maker on OpenRLHF's real Experience and advantage code:
what the buffer is told about each sample, and that a restart's prefix stays out of the loss."""

from types import SimpleNamespace

import pytest

pytest.importorskip("vllm")

import torch  # noqa: E402

N = 2  # samples per prompt


@pytest.fixture(scope="module")
def args():
    from openrlhf.utils.config import hierarchize

    from openrlhf_rrl.openrlhf.arguments import launcher_parser

    ns = launcher_parser().parse_args([
        "--rrl_enable", "--rollout.n_samples_per_prompt", str(N), "--rollout.micro_batch_size", "2",
        "--algo.advantage.estimator", "gae", "--algo.kl.init_coef", "0", "--vllm.num_engines", "1"])
    return hierarchize(ns)


@pytest.fixture(scope="module")
def tokenizer(tiny):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny["model"])


class Recorder:
    def __init__(self):
        self.groups = None

    def observe(self, groups):
        self.groups = groups
        return {"rrl/step": 1}


def response(prompt_ids, response_ids, start, reward, prompt="p", label="l", rrl=None):
    seq = list(prompt_ids) + list(response_ids)
    out = {"prompt": prompt, "label": label, "observation_tokens": seq, "action_ranges": [(start, len(seq))],
           "rollout_log_probs": [0.0] * len(prompt_ids) + [-0.1 * (i + 1) for i in range(len(response_ids))],
           "reward": reward, "scores": reward, "truncated": False, "extra_logs": {}}
    if rrl is not None:
        out["rrl"] = rrl
    return out


ESTIMATORS = ["gae", "reinforce", "rloo", "reinforce_baseline", "group_norm", "dr_grpo"]


@pytest.mark.parametrize("estimator, skipped", [(e, False) for e in ESTIMATORS] + [("group_norm", True)])
def test_groups_carry_tokens_rewards_values_and_the_masked_prefix(args, tokenizer, estimator, skipped):
    """skipped: the fresh group is a restart that restart_rollout skipped (its prompt tokenized to other ids
    than the stored ones), run as a fresh group and tagged with the entry to retire."""
    import copy

    from openrlhf.trainer.ppo_utils.kl_controller import FixedKLController

    args = copy.deepcopy(args)
    args.algo.advantage.estimator = estimator

    from openrlhf_rrl.config import RRLConfig
    from openrlhf_rrl.openrlhf.experience_maker import ReplayExperienceMaker
    from openrlhf_rrl.openrlhf.samples_generator import ReplaySamplesGenerator, prompt_key

    strategy = SimpleNamespace(args=args)
    generator = ReplaySamplesGenerator(strategy=strategy, prompts_dataloader=None, eval_dataloader=None,
                                       tokenizer=tokenizer, vllm_engines=[], buffer=None)
    eos = tokenizer.eos_token_id
    fresh_prompt, restart_prompt = [5, 6, 24], [7, 8, 9, 24]
    prefix = [10, 11]
    tag = {"restart": True, "key": "rk", "entry_key": "entry1", "prefix_ids": prefix, "prompt_ids": restart_prompt,
           "prompt_len": len(restart_prompt), "prefix_len": len(prefix)}
    skip_tag = {"restart": False, "key": prompt_key("fresh text"), "entry_key": None, "prompt_len": 3, "prefix_len": 0,
                "prompt_mismatch_entry": "gone"} if skipped else None
    responses = [
        response(fresh_prompt, [12, 13, eos], 3, 0.25, prompt="fresh text", rrl=skip_tag),
        response(fresh_prompt, [14, eos], 3, 0.75, prompt="fresh text", rrl=skip_tag),
        # restart responses, as restart_rollout hands them back: the action range starts after the prefix
        response(restart_prompt, prefix + [15, eos], 4 + len(prefix), 1.0, prompt="restart text", rrl=tag),
        response(restart_prompt, prefix + [16, 17, 18], 4 + len(prefix), 0.0, prompt="restart text", rrl=tag),
    ]
    samples = [generator._process_response_into_experience(r, max_len=24) for r in responses]
    assert samples[0].rrl["key"] == prompt_key("fresh text") and samples[0].rrl["prompt_len"] == 3
    assert samples[2].rrl["entry_key"] == "entry1"

    recorder = Recorder()
    config = RRLConfig.from_args(args)
    config.scorer, config.hard_threshold = "agree", 0.6  # both groups are ones cuts can come from: sent whole
    maker = ReplayExperienceMaker(None, None, None, None, FixedKLController(0.0), strategy, tokenizer,
                                  buffer=recorder, config=config)
    if estimator == "gae":
        maker.critic_model_group = object()  # values below stand in for the critic's forward
    split = maker.split_rollout_samples(samples)
    for e in split:  # what make_experience() attaches after the model forwards
        width = e.action_mask.shape[1]
        e.action_log_probs = torch.full((len(e.index), width), -0.5)
        e.values = torch.arange(width, dtype=torch.float32).repeat(len(e.index), 1) * e.action_mask
        e.kl = torch.zeros_like(e.action_log_probs)
        e.base_action_log_probs = None
        e.rewards = e.rewards if e.rewards is not None else e.info["reward"]
    experiences = maker.compute_advantages_and_returns(split)  # OpenRLHF's own GAE and normalisation
    groups, glue = maker.groups(samples, experiences)

    assert len(groups) == 2
    fresh, restart = groups
    assert fresh["plan"]["entry_key"] is None and fresh["text"] == "fresh text"
    assert fresh.get("mismatched_entry_key") == ("gone" if skipped else None)
    assert glue["rrl/prompt_mismatch"] == (1.0 if skipped else 0.0)
    assert restart["plan"]["entry_key"] == "entry1" and restart["plan"]["prefix_ids"] == prefix
    t = restart["trajectories"][0]
    assert list(t["prompt_ids"]) == restart_prompt and list(t["response_ids"]) == prefix + [15, eos]
    assert t["prefix_len"] == 2 and t["reward"] == 1.0 and t["success"] and t["eos"]
    assert t["logprobs"] == pytest.approx([-0.1, -0.2, -0.3, -0.4])  # the rollout log-probs, per response token
    f = fresh["trajectories"][1]
    if estimator == "gae":
        # critic value of the state after c response tokens = values[prompt_len - 1 + c]; 0 where masked
        assert list(t["values"][:2]) == [0.0, 0.0] and list(t["values"][2:]) == [5.0, 6.0]
        assert list(f["values"]) == [2.0, 3.0]
    else:
        assert t["values"] is None and f["values"] is None
    assert f["reward"] == 0.75 and f["success"]  # --rrl_success_threshold 0.5
    assert not fresh["trajectories"][0]["success"]

    # the prefix is outside the action mask, so OpenRLHF's own policy loss sends it no gradient
    from openrlhf.models.loss import PolicyLoss

    for e in experiences:
        log_probs = e.action_log_probs.clone().requires_grad_(True)
        loss = PolicyLoss()(log_probs, e.action_log_probs, e.advantages, action_mask=e.action_mask)
        loss = loss[0] if isinstance(loss, tuple) else loss
        loss.backward()
        for b, i in enumerate(e.index):
            if i >= 2:  # restart samples: the prefix sits at action positions 3, 4 (tokens 4, 5)
                assert e.action_mask[b, 3:3 + len(prefix)].sum() == 0
                assert torch.all(log_probs.grad[b, 3:3 + len(prefix)] == 0)
                assert torch.any(log_probs.grad[b, 3 + len(prefix):] != 0)
    assert glue["rrl/restart_samples"] == 2.0 and glue["rrl/prefix_mismatch"] == 0.0
    assert glue["rrl/prefix_in_loss_frac"] == 0.0 and glue["rrl/prefix_tokens_mean"] == 2.0


def test_a_restart_rows_length_counts_its_prefix_for_the_overlong_penalty(args, tokenizer):
    """DAPO's overlong penalty (OpenRLHF's own apply_overlong_penalty) reads Experience.response_length: a
    restart row of prefix + continuation is as long, and as penalised, as a fresh row of that length."""
    from openrlhf.trainer.ppo_utils.length_penalty import apply_overlong_penalty

    from openrlhf_rrl.openrlhf.samples_generator import ReplaySamplesGenerator

    generator = ReplaySamplesGenerator(strategy=SimpleNamespace(args=args), prompts_dataloader=None,
                                       eval_dataloader=None, tokenizer=tokenizer, vllm_engines=[], buffer=None)
    eos = tokenizer.eos_token_id
    prompt, prefix = [7, 8, 9, 24], [10, 11, 12]
    tag = {"restart": True, "key": "rk", "entry_key": "e", "prefix_ids": prefix, "prompt_ids": prompt,
           "prompt_len": len(prompt), "prefix_len": len(prefix)}
    fresh = response(prompt, prefix + [15, 16, eos], len(prompt), 1.0, prompt="p")
    restart = response(prompt, prefix + [15, 16, eos], len(prompt) + len(prefix), 1.0, prompt="p", rrl=tag)
    samples = [generator._process_response_into_experience(r, max_len=24) for r in (fresh, restart)]
    assert [int(s.response_length) for s in samples] == [6, 6]
    apply_overlong_penalty(samples, max_new_tokens=8, overlong_buffer_len=4)  # penalised from 4 tokens on
    assert [float(s.rewards) for s in samples] == pytest.approx([0.5, 0.5])
    generator.train_prefix = True  # a trained prefix is inside the action range already: counted once
    trained = response(prompt, prefix + [15, 16, eos], len(prompt), 1.0, prompt="p", rrl=tag)
    assert int(generator._process_response_into_experience(trained, max_len=24).response_length) == 6


def test_groups_the_dynamic_filter_dropped_are_observed_from_their_raw_samples(args, tokenizer):
    """A filtered group never reaches OpenRLHF's experience maker: the buffer reads its token ids, reward and
    vLLM's log-probs from the raw samples; it has no critic values (the critic scorer skips it)."""
    import copy

    from openrlhf.trainer.ppo_utils.kl_controller import FixedKLController

    from openrlhf_rrl.config import RRLConfig
    from openrlhf_rrl.openrlhf.experience_maker import ReplayExperienceMaker
    from openrlhf_rrl.openrlhf.samples_generator import FILTERED_ATTR, ReplaySamplesGenerator

    args = copy.deepcopy(args)
    strategy = SimpleNamespace(args=args)
    generator = ReplaySamplesGenerator(strategy=strategy, prompts_dataloader=None, eval_dataloader=None,
                                       tokenizer=tokenizer, vllm_engines=[], buffer=None)
    eos = tokenizer.eos_token_id
    tag = {"restart": True, "key": "rk", "entry_key": "entry1", "prefix_ids": [10, 11], "prompt_ids": [7, 8, 24],
           "prompt_len": 3, "prefix_len": 2}
    trained = [generator._process_response_into_experience(response([5, 6, 24], r, 3, w, prompt="kept"), max_len=24)
               for r, w in (([12, eos], 1.0), ([13, eos], 0.0))]
    filtered = [generator._process_response_into_experience(r, max_len=24) for r in (
        response([5, 6, 24], [14, 15, eos], 3, 0.0, prompt="all fail"),
        response([5, 6, 24], [16, eos], 3, 0.0, prompt="all fail"),
        response([7, 8, 24], [10, 11, 17, eos], 5, 1.0, prompt="restart", rrl=tag),
        response([7, 8, 24], [10, 11, 18, eos], 5, 1.0, prompt="restart", rrl=tag))]
    setattr(trained[0], FILTERED_ATTR, filtered)

    recorder = Recorder()
    config = RRLConfig.from_args(args)
    config.scorer, config.hard_threshold = "agree", 0.6  # the kept and the all-fail group are sent whole
    maker = ReplayExperienceMaker(None, None, None, None, FixedKLController(0.0), strategy, tokenizer,
                                  buffer=recorder, config=config)
    maker.critic_model_group = object()  # a PPO run: trained rows have values, filtered ones cannot
    split = maker.split_rollout_samples(trained)
    for e in split:
        width = e.action_mask.shape[1]
        e.action_log_probs = torch.full((len(e.index), width), -0.5)
        e.values = torch.ones(len(e.index), width)
    groups, glue = maker.groups(trained, split, getattr(trained[0], FILTERED_ATTR))

    assert [g["text"] for g in groups] == ["kept", "all fail", "restart"]
    assert glue["rrl/filtered_groups"] == 2.0
    fail = groups[1]["trajectories"]
    assert [list(t["response_ids"]) for t in fail] == [[14, 15, eos], [16, eos]]
    assert [t["success"] for t in fail] == [False, False] and fail[0]["values"] is None
    assert fail[0]["logprobs"] == pytest.approx([-0.1, -0.2, -0.3])  # vLLM's, per response token
    assert groups[1]["plan"]["entry_key"] is None and groups[2]["plan"]["entry_key"] == "entry1"
    # an all-pass restart group: its outcomes alone, no tokens (no cut can come from it)
    assert [(t["reward"], t["success"], len(t["response_ids"])) for t in groups[2]["trajectories"]] == [(1.0, True, 0)] * 2
    assert glue["rrl/restart_samples"] == 2.0 and glue["rrl/prefix_mismatch"] == 0.0
    assert groups[0]["trajectories"][0]["values"] is not None
