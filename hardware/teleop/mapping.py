"""Shared pieces of the teleop devices: deadzones, the operator-to-base frame rotation, button
logic (press / release / chord -> gripper changes, a held "intervene", and episode events) and
the mapping of a `TeleopCommand` onto a task's normalized action.

Conventions (all devices)
-------------------------
`TeleopCommand.delta6` is a normalized twist `[vx, vy, vz, wx, wy, wz]` in `[-1, 1]` in the
robot BASE frame, REP-103: x forward (away from the robot base), y left, z up; rotations are
right-handed about those axes (roll about x, pitch about y, yaw about z; positive yaw turns
counter-clockwise seen from above). Each device maps its own axes into an *operator frame*
that equals the base frame when the operator stands behind the robot looking along +x.
`operator_yaw_deg` (every device) is the operator's heading in the base frame: 180 when the
operator faces the robot from the front, 90 when standing on its right side looking along +y.

`TeleopCommand.gripper` is the device's current gripper closedness target (-1 open, +1
closed), `None` until the operator first touches a gripper control. A toggle flips relative to
the gripper's real state when the caller reports it with `sync_gripper(value)` (the
`InterventionWrapper` and `collect` do). `intervene` is True while an intervene control is
held. `buttons` holds the episode events fired since the previous poll: "success",
"failure", "rerecord", "discard" (edge-triggered and latched, so a press shorter than a poll
period is not lost).
"""
from __future__ import annotations

import threading
from typing import Iterable, Mapping

import numpy as np

from robot_rl.hardware.hal import TeleopCommand

EVENTS = ("success", "failure", "rerecord", "discard")
GRIPPER_ACTIONS = ("gripper_toggle", "gripper_close", "gripper_open")
HOLD_ACTIONS = ("intervene",)
ACTIONS = EVENTS + GRIPPER_ACTIONS + HOLD_ACTIONS


class DeviceNotFoundError(RuntimeError):
    """The teleop device (or what it needs: a display, a driver, permissions) is not there."""


class DeviceLostError(OSError):
    """The teleop device disappeared while in use (unplugged, out of range, permissions)."""


def apply_deadzone(x, deadzone: float) -> np.ndarray:
    """Per-axis deadzone with rescaling: |x| <= deadzone -> 0, then linear up to +-1 (clipped),
    so the output is continuous at the deadzone edge and still reaches full scale."""
    x = np.clip(np.asarray(x, np.float64), -1.0, 1.0)
    if deadzone <= 0:
        return x
    if deadzone >= 1:
        raise ValueError(f"deadzone must be < 1, got {deadzone}")
    mag = np.maximum(np.abs(x) - deadzone, 0.0) / (1.0 - deadzone)
    return np.sign(x) * mag


def rotate_yaw(delta6: np.ndarray, yaw_deg: float) -> np.ndarray:
    """Rotate the translation and rotation parts of a twist about z by `yaw_deg` (operator
    frame -> base frame)."""
    if not yaw_deg:
        return np.asarray(delta6, np.float64)
    c, s = np.cos(np.deg2rad(yaw_deg)), np.sin(np.deg2rad(yaw_deg))
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    d = np.asarray(delta6, np.float64)
    return np.clip(np.concatenate([R @ d[:3], R @ d[3:]]), -1.0, 1.0)


