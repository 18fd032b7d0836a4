"""PandaReach: move the TCP to a green sphere drawn uniformly in a box above the table."""
from __future__ import annotations

import numpy as np

from robot_rl.controllers.safety import SafetyBox
from robot_rl.hardware.task import ActionConfig, Outcome
from robot_rl.sim.tasks.base import ScriptedExpert, SimTask


class PandaReach(SimTask):
    max_episode_steps = 30
    goal_low, goal_high = np.array([0.33, -0.15, 0.08]), np.array([0.57, 0.15, 0.3])
    tolerance = 0.02
    marker_size, marker_rgba = 0.015, (0.1, 0.8, 0.1, 0.6)

    def __init__(self):
        super().__init__(name="PandaReach", instruction="move the gripper to the green sphere",
                         action=ActionConfig(dofs=("x", "y", "z"), gripper=False, step_pos=0.03),
                         safety=SafetyBox((0.25, -0.25, 0.05), (0.65, 0.25, 0.4),
                                          (3.0, -0.15, -0.15), (-3.0, 0.15, 0.15)))
        self.goal = np.array([0.45, 0.0, 0.2])  # shown by the "goal" marker

    def mjcf(self):
        x, y, z = self.goal
        return (f'<site name="goal" pos="{x} {y} {z}" size="{self.marker_size}" '
                f'rgba="{" ".join(map(str, self.marker_rgba))}" type="sphere"/>', "")

    def reset(self, env, rng):
        self.reset_arm(env, rng)
        self.goal = rng.uniform(self.goal_low, self.goal_high)
        self.world.set_marker("goal", self.goal)
        self.settle(0.02)

    def env_state(self):
        return np.concatenate([self.goal, self.goal - self.tcp])

    def score(self, tcp, goal, xp=np):
        """(dense reward in [0, 1], success) of a TCP position and the goal."""
        d = xp.linalg.norm(tcp - goal)
        return 1.0 - xp.tanh(10.0 * d), d < self.tolerance

    def outcome(self, env) -> Outcome:
        reward, success = self.score(self.tcp, self.goal)
        return Outcome(reward=float(reward), success=bool(success))


class ReachExpert(ScriptedExpert):
    def plan(self):
        goal = self.task.goal if not self.failing else self.task.goal + [0.0, 0.0, 0.08]
        return self.move(goal)
