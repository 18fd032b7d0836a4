"""PandaRelocate: move the cube from zone A to zone B ("forward") or back ("backward"), in the
spirit of SERL's object relocation. Two directions of one scene make it a reset-free task: the
backward policy's success is the forward policy's start, so training can alternate between them
without anyone resetting the scene (`env.reset(options={"reset_free": True, "direction": ...})`).
"""
from __future__ import annotations

import numpy as np

from robot_rl.hardware.task import Outcome
from robot_rl.sim.tasks.base import TABLE_Z
from robot_rl.sim.tasks.pick_cube import PandaPickCube, PickCubeExpert


class PandaRelocate(PandaPickCube):
    """The cube (PandaPickCube's) and two flat zones on the table, drawn as visual-only pads the
    cameras see. Success: the cube rests inside the goal zone and the gripper has let go (open
    wider than the cube), so holding the cube above the zone does not count."""
    max_episode_steps = 100
    zones = {"A": np.array([0.45, -0.12]), "B": np.array([0.45, 0.12])}
    zone_half = 0.05                          # the pads are 10 cm squares
    zone_rgba = {"A": (0.2, 0.4, 0.9, 1.0), "B": (0.95, 0.8, 0.1, 1.0)}
    directions = ("forward", "backward")      # forward: A -> B; backward: B -> A
    rest_tolerance = 0.01                     # cube centre within 1 cm of its resting height

    def __init__(self, direction: str = "forward"):
        super().__init__()
        self.name, self.instruction = "PandaRelocate", ""
        self.set_direction(direction)

    def set_direction(self, direction: str) -> None:
        """Switch the goal without touching the scene."""
        if direction not in self.directions:
            raise ValueError(f"PandaRelocate direction must be one of {self.directions}, got {direction!r}")
        self.direction = direction
        self.start_zone, self.goal_zone = ("A", "B") if direction == "forward" else ("B", "A")
        self.instruction = f"move the red cube to the {'yellow' if self.goal_zone == 'B' else 'blue'} zone"

    @property
    def goal(self) -> np.ndarray:
        return self.zones[self.goal_zone]

    def mjcf(self):
        cube, hand = super().mjcf()
        h = self.zone_half
        pads = "".join(f'<site name="zone_{z}" type="box" pos="{c[0]} {c[1]} {TABLE_Z + 0.0005}" '
                       f'size="{h} {h} 0.0005" rgba="{" ".join(map(str, self.zone_rgba[z]))}"/>'
                       for z, c in self.zones.items())
        return pads + cube, hand

    def reset(self, env, rng):
        self.reset_arm(env, rng)
        spread = self.zone_half - self.half - 0.005  # the whole cube inside its start zone
        xy = self.zones[self.start_zone] + rng.uniform(-spread, spread, 2)
        self.world.place_body("cube", [*xy, TABLE_Z + self.half])
        self.settle(0.1)

    def env_state(self):
        cube = self.cube_pos
        return np.concatenate([cube, cube - self.tcp, self.goal])

    def score(self, tcp, cube, goal, opening, xp=np):
        """(dense reward in [0, 1], success) of TCP and cube positions, the goal zone's centre
        (xy) and the gripper opening [m]: 0.2 for reaching the cube, 0.5 for bringing it over
        the goal zone, 0.3 for the success itself."""
        in_zone = xp.all(xp.abs(cube[:2] - goal) <= self.zone_half)
        resting = xp.abs(cube[2] - (TABLE_Z + self.half)) <= self.rest_tolerance
        released = opening > 2 * self.half + 0.005
        success = in_zone & resting & released
        reach = 1.0 - xp.tanh(10.0 * xp.linalg.norm(tcp - cube))
        carry = 1.0 - xp.tanh(5.0 * xp.linalg.norm(cube[:2] - goal))
        return 0.2 * reach + 0.5 * carry + 0.3 * success, success

    def outcome(self, env) -> Outcome:
        reward, success = self.score(self.tcp, self.cube_pos, self.goal, env.gripper.state().width)
        return Outcome(reward=float(reward), success=bool(success))


class RelocateExpert(PickCubeExpert):
    """Pick the cube (PickCubeExpert's approach and grasp), carry it above the goal zone, lower
    it, open, retreat. Works from wherever the cube is, so it also drives reset-free legs.
    Botched episodes (`fail_prob`) keep PickCubeExpert's failures: no grasp, or a grasp in the air."""
    carry_z = 0.12

    def reset(self) -> None:
        super().reset()
        self.lift_z = self.carry_z

    def plan(self):
        if self.phase < 3 or self.failing:
            return super().plan()
        t = self.task
        cube, tcp = t.cube_pos, t.tcp
        open_, close = -1.0, 1.0
        above_goal = np.array([*t.goal, self.carry_z])
        if self.phase == 3:  # lift, then carry above the goal zone
            target = above_goal if cube[2] > TABLE_Z + t.half + 0.03 else np.array([*tcp[:2], self.carry_z])
            if np.linalg.norm(tcp[:2] - t.goal) < 0.01 and abs(tcp[2] - self.carry_z) < 0.02:
                self.phase = 4
            return np.append(self.move(target), close)
        if self.phase == 4:  # lower the cube onto the zone
            target = np.array([*t.goal, TABLE_Z + t.half + 0.004])
            if abs(cube[2] - (TABLE_Z + t.half)) < 0.004 or tcp[2] < target[2] + 0.003:
                self.phase, self.count = 5, 0
            return np.append(self.move(target), close)
        if self.phase == 5:  # open in place
            self.count += 1
            if self.count >= 4:
                self.phase = 6
            return np.append(np.zeros(3), open_)
        return np.append(self.move(np.array([*tcp[:2], self.carry_z])), open_)  # 6: retreat up
