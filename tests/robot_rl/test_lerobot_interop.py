"""LeRobot datasets both ways, against the real `lerobot` 0.6.1.

lerobot needs Python >= 3.12, so it lives in its own venv (`.venv-lerobot`, made by
`bash scripts/setup_lerobot.sh`; override the interpreter with $ROBOT_RL_LEROBOT_PYTHON) and
runs `tests/robot_rl/lerobot_peer.py` as a subprocess; the two sides meet only in files on
disk. Without that venv these tests FAIL (CI creates it), they do not skip.

* LeRobot -> us: a dataset written by `LeRobotDataset.create/add_frame/save_episode` in its
  HIL-SERL layout (`next.reward`, `next.done`, `complementary_info.*`, channel-first images,
  as video and as PNG `image` features) trains as our demos: `iter_transitions` yields the
  transitions that were written (values checked), with what it derived reported.
* us -> LeRobot: a dataset we write from a gymnasium env (through a user's
  ObservationWrapper) reads back in LeRobot frame for frame, and its quantile stats drive
  LeRobot's QUANTILES normalizer; an AV1 dataset LeRobot wrote, appended to by us, still does.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pyarrow.parquet as pq
import pytest

from robot_rl.data.episodes import (derived_fields, iter_transitions, make_frame,
                                    open_writer)
from robot_rl.data.lerobot import LeRobotDataset, LeRobotDatasetWriter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lerobot_peer as peer  # noqa: E402  (data generator shared with the LeRobot side)

PEER_TIMEOUT_S = 300
# Lossy video (yuv420p halves chroma resolution, which costs most on tiny 32x32 frames):
# measured 3.1 (h264) and 4.0 (AV1) mean abs error (0..255), worst pixel 30.
VIDEO_MAE = 6.0
VIDEO_MAX = 48


def run_peer(python: str, *args: str) -> dict:
    r = subprocess.run([python, str(HERE / "lerobot_peer.py"), *map(str, args)],
                       capture_output=True, text=True, timeout=PEER_TIMEOUT_S)
    assert r.returncode == 0, f"lerobot side failed ({args}):\n{r.stderr[-4000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def assert_video_close(got: np.ndarray, want: np.ndarray) -> None:
    err = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert err.mean() < VIDEO_MAE and err.max() <= VIDEO_MAX, (err.mean(), err.max())


# ------------------------------------------------------------------ LeRobot -> us
RL_CASES = {
    # LeRobot's HIL-SERL recorder: AV1 video, channel-first, our default naming.
    "video": dict(dtype="video", image_key="observation.images.front", key_map=None),
    # use_videos=False: PNG bytes in parquet; its names differ from the env's keys.
    "image": dict(dtype="image", image_key="observation.image",
                  key_map={"observation.image": "front", "observation.state": "state"}),
}


@pytest.mark.parametrize("case", sorted(RL_CASES))
def test_lerobot_rl_dataset_trains_as_demos(lerobot_python, tmp_path, caplog, case):
    c = RL_CASES[case]
    root = tmp_path / "rl"
    info = run_peer(lerobot_python, "write-rl", root, "--dtype", c["dtype"],
                    "--image-key", c["image_key"], "--chw")
    assert info == {"episodes": len(peer.EPISODES), "frames": sum(n for n, _ in peer.EPISODES)}

    ds = LeRobotDataset(root)
    assert ds.features[c["image_key"]]["shape"] == [3, peer.H, peer.W]  # as LeRobot declared
    assert ds.camera_keys == [c["image_key"]]
    assert ds.episode(0)[c["image_key"]].shape == (peer.EPISODES[0][0], peer.H, peer.W, 3)
    assert ds[1][c["image_key"]].shape == (peer.H, peer.W, 3)
    for i in range(ds.num_episodes):  # every frame, in our HWC
        want, got = peer.rl_episode(i)["image"], ds.episode(i)[c["image_key"]]
        if c["dtype"] == "image":
            np.testing.assert_array_equal(got, want)  # PNG is lossless
        else:
            assert_video_close(got, want)

    # Without a time limit every done is a real end; with one (and a sparse reward) an
    # episode that stops at the limit without reward is a truncation.
    for limit in (None, 6):
        caplog.clear()
        derived: dict = {}
        with caplog.at_level(logging.WARNING, logger="robot_rl.data.episodes"):
            trs = list(iter_transitions(ds, ["state", "front"], key_map=c["key_map"],
                                        max_episode_steps=limit, sparse_reward=True,
                                        derived=derived))
        assert set(derived) >= {"next.terminated", "intervention"}
        if limit:  # success (sparse reward) is what tells a success at the limit
            assert derived == derived_fields(ds.features, limit, True)
            assert derived["next.success"] == "next.reward > 0 (sparse task)"
        note = " ".join(r.getMessage() for r in caplog.records)
        assert "next.terminated derived as" in note and "intervention derived as False" in note

        expected = []
        for e, (n, last_reward) in enumerate(peer.EPISODES):
            d = peer.rl_episode(e)
            ended = not (limit and n >= limit and last_reward <= 0)
            for t in range(n if ended else n - 1):
                nxt = min(t + 1, n - 1)
                expected.append((d, t, nxt, ended and t == n - 1))
        assert len(trs) == len(expected)
        for tr, (d, t, nxt, terminated) in zip(trs, expected):
            np.testing.assert_array_equal(tr["obs"]["state"], d["state"][t])
            np.testing.assert_array_equal(tr["next_obs"]["state"], d["state"][nxt])
            np.testing.assert_array_equal(tr["action"], d["action"][t])
            assert tr["reward"] == float(d["reward"][t])
            assert tr["terminated"] is terminated and tr["truncated"] is False
            assert tr["intervention"] is False and tr["next_obs_stored"] is (t < len(d["action"]) - 1)
            assert tr["obs"]["front"].shape == (peer.H, peer.W, 3)
            if c["dtype"] == "image":
                np.testing.assert_array_equal(tr["obs"]["front"], d["image"][t])
                np.testing.assert_array_equal(tr["next_obs"]["front"], d["image"][nxt])
        assert sum(tr["terminated"] for tr in trs) == (3 if limit is None else 2)

    # A missing key keeps its clear error, naming what the dataset has.
    with pytest.raises(ValueError, match=r"lacks .*observation\.images\.wrist.*it has"):
        list(iter_transitions(ds, ["state", "wrist"], key_map=c["key_map"]))


def test_replay_derives_success_of_a_lerobot_layout_dataset(tmp_path):
    """`robot-rl replay` on a dataset without next.success / next.terminated (LeRobot's RL
    layout): success is read from the sparse reward, and the result says it was derived."""
    from robot_rl.collect import replay_episode
    env_id = "robot_rl/PandaReach-v0"
    env = gym.make(env_id)
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    feats = {"observation.joints": {"dtype": "float32", "shape": list(obs["state"].shape), "names": None},
             "action": {"dtype": "float32", "shape": list(env.action_space.shape), "names": None},
             "next.reward": {"dtype": "float32", "shape": [1], "names": None},
             "next.done": {"dtype": "bool", "shape": [1], "names": None},
             "episode_seed": {"dtype": "int64", "shape": [1], "names": None}}
    rewards = []
    with LeRobotDatasetWriter(tmp_path / "ds", 10, feats) as w:
        for t in range(5):
            a = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
            nxt, r, term, trunc, info = env.step(a)
            rewards.append(r)
            w.add_frame({"observation.joints": obs["state"], "action": a, "next.reward": r,
                         "next.done": t == 4, "episode_seed": 3}, "reach")
            obs = nxt
        w.save_episode()
    env.close()
    with pytest.raises(ValueError, match="lacks"):
        replay_episode(tmp_path / "ds", 0, env_id)
    res = replay_episode(tmp_path / "ds", 0, env_id, key_map={"observation.joints": "state"})
    assert res["derived"] == {"next.success": "next.reward > 0 (sparse task)"}
    assert res["recorded_success"] is (rewards[-1] > 0)
    assert res["steps"] == 5 and res["seed"] == 3 and res["max_abs_diff"] < 1e-6


# ------------------------------------------------------------------ us -> LeRobot
class _BoxEnv(gym.Env):
    """A user's env: one flat Box observation; renders a moving gradient."""

    metadata = {"render_fps": 15}
    robot_type = "so100"

    def __init__(self):
        self.observation_space = gym.spaces.Box(-5, 5, (8,), np.float32)
        self.action_space = gym.spaces.Box(-1, 1, (3,), np.float32)
        self._t, self._ep = 0, 0
        self._rng = np.random.default_rng(0)

    def _obs(self):
        return self._rng.normal(size=8).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        self._ep += 1
        return self._obs(), {}

    def step(self, action):
        self._t += 1
        success = self._t == 6 and self._ep % 2 == 1
        return self._obs(), float(success), success, self._t >= 8 and not success, {"is_success": success}

    def image(self):
        return peer.rl_image(self._ep, self._t)


