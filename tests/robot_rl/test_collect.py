"""Teleoperated collection and replay on the real MuJoCo envs, with a scripted operator on a
SpaceMouse at the raw-HID-report layer (the device's own decoding runs)."""
from __future__ import annotations

import argparse
import json
import struct

import gymnasium as gym
import numpy as np
import pytest

import robot_rl  # noqa: F401
from robot_rl.collect import add_cli, collect, read_meta, replay_episode
from robot_rl.data.lerobot import LeRobotDataset
from robot_rl.hardware.teleop import DeviceLostError, DeviceNotFoundError
from robot_rl.hardware.teleop.spacemouse import SpaceMouse

FULL, DEADZONE = 350, 0.1
PRO_BUTTONS = {"success": 1 << 4, "failure": 1 << 5, "rerecord": 1 << 6, "discard": 1 << 7}


def axes_report(x=0, y=0, z=0) -> bytes:
    return bytes([1]) + struct.pack("<6h", x, y, z, 0, 0, 0)


def button_report(byte2=0) -> bytes:
    return bytes([3, 0, byte2, 0, 0])


def counts(a: float) -> int:
    """HID counts that the device decodes (after its deadzone) to the normalized value a."""
    if abs(a) < 1e-3:
        return 0
    return int(round(np.sign(a) * (DEADZONE + (1 - DEADZONE) * min(abs(a), 1.0)) * FULL))


class OperatorHID:
    """A scripted operator on a SpaceMouse Pro. Once per env step (it watches the sim clock;
    a clock that goes back is a new attempt) it sends an axes report steering the TCP toward
    `target(task)`, plus a click of the button `plan[(attempt, k)]` on the k-th report of an
    attempt. `unplug_at=(attempt, k)` makes reads fail from then on."""

    def __init__(self, env, target, plan=None, unplug_at=None):
        self.env, self.target, self.plan = env.unwrapped, target, dict(plan or {})
        self.unplug_at = unplug_at
        self.attempt, self.k, self.last_time = -1, 0, None
        self.queue: list[bytes] = []

    def read(self, size):
        t = float(self.env.world.data.time)
        if t != self.last_time:
            if self.last_time is None or t < self.last_time:
                self.attempt, self.k = self.attempt + 1, 0
            else:
                self.k += 1
            self.last_time = t
            if (self.attempt, self.k) == self.unplug_at:
                self.unplug_at = "gone"
            task = self.env.task
            a = np.clip((self.target(task) - task.tcp) / task.action.step_pos, -1, 1)
            x, y, z = a  # base frame -> HID (x right, y toward the operator, z down)
            self.queue.append(axes_report(counts(-y), counts(-x), counts(-z)))
            button = self.plan.get((self.attempt, self.k))
            if button:
                self.queue += [button_report(PRO_BUTTONS[button]), button_report(0)]
        if self.unplug_at == "gone":
            raise OSError("read error")
        return self.queue.pop(0) if self.queue else b""


def operator(env, target=lambda task: task.goal, **kw):
    hid = OperatorHID(env, target, **kw)
    return SpaceMouse(device="SpaceMouseProWireless", hid_device=hid, deadzone=DEADZONE,
                      axes=("x", "y", "z")), hid


