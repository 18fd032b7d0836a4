"""Teleop devices, driven at their lowest layer: raw HID report bytes (SpaceMouse), real pynput
Key/KeyCode objects into the listener callbacks and real key presses through an X server
(keyboard, under Xvfb), and an SDL virtual joystick (gamepad)."""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from robot_rl.hardware.hal import Teleop
from robot_rl.hardware.teleop import (DeviceLostError, DeviceNotFoundError, MergedTeleop,
                                      make_teleop)
from robot_rl.hardware.teleop.mapping import ButtonLogic, apply_deadzone

# ---------------------------------------------------------------------------------- helpers


def hid_report(channel: int, *values: int, raw: bytes = b"") -> bytes:
    """A SpaceMouse HID input report: report id, then little-endian int16 axis values."""
    return bytes([channel]) + struct.pack(f"<{len(values)}h", *values) + raw


def axes_report(x=0, y=0, z=0, rx=0, ry=0, rz=0) -> bytes:
    """Single-report models (SpaceMouse Wireless / Pro): HID X, Y, Z, Rx, Ry, Rz in report 1."""
    return hid_report(1, x, y, z, rx, ry, rz)


def button_report(byte1: int = 0, byte2: int = 0, byte3: int = 0, byte4: int = 0) -> bytes:
    return bytes([3, byte1, byte2, byte3, byte4])


class FakeHID:
    """The lowest layer: a raw HID device whose read() hands out queued report bytes."""

    def __init__(self, reports=()):
        self.reports = list(reports)
        self.unplugged = False
        self.reads = 0

    def push(self, *reports: bytes) -> None:
        self.reports.extend(reports)

    def read(self, size: int):
        self.reads += 1
        if self.unplugged:
            raise OSError("read error")
        return list(self.reports.pop(0)) if self.reports else []

    def set_nonblocking(self, flag) -> None:
        pass

    def get_product_string(self) -> str:
        return "SpaceMouse Wireless"


def spacemouse(model="SpaceMouseWireless", reports=(), **kw):
    from robot_rl.hardware.teleop.spacemouse import SpaceMouse
    hid = FakeHID(reports)
    return SpaceMouse(device=model, hid_device=hid, **kw), hid


# ---------------------------------------------------------------------------------- shared


def test_make_teleop_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="spacemouse, keyboard, gamepad"):
        make_teleop("joystick3000")
    with pytest.raises(ValueError, match="valid"):
        make_teleop("spacemouse+wiimote")


def test_deadzone_is_continuous_and_reaches_full_scale():
    x = apply_deadzone([0.05, -0.1, 0.55, -1.0, 2.0], 0.1)
    np.testing.assert_allclose(x, [0, 0, 0.5, -1.0, 1.0])


def test_button_logic_chords_fire_instead_of_members():
    b = ButtonLogic({"L": "gripper_toggle", "R": "success", "L+R": "rerecord"})
    b.set_pressed({"L"})
    b.set_pressed({"L", "R"})
    b.set_pressed({"L"})
    b.set_pressed(set())
    assert b.take_events() == {"rerecord"} and b.gripper is None
    b.set_pressed({"L"}), b.set_pressed(set())
    assert b.gripper == 1.0
    b.sync_gripper(0.7)  # the policy left the gripper mostly closed: a toggle opens it
    b.set_pressed({"L"}), b.set_pressed(set())
    assert b.gripper == -1.0


# ---------------------------------------------------------------------------------- SpaceMouse


def test_spacemouse_axes_follow_rep103():
    sm, hid = spacemouse()
    assert isinstance(sm, Teleop)
    cases = {  # HID report (x right, y toward user, z down) -> base-frame twist
        "push away": (axes_report(y=-350), [1, 0, 0, 0, 0, 0]),
        "push left": (axes_report(x=-350), [0, 1, 0, 0, 0, 0]),
        "pull up": (axes_report(z=-350), [0, 0, 1, 0, 0, 0]),
        "tilt right": (axes_report(ry=-350), [0, 0, 0, 1, 0, 0]),
        "tilt away": (axes_report(rx=-350), [0, 0, 0, 0, 1, 0]),
        "twist ccw": (axes_report(rz=-350), [0, 0, 0, 0, 0, 1]),
    }
    for name, (report, expected) in cases.items():
        hid.push(report)
        cmd = sm.poll()
        np.testing.assert_allclose(cmd.delta6, expected, atol=1e-9, err_msg=name)
        assert not cmd.intervene and cmd.gripper is None and cmd.buttons == frozenset()


