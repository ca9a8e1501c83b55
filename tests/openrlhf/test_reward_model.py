"""RLHF dialogue's shape end to end on this CPU: the reward is a reward MODEL (a tiny sequence-regression
model built here, --reward.model_name_or_path), PPO's critic starts from it (scripts/train_rlhf_dialogue_rrl.sh's
default), and --rrl_enable restarts from stored prefixes, through the plugin's launcher."""

import json

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("vllm")

# the run's reward model computes in bf16, this test in fp32 (the same bf16 weights): on rewards of order 1
# the gap is bf16's rounding, and a restart scored without its prefix differs by far more
BF16_GAP = 0.05


@pytest.fixture(scope="module")
def reward_model(tiny, tmp_path_factory):
    """The tiny Llama with a value head ("score", OpenRLHF's default prefix), saved as OpenRLHF's
    get_llm_for_sequence_regression loads it, and a success threshold on its scale. The random head is
    turned away from the hidden states' common direction and scaled, so rewards of random responses
    spread around 0 with sd 1 (bf16's rounding is then far below their differences); the threshold is
    their median, so fresh groups hold successes and failures."""
    import random

    import torch
    from openrlhf.models import get_llm_for_sequence_regression
    from transformers import AutoTokenizer

    out = str(tmp_path_factory.mktemp("rm"))
    tokenizer = AutoTokenizer.from_pretrained(tiny["model"])
    rng = random.Random(0)
    prompts = [json.loads(line)["prompt"] for line in open(tiny["prompts"], encoding="utf-8")][:32]
    probes = [chat_ids(tokenizer, p) + [rng.randrange(4, len(tokenizer)) for _ in range(6)] for p in prompts]
    torch.manual_seed(0)
    model = get_llm_for_sequence_regression(tiny["model"], "reward", param_dtype="bf16", init_value_head=True,
                                            attn_implementation="eager").float()
    with torch.no_grad():
        base = getattr(model, model.base_model_prefix)
        last = torch.stack([base(torch.tensor([q])).last_hidden_state[0, -1] for q in probes])
        w, m = model.score.weight[0], last.mean(dim=0)
        w -= (w @ m) / (m @ m) * m
        w /= (last @ w).std()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    scores = sorted(rm_scores(out, probes))
    return out, scores[len(scores) // 2], scores


def chat_ids(tokenizer, prompt):
    """A dataset prompt's token ids as the run sees them (--data.apply_chat_template)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def rm_scores(path, sequences):
    """OpenRLHF's reward model forward, one unpadded sequence at a time: the reward at its last token."""
    import torch
    from openrlhf.models import get_llm_for_sequence_regression

    model = get_llm_for_sequence_regression(path, "reward", param_dtype="bf16", attn_implementation="eager").float().eval()
    with torch.no_grad():
        return [float(model(torch.tensor([s]), attention_mask=torch.ones(1, len(s), dtype=torch.long))[0])
                for s in sequences]


def test_restarts_are_scored_by_the_reward_model_on_the_prompt_and_the_whole_response(tiny, tmp_path, reward_model,
                                                                                       pipeline):
    from transformers import AutoTokenizer

    from openrlhf_rrl.core.buffer import ReplayBuffer

    reward_model, threshold, probe_scores = reward_model
    threshold = float(f"{threshold:.6f}")  # as the flag gives it to the run
    tokenizer = AutoTokenizer.from_pretrained(tiny["model"])
    assert probe_scores[-1] - probe_scores[0] > 1.0  # graded: rewards spread, not two values

    audit, buffer_file = tmp_path / "restarts.jsonl", tmp_path / "rrl_buffer.jsonl"
    argv = pipeline.base_args(tiny, str(tmp_path / "ckpt"), "gae", max_samples=8, extra=[
        "--rrl_cpu_mode", "--rrl_enable", "--rrl_replay_share", "0.5", "--rrl_cut_every", "2",
        "--rrl_hard_threshold", "1.0", "--rrl_success_threshold", str(threshold), "--rrl_buffer_path",
        str(buffer_file), "--ckpt.save_steps", "1", "--ckpt.disable_ds", "--actor.adam.lr", "1e-3",
        "--reward.model_name_or_path", reward_model, "--critic.model_name_or_path", reward_model])
    at = argv.index("--reward.remote_url")
    del argv[at:at + 2]  # the reward model instead of a reward file
    run = pipeline.run_launcher(argv, {"RRL_ROLLOUT_LOG": str(audit)})
    assert run.rc == 0 and len(run.steps) == 3, run.tail()
    assert "--rrl_scorer critic" in run.output or all("critic_loss" in s for s in run.steps)
    assert sum(s["rrl/restart_groups"] for s in run.steps) > 0

    restarts = [json.loads(line) for line in open(audit, encoding="utf-8")]
    assert restarts
    sequences, without_prefix = [], []
    for r in restarts:
        p, stored, seq = len(r["prompt_ids"]), r["stored_prefix_ids"], r["sequence"]
        assert seq[:p] == r["prompt_ids"] and seq[p:p + len(stored)] == stored and len(seq) > p + len(stored)
        # the prompt is the dataset's own, as the chat template renders it
        assert r["prompt_ids"] == chat_ids(tokenizer, r["prompt"])
        sequences.append(seq)
        without_prefix.append(seq[:p] + seq[p + len(stored):])
    # the reward the run trained on is the reward model's score of the prompt + prefix + continuation
    full, cut = rm_scores(reward_model, sequences), rm_scores(reward_model, without_prefix)
    for r, want, other in zip(restarts, full, cut):
        assert r["reward"] == pytest.approx(want, abs=BF16_GAP), (r["reward"], want, other)
    assert max(abs(w - o) for w, o in zip(full, cut)) > 3 * BF16_GAP  # a prefix left out would show

    # the graded reward reached the buffer: its success test is the reward model's score against
    # --rrl_success_threshold, step by step (the audit log holds each step's restart rows in order) and per
    # entry; each entry keeps its source response's score
    counts = [int(s["rrl/restart_samples"]) for s in run.steps]
    assert sum(counts) == len(restarts)
    done = 0
    for step, k in zip(run.steps, counts):
        rows = restarts[done:done + k]
        done += k
        if k:
            assert step["rrl/restart_success"] == pytest.approx(sum(r["reward"] >= threshold for r in rows) / k)
    buffer = ReplayBuffer()
    buffer.load_into(str(buffer_file))
    entries = list(buffer.entries())
    sources = {e.source_reward for e in entries}
    assert len(sources) > 1 and not sources <= {0.0, 1.0}
    for e in entries:  # the restarted ones still there (others retired, or moved their cut)
        rows = [r["reward"] for r in restarts if r["entry_key"] == e.key]
        assert e.continuations == len(rows) and e.successes == sum(x >= threshold for x in rows), (e, rows, threshold)
