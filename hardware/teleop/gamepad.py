"""Gamepad teleop through `pygame`'s joystick API (SDL2; imported lazily).

Default layout: an Xbox-style pad as pygame 2 reports it on Linux (xpad / SDL):
axes 0 LX, 1 LY, 2 LT, 3 RX, 4 RY, 5 RT (sticks: +x right, +y down; triggers rest at -1 and
read +1 fully pressed); buttons 0 A, 1 B, 2 X, 3 Y, 4 LB, 5 RB, 6 BACK, 7 START, 8 LS, 9 RS,
10 GUIDE; hat 0 is the D-pad (+x right, +y up). Other pads: pass `axes=` / `buttons=` with
their indices (run `python -m pygame.examples.joystick` to see them).

Twist, in the operator frame (= REP-103 base frame with the operator behind the robot looking
along +x; `operator_yaw_deg` rotates it, see `mapping.py`):

    left stick  up / left   -> +x (forward) / +y (left)
    right stick up / left   -> +z (up)      / +yaw (counter-clockwise from above)
    D-pad       up / right  -> +pitch       / +roll

Sticks get a `deadzone` (default 0.15, rescaled to still reach +-1), then `speed`.
Buttons (override with `button_map={control: action}`; triggers act as buttons "lt"/"rt"
when pressed past half way):

    RB = gripper close, LB = gripper open, RT (held) = intervene,
    A = success, B = failure, X = rerecord, Y = discard.

The lowest layer is SDL's joystick: tests attach an SDL virtual joystick
(`SDL_JoystickAttachVirtual`) and set its axes/buttons, so the events come through SDL and
pygame exactly as from a USB pad. Unplugging the pad (SDL's JOYDEVICEREMOVED) makes `poll`
raise `DeviceLostError`. No window is opened; without a display the SDL "dummy" video driver
is used (pygame's event queue needs a video subsystem).
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from robot_rl.hardware.hal import TeleopCommand
from robot_rl.hardware.teleop.mapping import (ButtonLogic, DeviceLostError, DeviceNotFoundError,
                                              apply_deadzone, rotate_yaw)

XBOX_AXES = {"lx": 0, "ly": 1, "lt": 2, "rx": 3, "ry": 4, "rt": 5}
XBOX_BUTTONS = {"a": 0, "b": 1, "x": 2, "y": 3, "lb": 4, "rb": 5, "back": 6, "start": 7,
                "ls": 8, "rs": 9, "guide": 10}
BUTTON_MAP = {"rb": "gripper_close", "lb": "gripper_open", "rt": "intervene", "a": "success",
              "b": "failure", "x": "rerecord", "y": "discard"}
TRIGGERS = ("lt", "rt")
TRIGGER_THRESHOLD = 0.0   # raw trigger value (rest -1, full +1): pressed past half way


def import_pygame():
    """pygame with its video (for the event queue) and joystick subsystems initialised."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("SDL_JOYSTICK_ALLOW_BACKGROUND_EVENTS", "1")  # no window focus needed
    try:
        import pygame
    except ImportError as e:
        raise DeviceNotFoundError("the gamepad teleop needs `pip install pygame`") from e
    if not pygame.display.get_init():
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        try:
            pygame.display.init()
        except pygame.error:
            os.environ["SDL_VIDEODRIVER"] = "dummy"
            pygame.display.init()
    if not pygame.joystick.get_init():
        pygame.joystick.init()
    return pygame


class Gamepad:
    """`Teleop` from a gamepad / joystick. See the module docstring for the layout."""

    def __init__(self, index: int = 0, deadzone: float = 0.15, speed: float = 1.0,
                 operator_yaw_deg: float = 0.0, axes: Mapping[str, int] | None = None,
                 buttons: Mapping[str, int] | None = None,
                 button_map: Mapping[str, str] | None = None):
        pg = self.pygame = import_pygame()
        n = pg.joystick.get_count()
        if n <= index:
            raise DeviceNotFoundError(
                f"no gamepad #{index}: SDL sees {n} joystick(s). Plug one in (and check "
                f"permissions on /dev/input/event*), or use --teleop keyboard / spacemouse")
        self.js = pg.joystick.Joystick(index)
        self.js.init()
        self.name = self.js.get_name()
        self.instance_id = self.js.get_instance_id()
        self.axes = dict(XBOX_AXES if axes is None else axes)
        self.button_index = dict(XBOX_BUTTONS if buttons is None else buttons)
        na, nb = self.js.get_numaxes(), self.js.get_numbuttons()
        bad = {k: v for k, v in self.axes.items() if v >= na}
        bad.update({k: v for k, v in self.button_index.items() if v >= nb})
        if bad:
            raise ValueError(f"gamepad {self.name!r} has {na} axes and {nb} buttons; the "
                             f"layout indices {bad} do not exist (pass axes=/buttons=)")
        self._button_name = {v: k for k, v in self.button_index.items()}
        mapping = dict(BUTTON_MAP)
        mapping.update(button_map or {})
        known = set(self.button_index) | set(TRIGGERS)
        unknown = {n for k in mapping for n in k.split("+")} - known
        if unknown:
            raise ValueError(f"unknown gamepad controls {sorted(unknown)}; known: {sorted(known)}")
        self.buttons = ButtonLogic(mapping)
        self.deadzone, self.speed, self.operator_yaw_deg = deadzone, speed, operator_yaw_deg
        self._hats = self.js.get_numhats()
        self._lost = False
        self._types = (pg.JOYAXISMOTION, pg.JOYBUTTONDOWN, pg.JOYBUTTONUP, pg.JOYHATMOTION,
                       pg.JOYDEVICEREMOVED, pg.JOYDEVICEADDED)

    def _axis(self, name: str) -> float:
        i = self.axes.get(name)
        return float(self.js.get_axis(i)) if i is not None else 0.0

    def _process_events(self) -> None:
        pg = self.pygame
        for e in pg.event.get(self._types):
            if getattr(e, "instance_id", None) != self.instance_id:
                continue
            if e.type == pg.JOYDEVICEREMOVED:
                self._lost = True
            elif e.type in (pg.JOYBUTTONDOWN, pg.JOYBUTTONUP):
                name = self._button_name.get(e.button)
                if name is not None:
                    (self.buttons.press if e.type == pg.JOYBUTTONDOWN else self.buttons.release)(name)
            elif e.type == pg.JOYAXISMOTION:
                for trig in TRIGGERS:
                    if self.axes.get(trig) == e.axis:
                        (self.buttons.press if e.value > TRIGGER_THRESHOLD
                         else self.buttons.release)(trig)

    def poll(self) -> TeleopCommand:
        if self._lost:
            raise DeviceLostError(f"gamepad {self.name!r} was disconnected")
        self._process_events()
        if self._lost:
            raise DeviceLostError(f"gamepad {self.name!r} was disconnected")
        lx, ly = apply_deadzone([self._axis("lx"), self._axis("ly")], self.deadzone)
        rx, ry = apply_deadzone([self._axis("rx"), self._axis("ry")], self.deadzone)
        hx, hy = self.js.get_hat(0) if self._hats else (0, 0)
        d = np.array([-ly, -lx, -ry, hx, hy, -rx], np.float64) * self.speed
        return self.buttons.command(rotate_yaw(np.clip(d, -1, 1), self.operator_yaw_deg))

    def sync_gripper(self, value: float) -> None:
        self.buttons.sync_gripper(value)

    def close(self) -> None:
        try:
            self.js.quit()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
