"""--rrl_loss_norm in the OpenRLHF launcher, on OpenRLHF's real Experience, replay buffer, loss normaliser,
Actor and PolicyLoss: with "response" a restart row's masked prefix counts in the token-mean's
denominator, so replay does not enlarge the update; "trained" is OpenRLHF's own normaliser.

Stand-ins, each because the real part needs CUDA or a Ray cluster: torch.cuda.current_device and
torch.cuda.synchronize (called by OpenRLHF's buffer and fit() on a GPU machine); the experience
maker's model forwards (fixed log-probs instead of Ray calls to model actors); the trainer object
behind fit() in the one test that only checks which normaliser fit() hands to ppo_train. The
end-to-end GRPO test (test_end_to_end.py) runs the real policy actor with the count."""

import copy
from types import SimpleNamespace

import pytest

pytest.importorskip("vllm")

import torch  # noqa: E402

N = 2  # samples per prompt
PREFIX = [10, 11, 12]


@pytest.fixture(scope="module")
def args():
    return make_args()


def make_args():
    from openrlhf.utils.config import hierarchize

    from openrlhf_rrl.config import RRLConfig
    from openrlhf_rrl.openrlhf.arguments import launcher_parser

    ns = hierarchize(launcher_parser().parse_args([
        "--rrl_enable", "--rollout.n_samples_per_prompt", str(N), "--rollout.micro_batch_size", "2",
        "--algo.advantage.estimator", "group_norm", "--algo.kl.init_coef", "0", "--vllm.num_engines", "1"]))
    ns.rrl = SimpleNamespace(**RRLConfig.from_args(ns).to_dict())  # as install_replay hands it to the actors
    return ns


@pytest.fixture(scope="module")
def tokenizer(tiny):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny["model"])


def response(prompt_ids, response_ids, start, reward, prompt, rrl=None):
    seq = list(prompt_ids) + list(response_ids)
    out = {"prompt": prompt, "label": "l", "observation_tokens": seq, "action_ranges": [(start, len(seq))],
           "rollout_log_probs": [0.0] * len(prompt_ids) + [-0.1 * (i + 1) for i in range(len(response_ids))],
           "reward": reward, "scores": reward, "truncated": False, "extra_logs": {}}
    if rrl is not None:
        out["rrl"] = rrl
    return out


def rollout(args, tokenizer, restarts=True, train_prefix=False):
    """Two groups of N: a fresh one, and a restart from PREFIX (as restart_rollout hands it back: the
    prefix masked unless train_prefix) or, with restarts=False, a second fresh one with the same tokens.
    Real OpenRLHF Experiences from the plugin's generator."""
    from openrlhf_rrl.openrlhf.restart_rollout import as_restart_response
    from openrlhf_rrl.openrlhf.samples_generator import ReplaySamplesGenerator

    generator = ReplaySamplesGenerator(strategy=SimpleNamespace(args=args), prompts_dataloader=None,
                                       eval_dataloader=None, tokenizer=tokenizer, vllm_engines=[], buffer=None)
    eos = tokenizer.eos_token_id
    fresh, other = [5, 6, 24], [7, 8, 9, 24]
    tag = {"restart": True, "key": "rk", "entry_key": "e1", "prefix_ids": PREFIX, "prompt_ids": other,
           "prompt_len": len(other)}
    second = [response(other, PREFIX + [15, 16, eos], len(other), 1.0, "other"),
              response(other, PREFIX + [17, eos], len(other), 0.0, "other")]
    if restarts:
        second = [as_restart_response(r, len(PREFIX), train_prefix, tag) for r in second]
    responses = [response(fresh, [12, 13, 14, eos], 3, 0.25, "fresh"), response(fresh, [14, eos], 3, 0.75, "fresh"),
                 *second]
    return [generator._process_response_into_experience(r, max_len=24) for r in responses]


