"""ROS 2 message <-> numpy conversions, shared by the rclpy HAL/node, the bag tools and the
DDS-level peer; plus that peer (ROS 2 wire format over Cyclone DDS, no rclpy needed).

The converters are duck-typed on field names, so they accept rclpy messages, messages
deserialized by `rosbags`, and the Cyclone DDS structs below alike. Nothing here imports
rclpy; `cyclonedds` is imported only by `dds_types()` / `DdsPeer`.

Wire format (what rmw implementations put on DDS): topic `/name` is DDS topic `rt/name`,
type `pkg/msg/Type` is `pkg::msg::dds_::Type_`, services use `rq/<srv>Request` and
`rr/<srv>Reply` (not implemented here: Fast DDS and Cyclone disagree on how requests are
matched to replies, so call services with rclpy, e.g. `robot-rl ros2 trigger`).
"""
# No `from __future__ import annotations` here: cyclonedds reads the struct annotations below
# as real types (they are local to dds_types(), so string annotations would not resolve).
import math
import threading
import time
from typing import Any, Callable

import numpy as np

from robot_rl.controllers.frames import orientation_error

# ---------------------------------------------------------------- stamps


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_sec_nanosec(ns: int) -> tuple[int, int]:
    return int(ns // 1_000_000_000), int(ns % 1_000_000_000)


# ---------------------------------------------------------------- geometry


def pose_from_msg(msg) -> np.ndarray:
    """geometry_msgs/PoseStamped (or Pose) -> [x, y, z, qx, qy, qz, qw], unit quaternion.
    Raises ValueError on NaN/inf or a zero quaternion: such a pose must never drive a policy."""
    p = getattr(msg, "pose", msg)
    a = np.array([p.position.x, p.position.y, p.position.z, p.orientation.x, p.orientation.y,
                  p.orientation.z, p.orientation.w], dtype=float)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"pose contains NaN or inf: {a.tolist()}")
    n = np.linalg.norm(a[3:])
    if n < 1e-6:
        raise ValueError("pose orientation is a zero quaternion")
    a[3:] /= n
    return a


def twist_from_msg(msg) -> np.ndarray:
    """geometry_msgs/TwistStamped (or Twist) -> [vx, vy, vz, wx, wy, wz]."""
    t = getattr(msg, "twist", msg)
    return np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z],
                    dtype=float)


def wrench_from_msg(msg) -> np.ndarray:
    """geometry_msgs/WrenchStamped (or Wrench) -> [fx, fy, fz, tx, ty, tz]."""
    w = getattr(msg, "wrench", msg)
    return np.array([w.force.x, w.force.y, w.force.z, w.torque.x, w.torque.y, w.torque.z],
                    dtype=float)


def fill_pose_stamped(msg, pos, quat, frame_id: str, stamp_ns: int):
    """Write a pose into a PoseStamped-shaped message (rclpy or DDS struct); returns it."""
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = ns_to_sec_nanosec(stamp_ns)
    p, o = msg.pose.position, msg.pose.orientation
    p.x, p.y, p.z = (float(v) for v in pos)
    o.x, o.y, o.z, o.w = (float(v) for v in quat)
    return msg


class TwistEstimator:
    """TCP twist from successive poses (for arms that publish no twist): finite differences,
    low-pass filtered with time constant `tau` seconds. Angular velocity is in the base frame,
    as in `ArmState.tcp_twist`. A gap longer than `max_gap` seconds restarts the estimate."""

    def __init__(self, tau: float = 0.02, max_gap: float = 0.5):
        self.tau, self.max_gap = tau, max_gap
        self.reset()

    def reset(self) -> None:
        self._last: tuple[int, np.ndarray] | None = None
        self.twist = np.zeros(6)

    def update(self, t_ns: int, pose: np.ndarray) -> np.ndarray:
        if self._last is not None:
            dt = (t_ns - self._last[0]) * 1e-9
            if dt <= 0:
                return self.twist
            if dt > self.max_gap:
                self.twist = np.zeros(6)
            else:
                prev = self._last[1]
                raw = np.concatenate([(pose[:3] - prev[:3]) / dt,
                                      orientation_error(pose[3:], prev[3:]) / dt])
                alpha = 1.0 - math.exp(-dt / self.tau) if self.tau > 0 else 1.0
                self.twist = self.twist + alpha * (raw - self.twist)
        self._last = (t_ns, pose.copy())
        return self.twist


