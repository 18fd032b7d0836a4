"""Safety at the process boundary for real arms: every target that leaves this process goes
through `SafeArm`, and `ConnectionGuard` keeps device faults from crashing the learner.

- `SafeArm(arm, box)`: wraps any `Arm`. Malformed targets (NaN, inf, wrong shape, non-unit
  quaternion) raise `UnsafeCommandError` and never reach the arm; valid ones are delta-limited
  against the reference and clipped into the workspace box (`controllers.safety.SafetyBox`).
  The reference is the last *commanded* target; after a joint move or a reconnect, which leave
  the arm holding where it is, it is the measured pose. So consecutive targets never differ by
  more than the step limit, holds and resets included, and an arm outside the box is brought
  in a step at a time. A watchdog thread holds the arm (target = measured pose, clipped and
  step-limited the same way) when no target arrived for `watchdog_s` (default 0.15 s, so the
  hold lands within 200 ms of the last target). `operator_stop()` latches a stop: the arm holds,
  targets are ignored and resets refuse to move until `release()`.
- `SafeGripper(gripper, safe_arm)`: the gripper under the same operator stop (commands
  ignored while it is engaged; the stop halts the hand's motion).
- `ConnectionGuard(env)`: a gymnasium wrapper. A `ConnectionLostError` (arm, gripper or camera)
  during `step` ends the episode as `truncated=True` with `info["connection_lost"] = True` and
  a clear message instead of an exception; the next `reset` reconnects, waiting until the
  robot is back (or `reconnect_timeout_s`). An operator stop ends the episode the same way
  (`info["operator_stop"] = True`) and `reset` waits for `release()`.
- `OperatorStopKey`: an optional keyboard binding (pynput, the teleop keyboard's backend) that
  calls `operator_stop()` / `release()`.

Only numpy, gymnasium and our `controllers` are imported here; drivers live in
`franka.py` / `cameras.py`.
"""
from __future__ import annotations

import threading
import time
import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from robot_rl.controllers.safety import SafetyBox, UnsafeCommandError, check_finite
from robot_rl.hardware.hal import ArmState, GripperState

__all__ = ["ConnectionGuard", "ConnectionLostError", "OperatorStopError", "OperatorStopKey",
           "SafeArm", "SafeGripper", "SafetyBox", "UnsafeCommandError", "validate_pose"]


class ConnectionLostError(RuntimeError):
    """A device (robot, gripper, camera) stopped answering. Ends the episode, not the run."""


class OperatorStopError(RuntimeError):
    """The operator stop is engaged: nothing may move until `release()`."""


def validate_pose(pos, quat) -> tuple[np.ndarray, np.ndarray]:
    """Finite (3,) position and finite, unit (4,) xyzw quaternion, else `UnsafeCommandError`."""
    pos = check_finite("target position", pos, (3,))
    quat = check_finite("target quaternion", quat, (4,))
    n = float(np.linalg.norm(quat))
    if abs(n - 1.0) > 1e-3:
        raise UnsafeCommandError(f"target quaternion is not unit length (norm {n:.6g}): "
                                 f"{quat.tolist()}")
    return pos, quat / n


