"""HAL protocols. SI units, REP-103 frames (x forward, y left, z up), quaternions xyzw,
timestamps monotonic nanoseconds. Sim and real backends implement exactly these."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from robot_rl.controllers.impedance import ImpedanceParams


@dataclass(frozen=True)
class ArmState:
    q: np.ndarray          # joint positions [rad]
    dq: np.ndarray         # joint velocities [rad/s]
    tcp_pose: np.ndarray   # [x, y, z, qx, qy, qz, qw] in the base frame
    tcp_twist: np.ndarray  # [vx, vy, vz, wx, wy, wz] in the base frame
    wrench: np.ndarray     # [fx, fy, fz, tx, ty, tz] external wrench at the TCP (zeros if unknown)
    t_ns: int


@dataclass(frozen=True)
class GripperState:
    width: float       # finger opening [m]
    max_width: float
    grasped: bool      # fingers stopped before closing fully (an object is held)
    t_ns: int


@dataclass(frozen=True)
class Frame:
    rgb: np.ndarray                  # uint8 HxWx3
    t_ns: int
    depth: np.ndarray | None = None  # float32 HxW metres, aligned to rgb


@dataclass(frozen=True)
class TeleopCommand:
    delta6: np.ndarray            # normalized [-1, 1] twist in the base frame
    gripper: float | None         # normalized closedness target in [-1, 1], None = unchanged
    intervene: bool               # operator is taking over
    buttons: frozenset[str] = field(default_factory=frozenset)  # events: success, failure, rerecord, discard


@runtime_checkable
class Arm(Protocol):
    def state(self) -> ArmState: ...                                   # never blocks
    def set_target_pose(self, pos: np.ndarray, quat: np.ndarray) -> None: ...  # non-blocking, latest wins
    def set_impedance(self, params: ImpedanceParams) -> None: ...
    def move_to_joints(self, q: np.ndarray) -> None: ...               # blocking reset motion
    def stop(self) -> None: ...
    def __enter__(self): ...
    def __exit__(self, *exc) -> None: ...


@runtime_checkable
class Gripper(Protocol):
    max_width: float
    def command(self, width: float) -> None: ...   # target opening [m], non-blocking
    def state(self) -> GripperState: ...


@runtime_checkable
class Camera(Protocol):
    name: str
    def read(self) -> Frame: ...


@runtime_checkable
class Teleop(Protocol):
    def poll(self) -> TeleopCommand: ...


@runtime_checkable
class Clock(Protocol):
    """Advances time by one control period. Real: sleeps until the next tick. Sim: steps physics."""
    def wait(self, period_s: float) -> None: ...
    def now_ns(self) -> int: ...


class WallClock:
    """Fixed-rate wall-clock ticks for real robots (drift-free: ticks are absolute)."""

    def __init__(self):
        self._next: float | None = None

    def wait(self, period_s: float) -> None:
        now = time.monotonic()
        self._next = now + period_s if self._next is None else self._next + period_s
        if self._next > now:
            time.sleep(self._next - now)
        else:  # overran a tick: re-anchor instead of bursting to catch up
            self._next = now

    def now_ns(self) -> int:
        return time.monotonic_ns()
