"""Our SAC/RLPD agent as a :class:`~robot_rl.policies.base.Policy`.

Takes the agent object (duck-typed: anything with ``act_batch(obs_batched, deterministic)``,
e.g. ``robot_rl.agents.sac.SACAgent`` or the agent of ``robot_rl.train.load_policy``), so this
module imports nothing of the learner. ``act`` executes the mean action by default, as
evaluation does; ``sample(obs, n)`` draws n actions from the squashed Gaussian in one batched
forward pass (the candidates V-GPS re-ranks).
"""
from __future__ import annotations

from typing import Any

from robot_rl.policies.base import AgentPolicy

__all__ = ["SACPolicy"]


class SACPolicy(AgentPolicy):
    def __init__(self, agent: Any, deterministic: bool = True):
        super().__init__(agent, deterministic)
