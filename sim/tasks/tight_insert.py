"""PandaTightInsert: a 20 mm square peg held in the gripper goes into a hole with 0.4 mm
clearance per side (SERL's PCB-component insertions are of this order), the hole at a random
position and turned by a random yaw, with a 45-degree chamfer (4 mm) around its mouth. MuJoCo
only.

The policy moves the TCP in x, y, z and turns it about the vertical (yaw); roll and pitch are
held at gripper-down. The peg must match the hole's yaw to within ~0.04 rad (the clearance over
the half-diagonal) before it can enter. This is where impedance control earns its keep: with
the peg a little off, the chamfer pushes it sideways and the compliant controller lets it
slide, with the error clip bounding how hard it presses; a stiff position controller would jam
or press until something gives."""
from __future__ import annotations

import numpy as np

from robot_rl.controllers.frames import quat_to_rpy, wrap_angle
from robot_rl.controllers.safety import SafetyBox
from robot_rl.hardware.task import ActionConfig
from robot_rl.sim.tasks.base import TABLE_Z, ScriptedExpert, SimTask
from robot_rl.sim.tasks.peg_insert import PandaPegInsert


def square_yaw_error(target: float, yaw: float) -> float:
    """The yaw turn (rad, within +-pi/4) that aligns a square with another: a square is the same
    every quarter turn."""
    return float((target - yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)


class PandaTightInsert(PandaPegInsert):
    """PandaPegInsert's hole, peg, reward and success, tighter and turned, with a chamfer."""
    max_episode_steps = 80
    peg_half, clearance, hole_depth, wall, chamfer = 0.01, 0.0004, 0.03, 0.02, 0.004
    insert_depth = 0.02
    max_hole_yaw = 0.35
    # metal on a machined hole (MuJoCo takes the larger of the two): below tan(45 deg), so the
    # chamfer can push the peg sideways instead of wedging it
    friction = "0.3 0.005 0.0001"
    center_margin = 0.001

    def __init__(self, fine_offset_scale: float | None = 0.001):
        self.fine_offset_scale = fine_offset_scale
        SimTask.__init__(self, name="PandaTightInsert", instruction="insert the peg into the hole",
                         action=ActionConfig(dofs=("x", "y", "z", "yaw"), gripper=False,
                                             step_pos=0.01, step_rot=0.1),
                         safety=SafetyBox((0.3, -0.2, 0.03), (0.62, 0.2, 0.3),
                                          (3.0, -0.15, -0.5), (-3.0, 0.15, 0.5)))
        self.hole_yaw = 0.0

    def hole_mouth(self, inner: float, mu: str) -> str:
        """The chamfer: a 45-degree plate on each side, its inner face from the rim (inner,
        depth) up and out to (inner + c, depth + c); the plate lies behind that face."""
        depth, c, t = self.hole_depth, self.chamfer, 0.001
        r = inner + c / 2 + t / np.sqrt(2)
        z = depth + c / 2 - t / np.sqrt(2)
        size = f"{c / np.sqrt(2) / 2 + t} {inner + c} {t}"

        def plate(a: float) -> str:  # turned to side `a`, then tilted 45 deg up and out
            qz = np.array([np.cos(a / 2), 0, 0, np.sin(a / 2)])
            w, x, y, zq = qz[0] * np.cos(-np.pi / 8), -qz[3] * np.sin(-np.pi / 8), \
                qz[0] * np.sin(-np.pi / 8), qz[3] * np.cos(-np.pi / 8)  # qz * qy(-pi/4), wxyz
            return (f'<geom class="object" type="box" size="{size}" '
                    f'pos="{r * np.cos(a):.6f} {r * np.sin(a):.6f} {z:.6f}" '
                    f'quat="{w:.6f} {x:.6f} {y:.6f} {zq:.6f}"{mu} rgba="0.3 0.45 0.9 1"/>')
        return "".join(plate(a) for a in (0.0, np.pi / 2, np.pi, -np.pi / 2))

    @property
    def peg_yaw(self) -> float:
        """The hand's yaw (the peg is square in the hand frame); 0 at the start pose."""
        return float(wrap_angle(quat_to_rpy(self.world.tcp_pose()[3:])[2]))

    def reset(self, env, rng):
        self.reset_arm(env, rng)
        self.hole_yaw = float(rng.uniform(-self.max_hole_yaw, self.max_hole_yaw))
        self.world.place_body("hole", [*rng.uniform(self.hole_low, self.hole_high), TABLE_Z],
                              yaw=self.hole_yaw)
        if env.gripper is not None:
            env.gripper.command(2 * self.peg_half)  # fingers rest on the peg
        self.settle(0.05)

    def env_state(self):
        return np.concatenate([super().env_state(),
                               [square_yaw_error(self.hole_yaw, self.peg_yaw)]])


class TightInsertExpert(ScriptedExpert):
    """Turn to the hole's yaw and hover over it, then descend slowly, re-centring as it goes.
    A failing episode presses down 3 mm off-centre with the yaw not matched."""

    def plan(self):
        t = self.task
        hole, tcp = t.hole_pos.copy(), t.tcp
        turn = np.clip(square_yaw_error(t.hole_yaw, t.peg_yaw) / t.action.step_rot, -1.0, 1.0)
        hover = hole + [0, 0, t.hole_depth + t.chamfer + t.peg_len + 0.008]
        if self.failing:
            return np.append(self.move(hole + [0.003, 0, t.peg_len]), 0.0)
        xy_err = np.linalg.norm(tcp[:2] - hole[:2])
        if self.phase == 0:
            if xy_err < 0.0005 and abs(tcp[2] - hover[2]) < 0.005 and abs(turn) < 0.1:
                self.phase = 1
            return np.append(self.move(hover), turn)
        bottom = hole + [0, 0, t.hole_depth - t.insert_depth - 0.006 + t.peg_len]
        a = self.move(np.array([hole[0], hole[1], bottom[2]]))
        a[2] = max(a[2], -0.3)  # a slow descent: the chamfer and the compliance do the rest
        return np.append(a, turn)
