"""A real SO-100/SO-101 as a gymnasium env: `SO101Task` and `make_so101_env`
(`robot_rl/SO101-v0`, registered in robot_rl/registry.py).

The env is the same `RobotEnv` as in sim and on the Franka, on these HAL objects:
`LeRobotSO101` (LeRobot's follower on its Feetech bus) -> `CartesianPositionArm` (differential
IK at `servo_hz` in a thread) -> `SafeArm` (box, step limit, watchdog, operator stop) ->
`RobotEnv`, wrapped in `ConnectionGuard` (an unplugged arm truncates the episode instead of
crashing the learner). The leader arm joins as `env.teleop: so101_leader` (hardware/teleop).

Reset: the gripper opens, then a joint move (at `move_speed`, blocking) to `reset_q` plus
uniform noise (`reset_noise`, rad) drawn from the env's seeded generator. Success: with a
`target_pose`, the TCP within `success_tolerance` of it; without one the task has no success
of its own and the reward comes from a reward model (`env.reward`, e.g. a success classifier)
or the operator's success key.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from robot_rl.controllers.safety import SafetyBox
from robot_rl.hardware.task import ActionConfig, Outcome, TaskBase

ENV_ID = "robot_rl/SO101-v0"  # make_so101_env's id (registered in robot_rl/registry.py)


class SO101Task(TaskBase):
    def __init__(self, reset_q: Sequence[float] = (0.0, 0.4, 0.2, -0.6, 0.0),
                 reset_noise: float = 0.05, target_pose: Sequence[float] | None = None,
                 success_tolerance: float = 0.01,
                 box_low: Sequence[float] = (0.10, -0.15, 0.01),
                 box_high: Sequence[float] = (0.28, 0.15, 0.20),
                 rpy_low: Sequence[float] = (3.0, -0.15, -0.15),
                 rpy_high: Sequence[float] = (-3.0, 0.15, 0.15),
                 max_step_pos: float = 0.03, step_pos: float = 0.02,
                 dofs: Sequence[str] = ("x", "y", "z"), gripper: bool = True,
                 max_episode_steps: int = 100, instruction: str = "pick up the object"):
        super().__init__(name="SO101Task", instruction=instruction,
                         action=ActionConfig(dofs=tuple(dofs), gripper=gripper, step_pos=step_pos),
                         safety=SafetyBox(tuple(box_low), tuple(box_high), tuple(rpy_low),
                                          tuple(rpy_high), max_step_pos=max_step_pos),
                         max_episode_steps=max_episode_steps,
                         home_quat=np.array([1.0, 0.0, 0.0, 0.0]))  # gripper pointing down
        self.reset_q = np.asarray(reset_q, float)
        self.reset_noise = float(reset_noise)
        self.target = None if target_pose is None else np.asarray(target_pose, float)
        if self.target is not None and (self.target.shape != (3,) or
                                        not self.safety.contains(self.target)):
            raise ValueError(f"target_pose must be x, y, z inside the box {box_low}..{box_high}, "
                             f"got {target_pose}")
        self.success_tolerance = success_tolerance

    def reset(self, env, rng: np.random.Generator) -> None:
        if env.gripper is not None:
            env.gripper.command(env.gripper.max_width)
        q = self.reset_q + rng.uniform(-1, 1, self.reset_q.shape) * self.reset_noise
        env.arm.move_to_joints(q)

    def outcome(self, env) -> Outcome:
        if self.target is None:
            return Outcome(reward=0.0, success=False)
        d = float(np.linalg.norm(env.arm.state().tcp_pose[:3] - self.target))
        return Outcome(reward=1.0 - math.tanh(10.0 * d), success=d < self.success_tolerance)


def make_so101_env(port: str = "/dev/ttyACM0", robot_id: str = "so101_follower",
                   calibration_dir: str | None = None, task: dict | None = None,
                   cameras: Sequence[dict] = (), control_hz: float = 10.0, servo_hz: float = 50.0,
                   mapping: dict | None = None, max_lead: float = 0.2,
                   reward_type: str = "sparse", watchdog_s: float | None = 0.3,
                   reconnect_timeout_s: float | None = None, render_mode: str | None = None):
    """`robot_rl/SO101-v0`. `task`: SO101Task kwargs; `mapping`: JointMapping kwargs (signs,
    offsets); `cameras`: camera specs as for the Franka (cameras.make_camera); `max_lead`:
    how far (rad) a joint target may lead the measured joint, which bounds the force on
    contact. `calibration_dir`: LeRobot's (None: its default location)."""
    from robot_rl.hardware.cameras import make_camera
    from robot_rl.hardware.position_arm import CartesianPositionArm
    from robot_rl.hardware.robot_env import RobotEnv
    from robot_rl.hardware.safety import ConnectionGuard, SafeArm, SafeGripper
    from robot_rl.hardware.so101 import SO101_CHAIN, LeRobotSO101

    t = SO101Task(**(task or {}))
    parts: list = []
    try:
        so101 = LeRobotSO101(port, robot_id, calibration_dir, mapping).connect()
        parts.append(so101)
        arm = CartesianPositionArm(so101.servos, SO101_CHAIN, servo_hz=servo_hz,
                                   max_lead=max_lead).start()
        safe = SafeArm(arm, t.safety, watchdog_s=watchdog_s)
        parts.insert(0, safe)
        cams = [make_camera(spec).open() for spec in cameras]
        parts[:0] = cams
        env = RobotEnv(safe, SafeGripper(so101.gripper, safe) if t.action.gripper else None,
                       cams, t, control_hz=control_hz, reward_type=reward_type,
                       render_mode=render_mode)
    except BaseException:
        for p in parts:
            p.close()
        raise
    return ConnectionGuard(env, reconnect_timeout_s=reconnect_timeout_s)
