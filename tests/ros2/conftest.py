"""ROS 2 test fixtures: real peers only.

* rclpy runs in the ROS 2 venv (`.venv-ros2`, made by `bash scripts/setup_ros2.sh`; override
  the interpreter with $ROBOT_RL_ROS2_PYTHON). It is required: without it these tests FAIL
  (CI creates it), they do not skip.
* The other side is a Cyclone DDS participant in this (pytest) process speaking the ROS 2
  wire format (`robot_rl.hardware.ros2.messages.DdsPeer`), so rclpy (Fast DDS) and the peer
  interoperate across DDS vendors, as a robot's ROS 2 stack would.
* Every test gets its own ROS_DOMAIN_ID and discovery is unicast on 127.0.0.1 only
  (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST on the rclpy side, the matching Cyclone config on
  the peer side): no multicast, no traffic off this machine, no cross-talk between tests.
"""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROS2_PYTHON = Path(os.environ.get("ROBOT_RL_ROS2_PYTHON", ROOT / ".venv-ros2" / "bin" / "python"))
SETUP_HINT = "create it with `bash scripts/setup_ros2.sh` (CI runs this before pytest)"

_domains = itertools.count()


@pytest.fixture(scope="session")
def ros2_python() -> str:
    if not ROS2_PYTHON.exists():
        pytest.fail(f"ROS 2 venv interpreter {ROS2_PYTHON} not found: {SETUP_HINT}", pytrace=False)
    r = subprocess.run([str(ROS2_PYTHON), "-c", "import rclpy, std_srvs.srv, sensor_msgs.msg, "
                        "geometry_msgs.msg, robot_rl.hardware.ros2"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        pytest.fail(f"{ROS2_PYTHON} cannot import rclpy + robot_rl ({SETUP_HINT}):\n{r.stderr}",
                    pytrace=False)
    return str(ROS2_PYTHON)


@pytest.fixture
def domain_id() -> int:
    """A DDS domain private to this test (ids 101..199; 7400 + 250 * id stays below 65535)."""
    return 101 + (os.getpid() * 7 + next(_domains)) % 99


@pytest.fixture
def ros_env(domain_id) -> dict:
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
    for k in ("ROS_LOCALHOST_ONLY", "ROS_STATIC_PEERS", "RMW_IMPLEMENTATION",
              "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE",
              "_ROS_WHEELS_BOOTSTRAP_COMPLETE", "_ROBOT_RL_ROS2_REEXEC"):
        env.pop(k, None)
    return env


@pytest.fixture
def peer(domain_id):
    try:
        from robot_rl.hardware.ros2.messages import DdsPeer
        import cyclonedds  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"cyclonedds is not installed in {sys.executable} ({exc}): {SETUP_HINT}",
                    pytrace=False)
    p = DdsPeer(domain_id)
    yield p
    p.close()


class Proc:
    """A subprocess whose output goes to a log file, shown when a test fails."""

    def __init__(self, args, env, log: Path, cwd=ROOT):
        self.log = log
        self._fh = open(log, "w")
        self.p = subprocess.Popen(args, env=env, cwd=cwd, stdout=self._fh,
                                  stderr=subprocess.STDOUT)

    def text(self) -> str:
        if not self._fh.closed:
            self._fh.flush()
        return self.log.read_text()

    def wait_for_output(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if self.p.poll() is not None:
                raise AssertionError(f"process exited ({self.p.returncode}) before printing "
                                     f"{needle!r}:\n{self.text()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not printed within {timeout} s:\n"
                                     f"{self.text()[-4000:]}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self._fh.close()
        return self.p.returncode


@pytest.fixture
def spawn(tmp_path, request):
    """spawn(args, env, name) -> Proc; all are stopped at teardown, logs printed on failure."""
    procs: list[Proc] = []

    def _spawn(args, env, name="proc") -> Proc:
        proc = Proc(args, env, tmp_path / f"{name}.log")
        procs.append(proc)
        return proc

    yield _spawn
    for proc in procs:
        proc.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for proc in procs:
            sys.stderr.write(f"\n----- {proc.log.name} -----\n{proc.text()[-6000:]}\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep


@pytest.fixture
def ros2_run(ros2_python, ros_env):
    """ros2_run(args) runs `python -m robot_rl.cli ros2 ARGS` in the ROS 2 venv."""
    def _run(args: list[str], timeout: float = 60.0):
        return subprocess.run([ros2_python, "-m", "robot_rl.cli", "ros2", *args],
                              env=ros_env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)
    return _run


ARM_JOINTS = [f"panda_joint{i}" for i in range(1, 8)]


class FakeRobot:
    """The robot side of a ROS 2 arm, on the DDS peer: publishes `current_pose`,
    `joint_states` (7 arm joints + a finger joint), and optionally camera images and a goal,
    at `hz` from a thread. With `follow`, it behaves like an ideal impedance controller: the
    pose jumps to each `target_pose`, the joints to each `target_joint`, the finger to each
    gripper command. Set `pose = None` to stop publishing the pose (a dead driver)."""

    def __init__(self, peer, ns: str = "", hz: float = 50.0, frame: str = "base",
                 finger: str = "panda_finger_joint1", follow: bool = False):
        import numpy as np

        from robot_rl.hardware.ros2 import messages as M
        self.M, self.np = M, np
        self.peer, self.hz, self.frame, self.finger = peer, hz, frame, finger
        self.ns = "/" + ns.strip("/") if ns.strip("/") else ""
        self.pose = np.array([0.45, 0.0, 0.22, 1.0, 0.0, 0.0, 0.0])
        self.q = np.zeros(7)
        self.finger_pos = 0.04
        self.goal = None
        self.images: dict = {}          # topic -> (rgb, encoding)
        self.lock = __import__("threading").Lock()
        t = self.topic
        self._pose = peer.publisher(t("current_pose"), "geometry_msgs/msg/PoseStamped")
        self._joints = peer.publisher(t("joint_states"), "sensor_msgs/msg/JointState")
        self._goal = peer.publisher(t("goal_pose"), "geometry_msgs/msg/PoseStamped")
        self._img_pubs: dict = {}
        if follow:
            peer.subscribe(t("target_pose"), "geometry_msgs/msg/PoseStamped", self._on_target)
            peer.subscribe(t("target_joint"), "sensor_msgs/msg/JointState", self._on_joint)
            peer.subscribe(t("gripper_position_controller/commands"),
                           "std_msgs/msg/Float64MultiArray", self._on_gripper)
            peer.subscribe(t("target_stiffness"), "std_msgs/msg/Float64MultiArray")
        self._stop = __import__("threading").Event()
        self._thread = None

    def topic(self, name: str) -> str:
        return f"{self.ns}/{name}"

    def _on_target(self, msg) -> None:
        with self.lock:
            self.pose = self.M.pose_from_msg(msg)

    def _on_joint(self, msg) -> None:
        with self.lock:
            jm = dict(zip(msg.name, msg.position))
            self.q = self.np.array([jm.get(n, q) for n, q in zip(ARM_JOINTS, self.q)])

    def _on_gripper(self, msg) -> None:
        with self.lock:
            self.finger_pos = float(msg.data[0])

    def publish_once(self) -> None:
        M = self.M
        with self.lock:
            pose, q, finger, goal = self.pose, self.q.copy(), self.finger_pos, self.goal
            images = dict(self.images)
        if pose is not None:
            self._pose(M.make_pose_msg(pose[:3], pose[3:], self.frame))
        self._joints(M.make_joint_state_msg(ARM_JOINTS + [self.finger], [*q, finger],
                                            [0.0] * 8))
        if goal is not None:
            self._goal(M.make_pose_msg(goal, [0, 0, 0, 1], self.frame))
        for topic, (rgb, enc) in images.items():
            if topic not in self._img_pubs:
                self._img_pubs[topic] = self.peer.publisher(topic, "sensor_msgs/msg/Image")
            self._img_pubs[topic](M.make_image_msg(rgb, enc))

    def _run(self) -> None:
        import time as _t
        period = 1.0 / self.hz
        nxt = _t.monotonic()
        while not self._stop.is_set():
            self.publish_once()
            nxt += period
            _t.sleep(max(0.0, nxt - _t.monotonic()))

    def start(self) -> "FakeRobot":
        import threading
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def set(self, **kw) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, v)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)


@pytest.fixture
def fake_robot(peer):
    robots = []

    def _make(**kw) -> FakeRobot:
        r = FakeRobot(peer, **kw)
        robots.append(r)
        return r

    yield _make
    for r in robots:
        r.stop()
