"""The real SO-101 path through LeRobot, without an arm: our adapter (hardware/so101.py) in the
LeRobot venv drives LeRobot's SO101Follower/SO101Leader, whose Feetech bus code writes real
protocol bytes to a pseudo-terminal served by tests/hardware/feetech_peer.py (STS3215 servos).
The calibration is LeRobot's own: a calibration file for the robot id and the matching
homing offsets and ranges in the servos' memory.

What is checked on the servo side (the peer's shaft positions, converted back with LeRobot's
calibration maths and our joint mapping): the Cartesian layer brings the TCP to the goal; no
joint command steps more than max_velocity * dt; the jaw closes; an uncalibrated arm is
refused with the command that calibrates it; the leader arm moves the follower.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from robot_rl.hardware.so101 import JOINT_NAMES, LEROBOT_MOTORS, SO101_CHAIN, JointMapping

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feetech_peer import FeetechBusPeer  # noqa: E402

CLIENT = str(Path(__file__).resolve().parent / "so101_lerobot_client.py")
MID = 2048
DOWN = np.array([1.0, 0.0, 0.0, 0.0])
MAPPING = {"signs": (1.0, -1.0, 1.0, -1.0, 1.0), "offsets": (0.0, 0.1, -0.05, 0.0, 0.0)}
HOMING = (0, 120, -80, 0, 40, 0)   # per motor; Present_Position = shaft - homing offset
GRIPPER_RANGE = (1900, 2500)       # the jaw: 0 % at 1900 (closed) .. 100 % at 2500 (open)


def calibration() -> dict:
    """LeRobot's calibration for our motors: each joint's range centred on MID (LeRobot's 0 deg)
    and wide enough for the joint's limits; the jaw's own range."""
    cal = {}
    for i, name in enumerate(LEROBOT_MOTORS):
        if name in JOINT_NAMES:
            j = SO101_CHAIN.joints[i]
            half = int(np.degrees(max(-j.lower, j.upper) + 0.1) * 4095 / 360)
            lo, hi = MID - half, MID + half
        else:
            lo, hi = GRIPPER_RANGE
        cal[name] = {"id": i + 1, "drive_mode": 0, "homing_offset": HOMING[i], "range_min": lo,
                     "range_max": hi}
    return cal


def shaft_of(q: np.ndarray, mapping=JointMapping(**MAPPING)) -> list[float]:
    """Servo shaft ticks that LeRobot reads as our joint angles `q`."""
    cal = calibration()
    deg = mapping.to_lerobot(q)
    return [d * 4095 / 360 + (cal[n]["range_min"] + cal[n]["range_max"]) / 2 + cal[n]["homing_offset"]
            for d, n in zip(deg, JOINT_NAMES)]


def q_of(peer: FeetechBusPeer, mapping=JointMapping(**MAPPING)) -> np.ndarray:
    """Our joint angles from the peer's shafts (the inverse of `shaft_of`)."""
    cal = calibration()
    deg = [(peer.shaft(cal[n]["id"]) - cal[n]["homing_offset"]
            - (cal[n]["range_min"] + cal[n]["range_max"]) / 2) * 360 / 4095 for n in JOINT_NAMES]
    return mapping.to_ours(deg)


@pytest.fixture
def arm_at(tmp_path):
    """arm_at(q, name) -> a calibrated SO-101 servo bus on a pty with its shafts at joints `q`."""
    (tmp_path / "cal").mkdir()
    peers = []

    def make(q, robot_id="follower", jaw_pct=100.0):
        cal = calibration()
        (tmp_path / "cal" / f"{robot_id}.json").write_text(json.dumps(cal))
        lo, hi = GRIPPER_RANGE
        shafts = dict(zip(range(1, 6), shaft_of(np.asarray(q, float))))
        shafts[6] = lo + jaw_pct / 100 * (hi - lo)
        peer = FeetechBusPeer({i: int(round(s)) for i, s in shafts.items()})
        for name, c in cal.items():
            peer.seed_calibration(c["id"], c["homing_offset"], c["range_min"], c["range_max"])
            peer.move_shaft(c["id"], shafts[c["id"]])
        peers.append(peer)
        return peer
    make.calibration_dir = str(tmp_path / "cal")
    yield make
    for p in peers:
        p.close()


def test_cartesian_steps_through_lerobot_reach_the_goal_without_jumps(lerobot_python, run_json,
                                                                        arm_at):
    q0 = np.array([0.0, 0.4, 0.2, -0.6, 0.0])
    peer = arm_at(q0)
    start = SO101_CHAIN.fk(q0)[0]
    goal = start + np.array([0.04, 0.05, 0.05])  # inside the box (z >= 0.02)
    out = run_json(lerobot_python, [CLIENT, "track", json.dumps({
        "port": peer.port, "calibration_dir": arm_at.calibration_dir, "mapping": MAPPING,
        "goal": goal.tolist(), "seconds": 3.0})], timeout=120)
    # the adapter read the arm where the servos are
    np.testing.assert_allclose(out["start_tcp"][:3], start, atol=2e-3)
    # the servos' shafts, through LeRobot's calibration and our mapping, put the TCP at the goal
    tcp = SO101_CHAIN.fk(q_of(peer))[0]
    assert np.linalg.norm(tcp - goal) < 5e-3, (tcp, goal)
    assert np.linalg.norm(np.array(out["end_tcp"][:3]) - goal) < 5e-3
    # every joint command of the servo loop: within the speed limit per period, in the limits
    t = np.array([s[0] for s in out["sent"]])
    q = np.array([s[1] for s in out["sent"]])
    # the loop ran at its rate, give or take a shared 2-core machine (the limits below are per
    # command, so they hold at whatever rate it ran)
    nominal = (t[-1] - t[0]) / out["servo_dt"]
    assert len(q) > 0.5 * nominal, (len(q), nominal, np.percentile(np.diff(t), [50, 90, 99]))
    steps = np.abs(np.diff(q, axis=0))
    assert np.all(steps <= SO101_CHAIN.max_velocity * out["servo_dt"] + 1e-9), steps.max(axis=0)
    assert np.all(q >= SO101_CHAIN.lower) and np.all(q <= SO101_CHAIN.upper)
    # the jaw closed: the gripper servo's shaft went to its calibrated "closed" end
    assert out["jaw_width"] < 0.003
    assert abs(peer.shaft(6) - GRIPPER_RANGE[0]) < 10


def test_an_uncalibrated_arm_is_refused_with_the_calibration_command(lerobot_python, run_json,
                                                                      arm_at):
    peer = arm_at(np.zeros(5))  # calibration file written for "follower", the client asks "nobody"
    out = run_json(lerobot_python, [CLIENT, "uncalibrated", json.dumps({
        "port": peer.port, "calibration_dir": arm_at.calibration_dir})], timeout=60)
    assert "lerobot-calibrate --robot.type=so101_follower" in out["error"]
    assert f"--robot.port={peer.port}" in out["error"] and "--robot.id=nobody" in out["error"]
    assert not peer.torque_enabled(1)  # nothing was switched on


def test_an_unplugged_arm_is_a_lost_connection(lerobot_python, run_json, arm_at):
    """The USB cable is pulled while the servo loop runs: the loop stops and the next read is
    a ConnectionLostError (which ends the episode under ConnectionGuard), not a hang."""
    peer = arm_at(np.array([0.0, 0.4, 0.2, -0.6, 0.0]))

    def pull_the_cable():
        deadline = time.monotonic() + 60
        while peer.sync_reads < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        peer.close()
    cable = threading.Thread(target=pull_the_cable, daemon=True)
    cable.start()
    out = run_json(lerobot_python, [CLIENT, "unplug", json.dumps({
        "port": peer.port, "calibration_dir": arm_at.calibration_dir})], timeout=120)
    cable.join()
    assert out["error_type"] == "ConnectionLostError", out
    assert out["commands"] >= 5
    assert "the servo loop stopped" in out["error"] or "reading the arm's joints failed" in out["error"]
    assert not out["thread_alive"]


def goal_steps(peer: FeetechBusPeer, mapping=JointMapping(**MAPPING)) -> np.ndarray:
    """Per arm joint, the largest change (rad, our convention) between consecutive goals the
    servo received."""
    cal = calibration()
    worst = np.zeros(len(JOINT_NAMES))
    for i, name in enumerate(JOINT_NAMES):
        c = cal[name]
        goals = [g for _, id_, g in peer.goals if id_ == c["id"]]
        deg = (np.array(goals) - (c["range_min"] + c["range_max"]) / 2) * 360 / 4095
        q = mapping.to_ours(np.outer(deg, np.eye(len(JOINT_NAMES))[i]))[:, i]
        worst[i] = np.abs(np.diff(q)).max() if len(q) > 1 else 0.0
    return worst


def test_connecting_never_moves_the_arm_to_a_stale_goal(lerobot_python, run_json, arm_at):
    """An earlier session left goal registers 300 ticks (26 deg) away, then the arm was moved
    by hand with the torque off. LeRobot's own connect enables the torque with those goals and
    the arm jumps to them; ours first sets every goal to where its joint is."""
    moved = {}
    for who in ("lerobot", "ours"):
        peer = arm_at(np.array([0.0, 0.4, 0.2, -0.6, 0.0]), robot_id=f"follower_{who}")
        before = [peer.shaft(i) for i in range(1, 7)]
        for i in range(1, 6):
            peer.set_goal(i, int(peer.shaft(i)) - calibration()[LEROBOT_MOTORS[i - 1]]["homing_offset"] + 300)
        run_json(lerobot_python, [CLIENT, "connect", json.dumps({
            "port": peer.port, "calibration_dir": arm_at.calibration_dir, "lerobot": who == "lerobot",
            "robot_id": f"follower_{who}"})], timeout=60)
        moved[who] = max(abs(peer.shaft(i) - b) for i, b in zip(range(1, 7), before))
    assert moved["lerobot"] > 250, moved  # the hazard is real
    assert moved["ours"] < 3, moved


def test_env_fuzzed_through_the_safety_layer(lerobot_python, run_json, arm_at):
    """`robot_rl/SO101-v0` on the servo peer: a reset (joint move) and 40 random and saturated
    actions. Every target is in the workspace box; every goal the servos received moved a
    joint by at most max_velocity * servo period (50 Hz)."""
    peer = arm_at(np.array([0.0, 0.4, 0.2, -0.6, 0.0]))
    out = run_json(lerobot_python, [CLIENT, "env", json.dumps({
        "port": peer.port, "calibration_dir": arm_at.calibration_dir, "mapping": MAPPING,
        "steps": 40})], timeout=180)
    assert out["steps"] == 40 and out["truncated"] and out["targets_in_box"]
    assert out["state_dim"] == 14
    tick = 2 * np.pi / 4096
    assert len(peer.goals) > 200
    assert np.all(goal_steps(peer) <= SO101_CHAIN.max_velocity / 50 + 2 * tick), goal_steps(peer)
    assert not peer.torque_enabled(1)  # env.close() switched the torque off


def test_robot_check_reads_the_arm_without_moving_it(lerobot_python, run_json, arm_at, tmp_path):
    """`robot check` on config/so101_real.yaml: the TCP it reports is our kinematics at the
    servos' joints; nothing moves; a joint outside its limits (a wrong mapping) is a problem."""
    q0 = np.array([0.0, 0.4, 0.2, -0.6, 0.0])
    peer = arm_at(q0)
    before = [peer.shaft(i) for i in range(1, 7)]
    config = str(Path(__file__).resolve().parents[2] / "config" / "so101_real.yaml")
    args = {"port": peer.port, "calibration_dir": arm_at.calibration_dir, "mapping": MAPPING,
            "config": config, "out": str(tmp_path / "chk")}
    r = run_json(lerobot_python, [CLIENT, "check", json.dumps(args)], timeout=120)
    assert r["ok"] and r["arm"]["connected"], r["problems"]
    np.testing.assert_allclose(r["arm"]["q"], q0, atol=2e-3)
    np.testing.assert_allclose(r["arm"]["tcp_xyz"], SO101_CHAIN.fk(q0)[0], atol=2e-3)
    assert r["safety"]["reset_pose_in_box"] and r["safety"]["servo"]["servo_hz"] == 50
    assert r["gripper"]["width"] == pytest.approx(0.06, abs=1e-3)  # the jaw is open
    assert max(abs(peer.shaft(i) - b) for i, b in zip(range(1, 7), before)) < 3
    wrong = dict(args, mapping={"signs": MAPPING["signs"], "offsets": (0.0, 2.5, 0, 0, 0)})
    r = run_json(lerobot_python, [CLIENT, "check", json.dumps(wrong)], timeout=120)
    assert any("outside its limits" in p and "shoulder_lift" in p for p in r["problems"])


def test_leader_arm_drives_the_follower(lerobot_python, run_json, arm_at):
    """The operator moves the leader (torque off) 4 cm sideways and 3 cm up, then holds it:
    the follower's TCP follows to the leader's pose; no intervention before the leader moves;
    the leader's jaw (closed to 20 %) is the gripper command."""
    q0 = np.array([0.0, 0.4, 0.2, -0.6, 0.0])
    follower = arm_at(q0, "follower")
    leader = arm_at(q0, "leader", jaw_pct=20.0)
    from robot_rl.controllers.diff_ik import DifferentialIK
    target = SO101_CHAIN.fk(q0)[0] + [0.0, 0.04, 0.03]
    q1 = DifferentialIK(SO101_CHAIN).solve(q0, target, DOWN)

    def operator():  # once the client has polled the leader 5 times, move it over 1 s, hold it
        deadline = time.monotonic() + 60
        while leader.sync_reads < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        for k in range(1, 21):
            for i, s in enumerate(shaft_of(q0 + (q1 - q0) * k / 20)):
                leader.move_shaft(i + 1, s)
            time.sleep(0.05)
    hand = threading.Thread(target=operator, daemon=True)
    hand.start()
    out = run_json(lerobot_python, [CLIENT, "teleop", json.dumps({
        "port": follower.port, "leader_port": leader.port, "calibration_dir": arm_at.calibration_dir,
        "mapping": MAPPING, "seconds": 4.5})], timeout=120)
    hand.join()
    log = out["log"]
    assert not any(e["intervene"] for e in log[:4])  # still, before the operator moved it
    assert sum(e["intervene"] for e in log) >= 10
    np.testing.assert_allclose(out["leader_tcp"], target, atol=2e-3)
    assert np.linalg.norm(SO101_CHAIN.fk(q_of(follower))[0] - target) < 0.01
    assert out["leader_jaw"] == pytest.approx(20.0, abs=1.0)
    assert log[-1]["gripper"] == pytest.approx(1.0 - 20.0 / 50.0, abs=0.05)  # mostly closed
    assert not leader.torque_enabled(1)  # LeRobot's leader keeps torque off
