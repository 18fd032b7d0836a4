"""Differential IK on the SO-101 chain: exact kinematics, tracking, and no joint jumps anywhere
(workspace edges, out-of-reach targets, singularities, joint limits)."""
import numpy as np
import pytest

from robot_rl.controllers.diff_ik import DifferentialIK, DiffIKParams
from robot_rl.controllers.frames import quat_conj, quat_mul, quat_to_rotvec, rotvec_to_quat
from robot_rl.hardware.so101 import SO101_CHAIN as CHAIN

DOWN = np.array([1.0, 0.0, 0.0, 0.0])
DT = 0.02  # a 50 Hz servo period
STEP = CHAIN.max_velocity * DT


def test_jacobian_is_the_derivative_of_forward_kinematics():
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(CHAIN.lower, CHAIN.upper)
        p0, r0 = CHAIN.fk(q)
        numeric = np.zeros((6, CHAIN.n))
        for i in range(CHAIN.n):
            dq = np.zeros(CHAIN.n)
            dq[i] = 1e-7
            p1, r1 = CHAIN.fk(q + dq)
            numeric[:, i] = np.concatenate([p1 - p0, quat_to_rotvec(quat_mul(r1, quat_conj(r0)))]) / 1e-7
        np.testing.assert_allclose(CHAIN.jacobian(q), numeric, atol=1e-5)


def test_tracks_a_moving_target_within_a_millimetre():
    """A 4 cm circle at 0.15 m/s, gripper down: the joint targets' TCP follows within 1 mm."""
    ik = DifferentialIK(CHAIN)
    center = np.array([0.2, 0.0, 0.08])
    q = ik.solve(np.zeros(CHAIN.n), center + [0.04, 0, 0], DOWN)
    errors = []
    for k in range(300):
        t = k * DT
        w = 0.15 / 0.04
        target = center + 0.04 * np.array([np.cos(w * t), np.sin(w * t), 0.0])
        q_next = ik.step(q, target, DOWN, DT)
        assert np.all(np.abs(q_next - q) <= STEP + 1e-12)
        q = q_next
        errors.append(np.linalg.norm(CHAIN.fk(q)[0] - target))
    assert max(errors[5:]) < 1e-3, max(errors[5:])
    pos_err = ik.error(q, target, DOWN)
    assert np.linalg.norm(pos_err[3:]) < 0.01  # the orientation a 5-DoF arm can hold, held


@pytest.mark.parametrize("seed", range(5))
def test_fuzzed_targets_never_make_a_joint_jump(seed):
    """Targets anywhere (far out of reach, behind the base, under the table, random
    orientations), jumping every few periods, from random joint states: every step is inside
    the joint limits and no joint moves more than max_velocity * dt."""
    rng = np.random.default_rng(seed)
    ik = DifferentialIK(CHAIN)
    q = rng.uniform(CHAIN.lower, CHAIN.upper)
    for k in range(600):
        if k % 7 == 0:
            target = rng.uniform(-0.6, 0.6, 3) * rng.choice([0.3, 1.0, 3.0])
            quat = rotvec_to_quat(rng.normal(size=3) * rng.choice([0.0, 1.0, 3.0]))
        q_next = ik.step(q, target, quat, DT)
        assert np.all(np.isfinite(q_next))
        assert np.all(np.abs(q_next - q) <= STEP + 1e-12), np.abs(q_next - q).max()
        assert np.all(q_next >= CHAIN.lower) and np.all(q_next <= CHAIN.upper)
        q = q_next


def test_out_of_reach_target_settles_at_the_workspace_edge_without_chatter():
    """A target 0.5 m away straightens the arm toward it (an elbow singularity): the damping
    keeps the steps bounded and they die out; the TCP ends as close as the arm reaches."""
    ik = DifferentialIK(CHAIN)
    q = ik.solve(np.zeros(CHAIN.n), np.array([0.2, 0.0, 0.1]), DOWN)
    far = np.array([0.7, 0.0, 0.12])
    steps = []
    for _ in range(400):
        q_next = ik.step(q, far, DOWN, DT)
        assert np.all(np.abs(q_next - q) <= STEP + 1e-12)
        steps.append(np.abs(q_next - q).max())
        q = q_next
    assert max(steps[-50:]) < 1e-3, max(steps[-50:])  # settled, no oscillation at the edge
    assert ik.last_sigma_min < ik.params.singular_threshold  # it did reach the singular region
    reach = np.linalg.norm(CHAIN.fk(q)[0][:2])
    assert 0.26 < reach < 0.40


def test_starting_at_a_singularity_moves_smoothly():
    """Straight elbow (forearm in line with the upper arm, pointing up): the Jacobian loses
    rank; a target just beside it gives bounded, finite steps that converge to it."""
    q = np.array([0.0, 0.0, -np.pi / 2, 0.0, 0.0])
    ik = DifferentialIK(CHAIN)
    pos0, quat0 = CHAIN.fk(q)
    assert np.linalg.svd(CHAIN.jacobian(q), compute_uv=False)[-1] < 1e-9  # truly singular
    target = pos0 + [0.0, 0.0, -0.05]  # straight down toward the base
    for _ in range(300):
        q_next = ik.step(q, target, quat0, DT)
        assert np.all(np.abs(q_next - q) <= STEP + 1e-12)
        q = q_next
    assert np.linalg.norm(CHAIN.fk(q)[0] - target) < 2e-3


def test_a_joint_at_its_limit_is_held_there_and_the_others_carry_on():
    """The pan joint is limited to +-1.92 rad: a target at +150 deg around the base pins pan at
    its limit and the rest of the arm still reduces the error."""
    ik = DifferentialIK(CHAIN, DiffIKParams(rot_weight=0.0))
    q = ik.solve(np.zeros(CHAIN.n), np.array([0.2, 0.0, 0.1]), DOWN)
    target = 0.2 * np.array([np.cos(2.6), np.sin(2.6), 0.0]) + [0, 0, 0.1]
    start = np.linalg.norm(CHAIN.fk(q)[0] - target)
    for _ in range(500):
        q = ik.step(q, target, DOWN, DT)
    assert q[0] == pytest.approx(CHAIN.upper[0])
    assert np.all(q >= CHAIN.lower) and np.all(q <= CHAIN.upper)
    assert np.linalg.norm(CHAIN.fk(q)[0] - target) < 0.6 * start


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="damping"):
        DiffIKParams(damping=float("nan"))
    with pytest.raises(ValueError, match="5 joints"):
        CHAIN.fk(np.zeros(4))