class SafeArm:
    """An `Arm` whose every target is validated, delta-limited and boxed, with a watchdog.

    `hold_events` lists `(t_last_target, t_hold)` pairs (time.monotonic seconds) of watchdog
    holds, so the hold latency is measurable. With `record=True`, `sent` keeps every
    (pos, quat) that was passed on to the wrapped arm.
    """

    def __init__(self, arm, box: SafetyBox, watchdog_s: float | None = 0.15,
                 watchdog_period_s: float = 0.005, record: bool = False):
        if watchdog_s is not None and watchdog_s <= 0:
            raise ValueError(f"watchdog_s must be > 0 or None, got {watchdog_s}")
        self.arm, self.box = arm, box
        self.watchdog_s, self.watchdog_period_s = watchdog_s, watchdog_period_s
        self.record = record
        self.sent: list[tuple[np.ndarray, np.ndarray]] = []
        self.hold_events: list[tuple[float, float]] = []
        self.rejected = 0            # malformed targets refused
        self.ignored_while_stopped = 0
        self.stop_reason: str | None = None
        self.on_stop: list = []  # called when an operator stop latches (SafeGripper's stop)
        self._lock = threading.RLock()
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # last commanded target
        self._t_last: float | None = None   # when the last policy target arrived
        self._armed = False                 # watchdog active (after the first target)
        self._held = False
        self._paused = 0
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        if watchdog_s is not None:
            self._thread = threading.Thread(target=self._watchdog, name="SafeArm-watchdog",
                                            daemon=True)
            self._thread.start()

    # ---- Arm protocol ----------------------------------------------------------------------
    def state(self) -> ArmState:
        return self.arm.state()

    def set_target_pose(self, pos, quat) -> None:
        """Validate, delta-limit against the last commanded target, clip into the box, send."""
        try:
            pos, quat = validate_pose(pos, quat)
        except UnsafeCommandError:
            self.rejected += 1
            raise
        with self._lock:
            if self.stop_reason is not None:
                self.ignored_while_stopped += 1
                return
            ref = self._reference()
            pos, quat = self.box.apply(pos, quat, ref_pos=ref[0], ref_quat=ref[1])
            self._send(pos, quat, ref)
            self._t_last = time.monotonic()
            self._armed, self._held = True, False

    def set_impedance(self, params) -> None:
        self.arm.set_impedance(params)

    def move_to_joints(self, q) -> None:
        """Blocking joint reset (refused while the operator stop is engaged). The watchdog is
        paused meanwhile; afterwards the arm holds its new pose, the reference of the next
        target."""
        q = check_finite("joint target", q, np.shape(np.asarray(q, dtype=float)))
        with self._lock:
            if self.stop_reason is not None:
                raise OperatorStopError(f"operator stop engaged ({self.stop_reason}): "
                                        f"call release() before resetting")
            self._paused += 1
            self._armed = False
        try:
            self.arm.move_to_joints(q)
        finally:
            with self._lock:
                self._paused -= 1
                self._last = None  # wherever the move ended (or stopped): measured next
                self._armed = False

    def reconnect(self) -> None:
        """Reconnect the wrapped arm (if it can); it restarts holding where it is, which is
        the reference of the next target."""
        if hasattr(self.arm, "reconnect"):
            self.arm.reconnect()
        with self._lock:
            self._last, self._armed, self._held = None, False, False

    def stop(self) -> None:
        """Hold the measured pose (clipped into the box, a step at most from the reference)."""
        with self._lock:
            self._hold()

    # ---- operator stop ---------------------------------------------------------------------
    def operator_stop(self, reason: str = "operator stop") -> None:
        """Latch a stop: hold now, ignore targets, refuse resets until `release()`."""
        with self._lock:
            self.stop_reason = reason
            try:
                self._hold()
            except ConnectionLostError:
                pass  # nothing to hold; the latch still blocks everything that follows
        for hook in list(self.on_stop):
            try:
                hook()
            except Exception as exc:  # noqa: BLE001 - the latch holds whatever a device says
                warnings.warn(f"operator stop: {exc}")
        print(f"[robot_rl.safety] OPERATOR STOP: {reason}. The arm holds its pose; "
              f"call release() to continue.", flush=True)

    def release(self) -> None:
        """End the operator stop. The arm held the last commanded pose throughout, so that
        stays the reference: the next target is within a step of it."""
        with self._lock:
            self.stop_reason = None
            self._armed = False

    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    @property
    def held(self) -> bool:
        """The watchdog is holding (no target since the last hold)."""
        return self._held

    @property
    def last_command(self) -> tuple[np.ndarray, np.ndarray] | None:
        return self._last

    # ---- internals -------------------------------------------------------------------------
    def _reference(self) -> tuple[np.ndarray, np.ndarray]:
        """The pose the next target is limited from: the last command, else (first target,
        after a joint move or a reconnect) the measured pose."""
        if self._last is None:
            s = self.arm.state()
            self._last = (np.asarray(s.tcp_pose[:3], float), np.asarray(s.tcp_pose[3:], float))
        return self._last

    def _send(self, pos: np.ndarray, quat: np.ndarray, ref: tuple[np.ndarray, np.ndarray]) -> None:
        # never happens (apply() clips, or steps towards the box from a reference outside it)
        if not self.box.contains(pos, quat, tol=1e-9) and self.box.contains(*ref):
            raise UnsafeCommandError(f"internal error: target {pos} {quat} outside the box")
        self.arm.set_target_pose(pos, quat)
        self._last = (pos, quat)
        if self.record:
            self.sent.append((pos.copy(), quat.copy()))

    def _hold(self) -> None:
        """Target the measured pose, bounded like any target (a step from the reference)."""
        ref = self._reference()
        tcp = self.arm.state().tcp_pose
        pos, quat = self.box.apply(tcp[:3], tcp[3:] / np.linalg.norm(tcp[3:]), ref_pos=ref[0], ref_quat=ref[1])
        self._send(pos, quat, ref)
        self._held = True

    def _watchdog(self) -> None:
        while not self._closed.wait(self.watchdog_period_s):
            with self._lock:
                if (not self._armed or self._held or self._paused or self.stop_reason
                        or self._t_last is None):
                    continue
                t_last = self._t_last
                if time.monotonic() - t_last < self.watchdog_s:
                    continue
                try:
                    self._hold()
                except Exception as exc:  # lost connection: the guard reports it on the next step
                    self._armed = False
                    warnings.warn(f"watchdog could not hold the arm: {exc}")
                    continue
                self.hold_events.append((t_last, time.monotonic()))

    # ---- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self._closed.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        if hasattr(self.arm, "close"):
            self.arm.close()

    def __enter__(self):
        if hasattr(self.arm, "__enter__"):
            self.arm.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:  # recover(), reconnect(), commanded_pose(), ...
        if name == "arm":
            raise AttributeError(name)
        return getattr(self.arm, name)


