"""Simulated tasks, for any physics backend: each randomizes its scene from the env's seeded
generator (never global np.random) and scores it from privileged state, through the small
`World` interface below. The backends build the scenes: MJCF snippets in sim/envs.py (MuJoCo),
build functions in sim/pybullet_backend.py (PyBullet, Reach and PickCube only)."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from robot_rl.controllers.safety import SafetyBox
from robot_rl.hardware.task import ActionConfig, Evaluation, TaskBase
from robot_rl.sim.panda_model import HOME_Q

DOWN = np.array([1.0, 0.0, 0.0, 0.0])  # xyzw: gripper pointing at the table, fingers along y
TABLE_Z = 0.0


class World(Protocol):
    """What a task needs of a backend (`SimWorld`, `BulletWorld`)."""

    def reset(self) -> None: ...                              # the initial scene again
    def advance(self, seconds: float) -> None: ...            # step the physics
    def tcp_position(self) -> np.ndarray: ...
    def ik(self, pos, quat, q_seed) -> np.ndarray: ...        # joints putting the TCP at a pose
    def set_marker(self, name: str, pos) -> None: ...         # move a visual-only marker
    def body_position(self, name: str) -> np.ndarray: ...
    def place_body(self, name: str, pos) -> None: ...         # unrotated, at rest


class SimTask(TaskBase):
    """Common reset: fresh physics state, arm teleported to a (randomized) start pose.

    `env_state` (privileged, state-only variants) is the object's position and its offset from
    the TCP: the offset makes "move toward the object" a near-linear function of the input,
    which is what a policy has to learn first."""
    start_pos = np.array([0.45, 0.0, 0.22])
    start_noise = np.array([0.03, 0.03, 0.02])

    def bind(self, world: World) -> None:
        self.world = world
        self._q_start = world.ik(self.start_pos, DOWN, HOME_Q)
        self.home_quat = DOWN

    def reset_arm(self, env, rng: np.random.Generator) -> None:
        self.world.reset()
        start = self.start_pos + rng.uniform(-1, 1, 3) * self.start_noise
        env.arm.move_to_joints(self.world.ik(start, DOWN, self._q_start))
        if env.gripper is not None:
            env.gripper.command(env.gripper.max_width)

    def settle(self, seconds: float = 0.1) -> None:
        self.world.advance(seconds)

    @property
    def tcp(self) -> np.ndarray:
        return self.world.tcp_position()


class PandaReach(SimTask):
    goal_low, goal_high = np.array([0.33, -0.15, 0.08]), np.array([0.57, 0.15, 0.3])
    tolerance = 0.02

    def __init__(self):
        super().__init__(name="PandaReach", instruction="move the gripper to the green sphere",
                         action=ActionConfig(dofs=("x", "y", "z"), gripper=False, step_pos=0.03),
                         safety=SafetyBox((0.25, -0.25, 0.05), (0.65, 0.25, 0.4),
                                          (3.0, -0.15, -0.15), (-3.0, 0.15, 0.15)),
                         max_episode_steps=30)
        self.goal = np.array([0.45, 0.0, 0.2])  # shown by the "goal" marker

    def reset(self, env, rng):
        self.reset_arm(env, rng)
        self.goal = rng.uniform(self.goal_low, self.goal_high)
        self.world.set_marker("goal", self.goal)
        self.settle(0.02)

    def env_state(self):
        return np.concatenate([self.goal, self.goal - self.tcp])

    def evaluate(self, env) -> Evaluation:
        d = float(np.linalg.norm(self.tcp - self.goal))
        return Evaluation(reward=1.0 - np.tanh(10.0 * d), success=d < self.tolerance)


class PandaPickCube(SimTask):
    half = 0.02  # the "cube" body's half size
    cube_low, cube_high = np.array([0.35, -0.15]), np.array([0.55, 0.15])
    lift_height = 0.05

    def __init__(self):
        super().__init__(name="PandaPickCube", instruction="pick up the red cube",
                         action=ActionConfig(dofs=("x", "y", "z"), gripper=True, step_pos=0.03),
                         safety=SafetyBox((0.25, -0.25, 0.005), (0.65, 0.25, 0.35),
                                          (3.0, -0.15, -0.15), (-3.0, 0.15, 0.15)),
                         max_episode_steps=50)

    @property
    def cube_pos(self) -> np.ndarray:
        return self.world.body_position("cube")

    def reset(self, env, rng):
        self.reset_arm(env, rng)
        self.world.place_body("cube", [*rng.uniform(self.cube_low, self.cube_high),
                                       TABLE_Z + self.half])
        self.settle(0.1)

    def env_state(self):
        cube = self.cube_pos
        return np.concatenate([cube, cube - self.tcp])

    @property
    def lift(self) -> float:
        """Height of the cube above its resting height (m); success is lift >= lift_height."""
        return float(self.cube_pos[2] - (TABLE_Z + self.half))

    def evaluate(self, env) -> Evaluation:
        cube, lift = self.cube_pos, self.lift
        reach = 1.0 - np.tanh(10.0 * float(np.linalg.norm(self.tcp - cube)))
        dense = 0.3 * reach + 0.7 * float(np.clip(lift / self.lift_height, 0.0, 1.0))
        return Evaluation(reward=dense, success=lift >= self.lift_height)


class PandaPegInsert(SimTask):
    """A 25 mm square peg held in the gripper goes into a hole with 1 mm clearance per side.
    Pressing a misaligned peg onto the rim is exactly where the impedance error clip bounds the
    contact force (K * clip) instead of letting it grow with the target distance.

    MuJoCo only: the peg is part of the hand, and its tip is read from the model's "peg_tip"
    site. The "hole" body is placed through the `World` interface."""
    peg_half, clearance, hole_depth, wall = 0.0125, 0.001, 0.04, 0.02
    peg_len = 0.05      # below the TCP
    insert_depth = 0.025
    hole_low, hole_high = np.array([0.40, -0.10]), np.array([0.52, 0.10])
    start_pos = np.array([0.46, 0.0, 0.2])

    def __init__(self):
        super().__init__(name="PandaPegInsert", instruction="insert the peg into the hole",
                         action=ActionConfig(dofs=("x", "y", "z"), gripper=False, step_pos=0.02),
                         safety=SafetyBox((0.3, -0.2, 0.05), (0.62, 0.2, 0.3),
                                          (3.0, -0.15, -0.15), (-3.0, 0.15, 0.15)),
                         max_episode_steps=60)

    def bind(self, world):
        super().bind(world)
        self._tip = world.model.site("peg_tip").id

    @property
    def hole_pos(self) -> np.ndarray:
        return self.world.body_position("hole")

    @property
    def peg_tip(self) -> np.ndarray:
        return self.world.data.site_xpos[self._tip]

    def reset(self, env, rng):
        self.reset_arm(env, rng)
        self.world.place_body("hole", [*rng.uniform(self.hole_low, self.hole_high), TABLE_Z])
        if env.gripper is not None:
            env.gripper.command(2 * self.peg_half)  # fingers rest on the peg
        self.settle(0.05)

    def env_state(self):
        return np.concatenate([self.hole_pos, self.hole_pos - self.peg_tip])

    def evaluate(self, env) -> Evaluation:
        hole, tip = self.hole_pos, self.peg_tip
        goal = hole + [0, 0, self.hole_depth - self.insert_depth]
        depth = hole[2] + self.hole_depth - tip[2]
        aligned = np.linalg.norm(tip[:2] - hole[:2]) < self.clearance + 0.002
        return Evaluation(reward=1.0 - np.tanh(10.0 * float(np.linalg.norm(tip - goal))),
                          success=bool(aligned and depth >= self.insert_depth))


TASKS = {"PandaReach": PandaReach, "PandaPickCube": PandaPickCube,
         "PandaPegInsert": PandaPegInsert}
