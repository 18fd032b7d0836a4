"""controllers/frames.py and the safety box of controllers/safety.py in jax.numpy, for one
environment (batch with `jax.vmap`). Same conventions: quaternions xyzw, rotation vectors in
the base frame. Branches of the numpy versions become `jnp.where` selects; tests check both
agree."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from robot_rl.controllers.safety import SafetyBox


def quat_mul(a, b):
    ax, ay, az, aw = a[0], a[1], a[2], a[3]
    bx, by, bz, bw = b[0], b[1], b[2], b[3]
    return jnp.stack([aw * bx + ax * bw + ay * bz - az * by,
                      aw * by - ax * bz + ay * bw + az * bx,
                      aw * bz + ax * by - ay * bx + az * bw,
                      aw * bw - ax * bx - ay * by - az * bz])


def quat_conj(q):
    return jnp.stack([-q[0], -q[1], -q[2], q[3]])


def mat_to_quat(m):
    """Shepperd's method like the numpy version: the four candidates, the numpy branch selected."""
    m = m.reshape(3, 3)
    tr = m[0, 0] + m[1, 1] + m[2, 2]

    def root(x):  # the unselected branches may have x <= 0: keep them finite
        return 2.0 * jnp.sqrt(jnp.maximum(x, 1e-12))
    s0, s1 = root(tr + 1.0), root(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
    s2, s3 = root(1.0 + m[1, 1] - m[0, 0] - m[2, 2]), root(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
    q0 = jnp.stack([(m[2, 1] - m[1, 2]) / s0, (m[0, 2] - m[2, 0]) / s0,
                    (m[1, 0] - m[0, 1]) / s0, 0.25 * s0])
    q1 = jnp.stack([0.25 * s1, (m[0, 1] + m[1, 0]) / s1, (m[0, 2] + m[2, 0]) / s1,
                    (m[2, 1] - m[1, 2]) / s1])
    q2 = jnp.stack([(m[0, 1] + m[1, 0]) / s2, 0.25 * s2, (m[1, 2] + m[2, 1]) / s2,
                    (m[0, 2] - m[2, 0]) / s2])
    q3 = jnp.stack([(m[0, 2] + m[2, 0]) / s3, (m[1, 2] + m[2, 1]) / s3, 0.25 * s3,
                    (m[1, 0] - m[0, 1]) / s3])
    q = jnp.where(tr > 0, q0,
                  jnp.where((m[0, 0] > m[1, 1]) & (m[0, 0] > m[2, 2]), q1,
                            jnp.where(m[1, 1] > m[2, 2], q2, q3)))
    return q / jnp.linalg.norm(q)


def canonical_quat(q):
    """hardware.robot_env.canonical_quat: the sign with a positive largest component."""
    return jnp.where(q[jnp.argmax(jnp.abs(q))] >= 0, q, -q)


def quat_to_rotvec(q):
    q = jnp.where(q[3] < 0, -q, q)
    n = jnp.linalg.norm(q[:3])
    safe_n = jnp.where(n < 1e-12, 1.0, n)
    return jnp.where(n < 1e-12, 2.0 * q[:3], q[:3] * (2.0 * jnp.arctan2(n, q[3]) / safe_n))


def rotvec_to_quat(v):
    angle = jnp.linalg.norm(v)
    small = jnp.concatenate([0.5 * v, jnp.ones(1, v.dtype)]) / jnp.sqrt(1 + 0.25 * angle ** 2)
    safe = jnp.where(angle < 1e-12, 1.0, angle)
    big = jnp.concatenate([v / safe * jnp.sin(angle / 2), jnp.cos(angle / 2)[None]])
    return jnp.where(angle < 1e-12, small, big)


def orientation_error(target_quat, quat):
    return quat_to_rotvec(quat_mul(target_quat, quat_conj(quat)))


def quat_to_mat(q):
    x, y, z, w = q / jnp.linalg.norm(q)
    return jnp.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def quat_to_rpy(q):
    m = quat_to_mat(q)
    return jnp.stack([jnp.arctan2(m[2, 1], m[2, 2]), jnp.arcsin(jnp.clip(-m[2, 0], -1.0, 1.0)),
                      jnp.arctan2(m[1, 0], m[0, 0])])


def rpy_to_quat(rpy):
    r, p, y = rpy[0] / 2.0, rpy[1] / 2.0, rpy[2] / 2.0
    cr, sr, cp, sp, cy, sy = jnp.cos(r), jnp.sin(r), jnp.cos(p), jnp.sin(p), jnp.cos(y), jnp.sin(y)
    return jnp.stack([sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy,
                      cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy])


def wrap_angle(a):
    return (a + jnp.pi) % (2 * jnp.pi) - jnp.pi


def _limit_step(box: SafetyBox, target_pos, target_quat, ref_pos, ref_quat):
    """`SafetyBox.limit_step`."""
    dp = target_pos - ref_pos
    n = jnp.linalg.norm(dp)
    target_pos = jnp.where(n > box.max_step_pos,
                           ref_pos + dp * (box.max_step_pos / jnp.maximum(n, 1e-12)), target_pos)
    dr = orientation_error(target_quat, ref_quat)
    a = jnp.linalg.norm(dr)
    limited = quat_mul(rotvec_to_quat(dr * (box.max_step_rot / jnp.maximum(a, 1e-12))), ref_quat)
    return target_pos, jnp.where(a > box.max_step_rot, limited, target_quat)


def _clip(box: SafetyBox, pos, quat):
    """`SafetyBox.clip_position` and `clip_orientation`."""
    pos = jnp.clip(pos, np.asarray(box.xyz_low), np.asarray(box.xyz_high))
    center, half = box._rpy_center_halfwidth()
    if np.all(half >= np.pi):  # no orientation bounds: SafetyBox leaves the quaternion alone
        return pos, quat
    d = wrap_angle(quat_to_rpy(quat) - center)
    return pos, rpy_to_quat(center + jnp.clip(d, -half, half))


def _contains(box: SafetyBox, pos, quat, tol: float = 1e-9):
    """`SafetyBox.contains`."""
    inside = jnp.all(pos >= np.asarray(box.xyz_low) - tol) & jnp.all(pos <= np.asarray(box.xyz_high) + tol)
    center, half = box._rpy_center_halfwidth()
    return inside & jnp.all(jnp.abs(wrap_angle(quat_to_rpy(quat) - center)) <= half + 1e-6)


def safe_target(box: SafetyBox, target_pos, target_quat, ref_pos, ref_quat):
    """`SafetyBox.apply` with a reference pose: from a reference inside the box, delta-limit
    then clip; from one outside, a step towards the clipped target. (Malformed targets cannot
    arise here: actions are clipped and validated before they enter jax.)"""
    a_pos, a_quat = _clip(box, *_limit_step(box, target_pos, target_quat, ref_pos, ref_quat))
    b_pos, b_quat = _limit_step(box, *_clip(box, target_pos, target_quat), ref_pos, ref_quat)
    inside = _contains(box, ref_pos, ref_quat)
    return jnp.where(inside, a_pos, b_pos), jnp.where(inside, a_quat, b_quat)
