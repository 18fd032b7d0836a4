"""Bag tools: record a ROS 2 session as a rosbag2 (MCAP storage), and convert a bag into a
LeRobotDataset v3.0 with the exact observation layout `RobotEnv` produces.

Recording (`robot-rl ros2 record OUT --topics ...`) needs rclpy: it subscribes to each topic
with raw (serialized CDR) subscriptions and writes the bytes unchanged through `rosbags`,
so the bag opens in `ros2 bag`, Foxglove and `rosbags`. It stops on Ctrl-C, SIGTERM or after
`--duration` seconds and always closes the bag (metadata.yaml written).

Conversion (`robot-rl ros2 bag-to-lerobot BAG OUT --policy RUN_DIR | --env-config CFG`) is
pure Python (`rosbags`, no ROS 2 install). One frame per step:

* a step is a message on the policy node's `~/action` topic (its normalized action, stored
  as is), or, for sessions without the node (teleoperation, another controller), a message
  on `target_pose`; the action is then recovered from the target and the measured pose
  (delta / step size in the task's frame, clipped to [-1, 1]) plus the gripper command
  nearest in time (within half a step, else the last one before);
* the observation is the zero-order hold of every input at the step's log time: TCP pose
  (canonical quaternion sign), twist (topic or estimated from the poses exactly as the HAL
  does), gripper opening, wrench if observed, env_state [goal, goal - tcp] if observed, and
  each camera image resized to the policy's shape;
* steps whose inputs are missing or older than `stale_timeout` are skipped (counted);
* a pause longer than `gap` seconds between steps starts a new episode. Rewards are 0 and
  `next.success` false (label them with a reward model); the last frame of every episode is
  a time-limit end (`next.done`, not `next.terminated`).

Topic names are the node's parameters (same names and defaults; `--config` takes the same
YAML as `ros2 run`), resolved in `namespace`.
"""
from __future__ import annotations

import signal
import threading
import time
from bisect import bisect_right
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.controllers.frames import orientation_error, quat_to_mat
from robot_rl.hardware.ros2 import messages as M
from robot_rl.hardware.task import POSE_DOFS

TYPESTORE = "ros2_kilted"   # message definitions used when a bag lacks them

DEFAULTS = {
    "base_frame": "base", "current_pose_topic": "current_pose", "target_pose_topic": "target_pose",
    "joint_states_topic": "joint_states", "twist_topic": "",
    "wrench_topic": "force_torque_sensor_broadcaster/wrench", "camera_topics": [],
    "gripper_enabled": True, "gripper_joint": "panda_finger_joint1", "gripper_width_scale": 2.0,
    "gripper_max_width": 0.08, "gripper_command_topic": "gripper_position_controller/commands",
    "goal": [], "goal_topic": "goal_pose", "goal_timeout": 0.0, "stale_timeout": 0.5,
    "action_topic": "~/action", "node_name": "robot_rl_policy",
}


