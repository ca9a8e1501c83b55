"""reads_rollouts: the groups observe() may read tokens of. A front end that sends every other group as
outcomes alone (no tokens) must leave the buffer exactly as the whole groups would."""

import random
from dataclasses import replace

import pytest

from openrlhf_rrl.config import RRLConfig
from openrlhf_rrl.core.planner import PromptRef
from openrlhf_rrl.core.replay import RetrospectiveReplay, reads_rollouts
from openrlhf_rrl.core.trajectory import Trajectory

WIN = (10, 11, 12, 13, 14, 15, 16, 17, 18, 19)


def _group(rng, key, prefix=()):
    wins = [rng.random() < rng.choice([0.0, 0.15, 0.5, 0.9, 1.0]) for _ in range(8)]
    out = []
    for j, w in enumerate(wins):
        k = rng.randrange(1, len(WIN))
        ids = WIN if w else WIN[:k] + tuple(60 + j + i for i in range(len(WIN) - k))
        out.append(Trajectory(prompt_key=key, prompt_ids=(1, len(key)), response_ids=tuple(prefix) + ids[len(prefix):],
                              reward=float(w), success=w, label=key, prefix_len=len(prefix),
                              logprobs=tuple(-0.1 for _ in ids), values=tuple(0.1 * i for i in range(len(ids)))))
    return out


def _outcomes_only(group):
    return [Trajectory(prompt_key=t.prompt_key, prompt_ids=(), response_ids=(), reward=t.reward, success=t.success,
                       prefix_len=t.prefix_len) for t in group]


@pytest.mark.parametrize("opts", [dict(scorer="agree"), dict(scorer="agree", retry_unsolved="on"),
                                  dict(scorer="agree", agree_probes=True, cut_every=2),
                                  dict(scorer="reward", cut_every=2), dict(scorer="critic"),
                                  dict(scorer="agree", policy="passrate"), dict(scorer="mc", cut_every=2)])
def test_stripping_the_groups_it_does_not_read_changes_nothing(opts):
    cfg = RRLConfig(enable=True, replay_share=0.5, start_step=0, warmup_steps=0, seed=0, admit_per_step=8,
                    restart_temperature=2.0, **opts)
    whole, stripped = RetrospectiveReplay(cfg), RetrospectiveReplay(cfg)
    rng = random.Random(0)
    sent_whole = 0
    for step in range(30):
        refs = [PromptRef(f"p{rng.randrange(12)}", (1,), label="x") for _ in range(6)]
        plans = whole.plan(refs, step)
        assert [(p.prompt.key, p.entry_key) for p in plans] == [(p.prompt.key, p.entry_key) for p in stripped.plan(refs, step)]
        groups = [_group(rng, p.prompt.key, p.prefix_ids) for p in plans]
        light = []
        for plan, group in zip(plans, groups):
            reads = reads_rollouts(cfg, plan.is_restart, [t.success for t in group])
            sent_whole += reads
            light.append([replace(t) for t in group] if reads else _outcomes_only(group))
        m1, m2 = whole.observe(plans, groups, step), stripped.observe(plans, light, step)
        m1.pop("rrl/overhead_s"), m2.pop("rrl/overhead_s")
        assert m1 == m2
    assert whole.state_dict() == stripped.state_dict()
    assert len(whole.buffer) > 0 and 0 < sent_whole < 30 * 6  # some groups went whole, some as outcomes


def test_it_reads_nothing_with_replay_off_and_only_hard_fresh_groups_by_default():
    cfg = RRLConfig(enable=True)
    assert reads_rollouts(cfg, False, [False] * 8) and reads_rollouts(cfg, False, [True] + [False] * 7)
    assert not reads_rollouts(cfg, False, [True] * 4 + [False] * 4)  # a fresh rate at the hard threshold
    assert reads_rollouts(cfg, True, [True, False]) and not reads_rollouts(cfg, True, [True, True])
    assert not reads_rollouts(RRLConfig(enable=True, scorer="reward"), True, [True, False])
    assert not reads_rollouts(RRLConfig(enable=False), False, [False] * 8)
