"""The SO-100/SO-101 arm in one place: its kinematics (used by the Cartesian layer and by the
simulated SO-101, sim/so101_model.py), its joint names, and the mapping between LeRobot's joint
readings and ours.

Kinematics: the SO-101's published link lengths, rounded to the millimetre (base to shoulder-pan
0.060 m; pan to shoulder-lift 0.030 m forward, 0.055 m up; upper arm 0.116 m; forearm 0.135 m;
wrist-flex to wrist-roll 0.045 m; roll to the point between the jaw tips 0.055 m). Joint limits
are the servos' usable ranges on the arm; `max_velocity` is 3 rad/s, below the STS3215's no-load
speed (~4.7 rad/s at 7.4 V), so the servo can follow every target the IK sends.

Our joint zero (all joints 0) is the arm upright with the forearm level and the gripper pointing
down at the table: upper arm vertical, forearm along +x, TCP 0.165 m forward, 0.131 m up.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from robot_rl.controllers.kinematics import RevoluteJoint, SerialChain
from robot_rl.hardware.hal import GripperState

JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
GRIPPER_NAME = "gripper"
MAX_VELOCITY = 3.0  # rad/s
FINGER_MAX = 0.03   # per finger [m]: the simulated jaw opens to 6 cm

SO101_CHAIN = SerialChain(
    joints=(
        RevoluteJoint("shoulder_pan", (0.0, 0.0, 0.060), (0, 0, 1), -1.92, 1.92, MAX_VELOCITY),
        RevoluteJoint("shoulder_lift", (0.030, 0.0, 0.055), (0, 1, 0), -1.75, 1.75, MAX_VELOCITY),
        RevoluteJoint("elbow_flex", (0.0, 0.0, 0.116), (0, 1, 0), -1.69, 1.69, MAX_VELOCITY),
        RevoluteJoint("wrist_flex", (0.135, 0.0, 0.0), (0, 1, 0), -1.66, 1.66, MAX_VELOCITY),
        # the roll frame is turned 180 deg about x, so its z axis points out of the gripper
        RevoluteJoint("wrist_roll", (0.0, 0.0, -0.045), (0, 0, 1), -2.79, 2.79, MAX_VELOCITY,
                      origin_quat=(1.0, 0.0, 0.0, 0.0)),
    ),
    tcp_pos=(0.0, 0.0, 0.055),
)
HOME_Q = np.zeros(5)


# ---- LeRobot's joint readings <-> ours --------------------------------------------------------
# LeRobot's SO follower/leader buses (lerobot.robots.so_follower, lerobot.teleoperators.so_leader)
# number the motors 1..6 in this order and report the arm joints in degrees (its `use_degrees`
# mode: 0 deg is the middle of each joint's calibrated range) and the gripper in 0 (closed) ..
# 100 (open) percent of its calibrated range.
LEROBOT_MOTORS = (*JOINT_NAMES, GRIPPER_NAME)


@dataclass(frozen=True)
class JointMapping:
    """q (ours, rad) = sign * radians(LeRobot's degrees) + offset (rad), joint by joint.

    The defaults (+1, 0) take LeRobot's calibrated middle of range as our zero pose (upright,
    forearm level, gripper down) with the same positive direction. That is how we read the
    arm's calibration procedure, not a measurement on a physical arm: check it before the first
    motion (`robot-rl robot check` prints the TCP pose our kinematics compute from the arm's
    joints; it must match where the gripper is) and set `signs`/`offsets` in the env config
    if a joint differs."""
    signs: tuple = (1.0, 1.0, 1.0, 1.0, 1.0)
    offsets: tuple = (0.0, 0.0, 0.0, 0.0, 0.0)

    def __post_init__(self):
        s, o = np.asarray(self.signs, float), np.asarray(self.offsets, float)
        if s.shape != (len(JOINT_NAMES),) or not np.all(np.isin(s, (-1.0, 1.0))):
            raise ValueError(f"signs: one +1 or -1 per joint {JOINT_NAMES}, got {self.signs}")
        if o.shape != (len(JOINT_NAMES),) or not np.all(np.isfinite(o)):
            raise ValueError(f"offsets: one finite angle (rad) per joint, got {self.offsets}")

    def to_ours(self, degrees) -> np.ndarray:
        return np.asarray(self.signs) * np.radians(np.asarray(degrees, float)) + self.offsets

    def to_lerobot(self, q) -> np.ndarray:
        return np.degrees((np.asarray(q, float) - self.offsets) * np.asarray(self.signs))


def _lerobot(what: str):
    """lerobot's SO-100/101 classes, imported when a real arm is used, with the install hint."""
    try:
        if what == "follower":
            from lerobot.robots.so_follower import SO101Follower, SO101FollowerConfig
            return SO101Follower, SO101FollowerConfig
        from lerobot.teleoperators.so_leader import SO101Leader, SO101LeaderConfig
        return SO101Leader, SO101LeaderConfig
    except ImportError as exc:
        raise ImportError(
            f"the SO-100/SO-101 needs LeRobot with its Feetech bus ({exc}): "
            "pip install 'lerobot[feetech]==0.6.1' (Python >= 3.12; scripts/setup_lerobot.sh "
            "makes such a venv, .venv-lerobot)") from None


