"""The LeRobot side of tests/hardware/test_so101_lerobot.py: runs in .venv-lerobot (Python 3.12,
lerobot 0.6.1 with its Feetech bus, robot-rl beside it) against the Feetech servo peer that the
test serves on a pseudo-terminal. Prints one JSON line of measurements; the test asserts.

  python so101_lerobot_client.py SCENARIO '{"port": ..., "calibration_dir": ..., ...}'

track:        the real-arm stack (LeRobotSO101 -> CartesianPositionArm in its servo thread ->
              SafeArm) steps the TCP toward a goal at 10 Hz, as RobotEnv does; every joint
              command is logged with its time.
uncalibrated: connect without a matching calibration file; the error is reported.
unplug:       the servo loop runs until the bus goes away under it (the test closes the peer);
              reports how `state()` failed.
connect:      connect (ours, or `"lerobot": true` LeRobot's own SOFollower.connect), wait 0.5 s,
              disconnect: the test checks whether the shafts moved.
env:          `gym.make("robot_rl/SO101-v0", ...)`: reset, then random and saturated actions
              (fuzz) through RobotEnv and the safety layer; the test checks every goal the
              servos received.
check:        `robot-rl robot check config/so101_real.yaml` (check_robot) with the peer's port.
teleop:       the leader arm (LeRobotLeader) drives the follower for `seconds` while the test
              moves the leader's shafts.
"""
import json
import sys
import time

import numpy as np

from robot_rl.controllers.safety import SafetyBox
from robot_rl.hardware.position_arm import CartesianPositionArm
from robot_rl.hardware.safety import SafeArm
from robot_rl.hardware.so101 import SO101_CHAIN, LeRobotLeader, LeRobotSO101

BOX = SafetyBox((0.10, -0.15, 0.02), (0.28, 0.15, 0.2), max_step_pos=0.03)


def follower(a: dict) -> tuple[LeRobotSO101, CartesianPositionArm, list]:
    so101 = LeRobotSO101(a["port"], robot_id="follower", calibration_dir=a["calibration_dir"],
                         mapping=a.get("mapping")).connect()
    sent = []  # (t, q) of every joint command the servo loop sends
    command = so101.servos.command

    def logged(q):
        sent.append((time.monotonic(), np.asarray(q, float).tolist()))
        command(q)
    so101.servos.command = logged
    arm = CartesianPositionArm(so101.servos, SO101_CHAIN, servo_hz=a.get("servo_hz", 50)).start()
    return so101, arm, sent


def track(a: dict) -> dict:
    so101, arm, sent = follower(a)
    safe = SafeArm(arm, BOX, watchdog_s=0.5)
    start = arm.state().tcp_pose
    goal = np.asarray(a["goal"], float)
    t0 = time.monotonic()
    while time.monotonic() - t0 < a["seconds"]:  # a policy at 10 Hz: 2 cm steps toward the goal
        pose = arm.state().tcp_pose
        step = np.clip(goal - pose[:3], -0.02, 0.02)
        safe.set_target_pose(pose[:3] + step, np.array([1.0, 0, 0, 0]))
        time.sleep(0.1)
    end = arm.state()
    so101.gripper.command(0.0)  # close the jaw
    time.sleep(0.5)
    jaw = so101.gripper.state()
    arm.close()
    safe.close()
    so101.close()
    return {"start_tcp": start.tolist(), "end_tcp": end.tcp_pose.tolist(), "end_q": end.q.tolist(),
            "sent": sent, "jaw_width": jaw.width, "servo_dt": arm.dt}


def uncalibrated(a: dict) -> dict:
    try:
        LeRobotSO101(a["port"], robot_id="nobody", calibration_dir=a["calibration_dir"]).connect()
    except RuntimeError as exc:
        return {"error": str(exc)}
    return {"error": None}


