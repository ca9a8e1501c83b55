"""Rule-based math reward for OpenRLHF (`--reward.remote_url /abs/path/to/scripts/reward_math.py`).

OpenRLHF loads this file in its rollout actors and calls `reward_func(queries, prompts, labels)`:
`queries[i]` is the decoded prompt + response (special tokens kept), `prompts[i]` the prompt text,
`labels[i]` the data set's `--data.label_key` value. The response is `query[len(prompt):]`, so
numbers in the prompt never count.

Reward: 1.0 when the response's answer equals the label, else 0.0. The answer is the last
`\\boxed{...}` in the response (nested braces allowed; one left open gives no answer); without
one, the last number in it. Numbers compare by value (`0.5 == 1/2 == \\frac{1}{2}`,
`1,000 == 1000`, `5 == 5.0`); anything else compares as text after dropping spaces, `$`,
`\\left`/`\\right` and `\\text{}` wrappers.

Under RRL nothing changes: a restart's query is the ORIGINAL prompt + the FULL response (replayed
prefix + new continuation), exactly as for a fresh rollout. `--rrl_success_threshold 0.5` (the
default) then counts a restart as a success exactly when the answer is right.

Returns OpenRLHF's dict: `rewards` (for the advantages), `scores` (dynamic filtering; the same 0/1
values), `extra_logs` (`boxed`: whether the response had a boxed answer, logged per step).
"""

from __future__ import annotations

import re
from fractions import Fraction

import torch

# tokens a decoded response may end with (skip_special_tokens=False), removed before matching
END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "</s>", "<eos>", "<|end|>")

_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}$")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")


def response_of(query: str, prompt: str) -> str:
    """The response part of a query (OpenRLHF passes prompt + response), end tokens removed."""
    response = query[len(prompt):]
    stripped = True
    while stripped:
        stripped = False
        response = response.rstrip()
        for token in END_TOKENS:
            if response.endswith(token):
                response = response[: -len(token)]
                stripped = True
    return response


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (or \\fbox{...}), with nested braces; None if there is none."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, begin = 1, i
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:i]
        i += 1
    return None  # unclosed: the response was cut off inside the box


def last_number(text: str) -> str | None:
    """The last number written in the text (integers, decimals, 1,000-style, a/b), or None."""
    found = _NUMBER.findall(text)
    return found[-1] if found else None


def extract_answer(response: str) -> tuple[str | None, bool]:
    """(answer, boxed): the last boxed answer if the response boxes one, else its last number. A box
    left open (the response was cut off inside it) gives no answer: `\\boxed{7` may have been 75."""
    if "\\boxed{" in response or "\\fbox{" in response:
        boxed = last_boxed(response)
        return boxed, boxed is not None
    return last_number(response), False


def _normalize(text: str) -> str:
    text = str(text).strip()
    for _ in range(3):
        text = _TEXT_WRAPPER.sub(r"\1", text)
    for old in ("$", "\\left", "\\right", "\\!", "\\,", "\\ ", "^\\circ", "^{\\circ}", "\\%", "%"):
        text = text.replace(old, "")
    text = "".join(text.split()).rstrip(".")
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    return text


def to_number(text: str) -> Fraction | None:
    """The exact value of a normalized answer, or None when it is not a plain number."""
    text = _normalize(text)
    m = _FRAC.match(text)
    if m:
        sign, num, den = m.groups()
        text = f"{sign}{num}/{den}"
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", text):
        text = text.replace(",", "")
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


def is_correct(answer: str | None, label) -> bool:
    if answer is None or label is None:
        return False
    a, b = to_number(answer), to_number(str(label))
    if a is not None and b is not None:
        return a == b
    return _normalize(answer) == _normalize(str(label)) != ""


def reward_func(queries, prompts, labels, **kwargs):
    rewards, boxed = [], []
    for query, prompt, label in zip(queries, prompts, labels):
        answer, was_boxed = extract_answer(response_of(query, prompt))
        rewards.append(1.0 if is_correct(answer, label) else 0.0)
        boxed.append(1.0 if was_boxed else 0.0)
    r = torch.tensor(rewards, dtype=torch.float32)
    return {"rewards": r, "scores": r.clone(), "extra_logs": {"boxed": torch.tensor(boxed, dtype=torch.float32)}}
