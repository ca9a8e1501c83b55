"""Your own task from your own model: `--model PATH` (a local Hugging Face causal LM folder) and
`--warmup_data` (supervised pairs in OpenRLHF's SFT conventions), warmed once, cached, then RL."""

import ast
import json
import re

import pytest
import torch

from openrlhf_rrl.runner import cli
from openrlhf_rrl.runner.export_openrlhf import export_llama
from openrlhf_rrl.runner.models import tiny_qwen2
from openrlhf_rrl.tasks.tokenizer import build_word_tokenizer

OPPOSITES = {"hot": "cold", "up": "down", "big": "small", "fast": "slow", "light": "dark", "wet": "dry",
             "old": "new", "high": "low"}
REWARD = '''import torch


def reward_func(queries, prompts, labels, **kwargs):
    return torch.tensor([1.0 if query[len(prompt):].split()[:1] == [label] else 0.0
                         for query, prompt, label in zip(queries, prompts, labels)])
'''


@pytest.fixture()
def own_task(tmp_path):
    """A user's model folder (a tiny Llama over a word tokenizer, untrained) and the task's files."""
    words = [w for pair in OPPOSITES.items() for w in pair] + ["opposite", "of", ":"]
    tokenizer = build_word_tokenizer(words, split_punctuation=True)
    model = export_llama(tiny_qwen2(tokenizer, layers=3, seed=1), tmp_path / "my_model", tokenizer)  # 3 layers, a Llama
    rows = [{"question": f"opposite of {a} :", "answer": b, "response": b} for a, b in OPPOSITES.items()]
    for name in ("train", "eval", "sft"):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "reward.py").write_text(REWARD)
    return tmp_path, model


def run(tmp_path, model, out, capsys, *extra):
    code = cli.main([
        "--model", str(model), "--warmup_data", str(tmp_path / "sft.jsonl"), "--output_key", "response",
        "--prompt_data", str(tmp_path / "train.jsonl"), "--eval_data", str(tmp_path / "eval.jsonl"),
        "--input_key", "question", "--label_key", "answer", "--reward_func", str(tmp_path / "reward.py"),
        "--warmup.max_steps", "150", "--warmup.learning_rate", "3e-3", "--rollout.max_new_tokens", "3",
        "--train.num_steps", "2", "--seeds", "1", "--workers", "1", "--rollout.batch_size", "4",
        "--rollout.n_samples_per_prompt", "4", "--eval.steps", "1", "--eval_size", "8", "--no_progress",
        "--out", str(out), *extra])
    assert code == 0
    printed = capsys.readouterr().out
    return ast.literal_eval(re.search(r"\[warm-up\] seed 0: (\{.*\})", printed).group(1))


@pytest.mark.slow
def test_a_local_model_is_warmed_on_the_sft_pairs_once_and_rl_starts_from_it(own_task, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RRL_CACHE_DIR", str(tmp_path / "cache"))
    task_dir, model = own_task
    report = run(task_dir, model, tmp_path / "run1", capsys)
    assert report["cached"] is False and report["warmup_steps"] == 150
    assert report["warmup_check_before"] < 0.5 and report["warmup_check"] >= 0.75  # it learned the easy cases
    for arm in ("baseline", "rrl"):
        rows = [json.loads(line) for line in open(tmp_path / "run1" / "metrics" / f"{arm}_s0.jsonl")]
        first_eval = next(r for r in rows if r["kind"] == "eval")
        assert first_eval["step"] == 0 and first_eval["eval/heldout"] == report["warmup_check"]  # RL starts warm
    (cached,) = (tmp_path / "cache" / "warmup").glob("*.pt")  # one warm-up, of the folder's model
    weights = torch.load(cached, weights_only=True)["model"]
    assert "model.layers.2.self_attn.o_proj.bias" in weights  # the 3-layer Llama, not the runner's tiny Qwen2
    again = run(task_dir, model, tmp_path / "run2", capsys)
    assert again["cached"] is True and again["warmup_check"] == report["warmup_check"]


@pytest.mark.parametrize("argv,message", [
    (["--model", "no/such/folder"], "--model: expected tiny, smollm2 or a folder holding a Hugging Face causal LM"),
    (["--warmup_data", "x.jsonl"], "--warmup_data: warm-up pairs go with your own task"),
])
def test_bad_model_or_warmup_flags_stop_with_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
