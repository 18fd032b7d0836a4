"""Simulated tasks on the MuJoCo HAL. Each builds its scene, randomizes it from the env's
seeded generator (never global np.random) and scores it from privileged state."""
from __future__ import annotations

import numpy as np

from robot_rl.controllers.safety import SafetyBox
from robot_rl.hardware.task import ActionConfig, Evaluation, TaskBase
from robot_rl.sim.panda_model import HOME_Q
from robot_rl.sim.world import SimWorld, solve_ik

DOWN = np.array([1.0, 0.0, 0.0, 0.0])  # xyzw: gripper pointing at the table, fingers along y
TABLE_Z = 0.0


class SimTask(TaskBase):
    """Common reset: fresh physics state, arm teleported to a (randomized) start pose.

    `env_state` (privileged, state-only variants) is the object's position and its offset from
    the TCP: the offset makes "move toward the object" a near-linear function of the input,
    which is what a policy has to learn first."""
    start_pos = np.array([0.45, 0.0, 0.22])
    start_noise = np.array([0.03, 0.03, 0.02])
    objects_xml = ""
    hand_xml = ""

    def bind(self, world: SimWorld) -> None:
        self.world = world
        self._q_start = solve_ik(world, self.start_pos, DOWN, HOME_Q)
        self.home_quat = DOWN

    def reset_arm(self, env, rng: np.random.Generator) -> None:
        self.world.reset()
        start = self.start_pos + rng.uniform(-1, 1, 3) * self.start_noise
        env.arm.move_to_joints(solve_ik(self.world, start, DOWN, self._q_start))
        if env.gripper is not None:
            env.gripper.command(env.gripper.max_width)

    def settle(self, seconds: float = 0.1) -> None:
        self.world.advance(seconds)

    @property
    def tcp(self) -> np.ndarray:
        return self.world.data.site_xpos[self.world.tcp_site]


class PandaReach(SimTask):
    objects_xml = ('<site name="goal" pos="0.45 0 0.2" size="0.015" rgba="0.1 0.8 0.1 0.6" '
                   'type="sphere"/>')
    goal_low, goal_high = np.array([0.33, -0.15, 0.08]), np.array([0.57, 0.15, 0.3])
    tolerance = 0.02

    def __init__(self):
        super().__init__(name="PandaReach", instruction="move the gripper to the green sphere",
                         action=ActionConfig(dofs=("x", "y", "z"), gripper=False, step_pos=0.03),
                         safety=SafetyBox((0.25, -0.25, 0.05), (0.65, 0.25, 0.4),
                                          (3.0, -0.15, -0.15), (-3.0, 0.15, 0.15)),
                         max_episode_steps=30)

    def bind(self, world):
        super().bind(world)
        self._goal_site = world.model.site("goal").id

    @property
    def goal(self) -> np.ndarray:
        return self.world.model.site_pos[self._goal_site]

    def reset(self, env, rng):
        self.reset_arm(env, rng)
        self.world.model.site_pos[self._goal_site] = rng.uniform(self.goal_low, self.goal_high)
        self.settle(0.02)

    def env_state(self):
        return np.concatenate([self.goal, self.goal - self.tcp])

    def evaluate(self, env) -> Evaluation:
        d = float(np.linalg.norm(self.tcp - self.goal))
        return Evaluation(reward=1.0 - np.tanh(10.0 * d), success=d < self.tolerance)


