"""Admission rules of the buffer (states that cannot be restart points) and retiring prompts that left
the data set."""

import pytest

from openrlhf_rrl.core.buffer import ReplayBuffer
from openrlhf_rrl.core.errors import RRLConfigError
from openrlhf_rrl.core.scoring import make_scorer

EOS = 1


def test_empty_prefix_is_refused(make_state, consistent):
    buf = ReplayBuffer()
    assert buf.admission_problem(make_state(prefix=())).startswith("empty prefix")
    assert not buf.add(make_state(prefix=(), score=5.0))
    assert len(buf) == 0 and buf.counters["refused_invalid"] == 1
    consistent(buf)


def test_prefix_over_the_length_budget_is_refused_not_clipped(make_state):
    buf = ReplayBuffer(max_prefix_tokens=3)
    assert buf.add(make_state("a", (5, 6, 7)))
    long = make_state("b", (5, 6, 7, 8))
    assert "exceeds --rrl_max_prefix_tokens 3" in buf.admission_problem(long)
    assert not buf.add(long) and len(buf) == 1
    assert ReplayBuffer(max_prefix_tokens=0).add(long)  # 0 means no limit, as the flag


def test_stop_token_inside_the_prefix_is_refused(make_state):
    buf = ReplayBuffer(stop_token_ids=(EOS, 99))
    assert "stop token 1 inside the prefix at position 1" in buf.admission_problem(make_state(prefix=(5, EOS, 6)))
    assert not buf.add(make_state(prefix=(5, EOS, 6)))
    assert not buf.add(make_state(prefix=(5, 99)))
    assert buf.add(make_state(prefix=(5, 6)))


def test_admission_rules_survive_a_file_round_trip(make_state, tmp_path):
    buf = ReplayBuffer(max_prefix_tokens=4, stop_token_ids=(EOS,))
    buf.add(make_state(prefix=(5, 6)))
    path = tmp_path / "b.jsonl"
    buf.save(path)
    loaded = ReplayBuffer.load(path)
    assert (loaded.max_prefix_tokens, loaded.stop_token_ids) == (4, (EOS,))
    assert loaded.state_dict() == buf.state_dict()


def test_bad_admission_arguments_name_the_flag():
    with pytest.raises(RRLConfigError, match="--rrl_max_prefix_tokens"):
        ReplayBuffer(max_prefix_tokens=-1)
    with pytest.raises(RRLConfigError, match="stop_token_ids"):
        ReplayBuffer(stop_token_ids=("eos",))


def test_scorer_never_cuts_after_a_stop_token_inside_the_response(make_traj):
    # EOS at position 5 of a 20-token response (a turn end in a multi-turn rollout, say)
    response = tuple(range(10, 15)) + (EOS,) + tuple(range(20, 34))
    traj = make_traj(response=response, reward=0.0, eos=False)
    plain = make_scorer("reward", hard_threshold=1.0, cut_every=2, min_prefix_frac=0.0, max_prefix_frac=1.0)
    aware = make_scorer("reward", hard_threshold=1.0, cut_every=2, min_prefix_frac=0.0, max_prefix_frac=1.0,
                        stop_token_ids=(EOS,))
    assert any(EOS in s.prefix_ids for s in plain.candidates(traj, step=1))
    cands = aware.candidates(traj, step=1)
    assert cands and all(EOS not in s.prefix_ids and len(s.prefix_ids) <= 4 for s in cands)


def test_retire_missing_prompts(make_state, consistent):
    buf = ReplayBuffer()
    for p in ("a", "b", "c"):
        buf.add(make_state(p, (1,)))
        buf.add(make_state(p, (2,)))
    buf.pin(make_state("c", (1,)).key)
    assert buf.retire_missing_prompts(["a"]) == 4  # b and c left the data set; c's pin does not keep it
    assert buf.prompt_keys() == ["a"] and buf.retired_counts["stale"] == 4
    assert buf.add(make_state("b", (1,)))  # stale is not a verdict on the state: it may come back
    assert buf.retire_missing_prompts({"a", "b"}) == 0
    consistent(buf)
