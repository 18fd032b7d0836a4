"""The policy node under real rclpy (ROS 2 Kilted wheels, Fast DDS, in .venv-ros2) against a
Cyclone DDS robot peer in this process: target values, frame ids, rate, services,
parameters and refusal to act on stale or invalid inputs.

The policy is a real PandaReach SAC policy trained for 50 steps inside the test; its
observation is `state` (14) + `env_state` [goal, goal - tcp] (6), so the node gets the goal
from a topic (test 1) or a parameter (test 2). Expected targets are computed here from the
same checkpoint and the sim env's own `target_from_action`.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import pytest
import yaml

from robot_rl.hardware.robot_env import canonical_quat

RATE = 20.0


@pytest.fixture(scope="module")
def reach_policy(tmp_path_factory):
    from robot_rl.train import Trainer, load_config, load_policy, make_env
    tmp = tmp_path_factory.mktemp("runs")
    cfg = load_config("config/reach.yaml", [
        "agent.num_critics=2", "agent.hidden_dims=[32, 32]", "agent.batch_size=32",
        "agent.utd_ratio=1", "demos.scripted_episodes=2", "train.warmup_steps=10",
        "train.eval_every=100000", "train.eval_episodes=1", "train.video=false",
        "train.checkpoint_every=50", "train.total_env_steps=50", "train.torch_threads=1",
        f"runs_dir={tmp}", "name=ros_policy"])
    Trainer(cfg, progress=False).run()
    run_dir = tmp / "ros_policy"
    agent, cfg = load_policy(run_dir)
    env = make_env(cfg, teleop=False)
    yield run_dir, agent, env.unwrapped
    env.close()


def expected_step(agent, renv, pose, goal, opening):
    """(action, target pos, target quat) the node must produce for a constant pose."""
    pos, quat = np.asarray(pose[:3]), np.asarray(pose[3:])
    obs = {"state": np.concatenate([pos, canonical_quat(quat), np.zeros(6), [opening]])
           .astype(np.float32),
           "env_state": np.concatenate([goal, np.asarray(goal) - pos]).astype(np.float32)}
    a = agent.act(obs, deterministic=True)
    tpos, tquat = renv.target_from_action(np.clip(a.astype(float), -1, 1), np.asarray(pose, float))
    return a, tpos, tquat


def statuses(peer, topic, since=None):
    return [(t, json.loads(m.data)) for t, m in peer.received(topic, since)]


def wait_status(peer, topic, pred, timeout=10.0, since=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t, s in statuses(peer, topic, since):
            if pred(s):
                return t, s
        time.sleep(0.02)
    last = statuses(peer, topic, since)
    raise AssertionError(f"no matching status on {topic} within {timeout} s; last: "
                         f"{last[-1][1] if last else None}")


def trigger(ros2_run, service, node):
    r = ros2_run(["trigger", service, "--node", node], timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_policy_node_targets_services_and_stale_inputs(reach_policy, ros2_python, ros_env,
                                                        ros2_run, peer, fake_robot, spawn,
                                                        tmp_path):
    run_dir, agent, renv = reach_policy
    ns, node = "/arm", "/arm/robot_rl_policy"
    robot = fake_robot(ns=ns, frame="fr3_link0", finger="fr3_finger_joint1", hz=50)
    P = np.array([0.45, 0.02, 0.22, 1.0, 0.0, 0.0, 0.0])
    G = np.array([0.52, -0.08, 0.15])
    robot.set(pose=P, goal=G)
    robot.start()
    target_topic, status_topic = f"{ns}/cmd/target_pose", f"{node}/status"
    action_topic = f"{node}/action"
    peer.subscribe(target_topic, "geometry_msgs/msg/PoseStamped")
    peer.subscribe(status_topic, "std_msgs/msg/String")
    peer.subscribe(action_topic, "std_msgs/msg/Float32MultiArray")
    # a ROS params file (wildcard node) for topic names, frames and timeouts
    cfg = tmp_path / "ros2.yaml"
    cfg.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "target_pose_topic": "cmd/target_pose", "base_frame": "fr3_link0",
        "gripper_joint": "fr3_finger_joint1", "stale_timeout": 0.4}}}))
    proc = spawn([ros2_python, "-m", "robot_rl.cli", "ros2", "run", "--policy",
                  str(run_dir), "--config", str(cfg), "--ros-args", "-p", f"rate_hz:={RATE}",
                  "-r", f"__ns:={ns}"], ros_env, "node")

    # 1. starts stopped: reports inputs, sends nothing
    _, s = wait_status(peer, status_topic, lambda s: s["state"] == "stopped" and not s["problems"],
                       timeout=60)
    time.sleep(0.5)
    assert peer.received(target_topic) == [], "a stopped node must not send targets"

    # 2. start (a real rclpy service client) -> targets from the policy at RATE
    res = trigger(ros2_run, "start", node)
    assert res["success"] and res["message"] == "started", res
    msgs = peer.wait_for(target_topic, count=int(2.5 * RATE), timeout=15)
    a, tpos, tquat = expected_step(agent, renv, P, G, opening=1.0)  # finger 0.04 -> 0.08 m open
    for _, m in msgs:
        assert m.header.frame_id == "fr3_link0"
        got = [m.pose.position.x, m.pose.position.y, m.pose.position.z]
        np.testing.assert_allclose(got, tpos, atol=2e-5)
        q = np.array([m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z,
                      m.pose.orientation.w])
        assert abs(abs(q @ tquat) - 1.0) < 1e-6
    # PandaReach moves xyz by action * 3 cm (unless the safety box's 5 cm step limit bites)
    step = np.clip(a, -1, 1) * 0.03
    if np.linalg.norm(step) < 0.05:
        np.testing.assert_allclose(tpos - P[:3], step, atol=1e-6)
    acts = peer.received(action_topic)
    np.testing.assert_allclose(np.array(acts[-1][1].data), a, atol=2e-5)
    stamps = [m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for _, m in msgs]
    assert abs(stamps[-1] - time.time()) < 5.0, "targets are stamped with the current time"
    arrivals = np.array([t for t, _ in msgs[5:]])
    period = np.median(np.diff(arrivals))
    assert abs(period - 1 / RATE) < 0.2 / RATE, f"median period {period:.4f} s"
    rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert abs(rate - RATE) < 0.2 * RATE, f"target rate {rate:.1f} Hz"

    # 3. the pose driver dies: within stale_timeout (+ a tick) the node stops sending
    robot.set(pose=None)
    t0 = time.monotonic()
    time.sleep(1.6)
    late = [t for t, _ in peer.received(target_topic, since=t0 + 0.8)]
    assert late == [], f"{len(late)} targets sent on a stale pose"
    _, s = wait_status(peer, status_topic, lambda s: s["state"] == "stale", since=t0 + 0.8)
    (key, why), = s["problems"].items()
    assert key.startswith("current_pose (/arm/current_pose)") and why.startswith("stale"), s

    # 4. a pose in the wrong frame is invalid input, not a reason to act
    robot.set(pose=P, frame="world")
    t1 = time.monotonic()
    _, s = wait_status(peer, status_topic,
                       lambda s: any("frame_id 'world'" in v for v in s["problems"].values()),
                       since=t1)
    assert peer.received(target_topic, since=t1) == []

    # 5. the driver is back with a new pose: targets resume, from that pose
    P2 = np.array([0.40, -0.05, 0.18, 1.0, 0.0, 0.0, 0.0])
    robot.set(pose=P2, frame="fr3_link0")
    t2 = time.monotonic()
    msgs = peer.wait_for(target_topic, count=5, timeout=10, since=t2 + 0.6)
    _, tpos2, _ = expected_step(agent, renv, P2, G, opening=1.0)
    m = msgs[-1][1]
    np.testing.assert_allclose([m.pose.position.x, m.pose.position.y, m.pose.position.z], tpos2,
                               atol=2e-5)

    # 6. stop: holds the measured pose, then silence
    res = trigger(ros2_run, "stop", node)
    assert res["success"] and "holding the measured pose" in res["message"], res
    t3 = time.monotonic()
    _, s = wait_status(peer, status_topic, lambda s: s["state"] == "stopped", since=t3)
    time.sleep(0.3)
    last = peer.received(target_topic)[-1][1]
    np.testing.assert_allclose([last.pose.position.x, last.pose.position.y, last.pose.position.z],
                               P2[:3], atol=1e-9)
    t4 = time.monotonic()
    time.sleep(0.5)
    assert peer.received(target_topic, since=t4) == []

    # 7. reset: new episode, still stopped
    res = trigger(ros2_run, "reset", node)
    assert res["success"] and "episode 1" in res["message"], res
    _, s = wait_status(peer, status_topic, lambda s: s["episode"] == 1 and s["steps"] == 0)
    assert s["state"] == "stopped"
    assert proc.p.poll() is None, proc.text()[-3000:]


def test_policy_node_autostart_max_steps_fixed_goal_via_cli(reach_policy, ros_env, peer,
                                                            fake_robot, spawn):
    """`robot-rl ros2 run` from the main venv (no rclpy there) re-executes itself in the ROS 2
    venv; parameters from --ros-args: autostart, max_steps, a fixed goal, no gripper."""
    run_dir, agent, renv = reach_policy
    robot = fake_robot(hz=50)
    P = np.array([0.5, 0.1, 0.25, 1.0, 0.0, 0.0, 0.0])
    G = np.array([0.4, 0.0, 0.1])
    robot.set(pose=P)
    robot.start()
    peer.subscribe("target_pose", "geometry_msgs/msg/PoseStamped")
    peer.subscribe("robot_rl_policy/status", "std_msgs/msg/String")
    proc = spawn([sys.executable, "-m", "robot_rl.cli", "ros2", "run", "--policy", str(run_dir),
                  "--autostart", "--ros-args", "-p", "max_steps:=5", "-p", f"goal:={G.tolist()}",
                  "-p", "gripper_enabled:=false"], ros_env, "node_cli")
    msgs = peer.wait_for("target_pose", count=5, timeout=60)
    _, s = wait_status(peer, "robot_rl_policy/status",
                       lambda s: s["state"] == "stopped" and s["steps"] == 5)
    time.sleep(0.5)
    msgs = peer.received("target_pose")
    assert len(msgs) == 6, f"max_steps=5: 5 targets and a hold, but {len(msgs)} targets"
    _, tpos, tquat = expected_step(agent, renv, P, G, opening=0.0)  # gripper disabled: 0 in state
    # the hold: the measured pose, at most a safety step from the last target
    hold, _ = renv.safety.apply(P[:3], P[3:], ref_pos=tpos, ref_quat=tquat)
    m = msgs.pop()[1]
    np.testing.assert_allclose([m.pose.position.x, m.pose.position.y, m.pose.position.z], hold,
                               atol=2e-5)
    for _, m in msgs:
        assert m.header.frame_id == "base"
        np.testing.assert_allclose([m.pose.position.x, m.pose.position.y, m.pose.position.z],
                                   tpos, atol=2e-5)
    period = np.median(np.diff([t for t, _ in msgs]))
    assert abs(period - 0.1) < 0.04, f"default rate is the policy's 10 Hz; period {period:.3f}"
    assert proc.p.poll() is None, proc.text()[-3000:]


def test_policy_node_vision_policy_cameras_and_gripper(ros2_python, ros_env, peer, fake_robot,
                                                       spawn, tmp_path):
    """A pixels + state policy with a gripper action (PandaPickCubeVision, wrist camera 32x32):
    the node reads the camera from a remapped topic, resizes it, and sends the gripper."""
    from robot_rl.hardware.ros2.messages import resize_rgb
    from robot_rl.train import Trainer, load_config, load_policy, make_env
    cfg = load_config("config/reach.yaml", [
        "env.id=robot_rl/PandaPickCubeVision-v0", "env.kwargs={image_size: 32, cameras: [wrist]}",
        "agent.num_critics=2", "agent.hidden_dims=[32, 32]", "agent.conv_filters=[8, 8]",
        "agent.conv_strides=[2, 2]", "agent.image_feature_dim=16", "agent.batch_size=8",
        "agent.utd_ratio=1", "demos.scripted_episodes=0", "train.warmup_steps=5",
        "train.eval_every=100000", "train.eval_episodes=1", "train.video=false",
        "train.checkpoint_every=10", "train.total_env_steps=10", "train.torch_threads=1",
        f"runs_dir={tmp_path}", "name=vis_policy"])
    Trainer(cfg, progress=False).run()
    run_dir = tmp_path / "vis_policy"
    agent, cfg = load_policy(run_dir)
    env = make_env(cfg, teleop=False)
    renv = env.unwrapped
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    robot = fake_robot(hz=50)
    P = np.array([0.45, 0.05, 0.15, 1.0, 0.0, 0.0, 0.0])
    robot.set(pose=P, finger_pos=0.03, images={"/cam/wrist/color": (img, "rgb8")})
    robot.start()
    peer.subscribe("target_pose", "geometry_msgs/msg/PoseStamped")
    peer.subscribe("gripper_position_controller/commands", "std_msgs/msg/Float64MultiArray")
    peer.subscribe("robot_rl_policy/action", "std_msgs/msg/Float32MultiArray")
    spawn([ros2_python, "-m", "robot_rl.cli", "ros2", "run", "--policy", str(run_dir),
           "--autostart", "--ros-args", "-p", "max_steps:=3",
           "-p", "camera_topics:=['wrist=cam/wrist/color']"], ros_env, "node_vision")
    msgs = peer.wait_for("target_pose", count=3, timeout=60)
    grips = peer.wait_for("gripper_position_controller/commands", count=3, timeout=5)
    acts = peer.wait_for("robot_rl_policy/action", count=3, timeout=5)
    obs = {"state": np.concatenate([P[:3], P[3:], np.zeros(6), [0.06 / 0.08]]).astype(np.float32),
           "wrist": resize_rgb(img, (32, 32, 3))}
    a = agent.act(obs, deterministic=True)
    tpos, _ = renv.target_from_action(np.clip(a.astype(float), -1, 1), P)
    env.close()
    np.testing.assert_allclose(acts[-1][1].data, a, atol=1e-4)
    m = msgs[2][1]  # the third policy target (a hold at the measured pose follows max_steps)
    np.testing.assert_allclose([m.pose.position.x, m.pose.position.y, m.pose.position.z], tpos,
                               atol=1e-4)
    # gripper action g in [-1, 1] (+1 closed) -> finger position (1 - g) / 2 * 0.08 / 2
    np.testing.assert_allclose(grips[-1][1].data[0], (1 - np.clip(a[-1], -1, 1)) / 2 * 0.04,
                               atol=1e-5)


def test_a_forged_pose_or_a_far_home_moves_the_target_a_safety_step_per_tick(
        reach_policy, ros2_python, ros_env, ros2_run, peer, fake_robot, spawn):
    """The node uses the safety layer of every arm: each target is within the step limit of
    the one before. A second publisher claiming the arm is 30 cm away used to move the target
    there in one tick (each tick was limited from the measured pose), and `~/reset` used to
    send `home_pose` in one jump. A home_pose with a zero quaternion is refused at start-up
    (it used to raise out of the service callback)."""
    run_dir, agent, renv = reach_policy
    step = renv.safety.max_step_pos
    robot = fake_robot(hz=50)
    P = np.array([0.45, 0.0, 0.22, 1.0, 0.0, 0.0, 0.0])
    robot.set(pose=P)
    robot.start()
    peer.subscribe("target_pose", "geometry_msgs/msg/PoseStamped")
    peer.subscribe("robot_rl_policy/status", "std_msgs/msg/String")
    home = [0.30, -0.20, 0.35, 1.0, 0.0, 0.0, 0.0]
    args = ["--policy", str(run_dir), "--ros-args", "-p", "goal:=[0.5, 0.0, 0.2]",
            "-p", "gripper_enabled:=false", "-p", "rate_hz:=20.0"]
    bad = ros2_run(["run", *args, "-p", "home_pose:=[0.4, 0.0, 0.2, 0.0, 0.0, 0.0, 0.0]"])
    assert bad.returncode != 0 and "not unit length" in bad.stdout + bad.stderr, bad.stderr[-2000:]

    proc = spawn([ros2_python, "-m", "robot_rl.cli", "ros2", "run", "--autostart",
                  "--localhost-only", *args, "-p", f"home_pose:={home}"], ros_env, "node_forged")
    peer.wait_for("target_pose", count=10, timeout=60)  # the loopback peer still talks to it
    assert "DDS: localhost only" in proc.text() and "cyclonedds_localhost.xml" in proc.text()
    forged = np.array([0.62, 0.22, 0.08, 1.0, 0.0, 0.0, 0.0])   # 0.31 m from P
    robot.set(pose=forged)
    time.sleep(1.0)
    res = trigger(ros2_run, "reset", "/robot_rl_policy")
    assert res["success"] and "moving home" in res["message"], res
    wait_status(peer, "robot_rl_policy/status", lambda s: s["state"] == "stopped", timeout=20)
    pos = np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z]
                    for _, m in peer.received("target_pose")])
    jumps = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    assert jumps.max() <= step + 1e-6, f"a {jumps.max():.3f} m jump (limit {step} m)"
    assert np.linalg.norm(pos - forged[:3], axis=1).min() < 0.1   # it did follow, in steps
    np.testing.assert_allclose(pos[-1], home[:3], atol=1e-6)      # and went home, in steps
    assert (jumps > step * 0.9).sum() >= 4
