"""Cartesian impedance law (the one parameter set shared by sim and real drivers).

    tau = J^T (K * clip(e) - D * (J dq)) + N (kn (q_null - q) - dn dq) + bias

then rate-limited per tick. `e` is the pose error (target - current; orientation as a
rotation vector in the base frame), clipped per axis with separate negative and positive
bounds as in SERL's controller, so the spring force never exceeds K * clip however far the
target is. N is the dynamically consistent nullspace projector when the mass matrix is
known (the posture term then does not accelerate the TCP), else the static J^T-pinv one.
The simulator runs this exact law per physics substep in C (sim/_impedance_kernel.c);
tests check the two agree.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from robot_rl.controllers.frames import orientation_error

FRANKA_TORQUE_LIMITS = np.array([87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0])


def _six(v) -> tuple[float, ...]:
    a = np.broadcast_to(np.asarray(v, dtype=float), (6,))
    return tuple(float(x) for x in a)


@dataclass(frozen=True)
class ImpedanceParams:
    """Stiffness [N/m, Nm/rad], damping (None = critical, 2 sqrt(K)), error clip [m, rad]
    (clip_low <= 0 <= clip_high per axis), nullspace gains, torque-rate limit [Nm per 1 ms tick]."""
    stiffness: tuple = (2000.0, 2000.0, 2000.0, 150.0, 150.0, 150.0)
    damping: tuple | None = None
    clip_low: tuple = (-0.01, -0.01, -0.01, -0.05, -0.05, -0.05)
    clip_high: tuple = (0.01, 0.01, 0.01, 0.05, 0.05, 0.05)
    nullspace_stiffness: float = 10.0
    nullspace_damping: float | None = None
    max_torque_rate: float = 1.0
    q_nullspace: tuple | None = None  # posture the redundancy settles to (None = the reset pose)

    def __post_init__(self):
        object.__setattr__(self, "stiffness", _six(self.stiffness))
        object.__setattr__(self, "clip_low", _six(self.clip_low))
        object.__setattr__(self, "clip_high", _six(self.clip_high))
        if self.damping is not None:
            object.__setattr__(self, "damping", _six(self.damping))
        for name in ("stiffness", "damping", "clip_low", "clip_high", "nullspace_stiffness",
                     "nullspace_damping", "max_torque_rate", "q_nullspace"):
            v = getattr(self, name)  # NaN passes every comparison below: refuse it first
            if v is not None and not np.all(np.isfinite(np.asarray(v, float))):
                raise ValueError(f"ImpedanceParams.{name} must be finite, got {v}")
        if min(self.stiffness) < 0 or (self.damping is not None and min(self.damping) < 0):
            raise ValueError(f"stiffness and damping must be >= 0, got {self.stiffness} / {self.damping}")
        if self.nullspace_stiffness < 0 or (self.nullspace_damping is not None and self.nullspace_damping < 0):
            raise ValueError(f"nullspace gains must be >= 0, got {self.nullspace_stiffness} / "
                             f"{self.nullspace_damping}")
        if max(self.clip_low) > 0 or min(self.clip_high) < 0:
            raise ValueError("error clip must satisfy clip_low <= 0 <= clip_high on every axis, "
                             f"got low={self.clip_low} high={self.clip_high}")
        if self.max_torque_rate <= 0:
            raise ValueError(f"max_torque_rate must be > 0, got {self.max_torque_rate}")

    @property
    def K(self) -> np.ndarray:
        return np.array(self.stiffness)

    @property
    def D(self) -> np.ndarray:
        return 2.0 * np.sqrt(self.K) if self.damping is None else np.array(self.damping)

    @property
    def kn(self) -> float:
        return self.nullspace_stiffness

    @property
    def dn(self) -> float:
        return (2.0 * np.sqrt(self.kn) if self.nullspace_damping is None
                else self.nullspace_damping)

    def with_(self, **changes) -> "ImpedanceParams":
        return replace(self, **changes)

    # Named presets. Compliant: SERL's training gains (soft, 1 cm / 0.05 rad clip, so contact
    # forces stay bounded while the policy explores). Precise: stiffer, wider clip for resets.
    @classmethod
    def compliant(cls) -> "ImpedanceParams":
        return cls()

    @classmethod
    def precise(cls) -> "ImpedanceParams":
        return cls(stiffness=(3000, 3000, 3000, 300, 300, 300),
                   clip_low=(-0.05,) * 3 + (-0.3,) * 3, clip_high=(0.05,) * 3 + (0.3,) * 3)

    @classmethod
    def preset(cls, name: str) -> "ImpedanceParams":
        presets = {"compliant": cls.compliant, "precise": cls.precise}
        if name not in presets:
            raise ValueError(f"unknown impedance preset {name!r}; valid: {sorted(presets)}")
        return presets[name]()


def joint_torque_bound(params: ImpedanceParams, J: np.ndarray) -> np.ndarray:
    """The largest |tau_i| the spring term J^T K clip(e) can command at Jacobian `J` (6 x n,
    base frame), over every error the clip allows: sum_j |J_ji| K_j c_j, the clip box's worst
    corner. (Damping, Coriolis and the posture task come on top: keep a margin.)"""
    c = np.maximum(-np.asarray(params.clip_low), np.asarray(params.clip_high))
    return np.abs(np.asarray(J, float)).T @ (params.K * c)


def bounded_to(params: ImpedanceParams, J: np.ndarray, limits: np.ndarray,
               fraction: float = 0.8) -> ImpedanceParams:
    """`params` with its error clip scaled down (all axes alike, stiffness unchanged) so that
    `joint_torque_bound` stays within `fraction` of the per-joint `limits` at `J`; `params`
    itself when it already does. The FR3's wrist joints take 12 Nm: the precise preset
    (300 Nm/rad, 0.3 rad clip) asked up to 90 Nm, and a 0.3 rad yaw correction tripped the
    robot's tau_J_range_violation reflex."""
    b = joint_torque_bound(params, J)
    scale = float(np.min(fraction * np.asarray(limits, float) / np.maximum(b, 1e-12)))
    if scale >= 1.0:
        return params
    return params.with_(clip_low=tuple(np.asarray(params.clip_low) * scale),
                        clip_high=tuple(np.asarray(params.clip_high) * scale))


