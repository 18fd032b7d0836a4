"""Franka arm and gripper on `franky-control` (pip `franky-control`, import `franky`; bundles
libfranka 0.21). franky runs the 1 kHz Cartesian impedance loop client-side in C++ (a torque
motion, `CartesianImpedanceTrackingMotion`); Python only streams targets (10-50 Hz) into it.

    with FrankaArm("172.16.0.2") as arm:           # or a franky-sim host on loopback
        arm.set_target_pose(pos, quat)             # non-blocking, latest wins
        s = arm.state()                            # never blocks: the poller's latest sample
        arm.set_impedance(ImpedanceParams.precise())
        arm.move_to_joints(q)                      # blocking joint reset

How our `ImpedanceParams` map onto franky (`map_impedance`):

- stiffness (6, diagonal) -> `CartesianImpedanceGains.diagonal(stiffness)`: exact.
- damping None (critical, 2 sqrt(K)) -> gains.damping = None (franky: critical, 2 sqrt(K));
  damping (6) -> gains.damping = diag(damping): exact.
- clip_low / clip_high (per axis) -> `translational_error_clip` / `rotational_error_clip`
  (base frame, elementwise, symmetric): exact only for a symmetric clip; an asymmetric clip
  uses the tighter bound min(-low, high) per axis (reported in `FrankyImpedance.notes`).
- max_torque_rate [Nm per 1 ms tick] -> `max_delta_tau` [Nm per cycle]: exact.
- nullspace_stiffness / nullspace_damping (None = critical) -> `PostureTask(stiffness,
  damping)` (None = critical): gains exact; franky's nullspace projector is its own (ours is
  the dynamically consistent one).
- q_nullspace (None = the reset pose) -> `PostureTask.target` (the last move_to_joints pose,
  or the pose at connect): exact.

Runtime changes: stiffness, damping and nullspace gains go to the running motion
(`set_gains`, smoothed with `gains_time_constant`, 0.1 s); a change of the error clip, torque
rate or posture target starts a new tracking motion that takes over seamlessly in the next
1 ms cycle (franky queues motions of the same control type) from the same reference.
Not mapped (no counterpart in franky): our torque saturation (the robot enforces its own
torque limits) and our Python-side gravity bias (the robot compensates gravity itself).
franky adds Coriolis compensation and soft joint-limit repulsion (FR3 limits by default).

Faults: when the control loop ends unexpectedly (a reflex on the robot, a libfranka error),
the next call notices, stores the error (`last_error`), runs the robot's automatic error
recovery and restarts the tracking motion holding the measured pose (`auto_recover=True`).
A dead connection (no fresh state for `stale_after_s`) raises `ConnectionLostError`;
`reconnect()` builds a new connection.

`FrankySim` starts `franky-sim` (pip `franky-sim`, a MuJoCo server speaking the Franka network
protocol) as a subprocess on a loopback address, for tests and `robot-rl bench robot`.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np

from robot_rl.controllers.impedance import (FRANKA_TORQUE_LIMITS, ImpedanceParams, bounded_to,
                                            joint_torque_bound)
from robot_rl.controllers.safety import UnsafeCommandError, check_finite, check_joint_limits
from robot_rl.hardware.hal import ArmState, GripperState
from robot_rl.hardware.safety import ConnectionLostError, validate_pose

# Joint limits [rad] (Franka datasheets; FR3 matches franky-sim's model).
JOINT_LIMITS = {
    "fr3": (np.array([-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159]),
            np.array([2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159])),
    "panda": (np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]),
              np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973])),
}


def connect_within(factory, timeout_s: float, what: str):
    """`factory()` (a franky constructor, which blocks in libfranka's handshake for as long
    as a stalled peer keeps the TCP connection open) bounded by `timeout_s`: past it,
    `ConnectionLostError`. The stuck call is left to finish in a daemon thread; whatever it
    returns late is dropped."""
    result: dict = {}

    def run():
        try:
            result["value"] = factory()
        except Exception as exc:  # noqa: BLE001 - re-raised below
            result["error"] = exc

    t = threading.Thread(target=run, daemon=True, name=f"connect {what}")
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise ConnectionLostError(f"cannot connect to {what}: no answer within {timeout_s} s "
                                  f"(is it powered, FCI enabled, the network up?)")
    if "error" in result:
        exc = result["error"]
        raise ConnectionLostError(f"cannot connect to {what}: {type(exc).__name__}: {exc}") from exc
    return result["value"]


class FrankaError(RuntimeError):
    """The robot refused or aborted a command and recovery did not help."""


class ArmFaultError(ConnectionLostError):
    """The arm was stopped because it misbehaved: tracking diverged, or reflexes repeated.
    Handled like a lost connection (the episode ends as truncated, with this message); the
    next reset recovers the arm and clears it."""


# FR3 joint velocity limits [rad/s] (datasheet). The robot itself stops the arm with a
# `joint_velocity_violation` reflex a little above them (franka-sim models the FCI's
# measured-velocity check with 0.1 rad/s of margin); that reflex is the normal, recoverable
# path. The driver's own watch is for a runaway the robot did not stop (limits not enforced:
# the review saw 12 rad/s), so it sits 10% above: at the bare limit it raced the robot's
# reflex and, with the CPU starved, won (CI: "joint 7 at 5.26 rad/s" instead of the reflex).
FR3_MAX_JOINT_SPEED = np.array([2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26])
RUNAWAY_SPEED_FACTOR = 1.1


def import_franky():
    try:
        import franky
    except ImportError as exc:
        raise ImportError("the Franka driver needs `pip install franky-control` "
                          "(imported as `franky`; it bundles libfranka)") from exc
    return franky


# ---- parameter mapping -------------------------------------------------------------------
@dataclass(frozen=True)
class FrankyImpedance:
    """Our `ImpedanceParams` expressed in franky's terms (see the module table)."""
    stiffness: np.ndarray           # (6,)
    damping: np.ndarray | None      # (6,) or None = critical
    translational_error_clip: np.ndarray  # (3,) symmetric
    rotational_error_clip: np.ndarray     # (3,)
    max_delta_tau: float
    posture_stiffness: float
    posture_damping: float | None
    notes: tuple[str, ...] = ()

    def motion_key(self) -> tuple:
        """What cannot change on a running motion (a change needs a new motion)."""
        return (tuple(self.translational_error_clip), tuple(self.rotational_error_clip),
                self.max_delta_tau)


