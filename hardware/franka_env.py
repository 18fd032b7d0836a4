"""Real Franka tasks: `FrankaPegInsert` and the gymnasium entry point `make_franka_env`
(`robot_rl/FrankaPegInsert-v0`, registered in robot_rl/registry.py).

The env is the same `RobotEnv` as in sim, on real HAL objects:
`FrankaArm` -> `SafeArm` (box, step limit, watchdog, operator stop) -> `RobotEnv`, wrapped in
`ConnectionGuard` (a lost robot/camera truncates the episode instead of crashing the learner).
Connections are shared per host/camera inside a process, so the training and evaluation envs
the trainer builds drive the same robot over one connection (a Franka takes one client).

Reset procedure (`FrankaPegInsert.reset`), as in SERL's real peg insertion:
1. a joint reset to `reset_q` on the first episode, every `joint_reset_every` episodes, and
   whenever the TCP is outside the workspace box;
2. the `reset_impedance` preset ("precise"), then a scripted Cartesian move (interpolated at
   `reset_rate_hz`, `reset_speed` m/s) to the reset pose = insertion pose + `reset_offset` +
   uniform noise (`reset_noise`, `reset_yaw_noise`) drawn from the env's seeded generator;
3. back to the training preset ("compliant"); the gripper closes on the peg.
Success: every TCP position error to the insertion pose within `success_tolerance` (and the
orientation within `success_rot_tolerance`), judged from the measured TCP pose.
"""
from __future__ import annotations

import json
import math
import threading
import time
import warnings
from typing import Any, Sequence

import numpy as np

from robot_rl.controllers.frames import orientation_error, rpy_to_quat, wrap_angle
from robot_rl.controllers.impedance import ImpedanceParams
from robot_rl.controllers.safety import SafetyBox
from robot_rl.hardware.task import ActionConfig, Outcome, TaskBase

ENV_ID = "robot_rl/FrankaPegInsert-v0"  # make_franka_env's id (registered in robot_rl/registry.py)


