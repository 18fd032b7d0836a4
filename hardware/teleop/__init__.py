"""Teleop devices implementing `hardware.hal.Teleop`: SpaceMouse (HID), keyboard (pynput),
gamepad (pygame), and the SO-100/SO-101 leader arm (LeRobot; hardware/so101.py). Each device
module imports its heavy dependency lazily, so importing this package costs nothing.
Conventions (base frame, gripper, events) are in `mapping.py`. A device that needs the
follower's pose (the leader arm) has `attach(env)`, which the intervention wrapper and the demo
recorder call with the env before the first poll.

    make_teleop("spacemouse", deadzone=0.1)
    make_teleop("spacemouse+keyboard")   # motion from the puck, events also from the keys
    make_teleop("so101_leader", port="/dev/ttyACM1", robot_id="my_leader")
"""
from __future__ import annotations

import numpy as np

from robot_rl.hardware.hal import Teleop, TeleopCommand
from robot_rl.hardware.teleop.mapping import (ACTIONS, EVENTS, DeviceLostError,
                                              DeviceNotFoundError, teleop_to_action)

TELEOPS = ("spacemouse", "keyboard", "gamepad", "so101_leader")

__all__ = ["ACTIONS", "EVENTS", "TELEOPS", "DeviceLostError", "DeviceNotFoundError",
           "MergedTeleop", "make_teleop", "teleop_to_action"]


class MergedTeleop:
    """Several devices used together: twists add (clipped), `intervene` and events are the
    union, the gripper target is the last device's that changed (else the last non-None)."""

    def __init__(self, devices: list[Teleop]):
        if not devices:
            raise ValueError("MergedTeleop needs at least one device")
        self.devices = list(devices)
        self._last = [None] * len(self.devices)
        self.gripper: float | None = None

    def poll(self) -> TeleopCommand:
        cmds = [d.poll() for d in self.devices]
        for i, c in enumerate(cmds):
            if c.gripper is not None and c.gripper != self._last[i]:
                self.gripper = c.gripper
            self._last[i] = c.gripper
        return TeleopCommand(
            delta6=np.clip(np.sum([c.delta6 for c in cmds], axis=0), -1.0, 1.0),
            gripper=self.gripper, intervene=any(c.intervene for c in cmds),
            buttons=frozenset().union(*(c.buttons for c in cmds)))

    def sync_gripper(self, value: float) -> None:
        self.gripper = float(value)
        for i, d in enumerate(self.devices):
            if hasattr(d, "sync_gripper"):
                d.sync_gripper(value)
                self._last[i] = float(value)

    def close(self) -> None:
        for d in self.devices:
            if hasattr(d, "close"):
                d.close()


def _make_one(name: str, kwargs: dict):
    if name == "spacemouse":
        from robot_rl.hardware.teleop.spacemouse import SpaceMouse
        return SpaceMouse(**kwargs)
    if name == "keyboard":
        from robot_rl.hardware.teleop.keyboard import Keyboard
        return Keyboard(**kwargs)
    if name == "gamepad":
        from robot_rl.hardware.teleop.gamepad import Gamepad
        return Gamepad(**kwargs)
    if name == "so101_leader":
        from robot_rl.hardware.so101 import LeRobotLeader
        return LeRobotLeader(**kwargs).connect()
    raise ValueError(f"unknown teleop device {name!r}; valid: {', '.join(TELEOPS)} "
                     f"(or several joined with '+', e.g. 'spacemouse+keyboard')")


def make_teleop(name: str, **kwargs) -> Teleop:
    """A teleop device by name: "spacemouse" | "keyboard" | "gamepad", or several joined with
    "+" (then kwargs go per device: `make_teleop("spacemouse+keyboard", spacemouse={...})`).
    Raises `DeviceNotFoundError` when the device (or a display, for the keyboard) is missing."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"teleop name must be one of {', '.join(TELEOPS)}, got {name!r}")
    names = [n.strip().lower() for n in name.split("+")]
    for n in names:
        if n not in TELEOPS:
            _make_one(n, {})  # raises the ValueError listing the valid names
    if len(names) == 1:
        return _make_one(names[0], kwargs)
    extra = set(kwargs) - set(names)
    if extra:
        raise ValueError(f"with several devices give kwargs per device ({names}), got {sorted(extra)}")
    devices = []
    try:
        for n in names:
            devices.append(_make_one(n, dict(kwargs.get(n, {}))))
    except BaseException:
        for d in devices:
            if hasattr(d, "close"):
                d.close()
        raise
    return MergedTeleop(devices)
