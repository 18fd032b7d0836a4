"""PandaTightInsert's physics: 0.4 mm clearance is real (a peg turned 0.1 rad or 3 mm off does
not go in), a matched peg goes all the way, and pressing on the rim is bounded by the impedance
error clip, not by how far below the rim the target is."""
import numpy as np
import pytest

from robot_rl.controllers.frames import quat_mul, rpy_to_quat
from robot_rl.sim.envs import make_sim_env


def press(offset_xy=(0.0, 0.0), yaw_off=0.0, seed=3):
    """Hover over the hole, turned to its yaw (+ yaw_off) and offset, then drive the target
    straight down to 6 cm below the rim; (depth reached (m), contact force z (N), success)."""
    env = make_sim_env("PandaTightInsert")
    env.reset(seed=seed)
    t, w = env.task, env.world
    hole = t.hole_pos.copy()
    quat = quat_mul(rpy_to_quat([0, 0, t.hole_yaw + yaw_off]), t.home_quat)
    above = hole + [*offset_xy, t.hole_depth + t.chamfer + t.peg_len + 0.01]
    env.arm.move_to_joints(w.ik(above, quat, w.home_q))
    w.advance(0.3)
    start, target = w.tcp_position(), hole + [*offset_xy, t.peg_len - 0.01]
    for k in range(40):
        env.arm.set_target_pose(start + (target - start) * min(1.0, (k + 1) / 20), quat)
        w.advance(0.1)
    depth = hole[2] + t.hole_depth - t.peg_tip[2]
    return depth, w.tcp_wrench()[2], t.outcome(env).success


def test_a_matched_peg_goes_all_the_way_in():
    depth, _, success = press()
    assert success and depth == pytest.approx(0.03, abs=0.001)  # to the bottom
    assert press(yaw_off=0.03)[2]  # inside the ~0.04 rad the clearance allows


@pytest.mark.parametrize("offset,yaw", [((0.003, 0.0), 0.0), ((0.0, 0.0), 0.1)])
def test_the_clearance_is_real_and_the_press_is_bounded(offset, yaw):
    depth, force, success = press(offset, yaw)
    assert not success and depth < 0.001  # stopped at the rim (the chamfer cannot fix this)
    # the compliant preset's z clip times its stiffness: ~20 N, though the target is 6 cm down
    assert 10.0 < force < 25.0, force
