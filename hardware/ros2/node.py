"""The ROS 2 policy node: runs a trained robot_rl policy on any ROS 2 arm with a Cartesian
impedance controller (crisp_controllers' `target_pose` / `current_pose` convention).

    robot-rl ros2 run --policy runs/reach [--config ros2.yaml] [--ros-args -p rate_hz:=10.0 ...]

What it does, every 1/`rate_hz` seconds while started:

1. checks its inputs: the TCP pose (geometry_msgs/PoseStamped in `base_frame`), the gripper
   finger joint (sensor_msgs/JointState), the wrench (geometry_msgs/WrenchStamped, if the
   policy observes it), one sensor_msgs/Image per camera the policy was trained with, and the
   goal (if the policy observes `env_state`). If any is missing, older than `stale_timeout`,
   or invalid (NaN, wrong frame id, unknown encoding) it does NOT act: no target is sent (the
   impedance controller holds the last one), the status says which input is the problem,
   and a throttled warning is logged.
2. builds the observation exactly as `RobotEnv` does -- the node drives a `RobotEnv` built on
   `ROS2Arm` / `ROS2Gripper` / `ROS2Camera` (hardware/ros2/hal.py), so state layout, quaternion
   sign, image size and the action -> target maths (step sizes, frame, safety box, per-step
   limit) are the same code as in training;
3. runs the policy (deterministic by default) and publishes the target pose
   (`target_pose`, stamped, frame `base_frame`), the gripper command (if the policy has a
   gripper action), the normalized action (`~/action`, std_msgs/Float32MultiArray) and a
   status (`~/status`, std_msgs/String, JSON).

Safety: targets go through `SafeArm`, as on every arm: each is within the task's step limit
of the last one sent (never re-based on the measured pose, which any publisher can forge) and
inside the box, and a watchdog (`watchdog_timeout`) holds the measured pose when the ticks stop.

Services (std_srvs/Trigger): `~/start`, `~/stop` (stops acting and holds the measured pose),
`~/reset` (stops, starts a new episode count, moves to `home_pose` a step per tick if set).
A failing service answers `success: false` with the reason. The node starts
stopped unless `autostart` is true. Call them with `ros2 service call /robot_rl_policy/start
std_srvs/srv/Trigger` or, without ros2cli, `robot-rl ros2 trigger start`.

Observation `env_state`: sim state policies (e.g. PandaReach) also observe privileged object
state, [object xyz, object xyz - tcp xyz]. On a robot that comes from the `goal` parameter
(fixed xyz) or the `goal_topic` (geometry_msgs/PoseStamped in `base_frame`, e.g. from a
detector); policies trained on images + `state` need neither.

Parameters (declared on the node, read at start-up; defaults from the policy and `--config`):
rate_hz, base_frame, current_pose_topic, target_pose_topic, joint_states_topic, twist_topic,
wrench_topic, arm_joints, camera_topics ("name=topic" list), gripper_enabled, gripper_joint,
gripper_width_scale, gripper_max_width, gripper_command_topic, goal, goal_topic,
goal_timeout, stale_timeout, autostart, max_steps, home_pose, watchdog_timeout, deterministic.
`--config` takes a YAML mapping of these names (or a ROS params file with `ros__parameters`);
`--ros-args -p name:=value` overrides it.

ROS 2 distributions: written against the rclpy API common to Humble, Jazzy, Kilted and
Rolling; tested here with the Kilted rclpy wheels from PyPI (`ros-rclpy` 9.1.2, rmw Fast DDS)
talking to a Cyclone DDS peer. With a system ROS 2 install, source it and run the node from a
Python that sees both rclpy and robot_rl (e.g. a venv created with --system-site-packages):

    source /opt/ros/jazzy/setup.bash
    python -m robot_rl.cli ros2 run --policy runs/pick --ros-args -r __ns:=/fr3

robot_rl is not an ament package, so there is no `ros2 run robot_rl ...`; in a launch file
use `ExecuteProcess(cmd=["robot-rl", "ros2", "run", "--policy", run_dir, "--ros-args", ...])`.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_rl.controllers.safety import SafetyBox
from robot_rl.hardware.task import ActionConfig, Outcome, TaskBase

NODE_NAME = "robot_rl_policy"


@dataclass
class PolicySpec:
    """What the node needs to know about a policy besides its weights: the observation layout
    and the task's action/safety settings (taken from the env the policy was trained on)."""
    action: ActionConfig
    safety: SafetyBox
    home_quat: np.ndarray
    name: str = "policy"
    instruction: str = ""
    max_episode_steps: int = 100
    cameras: dict = field(default_factory=dict)   # name -> (H, W, 3)
    include_wrench: bool = False
    env_state_dim: int | None = None
    control_hz: float = 10.0

    @classmethod
    def from_env(cls, env) -> "PolicySpec":
        base = env.unwrapped
        task = base.task
        spaces = base.observation_space.spaces
        return cls(action=task.action, safety=base.safety,
                   home_quat=np.array(task.home_quat, float), name=task.name,
                   instruction=getattr(task, "instruction", "") or task.name,
                   max_episode_steps=int(task.max_episode_steps),
                   cameras={c.name: tuple(c.shape) for c in base.cameras},
                   include_wrench=bool(base.include_wrench),
                   env_state_dim=int(spaces["env_state"].shape[0]) if "env_state" in spaces
                   else None,
                   control_hz=1.0 / base.period)