class FrankaPegInsert(TaskBase):
    """Insert a held peg: move the TCP to `target_pose` (x, y, z, roll, pitch, yaw: the TCP
    pose with the peg fully inserted, base frame). The workspace box is `box_low`/`box_high`
    around the insertion pose (rpy within `rot_limit`)."""

    def __init__(self, target_pose: Sequence[float] = (0.5, 0.0, 0.25, math.pi, 0.0, 0.0),
                 success_tolerance: Sequence[float] = (0.005, 0.005, 0.005),
                 success_rot_tolerance: float = 0.1,
                 reset_offset: Sequence[float] = (0.0, 0.0, 0.05),
                 reset_noise: Sequence[float] = (0.02, 0.02, 0.0), reset_yaw_noise: float = 0.0,
                 reset_q: Sequence[float] | None = None, joint_reset_every: int = 0,
                 reset_speed: float = 0.1, reset_rate_hz: float = 20.0,
                 reset_tolerance: float = 0.004, reset_timeout_s: float = 8.0,
                 impedance: str | dict = "compliant", reset_impedance: str | dict = "precise",
                 box_low: Sequence[float] = (-0.06, -0.06, -0.005),
                 box_high: Sequence[float] = (0.06, 0.06, 0.1),
                 rot_limit: Sequence[float] = (0.1, 0.1, 0.1),
                 max_step_pos: float = 0.03, max_step_rot: float = 0.1,
                 dofs: Sequence[str] = ("x", "y", "z"), step_pos: float = 0.01,
                 step_rot: float = 0.05, frame: str = "base", max_episode_steps: int = 100,
                 gripper_closed: bool = True, dense_scale: float = 10.0,
                 instruction: str = "insert the peg into the hole"):
        target = np.asarray(target_pose, float)
        if target.shape != (6,):
            raise ValueError(f"target_pose must be x, y, z, roll, pitch, yaw; got {target_pose}")
        self.target_pos, self.target_rpy = target[:3], target[3:]
        lo = self.target_pos + np.asarray(box_low, float)
        hi = self.target_pos + np.asarray(box_high, float)
        rl = np.asarray(rot_limit, float)
        box = SafetyBox(tuple(lo), tuple(hi), tuple(wrap_angle(self.target_rpy - rl)),
                        tuple(wrap_angle(self.target_rpy + rl)), max_step_pos=max_step_pos,
                        max_step_rot=max_step_rot)
        super().__init__(name="FrankaPegInsert", instruction=instruction,
                         action=ActionConfig(dofs=tuple(dofs), gripper=False, step_pos=step_pos,
                                             step_rot=step_rot, frame=frame),
                         safety=box, max_episode_steps=max_episode_steps,
                         home_quat=rpy_to_quat(self.target_rpy))
        self.target_quat = self.home_quat
        self.success_tolerance = np.broadcast_to(np.asarray(success_tolerance, float), (3,))
        self.success_rot_tolerance = success_rot_tolerance
        self.reset_offset = np.asarray(reset_offset, float)
        self.reset_noise = np.broadcast_to(np.asarray(reset_noise, float), (3,))
        self.reset_yaw_noise = reset_yaw_noise
        self.reset_q = None if reset_q is None else np.asarray(reset_q, float)
        if self.reset_q is not None and self.reset_q.shape != (7,):
            raise ValueError(f"reset_q needs 7 joint angles, got {reset_q}")
        self.joint_reset_every = int(joint_reset_every)
        self.reset_speed, self.reset_rate_hz = reset_speed, reset_rate_hz
        self.reset_tolerance, self.reset_timeout_s = reset_tolerance, reset_timeout_s
        self.impedance = _params(impedance)
        self.reset_impedance = _params(reset_impedance)
        self.gripper_closed, self.dense_scale = gripper_closed, dense_scale
        self.episodes = 0
        self.last_reset: dict[str, Any] = {}
        for corner in (-1, 1):  # the whole noisy reset region must be inside the box
            p = self.reset_pos + corner * self.reset_noise
            if not box.contains(p):
                raise ValueError(f"reset pose {self.reset_pos} +- noise {self.reset_noise} leaves "
                                 f"the workspace box {box.xyz_low}..{box.xyz_high}")

    @property
    def reset_pos(self) -> np.ndarray:
        return self.target_pos + self.reset_offset

    # ---- reset ---------------------------------------------------------------------------
    def home_arm(self, env, rng: np.random.Generator) -> None:
        """Reset-free training's arm-only reset: a real reset moves nothing but the arm."""
        self.reset(env, rng)

    def reset(self, env, rng: np.random.Generator) -> None:
        arm = env.arm
        self.episodes += 1
        t0 = time.monotonic()
        tcp = arm.state().tcp_pose
        outside = not self.safety.contains(tcp[:3], tol=0.01)
        scheduled = self.episodes == 1 or (self.joint_reset_every > 0 and
                                           (self.episodes - 1) % self.joint_reset_every == 0)
        joint_reset = self.reset_q is not None and (scheduled or outside)
        if outside and self.reset_q is None:
            raise RuntimeError(
                f"the TCP {np.round(tcp[:3], 3).tolist()} is outside the workspace box "
                f"{self.safety.xyz_low}..{self.safety.xyz_high} and no reset_q is configured: "
                f"jog the arm into the box or set task.reset_q")
        if joint_reset:
            arm.move_to_joints(self.reset_q)
        arm.set_impedance(self.reset_impedance)
        reset_params = getattr(arm, "impedance", None)
        noise = rng.uniform(-1.0, 1.0, 3) * self.reset_noise
        yaw = rng.uniform(-1.0, 1.0) * self.reset_yaw_noise
        start = self.reset_pos + noise
        quat = rpy_to_quat(self.target_rpy + [0.0, 0.0, yaw])
        err = move_to_pose(arm, start, quat, speed=self.reset_speed, rate_hz=self.reset_rate_hz,
                           tolerance=self.reset_tolerance, timeout_s=self.reset_timeout_s)
        end = arm.state().tcp_pose[:3]
        if not self.safety.contains(end, tol=0.01):  # an episode never starts outside the box
            raise RuntimeError(
                f"the reset ended with the TCP at {np.round(end, 3).tolist()}, outside the workspace "
                f"box {self.safety.xyz_low}..{self.safety.xyz_high} (+1 cm): check reset_q, "
                f"target_pose, box_low/box_high and reset_timeout_s")
        arm.set_impedance(self.impedance)
        if env.gripper is not None and self.gripper_closed:
            env.gripper.command(0.0)
        self.last_reset = {"joint_reset": joint_reset, "start": start, "yaw": yaw,
                           "error": err, "seconds": time.monotonic() - t0,
                           "impedance": reset_params}
        if err > self.reset_tolerance:
            warnings.warn(f"reset pose not reached: {err * 1000:.1f} mm off after "
                          f"{self.reset_timeout_s} s")

    # ---- scoring -------------------------------------------------------------------------
    def outcome(self, env) -> Outcome:
        tcp = env.arm.state().tcp_pose
        d = tcp[:3] - self.target_pos
        rot = float(np.linalg.norm(orientation_error(self.target_quat, tcp[3:])))
        success = bool(np.all(np.abs(d) <= self.success_tolerance)
                       and rot <= self.success_rot_tolerance)
        return Outcome(reward=float(1.0 - np.tanh(self.dense_scale * np.linalg.norm(d))),
                       success=success)