def _require_calibrated(device, kind: str, port: str, robot_id: str) -> None:
    if not device.is_calibrated:
        device.bus.disconnect(disable_torque=False)
        flag = "robot" if kind == "follower" else "teleop"
        raise RuntimeError(
            f"the SO-101 {kind} on {port} (id {robot_id!r}) has no calibration that matches its "
            f"motors: calibrate it once with LeRobot (lerobot-calibrate --{flag}.type=so101_{kind} "
            f"--{flag}.port={port} --{flag}.id={robot_id}); robot-rl never calibrates (it asks "
            f"the operator to move the arm by hand)")


def _mapping(mapping) -> JointMapping:
    """A JointMapping from itself or from its fields (a config's `mapping: {signs, offsets}`)."""
    return mapping if isinstance(mapping, JointMapping) else JointMapping(**(mapping or {}))


class LeRobotSO101:
    """A real SO-100/SO-101 follower arm through LeRobot's robot API, as our HAL pieces:
    `servos` (the `JointServos` a `CartesianPositionArm` drives) and `gripper` (a HAL
    `Gripper`). One lock serializes the serial bus between the servo thread and the gripper.
    The calibration is LeRobot's (its file for `robot_id`, matching the servos' EPROM);
    `connect()` refuses an uncalibrated arm instead of starting LeRobot's interactive
    calibration."""

    def __init__(self, port: str, robot_id: str = "so101_follower",
                 calibration_dir: str | None = None, mapping: JointMapping | dict | None = None,
                 gripper_max_width: float = 2 * FINGER_MAX, move_speed: float = 0.5,
                 move_timeout_s: float = 15.0):
        Follower, Config = _lerobot("follower")
        from pathlib import Path
        self.port, self.robot_id, self.mapping = port, robot_id, _mapping(mapping)
        self.robot = Follower(Config(port=port, id=robot_id, calibration_dir=Path(calibration_dir)
                                     if calibration_dir else None))
        self.gripper_max_width = gripper_max_width
        self.move_speed, self.move_timeout_s = move_speed, move_timeout_s
        self.lock = threading.RLock()
        self._last: tuple[np.ndarray, int] | None = None
        self._gripper_pct = self._gripper_cmd = 100.0
        self.servos = _LeRobotServos(self)
        self.gripper = _LeRobotGripper(self)

    def connect(self) -> "LeRobotSO101":
        """LeRobot's `SOFollower.connect` without its interactive calibration and with one step
        more: every goal register is set to where the joint is before the torque comes on
        (`configure` enables it), so a goal left by an earlier session, after the arm was moved
        by hand, cannot make it jump."""
        with self.lock:
            bus = self.robot.bus
            bus.connect()
            _require_calibrated(self.robot, "follower", self.port, self.robot_id)
            try:
                bus.disable_torque()
                bus.sync_write("Goal_Position", bus.sync_read("Present_Position"))
                self.robot.configure()
            except BaseException:
                bus.port_handler.closePort()
                raise
        return self

    def read(self) -> tuple[np.ndarray, np.ndarray, int]:
        with self.lock:
            obs = self.robot.get_observation()
            t_ns = time.monotonic_ns()
            q = self.mapping.to_ours([obs[f"{n}.pos"] for n in JOINT_NAMES])
            self._gripper_pct = float(obs[f"{GRIPPER_NAME}.pos"])
            last, self._last = self._last, (q, t_ns)
        dq = np.zeros_like(q) if last is None or t_ns == last[1] else \
            (q - last[0]) / ((t_ns - last[1]) * 1e-9)
        return q, dq, t_ns

    def send(self, **positions: float) -> None:
        with self.lock:
            self.robot.send_action({f"{k}.pos": float(v) for k, v in positions.items()})

    def reconnect(self) -> None:
        """After a lost connection: drop the port (without talking to the servos) and connect
        again (the joints hold where they are; see `connect`)."""
        with self.lock:
            try:
                self.robot.bus.port_handler.closePort()
            except Exception:  # noqa: BLE001 (the port may already be gone)
                pass
            self._last = None
        self.connect()

    def close(self) -> None:
        """Torque off (LeRobot's default on disconnect) and close the port; a bus that is gone
        already is just closed."""
        with self.lock:
            if not self.robot.bus.is_connected:
                return
            try:
                self.robot.disconnect()
            except Exception:  # noqa: BLE001 (unplugged: nothing to switch off)
                self.robot.bus.port_handler.closePort()