def load_policy_for_ros(run_dir, runtime, torch_threads: int = 1):
    """(agent, PolicySpec) of a run's latest good checkpoint. The spec comes from building the
    run's env once (sim or ROS 2) and reading its task and observation space. `runtime`: the
    `Runtime` functions the CLI hands in (hardware/ros2/__init__.py)."""
    import torch

    torch.set_num_threads(torch_threads)
    agent, cfg = runtime.load_policy(run_dir)
    env = runtime.make_env(cfg, teleop=False)
    try:
        spec = PolicySpec.from_env(env)
    finally:
        env.close()
    return agent, spec


def load_param_file(path) -> dict:
    """A YAML mapping of node parameters; also accepts a ROS params file
    (`node_name: {ros__parameters: {...}}`, `/**` wildcard included)."""
    import yaml
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of parameter names to values")
    for key, val in data.items():
        if isinstance(val, dict) and "ros__parameters" in val:
            if key in ("/**", NODE_NAME, f"/{NODE_NAME}") or len(data) == 1:
                return dict(val["ros__parameters"])
    return data


class _Goal:
    """The goal for `env_state`: a fixed xyz, or the latest PoseStamped on a topic."""

    def __init__(self, fixed=None):
        self.fixed = None if fixed is None else np.asarray(fixed, float)

    def value(self, goal_input):
        if self.fixed is not None:
            return self.fixed
        return goal_input.get()[0] if goal_input is not None else None


class _DeployTask(TaskBase):
    """The task as `RobotEnv` sees it in the node: the policy's action layout and safety box;
    env_state = [goal, goal - tcp] when the policy observes env_state."""

    def __init__(self, spec: PolicySpec, goal: _Goal, goal_input, arm):
        super().__init__(name=spec.name, instruction=spec.instruction, action=spec.action,
                         safety=spec.safety, max_episode_steps=spec.max_episode_steps,
                         home_quat=np.array(spec.home_quat, float))
        self._dim, self._goal, self._goal_input, self._arm = (spec.env_state_dim, goal,
                                                              goal_input, arm)

    def reset(self, env, rng) -> None:  # the node never resets through gymnasium
        pass

    def env_state(self):
        if self._dim is None:
            return None
        g = self._goal.value(self._goal_input)
        if g is None or self._arm.pose_in.get()[0] is None:
            return np.zeros(self._dim)  # only while sizing spaces: the node never acts without
        return np.concatenate([g, g - self._arm.state().tcp_pose[:3]])

    def outcome(self, env) -> Outcome:
        return Outcome(reward=0.0, success=False)