class _DictObs(gym.ObservationWrapper):
    """The user's wrapper: Box -> Dict with a state, a goal vector and a camera."""

    def __init__(self, env):
        super().__init__(env)
        self.observation_space = gym.spaces.Dict({
            "state": gym.spaces.Box(-5, 5, (5,), np.float32),
            "desired_goal": gym.spaces.Box(-5, 5, (3,), np.float32),
            "front": gym.spaces.Box(0, 255, (peer.H, peer.W, 3), np.uint8)})

    def observation(self, obs):
        return {"state": obs[:5], "desired_goal": obs[5:], "front": self.env.unwrapped.image()}


def record(root, env, episodes: int, **kw) -> list[dict]:
    """Episodes of `env` written with open_writer/make_frame; returns the frames written."""
    frames = []
    rng = np.random.default_rng(1)
    with open_writer(root, env, **kw) as w:
        for _ in range(episodes):
            obs, _ = env.reset()
            done = False
            while not done:
                a = rng.uniform(-1, 1, 3).astype(np.float32)
                nxt, r, term, trunc, info = env.step(a)
                f = make_frame(obs, a, r, term, trunc, info["is_success"])
                w.add_frame(f, "reach the goal")
                frames.append(f)
                obs, done = nxt, term or trunc
            w.save_episode()
    return frames