def make_experiences(args, tokenizer, samples):
    """ReplayExperienceMaker.make_experience_batch as it runs, with the models' forwards (Ray actors in a
    run) replaced by fixed log-probs; OpenRLHF's own advantages."""
    from openrlhf.trainer.ppo_utils.kl_controller import FixedKLController

    from openrlhf_rrl.config import RRLConfig
    from openrlhf_rrl.openrlhf.experience_maker import ReplayExperienceMaker

    class Recorder:
        def observe(self, groups):
            return {}

    maker = ReplayExperienceMaker(None, None, None, None, FixedKLController(0.0), SimpleNamespace(args=args),
                                  tokenizer, buffer=Recorder(), config=RRLConfig.from_args(args))

    def forwards(samples_list):
        for e in samples_list:
            e.action_log_probs = torch.full(e.action_mask.shape, -0.5)
            e.base_action_log_probs, e.values = None, None
            e.kl = torch.zeros(e.action_mask.shape)
        return samples_list

    maker.make_experience = forwards
    return maker.make_experience_batch(samples)


@pytest.fixture
def replay_buffer(monkeypatch):
    """OpenRLHF's NaiveReplayBuffer (it names a cuda device at construction; nothing is moved there)."""
    from openrlhf.trainer.ppo_utils.replay_buffer import NaiveReplayBuffer

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)

    def make(experiences, micro_batch_size=2):
        buffer = NaiveReplayBuffer(micro_batch_size, cpu_offload=True)
        for e in copy.deepcopy(experiences):
            buffer.append(e)
        return torch.utils.data.DataLoader(buffer, batch_size=micro_batch_size, shuffle=False,
                                           collate_fn=buffer.collate_fn)

    return make


def normalised(loader, counting, gas):
    """(micro-batch, loss_batch_info) pairs as ActorPPOTrainer.ppo_train makes them."""
    from openrlhf.utils.loss_utils import iter_grad_accum_global_norm

    from openrlhf_rrl.openrlhf.policy_actor import counting_global_norm

    fn = counting_global_norm(iter_grad_accum_global_norm) if counting else iter_grad_accum_global_norm
    return list(fn(loader, SimpleNamespace(), gas, lambda e: e.action_mask))


def test_the_masked_prefix_travels_with_its_row_and_the_normaliser_counts_it(args, tokenizer, replay_buffer):
    from openrlhf_rrl.openrlhf.experience_maker import MASKED_PREFIX_KEY

    experiences = make_experiences(args, tokenizer, rollout(args, tokenizer))
    per_sample = {i: float(e.info[MASKED_PREFIX_KEY][b]) for e in experiences for b, i in enumerate(e.index)}
    assert per_sample == {0: 0.0, 1: 0.0, 2: 3.0, 3: 3.0}

    # through OpenRLHF's replay buffer (split per sample, merged per micro-batch) to the normaliser
    # per optimizer step (gas micro-batches of 2), OpenRLHF's normaliser is (step's action tokens) / gas
    for gas in (1, 2):
        counted = normalised(replay_buffer(experiences), True, gas)
        own = normalised(replay_buffer(experiences), False, gas)
        assert len(counted) == len(own) == 2
        for step in range(0, 2, gas):
            window = [e for e, _ in own[step:step + gas]]
            actions = sum(float(e.action_mask.sum()) for e in window)
            prefix = sum(float(x) for e in window for x in e.info[MASKED_PREFIX_KEY])
            for k in range(step, step + gas):
                assert float(own[k][1]["batch_num_tokens"]) == pytest.approx(actions / gas)
                assert float(counted[k][1]["batch_num_tokens"]) == pytest.approx((actions + prefix) / gas)
        assert sum(float(x) for e, _ in counted for x in e.info[MASKED_PREFIX_KEY]) == 6.0
        assert [float(i["global_batch_size"]) for _, i in counted] == [float(i["global_batch_size"]) for _, i in own]
        assert all(isinstance(e.info[MASKED_PREFIX_KEY], list) for e, _ in counted)  # the buffer's merged form


