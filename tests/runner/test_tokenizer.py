"""The word tokenizer: one token per task symbol, exact round trips, OpenRLHF-style chat template."""

import pytest

from openrlhf_rrl.tasks import ArithmeticTask, ChainTask
from openrlhf_rrl.tasks.tokenizer import SPECIAL_TOKENS, build_word_tokenizer


def test_special_tokens_and_padding_side():
    tok = build_word_tokenizer(["a", "b"])
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.padding_side == "left"
    assert len(tok) == 6
    assert tok("b a zzz", add_special_tokens=False)["input_ids"] == [5, 4, 3]


def test_every_chain_symbol_is_one_token():
    task = ChainTask()
    for word in task.vocabulary():
        assert len(task.tokenizer(word, add_special_tokens=False)["input_ids"]) == 1, word
    text = "3 +1 *2 4- ="
    ids = task.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 5 and task.tokenizer.unk_token_id not in ids
    assert task.tokenizer.decode(ids) == text


def test_chat_template_renders_the_bare_prompt():
    tok = ChainTask().tokenizer
    chat = [{"role": "user", "content": "3 +1 ="}]
    assert tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == "3 +1 ="
    chat.append({"role": "assistant", "content": "4"})
    assert tok.apply_chat_template(chat, tokenize=False) == "3 +1 = 4 <eos>"


def test_query_minus_prompt_is_the_response():
    """OpenRLHF decodes prompt+response ids with special tokens; `query[len(prompt):]` must work."""
    tok = ChainTask().tokenizer
    prompt = "3 +1 *2 ="
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tok("4 3", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    query = tok.decode(prompt_ids + response_ids, skip_special_tokens=False)
    assert query.startswith(prompt) and query[len(prompt):].split() == ["4", "3", "<eos>"]


def test_punctuation_variant_round_trips_english():
    task = ArithmeticTask()
    text = "Ana has 3 apples. She buys 4 more and gives 2 to Ben. How many apples does Ana have now?"
    ids = task.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert task.tokenizer.unk_token_id not in ids
    assert task.tokenizer.decode(ids) == text
    assert task.tokenizer.convert_ids_to_tokens(ids[:5]) == ["Ana", "has", "3", "apples", "."]


@pytest.mark.parametrize("bad", [["a b"], [""], ["<eos>"]])
def test_rejects_bad_words(bad):
    with pytest.raises(ValueError):
        build_word_tokenizer(bad)


def test_duplicate_words_are_merged():
    assert len(build_word_tokenizer(["a", "b", "a"])) == 6


def test_saved_tokenizer_reloads_exactly_and_autotokenizer_trap(tmp_path):
    """Next to a Qwen2 config, AutoTokenizer swaps in Qwen2Tokenizer (byte-level BPE) and breaks
    the word vocabulary; load_word_tokenizer keeps it. If transformers stops doing that, the
    second assertion tells us the warning in load_word_tokenizer can go."""
    from transformers import AutoTokenizer

    from openrlhf_rrl.runner.models import tiny_qwen2
    from openrlhf_rrl.tasks.tokenizer import load_word_tokenizer

    tok = ChainTask().tokenizer
    tiny_qwen2(tok).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    text = "3 +1 *2 4- ="
    expected = tok(text, add_special_tokens=False)["input_ids"]
    reloaded = load_word_tokenizer(tmp_path)
    assert reloaded(text, add_special_tokens=False)["input_ids"] == expected
    assert reloaded.decode(expected) == text and reloaded.padding_side == "left"
    assert reloaded.chat_template == tok.chat_template
    assert AutoTokenizer.from_pretrained(tmp_path)(text, add_special_tokens=False)["input_ids"] != expected
