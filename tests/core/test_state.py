import json

import pytest

from openrlhf_rrl.core.state import RetainedState, state_key


def test_key_is_sha1_of_prompt_and_prefix_ids_so_duplicates_merge(make_state):
    a = RetainedState("p", (1, 2), (3, 4), score=0.1)
    b = RetainedState("p", [1, 2], [3, 4], score=0.9, restarts=5)
    assert a.key == b.key == state_key((1, 2), (3, 4))
    assert len(a.key) == 40 and int(a.key, 16) >= 0
    # the split between prompt and prefix is part of the identity
    assert RetainedState("p", (1,), (2, 3, 4)).key != RetainedState("p", (1, 2), (3, 4)).key
    assert RetainedState("p", (1, 2), (3, 5)).key != a.key


def test_posterior_and_pass_rate_count_restart_outcomes():
    s = RetainedState("p", (1,), (2,), continuations=10, successes=3)
    assert s.failures == 7
    assert s.posterior() == (4, 8)
    assert s.posterior(2, 3) == (5, 10)
    assert s.pass_rate == pytest.approx(4 / 12)
    assert RetainedState("p", (1,), (2,)).pass_rate == 0.5  # untried: uniform prior mean


def test_json_round_trip_is_exact_and_json_serialisable():
    s = RetainedState("p", (1, 2), (3,), prefix_logprobs=(-0.5,), label={"answer": "42"}, score=0.7, step_found=3,
                      restarts=2, continuations=16, successes=5, last_seen=9, cut_fraction=0.25, source_len=4,
                      source_reward=0.0, cut_value=0.8, cut_entropy=1.5, verified_steps=2, pinned=True)
    d = json.loads(json.dumps(s.to_json()))
    assert RetainedState.from_json(d) == s


@pytest.mark.parametrize("field,value", [
    ("prompt_ids", [1, "x"]), ("prefix_ids", "abc"), ("score", "high"), ("restarts", 1.5),
    ("pinned", 1), ("cut_value", [1]), ("prefix_logprobs", ["a"]), ("prompt_key", 3), ("score", float("nan")),
])
def test_from_json_names_the_bad_field(field, value):
    d = RetainedState("p", (1,), (2,)).to_json()
    d[field] = value
    with pytest.raises(ValueError, match=f"^{field}: expected"):
        RetainedState.from_json(d)


def test_from_json_rejects_missing_and_unknown_fields():
    d = RetainedState("p", (1,), (2,)).to_json()
    del d["prefix_ids"]
    with pytest.raises(ValueError, match="^prefix_ids: missing"):
        RetainedState.from_json(d)
    d = RetainedState("p", (1,), (2,)).to_json()
    d["colour"] = "red"
    with pytest.raises(ValueError, match="^colour: unknown field"):
        RetainedState.from_json(d)


def test_from_json_recomputes_the_key():
    d = RetainedState("p", (1,), (2,)).to_json()
    d["key"] = "forged"
    assert RetainedState.from_json(d).key == state_key((1,), (2,))


def test_fields_added_later_round_trip_are_omitted_at_their_defaults_and_optional_when_read():
    s = RetainedState("p", (1,), (2, 3), source_ids=[4, 5], handicap=True, mixed_groups=3)
    assert s.source_ids == (4, 5) and s.key == RetainedState("p", (1,), (2, 3)).key  # the key ignores the source
    d = json.loads(json.dumps(s.to_json()))
    assert RetainedState.from_json(d) == s
    plain = RetainedState("p", (1,), (2,)).to_json()
    assert not {"source_ids", "handicap", "mixed_groups"} & set(plain)  # older readers still take it
    for field, value in (("source_ids", [1, "x"]), ("handicap", "yes"), ("mixed_groups", 1.5)):
        d = RetainedState("p", (1,), (2,)).to_json()
        d[field] = value
        with pytest.raises(ValueError, match=f"^{field}: expected"):
            RetainedState.from_json(d)