def _home_pose(values, box: SafetyBox) -> tuple[np.ndarray, np.ndarray] | None:
    """The `home_pose` parameter checked at start-up: 7 finite values with a unit quaternion
    (a zero quaternion used to raise out of the ~/reset service callback), clipped into the
    box (where homing ends)."""
    from robot_rl.hardware.safety import validate_pose
    if not len(values):
        return None
    if len(values) != 7:
        raise ValueError(f"home_pose needs 7 values (xyz + quat xyzw), got {list(values)}")
    try:
        pos, quat = validate_pose(values[:3], values[3:])
    except ValueError as exc:
        raise ValueError(f"home_pose: {exc}") from None
    return box.clip_position(pos), box.clip_orientation(quat)


_PolicyNode = None


def _node_class():
    """The rclpy Node subclass, defined on first use so importing this module needs no rclpy."""
    global _PolicyNode
    if _PolicyNode is not None:
        return _PolicyNode
    from robot_rl.hardware.ros2.hal import (Input, ROS2Arm, ROS2ArmConfig, ROS2Camera,
                                            ROS2Gripper, ROS2GripperConfig, _qos_command,
                                            _qos_sensor, _topic_name, import_rclpy)
    import_rclpy()
    from geometry_msgs.msg import PoseStamped
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from std_msgs.msg import Float32MultiArray, String
    from std_srvs.srv import Trigger

    from robot_rl.hardware.robot_env import RobotEnv
    from robot_rl.hardware.ros2 import messages as M
    from robot_rl.hardware.safety import SafeArm, SafeGripper

    class PolicyNode(Node):
        def __init__(self, policy, spec: PolicySpec, defaults: dict | None = None,
                     node_name: str = NODE_NAME, namespace: str = ""):
            super().__init__(node_name, namespace=namespace)
            self.policy, self.spec = policy, spec
            defaults = dict(defaults or {})
            p = self._declare_all(defaults)
            self.params = p
            if spec.env_state_dim not in (None, 6):
                raise ValueError(f"the policy observes env_state of {spec.env_state_dim} values; "
                                 "the node can provide [goal xyz, goal - tcp xyz] (6) only")
            gripper = None
            if p["gripper_enabled"]:
                gripper = ROS2Gripper(self, ROS2GripperConfig(
                    joint_states_topic=p["joint_states_topic"], joint_name=p["gripper_joint"],
                    width_scale=p["gripper_width_scale"], max_width=p["gripper_max_width"],
                    command_topic=p["gripper_command_topic"]))
            elif spec.action.gripper:
                raise ValueError("the policy commands a gripper: gripper_enabled must be true")
            self.gripper = gripper
            self.arm = ROS2Arm(self, ROS2ArmConfig(
                base_frame=p["base_frame"], current_pose_topic=p["current_pose_topic"],
                target_pose_topic=p["target_pose_topic"],
                joint_states_topic=p["joint_states_topic"], joint_names=tuple(p["arm_joints"]),
                exclude_joints=(p["gripper_joint"],) if gripper else (),
                twist_topic=p["twist_topic"],
                wrench_topic=p["wrench_topic"], stale_timeout=p["stale_timeout"]))
            # the one safety layer of every arm: each target within a step of the last one
            # sent (never re-based on the measured pose, which any publisher can forge),
            # boxed, and a watchdog that holds the arm if the ticks stop
            self.safe_arm = SafeArm(self.arm, spec.safety,
                                    watchdog_s=p["watchdog_timeout"] or None)
            self.home = _home_pose(p["home_pose"], spec.safety)
            self.homing = False
            cam_topics = self._camera_topics(p["camera_topics"])
            self.cameras = [ROS2Camera(name, cam_topics[name], shape, node=self)
                            for name, shape in spec.cameras.items()]
            self.goal_input = None
            self._goal = _Goal(p["goal"] if len(p["goal"]) else None)
            if self._goal.fixed is not None and self._goal.fixed.shape != (3,):
                raise ValueError(f"goal must have 3 values (xyz), got {list(p['goal'])}")
            if spec.env_state_dim is not None and self._goal.fixed is None:
                self.goal_input = Input("goal", _topic_name(self, p["goal_topic"]))
                self._goal_sub = self.create_subscription(PoseStamped, p["goal_topic"],
                                                          self._on_goal, _qos_sensor())
            task = _DeployTask(spec, self._goal, self.goal_input, self.arm)
            self.env = RobotEnv(self.safe_arm,
                                None if gripper is None else SafeGripper(gripper, self.safe_arm),
                                self.cameras, task, control_hz=p["rate_hz"],
                                include_wrench=spec.include_wrench)
            self._inputs = self.arm.inputs(spec.include_wrench)
            if gripper is not None:
                self._inputs.append(gripper.width_in)
            self._inputs += [c.image_in for c in self.cameras]
            self._action_pub = self.create_publisher(Float32MultiArray, "~/action",
                                                     _qos_command())
            self._status_pub = self.create_publisher(String, "~/status", _qos_command())
            self._String, self._Float32MultiArray = String, Float32MultiArray
            self.create_service(Trigger, "~/start", self._srv_start)
            self.create_service(Trigger, "~/stop", self._srv_stop)
            self.create_service(Trigger, "~/reset", self._srv_reset)
            self.running = bool(p["autostart"])
            self.steps = self.episode = self.stale_ticks = 0
            self._last_warn = 0.0
            self._last_state = None
            self.timer = self.create_timer(1.0 / p["rate_hz"], self._tick)
            self.get_logger().info(
                f"policy {spec.name}: obs state{'+wrench' if spec.include_wrench else ''}"
                f"{' +env_state(goal)' if spec.env_state_dim else ''}"
                f"{' +cameras ' + ','.join(spec.cameras) if spec.cameras else ''}; action "
                f"{spec.action.dofs}{' +gripper' if spec.action.gripper else ''}; "
                f"{p['rate_hz']:.1f} Hz; targets -> {_topic_name(self, p['target_pose_topic'])} "
                f"[{p['base_frame']}]; {'running' if self.running else 'stopped (call ~/start)'}")

        # ---- parameters
        def _declare_all(self, defaults: dict) -> dict:
            s = self.spec
            table: list[tuple[str, Any, Any, str]] = [
                ("rate_hz", Parameter.Type.DOUBLE, float(s.control_hz), "policy rate [Hz]"),
                ("base_frame", Parameter.Type.STRING, "base", "frame of poses in and out"),
                ("current_pose_topic", Parameter.Type.STRING, "current_pose", "TCP pose in"),
                ("target_pose_topic", Parameter.Type.STRING, "target_pose", "TCP target out"),
                ("joint_states_topic", Parameter.Type.STRING, "joint_states", "joints in"),
                ("twist_topic", Parameter.Type.STRING, "",
                 "TwistStamped in; empty: estimate from poses"),
                ("wrench_topic", Parameter.Type.STRING, "force_torque_sensor_broadcaster/wrench",
                 "WrenchStamped in (used if the policy observes the wrench)"),
                ("arm_joints", Parameter.Type.STRING_ARRAY, [],
                 "arm joint names in order; empty: all but the gripper joint"),
                ("camera_topics", Parameter.Type.STRING_ARRAY,
                 [f"{n}={n}/image_raw" for n in s.cameras], "name=topic per policy camera"),
                ("gripper_enabled", Parameter.Type.BOOL, True,
                 "read the finger joint (policies trained in sim observe the opening)"),
                ("gripper_joint", Parameter.Type.STRING, "panda_finger_joint1", "finger joint"),
                ("gripper_width_scale", Parameter.Type.DOUBLE, 2.0,
                 "opening [m] = scale * finger joint position"),
                ("gripper_max_width", Parameter.Type.DOUBLE, 0.08, "full opening [m]"),
                ("gripper_command_topic", Parameter.Type.STRING,
                 "gripper_position_controller/commands", "Float64MultiArray [finger position]"),
                ("goal", Parameter.Type.DOUBLE_ARRAY, [], "fixed goal xyz for env_state"),
                ("goal_topic", Parameter.Type.STRING, "goal_pose",
                 "PoseStamped goal for env_state"),
                ("goal_timeout", Parameter.Type.DOUBLE, 0.0,
                 "goal older than this is stale [s]; 0: never"),
                ("stale_timeout", Parameter.Type.DOUBLE, 0.5,
                 "inputs older than this are stale: the node does not act [s]"),
                ("autostart", Parameter.Type.BOOL, False, "act without a ~/start call"),
                ("max_steps", Parameter.Type.INTEGER, 0, "stop after this many actions; 0: never"),
                ("home_pose", Parameter.Type.DOUBLE_ARRAY, [],
                 "x y z qx qy qz qw: ~/reset moves there, a safety step per tick"),
                ("watchdog_timeout", Parameter.Type.DOUBLE, -1.0,
                 "hold the measured pose when no target was sent for this long [s]; "
                 "-1: three policy periods; 0: off"),
                ("deterministic", Parameter.Type.BOOL, True, "policy mean instead of a sample"),
            ]
            names = {t[0] for t in table}
            unknown = sorted(set(defaults) - names)
            if unknown:
                raise ValueError(f"unknown node parameters {unknown}; valid: {sorted(names)}")
            out = {}
            for name, ptype, default, doc in table:
                value = defaults.get(name, default)
                if ptype == Parameter.Type.DOUBLE:
                    value = float(value)
                elif ptype == Parameter.Type.INTEGER:
                    value = int(value)
                elif ptype == Parameter.Type.DOUBLE_ARRAY:
                    value = [float(v) for v in value]
                elif ptype == Parameter.Type.STRING_ARRAY:
                    value = [str(v) for v in value]
                # read at start-up only: read-only, so `ros2 param set` cannot pretend otherwise
                desc = ParameterDescriptor(description=doc, type=ptype.value, read_only=True)
                if isinstance(value, list) and not value:
                    # an empty list has no inferable type: declare typed, then set to []
                    self.declare_parameter(name, ptype, desc)
                    try:
                        got = self.get_parameter(name).value
                    except Exception:  # uninitialized: nothing came from the command line
                        got = None
                    out[name] = list(got) if got is not None else []
                else:
                    out[name] = self.declare_parameter(name, value, desc).value
                    if isinstance(out[name], (list, tuple)) or hasattr(out[name], "tolist"):
                        out[name] = list(out[name])
            if out["rate_hz"] <= 0:
                raise ValueError(f"rate_hz must be > 0, got {out['rate_hz']}")
            if out["watchdog_timeout"] == -1.0:  # from the rate, however that was given
                out["watchdog_timeout"] = 3.0 / out["rate_hz"]
            if out["watchdog_timeout"] < 0:
                raise ValueError(f"watchdog_timeout must be >= 0 (or -1), got {out['watchdog_timeout']}")
            if abs(out["rate_hz"] - s.control_hz) > 1e-6:
                self.get_logger().warning(
                    f"rate_hz {out['rate_hz']} differs from the {s.control_hz} Hz the policy was "
                    "trained at: each action is a fixed step, so the arm moves "
                    f"{out['rate_hz'] / s.control_hz:.2f}x as fast")
            return out

        def _camera_topics(self, entries) -> dict:
            topics = {n: f"{n}/image_raw" for n in self.spec.cameras}
            for e in entries:
                if "=" not in e:
                    raise ValueError(f"camera_topics entries are name=topic, got {e!r}")
                n, t = e.split("=", 1)
                if n not in topics:
                    raise ValueError(f"camera {n!r} is not one of the policy's cameras "
                                     f"{sorted(topics)}")
                topics[n] = t
            return topics

        # ---- inputs
        def _on_goal(self, msg) -> None:
            frame = msg.header.frame_id
            if frame and frame.lstrip("/") != self.params["base_frame"].lstrip("/"):
                self.goal_input.reject(f"frame_id {frame!r} is not base_frame "
                                       f"{self.params['base_frame']!r}")
                return
            try:
                self.goal_input.set(M.pose_from_msg(msg)[:3])
            except ValueError as exc:
                self.goal_input.reject(str(exc))

        def problems(self, now_ns: int | None = None) -> dict:
            now_ns = now_ns or time.monotonic_ns()
            t = self.params["stale_timeout"]
            out = {}
            for inp in self._inputs:
                why = inp.problem(t, now_ns)
                if why:
                    out[f"{inp.name} ({inp.topic})"] = why
            if self.goal_input is not None:
                why = self.goal_input.problem(self.params["goal_timeout"] or None, now_ns)
                if why:
                    out[f"goal ({self.goal_input.topic})"] = why
            return out

        # ---- loop
        def _tick(self) -> None:
            problems = self.problems()
            if self.homing:
                self._home_step(problems)
                return
            if not self.running:
                self._status("stopped", problems)
                return
            if problems:
                self.stale_ticks += 1
                now = time.monotonic()
                if now - self._last_warn > 2.0:
                    self._last_warn = now
                    self.get_logger().warning("not acting, inputs not usable: " + "; ".join(
                        f"{k}: {v}" for k, v in problems.items()))
                self._status("stale", problems)
                return
            try:
                obs = self.env.observe()
                det = self.params["deterministic"]
                action = np.asarray(self.policy.act(obs, deterministic=det), dtype=np.float32)
                a = self.env.apply_action(action)  # validates, applies the safety box, publishes
            except Exception as exc:  # never act on a failed step; report and keep going
                self.get_logger().error(f"policy step failed, nothing sent: {exc!r}")
                self._status("error", {"policy": repr(exc)})
                return
            msg = self._Float32MultiArray()
            msg.data = [float(v) for v in a]
            self._action_pub.publish(msg)
            self.steps += 1
            if self.params["max_steps"] and self.steps >= self.params["max_steps"]:
                self.running = False
                self.hold()  # as ~/stop does (else the watchdog would, a moment later)
                self.get_logger().info(f"max_steps {self.params['max_steps']} reached: stopped, "
                                       f"holding the measured pose")
            self._status("running", {})

        def _home_step(self, problems: dict) -> None:
            """One tick of `~/reset`'s move to `home_pose`: a target at most a safety step
            from the last one, until the commanded pose is home (it used to be sent in one
            jump)."""
            if problems:
                self._status("homing (waiting for inputs)", problems)
                return
            try:
                self.safe_arm.set_target_pose(*self.home)
            except Exception as exc:  # noqa: BLE001 - reported; nothing else is sent
                self.homing = False
                self.get_logger().error(f"homing failed, stopped: {exc!r}")
                self._status("error", {"homing": repr(exc)})
                return
            pos, quat = self.safe_arm.last_command
            if np.linalg.norm(pos - self.home[0]) < 1e-6 and abs(abs(quat @ self.home[1]) - 1) < 1e-9:
                self.homing = False
                self.get_logger().info("home target reached: stopped")
            self._status("homing" if self.homing else "stopped", problems)

        def _status(self, state: str, problems: dict) -> None:
            msg = self._String()
            msg.data = json.dumps({"state": state, "problems": problems, "steps": self.steps,
                                   "episode": self.episode, "stale_ticks": self.stale_ticks,
                                   "targets_sent": self.arm.targets_sent})
            self._status_pub.publish(msg)
            if state != self._last_state:
                self.get_logger().info(f"state: {state}")
                self._last_state = state

        # ---- services (an exception must not escape into the executor: answer it)
        def _answered(handler):
            def call(self, request, response):
                try:
                    return handler(self, request, response)
                except Exception as exc:  # noqa: BLE001
                    self.running = self.homing = False
                    response.success = False
                    response.message = f"failed, stopped: {exc}"
                    self.get_logger().error(response.message)
                    return response
            return call

        @_answered
        def _srv_start(self, request, response):
            self.running = True
            problems = self.problems()
            response.success = True
            response.message = ("started" if not problems else "started; waiting for inputs: "
                                + "; ".join(f"{k}: {v}" for k, v in problems.items()))
            return response

        @_answered
        def _srv_stop(self, request, response):
            self.running = self.homing = False
            held = self.hold()
            response.success = True
            response.message = "stopped" + ("; holding the measured pose" if held else "")
            return response

        @_answered
        def _srv_reset(self, request, response):
            self.running = False
            self.steps = 0
            self.episode += 1
            response.success = True
            if self.home is not None:
                self.homing = True
                response.message = (f"reset: stopped, episode {self.episode}, moving home a "
                                    f"safety step per tick")
            else:
                response.message = f"reset: stopped, episode {self.episode}"
            return response

        def destroy_node(self):
            self.safe_arm.close()  # stops its watchdog thread
            super().destroy_node()

        def hold(self) -> bool:
            """Send the measured pose as target (a safety step from the last one at most) if
            it is fresh; True if sent."""
            if self.arm.pose_in.problem(self.params["stale_timeout"]) is None:
                self.safe_arm.stop()
                return True
            return False

    _PolicyNode = PolicyNode
    return PolicyNode