def test_without_restarts_the_counting_normaliser_is_openrlhfs_own(args, tokenizer, replay_buffer):
    from openrlhf_rrl.openrlhf.experience_maker import MASKED_PREFIX_KEY

    experiences = make_experiences(args, tokenizer, rollout(args, tokenizer, restarts=False))
    assert all(float(x) == 0.0 for e in experiences for x in e.info[MASKED_PREFIX_KEY])
    counted, own = normalised(replay_buffer(experiences), True, 2), normalised(replay_buffer(experiences), False, 2)
    assert [(float(a["batch_num_tokens"]), float(a["global_batch_size"])) for _, a in counted] == \
        [(float(b["batch_num_tokens"]), float(b["global_batch_size"])) for _, b in own]


def test_with_train_prefix_nothing_is_masked_so_nothing_is_added(args, tokenizer):
    from openrlhf_rrl.openrlhf.experience_maker import MASKED_PREFIX_KEY

    experiences = make_experiences(args, tokenizer, rollout(args, tokenizer, train_prefix=True))
    assert all(float(x) == 0.0 for e in experiences for x in e.info[MASKED_PREFIX_KEY])


def grads(actor, pairs):
    """Accumulated gradient of OpenRLHF's PolicyLoss (token-mean) over one optimizer step's micro-batches."""
    from openrlhf.models.loss import PolicyLoss

    actor.zero_grad(set_to_none=True)
    loss_fn = PolicyLoss()
    for e, info in pairs:
        logp = actor(e.sequences, e.action_mask, attention_mask=e.attention_mask)
        loss = loss_fn(logp, logp.detach(), e.advantages, action_mask=e.action_mask, **info)[0]
        loss.backward()
    return torch.cat([p.grad.flatten() for p in actor.parameters() if p.grad is not None]).clone()