def map_impedance(params: ImpedanceParams) -> FrankyImpedance:
    low, high = -np.array(params.clip_low), np.array(params.clip_high)
    clip = np.minimum(low, high)
    notes = []
    if not np.allclose(low, high):
        notes.append(f"asymmetric error clip low={params.clip_low} high={params.clip_high}: "
                     f"franky clips symmetrically, using the tighter bound {clip.tolist()}")
    clip = np.maximum(clip, 1e-6)  # franky needs a positive clip; 0 would freeze an axis anyway
    return FrankyImpedance(
        stiffness=np.array(params.stiffness, float),
        damping=None if params.damping is None else np.array(params.damping, float),
        translational_error_clip=clip[:3].copy(), rotational_error_clip=clip[3:].copy(),
        max_delta_tau=float(params.max_torque_rate),
        posture_stiffness=float(params.nullspace_stiffness),
        posture_damping=params.nullspace_damping, notes=tuple(notes))


def _preset(p) -> ImpedanceParams:
    if isinstance(p, ImpedanceParams):
        return p
    if isinstance(p, str):
        return ImpedanceParams.preset(p)
    if isinstance(p, dict):
        return ImpedanceParams(**p)
    raise TypeError(f"impedance must be a preset name, a dict of ImpedanceParams fields or "
                    f"ImpedanceParams, got {p!r}")


def _col_major(T: np.ndarray) -> list[float]:
    return np.asarray(T, float).flatten(order="F").tolist()


def _pose_matrix(offset) -> np.ndarray:
    """(x, y, z) or (x, y, z, qx, qy, qz, qw) or a 4x4 matrix -> 4x4."""
    a = np.asarray(offset, float)
    if a.shape == (4, 4):
        return a
    T = np.eye(4)
    if a.shape == (3,):
        T[:3, 3] = a
        return T
    if a.shape == (7,):
        from robot_rl.controllers.frames import quat_to_mat
        T[:3, 3] = a[:3]
        T[:3, :3] = quat_to_mat(a[3:] / np.linalg.norm(a[3:]))
        return T
    raise ValueError(f"tcp_offset must be xyz, xyz+quat(xyzw) or a 4x4 matrix, got shape {a.shape}")


