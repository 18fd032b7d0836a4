"""The SO-101 tasks: PandaReach and PandaPickCube scaled to a 5-DoF hobby-servo arm with a
~0.28 m reach (goals, cube and workspace box closer to the base, a 2.4 cm cube, 2 cm action
steps). Same scoring and the same scripted experts; the env (sim/envs.py) puts them on the
simulated SO-101, whose Cartesian layer is the differential IK of controllers/diff_ik.py."""
from __future__ import annotations

import numpy as np

from robot_rl.controllers.safety import SafetyBox
from robot_rl.hardware.task import ActionConfig
from robot_rl.sim.tasks.base import SimTask
from robot_rl.sim.tasks.pick_cube import PandaPickCube
from robot_rl.sim.tasks.reach import PandaReach

class _OnSO101:
    """What the SO-101 tasks share: the arm, its start pose, 2 cm steps, a box within reach with
    the gripper pointing down (roll within 0.14 rad of pi, pitch/yaw within 0.15 rad)."""
    arm = "so101"
    start_pos = np.array([0.19, 0.0, 0.10])
    start_noise = np.array([0.02, 0.02, 0.015])

    def _setup(self, name: str, instruction: str, gripper: bool, z_low: float) -> None:
        SimTask.__init__(self, name=name, instruction=instruction,
                         action=ActionConfig(dofs=("x", "y", "z"), gripper=gripper, step_pos=0.02),
                         safety=SafetyBox((0.10, -0.15, z_low), (0.28, 0.15, 0.2),
                                          (3.0, -0.15, -0.15), (-3.0, 0.15, 0.15)))


class SO101Reach(_OnSO101, PandaReach):
    goal_low, goal_high = np.array([0.14, -0.09, 0.04]), np.array([0.24, 0.09, 0.15])
    tolerance = 0.015
    marker_size = 0.01

    def __init__(self):
        self._setup("SO101Reach", "move the gripper to the green sphere", False, 0.03)
        self.goal = np.array([0.19, 0.0, 0.1])


class SO101PickCube(_OnSO101, PandaPickCube):
    half = 0.012
    mass = 0.02
    cube_low, cube_high = np.array([0.15, -0.07]), np.array([0.23, 0.07])
    lift_height = 0.04

    def __init__(self):
        self._setup("SO101PickCube", "pick up the red cube", True, 0.006)
