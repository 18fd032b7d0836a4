"""The impedance law against analytic cases."""
import numpy as np
import pytest

from robot_rl.controllers.frames import (mat_to_quat, orientation_error, quat_mul, quat_to_mat,
                                         quat_to_rpy, rotvec_to_quat, rpy_to_quat)
from robot_rl.controllers.impedance import CartesianImpedance, ImpedanceParams, nullspace_projector

rng = np.random.default_rng(0)
IDENT = np.array([0, 0, 0, 1.0])


def random_jacobian():
    return rng.normal(size=(6, 7))


def random_spd(n=7):
    a = rng.normal(size=(n, n))
    return a @ a.T + n * np.eye(n)


def law(params=None, **kw):
    return CartesianImpedance(params or ImpedanceParams(), torque_limits=np.full(7, 1e9))


def test_force_bounded_by_stiffness_times_clip():
    params = ImpedanceParams(clip_low=(-0.01, -0.02, -0.005, -0.05, -0.1, -0.02),
                             clip_high=(0.03, 0.01, 0.005, 0.02, 0.05, 0.1))
    K = params.K
    for _ in range(200):
        J = random_jacobian()
        target = rng.normal(scale=2.0, size=3)            # far outside the clip
        target_quat = rotvec_to_quat(rng.normal(scale=2.0, size=3))
        ctl = law(params)
        q = rng.normal(size=7)
        tau = ctl.torque(q, np.zeros(7), J, np.zeros(3), IDENT, target, target_quat,
                         bias=np.zeros(7), q_null=q)
        wrench = np.linalg.lstsq(J.T, tau, rcond=None)[0]  # tau = J^T F at rest, no posture term
        assert np.all(wrench <= K * params.clip_high + 1e-6)
        assert np.all(wrench >= K * params.clip_low - 1e-6)
        # and the bound is attained on saturated axes
        e = np.concatenate([target, orientation_error(target_quat, IDENT)])
        sat = e > params.clip_high
        np.testing.assert_allclose(wrench[sat], (K * params.clip_high)[sat], rtol=1e-6)


def test_zero_torque_at_target_and_bias_passthrough():
    J = random_jacobian()
    q = rng.normal(size=7)
    pos, quat = rng.normal(size=3), rotvec_to_quat(rng.normal(size=3))
    tau = law().torque(q, np.zeros(7), J, pos, quat, pos, quat, np.zeros(7), q_null=q)
    np.testing.assert_allclose(tau, 0.0, atol=1e-9)
    bias = rng.normal(size=7)
    tau = law().torque(q, np.zeros(7), J, pos, quat, pos, quat, bias, q_null=q)
    np.testing.assert_allclose(tau, bias, atol=1e-9)


def test_nullspace_term_does_not_move_tcp_to_first_order():
    J, Minv = random_jacobian(), np.linalg.inv(random_spd())
    N = nullspace_projector(J, Minv)
    tau0 = rng.normal(size=7)
    # TCP acceleration from the posture torque: J Minv (N tau0) = 0, up to the projector's
    # 1e-6 singularity regularization (so compared with the unprojected acceleration)
    unprojected = np.linalg.norm(J @ Minv @ tau0)
    assert np.linalg.norm(J @ Minv @ N @ tau0) < 1e-4 * unprojected
    # static projector: no TCP force
    assert np.linalg.norm(J @ nullspace_projector(J) @ tau0) < 1e-4 * np.linalg.norm(J @ tau0)
    # through the full law: pose at target, posture away from q_null
    pos, quat, q = np.zeros(3), IDENT, rng.normal(size=7)
    tau = law().torque(q, np.zeros(7), J, pos, quat, pos, quat, np.zeros(7),
                       q_null=q + 0.3, Minv=Minv)
    assert np.linalg.norm(tau) > 0.1
    assert np.linalg.norm(J @ Minv @ tau) < 1e-4 * np.linalg.norm(J @ Minv @ (0.3 * law().params.kn
                                                                          * np.ones(7)))


def test_torque_rate_limit_holds():
    params = ImpedanceParams(max_torque_rate=0.5)
    ctl = CartesianImpedance(params, torque_limits=np.full(7, 1e9))
    ctl.reset(np.zeros(7))
    J, q = random_jacobian(), np.zeros(7)
    prev = np.zeros(7)
    for _ in range(20):
        tau = ctl.torque(q, np.zeros(7), J, np.zeros(3), IDENT, np.ones(3), IDENT,
                         np.zeros(7), q_null=q)
        assert np.all(np.abs(tau - prev) <= 0.5 + 1e-12)
        prev = tau
    assert np.abs(prev).max() > 0.5 * 10  # it does get there, just not in one tick


def test_params_defaults_and_validation():
    p = ImpedanceParams()
    np.testing.assert_allclose(p.D, 2 * np.sqrt(p.K))  # critical damping by default
    assert ImpedanceParams.preset("precise").K[0] > p.K[0]
    with pytest.raises(ValueError, match="clip_low <= 0 <= clip_high"):
        ImpedanceParams(clip_low=(0.01,) * 6)
    with pytest.raises(ValueError, match="unknown impedance preset 'soft'"):
        ImpedanceParams.preset("soft")


def test_frame_round_trips():
    for _ in range(100):
        q = rotvec_to_quat(rng.normal(size=3))
        np.testing.assert_allclose(quat_to_mat(mat_to_quat(quat_to_mat(q))), quat_to_mat(q),
                                   atol=1e-9)
        rpy = quat_to_rpy(q)
        np.testing.assert_allclose(quat_to_mat(rpy_to_quat(rpy)), quat_to_mat(q), atol=1e-9)
        v = rng.normal(scale=0.5, size=3)
        np.testing.assert_allclose(orientation_error(quat_mul(rotvec_to_quat(v), q), q), v,
                                   atol=1e-9)


@pytest.mark.parametrize("field,value", [
    ("stiffness", (np.nan,) * 6), ("stiffness", (2000.0,) * 5 + (np.inf,)), ("damping", (-1.0,) * 6),
    ("clip_high", (np.nan,) * 6), ("max_torque_rate", np.inf), ("max_torque_rate", np.nan),
    ("nullspace_stiffness", np.nan), ("nullspace_damping", -2.0), ("q_nullspace", (0.0,) * 6 + (np.nan,)),
])
def test_params_refuse_non_finite_and_negative_gains(field, value):
    """NaN passes every `<` check: a NaN stiffness or an infinite torque-rate limit used to be accepted."""
    with pytest.raises(ValueError, match=field.split("_")[0]):
        ImpedanceParams(**{field: value})