def create_policy_node(policy, spec: PolicySpec, defaults: dict | None = None,
                       node_name: str = NODE_NAME, namespace: str = ""):
    """The policy node (rclpy must be initialised). `policy.act(obs, deterministic=...)`."""
    return _node_class()(policy, spec, defaults, node_name, namespace)


def run(run_dir, runtime, config: str | None = None, rclpy_args: list[str] | None = None,
        overrides: dict | None = None, torch_threads: int = 1) -> int:
    """Load a run's policy (with the CLI's `runtime`) and spin the node until Ctrl-C / SIGTERM."""
    from robot_rl.hardware.ros2.hal import import_rclpy
    rclpy = import_rclpy()
    from rclpy.executors import ExternalShutdownException
    defaults = load_param_file(config) if config else {}
    defaults.update(overrides or {})
    agent, spec = load_policy_for_ros(run_dir, runtime, torch_threads=torch_threads)
    rclpy.init(args=["robot_rl_policy", *(rclpy_args or [])])
    node = None
    try:
        node = create_policy_node(agent, spec, defaults)
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            try:
                node.hold()
            except Exception:
                pass
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def call_trigger(service: str, timeout: float = 10.0) -> tuple[bool, str]:
    """Call a std_srvs/Trigger service (e.g. /robot_rl_policy/start) with rclpy."""
    from robot_rl.hardware.ros2.hal import import_rclpy
    rclpy = import_rclpy()
    from std_srvs.srv import Trigger
    rclpy.init(args=None)
    node = rclpy.create_node(f"robot_rl_trigger_{os.getpid()}")
    try:
        client = node.create_client(Trigger, service)
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {service} not available within {timeout} s")
        future = client.call_async(Trigger.Request())
        rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
        if not future.done():
            raise TimeoutError(f"service {service} did not answer within {timeout} s")
        res = future.result()
        return bool(res.success), str(res.message)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