class SafeGripper:
    """A gripper under the arm's operator stop: while `safe_arm` is stopped, commands are
    ignored (counted in `ignored_while_stopped`), and the stop itself halts the hand's motion
    (the gripper used to keep closing on whatever was in it)."""

    def __init__(self, gripper, safe_arm: SafeArm):
        self.gripper, self.safe_arm = gripper, safe_arm
        self.ignored_while_stopped = 0
        safe_arm.on_stop.append(self._halt)

    def _halt(self) -> None:
        if hasattr(self.gripper, "stop"):
            self.gripper.stop()

    def command(self, width: float) -> None:
        if self.safe_arm.stopped:
            self.ignored_while_stopped += 1
            return
        self.gripper.command(width)

    def state(self) -> GripperState:
        return self.gripper.state()

    @property
    def max_width(self) -> float:
        return self.gripper.max_width

    def close(self) -> None:
        if self._halt in self.safe_arm.on_stop:
            self.safe_arm.on_stop.remove(self._halt)
        if hasattr(self.gripper, "close"):
            self.gripper.close()

    def __getattr__(self, name: str) -> Any:  # reconnect(), wait_idle(), last_error, ...
        if name == "gripper":
            raise AttributeError(name)
        return getattr(self.gripper, name)


class OperatorStopKey:
    """Keyboard operator stop: `stop_key` (default "esc") latches `safe_arm.operator_stop()`,
    `release_key` (default None: release only from code) releases it. Uses pynput (needs a
    display); `listen=False` skips the OS listener so `on_press` can be driven directly with
    pynput key objects or key names."""

    def __init__(self, safe_arm: SafeArm, stop_key: str = "esc", release_key: str | None = None,
                 listen: bool = True):
        self.safe_arm, self.stop_key, self.release_key = safe_arm, stop_key, release_key
        self._listener = None
        if listen:
            from robot_rl.hardware.teleop.keyboard import import_pynput_keyboard
            kb = import_pynput_keyboard()
            self._listener = kb.Listener(on_press=self.on_press)
            self._listener.start()

    def on_press(self, key) -> None:
        if isinstance(key, str):
            name = key.lower()
        else:
            from robot_rl.hardware.teleop.keyboard import key_name
            name = key_name(key)
        if name == self.stop_key:
            self.safe_arm.operator_stop(f"key '{name}' pressed")
        elif self.release_key is not None and name == self.release_key:
            self.safe_arm.release()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None


def _find_safe_arm(env) -> SafeArm | None:
    arm = getattr(env.unwrapped, "arm", None)
    arm = getattr(arm, "shared_target", arm)  # a process-wide shared handle (franka_env)
    return arm if isinstance(arm, SafeArm) else None