def resolve_topic(topic: str, namespace: str = "", node_name: str = "robot_rl_policy") -> str:
    """ROS 2 name resolution for the cases used here: absolute, relative, private (~/)."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if topic.startswith("~"):
        topic = f"{ns}/{node_name}/{topic[1:].lstrip('/')}"
    elif not topic.startswith("/"):
        topic = f"{ns}/{topic}"
    return "/" + "/".join(p for p in topic.split("/") if p)


# ------------------------------------------------------------------ recording (rclpy)


def record(out, topics: list[str] | None = None, duration: float | None = None,
           rclpy_args: list[str] | None = None, wait_topics: float = 10.0,
           ready_file: str | None = None) -> dict:
    """Record `topics` (all topics when None/empty) to a rosbag2 directory `out` (MCAP).
    Returns {"bag": path, "messages": {topic: count}}."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_typestore
    from rosbags.typesys.stores import Stores

    from robot_rl.hardware.ros2.hal import import_rclpy
    rclpy = import_rclpy()
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    out = Path(out)
    typestore = get_typestore(Stores(TYPESTORE))
    rclpy.init(args=["robot_rl_recorder", *(rclpy_args or [])])
    node = rclpy.create_node("robot_rl_recorder")
    stop = threading.Event()
    old_term = signal.signal(signal.SIGTERM, lambda *a: stop.set())
    writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    wanted = {resolve_topic(t) for t in topics} if topics else None
    subs, conns, counts = {}, {}, {}
    def qos_for(name: str) -> QoSProfile:
        """Like `ros2 bag record`: reliable / transient-local only if every publisher offers
        it (a stricter subscription would not match the others)."""
        infos = node.get_publishers_info_by_topic(name)
        reliable = bool(infos) and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                                       for i in infos)
        latched = bool(infos) and all(
            i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
        return QoSProfile(depth=200, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.RELIABLE if reliable
                          else ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL if latched
                          else DurabilityPolicy.VOLATILE)

    def subscribe_new() -> None:
        for name, types in node.get_topic_names_and_types():
            if name in subs or (wanted is not None and name not in wanted):
                continue
            if wanted is None and name in ("/rosout", "/parameter_events"):
                continue
            ros_type = types[0]
            pkg, kind, cls_name = ros_type.split("/")
            import importlib
            msg_cls = getattr(importlib.import_module(f"{pkg}.{kind}"), cls_name)
            conns[name] = writer.add_connection(name, ros_type, typestore=typestore)
            counts[name] = 0

            def cb(data, name=name):
                writer.write(conns[name], node.get_clock().now().nanoseconds, bytes(data))
                counts[name] += 1

            subs[name] = node.create_subscription(msg_cls, name, cb, qos_for(name), raw=True)

    try:
        deadline = time.monotonic() + wait_topics
        while True:  # wait until every requested topic is discovered
            subscribe_new()
            if wanted is not None and wanted <= set(subs):
                break
            if wanted is None and subs and time.monotonic() > deadline - wait_topics + 1.0:
                break
            if time.monotonic() > deadline or stop.is_set():
                missing = sorted((wanted or set()) - set(subs))
                raise TimeoutError(f"topics not found within {wait_topics} s: {missing}")
            rclpy.spin_once(node, timeout_sec=0.05)
        if ready_file:
            Path(ready_file).write_text("ready")
        node.get_logger().info(f"recording {sorted(subs)} to {out}")
        end = None if duration is None else time.monotonic() + duration
        last_scan = time.monotonic()
        while not stop.is_set() and rclpy.ok() and (end is None or time.monotonic() < end):
            rclpy.spin_once(node, timeout_sec=0.05)
            if wanted is None and time.monotonic() - last_scan > 1.0:
                subscribe_new()
                last_scan = time.monotonic()
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        # SIGINT reaches rclpy's own handler first, which shuts the context down; spin_once then
        # raises ExternalShutdownException. That is the normal way to stop a recording.
        from rclpy.executors import ExternalShutdownException
        if not isinstance(exc, ExternalShutdownException):
            raise
    finally:
        signal.signal(signal.SIGTERM, old_term)
        writer.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return {"bag": str(out), "messages": counts}


# ------------------------------------------------------------------ conversion (pure Python)


class _Series:
    """Time-ordered (log time ns, value) of one input, for zero-order-hold lookups."""

    def __init__(self):
        self.t: list[int] = []
        self.v: list[Any] = []

    def add(self, t: int, v) -> None:
        self.t.append(t)
        self.v.append(v)

    def at(self, t: int, max_age_ns: int | None):
        i = bisect_right(self.t, t) - 1
        if i < 0 or (max_age_ns is not None and t - self.t[i] > max_age_ns):
            return None
        return self.v[i]

    def nearest(self, t: int, window_ns: int):
        """The value closest in time to `t` within +-window_ns, else the latest before `t`."""
        i = bisect_right(self.t, t)
        near = [j for j in (i - 1, i) if 0 <= j < len(self.t) and abs(self.t[j] - t) <= window_ns]
        if near:
            return self.v[min(near, key=lambda j: abs(self.t[j] - t))]
        return self.at(t, None)


def _action_from_target(spec, pose: np.ndarray, target: np.ndarray, grip: float | None):
    """Invert RobotEnv.target_from_action (before safety clipping) for one step."""
    a_cfg = spec.action
    dp = target[:3] - pose[:3]
    dr = orientation_error(target[3:], pose[3:])
    if a_cfg.frame == "ee":
        R = quat_to_mat(pose[3:])
        dp, dr = R.T @ dp, R.T @ dr
    delta = np.concatenate([dp / a_cfg.step_pos, dr / a_cfg.step_rot])
    a = [delta[POSE_DOFS.index(d)] for d in a_cfg.dofs]
    if a_cfg.gripper:
        a.append(0.0 if grip is None else grip)
    return np.clip(np.array(a, np.float32), -1.0, 1.0)


def bag_to_lerobot(bag, out, spec, params: dict | None = None, namespace: str = "",
                   fps: int | None = None, task: str | None = None, gap: float = 1.0,
                   robot_type: str = "ros2") -> dict:
    """Convert a rosbag2 (MCAP or sqlite3) to a LeRobotDataset v3.0 at `out` laid out for a
    policy with `spec` (`PolicySpec`). See the module docstring for the rules."""
    import gymnasium as gym
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import get_typestore
    from rosbags.typesys.stores import Stores

    from robot_rl.data.episodes import features_for, make_frame  # dataset layout (runtime)
    from robot_rl.data.lerobot import LeRobotDatasetWriter
    from robot_rl.hardware.robot_env import canonical_quat

    p = dict(DEFAULTS)
    unknown = sorted(set(params or {}) - set(DEFAULTS) - {
        "rate_hz", "arm_joints", "autostart", "max_steps", "home_pose", "deterministic"})
    if unknown:
        raise ValueError(f"unknown parameters {unknown}; valid: {sorted(DEFAULTS)}")
    p.update(params or {})
    node = p["node_name"]

    def topic(key):
        return resolve_topic(p[key], namespace, node) if p[key] else None

    cam_topics = {n: f"{n}/image_raw" for n in spec.cameras}
    for e in p["camera_topics"]:
        n, t = e.split("=", 1)
        cam_topics[n] = t
    cam_topics = {n: resolve_topic(t, namespace, node) for n, t in cam_topics.items()}
    t_pose, t_joints, t_twist = topic("current_pose_topic"), topic("joint_states_topic"), \
        topic("twist_topic")
    t_wrench = topic("wrench_topic") if spec.include_wrench else None
    t_action, t_target = topic("action_topic"), topic("target_pose_topic")
    t_gcmd = topic("gripper_command_topic")
    fixed_goal = np.asarray(p["goal"], float) if len(p["goal"]) else None
    t_goal = topic("goal_topic") if spec.env_state_dim and fixed_goal is None else None
    if spec.env_state_dim not in (None, 6):
        raise ValueError(f"env_state of {spec.env_state_dim} values: only [goal, goal - tcp] "
                         "(6) can be rebuilt from a bag")
    stale_ns = int(p["stale_timeout"] * 1e9) if p["stale_timeout"] > 0 else None
    goal_ns = int(p["goal_timeout"] * 1e9) if p["goal_timeout"] > 0 else None
    base = p["base_frame"].lstrip("/")

    action_dim = len(spec.action.dofs) + int(spec.action.gripper)
    spaces = {"state": gym.spaces.Box(-np.inf, np.inf, (20 if spec.include_wrench else 14,),
                                      np.float32)}
    if spec.env_state_dim:
        spaces["env_state"] = gym.spaces.Box(-np.inf, np.inf, (spec.env_state_dim,), np.float32)
    for name, shape in spec.cameras.items():
        spaces[name] = gym.spaces.Box(0, 255, tuple(shape), np.uint8)
    features = features_for(gym.spaces.Dict(spaces), action_dim)
    fps = int(fps or round(spec.control_hz))
    text = task or spec.instruction or spec.name
    lengths: list[int] = []
    pending: list = []   # the last frame is held back until we know whether an episode ends

    episode_open = [False]
    half_step_ns = int(0.5e9 / fps)

    def emit(t, obs, action) -> None:
        """Write the held-back frame (ending its episode if `t` is None or after a gap)."""
        if pending:
            t0, obs0, a0 = pending.pop()
            if not use_action and spec.action.gripper:
                # the gripper command issued with this target (either may come first)
                g = gcmd_s.nearest(t0, half_step_ns)
                a0[-1] = 0.0 if g is None else g
            last = t is None or (t - t0) > gap * 1e9
            if not episode_open[0]:
                lengths.append(0)
                episode_open[0] = True
            writer.add_frame(make_frame(obs0, a0, 0.0, terminated=False, truncated=last,
                                        success=False), text)
            lengths[-1] += 1
            if last:
                writer.save_episode()
                episode_open[0] = False
        if t is not None:
            pending.append((t, obs, action))

    bag = Path(bag)
    default_ts = get_typestore(Stores(TYPESTORE))
    with AnyReader([bag], default_typestore=default_ts) as reader:
        present = {c.topic for c in reader.connections}
        use_action = t_action in present
        if not use_action and t_target not in present:
            raise ValueError(f"{bag} has neither the policy's action topic {t_action} nor "
                             f"{t_target}: no steps to convert (topics: {sorted(present)})")
        if t_pose not in present:
            raise ValueError(f"{bag} lacks the pose topic {t_pose} (topics: {sorted(present)})")
        missing_cams = [t for t in cam_topics.values() if t not in present]
        if missing_cams:
            raise ValueError(f"{bag} lacks camera topics {missing_cams}")
        wanted = {t for t in [t_pose, t_joints, t_twist, t_wrench, t_goal, t_gcmd,
                              t_action if use_action else t_target, *cam_topics.values()]
                  if t and t in present}
        conns = [c for c in reader.connections if c.topic in wanted]
        writer = LeRobotDatasetWriter(out, fps=fps, features=features, robot_type=robot_type)
        with writer:

            pose_s, twist_s, wrench_s, grip_s, goal_s, gcmd_s = (_Series() for _ in range(6))
            est = M.TwistEstimator()
            latest_img: dict[str, tuple[int, Any]] = {}   # camera -> (t, raw msg), decoded lazily
            skipped = {"stale_or_missing_inputs": 0, "invalid": 0}

            def obs_at(t: int):
                pose = pose_s.at(t, stale_ns)
                if pose is None:
                    return None
                parts = [pose[:3], canonical_quat(pose[3:])]
                if t_twist:
                    tw = twist_s.at(t, stale_ns)
                    if tw is None:
                        return None
                else:
                    tw = twist_est_at(t)
                parts.append(tw)
                if p["gripper_enabled"]:
                    w = grip_s.at(t, stale_ns)
                    if w is None:
                        return None
                    parts.append([w / float(p["gripper_max_width"])])
                else:
                    parts.append([0.0])
                if spec.include_wrench:
                    wr = wrench_s.at(t, stale_ns)
                    if wr is None:
                        return None
                    parts.append(wr)
                obs = {"state": np.concatenate(parts).astype(np.float32)}
                if spec.env_state_dim:
                    g = fixed_goal if fixed_goal is not None else goal_s.at(t, goal_ns)
                    if g is None:
                        return None
                    obs["env_state"] = np.concatenate([g, g - pose[:3]]).astype(np.float32)
                for name, tp in cam_topics.items():
                    if name not in latest_img:
                        return None
                    ti, raw_conn = latest_img[name]
                    if stale_ns is not None and t - ti > stale_ns:
                        return None
                    obs[name] = raw_conn  # decoded by the caller
                return obs, pose

            twist_hist = _Series()

            def twist_est_at(t):
                v = twist_hist.at(t, None)
                return np.zeros(6) if v is None else v

            for conn, t, raw in reader.messages(connections=conns):
                tp = conn.topic
                if tp in cam_topics.values():
                    name = next(n for n, x in cam_topics.items() if x == tp)
                    latest_img[name] = (t, (raw, conn.msgtype))
                    continue
                msg = reader.deserialize(raw, conn.msgtype)
                if tp == t_pose:
                    frame = msg.header.frame_id.lstrip("/")
                    if frame and frame != base:
                        skipped["invalid"] += 1
                        continue
                    try:
                        pose = M.pose_from_msg(msg)
                    except ValueError:
                        skipped["invalid"] += 1
                        continue
                    stamp = M.stamp_to_ns(msg.header.stamp)
                    twist_hist.add(t, est.update(stamp if stamp > 0 else t, pose).copy())
                    pose_s.add(t, pose)
                elif tp == t_joints:
                    jm = M.joint_map(msg)
                    if p["gripper_joint"] in jm:
                        grip_s.add(t, float(p["gripper_width_scale"]) * jm[p["gripper_joint"]][0])
                elif tp == t_twist:
                    twist_s.add(t, M.twist_from_msg(msg))
                elif tp == t_wrench:
                    wrench_s.add(t, M.wrench_from_msg(msg))
                elif tp == t_goal:
                    goal_s.add(t, M.pose_from_msg(msg)[:3])
                elif tp == t_gcmd:
                    if len(msg.data):
                        width = float(msg.data[0]) * float(p["gripper_width_scale"])
                        closed = 1.0 - 2.0 * width / float(p["gripper_max_width"])
                        gcmd_s.add(t, float(np.clip(closed, -1.0, 1.0)))
                elif tp in (t_action, t_target):
                    got = obs_at(t)
                    if got is None:
                        skipped["stale_or_missing_inputs"] += 1
                        continue
                    obs, pose = got
                    if use_action:
                        action = np.asarray(msg.data, np.float32)
                    else:
                        try:
                            target = M.pose_from_msg(msg)
                        except ValueError:
                            skipped["invalid"] += 1
                            continue
                        action = _action_from_target(spec, pose, target, None)
                    # decode images now (only those used by a frame)
                    for name in cam_topics:
                        raw_img, typ = obs[name]
                        img = reader.deserialize(raw_img, typ)
                        obs[name] = M.resize_rgb(M.image_to_rgb(img), spec.cameras[name])
                    if len(action) != action_dim:
                        raise ValueError(f"actions in the bag have {len(action)} values; the "
                                         f"policy layout has {action_dim}")
                    emit(t, obs, action)
            emit(None, None, None)  # flush the held-back last frame

    return {"dataset": str(out), "episodes": len(lengths), "frames": sum(lengths),
            "episode_lengths": lengths, "steps_from": "action" if use_action else "target_pose",
            "skipped": skipped}