# ---------------------------------------------------------------- joints


def joint_map(msg) -> dict[str, tuple[float, float]]:
    """sensor_msgs/JointState -> {name: (position, velocity)} (velocity 0 when absent)."""
    names = list(msg.name)
    pos = list(msg.position)
    vel = list(msg.velocity) if len(msg.velocity) == len(names) else [0.0] * len(names)
    if len(pos) != len(names):
        raise ValueError(f"JointState has {len(names)} names but {len(pos)} positions")
    return {n: (float(p), float(v)) for n, p, v in zip(names, pos, vel)}


# ---------------------------------------------------------------- images

_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8uc1": 1, "8uc3": 3}


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> uint8 HxWx3 RGB (a copy)."""
    enc = str(msg.encoding).lower()
    if enc not in _CHANNELS:
        raise ValueError(f"unsupported image encoding {msg.encoding!r}; "
                         f"supported: {sorted(_CHANNELS)}")
    h, w, c = int(msg.height), int(msg.width), _CHANNELS[enc]
    step = int(msg.step) or w * c
    data = msg.data
    try:  # bytes, array.array (rclpy), numpy (rosbags): no per-element copy
        buf = np.frombuffer(data, np.uint8)
    except (TypeError, ValueError):  # a list (some DDS bindings)
        buf = np.asarray(data, dtype=np.uint8)
    if buf.size < h * step or step < w * c:
        raise ValueError(f"image data has {buf.size} bytes, expected {h}x{step} "
                         f"({w}x{h} {enc})")
    img = buf[:h * step].reshape(h, step)[:, :w * c].reshape(h, w, c)
    if enc in ("bgr8", "bgra8"):
        img = img[..., 2::-1]
    elif c == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def resize_rgb(img: np.ndarray, shape) -> np.ndarray:
    """Resize uint8 HxWx3 to `shape` (H, W, 3) with bilinear filtering (Pillow), no-op if equal."""
    h, w = int(shape[0]), int(shape[1])
    if img.shape[:2] == (h, w):
        return img
    try:
        from PIL import Image as PILImage
    except ImportError:  # pragma: no cover - Pillow ships with matplotlib (the learn extra)
        raise RuntimeError(f"image is {img.shape[1]}x{img.shape[0]} but the policy expects "
                           f"{w}x{h}; install Pillow to resize") from None
    return np.array(PILImage.fromarray(img).resize((w, h), PILImage.BILINEAR), dtype=np.uint8)


# ---------------------------------------------------------------- DDS peer (Cyclone DDS)

FASTDDS_VENDOR_ID = "1.15"  # eProsima


def dds_config_xml(localhost_only: bool = True, max_participants: int = 32) -> str:
    """Cyclone DDS configuration that interoperates with ROS 2's default Fast DDS rmw.

    `IgnoreTypeInformation` (for vendor 1.15, eProsima) and `AllowInvalidTryConstruct` make
    Cyclone match Fast DDS endpoints despite their differing XTypes type information. With
    `localhost_only`, discovery is unicast on 127.0.0.1 with participant indices, which is
    what Fast DDS does under `ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`; no multicast."""
    import xml.etree.ElementTree as ET
    from pathlib import Path
    path = Path(__file__).with_name("cyclonedds_localhost.xml")  # shipped for rmw_cyclonedds
    root = ET.parse(path).getroot()
    domain = root.find("Domain")
    if localhost_only:
        domain.find("Discovery/MaxAutoParticipantIndex").text = str(max_participants)
    else:
        domain.remove(domain.find("Discovery"))
        general = domain.find("General")
        for child in list(general):
            general.remove(child)
    compat = ET.SubElement(domain, "Compatibility")
    ET.SubElement(compat, "AllowInvalidTryConstruct").text = "true"
    ET.SubElement(compat, "IgnoreTypeInformation").text = FASTDDS_VENDOR_ID
    return ET.tostring(root, encoding="unicode")


_DDS_TYPES: dict[str, Any] | None = None


def dds_types() -> dict[str, Any]:
    """Cyclone DDS structs with the ROS 2 wire layout of the messages robot_rl uses, keyed by
    ROS type name ("geometry_msgs/msg/PoseStamped", ...). Built on first use."""
    global _DDS_TYPES
    if _DDS_TYPES is not None:
        return _DDS_TYPES
    from dataclasses import dataclass, field

    from cyclonedds.idl import IdlStruct
    from cyclonedds.idl.types import float32, float64, int32, sequence, uint8, uint32

    def tn(ros: str) -> str:
        pkg, kind, name = ros.split("/")
        return f"{pkg}::{kind}::dds_::{name}_"

    @dataclass
    class Time(IdlStruct, typename=tn("builtin_interfaces/msg/Time")):
        sec: int32 = 0
        nanosec: uint32 = 0

    @dataclass
    class Header(IdlStruct, typename=tn("std_msgs/msg/Header")):
        stamp: Time = field(default_factory=Time)
        frame_id: str = ""

    @dataclass
    class Vector3(IdlStruct, typename=tn("geometry_msgs/msg/Vector3")):
        x: float64 = 0.0
        y: float64 = 0.0
        z: float64 = 0.0

    @dataclass
    class Point(IdlStruct, typename=tn("geometry_msgs/msg/Point")):
        x: float64 = 0.0
        y: float64 = 0.0
        z: float64 = 0.0

    @dataclass
    class Quaternion(IdlStruct, typename=tn("geometry_msgs/msg/Quaternion")):
        x: float64 = 0.0
        y: float64 = 0.0
        z: float64 = 0.0
        w: float64 = 1.0

    @dataclass
    class Pose(IdlStruct, typename=tn("geometry_msgs/msg/Pose")):
        position: Point = field(default_factory=Point)
        orientation: Quaternion = field(default_factory=Quaternion)

    @dataclass
    class PoseStamped(IdlStruct, typename=tn("geometry_msgs/msg/PoseStamped")):
        header: Header = field(default_factory=Header)
        pose: Pose = field(default_factory=Pose)

    @dataclass
    class Twist(IdlStruct, typename=tn("geometry_msgs/msg/Twist")):
        linear: Vector3 = field(default_factory=Vector3)
        angular: Vector3 = field(default_factory=Vector3)

    @dataclass
    class TwistStamped(IdlStruct, typename=tn("geometry_msgs/msg/TwistStamped")):
        header: Header = field(default_factory=Header)
        twist: Twist = field(default_factory=Twist)

    @dataclass
    class Wrench(IdlStruct, typename=tn("geometry_msgs/msg/Wrench")):
        force: Vector3 = field(default_factory=Vector3)
        torque: Vector3 = field(default_factory=Vector3)

    @dataclass
    class WrenchStamped(IdlStruct, typename=tn("geometry_msgs/msg/WrenchStamped")):
        header: Header = field(default_factory=Header)
        wrench: Wrench = field(default_factory=Wrench)

    @dataclass
    class JointState(IdlStruct, typename=tn("sensor_msgs/msg/JointState")):
        header: Header = field(default_factory=Header)
        name: sequence[str] = field(default_factory=list)
        position: sequence[float64] = field(default_factory=list)
        velocity: sequence[float64] = field(default_factory=list)
        effort: sequence[float64] = field(default_factory=list)

    @dataclass
    class Image(IdlStruct, typename=tn("sensor_msgs/msg/Image")):
        header: Header = field(default_factory=Header)
        height: uint32 = 0
        width: uint32 = 0
        encoding: str = ""
        is_bigendian: uint8 = 0
        step: uint32 = 0
        data: sequence[uint8] = field(default_factory=list)

    @dataclass
    class MultiArrayDimension(IdlStruct, typename=tn("std_msgs/msg/MultiArrayDimension")):
        label: str = ""
        size: uint32 = 0
        stride: uint32 = 0

    @dataclass
    class MultiArrayLayout(IdlStruct, typename=tn("std_msgs/msg/MultiArrayLayout")):
        dim: sequence[MultiArrayDimension] = field(default_factory=list)
        data_offset: uint32 = 0

    @dataclass
    class Float64MultiArray(IdlStruct, typename=tn("std_msgs/msg/Float64MultiArray")):
        layout: MultiArrayLayout = field(default_factory=MultiArrayLayout)
        data: sequence[float64] = field(default_factory=list)

    @dataclass
    class Float32MultiArray(IdlStruct, typename=tn("std_msgs/msg/Float32MultiArray")):
        layout: MultiArrayLayout = field(default_factory=MultiArrayLayout)
        data: sequence[float32] = field(default_factory=list)

    @dataclass
    class String(IdlStruct, typename=tn("std_msgs/msg/String")):
        data: str = ""

    _DDS_TYPES = {
        "builtin_interfaces/msg/Time": Time, "std_msgs/msg/Header": Header,
        "geometry_msgs/msg/Vector3": Vector3, "geometry_msgs/msg/Point": Point,
        "geometry_msgs/msg/Quaternion": Quaternion, "geometry_msgs/msg/Pose": Pose,
        "geometry_msgs/msg/PoseStamped": PoseStamped, "geometry_msgs/msg/Twist": Twist,
        "geometry_msgs/msg/TwistStamped": TwistStamped, "geometry_msgs/msg/Wrench": Wrench,
        "geometry_msgs/msg/WrenchStamped": WrenchStamped,
        "sensor_msgs/msg/JointState": JointState, "sensor_msgs/msg/Image": Image,
        "std_msgs/msg/MultiArrayDimension": MultiArrayDimension,
        "std_msgs/msg/MultiArrayLayout": MultiArrayLayout,
        "std_msgs/msg/Float64MultiArray": Float64MultiArray,
        "std_msgs/msg/Float32MultiArray": Float32MultiArray, "std_msgs/msg/String": String,
    }
    return _DDS_TYPES


def dds_topic_name(ros_topic: str) -> str:
    """ROS 2 topic name (absolute or relative to the root namespace) -> DDS topic name."""
    return "rt/" + ros_topic.lstrip("/")


def make_pose_msg(pos, quat, frame_id: str = "base", stamp_ns: int | None = None):
    T = dds_types()["geometry_msgs/msg/PoseStamped"]
    return fill_pose_stamped(T(), pos, quat, frame_id,
                             time.time_ns() if stamp_ns is None else stamp_ns)


def make_joint_state_msg(names, positions, velocities=None, frame_id: str = ""):
    T = dds_types()
    sec, ns = ns_to_sec_nanosec(time.time_ns())
    return T["sensor_msgs/msg/JointState"](
        header=T["std_msgs/msg/Header"](T["builtin_interfaces/msg/Time"](sec, ns), frame_id),
        name=list(names), position=[float(p) for p in positions],
        velocity=[float(v) for v in velocities] if velocities is not None else [], effort=[])


def make_image_msg(rgb: np.ndarray, encoding: str = "rgb8", frame_id: str = "camera"):
    T = dds_types()
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if encoding == "bgr8":
        rgb = np.ascontiguousarray(rgb[..., ::-1])
    h, w, c = rgb.shape
    sec, ns = ns_to_sec_nanosec(time.time_ns())
    return T["sensor_msgs/msg/Image"](
        header=T["std_msgs/msg/Header"](T["builtin_interfaces/msg/Time"](sec, ns), frame_id),
        height=h, width=w, encoding=encoding, is_bigendian=0, step=w * c,
        data=rgb.tobytes())


def make_wrench_msg(wrench, frame_id: str = "base"):
    T = dds_types()
    sec, ns = ns_to_sec_nanosec(time.time_ns())
    V = T["geometry_msgs/msg/Vector3"]
    w = [float(v) for v in wrench]
    return T["geometry_msgs/msg/WrenchStamped"](
        header=T["std_msgs/msg/Header"](T["builtin_interfaces/msg/Time"](sec, ns), frame_id),
        wrench=T["geometry_msgs/msg/Wrench"](V(*w[:3]), V(*w[3:])))


class DdsPeer:
    """A ROS 2 participant on Cyclone DDS (no rclpy): publishes and subscribes ROS 2 topics in
    the ROS 2 wire format. Used as the robot side in tests and usable as a light-weight fake
    robot. Received messages are kept with their arrival time (`time.monotonic()`).

        peer = DdsPeer(domain_id=7)
        pub = peer.publisher("current_pose", "geometry_msgs/msg/PoseStamped")
        pub(make_pose_msg([0.4, 0, 0.3], [1, 0, 0, 0]))
        peer.subscribe("target_pose", "geometry_msgs/msg/PoseStamped")
        peer.received("target_pose")  # [(t, msg), ...]
    """

    def __init__(self, domain_id: int = 0, localhost_only: bool = True):
        from cyclonedds.core import Policy, Qos
        from cyclonedds.domain import Domain, DomainParticipant
        from cyclonedds.util import duration
        self._domain = Domain(domain_id, dds_config_xml(localhost_only))
        self.participant = DomainParticipant(domain_id)
        self.qos = Qos(Policy.Reliability.Reliable(duration(seconds=1)),
                       Policy.History.KeepLast(50))
        self._topics: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._received: dict[str, list] = {}
        self._readers: list = []
        self._writers: dict[str, Any] = {}
        self._callbacks: dict[str, Callable] = {}

    def _topic(self, name: str, ros_type: str):
        from cyclonedds.topic import Topic
        key = dds_topic_name(name)
        if key not in self._topics:
            self._topics[key] = Topic(self.participant, key, dds_types()[ros_type])
        return self._topics[key]

    def publisher(self, name: str, ros_type: str) -> Callable[[Any], None]:
        from cyclonedds.pub import DataWriter
        key = dds_topic_name(name)
        if key not in self._writers:
            self._writers[key] = DataWriter(self.participant, self._topic(name, ros_type),
                                            self.qos)
        return self._writers[key].write

    def subscribe(self, name: str, ros_type: str, callback: Callable | None = None) -> None:
        """Record every message on `name`; `callback(msg)` runs (in Cyclone's listener thread)
        for each one too."""
        from cyclonedds.core import Listener
        from cyclonedds.sub import DataReader
        key = name.lstrip("/")
        self._received.setdefault(key, [])
        if callback is not None:
            self._callbacks[key] = callback

        def on_data(reader):
            now = time.monotonic()
            for msg in reader.take(64):
                if type(msg).__name__ == "InvalidSample":  # instance state change, no data
                    continue
                with self._lock:
                    self._received[key].append((now, msg))
                cb = self._callbacks.get(key)
                if cb is not None:
                    cb(msg)

        self._readers.append(DataReader(self.participant, self._topic(name, ros_type), self.qos,
                                        listener=Listener(on_data_available=on_data)))

    def received(self, name: str, since: float | None = None) -> list:
        with self._lock:
            msgs = list(self._received.get(name.lstrip("/"), []))
        return msgs if since is None else [(t, m) for t, m in msgs if t >= since]

    def clear(self, name: str | None = None) -> None:
        with self._lock:
            for k in ([name.lstrip("/")] if name else list(self._received)):
                self._received[k] = []

    def wait_for(self, name: str, count: int = 1, timeout: float = 10.0,
                 since: float | None = None) -> list:
        """Block until `count` messages arrived on `name` (after `since`); TimeoutError if not."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.received(name, since)
            if len(msgs) >= count:
                return msgs
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(msgs)}/{count} messages on {name!r} within {timeout} s")
            time.sleep(0.01)

    def close(self) -> None:
        self._readers.clear()
        self._writers.clear()
        self._topics.clear()
        self.participant = None
        self._domain = None
