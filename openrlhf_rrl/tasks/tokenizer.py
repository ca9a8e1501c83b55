"""A word-level tokenizer built in code, so the tiny runner needs no hub download.

Every vocabulary word is exactly one token, so a task's step checker can read a response token by
token, and `decode(encode(text)) == text` holds for the task's canonical texts. That round trip is
what lets an OpenRLHF-style reward function cut the response off a query with
`query[len(prompt):]`.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, EOS, BOS, UNK = "<pad>", "<eos>", "<bos>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, BOS, UNK)  # ids 0..3, in this order

# One user turn renders as its bare text, so the templated prompt of a task item is the item's text
# itself (OpenRLHF applies the template with add_generation_prompt=True). Turns are joined with a
# space; an assistant turn ends in EOS, so a whole conversation is also a valid training sequence.
WORD_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if not loop.first %} {% endif -%}"
    "{{- message['content'] -}}"
    "{%- if message['role'] == 'assistant' %} {{ eos_token }}{% endif -%}"
    "{%- endfor -%}"
)


def build_word_tokenizer(words: list[str], split_punctuation: bool = False) -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer over `words` (after the 4 special tokens), left padding, chat template.

    split_punctuation=False splits on whitespace only, so symbols such as `+1` or `4-` stay single
    tokens. split_punctuation=True also splits off punctuation (`apples.` -> `apples` `.`) and
    decodes English-style (`apples.` again), so natural sentences round-trip; it must not be used
    for vocabularies whose words contain punctuation.
    """
    seen: set[str] = set()
    ordered: list[str] = []
    for w in words:
        if not w or any(ch.isspace() for ch in w):
            raise ValueError(f"vocabulary word {w!r} is empty or contains whitespace")
        if w in SPECIAL_TOKENS:
            raise ValueError(f"vocabulary word {w!r} collides with a special token")
        if w not in seen:
            seen.add(w)
            ordered.append(w)
    vocab = {tok: i for i, tok in enumerate(list(SPECIAL_TOKENS) + ordered)}

    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    if split_punctuation:
        core.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
        )
    else:
        core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # WordPiece's decoder joins tokens with single spaces; with cleanup it also removes the space
    # before `.`, `,`, `?`, `!` (the inverse of the punctuation split). No word uses the `##` prefix.
    core.decoder = decoders.WordPiece(prefix="##", cleanup=split_punctuation)

    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=BOS,
        unk_token=UNK,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    tok.chat_template = WORD_CHAT_TEMPLATE
    return tok


def load_word_tokenizer(path) -> PreTrainedTokenizerFast:
    """Reload a saved word tokenizer. Do not use AutoTokenizer for it next to a Qwen2 config:
    transformers 5.x lists qwen2 among models whose hub tokenizer class is "incorrect" and swaps in
    Qwen2Tokenizer (byte-level BPE), which silently re-tokenizes `+1` as `+` `1` and decodes without
    spaces. Naming the class keeps the WordLevel model, decoder, padding side and chat template.
    """
    return PreTrainedTokenizerFast.from_pretrained(path)