class _LeRobotServos:
    def __init__(self, arm: LeRobotSO101):
        self.arm = arm

    def close(self) -> None:
        self.arm.close()

    def reconnect(self) -> None:
        self.arm.reconnect()

    def read(self):
        return self.arm.read()

    def command(self, q) -> None:
        deg = self.arm.mapping.to_lerobot(q)
        self.arm.send(**dict(zip(JOINT_NAMES, deg)))

    def move_to(self, q) -> None:
        """Joint-space move at `move_speed` rad/s, commanded at 50 Hz; returns once every joint
        is within 0.02 rad of `q` (else TimeoutError after `move_timeout_s`)."""
        q = np.asarray(q, float)
        start, _, _ = self.read()
        n = max(1, int(np.ceil(np.abs(q - start).max() / self.arm.move_speed * 50)))
        for k in range(1, n + 1):
            self.command(start + (q - start) * k / n)
            time.sleep(0.02)
        deadline = time.monotonic() + self.arm.move_timeout_s
        while np.abs(self.read()[0] - q).max() > 0.02:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the SO-101 did not reach {np.round(q, 3).tolist()} within "
                                   f"{self.arm.move_timeout_s} s (blocked, or torque off?)")
            time.sleep(0.02)


class _LeRobotGripper:
    def __init__(self, arm: LeRobotSO101):
        self.arm = arm
        self.max_width = arm.gripper_max_width

    def command(self, width: float) -> None:
        pct = 100.0 * float(np.clip(width, 0.0, self.max_width)) / self.max_width
        self.arm.send(**{GRIPPER_NAME: pct})
        self.arm._gripper_cmd = pct

    def state(self) -> GripperState:
        self.arm.read()
        measured, commanded = self.arm._gripper_pct, self.arm._gripper_cmd
        return GripperState(width=measured / 100.0 * self.max_width, max_width=self.max_width,
                            grasped=bool(measured > 3.0 and measured > commanded + 5.0),
                            t_ns=time.monotonic_ns())


class LeRobotLeader:
    """The SO-100/SO-101 leader arm (LeRobot's `so_leader`, torque off, moved by the operator)
    as a HAL `Teleop` for interventions. The leader's joints, through our kinematics, give the
    pose the operator shows; `poll` returns the normalized step from the follower's TCP toward
    it, in the task's step sizes (`follower_pose()` -> [x, y, z, qx, qy, qz, qw]; `attach(env)`
    sets it to the env's arm and the step sizes to its task's), and the leader's jaw as the
    gripper target. The operator is intervening while the leader moves (more than `engage_rad` on a joint since the last poll)
    and for `hold_s` after it stops, so a held pose is tracked too."""

    def __init__(self, port: str, follower_pose=None, robot_id: str = "so101_leader",
                 calibration_dir: str | None = None, mapping: JointMapping | dict | None = None,
                 step_pos: float = 0.02, step_rot: float = 0.1, engage_rad: float = 0.01,
                 hold_s: float = 1.0):
        Leader, Config = _lerobot("leader")
        from pathlib import Path
        self.port, self.robot_id, self.mapping = port, robot_id, _mapping(mapping)
        self.follower_pose = follower_pose
        self.step_pos, self.step_rot = step_pos, step_rot
        self.engage_rad, self.hold_s = engage_rad, hold_s
        self.device = Leader(Config(port=port, id=robot_id, calibration_dir=Path(calibration_dir)
                                    if calibration_dir else None))
        self._last_q: np.ndarray | None = None
        self._last_motion = -np.inf

    def connect(self) -> "LeRobotLeader":
        self.device.connect(calibrate=False)
        _require_calibrated(self.device, "leader", self.port, self.robot_id)
        return self

    def attach(self, env) -> None:
        """Follow `env`'s arm (a RobotEnv), in its task's action step sizes."""
        self.follower_pose = lambda: env.arm.state().tcp_pose
        self.step_pos, self.step_rot = env.task.action.step_pos, env.task.action.step_rot

    def leader_state(self) -> tuple[np.ndarray, float]:
        """(joint angles in our convention, jaw opening 0..100)."""
        a = self.device.get_action()
        return (self.mapping.to_ours([a[f"{n}.pos"] for n in JOINT_NAMES]),
                float(a[f"{GRIPPER_NAME}.pos"]))

    def poll(self):
        from robot_rl.controllers.frames import orientation_error
        from robot_rl.hardware.hal import TeleopCommand
        q, jaw = self.leader_state()
        now = time.monotonic()
        if self._last_q is not None and np.abs(q - self._last_q).max() > self.engage_rad:
            self._last_motion = now
        self._last_q = q
        pos, quat = SO101_CHAIN.fk(q)
        if self.follower_pose is None:
            raise RuntimeError("the leader arm steers toward its pose from the follower's: "
                               "give follower_pose= or attach(env) first")
        follower = np.asarray(self.follower_pose(), float)
        delta = np.concatenate([(pos - follower[:3]) / self.step_pos,
                                orientation_error(quat, follower[3:]) / self.step_rot])
        return TeleopCommand(delta6=np.clip(delta, -1.0, 1.0), gripper=1.0 - jaw / 50.0,
                             intervene=bool(now - self._last_motion <= self.hold_s))

    def close(self) -> None:
        if self.device.is_connected:
            self.device.disconnect()