class ScriptedInsertion:
    """A demo source for `FrankaPegInsert` on a cell whose insertion pose is known (franky-sim,
    or a `target_pose` you measured): moves the TCP straight to it,
    `robot-rl demos --policy robot_rl.hardware.franka_env:ScriptedInsertion`. Its actions go
    through the env, so through `SafeArm`, as a learner's do. On a real cell teleoperation is
    the usual demo source (docs/teleop.md)."""

    def __init__(self, env):
        self.task = env.unwrapped.task
        if tuple(self.task.action.dofs) != ("x", "y", "z") or self.task.action.gripper:
            raise ValueError(f"ScriptedInsertion acts on x, y, z only; the task's action dofs are "
                             f"{self.task.action.dofs} (gripper: {self.task.action.gripper})")

    def __call__(self, obs) -> np.ndarray:
        tcp = np.asarray(obs["state"][:3], float)  # the measured TCP position leads the state
        return np.clip((self.task.target_pos - tcp) / self.task.action.step_pos, -1.0, 1.0)


def _params(p) -> ImpedanceParams:
    if isinstance(p, ImpedanceParams):
        return p
    if isinstance(p, str):
        return ImpedanceParams.preset(p)
    return ImpedanceParams(**p)


def move_to_pose(arm, pos, quat, speed: float = 0.1, rate_hz: float = 20.0,
                 tolerance: float = 0.004, timeout_s: float = 8.0) -> float:
    """Scripted Cartesian move: straight-line targets at `rate_hz` (`speed` m/s), then keep
    sending the goal (so a watchdog does not hold) until the TCP is within `tolerance` or
    `timeout_s` passed. Returns the final position error [m]."""
    pos, quat = np.asarray(pos, float), np.asarray(quat, float)
    p0 = arm.state().tcp_pose[:3]
    dt = 1.0 / rate_hz
    n = max(1, int(math.ceil(np.linalg.norm(pos - p0) / (speed * dt))))
    t_next = time.monotonic()
    deadline = t_next + timeout_s
    for i in range(1, n + 1):
        arm.set_target_pose(p0 + (pos - p0) * (i / n), quat)
        t_next += dt
        time.sleep(max(0.0, t_next - time.monotonic()))
    while True:
        err = float(np.linalg.norm(arm.state().tcp_pose[:3] - pos))
        if err <= tolerance or time.monotonic() > deadline:
            return err
        arm.set_target_pose(pos, quat)
        time.sleep(dt)


