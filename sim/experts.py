"""Scripted experts for the simulated tasks: privileged-state controllers that produce demos.

`noise` adds Gaussian action noise and `fail_prob` makes an episode deliberately botched (the
gripper never closes or closes in the air / the arm wanders), for mixed-quality datasets and
for the negatives a success classifier must see (a raised arm with a closed, empty gripper).
"""
from __future__ import annotations

import numpy as np


class ScriptedExpert:
    def __init__(self, env, noise: float = 0.0, fail_prob: float = 0.0, seed: int | None = None):
        self.env = env.unwrapped
        self.task = self.env.task
        self.noise, self.fail_prob = noise, fail_prob
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        self.phase, self.count = 0, 0
        self.failing = self.rng.random() < self.fail_prob
        self.fail_mode = int(self.rng.integers(2)) if self.failing else 0

    def move(self, target: np.ndarray) -> np.ndarray:
        return np.clip((target - self.task.tcp) / self.task.action.step_pos, -1.0, 1.0)

    def plan(self) -> np.ndarray:
        raise NotImplementedError

    def act(self, obs=None) -> np.ndarray:
        a = self.plan()
        if self.noise > 0:
            a = a + self.rng.normal(0.0, self.noise, a.shape)
        return np.clip(a, -1.0, 1.0).astype(np.float32)


class ReachExpert(ScriptedExpert):
    def plan(self):
        goal = self.task.goal if not self.failing else self.task.goal + [0.0, 0.0, 0.08]
        return self.move(goal)


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


EXPERTS = {"PandaReach": ReachExpert, "PandaPickCube": PickCubeExpert,
           "PandaPegInsert": PegInsertExpert}


def make_expert(env, **kwargs) -> ScriptedExpert:
    name = env.unwrapped.task.name
    if name not in EXPERTS:
        raise ValueError(f"no scripted expert for task {name!r}; have {sorted(EXPERTS)}")
    return EXPERTS[name](env, **kwargs)


def rollout(env, expert: ScriptedExpert, seed: int):
    """One expert episode: (observations, actions, rewards, infos, success)."""
    obs, info = env.reset(seed=seed)
    expert.reset()
    observations, actions, rewards, infos = [obs], [], [], []
    done = False
    while not done:
        a = expert.act(obs)
        obs, r, term, trunc, info = env.step(a)
        observations.append(obs)
        actions.append(a)
        rewards.append(r)
        infos.append(info)
        done = term or trunc
    return observations, actions, rewards, infos, bool(info["is_success"])
