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

# gripper pointing down (roll within 0.14 rad of pi), pitch/yaw within 0.15 rad
_DOWN_RPY = ((3.0, -0.15, -0.15), (-3.0, 0.15, 0.15))


class SO101Reach(PandaReach):
    arm = "so101"
    goal_low, goal_high = np.array([0.14, -0.09, 0.04]), np.array([0.24, 0.09, 0.15])
    tolerance = 0.015
    marker_size = 0.01
    start_pos = np.array([0.19, 0.0, 0.10])
    start_noise = np.array([0.02, 0.02, 0.015])

    def __init__(self):
        SimTask.__init__(self, name="SO101Reach", instruction="move the gripper to the green sphere",
                         action=ActionConfig(dofs=("x", "y", "z"), gripper=False, step_pos=0.02),
                         safety=SafetyBox((0.10, -0.15, 0.03), (0.28, 0.15, 0.2), *_DOWN_RPY))
        self.goal = np.array([0.19, 0.0, 0.1])


class SO101PickCube(PandaPickCube):
    arm = "so101"
    half = 0.012
    mass = 0.02
    cube_low, cube_high = np.array([0.15, -0.07]), np.array([0.23, 0.07])
    lift_height = 0.04
    start_pos = np.array([0.19, 0.0, 0.10])
    start_noise = np.array([0.02, 0.02, 0.015])

    def __init__(self):
        SimTask.__init__(self, name="SO101PickCube", instruction="pick up the red cube",
                         action=ActionConfig(dofs=("x", "y", "z"), gripper=True, step_pos=0.02),
                         safety=SafetyBox((0.10, -0.15, 0.006), (0.28, 0.15, 0.2), *_DOWN_RPY))
