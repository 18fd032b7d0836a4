"""ROS2Arm / ROS2Gripper / ROS2Camera under real rclpy (.venv-ros2), driven through the
gymnasium id a run config uses (`robot_rl/ROS2Arm-v0` -> `RobotEnv`), against a Cyclone DDS
fake robot in this process that follows the targets like an ideal impedance controller."""
from __future__ import annotations

import json
import textwrap

import numpy as np

HOME = [0.1, -0.7, 0.05, -2.2, 0.0, 1.6, 0.8]
LOWER = [-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]   # Panda limits
UPPER = [2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]

SCRIPT = textwrap.dedent("""
    import json, math
    import numpy as np
    import gymnasium as gym
    from robot_rl.controllers.impedance import ImpedanceParams
    from robot_rl.controllers.safety import UnsafeCommandError
    out = {}
    env = gym.make("robot_rl.hardware.ros2:robot_rl/ROS2Arm-v0",
                   arm={"move_speed": 4.0, "stream_hz": 50.0, "joint_lower": %(lower)s,
                        "joint_upper": %(upper)s},
                   gripper={}, cameras={"front": "front/image_raw"}, image_size=32,
                   control_hz=5.0,
                   task={"action": {"dofs": ["x", "y", "z"], "gripper": True, "step_pos": 0.02},
                         "safety": {"xyz_low": [0.3, -0.2, 0.05], "xyz_high": [0.6, 0.2, 0.4]},
                         "home_joints": %(home)s, "goal": [0.5, 0.0, 0.2],
                         "max_episode_steps": 3})
    base = env.unwrapped
    obs, info = env.reset(seed=0)
    out["reset_state"] = obs["state"].tolist()
    out["reset_env_state"] = obs["env_state"].tolist()
    out["front"] = obs["front"].reshape(-1, 3).mean(0).tolist()
    out["front_shape"] = list(obs["front"].shape)
    out["q"] = base.arm.state().q.tolist()
    obs, r, term, trunc, info = env.step(np.array([1.0, -0.5, 0.25, 1.0], np.float32))
    out["step_state"] = obs["state"].tolist()
    out["step_env_state"] = obs["env_state"].tolist()
    out["reward"] = r
    sent = base.arm.targets_sent
    for bad in ([math.nan, 0, 0, 0], [0, 0, 0]):
        try:
            env.step(np.array(bad, np.float32))
        except ValueError as e:
            out.setdefault("rejected", []).append(str(e))
    try:
        base.arm.set_target_pose(np.array([0.4, 0.0, math.inf]), np.array([0, 0, 0, 1.0]))
    except UnsafeCommandError as e:
        out.setdefault("rejected", []).append(str(e))
    out["sent_after_rejects"] = base.arm.targets_sent - sent
    for q in ([0.1, -0.7, 0.05, -0.01, 0.0, 1.6, 0.8], [0.0] * 6):   # joint 4 past its limit
        try:
            base.arm.move_to_joints(np.array(q))
        except UnsafeCommandError as e:
            out.setdefault("joint_refusals", []).append(str(e))
    base.arm.set_impedance(ImpedanceParams())
    out["problems"] = {i.name: i.problem(0.5) for i in base.arm.inputs()}
    env.close()
    print("RESULT " + json.dumps(out))
""") % {"home": HOME, "lower": LOWER, "upper": UPPER}


def test_ros2_hal_robot_env_round_trip(ros2_python, ros_env, peer, fake_robot, spawn):
    robot = fake_robot(hz=100, follow=True)
    P0 = np.array([0.45, 0.0, 0.22, 1.0, 0.0, 0.0, 0.0])
    robot.set(pose=P0, images={"/front/image_raw": (np.full((48, 64, 3), (90, 30, 200), np.uint8),
                                                    "bgr8")})
    robot.start()
    proc = spawn([ros2_python, "-c", SCRIPT], ros_env, "hal")
    assert proc.p.wait(90) == 0, proc.text()[-4000:]
    line = next(x for x in proc.text().splitlines() if x.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])

    # reset: move_to_joints streamed target_joint (arm joints only) until the robot got there
    joints = peer.received("/target_joint")
    assert joints, "no target_joint messages"
    last = joints[-1][1]
    assert list(last.name) == [f"panda_joint{i}" for i in range(1, 8)]
    np.testing.assert_allclose(last.position, HOME, atol=1e-9)
    np.testing.assert_allclose(out["q"], HOME, atol=1e-9)
    assert len(joints) > 5, "interpolated, not one jump"
    # reset opened the gripper: finger position = max_width / 2
    grip = [m.data[0] for _, m in peer.received("/gripper_position_controller/commands")]
    assert grip[0] == 0.04
    # observation = RobotEnv's layout from ROS data; env_state = [goal, goal - tcp]
    s = np.array(out["reset_state"])
    np.testing.assert_allclose(s[:7], P0, atol=1e-6)
    np.testing.assert_allclose(s[7:13], 0.0, atol=1e-6)     # constant pose: zero twist
    assert s[13] == 1.0                                       # finger 0.04 -> 0.08 m = open
    np.testing.assert_allclose(out["reset_env_state"], [0.5, 0, 0.2, 0.05, 0, -0.02], atol=1e-6)
    # bgr8 image (wire bytes B, G, R = 200, 30, 90), resized 64x48 -> 32x32, read as RGB
    assert out["front_shape"] == [32, 32, 3]
    np.testing.assert_allclose(out["front"], [90, 30, 200], atol=1.0)

    # step: target = tcp + action * 2 cm in the base frame, home orientation, frame "base"
    targets = peer.received("/target_pose")
    m = targets[0][1]
    assert m.header.frame_id == "base"
    target = np.array([m.pose.position.x, m.pose.position.y, m.pose.position.z])
    np.testing.assert_allclose(target, P0[:3] + np.array([1.0, -0.5, 0.25]) * 0.02, atol=1e-9)
    np.testing.assert_allclose([m.pose.orientation.x, m.pose.orientation.w], [1.0, 0.0],
                               atol=1e-9)
    assert grip[-1] == 0.0                                    # gripper action +1: closed
    assert out["step_state"][13] == 0.0                       # ... and the fingers followed
    # the fake controller followed: the next observation sees the new pose
    np.testing.assert_allclose(out["step_state"][:3], target, atol=1e-6)
    np.testing.assert_allclose(out["step_env_state"][3:], np.array([0.5, 0, 0.2]) - target,
                               atol=1e-6)
    d = np.linalg.norm(target - [0.5, 0.0, 0.2])
    assert abs(out["reward"] - 0.0) < 1e-9 and d > 0.02     # sparse reward: not within 2 cm

    # NaN / wrong-shape actions and an inf target never reach the robot
    assert len(out["rejected"]) == 3 and out["sent_after_rejects"] == 0, out["rejected"]
    assert len(targets) == 1, f"{len(targets)} targets for one valid step"
    # joint targets outside the limits (or of the wrong length) never reach target_joint
    assert len(out["joint_refusals"]) == 2, out
    assert "joint 3: -0.0100 not in [-3.0718, -0.0698]" in out["joint_refusals"][0]
    assert len(peer.received("/target_joint")) == len(joints)
    # set_impedance -> crisp's target_stiffness convention
    stiff = peer.received("/target_stiffness")
    assert list(stiff[-1][1].data) == [2000.0, 2000.0, 2000.0, 150.0, 150.0, 150.0]
    assert out["problems"] == {"current_pose": None}
