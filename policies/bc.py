"""A behaviour-cloning policy (``robot-rl bc``, ``robot_rl.agents.bc.BCAgent``) as a
:class:`~robot_rl.policies.base.Policy`.

Duck-typed on ``act_batch(obs_batched, deterministic)``; load the agent on the learner side
(``BCAgent.load(path)``) and pass it in. ``act`` samples from the Gaussian by default
(``deterministic=True`` executes its mean), so ``act(obs)`` equals ``sample(obs, 1)[0]`` and a
V-GPS wrapper with K=1 reproduces it exactly.
"""
from __future__ import annotations

from typing import Any

from robot_rl.policies.base import AgentPolicy

__all__ = ["BCPolicy"]


class BCPolicy(AgentPolicy):
    def __init__(self, agent: Any, deterministic: bool = False):
        super().__init__(agent, deterministic)
