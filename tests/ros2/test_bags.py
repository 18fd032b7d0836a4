"""Record a session with `robot-rl ros2 record` (real rclpy in .venv-ros2, raw CDR into a
rosbag2/MCAP) while a Cyclone DDS peer plays robot and policy, then convert the bag to a
LeRobotDataset and check every frame against what was published."""
from __future__ import annotations

import json
import time

import numpy as np
import yaml

from robot_rl.controllers.safety import SafetyBox
from robot_rl.cli import main as cli_main
from robot_rl.data.lerobot import LeRobotDataset
from robot_rl.hardware.ros2 import messages as M
from robot_rl.hardware.ros2.bags import bag_to_lerobot
from robot_rl.hardware.ros2.node import PolicySpec
from robot_rl.hardware.task import ActionConfig

TOPICS = ["/current_pose", "/joint_states", "/front/image_raw", "/robot_rl_policy/action",
          "/target_pose", "/gripper_position_controller/commands"]


def step_values(k: int):
    pose = np.array([0.40 + 0.004 * k, -0.05 + 0.003 * k, 0.25 - 0.002 * k, 1.0, 0.0, 0.0, 0.0])
    action = np.array([np.sin(k), np.cos(k) * 0.5, -0.3, 1.0 if k % 3 else -1.0], np.float32)
    finger = 0.01 + 0.002 * k
    color = (10 * k + 20, 100, 200)
    return pose, action, finger, color


def test_record_and_convert_session(ros2_python, ros_env, peer, fake_robot, spawn, tmp_path):
    # no publishing thread: each step publishes the robot's inputs once, then the action, so
    # which pose/image a step must see is exact (a thread could interleave an older pose)
    robot = fake_robot()
    pose0, _, finger0, color0 = step_values(0)
    robot.set(pose=pose0, finger_pos=finger0,
              images={"/front/image_raw": (np.full((24, 40, 3), color0, np.uint8), "rgb8")})
    robot.publish_once()  # creates every writer before the recorder looks for topics
    act_pub = peer.publisher("/robot_rl_policy/action", "std_msgs/msg/Float32MultiArray")
    tgt_pub = peer.publisher("/target_pose", "geometry_msgs/msg/PoseStamped")
    grip_pub = peer.publisher("/gripper_position_controller/commands",
                              "std_msgs/msg/Float64MultiArray")
    T = M.dds_types()
    bag, ready = tmp_path / "session", tmp_path / "ready"
    rec = spawn([ros2_python, "-m", "robot_rl.cli", "ros2", "record", str(bag),
                 "--topics", *TOPICS, "--ready-file", str(ready)], ros_env, "record")
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert rec.p.poll() is None and time.monotonic() < deadline, rec.text()[-3000:]
        time.sleep(0.05)
    time.sleep(0.7)  # let the recorder's readers match every writer

    episodes = [list(range(0, 12)), list(range(12, 20))]
    for e, ks in enumerate(episodes):
        if e:
            time.sleep(1.6)  # a pause > 1 s: the converter starts a new episode
        for k in ks:
            pose, action, finger, color = step_values(k)
            robot.set(pose=pose, finger_pos=finger,
                      images={"/front/image_raw": (np.full((24, 40, 3), color, np.uint8),
                                                   "rgb8")})
            robot.publish_once()
            time.sleep(0.03)
            act_pub(T["std_msgs/msg/Float32MultiArray"](data=[float(a) for a in action]))
            target = pose[:3] + action[:3] * 0.02
            tgt_pub(M.make_pose_msg(target, [1, 0, 0, 0], "base"))
            width = (1.0 - action[3]) / 2 * 0.08
            grip_pub(T["std_msgs/msg/Float64MultiArray"](data=[width / 2]))
            time.sleep(0.07)
    time.sleep(0.5)
    assert rec.stop() == 0, rec.text()[-3000:]
    counts = json.loads(rec.text().strip().splitlines()[-1])["messages"]
    assert counts["/robot_rl_policy/action"] == 20 and counts["/target_pose"] == 20, counts
    assert (bag / "metadata.yaml").exists() and list(bag.glob("*.mcap"))

    # --- convert, steps = the policy's action messages
    spec = PolicySpec(action=ActionConfig(dofs=("x", "y", "z"), gripper=True, step_pos=0.02),
                      safety=SafetyBox((0.2, -0.3, 0.0), (0.7, 0.3, 0.5)),
                      home_quat=np.array([1.0, 0, 0, 0]), name="bagtest",
                      instruction="push the block", cameras={"front": (32, 32, 3)},
                      control_hz=10.0)
    out = tmp_path / "ds"
    res = bag_to_lerobot(bag, out, spec)
    assert res["steps_from"] == "action" and res["episode_lengths"] == [12, 8], res
    ds = LeRobotDataset(out)
    assert ds.num_episodes == 2
    for e, ks in enumerate(episodes):
        ep = ds.episode(e)
        for t, k in enumerate(ks):
            pose, action, finger, color = step_values(k)
            s = ep["observation.state"][t]
            np.testing.assert_allclose(s[:7], pose, atol=1e-6)
            np.testing.assert_allclose(s[13], 2 * finger / 0.08, atol=1e-6)
            np.testing.assert_allclose(ep["action"][t], action, atol=1e-6)
            img = ep["observation.images.front"][t]
            assert img.shape == (32, 32, 3)
            np.testing.assert_allclose(img.reshape(-1, 3).mean(0), color, atol=6)
        assert list(ep["next.done"]) == [False] * (len(ks) - 1) + [True]
        assert not ep["next.terminated"].any() and (ep["task"] == "push the block").all()

    # --- the CLI, layout from a ROS 2 run config, steps recovered from target_pose
    cfg = tmp_path / "ros_run.yaml"
    cfg.write_text(yaml.safe_dump({"name": "bagtest", "env": {
        "id": "robot_rl.hardware.ros2:robot_rl/ROS2Arm-v0",
        "kwargs": {"cameras": {"front": "front/image_raw"}, "image_size": 32, "control_hz": 10,
                   "task": {"action": {"dofs": ["x", "y", "z"], "gripper": True,
                                       "step_pos": 0.02}, "instruction": "push the block"}}}}))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"action_topic": ""}))
    out2 = tmp_path / "ds2"
    assert cli_main(["ros2", "bag-to-lerobot", str(bag), str(out2), "--env-config", str(cfg),
                     "--config", str(params)]) == 0
    ds2 = LeRobotDataset(out2)
    got = np.concatenate([ds2.episode(e)["action"] for e in range(ds2.num_episodes)])
    want = np.stack([step_values(k)[1] for ks in episodes for k in ks])
    assert ds2.num_episodes == 2
    np.testing.assert_allclose(got, want, atol=1e-5)
