"""Keyboard teleop through `pynput` (imported lazily; it needs a display: an X server on Linux).

pynput listens globally: keys count whatever window has the focus. Held keys command a twist
at `speed` (default 1.0, i.e. the task's full step size) in the operator frame, which is the
base frame when the operator stands behind the robot looking along +x (REP-103: x forward,
y left, z up; `operator_yaw_deg` rotates it, see `mapping.py`):

    w / s : +x / -x  (forward / back)      u / o : +roll / -roll   (about x)
    a / d : +y / -y  (left / right)        i / k : +pitch / -pitch (about y)
    q / e : +z / -z  (up / down)           j / l : +yaw / -yaw     (about z, +: counter-clockwise)

    space     : gripper toggle              shift (held) : intervene (hold the arm still)
    enter     : success                     backspace    : failure
    r         : rerecord                    delete       : discard

Holding a motion key is an intervention by itself. Override with `motion_keys={key: (axis
index 0..5, sign)}` and `button_map={key: action}` (key names: a character, or a pynput
`Key` name such as "space", "enter", "shift", "f1").

The lowest layer is pynput's listener calling `on_press(key)` / `on_release(key)` with
`pynput.keyboard.Key` / `KeyCode` objects; `Keyboard(listen=False)` builds the device without
starting the OS listener so those callbacks can be driven directly.
"""
from __future__ import annotations

import os
import threading
from typing import Mapping

import numpy as np

from robot_rl.hardware.hal import TeleopCommand
from robot_rl.hardware.teleop.mapping import (ButtonLogic, DeviceLostError, DeviceNotFoundError,
                                              rotate_yaw)

MOTION_KEYS: dict[str, tuple[int, float]] = {
    "w": (0, 1.0), "s": (0, -1.0), "a": (1, 1.0), "d": (1, -1.0), "q": (2, 1.0), "e": (2, -1.0),
    "u": (3, 1.0), "o": (3, -1.0), "i": (4, 1.0), "k": (4, -1.0), "j": (5, 1.0), "l": (5, -1.0),
}
BUTTON_MAP: dict[str, str] = {"space": "gripper_toggle", "shift": "intervene",
                              "enter": "success", "backspace": "failure", "r": "rerecord",
                              "delete": "discard"}
_ALIASES = {"shift_l": "shift", "shift_r": "shift", "ctrl_l": "ctrl", "ctrl_r": "ctrl",
            "alt_l": "alt", "alt_r": "alt", "alt_gr": "alt", "cmd_l": "cmd", "cmd_r": "cmd"}


def import_pynput_keyboard():
    """`pynput.keyboard`, or a `DeviceNotFoundError` that says what is missing."""
    try:
        from pynput import keyboard
    except ImportError as e:
        if "pynput" in str(e) and "No module" in str(e):
            raise DeviceNotFoundError("the keyboard teleop needs `pip install pynput`") from e
        where = os.environ.get("DISPLAY")
        raise DeviceNotFoundError(
            "the keyboard teleop needs a display: pynput could not reach an X server "
            f"(DISPLAY={where!r}). Run it in a desktop session (or over `ssh -X`), or use "
            f"--teleop spacemouse / gamepad on a headless machine. pynput said: "
            f"{str(e).splitlines()[0]}") from e
    return keyboard


def key_name(key) -> str | None:
    """Canonical name of a pynput key: a lower-case character, or the `Key` member's name."""
    if key is None:
        return None
    name = getattr(key, "name", None)  # Key enum member
    if isinstance(name, str):
        return _ALIASES.get(name, name)
    char = getattr(key, "char", None)
    if char:
        if char in ("\r", "\n"):
            return "enter"
        if char == " ":
            return "space"
        return char.lower()
    vk = getattr(key, "vk", None)
    return f"vk{vk}" if vk is not None else None


class Keyboard:
    """`Teleop` from the keyboard. See the module docstring for the key layout."""

    def __init__(self, speed: float = 1.0, operator_yaw_deg: float = 0.0,
                 motion_keys: Mapping[str, tuple[int, float]] | None = None,
                 button_map: Mapping[str, str] | None = None, listen: bool = True):
        self.keyboard = import_pynput_keyboard()
        self.speed, self.operator_yaw_deg = float(speed), operator_yaw_deg
        self.motion_keys = dict(MOTION_KEYS if motion_keys is None else motion_keys)
        mapping = dict(BUTTON_MAP)
        mapping.update(button_map or {})
        clash = set(mapping) & set(self.motion_keys)
        if clash:
            raise ValueError(f"keys {sorted(clash)} are both motion keys and buttons")
        self.buttons = ButtonLogic(mapping)
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._listener = None
        if listen:
            self._listener = self.keyboard.Listener(on_press=self.on_press,
                                                    on_release=self.on_release)
            self._listener.start()
            self._listener.wait()

    # ---- pynput callbacks (listener thread) -------------------------------------------------
    def on_press(self, key) -> None:
        name = key_name(key)
        if name is None:
            return
        if name in self.motion_keys:
            with self._lock:
                self._held.add(name)
        else:
            self.buttons.press(name)

    def on_release(self, key) -> None:
        name = key_name(key)
        if name is None:
            return
        if name in self.motion_keys:
            with self._lock:
                self._held.discard(name)
        else:
            self.buttons.release(name)

    # ---- Teleop --------------------------------------------------------------------------
    def poll(self) -> TeleopCommand:
        if self._listener is not None and not self._listener.running:
            raise DeviceLostError("the keyboard listener stopped (display connection lost?)")
        d = np.zeros(6)
        with self._lock:
            held = list(self._held)
        for name in held:
            axis, sign = self.motion_keys[name]
            d[axis] += sign * self.speed
        return self.buttons.command(rotate_yaw(np.clip(d, -1, 1), self.operator_yaw_deg))

    def sync_gripper(self, value: float) -> None:
        self.buttons.sync_gripper(value)

    def close(self) -> None:
        lst, self._listener = self._listener, None
        if lst is None:
            return
        lst.stop()
        # pynput's xorg listener only notices stop() at the next key event (its disable request
        # goes to the display its own thread is blocked on); send it on the other connection.
        stop_display, context = getattr(lst, "_display_stop", None), getattr(lst, "_context", None)
        if stop_display is not None and context is not None:
            try:
                stop_display.record_disable_context(context)
                stop_display.flush()
            except Exception:
                pass
        if lst.is_alive():
            lst.join(timeout=2.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