def test_response_norm_a_restart_row_moves_the_policy_as_its_full_response_with_zero_advantage_on_the_prefix(
        args, tokenizer, tiny, replay_buffer):
    """The definition of "replay does not enlarge the update": the restart batch (prefix masked, counted
    by the normaliser) gives the same gradient as the same sequences with the prefix tokens trained at
    zero advantage under OpenRLHF's own normaliser; OpenRLHF's own on the restart batch ("trained")
    scales it by (action + prefix tokens) / action tokens."""
    from openrlhf.models import Actor

    from openrlhf_rrl.openrlhf.experience_maker import MASKED_PREFIX_KEY

    torch.manual_seed(0)
    actor = Actor(tiny["model"], attn_implementation="eager").float()  # OpenRLHF loads bf16; fp32 to compare
    experiences = make_experiences(args, tokenizer, rollout(args, tokenizer))
    full = copy.deepcopy(experiences)
    for e in full:
        for b, n in enumerate(e.info.pop(MASKED_PREFIX_KEY).tolist()):
            if n:
                start = int(e.action_mask[b].float().argmax()) - int(n)  # the prefix sits just before the continuation
                e.action_mask[b, start:start + int(n)] = True
                e.advantages[b, start:start + int(n)] = 0.0
    assert any(float(e.advantages.abs().sum()) > 0 for e in experiences)

    restart = grads(actor, normalised(replay_buffer(experiences), True, 2))
    same_as_full = grads(actor, normalised(replay_buffer(full), False, 2))
    trained = grads(actor, normalised(replay_buffer(experiences), False, 2))
    assert restart.abs().sum() > 0
    assert torch.allclose(restart, same_as_full, atol=1e-6, rtol=1e-5)
    actions = sum(float(e.action_mask.sum()) for e in experiences)
    assert torch.allclose(trained, restart * (actions + 6) / actions, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("option,counts", [({}, True), ({"loss_norm": "trained"}, False), ({"enable": False}, False),
                                           ({"agg": "seq-mean-token-mean"}, False)])
def test_fit_counts_the_prefix_only_with_response_and_restores_openrlhfs_normaliser(args, monkeypatch, option,
                                                                                       counts):
    from openrlhf.trainer.ray import ppo_actor
    from openrlhf.utils.loss_utils import iter_grad_accum_global_norm

    from openrlhf_rrl.openrlhf.policy_actor import ReplayPolicyModelActor

    run_args = copy.deepcopy(args)
    run_args.rrl.loss_norm = option.get("loss_norm", "response")
    run_args.rrl.enable = option.get("enable", True)
    run_args.actor.loss_agg_mode = option.get("agg", "token-mean")
    seen = []
    actor = ReplayPolicyModelActor.__new__(ReplayPolicyModelActor)  # fit() alone: no model, no Ray
    actor.strategy = SimpleNamespace(args=run_args)
    actor.actor = SimpleNamespace(train=lambda: None)
    actor.trainer = SimpleNamespace(ppo_train=lambda kl_ctl: seen.append(ppo_actor.iter_grad_accum_global_norm) or {},
                                    replay_buffer=SimpleNamespace(clear=lambda: None))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    assert actor.fit(0.0) == {}
    assert (seen[0] is not iter_grad_accum_global_norm) == counts
    assert ppo_actor.iter_grad_accum_global_norm is iter_grad_accum_global_norm


@pytest.mark.parametrize("enable", [True, False])
def test_the_launcher_swaps_the_policy_actor_only_with_rrl_enable_and_restores_it(monkeypatch, enable):
    from openrlhf.trainer.ray import ppo_actor

    from openrlhf_rrl.openrlhf import arguments
    from openrlhf_rrl.openrlhf.launch import main
    from openrlhf_rrl.openrlhf.policy_actor import ReplayPolicyModelActor

    original = ppo_actor.PolicyModelActor
    seen = []
    monkeypatch.setattr(arguments, "run_openrlhf_main", lambda namespace: seen.append(ppo_actor.PolicyModelActor))
    assert main(["--vllm.num_engines", "1", *(["--rrl_enable"] if enable else [])]) == 0
    if enable:
        assert seen[0].__ray_actor_class__ is ReplayPolicyModelActor
        assert seen[0]._default_options == original._default_options == {"num_gpus": 1}
    else:
        assert seen[0] is original
    assert ppo_actor.PolicyModelActor is original


def test_dynamic_batching_needs_trained_norm(args):
    from openrlhf.utils.config import hierarchize

    from openrlhf_rrl.core.errors import RRLConfigError
    from openrlhf_rrl.openrlhf.arguments import launcher_parser
    from openrlhf_rrl.openrlhf.startup_check import resolve_rrl_config

    parser = launcher_parser()
    argv = ["--vllm.num_engines", "1", "--rrl_enable", "--train.dynamic_batch_enable"]
    with pytest.raises(RRLConfigError, match=r"^--rrl_loss_norm: response is not supported with "
                                             r"--train.dynamic_batch_enable [^\n]*$"):
        resolve_rrl_config(hierarchize(parser.parse_args(argv)), False)
    c = resolve_rrl_config(hierarchize(parser.parse_args(argv + ["--rrl.loss_norm", "trained"])), False)
    assert c.loss_norm == "trained"


def test_response_norm_gives_the_same_gradient_on_two_data_parallel_ranks_as_on_one(tiny, tmp_path):
    """The batch of a fresh and a restart group, on 1 rank (2 micro-batches) and on 2 (one each, over gloo:
    the fresh group on rank 0, the restart on rank 1, so each rank alone counts different tokens):
    the step's gradient is the same, because the prefix count is all-reduced with OpenRLHF's own."""
    import os
    import subprocess
    import sys

    worker = os.path.join(os.path.dirname(__file__), "loss_norm_rank.py")

    def step_gradient(world, norm):
        out, init = tmp_path / f"grad{world}{norm}.pt", tmp_path / f"init{world}{norm}"
        procs = [subprocess.Popen([sys.executable, worker, str(r), str(world), str(init), tiny["model"], str(out), norm],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(world)]
        logs = [p.communicate(timeout=600)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
        return torch.load(out)

    one, two = step_gradient(1, "counting"), step_gradient(2, "counting")
    assert one.abs().sum() > 0
    assert torch.allclose(two, one, atol=1e-6, rtol=1e-5)
    # OpenRLHF's own normaliser is rank-invariant too, and counts fewer tokens: a larger step
    own = step_gradient(2, "own")
    assert torch.allclose(own, step_gradient(1, "own"), atol=1e-6, rtol=1e-5)
    assert own.norm() > one.norm() * 1.05