class ConnectionGuard(gym.Wrapper):
    """Device faults end the episode (`truncated=True`) instead of crashing the learner.

    step: `ConnectionLostError` -> the last observation, reward 0, `truncated=True`,
    `info["connection_lost"] = True`, `info["error"]` = what happened. Operator stop ->
    `truncated=True`, `info["operator_stop"] = True`.
    reset: reconnects after a loss, retrying every `retry_every_s` (for `reconnect_timeout_s`,
    None = until the robot is back, so the learner and its replay buffer survive a power
    cycle; a finite timeout then raises a `ConnectionLostError` that says what to do), and
    waits for `release()` after an operator stop (`stop_wait_s`, None = forever).
    """

    def __init__(self, env, reconnect_timeout_s: float | None = None, retry_every_s: float = 1.0,
                 stop_wait_s: float | None = None):
        super().__init__(env)
        self.reconnect_timeout_s, self.retry_every_s = reconnect_timeout_s, retry_every_s
        self.stop_wait_s = stop_wait_s
        self.lost: str | None = None
        self.connection_losses = 0
        self._last_obs = None

    def _info(self, **extra) -> dict:
        info = {"is_success": False, "intervention": False}
        info.update(extra)
        return info

    def step(self, action):
        safe = _find_safe_arm(self.env)
        if self.lost is not None:
            return self._last_obs, 0.0, False, True, self._info(
                connection_lost=True, error=self.lost)
        try:
            obs, reward, term, trunc, info = self.env.step(action)
        except ConnectionLostError as exc:
            self.lost = str(exc)
            self.connection_losses += 1
            print(f"[robot_rl.safety] connection lost, episode truncated: {exc}", flush=True)
            return self._last_obs, 0.0, False, True, self._info(
                connection_lost=True, error=str(exc))
        self._last_obs = obs
        if safe is not None and safe.stopped:
            info = dict(info, operator_stop=True, error=safe.stop_reason)
            return obs, reward, term, True, info
        return obs, reward, term, trunc, info

    def _reconnect(self) -> None:
        arm = getattr(self.env.unwrapped, "arm", None)
        parts = [arm, getattr(self.env.unwrapped, "gripper", None),
                 *getattr(self.env.unwrapped, "cameras", [])]
        t0 = time.monotonic()
        deadline = None if self.reconnect_timeout_s is None else t0 + self.reconnect_timeout_s
        last_exc: Exception | None = None
        next_note = t0 + 10.0
        while True:
            try:
                for part in parts:
                    if part is not None and hasattr(part, "reconnect"):
                        part.reconnect()
                self.lost = None
                print("[robot_rl.safety] reconnected", flush=True)
                return
            except Exception as exc:  # noqa: BLE001 (any failure means: retry)
                last_exc = exc
            now = time.monotonic()
            if now >= next_note:
                print(f"[robot_rl.safety] still reconnecting after {now - t0:.0f} s: "
                      f"{last_exc}", flush=True)
                next_note = now + 10.0
            if deadline is not None and now >= deadline:
                raise ConnectionLostError(
                    f"could not reconnect within {self.reconnect_timeout_s:.0f} s after: "
                    f"{self.lost} (last attempt: {last_exc}). Check the robot (power, "
                    f"network, FCI enabled, user stop released), then resume the run with "
                    f"`robot-rl train --resume RUN_DIR`.") from last_exc
            time.sleep(self.retry_every_s)

    def _wait_for_release(self, safe: SafeArm) -> None:
        print(f"[robot_rl.safety] waiting for release() of the operator stop "
              f"({safe.stop_reason}) before resetting", flush=True)
        t0 = time.monotonic()
        while safe.stopped:
            if self.stop_wait_s is not None and time.monotonic() - t0 > self.stop_wait_s:
                raise OperatorStopError(f"operator stop still engaged after "
                                        f"{self.stop_wait_s} s: {safe.stop_reason}")
            time.sleep(0.05)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reconnect / wait for the operator as needed, then reset; a loss or an operator stop
        during the reset itself is handled the same way and the reset retried."""
        safe = _find_safe_arm(self.env)
        while True:
            if self.lost is not None:
                self._reconnect()
            if safe is not None and safe.stopped:
                self._wait_for_release(safe)
            try:
                obs, info = self.env.reset(seed=seed, options=options)
                break
            except ConnectionLostError as exc:
                self.lost = str(exc)
                self.connection_losses += 1
                print(f"[robot_rl.safety] connection lost during reset: {exc}", flush=True)
            except OperatorStopError:
                if safe is None:
                    raise
        self._last_obs = obs
        return obs, info