def nullspace_projector(J: np.ndarray, Minv: np.ndarray | None = None) -> np.ndarray:
    """Nullspace projector: J Minv N = 0 (dynamically consistent) when Minv is given, else the
    static projector with J N = 0 (no TCP force)."""
    n = J.shape[1]
    if Minv is None:
        return np.eye(n) - J.T @ np.linalg.solve(J @ J.T + 1e-6 * np.eye(6), J)
    lam = np.linalg.inv(J @ Minv @ J.T + 1e-6 * np.eye(6))  # task-space inertia
    return np.eye(n) - J.T @ lam @ J @ Minv


@dataclass
class CartesianImpedance:
    """Stateful wrapper (remembers the last torque for the rate limit)."""
    params: ImpedanceParams = field(default_factory=ImpedanceParams)
    torque_limits: np.ndarray = field(default_factory=lambda: FRANKA_TORQUE_LIMITS.copy())
    tau_prev: np.ndarray | None = None

    def reset(self, tau: np.ndarray) -> None:
        self.tau_prev = np.asarray(tau, dtype=float).copy()

    def pose_error(self, pos, quat, target_pos, target_quat) -> np.ndarray:
        return np.concatenate([np.asarray(target_pos) - pos, orientation_error(target_quat, quat)])

    def clipped_error(self, e: np.ndarray) -> np.ndarray:
        return np.clip(e, self.params.clip_low, self.params.clip_high)

    def torque(self, q, dq, J, pos, quat, target_pos, target_quat, bias, q_null,
               Minv=None) -> np.ndarray:
        p = self.params
        e = self.clipped_error(self.pose_error(pos, quat, target_pos, target_quat))
        wrench = p.K * e - p.D * (J @ dq)
        tau = J.T @ wrench
        tau += nullspace_projector(J, Minv) @ (p.kn * (np.asarray(q_null) - q) - p.dn * dq)
        tau += bias
        if self.tau_prev is not None:  # torque-rate limit, per tick
            tau = self.tau_prev + np.clip(tau - self.tau_prev, -p.max_torque_rate,
                                          p.max_torque_rate)
        tau = np.clip(tau, -self.torque_limits, self.torque_limits)
        self.tau_prev = tau
        return tau