# ---- shared connections ----------------------------------------------------------------------
_SHARED: dict[str, list] = {}      # key -> [object, refcount]
_SHARED_LOCK = threading.Lock()


class _Shared:
    """A handle on a process-wide shared device: forwards everything, `close()` releases it
    (the device closes with its last handle)."""

    def __init__(self, key: str, obj):
        self._key, self._obj, self._released = key, obj, False

    def __getattr__(self, name):
        return getattr(self._obj, name)

    @property
    def shared_target(self):
        return self._obj

    def close(self) -> None:
        if self._released:
            return
        self._released = True
        with _SHARED_LOCK:
            entry = _SHARED.get(self._key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _SHARED[self._key]
        entry[0].close()


def _acquire(key: str, factory) -> _Shared:
    with _SHARED_LOCK:
        entry = _SHARED.get(key)
        if entry is None:
            entry = _SHARED[key] = [factory(), 0]
        entry[1] += 1
        return _Shared(key, entry[0])


def make_franka_env(host: str = "172.16.0.2", task: dict | None = None, arm: dict | None = None,
                    gripper: bool | dict = True, cameras: Sequence[dict] = (),
                    control_hz: float = 10.0, reward_type: str = "sparse",
                    include_wrench: bool = False, watchdog_s: float | None = 0.15,
                    reconnect_timeout_s: float | None = None, render_mode: str | None = None):
    """`robot_rl/FrankaPegInsert-v0`: a `RobotEnv` on a Franka (franky) with cameras, behind
    the safety layer. `task`: FrankaPegInsert kwargs; `arm`: FrankaArm kwargs (impedance,
    load, tcp_offset, collision, joint_limits, reset_speed, ...); `gripper`: False, True or
    FrankaGripper kwargs; `cameras`: camera specs ({"type": "opencv" | "realsense", "name",
    ...}, see cameras.make_camera). `reconnect_timeout_s`: how long a reset waits for a lost
    robot to come back (None: until it does)."""
    from robot_rl.hardware.cameras import make_camera
    from robot_rl.hardware.franka import FrankaArm, FrankaGripper
    from robot_rl.hardware.robot_env import RobotEnv
    from robot_rl.hardware.safety import ConnectionGuard, SafeArm, SafeGripper

    t = FrankaPegInsert(**(task or {}))
    arm_kwargs = {"impedance": t.impedance, **(arm or {})}
    handles: list[_Shared] = []
    try:
        safe = _acquire(f"arm:{host}", lambda: SafeArm(FrankaArm(host, **arm_kwargs).connect(),
                                                       t.safety, watchdog_s=watchdog_s))
        handles.append(safe)
        if safe.box != t.safety:
            raise ValueError(f"the Franka at {host} is already in use in this process with "
                             f"another workspace box ({safe.box} vs {t.safety})")
        hand = None
        if gripper:
            g_kwargs = gripper if isinstance(gripper, dict) else {}
            hand = _acquire(f"gripper:{host}", lambda: FrankaGripper(host, **g_kwargs).connect())
            handles.append(hand)
        cams = []
        for spec in cameras:
            cam = _acquire(f"camera:{json.dumps(spec, sort_keys=True)}",
                           lambda spec=spec: make_camera(spec).open())
            handles.append(cam)
            cams.append(cam)
        if len({c.name for c in cams}) != len(cams):
            raise ValueError(f"camera names must be unique: {[c.name for c in cams]}")
        env = RobotEnv(safe, None if hand is None else SafeGripper(hand, safe), cams, t, control_hz=control_hz, reward_type=reward_type,
                       include_wrench=include_wrench, render_mode=render_mode)
    except BaseException:
        for h in reversed(handles):
            h.close()
        raise
    return ConnectionGuard(env, reconnect_timeout_s=reconnect_timeout_s)
