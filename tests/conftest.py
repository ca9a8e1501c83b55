"""Factories shared by every test folder (fixtures: tests have no package, see pytest.ini)."""

import pytest

from openrlhf_rrl.core.state import RetainedState
from openrlhf_rrl.core.trajectory import Trajectory


def _state(prompt="p0", prefix=(1,), score=0.0, **kw):
    pid = kw.pop("prompt_ids", (100 + sum(map(ord, prompt)), len(prompt)))
    return RetainedState(prompt_key=prompt, prompt_ids=tuple(pid), prefix_ids=tuple(prefix), score=score, **kw)


def _traj(prompt="p0", response=tuple(range(10, 30)), reward=0.0, success=False, **kw):
    kw.setdefault("prompt_ids", (1, 2, 3))
    return Trajectory(prompt_key=prompt, response_ids=tuple(response), reward=reward, success=success, **kw)


@pytest.fixture
def make_state():
    """make_state(prompt, prefix, score, **fields) -> RetainedState with stable prompt ids per prompt key."""
    return _state


@pytest.fixture
def make_traj():
    """make_traj(prompt, response, reward, success, **fields) -> Trajectory."""
    return _traj
