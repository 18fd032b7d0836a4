"""PandaPegInsert: a 25 mm square peg held in the gripper goes into a hole with 1 mm clearance
per side, the hole placed at a uniformly drawn spot on the table. MuJoCo only."""
from __future__ import annotations

import numpy as np

from robot_rl.controllers.safety import SafetyBox
from robot_rl.hardware.task import ActionConfig, Outcome, log_scaled
from robot_rl.sim.tasks.base import TABLE_Z, ScriptedExpert, SimTask


class PandaPegInsert(SimTask):
    """Pressing a misaligned peg onto the rim is exactly where the impedance error clip bounds
    the contact force (K * clip) instead of letting it grow with the target distance.

    The peg is part of the hand, and its tip is read from the model's "peg_tip" site. The
    "hole" body is placed through the `World` interface."""
    max_episode_steps = 60
    peg_half, clearance, hole_depth, wall = 0.0125, 0.001, 0.04, 0.02
    peg_len = 0.05      # below the TCP
    insert_depth = 0.025
    hole_low, hole_high = np.array([0.40, -0.10]), np.array([0.52, 0.10])
    start_pos = np.array([0.46, 0.0, 0.2])
    friction: str | None = None  # of the peg and the hole (None: the "object" class default)
    center_margin = 0.002  # success: the tip within clearance + this of the hole's axis

    def __init__(self, fine_offset_scale: float | None = 0.001):
        self.fine_offset_scale = fine_offset_scale
        super().__init__(name="PandaPegInsert", instruction="insert the peg into the hole",
                         action=ActionConfig(dofs=("x", "y", "z"), gripper=False, step_pos=0.02),
                         safety=SafetyBox((0.3, -0.2, 0.05), (0.62, 0.2, 0.3),
                                          (3.0, -0.15, -0.15), (-3.0, 0.15, 0.15)))

    def mjcf(self):
        h, w, depth = self.peg_half, self.wall, self.hole_depth
        inner = h + self.clearance
        mu = f' friction="{self.friction}"' if self.friction else ""
        walls = "".join(
            f'<geom class="object" type="box" size="{sx} {sy} {depth / 2}" '
            f'pos="{px} {py} {depth / 2}"{mu} rgba="0.2 0.35 0.8 1"/>'
            for sx, sy, px, py in [(w / 2, inner + w, inner + w / 2, 0),
                                   (w / 2, inner + w, -inner - w / 2, 0),
                                   (inner, w / 2, 0, inner + w / 2),
                                   (inner, w / 2, 0, -inner - w / 2)])
        # the peg is part of the hand: from 1 cm above the TCP to peg_len below it
        top, bottom = -0.01, self.peg_len
        return (f'<body name="hole" mocap="true" pos="0.46 0 {TABLE_Z}">{walls}'
                f'{self.hole_mouth(inner, mu)}</body>',
                f'<geom name="peg" class="object" type="box" size="{h} {h} {(bottom - top) / 2}" '
                f'pos="0 0 {0.1034 + (top + bottom) / 2}" mass="0.05"{mu} rgba="0.9 0.6 0.1 1"/>'
                f'<site name="peg_tip" pos="0 0 {0.1034 + bottom}" size="0.003"/>')

    def hole_mouth(self, inner: float, mu: str) -> str:
        """Extra geoms around the hole's mouth (a chamfer); none here: a plain square rim."""
        return ""

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
        offset = self.hole_pos - self.peg_tip
        return np.concatenate([self.hole_pos, offset, *self.fine_offset(offset)])

    def fine_offset(self, offset: np.ndarray) -> list[np.ndarray]:
        """With `fine_offset_scale` (m), the offset once more, log-scaled from that scale up."""
        return [log_scaled(offset, self.fine_offset_scale)] if self.fine_offset_scale else []

    def score(self, tip, hole, xp=np):
        """(dense reward in [0, 1], success) of the peg tip and the hole's position: success is
        the tip centred within the clearance (+ center_margin) and insert_depth deep."""
        goal = hole + xp.asarray([0.0, 0.0, self.hole_depth - self.insert_depth])
        depth = hole[2] + self.hole_depth - tip[2]
        aligned = xp.linalg.norm(tip[:2] - hole[:2]) < self.clearance + self.center_margin
        return (1.0 - xp.tanh(10.0 * xp.linalg.norm(tip - goal)),
                aligned & (depth >= self.insert_depth))

    def outcome(self, env) -> Outcome:
        reward, success = self.score(self.peg_tip, self.hole_pos)
        return Outcome(reward=float(reward), success=bool(success))


class PegInsertExpert(ScriptedExpert):
    def plan(self):
        t = self.task
        hole, tcp = t.hole_pos.copy(), t.tcp
        hover = hole + [0, 0, t.hole_depth + t.peg_len + 0.012]
        if self.failing:  # press down 4 mm off-centre: lands on the rim
            return self.move(hole + [0.004 + t.clearance, 0, t.peg_len])
        xy_err = np.linalg.norm(tcp[:2] - hole[:2])
        if self.phase == 0:
            if xy_err < 0.0008 and abs(tcp[2] - hover[2]) < 0.01:
                self.phase = 1
            return self.move(hover)
        if xy_err > 0.001:  # drifted onto the rim: back off a little and re-centre
            return self.move(np.array([hole[0], hole[1], max(tcp[2], hover[2] - 0.006)]))
        bottom = hole + [0, 0, t.hole_depth - t.insert_depth - 0.006 + t.peg_len]
        a = self.move(bottom)
        a[2] = max(a[2], -0.4)  # slow descent keeps the xy tracking error inside the clearance
        return a
