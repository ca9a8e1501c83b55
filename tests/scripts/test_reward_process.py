"""scripts/reward_process.py: the step checker given to a baseline as a dense process reward, loaded the way
OpenRLHF loads a --reward.remote_url .py file, on the tiny model's tokenizer and the tiny task's reward."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

PATH = Path(__file__).resolve().parents[2] / "scripts" / "reward_process.py"
CHECKER = '''
def step_checker(prompt_ids, response_ids, label):
    """How many leading response tokens spell the label (the tiny task's answer), as token ids."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    want = tok(label, add_special_tokens=False)["input_ids"]
    n = 0
    for got, expected in zip(response_ids, want):
        if got != expected:
            break
        n += 1
    return n
'''


@pytest.fixture
def reward_process(tmp_path, monkeypatch):
    from openrlhf_rrl.cpu.tiny_assets import write_tiny_assets

    tiny = write_tiny_assets(str(tmp_path / "tiny"), n_prompts=4)
    checker = tmp_path / "checker.py"
    checker.write_text(f"TOKENIZER = {tiny['model']!r}\n" + CHECKER)
    monkeypatch.setenv("RRL_OUTCOME_REWARD", tiny["reward"])
    monkeypatch.setenv("RRL_STEP_CHECKER", str(checker))
    monkeypatch.setenv("RRL_TOKENIZER", tiny["model"])
    monkeypatch.setenv("RRL_PROCESS_WEIGHT", "0.5")
    spec = importlib.util.spec_from_file_location("reward_func", PATH)  # as OpenRLHF's executor does
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reward_is_outcome_plus_weight_times_verified_share_and_scores_stay_the_outcome(reward_process):
    prompt, label = "1 +2 *3 =", "3 4"
    responses = [" 3 4 <eos>", " 3 9 <eos>", " 7 7 <eos>"]
    out = reward_process.reward_func([prompt + r for r in responses], [prompt] * 3, [label] * 3)
    outcome = reward_process._parts()["outcome"]([prompt + r for r in responses], [prompt] * 3, [label] * 3)
    share = out["extra_logs"]["verified_share"]
    assert share[0] > share[1] > share[2] == 0.0  # the whole answer, its first value, nothing
    assert torch.allclose(out["rewards"], outcome["rewards"] + 0.5 * share)
    assert torch.equal(out["scores"], outcome["scores"])  # filtering and success read the outcome alone
    assert "exact" in out["extra_logs"]  # the outcome file's own logs pass through


def test_a_missing_setting_names_itself(reward_process, monkeypatch):
    reward_process._loaded.clear()
    monkeypatch.delenv("RRL_STEP_CHECKER")
    with pytest.raises(RuntimeError, match="^reward_process.py: set RRL_STEP_CHECKER"):
        reward_process.reward_func(["q"], ["q"], ["l"])


def test_the_eval_sets_prompts_get_the_outcome_alone(reward_process, tmp_path, monkeypatch):
    """OpenRLHF's eval reports the mean reward: with RRL_PROCESS_EVAL_DATASET it stays a success rate."""
    import json

    prompt, label, response = "1 +2 *3 =", "3 4", " 3 9 <eos>"  # a failure with a verified first value
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"prompt": [{"role": "user", "content": prompt}], "label": label}) + "\n")
    monkeypatch.setenv("RRL_PROCESS_EVAL_DATASET", str(evals))
    reward_process._loaded.clear()
    templated = f"<user> {prompt} <assistant>"  # the eval text inside OpenRLHF's chat-templated prompt
    other = "2 +2 *3 ="  # a training prompt: same label, another text
    queries, prompts = [templated + response, other + response], [templated, other]
    out = reward_process.reward_func(queries, prompts, [label] * 2)
    outcome = reward_process._parts()["outcome"](queries, prompts, [label] * 2)["rewards"]
    assert out["extra_logs"]["verified_share"].tolist() == [0.0, pytest.approx(1 / 3)]  # 1 of 3 tokens verified
    assert out["rewards"][0] == outcome[0]  # the eval prompt: the outcome alone
    assert out["rewards"][1].item() == pytest.approx(outcome[1].item() + 0.5 / 3)  # a training prompt: shaped

    evals.write_text('{"prompt": "1 =", "answer": "1"}\n')
    reward_process._loaded.clear()
    with pytest.raises(RuntimeError, match="^reward_process.py: RRL_PROCESS_EVAL_DATASET=.* line 1: expected .*'label'"):
        reward_process.reward_func(["q"], ["q"], ["l"])
    monkeypatch.setenv("RRL_PROCESS_EVAL_LABEL_KEY", "answer")  # the dataset's own key, as --data.label_key
    reward_process._loaded.clear()
    assert reward_process._parts()["eval"] == {"1": ["1 ="]}