# ---- arm -----------------------------------------------------------------------------------
class FrankaArm:
    """`hal.Arm` for a Franka robot through franky. See the module docstring.

    host: robot (FCI) address. impedance: the initial parameters: a preset name ("compliant"
    for training, "precise" for resets; switch with `set_impedance` / `use_preset`), a dict of
    ImpedanceParams fields, or ImpedanceParams.
    load: {"mass": kg, "com": [x, y, z] from the flange, "inertia": 3x3 or 9} of a payload.
    tcp_offset: the TCP in the nominal end-effector frame (NE_T_EE): xyz, xyz+quat or 4x4.
    collision: (torque thresholds [Nm], force thresholds [N]) for the robot's reflexes.
    joint_limits: "fr3" | "panda" | None: franky's soft joint-limit repulsion and the check on
    move_to_joints targets. reset_speed: relative dynamics factor (0, 1] of joint resets.
    """

    def __init__(self, host: str = "172.16.0.2", impedance="compliant",
                 load: dict | None = None, tcp_offset=None,
                 collision: tuple | None = None, joint_limits: str | None = "fr3",
                 reset_speed: float = 0.2, joint_tolerance: float = 0.01,
                 settle_timeout_s: float = 3.0, auto_recover: bool = True,
                 poll_hz: float = 250.0, stale_after_s: float = 0.25,
                 gains_time_constant: float = 0.1, realtime: bool = False,
                 connect_timeout_s: float = 5.0, torque_fraction: float | None = 0.8,
                 max_recoveries: int = 3, recovery_window_s: float = 10.0,
                 max_tracking_error: float = 0.25):
        if not 0 < reset_speed <= 1:
            raise ValueError(f"reset_speed must be in (0, 1], got {reset_speed}")
        if joint_limits is not None and joint_limits not in JOINT_LIMITS:
            raise ValueError(f"joint_limits must be one of {sorted(JOINT_LIMITS)} or None")
        self.host = host
        self.impedance = _preset(impedance)
        self.load, self.tcp_offset, self.collision = load, tcp_offset, collision
        self.joint_limits = joint_limits
        self.reset_speed, self.joint_tolerance = reset_speed, joint_tolerance
        self.settle_timeout_s, self.auto_recover = settle_timeout_s, auto_recover
        self.poll_period, self.stale_after_s = 1.0 / poll_hz, stale_after_s
        self.gains_time_constant, self.realtime = gains_time_constant, realtime
        self.connect_timeout_s = connect_timeout_s
        self.torque_fraction = torque_fraction
        self.clip_scale = 1.0          # how much _mapped shrank the last motion's error clip
        self.max_recoveries, self.recovery_window_s = max_recoveries, recovery_window_s
        self.max_tracking_error = max_tracking_error
        self._recovery_times: list[float] = []
        self.fault: str | None = None  # divergence or repeated reflexes: nothing moves until reset
        self._reference_pos: np.ndarray | None = None  # the target the motion tracks
        self._running_clip = np.zeros(6)  # the running motion's error clip, after bounding
        self.last_error: str | None = None
        self.recoveries = 0
        self.samples = 0               # fresh states received (the poller's rate is observable)
        self.franky = None
        self._robot = None
        self._motion = None
        self._motion_key = None
        self._expect_control = False
        self._q_null: np.ndarray | None = None
        self._lock = threading.RLock()
        self._latest: ArmState | None = None
        self._latest_wall = 0.0        # monotonic time of the last *fresh* sample
        self._robot_ms = None
        self._mode = "unknown"
        self._poll_error: str | None = None
        self._stop_poll = threading.Event()
        self._poller: threading.Thread | None = None
        self._closed = True

    # ---- connection ----------------------------------------------------------------------
    def connect(self, control: bool = True) -> "FrankaArm":
        """Connect, configure load/TCP/collision behaviour, start the state poller and (with
        `control`) the impedance motion holding the current pose. `control=False` connects
        read-only: nothing moves (used by `robot-rl robot check`)."""
        franky = self.franky = import_franky()
        rt = franky.RealtimeConfig.Enforce if self.realtime else franky.RealtimeConfig.Ignore
        self._robot = connect_within(lambda: franky.Robot(self.host, realtime_config=rt),
                                     self.connect_timeout_s, f"the Franka at {self.host}")
        r = self._robot
        if r.has_errors:
            r.recover_from_errors()
        if self.collision is not None:
            r.set_collision_behavior(*self.collision)
        if self.tcp_offset is not None:
            r.set_ee(_col_major(_pose_matrix(self.tcp_offset)))
        if self.load is not None:
            inertia = np.asarray(self.load.get("inertia", np.zeros(9)), float).reshape(3, 3)
            r.set_load(float(self.load["mass"]), list(map(float, self.load.get("com", (0, 0, 0)))),
                       _col_major(inertia))
        self._closed = False
        self._latest, self._poll_error, self._robot_ms = None, None, None
        self._stop_poll = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="FrankaArm-state", daemon=True)
        self._poller.start()
        deadline = time.monotonic() + self.connect_timeout_s
        while self._latest is None:
            if time.monotonic() > deadline:
                self.close()
                raise ConnectionLostError(f"connected to {self.host} but no robot state "
                                          f"arrived within {self.connect_timeout_s} s "
                                          f"({self._poll_error})")
            time.sleep(0.002)
        if self._q_null is None:
            self._q_null = self._latest.q.copy()
        if control:
            with self._lock:
                self._start_tracking()
        return self

    def reconnect(self) -> None:
        """A fresh connection after a loss (no-op while the connection is healthy); after a
        fault (divergence, repeated reflexes), error recovery and a fresh motion holding the
        measured pose."""
        if self._robot is not None and self._healthy():
            if self.fault is not None:
                self.fault, self._recovery_times = None, []
                self.recover()
            return
        control = self._expect_control or self._motion is not None
        self._teardown()
        self.connect(control=control)

    def close(self) -> None:
        if self._closed:
            return
        with self._lock:
            if self._robot is not None and self._healthy():
                try:
                    self._stop_tracking()
                except Exception as exc:  # noqa: BLE001 (closing must not raise)
                    warnings.warn(f"stopping the impedance motion on close: {exc}")
        self._teardown()

    def _teardown(self) -> None:
        self._closed = True
        self._stop_poll.set()
        if self._poller is not None and self._poller is not threading.current_thread():
            self._poller.join(timeout=2.0)
        self._poller = None
        self._motion, self._motion_key, self._expect_control = None, None, False
        self._robot = None  # franky closes the connection when the object goes away

    def __enter__(self):
        if self._robot is None:
            self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- state ---------------------------------------------------------------------------
    def _convert(self, s) -> ArmState:
        ee = s.O_T_EE
        twist = s.O_dP_EE_est
        dq = np.array(s.dq)
        if twist is None:
            J = self._robot.model.zero_jacobian(self.franky.Frame.EndEffector, s)
            tw = J @ dq
        else:
            tw = np.concatenate([twist.linear, twist.angular])
        return ArmState(q=np.array(s.q), dq=dq,
                        tcp_pose=np.concatenate([ee.translation, ee.quaternion]),
                        tcp_twist=np.asarray(tw, float), wrench=np.array(s.O_F_ext_hat_K),
                        t_ns=time.monotonic_ns())

    def _poll(self) -> None:
        stop, robot = self._stop_poll, self._robot
        while not stop.is_set():
            try:
                s = robot.state  # in control: the loop's latest state; idle: one UDP read
                ms = s.time.to_msec()
                if ms != self._robot_ms:
                    self._robot_ms, self._mode = ms, s.robot_mode.name
                    self._latest = self._convert(s)
                    self._latest_wall = time.monotonic()
                    self.samples += 1
                    self._watch_tracking(self._latest)
                self._poll_error = None
            except Exception as exc:  # noqa: BLE001 (reported through staleness)
                self._poll_error = f"{type(exc).__name__}: {exc}"
                stop.wait(0.01)
            stop.wait(self.poll_period)

    def _watch_tracking(self, st: ArmState) -> None:
        """Stop the arm at once when it diverges: joints 10% faster than the FR3's limits, or the
        TCP farther than `max_tracking_error` from the target (the driver used to go on
        reporting in_control with no error while the arm flailed at 12 rad/s)."""
        ref = self._reference_pos
        if self.fault is not None or self._motion is None or ref is None:
            return
        speed = np.abs(st.dq) / (RUNAWAY_SPEED_FACTOR * FR3_MAX_JOINT_SPEED)
        err = float(np.linalg.norm(st.tcp_pose[:3] - ref))
        if speed.max() > 1.0:
            j = int(speed.argmax())
            reason = (f"joint {j + 1} at {abs(st.dq[j]):.2f} rad/s (FR3 limit "
                      f"{FR3_MAX_JOINT_SPEED[j]}, stopped above {RUNAWAY_SPEED_FACTOR:g}x)")
        elif err > self.max_tracking_error:
            reason = f"the TCP is {err:.3f} m from its target (limit {self.max_tracking_error} m)"
        else:
            return
        self._fault(f"tracking diverged: {reason}")

    def _fault(self, reason: str) -> None:
        """Stop the motion and latch `fault` (raised by the next command, cleared by reset)."""
        self.fault = self.last_error = reason
        warnings.warn(f"Franka stopped: {reason}")
        try:
            if self._robot.is_in_control:
                self._robot.move(self.franky.TorqueStopMotion(), asynchronous=True)
        except Exception as exc:  # noqa: BLE001 - the fault is latched either way
            self.last_error = f"{reason}; stopping failed: {exc}"

    def _healthy(self) -> bool:
        return (self._latest is not None and not self._closed
                and time.monotonic() - self._latest_wall <= self.stale_after_s)

    def _check_connection(self) -> None:
        if self._robot is None or self._closed:
            raise ConnectionLostError(f"the Franka at {self.host} is not connected")
        age = time.monotonic() - self._latest_wall
        if self._latest is None or age > self.stale_after_s:
            raise ConnectionLostError(
                f"no fresh state from the Franka at {self.host} for {age:.2f} s (limit "
                f"{self.stale_after_s} s); last error: {self._poll_error or 'none'}")

    def state(self) -> ArmState:
        """The latest state (sampled at `poll_hz` by a background thread): never blocks.
        Raises `ConnectionLostError` when the samples went stale."""
        self._check_connection()
        return self._latest

    @property
    def robot_mode(self) -> str:
        return self._mode

    # ---- control -------------------------------------------------------------------------
    def _jacobian(self) -> np.ndarray:
        """The end-effector's zero Jacobian (6 x 7, base frame) at the current state."""
        f = self.franky
        return np.asarray(self._robot.model.zero_jacobian(f.Frame.EndEffector, self._robot.state))

    def _mapped(self, params: ImpedanceParams) -> FrankyImpedance:
        """`params` in franky's terms, its error clip bounded so the spring torque stays
        within `torque_fraction` of the FR3's joint torque limits here (None: unbounded)."""
        if self.torque_fraction is not None:
            bounded = bounded_to(params, self._jacobian(), FRANKA_TORQUE_LIMITS,
                                 self.torque_fraction)
            if bounded is not params:
                self.clip_scale = bounded.clip_high[3] / max(params.clip_high[3], 1e-12)
                params = bounded
            else:
                self.clip_scale = 1.0
        return map_impedance(params)

    def _within_torque_limits(self, params: ImpedanceParams) -> bool:
        if self.torque_fraction is None:
            return True
        bound = joint_torque_bound(params, self._jacobian())
        return bool(np.all(bound <= self.torque_fraction * FRANKA_TORQUE_LIMITS + 1e-9))

    def _new_motion(self, params: ImpedanceParams):
        f = self.franky
        m = self._mapped(params)
        kwargs = dict(translational_stiffness=float(m.stiffness[0]),
                      rotational_stiffness=float(m.stiffness[3]),
                      posture_task=f.PostureTask(np.asarray(
                          params.q_nullspace if params.q_nullspace is not None else self._q_null,
                          float), m.posture_stiffness, m.posture_damping),
                      max_delta_tau=m.max_delta_tau,
                      translational_error_clip=m.translational_error_clip,
                      rotational_error_clip=m.rotational_error_clip,
                      gains_time_constant=self.gains_time_constant)
        if self.joint_limits is not None:
            lo, hi = JOINT_LIMITS[self.joint_limits]
            kwargs.update(lower_joint_limits=lo, upper_joint_limits=hi)
        motion = f.CartesianImpedanceTrackingMotion(**kwargs)
        motion.set_gains(f.CartesianImpedanceGains.diagonal(m.stiffness, m.damping))
        return motion, m

    def _start_tracking(self, pos=None, quat=None) -> None:
        f = self.franky
        motion, m = self._new_motion(self.impedance)
        if pos is None:  # hold the measured pose (the poller's sample: no UDP read here)
            pose = self.state().tcp_pose
            pos, quat = pose[:3], pose[3:]
        target = f.Affine(np.asarray(pos, float), np.asarray(quat, float))
        motion.set_reference(f.CartesianReference(target=target))
        self._reference_pos = np.asarray(pos, float).copy()
        self._robot.move(motion, asynchronous=True)
        # keyed by what was asked for (the clip before bounding): a gains-only change retunes
        self._motion_key = (map_impedance(self.impedance).motion_key(), tuple(self._q_null))
        self._motion, self._running_clip = motion, np.concatenate(
            [m.translational_error_clip, m.rotational_error_clip])
        self._expect_control = True
        deadline = time.monotonic() + 1.0
        while not self._robot.is_in_control:
            if time.monotonic() > deadline:
                self._surface_error()
                raise FrankaError(f"the impedance motion did not start: {self.last_error}")
            time.sleep(0.001)

    def _stop_tracking(self) -> None:
        f = self.franky
        self._expect_control = False
        self._reference_pos = None
        if self._robot.is_in_control:
            self._robot.move(f.TorqueStopMotion(), asynchronous=True)
        try:
            self._robot.join_motion(timeout=3.0)
        except f.ControlException as exc:
            if "preempted" not in str(exc):
                self.last_error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001
            self.last_error = f"{type(exc).__name__}: {exc}"
        self._motion = None

    def _surface_error(self) -> str | None:
        """The exception the finished motion left behind (None if it ended cleanly)."""
        try:
            self._robot.join_motion(timeout=0.0)
        except Exception as exc:  # noqa: BLE001 (ControlException, NetworkException, ...)
            self.last_error = f"{type(exc).__name__}: {exc}"
            return self.last_error
        return None

    def _ensure_control(self) -> None:
        """Called before every command: start control if it never ran (read-only connect),
        recover (or raise, without `auto_recover`) if the motion ended unexpectedly."""
        self._check_connection()
        if self.fault is not None:
            raise ArmFaultError(f"the Franka at {self.host} was stopped: {self.fault}")
        if self._motion is None:
            self._start_tracking()
            return
        if self._robot.is_in_control:
            return
        err = self._surface_error()
        if not self.auto_recover:
            raise FrankaError(f"the Franka impedance motion ended: {err or self.last_error} "
                              f"(auto_recover is off: call recover())")
        now = time.monotonic()
        self._recovery_times = [t for t in self._recovery_times
                                if now - t < self.recovery_window_s] + [now]
        if len(self._recovery_times) > self.max_recoveries:
            self._fault(f"{len(self._recovery_times)} reflexes within {self.recovery_window_s:.0f} s "
                        f"(last: {err or self.last_error})")
            raise ArmFaultError(f"the Franka at {self.host} was stopped: {self.fault}")
        warnings.warn(f"Franka control loop ended ({err or 'no error reported'}); "
                      f"running automatic error recovery")
        self.recover()

    def recover(self) -> None:
        """Automatic error recovery, then a fresh impedance motion holding the measured pose."""
        with self._lock:
            self._check_connection()
            if self._robot.is_in_control:
                self._stop_tracking()
            try:
                self._robot.recover_from_errors()
            except Exception as exc:  # noqa: BLE001
                raise FrankaError(f"automatic error recovery failed: {exc}") from exc
            self._start_tracking()
            self.recoveries += 1

    def set_target_pose(self, pos, quat) -> None:
        """Non-blocking, latest wins: the 1 kHz loop picks the new reference up next cycle."""
        pos, quat = validate_pose(pos, quat)
        f = self.franky
        with self._lock:
            self._ensure_control()
            try:
                self._motion.set_reference(f.CartesianReference(target=f.Affine(pos, quat)))
            except ValueError as exc:
                raise UnsafeCommandError(f"franky rejected the target: {exc}") from exc
            self._reference_pos = np.asarray(pos, float).copy()

    def commanded_pose(self) -> np.ndarray | None:
        """The reference the 1 kHz loop is tracking, read back from franky's motion object:
        [x, y, z, qx, qy, qz, qw] (None when no motion runs)."""
        m = self._motion
        if m is None:
            return None
        ref = m.get_reference()
        if ref is None:
            return None
        return np.concatenate([ref.target.translation, ref.target.quaternion])

    def set_impedance(self, params) -> None:
        """Gains go to the running motion (smoothed); a changed clip / torque rate / posture
        target starts a new motion that takes over in the next cycle from the same reference."""
        params = _preset(params)
        with self._lock:
            self.impedance = params
            if self._motion is None:
                return
            self._ensure_control()
            m = map_impedance(params)
            q_null = np.asarray(params.q_nullspace if params.q_nullspace is not None
                                else self._q_null, float)
            # the running motion keeps its (bounded) clip: fine unless the new gains push the
            # torque bound past the limits with it
            running = params.with_(clip_low=tuple(-self._running_clip),
                                   clip_high=tuple(self._running_clip))
            if ((m.motion_key(), tuple(q_null)) == self._motion_key
                    and self._within_torque_limits(running)):
                f = self.franky
                self._motion.set_gains(f.CartesianImpedanceGains.diagonal(m.stiffness, m.damping))
                ns = self._motion.get_nullspace_gains()
                ns.posture_stiffness = m.posture_stiffness
                ns.posture_damping = m.posture_damping
                self._motion.set_nullspace_gains(ns)
            else:
                ref = self.commanded_pose()
                if ref is None:
                    self._start_tracking()
                else:
                    self._start_tracking(ref[:3], ref[3:])

    def use_preset(self, name: str) -> None:
        self.set_impedance(ImpedanceParams.preset(name))

    def check_joints(self, q) -> np.ndarray:
        q = check_finite("joint target", q, (7,))
        if self.joint_limits is not None:
            check_joint_limits(q, *JOINT_LIMITS[self.joint_limits], self.joint_limits)
        return q

    def move_to_joints(self, q, timeout_s: float | None = None) -> None:
        """Blocking joint reset: end the impedance motion, a joint motion (the robot's joint
        impedance controller, `reset_speed`), wait until within `joint_tolerance`, then resume
        impedance control at the new pose (which also becomes the nullspace posture)."""
        q = self.check_joints(q)
        f = self.franky
        with self._lock:
            self._check_connection()
            was_controlling = self._motion is not None
            if self._robot.is_in_control:
                self._stop_tracking()
            self._motion, self._expect_control = None, False
            if self._robot.has_errors:
                self._robot.recover_from_errors()
            motion = f.JointMotion(q, relative_dynamics_factor=self.reset_speed)
            for attempt in range(2):
                try:
                    self._robot.move(motion)
                    break
                except Exception as exc:  # noqa: BLE001 (ControlException: reflex, ...)
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self._check_connection()
                    if attempt == 1 or not self.auto_recover:
                        raise FrankaError(f"joint reset failed: {self.last_error}") from exc
                    self._robot.recover_from_errors()
                    self.recoveries += 1
                    motion = f.JointMotion(q, relative_dynamics_factor=self.reset_speed)
            deadline = time.monotonic() + (timeout_s or self.settle_timeout_s)
            while True:  # the joint motion ends on the planned trajectory; let the arm settle
                err = float(np.max(np.abs(self.state().q - q)))
                if err <= self.joint_tolerance:
                    break
                if time.monotonic() > deadline:
                    raise FrankaError(f"joint reset did not settle: max joint error {err:.4f} "
                                      f"rad > {self.joint_tolerance}")
                time.sleep(0.01)
            self._q_null = q.copy()
            if was_controlling:
                self._start_tracking()

    def stop(self) -> None:
        """Hold the measured pose."""
        s = self.state()
        self.set_target_pose(s.tcp_pose[:3], s.tcp_pose[3:])

    @property
    def in_control(self) -> bool:
        return self._robot is not None and self._robot.is_in_control