def test_open_writer_uses_the_outermost_env(tmp_path):
    """Regression: a user's ObservationWrapper turning a Box into a Dict broke open_writer
    (`'Box' object has no attribute 'spaces'`: it read env.unwrapped's space)."""
    env = _DictObs(_BoxEnv())
    frames = record(tmp_path / "ds", env, 1)
    ds = LeRobotDataset(tmp_path / "ds")
    assert ds.info["robot_type"] == "so100" and ds.fps == 15
    assert ds.features["observation.desired_goal"]["dtype"] == "float32"   # a vector, not a camera
    assert ds.features["observation.images.front"]["dtype"] == "video"
    assert "observation.images.desired_goal" not in ds.features
    ep = ds.episode(0)
    np.testing.assert_array_equal(ep["observation.desired_goal"],
                                  np.stack([f["observation.desired_goal"] for f in frames]))
    trs = list(iter_transitions(ds, list(env.observation_space.spaces),
                                observation_space=env.observation_space))
    assert len(trs) == len(frames) - (0 if frames[-1]["next.terminated"] else 1)
    np.testing.assert_array_equal(trs[0]["obs"]["desired_goal"], frames[0]["observation.desired_goal"])
    with pytest.raises(ValueError, match="dict observations"):
        open_writer(tmp_path / "box", _BoxEnv())