def test_collect_with_events_labels_seeds_and_replay(tmp_path):
    env_id = "robot_rl/PandaReach-v0"
    env = gym.make(env_id)
    plan = {(0, 2): "rerecord", (2, 2): "discard", (3, 3): "failure", (4, 3): "success"}
    teleop, hid = operator(env, plan=plan)
    out = tmp_path / "demos"
    stats = collect(env_id, teleop, episodes=2, out=str(out), only_success=True, seed=10,
                    realtime=False, view=False, progress=False, env=env)
    assert {k: stats[k] for k in ("episodes", "attempts", "successes", "rerecorded",
                                  "discarded", "failures_dropped")} == dict(
        episodes=2, attempts=5, successes=2, rerecorded=1, discarded=1, failures_dropped=1)

    ds = LeRobotDataset(out)
    assert ds.num_episodes == 2
    assert ds.tasks == [env.unwrapped.task.instruction]
    assert read_meta(out)["env_id"] == env_id
    assert ds.features["label.success"]["dtype"] == "bool"
    assert ds.features["episode_seed"]["dtype"] == "int64"
    e0, e1 = ds.episode(0), ds.episode(1)
    # episode 0: the rerecorded seed, driven to the goal; the env ended it as a success
    assert set(e0["episode_seed"]) == {10}
    assert e0["next.success"][-1] and e0["next.terminated"][-1] and not e0["next.success"][:-1].any()
    assert not e0["label.success"].any()  # the success observation comes after the last frame
    assert not e0["intervention"].any()
    # episode 1 (seed 13; 11 discarded, 12 failed): the operator pressed success on report 3
    assert set(e1["episode_seed"]) == {13}
    assert e1["label.success"][-1] and not e1["label.success"][:-1].any()
    assert e1["next.success"][-1] and e1["next.terminated"][-1] and e1["next.reward"][-1] >= 1.0
    np.testing.assert_allclose(e1["action"][-1], 0.0)  # the success step holds still
    assert len(e1["action"]) == 4  # steps on the reset report and reports 1, 2; then the hold

    for k in (0, 1):
        rep = replay_episode(out, k)
        assert rep["seed"] == (10, 13)[k] and rep["steps"] == len(ds.episode(k)["action"])
        assert rep["max_abs_diff"] < 1e-5, rep
    rep = replay_episode(out, 0)
    assert rep["recorded_success"] and rep["replayed_success"]

    # the CLI's replay subcommand
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["replay", str(out), "--episode", "1", "--env", env_id])
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert args.func(args) == 0
    assert json.loads(buf.getvalue())["max_abs_diff"] < 1e-5


def test_collect_vision_env_writes_videos_and_survives_device_loss(tmp_path):
    env_id = "robot_rl/PandaPickCubeVision-v0"
    env = gym.make(env_id, image_size=64)
    teleop, hid = operator(env, target=lambda task: task.cube_pos + [0, 0, 0.05],
                           plan={(0, 4): "failure"}, unplug_at=(1, 3))
    out = tmp_path / "vision"
    with pytest.raises(DeviceLostError, match="1 saved episode"):
        collect(env_id, teleop, episodes=3, out=str(out), realtime=False, view=False,
                progress=False, env=env)
    ds = LeRobotDataset(out)  # the saved episode is intact
    assert ds.num_episodes == 1
    assert sorted(ds.video_keys) == ["observation.images.front", "observation.images.wrist"]
    ep = ds.episode(0)
    T = len(ep["action"])
    assert T == 4 and ep["observation.images.front"].shape == (T, 64, 64, 3)
    assert ep["next.done"][-1] and not ep["next.terminated"][-1] and not ep["next.success"].any()
    assert ep["action"].shape == (T, 4)
    np.testing.assert_allclose(ep["action"][:, 3], -1.0)  # gripper never touched: stays open
    assert list((out / "videos").rglob("*.mp4"))


def test_collect_cli_missing_device_fails_before_writing(tmp_path):
    import hid
    if any(True for _ in hid.enumerate(0x256F)) or any(True for _ in hid.enumerate(0x046D)):
        pytest.skip("a 3Dconnexion device is attached to this machine")
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "never"
    args = parser.parse_args(["collect", "--env", "robot_rl/PandaReach-v0", "--teleop",
                              "spacemouse", "--episodes", "2", "--out", str(out),
                              "--only-success", "--teleop-arg", "deadzone=0.2"])
    assert args.only_success and args.episodes == 2
    with pytest.raises(DeviceNotFoundError, match="no supported SpaceMouse found"):
        args.func(args)
    assert not out.exists()