class ButtonLogic:
    """Turns the set of currently pressed controls into gripper changes, the held "intervene"
    state and latched episode events.

    `mapping` maps a control name, or a chord "A+B" (all pressed together), to one of
    `ACTIONS`. Event and gripper actions fire once per press: on the press edge, except for a
    control that is part of a chord, which fires on release unless the chord fired meanwhile
    (so pressing the chord does not also trigger its members). "intervene" is active while
    held. Thread-safe (the keyboard feeds it from pynput's listener thread).
    """

    def __init__(self, mapping: Mapping[str, str]):
        bad = {k: v for k, v in mapping.items() if v not in ACTIONS}
        if bad:
            raise ValueError(f"unknown teleop actions {bad}; valid: {list(ACTIONS)}")
        self.mapping = dict(mapping)
        self.chords = {k: frozenset(k.split("+")) for k in mapping if "+" in k}
        self.chord_members = set().union(*self.chords.values()) if self.chords else set()
        self.pressed: set[str] = set()
        self._consumed: set[str] = set()     # members of a chord that fired during this press
        self._chords_on: set[str] = set()
        self._events: list[str] = []
        self.gripper: float | None = None
        self._lock = threading.Lock()

    # ---- state changes ---------------------------------------------------------------------
    def set_pressed(self, pressed: Iterable[str]) -> None:
        """Feed the complete set of pressed controls (devices that report full states)."""
        pressed = set(pressed)
        with self._lock:
            for name in sorted(pressed - self.pressed):
                self._press(name)
            for name in sorted(self.pressed - pressed):
                self._release(name)

    def press(self, name: str) -> None:
        with self._lock:
            if name not in self.pressed:
                self._press(name)

    def release(self, name: str) -> None:
        with self._lock:
            if name in self.pressed:
                self._release(name)

    def _press(self, name: str) -> None:
        self.pressed.add(name)
        for chord, members in self.chords.items():
            if chord not in self._chords_on and members <= self.pressed:
                self._chords_on.add(chord)
                self._consumed |= members
                self._fire(self.mapping[chord])
        if name in self.mapping and name not in self.chord_members:
            self._fire(self.mapping[name])

    def _release(self, name: str) -> None:
        self.pressed.discard(name)
        self._chords_on = {c for c in self._chords_on if self.chords[c] <= self.pressed}
        if name in self.chord_members:
            if name not in self._consumed and name in self.mapping:
                self._fire(self.mapping[name])
            self._consumed.discard(name)

    def _fire(self, action: str) -> None:
        if action in EVENTS:
            self._events.append(action)
        elif action == "gripper_toggle":
            self.gripper = -1.0 if (self.gripper is not None and self.gripper > 0) else 1.0
        elif action == "gripper_close":
            self.gripper = 1.0
        elif action == "gripper_open":
            self.gripper = -1.0

    # ---- queries ---------------------------------------------------------------------------
    @property
    def intervene_held(self) -> bool:
        with self._lock:
            return any(self.mapping.get(n) == "intervene" for n in self.pressed) or any(
                self.mapping[c] == "intervene" for c in self._chords_on)

    def take_events(self) -> frozenset[str]:
        with self._lock:
            ev, self._events = frozenset(self._events), []
            return ev

    def sync_gripper(self, value: float) -> None:
        with self._lock:
            self.gripper = float(value)

    def command(self, delta6: np.ndarray, intervene: bool = False) -> TeleopCommand:
        held = self.intervene_held
        with self._lock:
            gripper = self.gripper
        return TeleopCommand(delta6=np.clip(np.asarray(delta6, np.float64), -1.0, 1.0),
                             gripper=gripper, intervene=bool(intervene or held),
                             buttons=self.take_events())


def teleop_to_action(cmd: TeleopCommand, action_cfg, gripper: float,
                     tcp_quat: np.ndarray | None = None) -> np.ndarray:
    """A task's normalized action (float32) from a teleop command: the base-frame `delta6` on
    the task's dofs (rotated into the end-effector frame when the task acts in it; `tcp_quat`
    xyzw is then needed), then the gripper target (`cmd.gripper`, or `gripper` when the
    device has none)."""
    from robot_rl.hardware.task import POSE_DOFS
    d = np.asarray(cmd.delta6, np.float64)
    if d.shape != (6,) or not np.all(np.isfinite(d)):
        raise ValueError(f"teleop delta6 must be 6 finite numbers, got {cmd.delta6!r}")
    d = np.clip(d, -1.0, 1.0)
    if getattr(action_cfg, "frame", "base") == "ee":
        if tcp_quat is None:
            raise ValueError("an end-effector-frame task needs the TCP orientation")
        from robot_rl.controllers.frames import quat_to_mat
        Rt = quat_to_mat(np.asarray(tcp_quat, np.float64)).T
        d = np.concatenate([Rt @ d[:3], Rt @ d[3:]])
    a = [d[POSE_DOFS.index(n)] for n in action_cfg.dofs]
    if action_cfg.gripper:
        a.append(gripper if cmd.gripper is None else cmd.gripper)
    return np.clip(np.asarray(a, np.float64), -1.0, 1.0).astype(np.float32)
