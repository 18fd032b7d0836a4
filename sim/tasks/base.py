"""What every simulated task shares: the `World` a task drives (any physics backend), the
`SimTask` reset (fresh physics, arm at a randomized start pose) and the `ScriptedExpert` base.
The tasks themselves are one file each next to this one."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from robot_rl.hardware.task import TaskBase

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
    def place_body(self, name: str, pos, yaw: float = 0.0) -> None: ...  # at rest
    home_q: np.ndarray                                        # the arm's IK seed


class SimTask(TaskBase):
    """Common reset: fresh physics state, arm teleported to a (randomized) start pose.

    A task sets `max_episode_steps` on its class, once: its episodes and the gymnasium time
    limit (robot_rl/registry.py) both read it. `score(..., xp)` is its reward and success as
    array maths, so the MuJoCo task (`xp=numpy`) and the batched MJX env (`xp=jax.numpy`) run
    the same definition.

    `env_state` (privileged, state-only variants) is the object's position and its offset from
    the TCP: the offset makes "move toward the object" a near-linear function of the input,
    which is what a policy has to learn first."""
    max_episode_steps: int
    arm = "panda"  # the simulated arm the task is built for (sim/envs.py ARMS)
    start_pos = np.array([0.45, 0.0, 0.22])
    start_noise = np.array([0.03, 0.03, 0.02])

    def __init__(self, **fields):
        super().__init__(max_episode_steps=type(self).max_episode_steps, **fields)

    def mjcf(self) -> tuple[str, str]:
        """The task's MuJoCo scene: (objects in the world body, extras in the hand body)."""
        raise NotImplementedError

    def bind(self, world: World) -> None:
        self.world = world
        self._q_start = world.ik(self.start_pos, DOWN, world.home_q)
        self.home_quat = DOWN

    def reset_arm(self, env, rng: np.random.Generator) -> None:
        self.world.reset()
        start = self.start_pos + rng.uniform(-1, 1, 3) * self.start_noise
        env.arm.move_to_joints(self.world.ik(start, DOWN, self._q_start))
        if env.gripper is not None:
            env.gripper.command(env.gripper.max_width)

    def home_arm(self, env, rng: np.random.Generator) -> None:
        """Only the arm back to a start pose (open gripper first, so a held object drops where
        it is); the objects are left as they are, as on a real arm resetting itself."""
        if env.gripper is not None:
            env.gripper.command(env.gripper.max_width)
            self.settle(0.2)
        start = self.start_pos + rng.uniform(-1, 1, 3) * self.start_noise
        env.arm.move_to_joints(self.world.ik(start, DOWN, self._q_start))
        self.settle(0.1)

    def settle(self, seconds: float = 0.1) -> None:
        self.world.advance(seconds)

    @property
    def tcp(self) -> np.ndarray:
        return self.world.tcp_position()


class ScriptedExpert:
    """A privileged-state controller that produces demos for one task (each task file has one).

    `noise` adds Gaussian action noise and `fail_prob` makes an episode deliberately botched (the
    gripper never closes or closes in the air / the arm wanders), for mixed-quality datasets and
    for the negatives a success classifier must see (a raised arm with a closed, empty gripper).
    """

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