def test_spacemouse_deadzone_gain_clip_and_latest_report_wins():
    sm, hid = spacemouse(deadzone=0.1)
    hid.push(axes_report(y=-20, x=20))  # ~0.06 of full scale: inside the deadzone
    np.testing.assert_allclose(sm.poll().delta6, 0.0)
    hid.push(axes_report(y=-350), axes_report(y=-int(0.55 * 350)))  # two reports in one poll
    np.testing.assert_allclose(sm.poll().delta6[0], (0.55 - 0.1) / 0.9, atol=2e-3)
    hid.push(axes_report(x=500))  # beyond nominal full scale: clipped
    np.testing.assert_allclose(sm.poll().delta6, [0, -1, 0, 0, 0, 0], atol=1e-9)
    # no new report: the device holds its state (it only reports changes)
    np.testing.assert_allclose(sm.poll().delta6, [0, -1, 0, 0, 0, 0], atol=1e-9)
    sm2, hid2 = spacemouse(gain=0.5, axes=("x", "y", "z"))
    hid2.push(axes_report(y=-350, rz=-350))
    np.testing.assert_allclose(sm2.poll().delta6, [0.5, 0, 0, 0, 0, 0], atol=1e-9)


def test_spacemouse_operator_yaw():
    sm, hid = spacemouse(operator_yaw_deg=180)  # operator faces the robot from the front
    hid.push(axes_report(y=-350))               # pushing away from the operator = toward the base
    np.testing.assert_allclose(sm.poll().delta6, [-1, 0, 0, 0, 0, 0], atol=1e-9)


def test_spacemouse_two_channel_model_decodes_translation_and_rotation_reports():
    sm, hid = spacemouse("SpaceNavigator")
    hid.push(hid_report(1, 0, -350, 0), hid_report(2, 0, 0, -350))  # push away + twist ccw
    np.testing.assert_allclose(sm.poll().delta6, [1, 0, 0, 0, 0, 1], atol=1e-9)


def test_spacemouse_buttons_gripper_events_and_chord():
    sm, hid = spacemouse()
    LEFT, RIGHT = 0b01, 0b10
    hid.push(button_report(LEFT), button_report(0))  # a click shorter than a poll period
    cmd = sm.poll()
    assert cmd.gripper == 1.0 and cmd.buttons == frozenset()
    hid.push(button_report(RIGHT), button_report(0))
    cmd = sm.poll()
    assert cmd.buttons == {"success"} and cmd.gripper == 1.0
    assert sm.poll().buttons == frozenset()  # events are reported once
    hid.push(button_report(LEFT), button_report(LEFT | RIGHT), button_report(RIGHT),
             button_report(0))
    cmd = sm.poll()
    assert cmd.buttons == {"rerecord"} and cmd.gripper == 1.0  # chord: no toggle, no success
    hid.push(button_report(LEFT), button_report(0))
    assert sm.poll().gripper == -1.0


def test_spacemouse_pro_buttons():
    sm, hid = spacemouse("SpaceMouseProWireless")
    FIT = 0b10  # byte 1 bit 1
    hid.push(button_report(byte1=FIT))
    assert sm.poll().intervene
    assert sm.poll().intervene  # held
    hid.push(button_report(byte1=0))
    assert not sm.poll().intervene
    for bit, event in [(4, "success"), (5, "failure"), (6, "rerecord"), (7, "discard")]:
        hid.push(button_report(byte2=1 << bit), button_report())
        assert sm.poll().buttons == {event}
    hid.push(button_report(byte1=1), button_report())  # MENU: gripper toggle
    assert sm.poll().gripper == 1.0
    sm3, hid3 = spacemouse("SpaceMouseProWireless", button_map={"BTN_1": "gripper_close"})
    hid3.push(button_report(byte2=1 << 4))
    assert sm3.poll().gripper == 1.0
    with pytest.raises(ValueError, match="no buttons"):
        spacemouse("SpaceMouseWireless", button_map={"BTN_9": "success"})
    with pytest.raises(ValueError, match="unknown teleop actions"):
        spacemouse("SpaceMouseWireless", button_map={"LEFT": "jump"})


def test_spacemouse_unplugged_mid_run_raises_oserror():
    sm, hid = spacemouse(reports=[axes_report(y=-350)])
    assert sm.poll().delta6[0] == pytest.approx(1.0)
    hid.unplugged = True
    with pytest.raises(OSError):
        sm.poll()
    with pytest.raises(DeviceLostError):
        sm.poll()


