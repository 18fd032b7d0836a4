"""InterventionWrapper on real sim envs, with the operator injected as raw SpaceMouse HID
reports (the lowest device layer), including a short real training run whose interventions
are counted in both replay buffers and in a saved LeRobot dataset."""
from __future__ import annotations

import struct

import gymnasium as gym
import numpy as np
import pytest

import robot_rl  # noqa: F401
from robot_rl.hardware.intervention import InterventionWrapper
from robot_rl.hardware.task import ActionConfig
from robot_rl.hardware.teleop import DeviceLostError, teleop_to_action
from robot_rl.hardware.hal import TeleopCommand
from robot_rl.hardware.teleop.spacemouse import SpaceMouse
from faults import RaisesOnStep

FULL = 350  # SpaceMouse counts at full deflection


def axes_report(x=0, y=0, z=0, rx=0, ry=0, rz=0) -> bytes:
    return bytes([1]) + struct.pack("<6h", x, y, z, rx, ry, rz)


def button_report(byte1=0) -> bytes:
    return bytes([3, byte1, 0, 0, 0])


def base_to_hid(v: np.ndarray) -> tuple[int, int, int]:
    """A base-frame (REP-103) translation direction as HID counts (x right, y toward the
    operator, z down) for an operator behind the robot."""
    x, y, z = v
    return int(round(-y * FULL)), int(round(-x * FULL)), int(round(-z * FULL))


class QueueHID:
    """Raw HID device handing out queued reports."""

    def __init__(self):
        self.reports: list[bytes] = []
        self.unplugged = False

    def read(self, size):
        if self.unplugged:
            raise OSError("read error")
        return self.reports.pop(0) if self.reports else b""


class ScriptedOperatorHID:
    """A scripted operator on a SpaceMouse: once per env step (it watches the sim clock) it
    emits one HID report, pushing toward the goal on every `every`-th step and releasing the
    cap otherwise. Counts the pushes it made."""

    def __init__(self, env, every: int = 3):
        self.env, self.every = env.unwrapped, every
        self.last_time = None
        self.reports = 0
        self.pushes = 0

    def read(self, size):
        t = float(self.env.world.data.time)
        if t == self.last_time:
            return b""
        self.last_time = t
        self.reports += 1
        task = self.env.task
        d = task.goal - task.tcp
        if self.reports % self.every == 0 and np.abs(d).max() > 1e-9:
            self.pushes += 1
            return axes_report(*base_to_hid(0.8 * d / np.abs(d).max()))
        return axes_report()


def test_teleop_to_action_maps_dofs_gripper_and_ee_frame():
    cmd = TeleopCommand(delta6=np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), gripper=None,
                        intervene=False)
    cfg = ActionConfig(dofs=("x", "z", "yaw"), gripper=True)
    a = teleop_to_action(cmd, cfg, gripper=-1.0)
    assert a.dtype == np.float32
    np.testing.assert_allclose(a, [0.1, 0.3, 0.6, -1.0], atol=1e-7)
    ee = ActionConfig(dofs=("x", "y", "z"), gripper=False, frame="ee")
    down = np.array([1.0, 0.0, 0.0, 0.0])  # xyzw: 180 deg about x, the tool pointing down
    up = TeleopCommand(delta6=np.array([0, 0, 1.0, 0, 0, 0]), gripper=None, intervene=False)
    np.testing.assert_allclose(teleop_to_action(up, ee, 0.0, tcp_quat=down), [0, 0, -1], atol=1e-7)


def test_operator_takes_over_and_gives_back():
    env = gym.make("robot_rl/PandaPickCube-v0")
    hid = QueueHID()
    w = InterventionWrapper(env, SpaceMouse(device="SpaceMouseWireless", hid_device=hid))
    obs, info = w.reset(seed=3)
    assert info["intervention"] is False
    policy = np.array([0.0, 0.5, 0.0, 0.8], np.float32)

    _, _, _, _, info = w.step(policy)  # device at rest: the policy acts
    assert info["intervention"] is False and "intervene_action" not in info
    np.testing.assert_allclose(info["action"], policy)

    hid.reports.append(axes_report(y=-FULL))  # operator pushes forward
    _, _, _, _, info = w.step(policy)
    assert info["intervention"] is True
    a = info["intervene_action"]
    assert a.dtype == np.float32 and a.shape == w.action_space.shape
    # arm from the operator; the gripper stays where the policy left it (0.8)
    np.testing.assert_allclose(a, [1.0, 0.0, 0.0, 0.8], atol=1e-6)
    np.testing.assert_allclose(info["action"], a)  # it is what the env executed
    np.testing.assert_allclose(info["policy_action"], policy)

    hid.reports.append(axes_report())  # released
    _, _, _, _, info = w.step(policy)
    assert info["intervention"] is False

    # a gripper click alone is an intervention; the toggle flips the real (policy) state
    hid.reports += [button_report(1), button_report(0)]
    _, _, _, _, info = w.step(policy)
    assert info["intervention"] is True
    np.testing.assert_allclose(info["intervene_action"], [0, 0, 0, -1.0], atol=1e-6)

    # small motion inside the deadzone is not
    hid.reports.append(axes_report(y=-10))
    _, _, _, _, info = w.step(policy)
    assert info["intervention"] is False
    # an episode event is passed on, but is not a takeover
    hid.reports += [axes_report(), button_report(2), button_report(0)]
    _, _, _, _, info = w.step(policy)
    assert info["intervention"] is False and info["teleop_events"] == ["success"]
    assert w.total_steps == 6 and w.total_interventions == 2
    assert w.intervention_rate == pytest.approx(2 / 6)
    w.close()


