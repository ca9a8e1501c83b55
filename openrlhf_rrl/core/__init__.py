"""The RRL algorithm: buffer, cut points, scorers, selection policies, replay planning, metrics.

No OpenRLHF import here, by design."""

from .errors import BufferFileError, RRLConfigError
from .state import RetainedState
from .buffer import ReplayBuffer
from .trajectory import Trajectory
from .planner import GroupPlan, PromptRef, ReplayPlanner
from .replay import RetrospectiveReplay

__all__ = ["BufferFileError", "RRLConfigError", "RetainedState", "ReplayBuffer", "Trajectory", "GroupPlan",
           "PromptRef", "ReplayPlanner", "RetrospectiveReplay"]
