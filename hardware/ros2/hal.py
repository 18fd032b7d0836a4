"""ROS 2 backend of the HAL: `ROS2Arm`, `ROS2Gripper`, `ROS2Camera` over rclpy topics, so
`RobotEnv` (and therefore `train`, `collect`, `eval`) runs on any ROS 2 arm whose Cartesian
impedance controller takes a target pose topic (crisp_controllers' convention by default).

Topics (relative names, so `--ros-args -r __ns:=/fr3` namespaces them; every one configurable):

    in   current_pose   geometry_msgs/PoseStamped    TCP pose in `base_frame` (required)
    in   joint_states   sensor_msgs/JointState       arm joints (+ the gripper finger joint)
    in   <twist_topic>  geometry_msgs/TwistStamped   optional; else the twist is estimated
                                                    from successive poses (low-pass filtered)
    in   force_torque_sensor_broadcaster/wrench      geometry_msgs/WrenchStamped (optional)
    in   <camera>/image_raw  sensor_msgs/Image       rgb8/bgr8/rgba8/bgra8/mono8, one per camera
    out  target_pose    geometry_msgs/PoseStamped    in `base_frame`, stamped with ROS time
    out  target_joint   sensor_msgs/JointState       `move_to_joints` (streamed, interpolated)
    out  target_stiffness  std_msgs/Float64MultiArray `set_impedance`: [kx ky kz krx kry krz]
    out  gripper_position_controller/commands  std_msgs/Float64MultiArray  [finger position]

Every input remembers when it last arrived (monotonic clock) and whether it was valid (finite
pose, unit-normalizable quaternion, expected frame id, known image encoding);
`input_problems()` lists what is missing, stale or invalid, which is how the policy node
refuses to act on stale inputs. `state()` never blocks; `__enter__` waits for the first pose.

Used standalone (train/collect), each object gets the node of a `ROS2Connection`, which spins
in a background thread; the policy node passes its own node instead. `make_ros2_env` builds
the whole `RobotEnv`: the gymnasium id `robot_rl/ROS2Arm-v0` (robot_rl/registry.py;
`env.id: "robot_rl/ROS2Arm-v0"` in a run config).

rclpy is imported lazily: importing this module works without ROS 2.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np

from robot_rl.controllers.impedance import ImpedanceParams
from robot_rl.controllers.safety import SafetyBox, check_finite
from robot_rl.hardware.hal import ArmState, Frame, GripperState
from robot_rl.hardware.ros2 import messages as M
from robot_rl.hardware.task import ActionConfig, Outcome, TaskBase

ROS_MISSING = ("rclpy is not importable in this Python ({exe}). Either source a ROS 2 "
               "installation (Humble or newer) in a Python that also has robot_rl, or create the "
               "PyPI-based ROS 2 venv with `bash scripts/setup_ros2.sh` and use "
               ".venv-ros2/bin/python "
               "(`robot-rl ros2 ...` switches to it automatically).")


def import_rclpy():
    try:
        import rclpy
    except ImportError as exc:
        import sys
        raise ImportError(ROS_MISSING.format(exe=sys.executable)) from exc
    return rclpy


def _qos_sensor():
    from rclpy.qos import qos_profile_sensor_data
    return qos_profile_sensor_data  # best effort: matches reliable and best-effort publishers


def _qos_command():
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


# ------------------------------------------------------------------ connection


class ROS2Connection:
    """An rclpy node spinning in a daemon thread (one executor per connection). rclpy is
    initialised on first use and shut down when the last connection closes."""
    _lock = threading.Lock()
    _open = 0
    _we_initialised = False

    def __init__(self, node_name: str = "robot_rl_hal", namespace: str = "",
                 rclpy_args: Sequence[str] | None = None):
        rclpy = import_rclpy()
        from rclpy.executors import SingleThreadedExecutor
        with ROS2Connection._lock:
            if not rclpy.ok():
                rclpy.init(args=list(rclpy_args) if rclpy_args else None)
                ROS2Connection._we_initialised = True
            ROS2Connection._open += 1
        self.node = rclpy.create_node(node_name, namespace=namespace)
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=f"ros2-{node_name}", daemon=True)
        self._thread.start()
        self._closed = False

    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:  # context shut down underneath us
                if self._stop.is_set():
                    break
                raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(timeout=2.0)
        rclpy = import_rclpy()
        self._executor.remove_node(self.node)
        self.node.destroy_node()
        self._executor.shutdown()
        with ROS2Connection._lock:
            ROS2Connection._open -= 1
            if ROS2Connection._open == 0 and ROS2Connection._we_initialised and rclpy.ok():
                rclpy.shutdown()
                ROS2Connection._we_initialised = False


# ------------------------------------------------------------------ inputs


class Input:
    """Latest value of one subscribed topic, when it arrived, and whether it was valid."""

    def __init__(self, name: str, topic: str):
        self.name, self.topic = name, topic
        self.value: Any = None
        self.t_ns: int | None = None      # monotonic arrival time of the last valid message
        self.count = 0
        self.error: str | None = None     # why the LAST message was rejected (None: it was ok)
        self._lock = threading.Lock()

    def set(self, value, t_ns: int | None = None) -> None:
        with self._lock:
            self.value, self.t_ns = value, t_ns or time.monotonic_ns()
            self.count += 1
            self.error = None

    def reject(self, reason: str) -> None:
        with self._lock:
            self.error = reason

    def get(self):
        with self._lock:
            return self.value, self.t_ns

    def problem(self, timeout_s: float | None, now_ns: int | None = None) -> str | None:
        """None if usable, else "missing" / "stale (0.73 s)" / "invalid: <reason>"."""
        with self._lock:
            if self.error is not None:
                return f"invalid: {self.error}"
            if self.t_ns is None:
                return "missing"
            if timeout_s is not None and timeout_s > 0:
                age = ((now_ns or time.monotonic_ns()) - self.t_ns) * 1e-9
                if age > timeout_s:
                    return f"stale ({age:.2f} s)"
        return None


def _topic_name(node, topic: str) -> str:
    try:
        return node.resolve_topic_name(topic)
    except Exception:  # older rclpy
        return topic


# ------------------------------------------------------------------ arm


@dataclass
class ROS2ArmConfig:
    base_frame: str = "base"
    current_pose_topic: str = "current_pose"
    target_pose_topic: str = "target_pose"
    joint_states_topic: str = "joint_states"
    joint_names: tuple = ()            # arm joints in order; () = all but `exclude_joints`
    exclude_joints: tuple = ()         # e.g. the gripper's finger joints
    twist_topic: str = ""              # "" = estimate from poses
    wrench_topic: str = "force_torque_sensor_broadcaster/wrench"   # "" = none
    target_joint_topic: str = "target_joint"
    stiffness_topic: str = "target_stiffness"
    connect_timeout: float = 10.0      # s, __enter__ waits this long for the first pose
    move_speed: float = 0.5            # rad/s of the fastest joint in move_to_joints
    move_tolerance: float = 0.02       # rad
    move_timeout: float = 20.0         # s after the interpolation ends
    stream_hz: float = 50.0            # target_joint publishing rate in move_to_joints
    joint_lower: tuple = ()            # rad, per arm joint: move_to_joints refuses targets
    joint_upper: tuple = ()            # outside them (and runs only when both are given)
    stale_timeout: float = 0.5         # s: state() raises ConnectionLostError on an older pose

    @classmethod
    def from_dict(cls, d: dict | None) -> "ROS2ArmConfig":
        d = dict(d or {})
        names = {f.name for f in fields(cls)}
        bad = sorted(set(d) - names)
        if bad:
            raise ValueError(f"unknown ROS2 arm settings {bad}; valid: {sorted(names)}")
        for k in ("joint_names", "exclude_joints", "joint_lower", "joint_upper"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


class ROS2Arm:
    """`Arm` over ROS 2 topics. `node`: an rclpy node to attach to (its executor must be
    spinning); None creates and owns a `ROS2Connection`."""

    def __init__(self, node=None, config: ROS2ArmConfig | dict | None = None):
        self.config = cfg = (config if isinstance(config, ROS2ArmConfig)
                             else ROS2ArmConfig.from_dict(config))
        self._conn = None
        if node is None:
            self._conn = ROS2Connection("robot_rl_arm")
            node = self._conn.node
        self.node = node
        from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray
        self._PoseStamped, self._JointState = PoseStamped, JointState
        self._Float64MultiArray = Float64MultiArray
        self.pose_in = Input("current_pose", _topic_name(node, cfg.current_pose_topic))
        self.joints_in = Input("joint_states", _topic_name(node, cfg.joint_states_topic))
        self.twist_in = Input("twist", _topic_name(node, cfg.twist_topic)) if cfg.twist_topic \
            else None
        self.wrench_in = Input("wrench", _topic_name(node, cfg.wrench_topic)) \
            if cfg.wrench_topic else None
        self._twist_est = M.TwistEstimator()
        self._subs = [
            node.create_subscription(PoseStamped, cfg.current_pose_topic, self._on_pose,
                                     _qos_sensor()),
            node.create_subscription(JointState, cfg.joint_states_topic, self._on_joints,
                                     _qos_sensor()),
        ]
        if self.twist_in is not None:
            self._subs.append(node.create_subscription(TwistStamped, cfg.twist_topic,
                                                       self._on_twist, _qos_sensor()))
        if self.wrench_in is not None:
            self._subs.append(node.create_subscription(WrenchStamped, cfg.wrench_topic,
                                                       self._on_wrench, _qos_sensor()))
        self._target_pub = node.create_publisher(PoseStamped, cfg.target_pose_topic,
                                                 _qos_command())
        self._joint_pub = node.create_publisher(JointState, cfg.target_joint_topic,
                                                _qos_command())
        self._stiffness_pub = node.create_publisher(Float64MultiArray, cfg.stiffness_topic,
                                                    _qos_command())
        self.last_target: tuple[np.ndarray, np.ndarray] | None = None
        self.targets_sent = 0

    # ---- callbacks (executor thread)
    def _on_pose(self, msg) -> None:
        frame = msg.header.frame_id
        if frame and frame.lstrip("/") != self.config.base_frame.lstrip("/"):
            self.pose_in.reject(f"frame_id {frame!r} is not base_frame "
                                f"{self.config.base_frame!r}")
            return
        try:
            pose = M.pose_from_msg(msg)
        except ValueError as exc:
            self.pose_in.reject(str(exc))
            return
        now = time.monotonic_ns()
        stamp = M.stamp_to_ns(msg.header.stamp)
        twist = self._twist_est.update(stamp if stamp > 0 else now, pose).copy()
        self.pose_in.set((pose, twist), now)

    def _on_joints(self, msg) -> None:
        try:
            self.joints_in.set(M.joint_map(msg))
        except ValueError as exc:
            self.joints_in.reject(str(exc))

    def _on_twist(self, msg) -> None:
        t = M.twist_from_msg(msg)
        if np.all(np.isfinite(t)):
            self.twist_in.set(t)
        else:
            self.twist_in.reject("twist contains NaN or inf")

    def _on_wrench(self, msg) -> None:
        w = M.wrench_from_msg(msg)
        if np.all(np.isfinite(w)):
            self.wrench_in.set(w)
        else:
            self.wrench_in.reject("wrench contains NaN or inf")

    # ---- inputs
    def inputs(self, include_wrench: bool = False) -> list[Input]:
        out = [self.pose_in]
        if self.twist_in is not None:
            out.append(self.twist_in)
        if include_wrench:
            if self.wrench_in is None:
                raise ValueError("the policy observes the wrench but no wrench_topic is set")
            out.append(self.wrench_in)
        return out

    def _joint_order(self, jm: dict) -> list[str]:
        if self.config.joint_names:
            return list(self.config.joint_names)
        return [n for n in jm if n not in self.config.exclude_joints]

    # ---- Arm protocol
    def state(self) -> ArmState:
        (pose_twist, t_ns) = self.pose_in.get()
        if pose_twist is None:
            raise RuntimeError(f"no valid pose received on {self.pose_in.topic} yet"
                               + (f" (last one rejected: {self.pose_in.error})"
                                  if self.pose_in.error else ""))
        stale = self.pose_in.problem(self.config.stale_timeout)
        if stale:  # a pose that stopped arriving is a lost robot, not a place to hold or act from
            from robot_rl.hardware.safety import ConnectionLostError
            raise ConnectionLostError(f"{self.pose_in.topic}: {stale}")
        pose, twist = pose_twist
        if self.twist_in is not None and self.twist_in.get()[0] is not None:
            twist = self.twist_in.get()[0]
        jm, _ = self.joints_in.get()
        if jm:
            names = self._joint_order(jm)
            missing = [n for n in names if n not in jm]
            if missing:
                raise RuntimeError(f"joints {missing} missing from {self.joints_in.topic}; "
                                   f"it has {sorted(jm)}")
            q = np.array([jm[n][0] for n in names])
            dq = np.array([jm[n][1] for n in names])
        else:
            q = dq = np.zeros(0)
        wrench = np.zeros(6)
        if self.wrench_in is not None and self.wrench_in.get()[0] is not None:
            wrench = self.wrench_in.get()[0]
        return ArmState(q=q, dq=dq, tcp_pose=pose.copy(), tcp_twist=np.array(twist, float),
                        wrench=np.array(wrench, float), t_ns=int(t_ns))

    def set_target_pose(self, pos: np.ndarray, quat: np.ndarray) -> None:
        pos = check_finite("target position", pos, (3,))
        quat = check_finite("target quaternion", quat, (4,))
        n = np.linalg.norm(quat)
        if n < 1e-6:
            from robot_rl.controllers.safety import UnsafeCommandError
            raise UnsafeCommandError("target quaternion is zero")
        quat = quat / n
        msg = M.fill_pose_stamped(self._PoseStamped(), pos, quat, self.config.base_frame,
                                  self.node.get_clock().now().nanoseconds)
        self._target_pub.publish(msg)
        self.last_target = (pos.copy(), quat.copy())
        self.targets_sent += 1

    def set_impedance(self, params: ImpedanceParams) -> None:
        """Publishes the stiffness [kx ky kz krx kry krz] (crisp_py's `target_stiffness`
        convention; the controller latches it). Damping, error clipping and the torque-rate
        limit stay controller parameters on the robot side."""
        msg = self._Float64MultiArray()
        msg.data = [float(k) for k in params.K]
        self._stiffness_pub.publish(msg)

    def move_to_joints(self, q: np.ndarray) -> None:
        """Blocking: streams joint targets on `target_joint`, interpolated at `move_speed`
        from the measured joints, then waits until every joint is within `move_tolerance`.
        Needs a controller that follows `target_joint` (e.g. crisp's joint impedance
        controller) and the arm joints on `joint_states`."""
        cfg = self.config
        q = check_finite("joint target", q, (len(np.asarray(q)),))
        self.check_joints(q)
        start = self._wait_joints(cfg.connect_timeout)
        names = self._joint_order(start)
        if len(names) != len(q):
            raise ValueError(f"move_to_joints got {len(q)} values for joints {names}")
        q0 = np.array([start[n][0] for n in names])
        duration = float(np.max(np.abs(q - q0))) / max(cfg.move_speed, 1e-6)
        steps = max(1, int(np.ceil(duration * cfg.stream_hz)))
        for i in range(1, steps + 1):
            self._publish_joints(names, q0 + (q - q0) * (i / steps))
            time.sleep(1.0 / cfg.stream_hz)
        deadline = time.monotonic() + cfg.move_timeout
        while True:
            jm, _ = self.joints_in.get()
            err = np.max(np.abs(np.array([jm[n][0] for n in names]) - q))
            if err <= cfg.move_tolerance:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"move_to_joints: joints still {err:.3f} rad from the target "
                                   f"after {cfg.move_timeout} s (is a controller following "
                                   f"{_topic_name(self.node, cfg.target_joint_topic)}?)")
            self._publish_joints(names, q)
            time.sleep(1.0 / cfg.stream_hz)

    def check_joints(self, q: np.ndarray) -> None:
        """Refuse a joint target outside `joint_lower`..`joint_upper` (which must be set: a
        ROS 2 arm can be any arm, so there are no default limits to fall back on)."""
        from robot_rl.controllers.safety import UnsafeCommandError, check_joint_limits
        lo, hi = self.config.joint_lower, self.config.joint_upper
        if not lo or not hi:
            raise UnsafeCommandError("move_to_joints needs the arm's joint limits: set arm "
                                     "joint_lower and joint_upper (rad, one per joint)")
        check_joint_limits(q, lo, hi, "arm's")

    def _publish_joints(self, names, q) -> None:
        msg = self._JointState()
        msg.header.frame_id = self.config.base_frame
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.name = list(names)
        msg.position = [float(v) for v in q]
        self._joint_pub.publish(msg)

    def _wait_joints(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            jm, _ = self.joints_in.get()
            if jm:
                return jm
            if time.monotonic() > deadline:
                raise TimeoutError(f"no joint states on {self.joints_in.topic} within {timeout} s")
            time.sleep(0.01)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until a valid pose arrived (TimeoutError naming the topic otherwise)."""
        timeout = self.config.connect_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while self.pose_in.get()[0] is None:
            if time.monotonic() > deadline:
                why = f"; last message rejected: {self.pose_in.error}" if self.pose_in.error else ""
                raise TimeoutError(f"no valid pose on {self.pose_in.topic} within {timeout} s{why}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Hold the measured pose (the controller keeps the last target it got)."""
        pose_twist, _ = self.pose_in.get()
        if pose_twist is not None:
            self.set_target_pose(pose_twist[0][:3], pose_twist[0][3:])

    def __enter__(self):
        self.wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# ------------------------------------------------------------------ gripper


@dataclass
class ROS2GripperConfig:
    joint_states_topic: str = "joint_states"
    joint_name: str = "panda_finger_joint1"
    width_scale: float = 2.0     # opening [m] = width_scale * joint position (2 fingers)
    max_width: float = 0.08
    command_topic: str = "gripper_position_controller/commands"  # Float64MultiArray [position]

    @classmethod
    def from_dict(cls, d: dict | None) -> "ROS2GripperConfig":
        d = dict(d or {})
        names = {f.name for f in fields(cls)}
        bad = sorted(set(d) - names)
        if bad:
            raise ValueError(f"unknown ROS2 gripper settings {bad}; valid: {sorted(names)}")
        return cls(**d)


class ROS2Gripper:
    """`Gripper` over ROS 2: opening from the finger joint in `joint_states`; commands are the
    finger joint position (`width / width_scale`) on a position controller's command topic."""

    def __init__(self, node=None, config: ROS2GripperConfig | dict | None = None):
        self.config = cfg = (config if isinstance(config, ROS2GripperConfig)
                             else ROS2GripperConfig.from_dict(config))
        self._conn = None
        if node is None:
            self._conn = ROS2Connection("robot_rl_gripper")
            node = self._conn.node
        self.node = node
        self.max_width = float(cfg.max_width)
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray
        self._Float64MultiArray = Float64MultiArray
        self.width_in = Input("gripper", f"{_topic_name(node, cfg.joint_states_topic)}"
                                         f"[{cfg.joint_name}]")
        self._sub = node.create_subscription(JointState, cfg.joint_states_topic, self._on_joints,
                                             _qos_sensor())
        self._pub = node.create_publisher(Float64MultiArray, cfg.command_topic, _qos_command())
        self.commanded: float | None = None

    def _on_joints(self, msg) -> None:
        names = list(msg.name)
        if self.config.joint_name not in names:
            return  # joint_states may be split over several publishers
        i = names.index(self.config.joint_name)
        if i >= len(msg.position) or not np.isfinite(msg.position[i]):
            self.width_in.reject(f"no finite position for {self.config.joint_name}")
            return
        self.width_in.set(float(self.config.width_scale * msg.position[i]))

    def command(self, width: float) -> None:
        w = float(np.clip(check_finite("gripper width", width, ()), 0.0, self.max_width))
        msg = self._Float64MultiArray()
        msg.data = [w / self.config.width_scale]
        self._pub.publish(msg)
        self.commanded = w

    def state(self) -> GripperState:
        width, t_ns = self.width_in.get()
        if width is None:
            raise RuntimeError(f"no gripper state received on {self.width_in.topic} yet")
        cmd = self.commanded if self.commanded is not None else self.max_width
        return GripperState(width=width, max_width=self.max_width,
                            grasped=bool(width > 0.004 and width > cmd + 0.003), t_ns=int(t_ns))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# ------------------------------------------------------------------ camera


class ROS2Camera:
    """`Camera` over a sensor_msgs/Image topic, resized to `shape` (H, W, 3) if needed."""

    def __init__(self, name: str, topic: str | None = None, shape=(128, 128, 3), node=None):
        self.name, self.shape = name, tuple(int(s) for s in shape)
        self._conn = None
        if node is None:
            self._conn = ROS2Connection(f"robot_rl_camera_{name}")
            node = self._conn.node
        self.node = node
        topic = topic or f"{name}/image_raw"
        from sensor_msgs.msg import Image
        self.image_in = Input(f"camera {name}", _topic_name(node, topic))
        self._sub = node.create_subscription(Image, topic, self._on_image, _qos_sensor())

    def _on_image(self, msg) -> None:
        try:
            rgb = M.resize_rgb(M.image_to_rgb(msg), self.shape)
        except (ValueError, RuntimeError) as exc:
            self.image_in.reject(str(exc))
            return
        self.image_in.set(rgb)

    def read(self) -> Frame:
        rgb, t_ns = self.image_in.get()
        if rgb is None:
            raise RuntimeError(f"no image received on {self.image_in.topic} yet")
        return Frame(rgb=rgb, t_ns=int(t_ns))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# ------------------------------------------------------------------ task + env


class ROS2Task(TaskBase):
    """A task on a real arm: reset moves to `home_joints` (if given) and opens the gripper;
    with a `goal` (fixed xyz, or drawn per episode from the env's seeded generator within
    `goal_low`..`goal_high`), `env_state` is [goal, goal - tcp] (the layout of the sim state
    tasks) and success is the TCP within `success_radius` of it. Without a goal there is no
    env_state and the reward is 0 (add a reward model)."""

    def __init__(self, name: str = "ROS2Arm", instruction: str = "",
                 action: ActionConfig | None = None, safety: SafetyBox | None = None,
                 max_episode_steps: int = 100, home_quat=(1.0, 0.0, 0.0, 0.0),
                 home_joints=None, goal=None, goal_low=None, goal_high=None,
                 success_radius: float = 0.02):
        super().__init__(name=name, instruction=instruction or name,
                         action=action or ActionConfig(),
                         safety=safety or SafetyBox((0.25, -0.3, 0.02), (0.7, 0.3, 0.5)),
                         max_episode_steps=max_episode_steps,
                         home_quat=np.asarray(home_quat, float))
        self.home_joints = None if home_joints is None else np.asarray(home_joints, float)
        self.goal = None if goal is None else np.asarray(goal, float)
        self.goal_low = None if goal_low is None else np.asarray(goal_low, float)
        self.goal_high = None if goal_high is None else np.asarray(goal_high, float)
        self.success_radius = success_radius
        self.arm = None

    @property
    def has_goal(self) -> bool:
        return self.goal is not None or self.goal_low is not None

    def reset(self, env, rng) -> None:
        self.arm = env.arm
        if self.home_joints is not None:
            env.arm.move_to_joints(self.home_joints)
        if env.gripper is not None:
            env.gripper.command(env.gripper.max_width)
        if self.goal_low is not None:
            self.goal = rng.uniform(self.goal_low, self.goal_high)

    def _tcp(self) -> np.ndarray:
        return self.arm.state().tcp_pose[:3]

    def env_state(self):
        if not self.has_goal:
            return None
        if self.goal is None or self.arm is None:  # before the first reset: shape only
            return np.zeros(6)
        return np.concatenate([self.goal, self.goal - self._tcp()])

    def outcome(self, env) -> Outcome:
        if self.goal is None:
            return Outcome(reward=0.0, success=False)
        d = float(np.linalg.norm(self._tcp() - self.goal))
        return Outcome(reward=1.0 - float(np.tanh(10.0 * d)), success=d < self.success_radius)


def make_ros2_env(arm: dict | None = None, gripper: dict | None = None,
                  cameras: dict | None = None, image_size: int = 128,
                  task: dict | None = None, control_hz: float = 10.0,
                  reward_type: str = "sparse", include_wrench: bool = False,
                  node_name: str = "robot_rl_env", namespace: str = "",
                  render_mode: str | None = None, watchdog: bool = True):
    """A `RobotEnv` on a ROS 2 arm. `arm` / `gripper`: `ROS2ArmConfig` / `ROS2GripperConfig`
    fields (`gripper=None` or `{"enabled": False}`: no gripper); `cameras`: {name: image
    topic}; `task`: `ROS2Task` arguments, with `action` given as `ActionConfig` fields and
    `safety` as `SafetyBox` fields. One node (`node_name`) spins in a background thread and is
    shut down by `env.close()`. Targets go through `SafeArm` (its watchdog holds the arm after
    1.5 control periods without a target; `watchdog=False` turns that off) and the env is a
    `ConnectionGuard`: a pose that stops arriving ends the episode as truncated."""
    from robot_rl.hardware.robot_env import RobotEnv
    from robot_rl.hardware.safety import ConnectionGuard, SafeArm, SafeGripper
    task = dict(task or {})
    if isinstance(task.get("action"), dict):
        a = dict(task["action"])
        if "dofs" in a:
            a["dofs"] = tuple(a["dofs"])
        task["action"] = ActionConfig(**a)
    if isinstance(task.get("safety"), dict):
        task["safety"] = SafetyBox(**{k: tuple(v) if isinstance(v, list) else v
                                      for k, v in task["safety"].items()})
    t = ROS2Task(**task)
    gripper_cfg = dict(gripper) if gripper is not None else None
    use_gripper = gripper_cfg is not None and gripper_cfg.pop("enabled", True)
    conn = ROS2Connection(node_name, namespace)
    try:
        g = ROS2Gripper(conn.node, gripper_cfg) if use_gripper else None
        arm_cfg = ROS2ArmConfig.from_dict(arm)
        if g is not None and not arm_cfg.joint_names:
            arm_cfg.exclude_joints = tuple(arm_cfg.exclude_joints) + (g.config.joint_name,)
        a = ROS2Arm(conn.node, arm_cfg)
        cams = [ROS2Camera(name, topic, (image_size, image_size, 3), conn.node)
                for name, topic in (cameras or {}).items()]
        a.wait_ready()
        a._conn = conn  # the arm owns the connection: RobotEnv.close() closes it last
        # the one safety layer: step-limited from the last command, boxed, watchdog
        safe = SafeArm(a, t.safety, watchdog_s=1.5 / control_hz if watchdog else None)
        t.arm = safe
        env = RobotEnv(safe, None if g is None else SafeGripper(g, safe), cams, t,
                       control_hz=control_hz, reward_type=reward_type,
                       include_wrench=include_wrench, render_mode=render_mode)
    except BaseException:
        conn.close()
        raise
    env.ros2 = conn
    return ConnectionGuard(env)