def test_device_lost_mid_run_ends_episode_then_reset_fails_clearly():
    env = gym.make("robot_rl/PandaReach-v0")
    hid = QueueHID()
    w = InterventionWrapper(env, SpaceMouse(device="SpaceMouseWireless", hid_device=hid))
    w.reset(seed=0)
    w.step(np.zeros(3, np.float32))
    hid.unplugged = True
    with pytest.warns(UserWarning, match="teleop device lost"):
        _, _, term, trunc, info = w.step(np.zeros(3, np.float32))
    assert trunc is True and info["teleop_lost"] is True and info["intervention"] is False
    with pytest.raises(DeviceLostError, match="lost during the previous episode"):
        w.reset(seed=1)
    w.close()

    hid2 = QueueHID()
    w2 = InterventionWrapper(gym.make("robot_rl/PandaReach-v0"),
                             SpaceMouse(device="SpaceMouseWireless", hid_device=hid2),
                             on_lost="continue")
    w2.reset(seed=0)
    hid2.unplugged = True
    with pytest.warns(UserWarning):
        assert w2.step(np.zeros(3, np.float32))[3] is True
    w2.reset(seed=1)  # carries on without the operator
    _, _, _, trunc, info = w2.step(np.zeros(3, np.float32))
    assert not trunc and info["intervention"] is False and "teleop_lost" not in info
    w2.close()


def test_bad_construction_is_a_clear_error():
    with pytest.raises(TypeError, match="poll"):
        InterventionWrapper(gym.make("robot_rl/PandaReach-v0"), object())
    with pytest.raises(ValueError, match="RobotEnv"):
        InterventionWrapper(gym.make("CartPole-v1"),
                            SpaceMouse(device="SpaceMouseWireless", hid_device=QueueHID()))


@pytest.mark.timeout(120)
def test_training_run_with_scripted_operator_keeps_every_intervention(tmp_path):
    from robot_rl.collect import EpisodeRecorder
    from robot_rl.data.lerobot import LeRobotDataset
    from robot_rl.train import Trainer, load_config
    cfg = load_config("config/reach.yaml", [
        "env.id=robot_rl/PandaReach-v0", "agent.num_critics=2", "agent.hidden_dims=[32, 32]",
        "agent.batch_size=32", "agent.utd_ratio=1", "demos.scripted_episodes=2",
        "train.warmup_steps=20", "train.eval_every=100000", "train.eval_episodes=1",
        "train.video=false", "train.checkpoint_every=100000", "train.total_env_steps=200",
        "train.torch_threads=1", f"runs_dir={tmp_path}"])
    trainer = Trainer(cfg, progress=False)
    trainer.env.close()
    env = gym.make(cfg.env.id)
    operator = ScriptedOperatorHID(env, every=3)
    recorder = EpisodeRecorder(tmp_path / "interventions", env, env_id=cfg.env.id)
    wrapped = InterventionWrapper(env, SpaceMouse(device="SpaceMouseWireless",
                                                  hid_device=operator), recorder=recorder)
    trainer.env = wrapped
    n_demo = len(trainer.demo)
    trainer.run()
    wrapped.close()  # flushes the episode in progress to the dataset

    produced = operator.pushes
    assert 40 <= produced <= 80  # one push every 3rd step of 200 (minus resets)
    assert wrapped.total_interventions == produced
    assert wrapped.intervention_rate == pytest.approx(produced / 200)

    online = trainer.online.get(trainer.online.valid_ids())
    assert len(online["intervention"]) == 200
    assert int(online["intervention"].sum()) == produced
    demo = trainer.demo.get(trainer.demo.valid_ids())
    assert int(demo["intervention"].sum()) == produced
    assert len(demo["intervention"]) == n_demo + produced

    ds = LeRobotDataset(tmp_path / "interventions")
    assert ds.num_frames == 200
    flags = [ds.episode(e)["intervention"] for e in range(ds.num_episodes)]
    assert int(sum(f.sum() for f in flags)) == produced
    # the executed (operator) actions are what the dataset and the online buffer hold
    acts = np.concatenate([ds.episode(e)["action"] for e in range(ds.num_episodes)])
    np.testing.assert_allclose(acts, online["action"], atol=1e-6)