# ---- gripper -------------------------------------------------------------------------------
class FrankaGripper:
    """`hal.Gripper` for the Franka Hand through franky.

    `command(width)` is non-blocking and latest-wins: a worker thread runs one gripper command
    at a time (the hand cannot take overlapping commands) and then the newest pending target;
    targets within `deadband` of the last one are dropped (RobotEnv re-sends every step).
    Widths at or below `grasp_below` become a force-controlled grasp (`force`, any object
    width), wider ones a position move. `state()` never blocks (a poller samples the hand). A
    command that does not finish within `command_timeout_s`, or a constructor that gets no
    answer within `connect_timeout_s`, is a `ConnectionLostError` (the episode ends; reset
    reconnects).
    """

    def __init__(self, host: str = "172.16.0.2", speed: float = 0.1, force: float = 20.0,
                 grasp_below: float = 0.01, deadband: float = 0.005, homing: bool = False,
                 poll_hz: float = 50.0, stale_after_s: float = 1.0,
                 connect_timeout_s: float = 5.0, command_timeout_s: float = 10.0):
        self.host, self.speed, self.force = host, speed, force
        self.command_timeout_s = command_timeout_s
        self._busy_since: float | None = None  # when the running command started
        self._busy_what = ""
        self._worker_gen = 0
        self.grasp_below, self.deadband, self.homing = grasp_below, deadband, homing
        self.poll_period, self.stale_after_s = 1.0 / poll_hz, stale_after_s
        self.connect_timeout_s = connect_timeout_s
        self.max_width = 0.08
        self.last_error: str | None = None
        self._g = None
        self._latest: GripperState | None = None
        self._latest_wall = 0.0
        self._target: float | None = None
        self._last_cmd: float | None = None
        self._busy = False
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closed = True

    def connect(self) -> "FrankaGripper":
        franky = import_franky()
        self._g = connect_within(lambda: franky.Gripper(self.host), self.connect_timeout_s,
                                 f"the Franka Hand at {self.host}")
        self._busy_since = None
        if self.homing:
            self._g.homing()
        self.max_width = float(self._g.max_width) or 0.08
        self._closed = False
        self._stop = threading.Event()
        self._latest = None
        poller = threading.Thread(target=self._poll, daemon=True, name="gripper-state")
        poller.start()
        self._threads = [poller, self._start_worker()]
        deadline = time.monotonic() + self.connect_timeout_s
        while self._latest is None:
            if time.monotonic() > deadline:
                self.close()
                raise ConnectionLostError(f"no gripper state from {self.host} within "
                                          f"{self.connect_timeout_s} s ({self.last_error})")
            time.sleep(0.002)
        return self

    def _poll(self) -> None:
        g, stop = self._g, self._stop
        while not stop.is_set():
            try:
                s = g.state
                self._latest = GripperState(width=float(s.width), max_width=self.max_width,
                                            grasped=bool(s.is_grasped), t_ns=time.monotonic_ns())
                self._latest_wall = time.monotonic()
            except Exception as exc:  # noqa: BLE001
                self.last_error = f"{type(exc).__name__}: {exc}"
            stop.wait(self.poll_period)

    def _start_worker(self) -> threading.Thread:
        self._worker_gen += 1
        t = threading.Thread(target=self._work, args=(self._worker_gen,), daemon=True,
                             name="gripper-cmd")
        t.start()
        return t

    def _work(self, gen: int) -> None:
        """Runs commands one at a time until stopped or replaced (`gen` no longer current: a
        stop abandoned it while its call was still waiting on the hand)."""
        g = self._g
        while True:
            with self._cv:
                while (self._target is None and not self._stop.is_set()
                       and gen == self._worker_gen):
                    self._cv.wait(0.1)
                if self._stop.is_set() or gen != self._worker_gen:
                    return
                width, self._target, self._busy = self._target, None, True
                grasp = width <= self.grasp_below
                self._busy_what = "grasp" if grasp else f"move to {width:.3f} m"
                self._busy_since = time.monotonic()  # see _check: a command that never ends
            try:
                if grasp:
                    g.grasp(0.0, self.speed, self.force, epsilon_inner=0.0,
                            epsilon_outer=self.max_width)
                else:
                    g.move(width, self.speed)
            except Exception as exc:  # noqa: BLE001 (a failed grasp is not a crash)
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                with self._cv:
                    if gen == self._worker_gen:
                        self._busy, self._busy_since = False, None
                    self._cv.notify_all()

    def stop(self) -> None:
        """Drop the pending command and stop the hand's motion (an operator stop). The
        interrupted call may never return (franky-sim's does not), so a fresh worker takes
        the next command."""
        if self._g is None or self._closed:
            return
        try:  # franky's Gripper.stop interrupts the move or grasp running in the worker
            self._g.stop()
        except Exception as exc:  # noqa: BLE001 - reported, the stop latch still holds
            self.last_error = f"{type(exc).__name__}: {exc}"
        with self._cv:
            self._target, self._last_cmd = None, None
            if self._busy:  # abandon the interrupted call's worker
                self._busy, self._busy_since = False, None
                self._threads.append(self._start_worker())
            self._cv.notify_all()

    def command(self, width: float) -> None:
        width = float(np.clip(check_finite("gripper width", width, ()), 0.0, self.max_width))
        self._check()
        with self._cv:
            if self._last_cmd is not None and abs(width - self._last_cmd) < self.deadband:
                return
            self._last_cmd = self._target = width
            self._cv.notify_all()

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """Block until every queued command finished (resets and tests)."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self._busy or self._target is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def _check(self) -> None:
        if self._g is None or self._closed:
            raise ConnectionLostError(f"the Franka Hand at {self.host} is not connected")
        since = self._busy_since
        if since is not None and time.monotonic() - since > self.command_timeout_s:
            # the hand never answered (the worker used to wait forever, dropping every later
            # command silently); a reconnect starts a fresh connection and worker
            raise ConnectionLostError(f"the Franka Hand at {self.host} did not finish its "
                                      f"{self._busy_what} within {self.command_timeout_s} s")
        age = time.monotonic() - self._latest_wall
        if self._latest is None or age > self.stale_after_s:
            raise ConnectionLostError(f"no fresh gripper state from {self.host} for {age:.2f} s "
                                      f"({self.last_error or 'no error reported'})")

    def state(self) -> GripperState:
        self._check()
        return self._latest

    def reconnect(self) -> None:
        if self._g is not None and not self._closed:
            try:
                self._check()
                return
            except ConnectionLostError:
                pass
        self.close()
        self._last_cmd = None
        self.connect()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout=5.0)
        self._threads = []
        self._g = None

    def __enter__(self):
        if self._g is None:
            self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- franky-sim launcher -------------------------------------------------------------------
class FrankySim:
    """`franky-sim` (MuJoCo FR3 server speaking the Franka protocol) as a subprocess.

    Binds a free loopback address (franky-sim tries 127.0.0.1, then 127.0.0.2, ... since the
    Franka ports 1337/1338 are fixed) unless `hostname` is given; `host` is the address to
    connect to. Use as a context manager; `kill()` simulates a crashed robot/network."""

    def __init__(self, hostname: str | None = None, start_timeout_s: float = 60.0):
        self.hostname, self.start_timeout_s = hostname, start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.host: str | None = None
        self.log: list[str] = []

    @staticmethod
    def command() -> list[str]:
        exe = os.path.join(os.path.dirname(sys.executable), "franky-sim")
        if not os.path.exists(exe):
            exe = shutil.which("franky-sim")
        if exe is None:
            raise FileNotFoundError("franky-sim is not installed: `pip install franky-sim`")
        # "-s mujoco": franky-sim 1.0.4's "auto" raises when the optional genesis is missing
        return [exe, "-s", "mujoco"]

    def start(self) -> "FrankySim":
        cmd = self.command() + (["--hostname", self.hostname] if self.hostname else [])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        found: list[str] = []

        def read():
            for line in self.proc.stdout:
                self.log.append(line.rstrip())
                m = re.search(r"using '([0-9.]+)' as the robot IP", line)
                if m and not found:
                    found.append(m.group(1))

        self._reader = threading.Thread(target=read, daemon=True, name="franky-sim-log")
        self._reader.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not found:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("franky-sim did not start:\n" + "\n".join(self.log[-20:]))
            time.sleep(0.02)
        self.host = found[0]
        return self

    def kill(self) -> None:
        """SIGKILL: the robot vanishes mid-motion (no goodbye on the connection)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(timeout=2)
        if self.proc.stdout is not None and not self._reader.is_alive():
            self.proc.stdout.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
