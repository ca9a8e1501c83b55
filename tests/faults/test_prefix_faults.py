"""States that must never become restart points, whichever way they arrive (a scorer, a user's
file scorer, a hand-edited buffer file): empty prefixes, prefixes over the length budget, EOS inside
the prefix. And entries whose prompt left the data set. None of them is ever planned as a restart.

The rules themselves are unit-tested in tests/core/test_buffer_admission.py.
"""

import json

from openrlhf_rrl.config import RRLConfig
from openrlhf_rrl.core.buffer import ReplayBuffer
from openrlhf_rrl.core.planner import GroupPlan, PromptRef
from openrlhf_rrl.core.replay import RetrospectiveReplay

EOS = 1


def group(plan, response, n=4, reward=0.0, eos=False):
    from openrlhf_rrl.core.trajectory import Trajectory
    return [Trajectory(prompt_key=plan.prompt.key, prompt_ids=plan.prompt.prompt_ids, response_ids=tuple(response),
                       reward=reward, success=False, eos=eos) for _ in range(n)]


def eager(**kw):
    opts = dict(enable=True, scorer="reward", hard_threshold=1.0, cut_every=1, min_prefix_frac=0.0,
                max_prefix_frac=1.0, admit_per_step=100, replay_share=1.0)
    opts.update(kw)
    return RRLConfig(**opts)


def all_prefixes(rrl):
    return [e.prefix_ids for e in rrl.buffer.entries()]


def test_eos_inside_a_response_never_reaches_the_buffer_or_a_restart():
    rrl = RetrospectiveReplay(eager(), stop_token_ids=(EOS,))
    p = PromptRef("q", (7, 8))
    # a rollout that went on after an EOS (a turn end inside a multi-turn response, say)
    response = (10, 11, 12, EOS, 13, 14, 15, EOS)
    rrl.observe([GroupPlan(prompt=p)], [group(GroupPlan(prompt=p), response, eos=True)], step=1)
    assert all_prefixes(rrl) and all(EOS not in pre for pre in all_prefixes(rrl))
    assert max(len(pre) for pre in all_prefixes(rrl)) <= 2  # cuts stop before the first EOS
    for plan in rrl.plan([PromptRef(f"f{i}", (1,)) for i in range(4)], step=2):
        assert EOS not in plan.prefix_ids


def test_over_long_prefixes_are_refused_and_the_rest_admitted():
    rrl = RetrospectiveReplay(eager(max_prefix_tokens=3))
    p = PromptRef("q", (7,))
    rrl.observe([GroupPlan(prompt=p)], [group(GroupPlan(prompt=p), tuple(range(10, 30)))], step=1)
    assert all_prefixes(rrl) and max(len(pre) for pre in all_prefixes(rrl)) <= 3


def test_a_file_scorer_proposing_bad_cuts_cannot_get_them_in(tmp_path):
    scorer = tmp_path / "score.py"
    # a careless user scorer: the empty cut, a cut after EOS, a cut past the budget, one good cut
    scorer.write_text("def score_func(prompt_ids, response_ids, reward, label, **kw):\n"
                      "    return [(0, 9.0), (5, 8.0), (7, 7.0), (2, 1.0)]\n")
    rrl = RetrospectiveReplay(eager(scorer=f"file:{scorer}", max_prefix_tokens=6), stop_token_ids=(EOS,))
    p = PromptRef("q", (7,))
    rrl.observe([GroupPlan(prompt=p)], [group(GroupPlan(prompt=p), (10, 11, 12, EOS, 13, 14, 15, 16, 17))], step=1)
    assert all_prefixes(rrl) == [(10, 11)]


def test_a_hand_edited_buffer_file_with_bad_prefixes_loads_without_them(make_state, tmp_path):
    buf = ReplayBuffer(max_prefix_tokens=4, stop_token_ids=(EOS,))
    keep = make_state("ok", (5, 6))
    buf.add(keep)
    path = tmp_path / "rrl_buffer.jsonl"
    buf.save(path)
    lines = path.read_text().splitlines()
    good = json.loads(lines[1])
    bad = [dict(good, prompt_key="empty", prefix_ids=[]), dict(good, prompt_key="eos", prefix_ids=[5, EOS, 6]),
           dict(good, prompt_key="long", prefix_ids=[5, 6, 7, 8, 9])]
    for d in bad:
        d.pop("slot")
    path.write_text("\n".join([lines[0], lines[1]] + [json.dumps(d) for d in bad] + ['{"end": 4}']) + "\n")
    data = path.read_bytes()
    loaded = ReplayBuffer.load(path)
    assert [e.key for e in loaded.entries()] == [keep.key]
    assert loaded.counters["refused_invalid"] == 3
    assert path.read_bytes() == data  # reading never rewrites the file


def test_prompts_gone_from_the_data_set_are_retired_on_resume(make_state, tmp_path):
    rrl = RetrospectiveReplay(RRLConfig(enable=True, replay_share=1.0))
    for p in ("kept", "dropped", "relabelled"):
        rrl.buffer.add(make_state(p, (5,), 1.0))
        rrl.buffer.add(make_state(p, (6,), 1.0))
    rrl.buffer.pin(make_state("dropped", (5,)).key)
    rrl.save(tmp_path / "rrl_buffer.jsonl")

    resumed = RetrospectiveReplay(RRLConfig(enable=True, replay_share=1.0))
    resumed.load(tmp_path / "rrl_buffer.jsonl")
    data_set_now = {"kept", "new"}  # the data set was edited between the runs
    assert resumed.buffer.retire_missing_prompts(data_set_now) == 4
    assert resumed.buffer.retired_counts["stale"] == 4 and resumed.buffer.prompt_keys() == ["kept"]
    for step in range(1, 6):
        plans = resumed.plan([PromptRef(f"f{i}", (1,)) for i in range(4)], step)
        assert {p.prompt.key for p in plans if p.is_restart} <= {"kept"}
