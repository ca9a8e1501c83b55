"""Outcome reward + a step checker as a dense process reward, for OpenRLHF (`--reward.remote_url`).

The fair baseline for replay that cuts with a step checker (`--rrl_scorer checker`): the baseline run
(plain OpenRLHF, or the launcher without `--rrl_enable`) gets the same checker, as reward:

    reward = outcome + RRL_PROCESS_WEIGHT x (verified response tokens / response tokens)

Set in the environment of the Ray workers (export before `ray start`, or before the launcher when it
starts Ray itself):
  RRL_OUTCOME_REWARD   your outcome reward file (OpenRLHF's reward_func(queries, prompts, labels));
  RRL_STEP_CHECKER     the step checker you give replay (a .py file with step_checker(prompt_ids,
                       response_ids, label), or a served checker's http(s) URL), as --rrl_step_checker;
  RRL_TOKENIZER        the actor's model path: the checker reads token ids, so prompt and response
                       text are tokenized again (an id can differ from the sampled one where the
                       tokenizer merges differently; the checker then sees what the text says);
  RRL_PROCESS_WEIGHT   the weight (default 0.5); tune it like the learning rate, over a few values;
  RRL_PROCESS_EVAL_DATASET
                       optional, your --eval.dataset JSONL: its prompts get the outcome alone.
                       OpenRLHF's eval reports the mean *reward* (eval_*_pass1), so without this a
                       process reward inflates the eval by up to the weight and it is no longer a
                       success rate. Its keys: RRL_PROCESS_EVAL_INPUT_KEY (default prompt) and
                       RRL_PROCESS_EVAL_LABEL_KEY (default label), as your --data.input_key and
                       --data.label_key.

`scores` (dynamic filtering, and what --rrl_success_threshold reads) stay the outcome's: the
process reward shapes the advantages only, it never turns a failure into a success.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch

_loaded: dict = {}


def _setting(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise RuntimeError(f"reward_process.py: set {name} (see the file's docstring)")
    return value


def _parts():
    """The outcome reward, the step checker and the tokenizer, loaded once per process."""
    if not _loaded:
        from transformers import AutoTokenizer

        from openrlhf_rrl.core.step_checker import load_step_checker

        path = _setting("RRL_OUTCOME_REWARD")
        spec = importlib.util.spec_from_file_location("rrl_outcome_reward", path)
        if spec is None or spec.loader is None:
            raise RuntimeError(f"reward_process.py: RRL_OUTCOME_REWARD={path} is not a Python file")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _loaded["outcome"] = module.reward_func
        _loaded["checker"] = load_step_checker(_setting("RRL_STEP_CHECKER"))
        _loaded["tokenizer"] = AutoTokenizer.from_pretrained(_setting("RRL_TOKENIZER"))
        _loaded["weight"] = float(os.environ.get("RRL_PROCESS_WEIGHT", "0.5"))
        _loaded["eval"] = eval_prompts(os.environ.get("RRL_PROCESS_EVAL_DATASET", "").strip())
    return _loaded


def eval_prompts(path: str) -> dict:
    """label -> the eval set's prompt texts with that label (a chat prompt: its last message's content)."""
    out: dict = {}
    if not path:
        return out
    input_key = os.environ.get("RRL_PROCESS_EVAL_INPUT_KEY", "").strip() or "prompt"
    label_key = os.environ.get("RRL_PROCESS_EVAL_LABEL_KEY", "").strip() or "label"
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise RuntimeError(f"reward_process.py: RRL_PROCESS_EVAL_DATASET={path}: cannot read it ({e.strerror})")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            prompt = row[input_key]
            text = prompt[-1]["content"] if isinstance(prompt, list) else prompt
            out.setdefault(str(row[label_key]), []).append(str(text))
        except (ValueError, KeyError, IndexError, TypeError):
            raise RuntimeError(f"reward_process.py: RRL_PROCESS_EVAL_DATASET={path} line {n}: expected a JSON "
                               f"object with {input_key!r} (text or chat messages) and {label_key!r} "
                               "(RRL_PROCESS_EVAL_INPUT_KEY, RRL_PROCESS_EVAL_LABEL_KEY)") from None
    return out


def is_eval(evals: dict, prompt: str, label) -> bool:
    """Whether OpenRLHF's templated prompt is one of the eval set's (same label, its text inside)."""
    return any(text in prompt for text in evals.get(str(label), ()))


def verified_share(checker, tokenizer, prompt: str, response: str, label) -> float:
    """The share of the response's tokens the step checker verifies, in [0, 1]."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if not response_ids:
        return 0.0
    from openrlhf_rrl.core.step_checker import verified_share as share

    return share(checker(prompt_ids, response_ids, label), len(response_ids))


def reward_func(queries, prompts, labels, **kwargs):
    parts = _parts()
    outcome = parts["outcome"](queries, prompts, labels, **kwargs)
    if isinstance(outcome, dict):
        rewards = torch.as_tensor(outcome["rewards"], dtype=torch.float32)
        scores = torch.as_tensor(outcome.get("scores", outcome["rewards"]), dtype=torch.float32)
        extra = dict(outcome.get("extra_logs", {}))
    else:
        rewards = torch.as_tensor(outcome, dtype=torch.float32)
        scores, extra = rewards.clone(), {}
    share = torch.tensor([0.0 if is_eval(parts["eval"], p, lab)  # the eval reads the outcome alone
                          else verified_share(parts["checker"], parts["tokenizer"], p, q[len(p):], lab)
                          for q, p, lab in zip(queries, prompts, labels)], dtype=torch.float32)
    extra["verified_share"] = share
    return {"rewards": rewards + parts["weight"] * share, "scores": scores, "extra_logs": extra}