def _recording_trainer(tmp_path, resume: bool, fail_at: int | None = None, every: int = 3,
                       wrap=None):
    """A Trainer whose env is the sim arm with a scripted SpaceMouse operator and
    `record_interventions`-style recording into tmp_path/interventions."""
    from robot_rl.collect import EpisodeRecorder
    from robot_rl.train import Trainer, load_config
    cfg = load_config("config/reach.yaml", [
        "env.id=robot_rl/PandaReach-v0", "agent.num_critics=2", "agent.hidden_dims=[32, 32]",
        "agent.batch_size=32", "agent.utd_ratio=1", "demos.scripted_episodes=2",
        "train.warmup_steps=20", "train.eval_every=100000", "train.eval_episodes=1",
        "train.video=false", "train.checkpoint_every=100000", "train.total_env_steps=200",
        "train.torch_threads=1", f"runs_dir={tmp_path}", "name=rec"])
    trainer = Trainer(cfg, run_dir=tmp_path / "rec", resume=resume, progress=False)
    trainer.env.close()
    env = gym.make(cfg.env.id)
    operator = ScriptedOperatorHID(env, every=every)
    inner = env if wrap is None else wrap(env)
    recorder = EpisodeRecorder(tmp_path / "interventions", env, env_id=cfg.env.id)
    trainer.env = InterventionWrapper(inner, SpaceMouse(device="SpaceMouseWireless",
                                                        hid_device=operator), recorder=recorder)
    return trainer


def test_resume_with_recording_records_no_episode_twice(tmp_path):
    """A robot error at step 130 (mid-episode) saves a checkpoint and the episode in progress;
    the resumed run records the rest. Every env step is one dataset frame and one online
    transition, and no episode (seed) is in the dataset twice."""
    from robot_rl.data.lerobot import LeRobotDataset
    first = _recording_trainer(
        tmp_path, resume=False,
        wrap=lambda e: RaisesOnStep(e, 130, RuntimeError("FrankaError: communication_constraints_violation")))
    with pytest.raises(RuntimeError, match="communication_constraints"):
        first.run()
    second = _recording_trainer(tmp_path, resume=True)
    assert second.step == 129
    second.run()
    ds = LeRobotDataset(tmp_path / "interventions")
    seeds = [int(ds.episode(e)["episode_seed"][0]) for e in range(ds.num_episodes)]
    assert len(seeds) == len(set(seeds)), seeds
    assert ds.num_frames == 200 == len(second.online)


def test_a_lost_connection_stores_no_transition(tmp_path):
    """The robot drops mid-episode while the operator is intervening: the episode ends at the
    last real step; no stand-in transition (previous observation, reward 0) reaches the
    online buffer, the demo buffer or the dataset."""
    from robot_rl.data.lerobot import LeRobotDataset
    from robot_rl.hardware.safety import ConnectionGuard, ConnectionLostError
    trainer = _recording_trainer(
        tmp_path, resume=False, every=1,
        wrap=lambda e: ConnectionGuard(RaisesOnStep(e, 30, ConnectionLostError("no fresh state"))))
    n_demo = len(trainer.demo)
    trainer.run()
    trainer.env.close()
    online = trainer.online.get(trainer.online.valid_ids())
    # 200 steps counted, all real: none repeats its observation as the next one
    assert len(online["reward"]) == 200 == trainer.step
    same = [np.array_equal(online["obs"]["state"][i], online["next_obs"]["state"][i])
            for i in range(200)]
    assert not any(same)
    demo = trainer.demo.get(trainer.demo.valid_ids())
    assert len(demo["reward"]) - n_demo == int(online["intervention"].sum())
    ds = LeRobotDataset(tmp_path / "interventions")
    assert ds.num_frames == 200
    ends = np.cumsum([len(ds.episode(e)["action"]) for e in range(ds.num_episodes)])
    cut = ds.episode(int(np.flatnonzero(ends == 29)[0]))  # the lost step was the 30th
    assert bool(cut["next.done"][-1]) and not bool(cut["next.terminated"][-1])