def test_our_dataset_reads_in_lerobot_frame_for_frame(lerobot_python, tmp_path):
    env = _DictObs(_BoxEnv())
    root = tmp_path / "ours"
    frames = record(root, env, 3)
    stats = json.loads((root / "meta/stats.json").read_text())
    for k in ("observation.state", "action", "observation.images.front"):
        assert {"q01", "q10", "q50", "q90", "q99"} <= set(stats[k]), k

    info = run_peer(lerobot_python, "read", root, tmp_path / "lr.npz")
    assert info["total_frames"] == len(frames) and info["total_episodes"] == 3
    assert info["video_keys"] == ["observation.images.front"] and info["robot_type"] == "so100"
    lr = np.load(tmp_path / "lr.npz")
    for k in ("observation.state", "observation.desired_goal", "action"):
        np.testing.assert_array_equal(lr[k], np.stack([f[k] for f in frames]))
    for k in ("next.reward", "next.done", "next.terminated", "next.success", "intervention"):
        np.testing.assert_array_equal(lr[k].reshape(-1), np.array([f[k] for f in frames]).astype(lr[k].dtype))
    px = np.round(lr["observation.images.front"] * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert_video_close(px, np.stack([f["observation.images.front"] for f in frames]))
    ours = LeRobotDataset(root)
    np.testing.assert_allclose(  # the same decode on both sides, within rounding
        px.astype(int), np.concatenate([ours.episode(e)["observation.images.front"]
                                        for e in range(3)]).astype(int), atol=1)
    # QUANTILES normalization from the stats we wrote: q01 -> -1, q99 -> +1.
    q01, q99 = np.asarray(stats["observation.state"]["q01"]), np.asarray(stats["observation.state"]["q99"])
    state = np.stack([f["observation.state"] for f in frames]).astype(np.float64)
    np.testing.assert_allclose(lr["quantile_normalized_state"], 2 * (state - q01) / (q99 - q01) - 1,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(lr["stats|observation.state|q50"], stats["observation.state"]["q50"])


def test_append_to_lerobot_av1_dataset_keeps_codec_and_quantiles(lerobot_python, tmp_path):
    root = tmp_path / "rl"
    run_peer(lerobot_python, "write-rl", root, "--dtype", "video", "--chw")
    ds = LeRobotDataset(root)
    assert ds.features["observation.images.front"]["info"]["video.codec"] == "av1"
    # Our side declares the camera HWC without names, as features_for does.
    feats = {k: dict(v) for k, v in ds.features.items() if k != "observation.images.front"}
    for v in feats.values():
        v["names"] = None
    feats["observation.images.front"] = {"dtype": "video", "shape": [peer.H, peer.W, 3], "names": None}
    d = peer.rl_episode(0)
    n = 4
    with LeRobotDatasetWriter(root, peer.FPS, feats) as w:
        assert w.video_codec == "libsvtav1"  # matched the dataset's AV1
        for t in range(n):
            w.add_frame({"observation.state": d["state"][t] + 1, "action": d["action"][t],
                         "observation.images.front": d["image"][t], "next.reward": 0.0,
                         "next.done": t == n - 1,
                         "complementary_info.discrete_penalty": d["penalty"][t]}, peer.TASK)
        w.save_episode()
    info = json.loads((root / "meta/info.json").read_text())
    assert info["features"]["observation.images.front"]["shape"] == [3, peer.H, peer.W]
    # stats.json quantiles = count-weighted mean of the per-episode ones, ours included.
    eps = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert len(eps) == 4
    stats = json.loads((root / "meta/stats.json").read_text())
    counts = np.array([e["stats/observation.state/count"][0] for e in eps], float)
    for q in ("q01", "q10", "q50", "q90", "q99"):
        per_ep = np.array([e[f"stats/observation.state/{q}"] for e in eps])
        np.testing.assert_allclose(stats["observation.state"][q],
                                   (per_ep * counts[:, None]).sum(0) / counts.sum(), rtol=1e-9)
        assert np.asarray(stats["observation.images.front"][q]).shape == (3, 1, 1)
    np.testing.assert_allclose(eps[3]["stats/observation.state/q50"],
                               np.quantile(d["state"][:n] + 1, 0.5, axis=0), rtol=1e-6)

    lr_info = run_peer(lerobot_python, "read", root, tmp_path / "lr.npz")
    total = sum(m for m, _ in peer.EPISODES) + n
    assert lr_info["total_episodes"] == 4 and lr_info["total_frames"] == total
    lr = np.load(tmp_path / "lr.npz")
    np.testing.assert_array_equal(lr["observation.state"][-n:], d["state"][:n] + 1)
    px = np.round(lr["observation.images.front"][-n:] * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert_video_close(px, d["image"][:n])
    assert np.isfinite(lr["quantile_normalized_state"]).all()


def test_our_image_dtype_dataset_reads_in_lerobot(lerobot_python, tmp_path):
    """`image` features we write (PNG bytes in parquet, channel-first declared as LeRobot's
    recorder does) are LeRobot's own `use_videos=False` layout: it decodes them losslessly."""
    feats = {"observation.state": {"dtype": "float32", "shape": [peer.STATE_DIM], "names": None},
             "observation.images.front": {"dtype": "image", "shape": [3, peer.H, peer.W],
                                          "names": ["channels", "height", "width"]},
             "action": {"dtype": "float32", "shape": [peer.ACTION_DIM], "names": None}}
    data = [peer.rl_episode(e) for e in range(2)]
    with LeRobotDatasetWriter(tmp_path / "ours", peer.FPS, feats) as w:
        for d in data:
            for t in range(len(d["action"])):
                img = d["image"][t] if t % 2 else d["image"][t].transpose(2, 0, 1)  # either layout
                w.add_frame({"observation.state": d["state"][t], "action": d["action"][t],
                             "observation.images.front": img}, peer.TASK)
            w.save_episode()
    ours = LeRobotDataset(tmp_path / "ours")
    np.testing.assert_array_equal(ours.episode(1)["observation.images.front"], data[1]["image"])
    info = run_peer(lerobot_python, "read", tmp_path / "ours", tmp_path / "lr.npz")
    assert info["image_keys"] == ["observation.images.front"] and info["video_keys"] == []
    lr = np.load(tmp_path / "lr.npz")
    px = np.round(lr["observation.images.front"] * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(px, np.concatenate([d["image"] for d in data]))
    np.testing.assert_array_equal(lr["observation.state"], np.concatenate([d["state"] for d in data]))
    assert np.asarray(lr["stats|observation.images.front|q50"]).shape == (3, 1, 1)