class PandaPickCube(SimTask):
    half = 0.02
    objects_xml = ('<body name="cube" pos="0.45 0 0.02"><freejoint name="cube"/>'
                   '<geom name="cube" class="object" type="box" size="0.02 0.02 0.02" mass="0.05" '
                   'rgba="0.85 0.15 0.1 1"/></body>')
    cube_low, cube_high = np.array([0.35, -0.15]), np.array([0.55, 0.15])
    lift_height = 0.05

    def __init__(self):
        super().__init__(name="PandaPickCube", instruction="pick up the red cube",
                         action=ActionConfig(dofs=("x", "y", "z"), gripper=True, step_pos=0.03),
                         safety=SafetyBox((0.25, -0.25, 0.005), (0.65, 0.25, 0.35),
                                          (3.0, -0.15, -0.15), (-3.0, 0.15, 0.15)),
                         max_episode_steps=50)

    def bind(self, world):
        super().bind(world)
        m = world.model
        self._qadr = m.jnt_qposadr[m.joint("cube").id]

    @property
    def cube_pos(self) -> np.ndarray:
        return self.world.data.qpos[self._qadr:self._qadr + 3]

    def reset(self, env, rng):
        self.reset_arm(env, rng)
        q = self.world.data.qpos
        q[self._qadr:self._qadr + 2] = rng.uniform(self.cube_low, self.cube_high)
        q[self._qadr + 2] = TABLE_Z + self.half
        q[self._qadr + 3:self._qadr + 7] = [1, 0, 0, 0]
        self.settle(0.1)

    def env_state(self):
        return np.concatenate([self.cube_pos, self.cube_pos - self.tcp])

    def evaluate(self, env) -> Evaluation:
        lift = float(self.cube_pos[2] - (TABLE_Z + self.half))
        reach = 1.0 - np.tanh(10.0 * float(np.linalg.norm(self.tcp - self.cube_pos)))
        dense = 0.3 * reach + 0.7 * float(np.clip(lift / self.lift_height, 0.0, 1.0))
        return Evaluation(reward=dense, success=lift >= self.lift_height)


class PandaPegInsert(SimTask):
    """A 25 mm square peg held in the gripper goes into a hole with 1 mm clearance per side.
    Pressing a misaligned peg onto the rim is exactly where the impedance error clip bounds the
    contact force (K * clip) instead of letting it grow with the target distance."""
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
        h, c, w, depth = self.peg_half, self.clearance, self.wall, self.hole_depth
        inner = h + c
        walls = "".join(
            f'<geom class="object" type="box" size="{sx} {sy} {depth / 2}" pos="{px} {py} {depth / 2}" '
            f'rgba="0.2 0.35 0.8 1"/>'
            for sx, sy, px, py in [(w / 2, inner + w, inner + w / 2, 0), (w / 2, inner + w, -inner - w / 2, 0),
                                   (inner, w / 2, 0, inner + w / 2), (inner, w / 2, 0, -inner - w / 2)])
        self.objects_xml = f'<body name="hole" mocap="true" pos="0.46 0 0">{walls}</body>'
        # the peg is part of the hand: from 1 cm above the TCP to peg_len below it
        top, bottom = -0.01, self.peg_len
        self.hand_xml = (f'<geom name="peg" class="object" type="box" size="{h} {h} {(bottom - top) / 2}" '
                         f'pos="0 0 {0.1034 + (top + bottom) / 2}" mass="0.05" rgba="0.9 0.6 0.1 1"/>'
                         f'<site name="peg_tip" pos="0 0 {0.1034 + bottom}" size="0.003"/>')

    def bind(self, world):
        super().bind(world)
        m = world.model
        self._mocap = m.body_mocapid[m.body("hole").id]
        self._tip = m.site("peg_tip").id

    @property
    def hole_pos(self) -> np.ndarray:
        return self.world.data.mocap_pos[self._mocap]

    @property
    def peg_tip(self) -> np.ndarray:
        return self.world.data.site_xpos[self._tip]

    def reset(self, env, rng):
        self.reset_arm(env, rng)
        self.world.data.mocap_pos[self._mocap] = [*rng.uniform(self.hole_low, self.hole_high), TABLE_Z]
        if env.gripper is not None:
            env.gripper.command(2 * self.peg_half)  # fingers rest on the peg
        self.settle(0.05)

    def env_state(self):
        return np.concatenate([self.hole_pos, self.hole_pos - self.peg_tip])

    def evaluate(self, env) -> Evaluation:
        goal = self.hole_pos + [0, 0, self.hole_depth - self.insert_depth]
        tip = self.peg_tip
        depth = self.hole_pos[2] + self.hole_depth - tip[2]
        aligned = np.linalg.norm(tip[:2] - self.hole_pos[:2]) < self.clearance + 0.002
        return Evaluation(reward=1.0 - np.tanh(10.0 * float(np.linalg.norm(tip - goal))),
                          success=bool(aligned and depth >= self.insert_depth))


TASKS = {"PandaReach": PandaReach, "PandaPickCube": PandaPickCube,
         "PandaPegInsert": PandaPegInsert}
