"""Tasks: hand-checked rewards, the late new op, disjoint splits, reproducible streams, and a
reward function that cannot tell a restart from a fresh rollout."""

import random
import re

import pytest

from openrlhf_rrl.tasks import ArithmeticTask, ChainTask, arithmetic_reward_func, chain_reward_func

EOS = "<eos>"


@pytest.fixture(scope="module")
def chain():
    return ChainTask()


@pytest.fixture(scope="module")
def arith():
    return ArithmeticTask()


def ids(task, text):
    return task.tokenizer(text, add_special_tokens=False)["input_ids"]


# -- ChainTask ---------------------------------------------------------------------------------

def test_chain_ops_by_hand(chain):
    assert chain.apply_op("+3", 4) == 2
    assert chain.apply_op("*3", 4) == 2
    assert chain.apply_op("1-", 3) == 3  # 1 - 3 = -2 = 3 mod 5
    item = chain.make_item(3, ["+1", "*2", "4-"])  # 3 -> 4 -> 3 -> 1
    assert item.text == "3 +1 *2 4- =" and item.label == "4 3 1" and item.length == 3 and item.hard


def test_chain_reward_and_verified_tokens_by_hand(chain):
    item = chain.make_item(3, ["+1", "*2", "4-"])  # answer 4 3 1
    cases = {  # response text -> (reward, verified tokens)
        f"4 3 1 {EOS}": (1.0, 4),
        f"4 3 2 {EOS}": (0.0, 2),  # wrong last step
        f"4 2 1 {EOS}": (0.0, 1),  # wrong middle step, later value happens to match
        "4 3 1": (0.0, 3),  # missing EOS
        f"4 3 1 1 {EOS}": (0.0, 3),  # an extra value before EOS
        f"4 3 {EOS}": (0.0, 2),  # stops early
        f"4 3 1 {EOS} <pad> 2": (1.0, 4),  # whatever follows EOS is ignored by the reward
    }
    for text, (reward, verified) in cases.items():
        response = ids(chain, text)
        assert chain.score([item], [response]).item() == reward, text
        assert chain.verified_tokens(item, response) == verified, text
    out = chain_reward_func(["3 +1 *2 4- = 4 3 1 <eos>"], ["3 +1 *2 4- ="], ["4 3 1"])
    assert out["rewards"].tolist() == [1.0] and out["scores"].tolist() == [1.0] and out["extra_logs"] == {}


def test_hard_prompts_use_the_new_op_only_late(chain):
    rng = random.Random(0)
    items = chain.rl_prompts(2000, rng)
    assert {it.length for it in items} == set(range(1, 9))
    for it in items:
        ops = it.text.split()[1:-1]
        new = [i for i, op in enumerate(ops, start=1) if op.endswith("-")]
        if it.length >= 6:
            assert new == list(range(5, it.length + 1)) and it.hard and chain.is_hard(it)
        else:
            assert new == [] and not it.hard
    prompts, targets = chain.warmup_examples(2000, rng)
    new_op_ids = set(ids(chain, " ".join(f"{k}-" for k in range(5))))
    assert not any(new_op_ids & set(p) for p in prompts)
    assert {len(t) - 1 for t in targets} == set(range(1, 9))
    assert all(t[-1] == chain.eos_id for t in targets)


def test_warmup_targets_are_the_answers(chain):
    prompts, targets = chain.warmup_examples(50, random.Random(1))
    for p, t in zip(prompts, targets):
        text = chain.tokenizer.decode(p)
        start, *ops = text.split()[:-1]
        item = chain.make_item(int(start), ops)
        assert chain.target_ids(item) == t and chain.verified_tokens(item, t) == len(t)


def test_chain_eval_sets(chain):
    sets = chain.eval_sets(512)
    assert {k: len(v) for k, v in sets.items()} == {"hard": 512, "mid": 512, "base_long": 512}
    assert all(it.hard and it.length >= 6 for it in sets["hard"])
    assert all(not it.hard and 3 <= it.length <= 5 for it in sets["mid"])
    assert all(not it.hard and it.length >= 6 for it in sets["base_long"])
    for items in sets.values():
        assert len({it.key for it in items}) == len(items)
    assert ChainTask().eval_sets(512) == sets  # fixed, not tied to any training seed


