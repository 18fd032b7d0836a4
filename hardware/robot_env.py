"""`RobotEnv`: the one gymnasium environment. Sim and real differ only in the HAL objects."""
from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from robot_rl.controllers.frames import (quat_mul, quat_to_mat, quat_to_rpy, rotvec_to_quat,
                                         rpy_to_quat, wrap_angle)
from robot_rl.controllers.safety import SafetyBox
from robot_rl.hardware.hal import Arm, Camera, Clock, Gripper, WallClock
from robot_rl.hardware.task import POSE_DOFS, Task


def canonical_quat(q: np.ndarray) -> np.ndarray:
    """q and -q are the same rotation; pick the sign with a positive largest component so the
    observation does not jump between the two."""
    return q if q[np.argmax(np.abs(q))] >= 0 else -q


class RobotEnv(gym.Env):
    """Actions: `[-1, 1]^d` deltas of the TCP pose (the task's dofs, scaled by its step sizes, in
    the base or end-effector frame) plus a gripper closedness target (-1 open, +1 closed).
    Every target passes the safety box before the arm sees it.

    Observations: `state` = [tcp xyz, tcp quat xyzw, tcp twist (6), gripper opening (0..1)]
    (+ wrench (6) if `include_wrench`), `env_state` (privileged object state, sim state tasks
    only), and one uint8 HxWx3 image per camera under the camera's name.
    """
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, arm: Arm, gripper: Gripper | None, cameras: Sequence[Camera], task: Task,
                 clock: Clock | None = None, control_hz: float = 10.0, reward_type: str = "sparse",
                 safety: SafetyBox | None = None, include_wrench: bool = False,
                 render_mode: str | None = None):
        if reward_type not in ("sparse", "dense"):
            raise ValueError(f"reward_type must be 'sparse' or 'dense', got {reward_type!r}")
        if task.action.gripper and gripper is None:
            raise ValueError(f"task {task.name} commands a gripper but none was given")
        self.arm, self.gripper, self.cameras, self.task = arm, gripper, list(cameras), task
        self.clock = clock or WallClock()
        self.period = 1.0 / control_hz
        self.reward_type, self.include_wrench = reward_type, include_wrench
        self.safety = safety or task.safety
        self.render_mode = render_mode
        self.action_space = gym.spaces.Box(-1.0, 1.0, (task.action.dim,), np.float32)
        spaces = {"state": gym.spaces.Box(-np.inf, np.inf, (20 if include_wrench else 14,),
                                          np.float32)}
        env_state = task.env_state()
        if env_state is not None:
            spaces["env_state"] = gym.spaces.Box(-np.inf, np.inf, env_state.shape, np.float32)
        for cam in self.cameras:
            spaces[cam.name] = gym.spaces.Box(0, 255, cam.shape, np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self._steps = 0
        self._gripper_target = 1.0  # normalized closedness, -1 open .. +1 closed

    # ---- observation -------------------------------------------------------------------
    def observe(self) -> dict[str, np.ndarray]:
        """The current observation (also used by the ROS 2 node and the step-overhead bench)."""
        s = self.arm.state()
        parts = [s.tcp_pose[:3], canonical_quat(s.tcp_pose[3:]), s.tcp_twist]
        if self.gripper is not None:
            g = self.gripper.state()
            parts.append([g.width / g.max_width])
        else:
            parts.append([0.0])
        if self.include_wrench:
            parts.append(s.wrench)
        obs = {"state": np.concatenate(parts).astype(np.float32)}
        env_state = self.task.env_state()
        if env_state is not None:
            obs["env_state"] = np.asarray(env_state, np.float32)
        for cam in self.cameras:
            obs[cam.name] = cam.read().rgb
        return obs

    # ---- action -> target ----------------------------------------------------------------
    def validate_action(self, action) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape}, got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN or inf: {a.tolist()}")
        return np.clip(a, -1.0, 1.0)

    def target_from_action(self, a: np.ndarray, tcp_pose: np.ndarray):
        """The safe target pose for a normalized action, from the measured TCP pose."""
        cfg = self.task.action
        delta = np.zeros(6)
        delta[[POSE_DOFS.index(d) for d in cfg.dofs]] = a[:len(cfg.dofs)]
        dp, dr = delta[:3] * cfg.step_pos, delta[3:] * cfg.step_rot
        pos, quat = tcp_pose[:3], tcp_pose[3:]
        if cfg.frame == "ee":
            R = quat_to_mat(quat)
            dp, dr = R @ dp, R @ dr
        turned = [d in cfg.dofs for d in ("roll", "pitch", "yaw")]
        if not any(turned):  # orientation not controlled: hold the task's home orientation
            target_quat = self.task.home_quat
        elif all(turned) or cfg.frame == "ee":
            target_quat = quat_mul(rotvec_to_quat(dr), quat)
        else:
            # some angles controlled (e.g. yaw only): they move from the measured angle, the
            # others are held at the home orientation (from the measured pose they would drift
            # a little further with every step)
            rpy, home = quat_to_rpy(quat), quat_to_rpy(self.task.home_quat)
            rpy = np.where(turned, wrap_angle(rpy + dr), home)
            target_quat = rpy_to_quat(rpy)
        return self.safety.apply(pos + dp, target_quat, ref_pos=pos, ref_quat=quat)

    def apply_action(self, action) -> np.ndarray:
        """Validate, then send the arm and gripper targets. Raises before anything moves."""
        a = self.validate_action(action)
        pos, quat = self.target_from_action(a, self.arm.state().tcp_pose)
        self.arm.set_target_pose(pos, quat)
        if self.task.action.gripper:
            self._gripper_target = float(a[-1])
            self.gripper.command((1.0 - self._gripper_target) / 2.0 * self.gripper.max_width)
        return a

    # ---- gymnasium API -------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """`options`: `direction` switches a task with several (`task.directions`, e.g.
        PandaRelocate's forward/backward) before anything else; `reset_free=True` starts a new
        episode where the last one ended: the scene is not reset and nothing moves, unless
        `home_arm=True` too: then only the arm returns to its start (the task's `home_arm`;
        SERL's reset-free training: the robot resets itself, the objects stay where they are)."""
        options = options or {}
        super().reset(seed=seed)
        self._steps = 0
        if "direction" in options:
            if not hasattr(self.task, "set_direction"):
                raise ValueError(f"task {self.task.name} has no directions; "
                                 f"options={{'direction': {options['direction']!r}}} needs one that does")
            self.task.set_direction(options["direction"])
        if not options.get("reset_free", False):
            self.task.reset(self, self.np_random)
            self._gripper_target = -1.0 if self.task.action.gripper else 1.0
        elif options.get("home_arm", False):
            if not hasattr(self.task, "home_arm"):
                raise ValueError(f"task {self.task.name} has no home_arm (the arm's own reset, "
                                 f"leaving the scene): reset-free training needs home_arm=False")
            self.task.home_arm(self, self.np_random)
            self._gripper_target = -1.0 if self.task.action.gripper else 1.0
        obs = self.observe()
        return obs, {"is_success": False, "intervention": False}

    def step(self, action):
        a = self.apply_action(action)
        self.clock.wait(self.period)
        self._steps += 1
        obs = self.observe()
        outcome = self.task.outcome(self)
        reward = float(outcome.success) if self.reward_type == "sparse" else float(outcome.reward)
        truncated = self._steps >= self.task.max_episode_steps
        info: dict[str, Any] = {"is_success": outcome.success, "intervention": False,
                                "action": a.astype(np.float32)}
        return obs, reward, bool(outcome.success), truncated, info

    def render(self):
        if self.cameras:
            return self.cameras[0].read().rgb
        return None

    def close(self):
        for part in (*self.cameras, self.gripper, self.arm):
            if hasattr(part, "close"):
                part.close()
