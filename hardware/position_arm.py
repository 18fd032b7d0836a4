"""`CartesianPositionArm`: the HAL `Arm` of an arm that only takes joint-position targets.

`RobotEnv` and `SafeArm` talk to every arm in TCP poses. For a position-controlled arm this class
turns the latest (already boxed and delta-limited) pose target into joint targets once per servo
period with `DifferentialIK` (controllers/diff_ik.py) and sends them to the arm's `JointServos`:
the MuJoCo position actuators of the simulated SO-101 (sim/world.py `ServoWorld`), or a real
arm's bus (hardware/so101.py's LeRobot adapter). Per servo period the joint target moves at most
`max_velocity * dt` per joint and never leaves the joint limits, and it never leads the measured
joints by more than `max_lead` (the servo's force on contact is bounded by its gain times this
lead: the only compliance a stiff position servo has).
"""
from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

import numpy as np

from robot_rl.controllers.diff_ik import DifferentialIK, DiffIKParams
from robot_rl.controllers.kinematics import SerialChain
from robot_rl.controllers.safety import check_finite, check_joint_limits
from robot_rl.hardware.hal import ArmState, WallClock
from robot_rl.hardware.safety import ConnectionLostError, validate_pose


@runtime_checkable
class JointServos(Protocol):
    """A position-controlled arm's joints, in the chain's joint order and units (rad)."""
    def read(self) -> tuple[np.ndarray, np.ndarray, int]: ...  # (q, dq, t_ns), never blocks
    def command(self, q: np.ndarray) -> None: ...              # joint targets, non-blocking
    def move_to(self, q: np.ndarray) -> None: ...              # blocking reset motion


class CartesianPositionArm:
    def __init__(self, servos: JointServos, chain: SerialChain, servo_hz: float = 50.0,
                 ik: DiffIKParams | None = None, max_lead: float | np.ndarray = 0.2,
                 q_posture=None):
        if not servo_hz > 0:
            raise ValueError(f"servo_hz must be > 0, got {servo_hz}")
        self.servos, self.chain, self.dt = servos, chain, 1.0 / servo_hz
        self.ik = DifferentialIK(chain, ik, q_posture)
        self.max_lead = np.broadcast_to(np.asarray(max_lead, float), (chain.n,)).copy()
        self._lock = threading.Lock()
        self._moving = threading.RLock()  # held by a joint move; the servo loop waits for it
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self.fault: BaseException | None = None
        self._sync_to_measured()

    def _sync_to_measured(self) -> None:
        """Command where the arm is and hold it (start, reset, stop)."""
        q, _, _ = self.servos.read()
        q = np.clip(q, self.chain.lower, self.chain.upper)
        with self._lock:
            self.q_cmd = q.copy()
            self.target_pos, self.target_quat = self.chain.fk(q)

    # ---- Arm protocol ----------------------------------------------------------------------
    def state(self) -> ArmState:
        self._check_fault()
        try:
            q, dq, t_ns = self.servos.read()
        except Exception as exc:  # a bus error (USB unplugged, power lost) ends the episode
            raise ConnectionLostError(f"reading the arm's joints failed: {type(exc).__name__}: "
                                      f"{exc}") from exc
        pos, quat, jac = self.chain.pose_and_jacobian(q)
        twist = jac @ dq
        return ArmState(q=q, dq=dq, tcp_pose=np.concatenate([pos, quat]), tcp_twist=twist,
                        wrench=np.zeros(6), t_ns=t_ns)  # hobby servos measure no wrench

    def set_target_pose(self, pos, quat) -> None:
        self._check_fault()
        pos, quat = validate_pose(pos, quat)  # finite, unit quaternion: else nothing changes
        with self._lock:
            self.target_pos, self.target_quat = pos.copy(), quat

    def set_impedance(self, params) -> None:
        """Position servos have no Cartesian stiffness to set: the pose-error clip of `params`
        becomes the IK's per-step error clip; its stiffness and damping do not apply."""
        hi = np.minimum(np.abs(params.clip_low), np.abs(params.clip_high))
        p = self.ik.params
        self.ik.params = type(p)(**{**vars(p), "max_pos_error": float(hi[:3].min()),
                                    "max_rot_error": float(hi[3:].min())})

    def move_to_joints(self, q) -> None:
        """Blocking joint move (the servo loop pauses meanwhile), then hold there."""
        q = check_joint_limits(check_finite("joint target", q, (self.chain.n,)),
                               self.chain.lower, self.chain.upper)
        with self._moving:
            self.servos.move_to(q)
            self._sync_to_measured()

    def stop(self) -> None:
        self._sync_to_measured()
        self.servos.command(self.q_cmd)

    def tick(self) -> np.ndarray:
        """One servo period: the next joint target toward the pose target, sent to the servos."""
        with self._moving:
            return self._tick()

    def _tick(self) -> np.ndarray:
        q_meas, _, _ = self.servos.read()
        with self._lock:
            q_prev = self.q_cmd
            q_ik = self.ik.step(q_prev, self.target_pos, self.target_quat, self.dt)
            lead_ok = np.clip(q_ik, q_meas - self.max_lead, q_meas + self.max_lead)
            v = self.chain.max_velocity * self.dt  # never a step larger than the speed limit
            q = np.clip(q_prev + np.clip(lead_ok - q_prev, -v, v), self.chain.lower,
                        self.chain.upper)
            self.q_cmd = q
        self.servos.command(q)
        return q

    # ---- on a real arm: the servo loop in a thread -------------------------------------------
    def start(self) -> "CartesianPositionArm":
        """Run `tick` at the servo rate in a thread (a real arm; in sim the physics ticks it).
        A tick that fails (a serial error, an unplugged arm) stops the loop; the next call to
        `state`/`set_target_pose` raises it as `ConnectionLostError`."""
        if self._thread is None:
            self._closed.clear()
            self._thread = threading.Thread(target=self._loop, name="servo-loop", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        clock = WallClock()
        while not self._closed.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 (handed to the caller's thread)
                self.fault = exc
                return
            clock.wait(self.dt)

    def _check_fault(self) -> None:
        if self.fault is not None:
            raise ConnectionLostError(f"the servo loop stopped: {type(self.fault).__name__}: "
                                      f"{self.fault}") from self.fault

    def reconnect(self) -> None:
        """After a fault: reconnect the servos (if they can), hold where the arm is, and run
        the loop again if it ran."""
        running = self._thread is not None
        self._stop_loop()
        if hasattr(self.servos, "reconnect"):
            self.servos.reconnect()
        self.fault = None
        self._sync_to_measured()
        if running:
            self.start()

    def _stop_loop(self) -> None:
        self._closed.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        self._thread = None

    def close(self) -> None:
        """Stop the servo loop and close the servos' connection (if they have one)."""
        self._stop_loop()
        if hasattr(self.servos, "close"):
            self.servos.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