@pytest.mark.parametrize("task_name", ["chain", "arith"])
def test_train_and_eval_splits_are_disjoint(task_name, request):
    task = request.getfixturevalue(task_name)
    eval_keys = {it.key for items in task.eval_sets(256).values() for it in items}
    assert all(task.is_eval(it) for items in task.eval_sets(256).values() for it in items)
    rng = random.Random(7)
    train = task.rl_prompts(3000, rng)
    assert not eval_keys & {it.key for it in train}
    assert not any(task.is_eval(it) for it in train)
    warm_prompts, _ = task.warmup_examples(3000, rng)
    eval_prompt_ids = {tuple(task.encode_prompt(it)) for it in sets_items(task)}
    assert not eval_prompt_ids & {tuple(p) for p in warm_prompts}


def sets_items(task):
    return [it for items in task.eval_sets(256).values() for it in items]


@pytest.mark.parametrize("task_name", ["chain", "arith"])
def test_seeds_reproduce(task_name, request):
    task = request.getfixturevalue(task_name)
    assert task.rl_prompts(64, random.Random(3)) == task.rl_prompts(64, random.Random(3))
    assert task.rl_prompts(64, random.Random(3)) != task.rl_prompts(64, random.Random(4))
    assert task.warmup_examples(64, random.Random(3)) == task.warmup_examples(64, random.Random(3))


def test_restart_is_scored_like_a_fresh_rollout(chain):
    """The user's reward gets the ORIGINAL prompt and prefix + continuation as the response."""
    item = chain.make_item(2, ["+1", "+1", "*2", "3-"])  # answer 3 4 3 0
    prefix, good_cont, bad_cont = ids(chain, "3 4"), ids(chain, f"3 0 {EOS}"), ids(chain, f"3 1 {EOS}")
    fresh = chain.score([item, item], [prefix + good_cont, prefix + bad_cont])
    assert fresh.tolist() == [1.0, 0.0]
    # What a restart looks like to reward_func: query = original prompt ids + prefix + continuation.
    prompt = chain.prompt_text(item)
    query = chain.tokenizer.decode(chain.encode_prompt(item) + prefix + good_cont, skip_special_tokens=False)
    assert chain_reward_func([query], [prompt], [item.label])["rewards"].tolist() == [1.0]
    # The pitfall: passing prompt + prefix as the prompt scores the continuation alone.
    restart_prompt = chain.tokenizer.decode(chain.encode_prompt(item) + prefix)
    assert chain_reward_func([query], [restart_prompt], [item.label])["rewards"].tolist() == [0.0]


# -- ArithmeticTask ----------------------------------------------------------------------------

def test_arithmetic_reward_parses_the_last_integer():
    prompt, label = "Q?", "5"
    cases = {
        "Q? 2 + 3 = 5. The answer is 5. <eos>": 1.0,
        "Q? The answer is 5": 1.0,
        "Q? 5 apples, no wait, 6": 0.0,
        "Q? I do not know": 0.0,
        "Q? 15": 0.0,
    }
    for query, reward in cases.items():
        assert arithmetic_reward_func([query], [prompt], [label])["rewards"].item() == reward, query


def test_arithmetic_problems_and_solutions(arith):
    rng = random.Random(0)
    items = arith.rl_prompts(500, rng)
    assert {it.length for it in items} == set(range(1, 6))
    for it in items:
        assert it.hard == (it.length >= 4)
        prompt_ids = arith.encode_prompt(it)
        assert arith.tokenizer.unk_token_id not in prompt_ids
        assert arith.tokenizer.decode(prompt_ids) == it.text == arith.prompt_text(it)
        # the worked solution's equations are true, chain together, and end in the label
        equations = re.findall(r"(\d+) ([-+*]) (\d+) = (\d+)", it.solution)
        assert len(equations) == it.length
        for a, op, b, c in equations:
            assert {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op] == int(c) >= 0
        assert it.solution.endswith(f"The answer is {it.label}.")
        answer_ids = ids(arith, it.solution) + [arith.eos_id]
        assert arith.tokenizer.unk_token_id not in answer_ids
        assert arith.score([it], [answer_ids]).item() == 1.0
        assert len(answer_ids) <= arith.max_new_tokens
    wrong = ids(arith, f"The answer is {int(items[0].label) + 1}.")
    assert arith.score([items[0]], [wrong]).item() == 0.0


def test_arithmetic_example_by_hand(arith):
    item = arith.rl_prompts(1, random.Random(11))[0]
    numbers = [int(x) for x in re.findall(r"\d+", item.text)]
    assert numbers and 2 <= numbers[0] <= 12
    assert item.text.startswith(item.text.split()[0] + " has ") and item.text.endswith("have now?")
    assert item.key == f"arithmetic:{item.text}"
