"""Differential inverse kinematics: the Cartesian layer of arms that take joint-position targets.

A torque-controlled arm (the Franka) turns a TCP target into torques with the impedance law
(controllers/impedance.py), so contact makes it yield. A position-controlled arm (SO-100/101
hobby servos, xArm or UR in position mode) only takes joint targets, and its servos hold them as
stiffly as they can. `DifferentialIK.step` turns the same TCP target into the next joint target,
once per servo period:

- damped least squares on a weighted pose error (orientation counts `rot_weight` metres per
  radian, so an arm with fewer than 6 joints, like the 5-DoF SO-101, gets the best position
  and the closest orientation it can reach instead of a failed solve);
- damping that rises only as the smallest singular value of the Jacobian falls below
  `singular_threshold` (Maciejewski & Klein): full speed away from singularities, bounded
  joint steps at a stretched elbow or a wrist singularity;
- joint limits by clamping: a joint whose step would cross its limit is stopped at it and the
  remaining joints are solved again without it;
- a posture term in the Jacobian's null space, for arms with more than 6 joints (they keep
  away from their limits; arms with 6 or fewer have no null space to use);
- the whole step scaled down uniformly (so its direction is kept) until no joint moves faster
  than its `max_velocity`.

So no target, however far, at a workspace edge or at a singularity, makes a joint jump: every
step is at most `max_velocity * dt` per joint and inside the limits. Compliance, which an
impedance controller has by design, comes here only from `max_pos_error`/`max_rot_error` (how
far a target may lead the arm, the analogue of the impedance error clip) and from how far the
joint target may lead the measured joints (`CartesianPositionArm.max_lead`), which bounds the
servo force on contact. docs/adding_an_arm.md states the difference.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_rl.controllers.frames import orientation_error
from robot_rl.controllers.kinematics import SerialChain


@dataclass(frozen=True)
class DiffIKParams:
    damping: float = 0.05              # largest damping factor, reached at a singularity
    singular_threshold: float = 0.04   # damping starts below this singular value
    rot_weight: float = 0.2            # metres of position error one radian counts as
    max_pos_error: float = 0.02        # [m] error clip per step
    max_rot_error: float = 0.3         # [rad]
    posture_gain: float = 0.05         # fraction of the posture error removed per step (null space)

    def __post_init__(self):
        for name, v in vars(self).items():
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"DiffIKParams.{name} must be a finite number >= 0, got {v!r}")


class DifferentialIK:
    def __init__(self, chain: SerialChain, params: DiffIKParams | None = None,
                 q_posture=None):
        self.chain = chain
        self.params = params or DiffIKParams()
        mid = (chain.lower + chain.upper) / 2
        self.q_posture = mid if q_posture is None else np.asarray(q_posture, float)
        self.last_sigma_min = np.inf   # smallest singular value seen at the last step

    def error(self, q, target_pos, target_quat) -> np.ndarray:
        """[position error; orientation error (rotation vector)] of the TCP at `q`, unclipped."""
        return _pose_error(*self.chain.fk(q), target_pos, target_quat)

    def step(self, q, target_pos, target_quat, dt: float | None) -> np.ndarray:
        """The joint target one period of `dt` seconds after `q` (inside the limits; no joint
        faster than its max_velocity). `dt=None` removes the speed limit (offline solves)."""
        p, c = self.params, self.chain
        q = np.clip(np.asarray(q, float), c.lower, c.upper)
        pos, quat, jac = c.pose_and_jacobian(q)
        e = _pose_error(pos, quat, target_pos, target_quat)
        e[:3] *= min(1.0, p.max_pos_error / max(np.linalg.norm(e[:3]), 1e-12))
        e[3:] *= min(1.0, p.max_rot_error / max(np.linalg.norm(e[3:]), 1e-12))
        w = np.array([1, 1, 1, p.rot_weight, p.rot_weight, p.rot_weight])
        J, r = w[:, None] * jac, w * e
        dq, free = np.zeros(c.n), np.ones(c.n, bool)
        for _ in range(c.n):  # clamp the joints that would cross a limit, re-solve the others
            dq[free] = self._solve(J[:, free], r - J[:, ~free] @ dq[~free],
                                   p.posture_gain * (self.q_posture - q)[free])
            crossing = free & ((q + dq < c.lower) | (q + dq > c.upper))
            if not crossing.any():
                break
            dq[crossing] = np.clip(q + dq, c.lower, c.upper)[crossing] - q[crossing]
            free &= ~crossing
            if not free.any():
                break
        if dt is not None:  # uniform scaling keeps the direction (and stays inside the limits)
            ratio = np.abs(dq) / (c.max_velocity * dt)
            dq /= max(1.0, float(ratio.max()))
        return q + dq

    def _solve(self, J: np.ndarray, r: np.ndarray, posture: np.ndarray) -> np.ndarray:
        m, n = J.shape
        U, S, Vt_full = np.linalg.svd(J)  # full: its last n - m rows span a redundant null space
        U, Vt = U[:, :S.size], Vt_full[:S.size]
        p = self.params
        s_min = float(S[-1]) if S.size else 0.0
        self.last_sigma_min = s_min  # with fewer joints than task rows too: a column falls in rank
        lam2 = 0.0 if s_min >= p.singular_threshold else \
            (1 - (s_min / p.singular_threshold) ** 2) * p.damping ** 2
        dq = Vt.T @ (S / (S ** 2 + lam2) * (U.T @ r))
        if n <= m:
            # no redundant joints: no null space to use. (A singular direction is not one: a
            # posture pull there would kick the arm out of the singularity, then back, forever.)
            return dq
        V_null = Vt_full[m:].T  # the joint motions that move no task coordinate
        return dq + V_null @ (V_null.T @ posture)

    def solve(self, q_seed, target_pos, target_quat, iters: int = 300,
              tol: float = 1e-6) -> np.ndarray:
        """Iterate `step` without a speed limit until the weighted error stops changing: the
        joints that put the TCP at (or, out of reach, closest to) the pose. For reset poses."""
        q = np.asarray(q_seed, float)
        for _ in range(iters):
            q_next = self.step(q, target_pos, target_quat, None)
            if np.max(np.abs(q_next - q)) < tol:
                return q_next
            q = q_next
        return q


def _pose_error(pos, quat, target_pos, target_quat) -> np.ndarray:
    return np.concatenate([np.asarray(target_pos, float) - pos,
                           orientation_error(np.asarray(target_quat, float), quat)])
