"""3Dconnexion SpaceMouse teleop over raw HID (`hidapi`'s `hid` module), decoded by
`pyspacemouse` 2.x (its per-model report layouts in `devices.toml`).

Axis convention
---------------
A SpaceMouse reports HID axes (USB HID usage tables): +X right, +Y toward the user, +Z down,
Rx/Ry/Rz right-handed about those. We decode with pyspacemouse's `AxisConvention.ROS`, i.e.
REP-103 as seen by an operator sitting behind the puck with the cable pointing away:

    push the cap away from you  -> +x (forward)      tilt it away (nose down) -> +pitch
    push it to the left         -> +y (left)         tilt it to the right      -> +roll
    pull it up                  -> +z (up)           twist counter-clockwise   -> +yaw

Values are the raw counts / `axis_scale` (350; full deflection is about +-1), then a per-axis
`deadzone` (default 0.1, rescaled so the output still reaches +-1), `gain`, clipping to
[-1, 1], and `operator_yaw_deg` (the operator's heading in the robot base frame, see
`mapping.py`): with the operator behind the robot looking along +x, pushing the cap toward
the robot moves the TCP forward.

Buttons (defaults; override any with `button_map={name or "A+B": action}`):

    two-button models (LEFT, RIGHT): LEFT = gripper toggle, RIGHT = success,
        LEFT+RIGHT (chord) = rerecord.  Motion alone means "intervene", so no button is
        spent on it; for failure/discard use a bigger model or "spacemouse+keyboard".
    Pro / Enterprise: MENU = gripper toggle, FIT = intervene (held), BTN_1 = success,
        BTN_2 = failure, BTN_3 = rerecord, BTN_4 = discard.

The lowest layer is a raw HID device object with `read(size) -> bytes | list[int]` (empty
when nothing is pending, `OSError` when the device is gone). `SpaceMouse(hid_device=...)`
accepts any such object, which is how tests inject recorded or scripted HID reports.
Linux needs read access to `/dev/hidraw*`: a udev rule such as
`KERNEL=="hidraw*", ATTRS{idVendor}=="256f", MODE="0666"` (and "046d" for older models).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from robot_rl.hardware.hal import TeleopCommand
from robot_rl.hardware.teleop.mapping import (ButtonLogic, DeviceLostError, DeviceNotFoundError,
                                              apply_deadzone, rotate_yaw)

AXES = ("x", "y", "z", "roll", "pitch", "yaw")
TWO_BUTTON_MAP = {"LEFT": "gripper_toggle", "RIGHT": "success", "LEFT+RIGHT": "rerecord"}
PRO_BUTTON_MAP = {"MENU": "gripper_toggle", "FIT": "intervene", "BTN_1": "success",
                  "BTN_2": "failure", "BTN_3": "rerecord", "BTN_4": "discard"}
READ_SIZE = 64          # bytes requested per report (longer than any SpaceMouse report)
MAX_REPORTS_PER_POLL = 256


def default_button_map(button_names) -> dict[str, str]:
    names = set(button_names)
    if {"MENU", "FIT", "BTN_1", "BTN_2", "BTN_3", "BTN_4"} <= names:
        return dict(PRO_BUTTON_MAP)
    if {"LEFT", "RIGHT"} <= names:
        return dict(TWO_BUTTON_MAP)
    names = list(button_names)
    if len(names) >= 2:  # unknown layout: the first two buttons play LEFT/RIGHT
        return {names[0]: "gripper_toggle", names[1]: "success",
                f"{names[0]}+{names[1]}": "rerecord"}
    return {names[0]: "gripper_toggle"} if names else {}


class _RawHID:
    """Adapts a raw HID device to what `pyspacemouse.SpaceMouseDevice` calls (easyhid's
    Device API) and records whether the last read returned a report."""

    def __init__(self, raw: Any):
        self.raw = raw
        self.got_report = False
        self.product_string = self._string("get_product_string", "product_string")
        self.manufacturer_string = self._string("get_manufacturer_string", "manufacturer_string")
        self.serial_number = self._string("get_serial_number_string", "serial_number")
        self.release_number = getattr(raw, "release_number", "")

    def _string(self, getter: str, attr: str) -> str:
        try:
            if hasattr(self.raw, getter):
                return getattr(self.raw, getter)() or ""
            return getattr(self.raw, attr, "") or ""
        except Exception:  # strings are cosmetic; some backends fail to read them
            return ""

    def open(self) -> None:   # already opened by whoever built the raw device
        pass

    def set_nonblocking(self, flag: bool) -> None:
        if hasattr(self.raw, "set_nonblocking"):
            self.raw.set_nonblocking(flag)

    def read(self, size: int):
        try:
            data = self.raw.read(max(int(size), READ_SIZE))
        except (OSError, IOError, ValueError) as e:  # hidapi: OSError("read error") on unplug
            raise DeviceLostError(f"SpaceMouse read failed (unplugged?): {e}") from e
        data = bytes(data) if data else b""
        self.got_report = bool(data)
        return data

    def write(self, data) -> None:
        if hasattr(self.raw, "write"):
            self.raw.write(data)

    def close(self) -> None:
        if hasattr(self.raw, "close"):
            self.raw.close()


def _device_specs():
    try:
        import pyspacemouse
    except ImportError as e:
        raise DeviceNotFoundError("the SpaceMouse teleop needs `pip install pyspacemouse hidapi`"
                                  ) from e
    return pyspacemouse


def find_spacemouse(device: str | None = None, path: str | bytes | None = None):
    """Open the first connected supported SpaceMouse (or the named model / hidraw path) with
    hidapi. Returns `(raw hid.device, model name)`. Raises `DeviceNotFoundError`."""
    psm = _device_specs()
    try:
        import hid
    except ImportError as e:
        raise DeviceNotFoundError("the SpaceMouse teleop needs `pip install hidapi`") from e
    specs = psm.get_device_specs()
    if device is not None and device not in specs:
        raise ValueError(f"unknown SpaceMouse model {device!r}; known: {sorted(specs)}")
    by_id = {(s.vendor_id, s.product_id): n for n, s in specs.items()}
    candidates = []
    for info in hid.enumerate():
        name = by_id.get((info["vendor_id"], info["product_id"]))
        if name is None or (device is not None and name != device):
            continue
        p = info["path"]
        if path is not None and p != (path.encode() if isinstance(path, str) else path):
            continue
        candidates.append((p, name))
    if not candidates:
        what = device or "supported SpaceMouse"
        raise DeviceNotFoundError(
            f"no {what} found{f' at {path}' if path else ''} (is it plugged in / the wireless "
            f"receiver connected?). Supported models: {sorted(specs)}")
    errors = []
    for p, name in candidates:  # some models expose several HID interfaces; take one that opens
        raw = hid.device()
        try:
            raw.open_path(p)
            return raw, name
        except OSError as e:
            errors.append(f"{p!r}: {e}")
    raise DeviceNotFoundError(
        f"found {candidates[0][1]} but could not open it ({'; '.join(errors)}). On Linux allow "
        f"access to /dev/hidraw*, e.g. a udev rule "
        f'KERNEL=="hidraw*", ATTRS{{idVendor}}=="256f", MODE="0666" and replug')


class SpaceMouse:
    """`Teleop` for a 3Dconnexion SpaceMouse. See the module docstring for conventions.

    Args:
        device: pyspacemouse model name (e.g. "SpaceMouseWireless"); auto-detected when None.
            Required with `hid_device` (it selects the report layout).
        path: a specific hidraw path to open.
        hid_device: an already-open raw HID device (anything with `read(size)`), instead of
            opening one with hidapi.
        deadzone, gain: per-axis deadzone (before gain) and scale.
        operator_yaw_deg: operator heading in the base frame (0: behind the robot).
        button_map: overrides/extends the model's default button map.
        axes: which twist components the device commands (others forced to 0), e.g.
            ("x", "y", "z") to ignore the rotation axes.
    """

    def __init__(self, device: str | None = None, path: str | None = None,
                 hid_device: Any = None, deadzone: float = 0.1, gain: float = 1.0,
                 operator_yaw_deg: float = 0.0, button_map: Mapping[str, str] | None = None,
                 axes: tuple[str, ...] = AXES):
        psm = _device_specs()
        specs = psm.get_device_specs()
        bad_axes = [a for a in axes if a not in AXES]
        if bad_axes:
            raise ValueError(f"unknown axes {bad_axes}; valid: {AXES}")
        if hid_device is None:
            hid_device, device = find_spacemouse(device, path)
            try:
                self._setup(psm, specs, device, hid_device, deadzone, gain, operator_yaw_deg,
                            button_map, axes)
            except BaseException:
                hid_device.close()
                raise
            return
        if device is None:
            raise ValueError(f"with hid_device= also give device= (the model); one of {sorted(specs)}")
        if device not in specs:
            raise ValueError(f"unknown SpaceMouse model {device!r}; known: {sorted(specs)}")
        self._setup(psm, specs, device, hid_device, deadzone, gain, operator_yaw_deg,
                    button_map, axes)

    def _setup(self, psm, specs, device, hid_device, deadzone, gain, operator_yaw_deg,
               button_map, axes) -> None:
        self.model = device
        spec = psm.apply_axis_convention(specs[device], psm.AxisConvention.ROS)
        self.button_names = tuple(spec.button_names)
        mapping = default_button_map(self.button_names)
        mapping.update(button_map or {})
        unknown = {n for k in mapping for n in k.split("+")} - set(self.button_names)
        if unknown:
            raise ValueError(f"{device} has no buttons {sorted(unknown)}; it has "
                             f"{list(self.button_names)}")
        self.buttons = ButtonLogic(mapping)
        self.deadzone, self.gain, self.operator_yaw_deg = deadzone, gain, operator_yaw_deg
        self._axis_mask = np.array([a in axes for a in AXES], np.float64)
        self._hid = _RawHID(hid_device)
        self._dev = psm.SpaceMouseDevice(info=spec, device=self._hid)
        self._dev.open()
        self._hid.set_nonblocking(True)
        self._state = psm.SpaceMouseState()
        self._closed = False

    def _read_reports(self) -> None:
        """Decode every pending report (the device streams far faster than we poll), feeding
        each button state change to the button logic so no press is missed."""
        for _ in range(MAX_REPORTS_PER_POLL):
            state = self._dev.read()
            if not self._hid.got_report:
                return
            self._state = state
            self.buttons.set_pressed(self.button_names[i] for i, b in enumerate(state.buttons)
                                     if b)

    def raw_axes(self) -> np.ndarray:
        """The decoded axes (x, y, z, roll, pitch, yaw) before deadzone/gain/yaw."""
        return np.array([getattr(self._state, a) for a in AXES], np.float64)

    def poll(self) -> TeleopCommand:
        if self._closed:
            raise DeviceLostError("SpaceMouse is closed")
        self._read_reports()
        d = apply_deadzone(self.raw_axes(), self.deadzone) * self.gain * self._axis_mask
        return self.buttons.command(rotate_yaw(np.clip(d, -1, 1), self.operator_yaw_deg))

    def sync_gripper(self, value: float) -> None:
        self.buttons.sync_gripper(value)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._dev.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
