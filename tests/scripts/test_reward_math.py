"""scripts/reward_math.py, loaded the way OpenRLHF loads a --reward.remote_url .py file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

PATH = Path(__file__).resolve().parents[2] / "scripts" / "reward_math.py"


@pytest.fixture(scope="module")
def rm():
    # as openrlhf/utils/agent.py SingleTurnAgentExecutor does
    spec = importlib.util.spec_from_file_location("reward_func", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PROMPT = "<|im_start|>user\nTom has 12 apples and gives 5 away. How many are left?<|im_end|>\n<|im_start|>assistant\n"


def rewards(rm, responses, labels, prompt=PROMPT):
    out = rm.reward_func([prompt + r for r in responses], [prompt] * len(responses), labels)
    assert set(out) == {"rewards", "scores", "extra_logs"}
    assert out["rewards"].dtype == torch.float32 and out["rewards"].shape == (len(responses),)
    assert torch.equal(out["rewards"], out["scores"])
    return out["rewards"].tolist(), out["extra_logs"]["boxed"].tolist()


def test_boxed_answer(rm):
    r, boxed = rewards(rm, ["12 - 5 = 7, and 3 more steps.\nSo the answer is \\boxed{7}.<|im_end|>"], ["7"])
    assert (r, boxed) == ([1.0], [1.0])


def test_boxed_answer_wins_over_a_later_number(rm):
    r, _ = rewards(rm, ["\\boxed{7}\nCheck: 7 + 5 = 12"], ["7"])
    assert r == [1.0]
    r, _ = rewards(rm, ["\\boxed{12}\nCheck: 12 - 5 = 7"], ["7"])
    assert r == [0.0]


def test_last_number_without_a_box(rm):
    r, boxed = rewards(rm, ["He had 12, gave 5, so 7 are left.", "12 - 5 = 8"], ["7", "7"])
    assert (r, boxed) == ([1.0, 0.0], [0.0, 0.0])


def test_wrong_and_missing_answers(rm):
    r, _ = rewards(rm, ["\\boxed{8}", "I am not sure.", "", "\\boxed{7"], ["7", "7", "7", "7"])
    assert r == [0.0, 0.0, 0.0, 0.0]  # the last one was cut off inside the box: \\boxed{7 may be 75
    assert rewards(rm, ["\\boxed{7}"], [None])[0] == [0.0]


def test_numbers_in_the_prompt_never_count(rm):
    # the prompt holds 12 and 5; a response with no number must not score from them
    assert rewards(rm, ["No idea."], ["5"])[0] == [0.0]
    assert rewards(rm, ["No idea."], ["12"])[0] == [0.0]


def test_equal_values_in_other_forms(rm):
    cases = [("\\boxed{\\frac{1}{2}}", "0.5"), ("\\boxed{0.50}", "1/2"), ("so 1,000 in all", "1000"),
             ("\\boxed{5.0}", "5"), ("\\boxed{ 42 }", 42), ("\\boxed{\\text{(B)}}", "(B)"),
             ("\\boxed{-3}", "-3"), ("\\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}"), ("\\boxed{90^\\circ}", "90"),
             ("\\boxed{x^{2}+1}", "x^{2} + 1")]
    r, _ = rewards(rm, [c[0] for c in cases], [c[1] for c in cases])
    assert r == [1.0] * len(cases)
    r, _ = rewards(rm, ["\\boxed{-3}", "\\boxed{(C)}", "\\boxed{3/5}"], ["3", "(B)", "3/4"])
    assert r == [0.0, 0.0, 0.0]


def test_nested_braces_in_the_box(rm):
    assert rm.last_boxed("a \\boxed{1} b \\boxed{\\frac{a}{b+{c}}} end") == "\\frac{a}{b+{c}}"
    assert rm.last_boxed("no box here") is None


def test_restart_prefix_plus_continuation_scores_as_one_response(rm):
    """Under RRL a restart's query is the ORIGINAL prompt + the FULL response (replayed prefix + new
    continuation): the answer may be in the continuation, the prefix may hold other numbers."""
    prefix = "Start with 12 apples. Giving away 5 leaves 12 - 5 ="
    right, wrong = " 7.\nThe answer is \\boxed{7}.<|im_end|>", " 6.\nThe answer is \\boxed{6}.<|im_end|>"
    assert rewards(rm, [prefix + right, prefix + wrong], ["7", "7"])[0] == [1.0, 0.0]
    # a prefix that already ended in a boxed wrong answer is overridden by the continuation's last box
    assert rewards(rm, ["\\boxed{6}? No, recount:" + " \\boxed{7}"], ["7"])[0] == [1.0]
    # the prompt is the original one, so its numbers (12, 5) never count for the response
    assert rewards(rm, ["Let me think" + " about it.<|im_end|>"], ["12"])[0] == [0.0]


def test_end_tokens_are_ignored(rm):
    for end in ("<|im_end|>", "</s>", "<|endoftext|>", "<|eot_id|>", "<|im_end|><|endoftext|>"):
        assert rewards(rm, [f"so 7{end}"], ["7"])[0] == [1.0]


def test_a_batch_keeps_its_order(rm):
    responses = [f"\\boxed{{{i}}}" for i in range(6)]
    r, _ = rewards(rm, responses, ["0", "9", "2", "9", "4", "9"])
    assert r == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
