"""The Cartesian impedance law of controllers/impedance.py in JAX, for one environment (batch
with `jax.vmap`):

    tau = J^T (K * clip(e) - D * (J dq)) + N (kn (q_null - q) - dn dq) + bias,

then limited to `max_torque_rate` per physics tick around the last torque and clipped to the
torque limits. A pure function: the rate limiter's memory (`tau_prev`) is passed in and the
caller keeps the returned torque, as `CartesianImpedance.tau_prev` does in numpy.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from robot_rl.controllers.impedance import ImpedanceParams
from robot_rl.sim.mjx.frames import orientation_error


class Gains(NamedTuple):
    """`ImpedanceParams` as arrays (a pytree, so it can be traced or closed over)."""
    K: jnp.ndarray           # (6,)
    D: jnp.ndarray           # (6,)
    clip_low: jnp.ndarray    # (6,)
    clip_high: jnp.ndarray   # (6,)
    kn: jnp.ndarray          # ()
    dn: jnp.ndarray          # ()
    max_rate: jnp.ndarray    # () Nm per tick
    torque_limits: jnp.ndarray  # (7,)

    @classmethod
    def from_params(cls, p: ImpedanceParams, torque_limits) -> "Gains":
        f = lambda x: jnp.asarray(np.asarray(x, float))  # noqa: E731  (float32 unless x64)
        return cls(f(p.K), f(p.D), f(p.clip_low), f(p.clip_high), f(p.kn), f(p.dn),
                   f(p.max_torque_rate), f(torque_limits))


def nullspace_projector(J, Minv=None):
    """As controllers.impedance.nullspace_projector: dynamically consistent with Minv."""
    n = J.shape[1]
    if Minv is None:
        return jnp.eye(n) - J.T @ jnp.linalg.solve(J @ J.T + 1e-6 * jnp.eye(6), J)
    lam = jnp.linalg.inv(J @ Minv @ J.T + 1e-6 * jnp.eye(6))  # task-space inertia
    return jnp.eye(n) - J.T @ lam @ J @ Minv


def torque(g: Gains, q, dq, J, pos, quat, target_pos, target_quat, bias, q_null, tau_prev,
           Minv=None):
    """One evaluation of the law (`CartesianImpedance.torque` with `tau_prev` set)."""
    e = jnp.concatenate([target_pos - pos, orientation_error(target_quat, quat)])
    e = jnp.clip(e, g.clip_low, g.clip_high)
    wrench = g.K * e - g.D * (J @ dq)
    tau = J.T @ wrench
    tau = tau + nullspace_projector(J, Minv) @ (g.kn * (q_null - q) - g.dn * dq)
    tau = tau + bias
    tau = tau_prev + jnp.clip(tau - tau_prev, -g.max_rate, g.max_rate)
    return jnp.clip(tau, -g.torque_limits, g.torque_limits)
