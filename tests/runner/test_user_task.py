"""Your own task: JSONL prompts + an OpenRLHF-style reward file, end to end on the tiny model."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from openrlhf_rrl.config import RRLConfig
from openrlhf_rrl.core.errors import RRLConfigError
from openrlhf_rrl.runner.cli import main
from openrlhf_rrl.runner.models import tiny_qwen2
from openrlhf_rrl.runner.trainer import TrainConfig, Trainer
from openrlhf_rrl.runner.user_task import UserTask

# Written the way users write OpenRLHF reward files: the response is query[len(prompt):].
REWARD_FILE = textwrap.dedent('''
    import torch

    def reward_func(queries, prompts, labels, **kwargs):
        rewards = []
        for query, prompt, label in zip(queries, prompts, labels):
            response = query[len(prompt):]
            words = response.replace("<eos>", " ").split()
            rewards.append(1.0 if words[:len(label.split())] == label.split() else 0.0)
        return {"rewards": torch.tensor(rewards), "scores": torch.tensor(rewards), "extra_logs": {}}
''')


@pytest.fixture
def files(tmp_path):
    rows = [{"question": f"repeat {a} {b} {c} now", "answer": f"{a} {b} {c}"}
            for a in "xyz" for b in "pq" for c in "mn"]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows[:-2]))
    evals = tmp_path / "eval.jsonl"
    evals.write_text("".join(json.dumps(r) + "\n" for r in rows[-2:]))
    reward = tmp_path / "reward.py"
    reward.write_text(REWARD_FILE)
    return data, evals, reward


def test_restarts_are_scored_on_original_prompt_and_prefix_plus_continuation(files, tmp_path, monkeypatch):
    data, evals, reward = files
    task = UserTask(str(data), str(reward), input_key="question", label_key="answer", eval_data=str(evals),
                    max_new_tokens=6)
    rrl = RRLConfig(enable=True, scorer="reward", hard_threshold=1.0, cut_every=1, replay_share=0.5,
                    admit_per_step=64, min_prefix_frac=0.0, max_prefix_frac=1.0)
    cfg = TrainConfig(steps=4, prompts_per_step=6, n_samples=4, max_new_tokens=6, eval_every=2, eval_size=8, rrl=rrl)
    torch.manual_seed(0)
    trainer = Trainer(cfg, task, tiny_qwen2(task.tokenizer), task.tokenizer, tmp_path / "m.jsonl")
    calls = []
    original = task.reward_func
    monkeypatch.setattr(task, "reward_func", lambda q, p, l, **kw: calls.append((q, p)) or original(q, p, l, **kw))
    rolls = []
    update = trainer.update
    monkeypatch.setattr(trainer, "update", lambda b, r, roll, g: rolls.append((roll, r)) or update(b, r, roll, g))
    trainer.run(resume=False)

    train_calls = [c for c in calls if len(c[0]) == 24]
    assert len(train_calls) == len(rolls) == 4
    restarted = 0
    for (queries, prompts), (roll, rewards) in zip(train_calls, rolls):
        for i, (q, p) in enumerate(zip(queries, prompts)):
            assert p == task.tokenizer.decode(roll.prompt_ids[i])  # the original prompt, no prefix
            full = task.tokenizer.decode(roll.prefix_ids[i] + roll.continuation(i))
            assert q[len(p):].strip() == full.strip()  # what the user's function judges
            restarted += bool(roll.prefix_ids[i])
        assert torch.equal(rewards, original(queries, prompts, _labels(task, roll))["rewards"])
    assert restarted > 0


def _labels(task, roll):
    by_prompt = {tuple(task.encode_prompt(it)): it.label for it in task.train_items + task.eval_items}
    return [by_prompt[tuple(p)] for p in roll.prompt_ids]


@pytest.mark.parametrize("content, flag", [
    ("{not json\n", "--prompt_data"),
    ('{"other": 1}\n', "--prompt_data"),
])
def test_bad_data_is_a_one_line_error(tmp_path, files, content, flag):
    _, _, reward = files
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    with pytest.raises(RRLConfigError, match=flag) as exc:
        UserTask(str(bad), str(reward), input_key="question", label_key="answer")
    assert "\n" not in str(exc.value)


def test_bad_reward_file_is_a_one_line_error(tmp_path, files):
    data, _, _ = files
    broken = tmp_path / "broken.py"
    broken.write_text("def something_else():\n    pass\n")
    with pytest.raises(RRLConfigError, match="--reward_func"):
        UserTask(str(data), str(broken), input_key="question", label_key="answer")
    with pytest.raises(RRLConfigError, match="--reward_func"):
        UserTask(str(data), str(tmp_path / "missing.py"), input_key="question", label_key="answer")


def test_cli_needs_both_data_and_reward(capsys, files):
    data, _, _ = files
    assert main(["--prompt_data", str(data)]) == 2
    assert "--reward_func" in capsys.readouterr().err


@pytest.mark.slow
def test_user_task_through_rrl_demo(tmp_path, files):
    data, evals, reward = files
    out = tmp_path / "out"
    code = main(["--prompt_data", str(data), "--input_key", "question", "--label_key", "answer",
                 "--reward_func", str(reward), "--eval_data", str(evals), "--rollout.max_new_tokens", "6",
                 "--train.num_steps", "2", "--seeds", "1", "--eval.steps", "1", "--no_progress", "--workers", "2",
                 "--rollout.batch_size", "4", "--rollout.n_samples_per_prompt", "2", "--out", str(out)])
    assert code == 0
    assert "eval/heldout" in (out / "results.md").read_text()