def unplug(a: dict) -> dict:
    so101, arm, sent = follower(a)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20:
        try:
            arm.state()
        except Exception as exc:  # noqa: BLE001 (reported)
            time.sleep(0.2)  # ten servo periods: the loop has met the dead bus too
            return {"error_type": type(exc).__name__, "error": str(exc), "commands": len(sent),
                    "thread_alive": arm._thread is not None and arm._thread.is_alive()}
        time.sleep(0.05)
    return {"error_type": None}


def connect(a: dict) -> dict:
    if a.get("lerobot"):
        from lerobot.robots.so_follower import SO101Follower, SO101FollowerConfig
        from pathlib import Path
        robot = SO101Follower(SO101FollowerConfig(port=a["port"], id=a["robot_id"],
                                                  calibration_dir=Path(a["calibration_dir"])))
        robot.connect(calibrate=False)
        time.sleep(0.5)
        robot.bus.disconnect(disable_torque=False)
    else:
        so101 = LeRobotSO101(a["port"], robot_id=a["robot_id"],
                             calibration_dir=a["calibration_dir"]).connect()
        time.sleep(0.5)
        so101.robot.bus.disconnect(disable_torque=False)
    return {}


def env_fuzz(a: dict) -> dict:
    import gymnasium as gym

    import robot_rl  # noqa: F401  (registers robot_rl/SO101-v0)
    env = gym.make("robot_rl/SO101-v0", port=a["port"], robot_id="follower",
                   calibration_dir=a["calibration_dir"], mapping=a.get("mapping"),
                   task={"max_episode_steps": a["steps"]})
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=1)
    targets, steps = [], 0
    safe = env.unwrapped.arm
    done = False
    while not done:
        a_ = rng.choice([-1.0, 1.0], 4) * 5 if steps % 2 else rng.uniform(-1, 1, 4)
        obs, r, term, trunc, info = env.step(a_)
        targets.append(safe._last[0].tolist())
        steps += 1
        done = term or trunc
    box = env.unwrapped.task.safety
    out = {"steps": steps, "targets_in_box": bool(all(box.contains(np.array(t)) for t in targets)),
           "truncated": bool(trunc), "state_dim": int(obs["state"].shape[0])}
    env.close()
    return out


def check(a: dict) -> dict:
    from robot_rl.hardware.session import check_robot
    from robot_rl.run_config import load_config
    return check_robot(a["config"], load_config, out_dir=a["out"], print_report=True,
                       overrides=[f"env.kwargs.port={a['port']}", "env.kwargs.robot_id=follower",
                                  f"env.kwargs.calibration_dir={a['calibration_dir']}",
                                  f"env.kwargs.mapping={json.dumps(a['mapping'])}"])


def teleop(a: dict) -> dict:
    so101, arm, sent = follower(a)
    safe = SafeArm(arm, BOX, watchdog_s=0.5)
    leader = LeRobotLeader(a["leader_port"], lambda: arm.state().tcp_pose, robot_id="leader",
                           calibration_dir=a["calibration_dir"],
                           mapping=a.get("mapping")).connect()
    log = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < a["seconds"]:
        cmd = leader.poll()
        pose = arm.state().tcp_pose
        if cmd.intervene:  # what InterventionWrapper executes: the operator's step
            safe.set_target_pose(pose[:3] + cmd.delta6[:3] * leader.step_pos, pose[3:])
        log.append({"t": time.monotonic() - t0, "intervene": cmd.intervene,
                    "gripper": cmd.gripper})
        time.sleep(0.1)
    q_leader, jaw = leader.leader_state()
    out = {"log": log, "leader_tcp": SO101_CHAIN.fk(q_leader)[0].tolist(),
           "follower_tcp": arm.state().tcp_pose[:3].tolist(), "leader_jaw": jaw, "sent": sent}
    leader.close()
    arm.close()
    safe.close()
    so101.close()
    return out


if __name__ == "__main__":
    scenario, args = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps({"track": track, "uncalibrated": uncalibrated, "unplug": unplug,
                      "connect": connect, "env": env_fuzz, "check": check,
                      "teleop": teleop}[scenario](args)))
