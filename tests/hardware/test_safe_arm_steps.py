"""SafeArm on the simulated Panda (a real `Arm`: MuJoCo under our impedance law): whatever
happens between two targets (joint resets that leave the TCP outside the box, watchdog-style
holds, operator stops and releases, reconnects), consecutive commanded targets never differ by
more than the step limit, and an arm outside the box is brought back in a step at a time.

Before the fix, a joint reset that left the TCP at z = 0.55 with the box at z <= 0.35 made the
first target a 0.20 m jump to the box's edge."""
import numpy as np
import pytest

from robot_rl.controllers.frames import orientation_error
from robot_rl.controllers.safety import SafetyBox
from robot_rl.hardware.safety import OperatorStopError, SafeArm
from robot_rl.sim.panda_model import HOME_Q, build_scene
from robot_rl.sim.world import SimArm, SimWorld

BOX = SafetyBox((0.3, -0.2, 0.05), (0.6, 0.2, 0.35), max_step_pos=0.03, max_step_rot=0.1)


@pytest.fixture
def world():
    w = SimWorld(xml=build_scene())
    w.set_joints(HOME_Q)
    yield w
    w.close()


def measured(arm) -> tuple[np.ndarray, np.ndarray]:
    p = arm.state().tcp_pose
    return p[:3].copy(), p[3:] / np.linalg.norm(p[3:])


def assert_within_a_step(pose, ref, what: str) -> None:
    dp = float(np.linalg.norm(pose[0] - ref[0]))
    dr = float(np.linalg.norm(orientation_error(pose[1], ref[1])))
    assert dp <= BOX.max_step_pos + 1e-9 and dr <= BOX.max_step_rot + 1e-6, (what, dp, dr)


def test_a_joint_reset_outside_the_box_is_followed_by_steps_not_a_jump(world):
    safe = SafeArm(SimArm(world), BOX, watchdog_s=None, record=True)
    high = world.ik([0.45, 0.0, 0.55], measured(safe)[1], HOME_Q)   # 0.20 m above the box
    safe.move_to_joints(high)
    start = measured(safe)
    assert start[0][2] > 0.5 and not BOX.contains(start[0])
    for _ in range(12):  # the box centre, asked for again and again
        safe.set_target_pose([0.45, 0.0, 0.2], start[1])
        world.step(20)
    z = [p[2] for p, _ in safe.sent]
    assert_within_a_step(safe.sent[0], start, "first target after the joint reset")
    assert all(a - b <= BOX.max_step_pos + 1e-9 for a, b in zip(z, z[1:]))   # coming down...
    assert z[0] > 0.5 and BOX.contains(*safe.sent[-1])                      # ...into the box
    safe.close()


def test_fuzzed_session_keeps_every_target_within_a_step_of_the_last(world):
    safe = SafeArm(SimArm(world), BOX, watchdog_s=None, record=True)
    rng = np.random.default_rng(0)
    ref = None          # what the next target must be within a step of (None: the measured pose)
    events = {"target": 0, "joint_reset": 0, "hold": 0, "stop_release": 0, "reconnect": 0}
    for _ in range(3000):
        kind = rng.choice(list(events), p=[0.7, 0.05, 0.1, 0.05, 0.1])
        events[kind] += 1
        n_sent = len(safe.sent)
        if ref is None:
            ref = measured(safe)
        if kind == "target":
            quat = rng.normal(size=4)
            safe.set_target_pose(rng.normal([0.45, 0.0, 0.2], 0.4), quat / np.linalg.norm(quat))
        elif kind == "hold":
            safe.stop()
        elif kind == "stop_release":
            safe.operator_stop("fuzz")
            safe.set_target_pose([0.45, 0.0, 0.2], [1.0, 0, 0, 0])        # ignored while stopped
            with pytest.raises(OperatorStopError):
                safe.move_to_joints(HOME_Q)
            safe.release()
        elif kind == "joint_reset":
            safe.move_to_joints(HOME_Q + rng.uniform(-0.5, 0.5, 7))
            ref = None
        else:
            safe.reconnect()
            ref = None
        for pose in safe.sent[n_sent:]:
            assert_within_a_step(pose, ref, kind)
            if BOX.contains(*ref):
                assert BOX.contains(*pose), kind
            ref = pose
        world.step(int(rng.integers(1, 30)))   # the arm moves between events
    print(events, f"{len(safe.sent)} targets sent")
    assert events["joint_reset"] > 100 and len(safe.sent) > 2000
    safe.close()
