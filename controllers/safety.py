"""Safety box and per-step delta limit: the last word on every target before it reaches an arm."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_rl.controllers.frames import quat_to_rpy, rpy_to_quat, wrap_angle, orientation_error, \
    quat_mul, rotvec_to_quat


class UnsafeCommandError(ValueError):
    """A command that must never reach the arm (NaN, inf, wrong shape)."""


def check_finite(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.shape != shape:
        raise UnsafeCommandError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise UnsafeCommandError(f"{name} contains NaN or inf: {arr.tolist()}")
    return arr



def check_joint_limits(q: np.ndarray, lower, upper, which: str = "joint") -> np.ndarray:
    """`q` if every joint is within `lower`..`upper`, else `UnsafeCommandError` naming each
    joint that is not (numbered from 0, as in the arrays)."""
    lo, hi = np.asarray(lower, float), np.asarray(upper, float)
    if lo.shape != q.shape or hi.shape != q.shape:
        raise UnsafeCommandError(f"joint target has {q.size} values but the {which} limits have "
                                 f"{lo.size}/{hi.size}")
    bad = np.flatnonzero((q < lo) | (q > hi))
    if bad.size:
        raise UnsafeCommandError(f"joint target outside the {which} limits: " + ", ".join(
            f"joint {i}: {q[i]:.4f} not in [{lo[i]:.4f}, {hi[i]:.4f}]" for i in bad))
    return q

@dataclass(frozen=True)
class SafetyBox:
    """Workspace box in the base frame: xyz bounds [m] and roll/pitch/yaw bounds [rad].

    Angle bounds are wrap-aware: rpy_low=(3.0, ...), rpy_high=(-3.0, ...) is the 0.28 rad
    interval through +-pi, which is where a downward-pointing gripper's roll lives.
    """
    xyz_low: tuple
    xyz_high: tuple
    rpy_low: tuple = (-np.pi, -np.pi, -np.pi)
    rpy_high: tuple = (np.pi, np.pi, np.pi)
    max_step_pos: float = 0.05   # max target change per control step [m]
    max_step_rot: float = 0.3    # [rad]

    def __post_init__(self):
        # NaN compares false with everything: without these checks a NaN bound or step limit
        # silently disables the limit (a NaN max_step_pos let a 0.30 m step through)
        for name in ("xyz_low", "xyz_high", "rpy_low", "rpy_high"):
            v = np.asarray(getattr(self, name), float)
            if v.shape != (3,) or not np.all(np.isfinite(v)):
                raise ValueError(f"SafetyBox.{name} needs 3 finite values, got {getattr(self, name)}")
        lo, hi = np.asarray(self.xyz_low, float), np.asarray(self.xyz_high, float)
        if np.any(lo > hi):
            raise ValueError(f"xyz_low must be <= xyz_high (3 values each), got {lo} / {hi}")
        for name in ("max_step_pos", "max_step_rot"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.floating)) and np.isfinite(v) and v > 0):
                raise ValueError(f"SafetyBox.{name} must be a finite number > 0, got {v!r}")

    def _rpy_center_halfwidth(self):
        lo, hi = np.asarray(self.rpy_low, float), np.asarray(self.rpy_high, float)
        width = np.where(np.isclose(hi - lo, 2 * np.pi), 2 * np.pi, (hi - lo) % (2 * np.pi))
        return lo + width / 2, width / 2

    def clip_position(self, pos: np.ndarray) -> np.ndarray:
        return np.clip(pos, self.xyz_low, self.xyz_high)

    def clip_orientation(self, quat: np.ndarray) -> np.ndarray:
        center, half = self._rpy_center_halfwidth()
        if np.all(half >= np.pi):
            return np.asarray(quat, float)
        d = wrap_angle(quat_to_rpy(quat) - center)
        return rpy_to_quat(center + np.clip(d, -half, half))

    def contains(self, pos: np.ndarray, quat: np.ndarray | None = None, tol: float = 1e-9) -> bool:
        ok = bool(np.all(pos >= np.asarray(self.xyz_low) - tol)
                  and np.all(pos <= np.asarray(self.xyz_high) + tol))
        if quat is not None:
            center, half = self._rpy_center_halfwidth()
            ok &= bool(np.all(np.abs(wrap_angle(quat_to_rpy(quat) - center)) <= half + 1e-6))
        return ok

    def limit_step(self, target_pos, target_quat, ref_pos, ref_quat):
        """Bound the change from the reference (last commanded) pose to the per-step limits."""
        dp = np.asarray(target_pos) - ref_pos
        n = np.linalg.norm(dp)
        if n > self.max_step_pos:
            target_pos = ref_pos + dp * (self.max_step_pos / n)
        dr = orientation_error(target_quat, ref_quat)
        a = np.linalg.norm(dr)
        if a > self.max_step_rot:
            target_quat = quat_mul(rotvec_to_quat(dr * (self.max_step_rot / a)), ref_quat)
        return np.asarray(target_pos, float), np.asarray(target_quat, float)

    def apply(self, target_pos, target_quat, ref_pos=None, ref_quat=None):
        """Validate, then bound the target. Without a reference: clipped into the box. With a
        reference (the last commanded pose) inside the box: delta-limited from it, then clipped
        (both keep it within a step of the reference). With a reference outside the box (after
        a joint reset, a push, a reconnect): a step from it towards the clipped target, so the
        arm comes into the box a step at a time instead of jumping to its edge."""
        target_pos = check_finite("target position", target_pos, (3,))
        target_quat = check_finite("target quaternion", target_quat, (4,))
        if abs(np.linalg.norm(target_quat) - 1.0) > 1e-3:
            raise UnsafeCommandError(f"target quaternion is not unit length: {target_quat}")
        if ref_pos is None:
            return self.clip_position(target_pos), self.clip_orientation(target_quat)
        ref_pos, ref_quat = np.asarray(ref_pos, float), np.asarray(ref_quat, float)
        if self.contains(ref_pos, ref_quat):
            target_pos, target_quat = self.limit_step(target_pos, target_quat, ref_pos, ref_quat)
            return self.clip_position(target_pos), self.clip_orientation(target_quat)
        return self.limit_step(self.clip_position(target_pos), self.clip_orientation(target_quat),
                               ref_pos, ref_quat)
