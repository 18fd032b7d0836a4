"""PandaPickCube: lift a 4 cm cube, placed at a uniformly drawn spot on the table, by 5 cm."""
from __future__ import annotations

import numpy as np

from robot_rl.controllers.safety import SafetyBox
from robot_rl.hardware.task import ActionConfig, Outcome
from robot_rl.sim.tasks.base import TABLE_Z, ScriptedExpert, SimTask


class PandaPickCube(SimTask):
    max_episode_steps = 50
    half = 0.02  # the "cube" body's half size
    mass, rgba = 0.05, (0.85, 0.15, 0.1, 1.0)
    cube_low, cube_high = np.array([0.35, -0.15]), np.array([0.55, 0.15])
    lift_height = 0.05

    def __init__(self):
        super().__init__(name="PandaPickCube", instruction="pick up the red cube",
                         action=ActionConfig(dofs=("x", "y", "z"), gripper=True, step_pos=0.03),
                         safety=SafetyBox((0.25, -0.25, 0.005), (0.65, 0.25, 0.35),
                                          (3.0, -0.15, -0.15), (-3.0, 0.15, 0.15)))

    def mjcf(self):
        h = self.half
        return (f'<body name="cube" pos="0.45 0 {TABLE_Z + h}"><freejoint name="cube"/>'
                f'<geom name="cube" class="object" type="box" size="{h} {h} {h}" '
                f'mass="{self.mass}" rgba="{" ".join(map(str, self.rgba))}"/></body>', "")

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

    def score(self, tcp, cube, xp=np):
        """(dense reward in [0, 1], success) of a TCP and a cube position: 0.3 for reaching
        the cube, 0.7 for lifting it (full at lift_height)."""
        lift = cube[2] - (TABLE_Z + self.half)
        reach = 1.0 - xp.tanh(10.0 * xp.linalg.norm(tcp - cube))
        return (0.3 * reach + 0.7 * xp.clip(lift / self.lift_height, 0.0, 1.0),
                lift >= self.lift_height)

    def outcome(self, env) -> Outcome:
        reward, success = self.score(self.tcp, self.cube_pos)
        return Outcome(reward=float(reward), success=bool(success))


class PickCubeExpert(ScriptedExpert):
    """`lift_to`: (low, high) gripper heights (m); each episode lifts to one drawn uniformly
    (default: always 2.5x the success height). Success-classifier data needs the spread: with
    one lift height, "arm raised" alone separates lifted frames from the rest."""

    def __init__(self, env, lift_to: tuple[float, float] | None = None, **kwargs):
        self.lift_to = lift_to
        super().__init__(env, **kwargs)

    def reset(self) -> None:
        super().reset()
        self.lift_z = (0.02 + 2.5 * self.task.lift_height if self.lift_to is None
                       else float(self.rng.uniform(*self.lift_to)))

    def plan(self):
        t = self.task
        cube, tcp = t.cube_pos.copy(), t.tcp
        open_, close = -1.0, 1.0
        lift = np.array([cube[0], cube[1], self.lift_z])
        if self.failing and self.fail_mode == 1:  # closes 6 cm above the cube, lifts nothing
            self.count += 1
            return np.append(self.move(cube + [0, 0, 0.06] if self.count < 15 else lift),
                             close if self.count >= 10 else open_)
        if self.phase == 0:  # above the cube
            target = cube + [0, 0, 0.06]
            if np.linalg.norm(tcp[:2] - cube[:2]) < 0.006 and abs(tcp[2] - target[2]) < 0.03:
                self.phase = 1
            return np.append(self.move(target), open_)
        if self.phase == 1:  # down around it
            target = cube + [0, 0, 0.002]
            if np.linalg.norm(tcp - target) < 0.006:
                self.phase = 2
            return np.append(self.move(target), open_)
        if self.phase == 2:  # close
            self.count += 1
            if self.count >= 3:
                self.phase = 3
            return np.append(self.move(cube + [0, 0, 0.002]), open_ if self.failing else close)
        return np.append(self.move(lift), open_ if self.failing else close)  # 3: lift
