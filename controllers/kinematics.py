"""Forward kinematics and the geometric Jacobian of a serial chain of revolute joints, in numpy.

A position-controlled arm (SO-101, xArm, UR in position mode) has no controller of ours between
the joint targets and its motors, so the Cartesian layer needs the arm's kinematics on the host:
`SerialChain` is that model, described like a URDF (each joint's origin in its parent's frame,
its axis, limits and speed). The simulated SO-101 is built from the same description
(sim/so101_model.py), so sim and real run the same kinematics.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_rl.controllers.frames import mat_to_quat, quat_to_mat


@dataclass(frozen=True)
class RevoluteJoint:
    name: str
    origin: tuple            # xyz of the joint frame in the parent link's frame [m]
    axis: tuple              # unit rotation axis in the joint frame
    lower: float             # [rad]
    upper: float             # [rad]
    max_velocity: float      # [rad/s], the speed the Cartesian layer never exceeds
    origin_quat: tuple = (0.0, 0.0, 0.0, 1.0)  # xyzw rotation of the joint frame in its parent


@dataclass(frozen=True)
class SerialChain:
    """Base -> joints[0] -> ... -> joints[-1] -> TCP (`tcp_pos`, `tcp_quat` in the last link)."""
    joints: tuple[RevoluteJoint, ...]
    tcp_pos: tuple = (0.0, 0.0, 0.0)
    tcp_quat: tuple = (0.0, 0.0, 0.0, 1.0)

    @property
    def n(self) -> int:
        return len(self.joints)

    @property
    def lower(self) -> np.ndarray:
        return np.array([j.lower for j in self.joints])

    @property
    def upper(self) -> np.ndarray:
        return np.array([j.upper for j in self.joints])

    @property
    def max_velocity(self) -> np.ndarray:
        return np.array([j.max_velocity for j in self.joints])

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    def frames(self, q) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(joint positions (n,3), joint axes in the base frame (n,3), TCP position, TCP rotation
        matrix), all in the base frame."""
        q = np.asarray(q, float)
        if q.shape != (self.n,):
            raise ValueError(f"the chain has {self.n} joints, got q of shape {q.shape}")
        R, p = np.eye(3), np.zeros(3)
        points, axes = np.zeros((self.n, 3)), np.zeros((self.n, 3))
        for i, j in enumerate(self.joints):
            p = p + R @ np.asarray(j.origin, float)
            R = R @ quat_to_mat(j.origin_quat)
            axis = R @ np.asarray(j.axis, float)
            points[i], axes[i] = p, axis
            R = R @ _axis_angle(np.asarray(j.axis, float), q[i])
        return points, axes, p + R @ np.asarray(self.tcp_pos, float), R @ quat_to_mat(self.tcp_quat)

    def fk(self, q) -> tuple[np.ndarray, np.ndarray]:
        """TCP (position, xyzw quaternion) in the base frame."""
        _, _, pos, R = self.frames(q)
        return pos, mat_to_quat(R)

    def jacobian(self, q) -> np.ndarray:
        """6 x n geometric Jacobian of the TCP: rows [linear velocity; angular velocity]."""
        return self.pose_and_jacobian(q)[2]

    def pose_and_jacobian(self, q) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(TCP position, xyzw quaternion, Jacobian) from one pass over the chain."""
        points, axes, tcp, R = self.frames(q)
        return tcp, mat_to_quat(R), np.vstack([np.cross(axes, tcp - points).T, axes.T])


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues: the rotation matrix of `angle` about the unit `axis`."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)