def test_spacemouse_missing_device_is_a_clear_error():
    import hid
    if any(True for _ in hid.enumerate(0x256F)) or any(True for _ in hid.enumerate(0x046D)):
        pytest.skip("a 3Dconnexion device is attached to this machine")
    with pytest.raises(DeviceNotFoundError, match="no supported SpaceMouse found"):
        make_teleop("spacemouse")
    with pytest.raises(ValueError, match="with hid_device= also give device="):
        from robot_rl.hardware.teleop.spacemouse import SpaceMouse
        SpaceMouse(hid_device=FakeHID())


def test_merged_teleop_combines_devices():
    sm, hid = spacemouse()
    sm2, hid2 = spacemouse("SpaceMouseProWireless")
    both = MergedTeleop([sm, sm2])
    hid.push(axes_report(y=-350))
    hid2.push(axes_report(x=-350), button_report(byte2=1 << 7), button_report())
    cmd = both.poll()
    np.testing.assert_allclose(cmd.delta6, [1, 1, 0, 0, 0, 0], atol=1e-9)
    assert cmd.buttons == {"discard"}


# ---------------------------------------------------------------------------------- keyboard


@pytest.fixture(scope="module")
def xdisplay():
    """A private X server (Xvfb) so pynput's real xorg backend loads."""
    if shutil.which("Xvfb") is None:
        pytest.fail("Xvfb not installed (scripts/setup.sh installs it: apt-get install xvfb)")
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-nolisten", "tcp", "-screen", "0",
                             "64x64x24"], pass_fds=(w,), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    os.close(w)
    try:
        with os.fdopen(r) as f:
            number = f.readline().strip()
        if not number:
            pytest.fail("Xvfb did not start")
        mp = pytest.MonkeyPatch()
        mp.setenv("DISPLAY", f":{number}")
        yield f":{number}"
        mp.undo()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_keyboard_without_display_is_a_clear_error():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    code = ("from robot_rl.hardware.teleop import make_teleop, DeviceNotFoundError\n"
            "try:\n    make_teleop('keyboard')\nexcept DeviceNotFoundError as e:\n"
            "    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert "ERR the keyboard teleop needs a display" in out.stdout, out.stdout + out.stderr


def test_keyboard_callbacks(xdisplay):
    from pynput.keyboard import Key, KeyCode

    from robot_rl.hardware.teleop.keyboard import Keyboard
    kb = Keyboard(listen=False, speed=0.5)
    assert isinstance(kb, Teleop)
    kb.on_press(KeyCode.from_char("w"))
    kb.on_press(KeyCode.from_char("a"))
    cmd = kb.poll()
    np.testing.assert_allclose(cmd.delta6, [0.5, 0.5, 0, 0, 0, 0])
    kb.on_release(KeyCode.from_char("w"))
    kb.on_press(KeyCode.from_char("Q"))  # shift held: upper case, same key
    kb.on_press(KeyCode.from_char("j"))
    np.testing.assert_allclose(kb.poll().delta6, [0, 0.5, 0.5, 0, 0, 0.5])
    for c in "aQj":
        kb.on_release(KeyCode.from_char(c))
    assert not kb.poll().delta6.any()
    kb.on_press(Key.shift_r)
    assert kb.poll().intervene
    kb.on_release(Key.shift_r)
    assert not kb.poll().intervene
    kb.on_press(Key.space), kb.on_press(Key.space), kb.on_release(Key.space)  # autorepeat
    assert kb.poll().gripper == 1.0
    for key, event in [(Key.enter, "success"), (Key.backspace, "failure"),
                       (KeyCode.from_char("r"), "rerecord"), (Key.delete, "discard")]:
        kb.on_press(key), kb.on_release(key)
        assert kb.poll().buttons == {event}
    kb.on_press(Key.enter), kb.on_release(Key.enter)
    kb.on_press(Key.delete), kb.on_release(Key.delete)
    assert kb.poll().buttons == {"success", "discard"}  # both latched until the poll


def test_keyboard_real_key_presses_through_x(xdisplay):
    from pynput.keyboard import Controller, Key
    kb = make_teleop("keyboard")
    try:
        typist = Controller()
        typist.press("w")

        def wait_for(pred, timeout=5.0):
            t0 = time.monotonic()
            while time.monotonic() - t0 < timeout:
                cmd = kb.poll()
                if pred(cmd):
                    return cmd
                time.sleep(0.01)
            raise AssertionError("key press never arrived")

        wait_for(lambda c: c.delta6[0] == 1.0)
        typist.release("w")
        wait_for(lambda c: not c.delta6.any())
        typist.press(Key.enter)
        typist.release(Key.enter)
        wait_for(lambda c: "success" in c.buttons)
    finally:
        kb.close()


# ---------------------------------------------------------------------------------- gamepad


class VirtualPad:
    """An SDL virtual joystick (SDL >= 2.0.14): SDL and pygame see it as a plugged-in pad."""

    def __init__(self, naxes=6, nbuttons=11, nhats=1):
        import pygame
        pydir = os.path.dirname(pygame.__file__)
        libs = glob.glob(os.path.join(pydir, os.pardir, "pygame.libs", "libSDL2-2*.so*"))
        name = libs[0] if libs else ctypes.util.find_library("SDL2-2.0")
        if not name:
            pytest.fail("cannot locate the SDL2 library pygame uses")
        self.sdl = sdl = ctypes.CDLL(name)
        if not hasattr(sdl, "SDL_JoystickAttachVirtual"):
            pytest.fail("SDL too old for virtual joysticks")
        sdl.SDL_JoystickOpen.restype = ctypes.c_void_p
        for fn, t in [("SDL_JoystickSetVirtualAxis", ctypes.c_int16),
                      ("SDL_JoystickSetVirtualButton", ctypes.c_uint8),
                      ("SDL_JoystickSetVirtualHat", ctypes.c_uint8)]:
            getattr(sdl, fn).argtypes = [ctypes.c_void_p, ctypes.c_int, t]
        sdl.SDL_JoystickClose.argtypes = [ctypes.c_void_p]
        self.index = sdl.SDL_JoystickAttachVirtual(0, naxes, nbuttons, nhats)
        assert self.index >= 0
        self.js = sdl.SDL_JoystickOpen(self.index)
        self.attached = True
        for trigger in (2, 5):  # Xbox triggers rest fully released
            self.axis(trigger, -1.0)

    def axis(self, i, v):
        self.sdl.SDL_JoystickSetVirtualAxis(self.js, i, int(np.clip(v * 32767, -32768, 32767)))

    def button(self, i, pressed):
        """Set a button and let SDL read the device (a virtual pad is polled for its state, so
        a press and release between two updates would otherwise collapse into nothing)."""
        self.sdl.SDL_JoystickSetVirtualButton(self.js, i, int(pressed))
        self.sdl.SDL_JoystickUpdate()

    def hat(self, value):
        self.sdl.SDL_JoystickSetVirtualHat(self.js, 0, value)

    def unplug(self):
        if self.attached:
            self.attached = False
            self.sdl.SDL_JoystickClose(self.js)
            self.sdl.SDL_JoystickDetachVirtual(self.index)


@pytest.fixture
def pad(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    from robot_rl.hardware.teleop.gamepad import import_pygame
    pygame = import_pygame()
    p = VirtualPad()
    yield p
    p.unplug()
    pygame.event.get()


def test_gamepad_axes_buttons_and_unplug(pad):
    gp = make_teleop("gamepad")
    assert isinstance(gp, Teleop)
    assert not gp.poll().delta6.any()
    pad.axis(1, -1.0)   # left stick up
    pad.axis(0, -0.05)  # inside the deadzone
    np.testing.assert_allclose(gp.poll().delta6, [1, 0, 0, 0, 0, 0], atol=1e-3)
    pad.axis(1, 0.0)
    pad.axis(0, -1.0)   # left stick left
    pad.axis(4, -1.0)   # right stick up
    pad.axis(3, 1.0)    # right stick right: clockwise
    pad.hat(1)          # D-pad up (SDL_HAT_UP)
    np.testing.assert_allclose(gp.poll().delta6, [0, 1, 1, 0, 1, -1], atol=1e-3)
    for i in (0, 3, 4):
        pad.axis(i, 0.0)
    pad.hat(0)
    assert not gp.poll().delta6.any()

    pad.button(5, 1), pad.button(5, 0)  # RB click between polls: close
    assert gp.poll().gripper == 1.0
    pad.button(4, 1), pad.button(4, 0)  # LB: open
    assert gp.poll().gripper == -1.0
    pad.axis(5, 1.0)                    # RT held: intervene
    assert gp.poll().intervene and gp.poll().intervene
    pad.axis(5, -1.0)
    assert not gp.poll().intervene
    for b, event in [(0, "success"), (1, "failure"), (2, "rerecord"), (3, "discard")]:
        pad.button(b, 1), pad.button(b, 0)
        assert gp.poll().buttons == {event}

    pad.unplug()
    with pytest.raises(OSError):
        gp.poll()
    with pytest.raises(DeviceNotFoundError, match="no gamepad"):
        make_teleop("gamepad")
