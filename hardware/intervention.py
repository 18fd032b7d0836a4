"""Human interventions during training (HIL-SERL style): a gymnasium wrapper that lets an
operator take over from the policy with a teleop device.

Each `step` polls the teleop. The operator takes over when the device is moved beyond its
deadzone on one of the task's dofs (`threshold` on top of the device's own deadzone), the
intervene control is held, or a gripper control is pressed. The operator's action (the
base-frame `delta6` mapped onto the task's dofs, plus the gripper target) then replaces the
policy's; `info["intervention"] = True`, `info["intervene_action"]` is the executed action
(float32, in the env's action space) and `info["policy_action"]` the one it replaced.
`intervention_rate` / `episode_intervention_rate` track how often that happens; the final
step of an episode carries `info["episode_intervention_rate"]`. Device events (success,
failure, ...) are passed on as `info["teleop_events"]` and not acted on here.

A missing device fails in the teleop's constructor (before any env step). A device that
disappears mid-run (`poll` raises `OSError`) ends the episode: the policy's action is
executed for that step, `truncated=True`, `info["teleop_lost"] = True`. The following
`reset` raises `DeviceLostError` (`on_lost="raise"`, default: a real robot should not go on
without a human able to stop it) or carries on without interventions (`on_lost="continue"`).
Anything a recorder already saved stays saved.

`recorder` (optional, duck-typed; e.g. `robot_rl.collect.EpisodeRecorder`) receives every
transition: `start_episode(obs, seed)`, `add_step(action, reward, terminated, truncated,
info, next_obs)` (it saves an episode when it ends), `close()`.
"""
from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from robot_rl.hardware.teleop.mapping import DeviceLostError, teleop_to_action


class InterventionWrapper(gym.Wrapper):
    def __init__(self, env: gym.Env, teleop, threshold: float = 0.0, recorder: Any = None,
                 on_lost: str = "raise"):
        super().__init__(env)
        if teleop is None or not callable(getattr(teleop, "poll", None)):
            raise TypeError(f"teleop must implement poll() -> TeleopCommand, got {teleop!r}")
        if on_lost not in ("raise", "continue"):
            raise ValueError(f"on_lost must be 'raise' or 'continue', got {on_lost!r}")
        task = getattr(env.unwrapped, "task", None)
        if task is None or not hasattr(task, "action"):
            raise ValueError("InterventionWrapper needs a RobotEnv (env.unwrapped.task.action "
                             "gives the action layout)")
        self.teleop, self.threshold, self.recorder, self.on_lost = teleop, threshold, recorder, on_lost
        if hasattr(teleop, "attach"):  # a device that needs the follower's pose (a leader arm)
            teleop.attach(env.unwrapped)
        self.action_cfg = task.action
        self.teleop_lost = False
        self.total_steps = self.total_interventions = 0
        self.episode_steps = self.episode_interventions = 0
        self._gripper = -1.0
        self._prev_cmd_gripper: float | None = None
        self._obs = None

    # ---- statistics ------------------------------------------------------------------------
    @property
    def intervention_rate(self) -> float:
        return self.total_interventions / max(self.total_steps, 1)

    @property
    def episode_intervention_rate(self) -> float:
        return self.episode_interventions / max(self.episode_steps, 1)

    # ---- helpers ---------------------------------------------------------------------------
    def _tcp_quat(self):
        obs = self._obs
        if isinstance(obs, dict) and "state" in obs:
            return np.asarray(obs["state"][3:7], np.float64)
        return None

    def _sync(self) -> None:
        if self.teleop_lost:
            return
        if hasattr(self.teleop, "sync_gripper") and self.action_cfg.gripper:
            self.teleop.sync_gripper(self._gripper)
            self._prev_cmd_gripper = self._gripper

    # ---- gymnasium API ---------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if self.teleop_lost and self.on_lost == "raise":
            raise DeviceLostError(
                "the teleop device was lost during the previous episode (that episode ended "
                "truncated with info['teleop_lost']; saved data is intact). Reconnect it and "
                "resume the run, or use on_lost='continue' to go on without interventions")
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs = obs
        self.episode_steps = self.episode_interventions = 0
        self._gripper = -1.0 if self.action_cfg.gripper else 1.0  # RobotEnv resets it open
        self._sync()
        if self.recorder is not None:
            self.recorder.start_episode(obs, seed)
        info = dict(info)
        info["intervention"] = False
        return obs, info

    def step(self, action):
        policy_action = np.asarray(action, np.float32)
        intervene, lost, executed, cmd = False, False, policy_action, None
        if not self.teleop_lost:
            try:
                cmd = self.teleop.poll()
            except (OSError, IOError) as e:
                lost, cmd = True, None
                self.teleop_lost = True
                warnings.warn(f"teleop device lost ({e}); ending the episode", stacklevel=2)
            if cmd is not None:
                op = teleop_to_action(cmd, self.action_cfg, self._gripper, self._tcp_quat())
                n = len(self.action_cfg.dofs)
                moved = n > 0 and float(np.max(np.abs(op[:n]))) > self.threshold
                gripper_event = (self.action_cfg.gripper and cmd.gripper is not None and
                                 (self._prev_cmd_gripper is None or
                                  abs(cmd.gripper - self._prev_cmd_gripper) > 1e-6))
                self._prev_cmd_gripper = cmd.gripper
                intervene = bool(cmd.intervene or moved or gripper_event)
                if intervene:
                    executed = op
        obs, reward, terminated, truncated, info = self.env.step(executed)
        self._obs = obs
        info = dict(info)
        info["intervention"] = intervene
        if cmd is not None and cmd.buttons:
            info["teleop_events"] = sorted(cmd.buttons)  # success / failure / ... (not acted on)
        if intervene:
            info["intervene_action"] = np.clip(executed, -1.0, 1.0).astype(np.float32)
            info["policy_action"] = policy_action
        if self.action_cfg.gripper:
            self._gripper = float(np.clip(executed[-1], -1.0, 1.0))
        self._sync()
        if lost:
            truncated = True
            info["teleop_lost"] = True
        self.total_steps += 1
        self.episode_steps += 1
        self.total_interventions += int(intervene)
        self.episode_interventions += int(intervene)
        if terminated or truncated:
            info["episode_intervention_rate"] = self.episode_intervention_rate
        if self.recorder is not None:
            self.recorder.add_step(info.get("intervene_action", info.get("action", executed)),
                                   reward, terminated, truncated, info, obs)
        return obs, reward, terminated, truncated, info

    def close(self):
        try:
            if self.recorder is not None:
                self.recorder.close()
        finally:
            try:
                if hasattr(self.teleop, "close"):
                    self.teleop.close()
            finally:
                super().close()
