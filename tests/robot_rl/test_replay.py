"""Tests for robot_rl.data.buffer (real numpy storage, no mocks)."""

import numpy as np
import pytest
import torch

from robot_rl.data.buffer import MixedSampler, ReplayBuffer, normalize_obs_spec, place_frames

IMG = (128, 128, 3)


def _obs(ep, t, img_shape=(8, 8, 3), cams=("front",)):
    o = {"state": np.array([ep, t, 0.5], dtype=np.float32)}
    for i, c in enumerate(cams):
        o[c] = np.full(img_shape, (ep * 16 + t + i * 7) % 256, dtype=np.uint8)
    return o


def _spec(img_shape=(8, 8, 3), cams=("front",)):
    s = {"state": ((3,), np.float32)}
    for c in cams:
        s[c] = (img_shape, np.uint8)
    return s


def _fill(buf, lengths, ep0=0, endings=None, img_shape=(8, 8, 3), cams=("front",), is_demo=None):
    """Insert episodes; episode k has lengths[k] steps; obs encodes (episode, t)."""
    for k, T in enumerate(lengths):
        ep = ep0 + k
        end = (endings or ["terminated"] * len(lengths))[k]
        for t in range(T):
            last = t == T - 1
            buf.insert(
                _obs(ep, t, img_shape, cams),
                np.full(buf.action_dim, t / 10.0, np.float32),
                float(ep * 100 + t),
                _obs(ep, t + 1, img_shape, cams),
                terminated=last and end == "terminated",
                truncated=last and end == "truncated",
                info={"intervention": t % 2 == 1, "grasp_penalty": -0.02 * t},
                is_demo=is_demo,
            )


def _check_consistent(batch):
    s, ns = batch["obs"]["state"], batch["next_obs"]["state"]
    np.testing.assert_array_equal(ns[:, 0], s[:, 0])  # same episode
    np.testing.assert_array_equal(ns[:, 1], s[:, 1] + 1)  # consecutive steps
    np.testing.assert_array_equal(batch["reward"], s[:, 0] * 100 + s[:, 1])
    for key in batch["obs"]:
        if key == "state":
            continue
        off = 7 * (["front", "wrist"].index(key))
        np.testing.assert_array_equal(batch["obs"][key][:, 0, 0, 0], (s[:, 0] * 16 + s[:, 1] + off) % 256)
        np.testing.assert_array_equal(batch["next_obs"][key][:, 0, 0, 0], (ns[:, 0] * 16 + ns[:, 1] + off) % 256)


def test_normalize_obs_spec_forms():
    import gymnasium as gym

    space = gym.spaces.Dict(
        {"state": gym.spaces.Box(-1, 1, (4,), np.float32), "front": gym.spaces.Box(0, 255, IMG, np.uint8)}
    )
    spec = normalize_obs_spec(space)
    assert spec == {"state": ((4,), np.dtype(np.float32)), "front": (IMG, np.dtype(np.uint8))}
    assert normalize_obs_spec({"state": (4,), "front": (IMG, np.uint8)}) == spec


def test_bytes_per_transition_two_128_cameras_and_frame_sharing():
    cams = ("front", "wrist")
    buf = ReplayBuffer(2000, _spec(IMG, cams), action_dim=4)
    raw = 2 * 128 * 128 * 3
    assert buf.raw_obs_bytes() == raw
    assert buf.bytes_per_transition() <= 1.1 * raw, buf.bytes_per_transition() / raw
    # an episode of T steps uses exactly T + 1 frames (next_obs shares storage with the following obs)
    _fill(buf, [20], img_shape=IMG, cams=cams)
    assert len(buf) == 20 and buf.frames_written == 21
    _fill(buf, [10, 5], ep0=1, img_shape=IMG, cams=cams)
    assert len(buf) == 35 and buf.frames_written == 21 + 11 + 6
    _check_consistent(buf.get(buf.valid_ids()))
    # next_obs of step t and obs of step t+1 are the same frame slot
    s = buf._obs_fid[1:20]
    np.testing.assert_array_equal(s, buf._next_fid[0:19])


def test_episode_boundaries():
    buf = ReplayBuffer(100, _spec(), action_dim=2)
    _fill(buf, [3, 1, 5], endings=["terminated", "truncated", "terminated"])
    assert len(buf) == 9
    assert buf.frames_written == 4 + 2 + 6
    b = buf.get(buf.valid_ids())
    _check_consistent(b)
    t = b["obs"]["state"][:, 1]
    ep = b["obs"]["state"][:, 0]
    np.testing.assert_array_equal(ep, [0, 0, 0, 1, 2, 2, 2, 2, 2])
    np.testing.assert_array_equal(t, [0, 1, 2, 0, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(b["terminated"], [0, 0, 1, 0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(b["truncated"], [0, 0, 0, 1, 0, 0, 0, 0, 0])
    # final next_obs of each episode is its own extra frame, first obs of the next episode is fresh
    np.testing.assert_array_equal(b["next_obs"]["state"][[2, 3, 8], 1], [3, 1, 5])
    np.testing.assert_array_equal(b["intervention"], t % 2 == 1)
    np.testing.assert_allclose(b["grasp_penalty"], -0.02 * t, rtol=1e-6)
    np.testing.assert_allclose(b["action"][:, 0], t / 10.0, rtol=1e-6)


def test_reset_without_done_flag_writes_new_frame():
    buf = ReplayBuffer(10, _spec(), action_dim=1)
    buf.insert(_obs(0, 0), [0.0], 0.0, _obs(0, 1), False, False)
    buf.insert(_obs(5, 0), [0.0], 500.0, _obs(5, 1), False, False)  # obs != previous next_obs
    assert buf.frames_written == 4
    _check_consistent(buf.get(buf.valid_ids()))


def _assert_same_batch(x, y):
    assert x.keys() == y.keys()
    for k in x:
        if isinstance(x[k], dict):
            _assert_same_batch(x[k], y[k])
        else:
            assert torch.equal(torch.as_tensor(x[k]), torch.as_tensor(y[k])), k


def test_ring_wraparound_never_returns_overwritten_frames():
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(10, _spec(), action_dim=1)
    for k in range(30):
        _fill(buf, [int(rng.integers(1, 6))], ep0=k)
        assert 0 < len(buf) <= 10
        _check_consistent(buf.get(buf.valid_ids()))
        _check_consistent(buf.sample(32, rng))
    # with length-1 episodes (2 frames / transition) the frame ring limits the valid size
    buf = ReplayBuffer(10, _spec(), action_dim=1, frame_capacity=12)
    for k in range(25):
        _fill(buf, [1], ep0=k)
        _check_consistent(buf.get(buf.valid_ids()))
    assert len(buf) == 6


def test_save_load_roundtrip(tmp_path):
    buf = ReplayBuffer(16, _spec(cams=("front", "wrist")), action_dim=3)
    _fill(buf, [4, 7, 9], cams=("front", "wrist"))
    buf.insert(_obs(9, 0, cams=("front", "wrist")), np.zeros(3), 900.0, _obs(9, 1, cams=("front", "wrist")), False, False)
    path = tmp_path / "buf.npz"
    buf.save(path)
    loaded = ReplayBuffer.from_file(path)
    other = ReplayBuffer(16, _spec(cams=("front", "wrist")), action_dim=3).load(path)
    for b2 in (loaded, other):
        assert len(b2) == len(buf) and b2.frames_written == buf.frames_written
        _assert_same_batch(buf.sample(64, np.random.default_rng(7)), b2.sample(64, np.random.default_rng(7)))
    # mid-episode state survives: continuing the episode shares the frame in both
    for b2 in (buf, loaded):
        b2.insert(_obs(9, 1, cams=("front", "wrist")), np.zeros(3), 901.0, _obs(9, 2, cams=("front", "wrist")), True, False)
    assert loaded.frames_written == buf.frames_written
    _check_consistent(loaded.get(loaded.valid_ids()))


def test_mixed_sampler_exact_ratio_and_fallbacks():
    demo = ReplayBuffer(50, _spec(), action_dim=2, is_demo=True)
    online = ReplayBuffer(50, _spec(), action_dim=2)
    rng = np.random.default_rng(0)
    sampler = MixedSampler(demo, online, demo_ratio=0.5)
    with pytest.raises(ValueError):
        sampler.sample(8, rng)
    _fill(online, [5, 5], ep0=10)
    b = sampler.sample(64, rng)  # demo empty -> all online
    assert b["is_demo"].sum() == 0 and len(b["reward"]) == 64
    _fill(demo, [6, 6])
    for bs, ratio in [(256, 0.5), (64, 0.25), (10, 0.33), (7, 1.0), (9, 0.0)]:
        sampler.demo_ratio = ratio
        b = sampler.sample(bs, rng)
        assert len(b["reward"]) == bs
        assert int(b["is_demo"].sum()) == round(bs * ratio)
        assert (b["obs"]["state"][:, 0] < 10).sum() == round(bs * ratio)  # demo episodes are 0, 1
        _check_consistent(b)
    only_demo = MixedSampler(demo, None, 0.5).sample(16, rng)
    assert only_demo["is_demo"].all()
    tb = MixedSampler(demo, online, 0.5).sample(8, rng, as_torch=True)
    assert isinstance(tb["obs"]["front"], torch.Tensor) and tb["obs"]["front"].dtype == torch.uint8
    assert tb["action"].shape == (8, 2) and tb["reward"].dtype == torch.float32


def test_mixed_sampler_stacked_minibatches_keep_the_demo_ratio_each():
    """``num_batches`` minibatches sampled in one go (the UTD loop's batch): each one has its
    own demo share, demo rows first, and every transition stays consistent."""
    demo = ReplayBuffer(50, _spec(), action_dim=2, is_demo=True)
    online = ReplayBuffer(50, _spec(), action_dim=2)
    _fill(demo, [6, 6])
    _fill(online, [5, 5], ep0=10)
    sampler = MixedSampler(demo, online, demo_ratio=0.25)
    b = sampler.sample(16, np.random.default_rng(0), num_batches=5)
    assert len(b["reward"]) == 80
    _check_consistent(b)
    for i in range(5):
        is_demo = b["is_demo"][16 * i:16 * (i + 1)]
        assert is_demo.tolist() == [True] * 4 + [False] * 12
        assert (b["obs"]["state"][16 * i:16 * (i + 1), 0] < 10).tolist() == is_demo.tolist()
    stacked = sampler.sample_fn(16, np.random.default_rng(0))(3)
    assert isinstance(stacked["reward"], torch.Tensor) and stacked["reward"].shape == (48,)
    plain = online.sample_fn(16, np.random.default_rng(0))(3)
    assert plain["action"].shape == (48, 2)


def test_cached_feature_key():
    calls = []

    def feat(img):
        calls.append(1)
        return img.reshape(-1, 3).mean(0).astype(np.float16)

    buf = ReplayBuffer(20, _spec(IMG), action_dim=1, obs_transforms={"front": feat})
    assert buf.storage_spec["front"] == ((3,), np.dtype(np.float16))
    assert buf.bytes_per_transition() < 100
    calls.clear()
    _fill(buf, [4], img_shape=IMG)
    assert len(calls) == 5  # transform applied once per frame
    b = buf.sample(6, np.random.default_rng(0))
    assert b["obs"]["front"].shape == (6, 3) and b["obs"]["front"].dtype == np.float16
    np.testing.assert_array_equal(b["next_obs"]["front"][:, 0], (b["next_obs"]["state"][:, 1]).astype(np.float16))


@pytest.mark.parametrize("change,message", [
    (lambda o, a, r: ({**o, "state": np.zeros(1, np.float32)}, a, r), r"obs\['state'\] has shape \(1,\)"),
    (lambda o, a, r: ({"state": o["state"]}, a, r), "no key 'front'"),
    (lambda o, a, r: (o, np.array([0.1, np.nan]), r), "2 finite numbers"),
    (lambda o, a, r: (o, np.zeros(3), r), "2 finite numbers"),
    (lambda o, a, r: (o, a, float("inf")), "reward must be finite"),
])
def test_insert_refuses_what_it_would_store_wrongly(change, message):
    """A (1,) state was broadcast into every state dim, NaN actions and rewards were stored."""
    buf = ReplayBuffer(10, _spec(), action_dim=2)
    _fill(buf, [2])
    before, frames = buf.get(buf.valid_ids()), buf.frames_written
    obs, action, reward = change(_obs(9, 0), np.zeros(2, np.float32), 0.0)
    with pytest.raises(ValueError, match=message):
        buf.insert(obs, action, reward, _obs(9, 1), terminated=False)
    assert len(buf) == 2 and buf.frames_written == frames    # nothing was written
    after = buf.get(buf.valid_ids())
    np.testing.assert_array_equal(after["obs"]["state"], before["obs"]["state"])


@pytest.mark.parametrize("capacity", [1000, 12])
def test_n_step_batches_follow_each_episode_and_stop_at_its_end(capacity):
    """`get(ids, n_step)` against a walk by hand: rewards of the same episode's next steps,
    zero after it ends (terminated or truncated) or where nothing was written yet, the last
    step's next obs and end flags; the ring (capacity 12 < 19 written wraps) changes nothing."""
    buf = ReplayBuffer(capacity, _spec(), 2)
    lengths, endings = [5, 2, 7, 1, 4], ["terminated", "truncated", "terminated", "truncated", None]
    _fill(buf, lengths, endings=endings)  # the last episode is still running (no end flag)
    eps = [(ep, t, T, endings[ep]) for ep, T in enumerate(lengths) for t in range(T)]
    ids = buf.valid_ids()
    batch = buf.get(ids, n_step=3)
    for row, tid in enumerate(ids):
        ep, t, T, end = eps[tid]
        k = min(3, T - t)
        assert batch["steps"][row] == k
        np.testing.assert_array_equal(batch["rewards"][row], [ep * 100 + t + j if j < k else 0
                                                              for j in range(3)])
        np.testing.assert_array_equal(batch["obs"]["state"][row], [ep, t, 0.5])
        np.testing.assert_array_equal(batch["next_obs"]["state"][row], [ep, t + k, 0.5])
        assert batch["next_obs"]["front"][row, 0, 0, 0] == (ep * 16 + t + k) % 256
        ends_here = t + k == T
        assert batch["terminated"][row] == (ends_here and end == "terminated")
        assert batch["truncated"][row] == (ends_here and end == "truncated")
        assert batch["reward"][row] == ep * 100 + t          # the first step's own fields
        assert batch["intervention"][row] == (t % 2 == 1)
    one = buf.get(ids)  # n_step 1: no extra keys, the same as before
    assert "rewards" not in one and "steps" not in one
    _check_consistent(one)


def test_n_step_chains_break_at_a_reset_without_done_flag():
    """A new episode inserted without an end flag on the previous one (the obs do not chain)
    is not summed into it."""
    buf = ReplayBuffer(50, _spec(), 2)
    for t in range(3):
        buf.insert(_obs(0, t), np.zeros(2, np.float32), 1.0, _obs(0, t + 1), False)
    for t in range(3):
        buf.insert(_obs(1, t), np.zeros(2, np.float32), 10.0, _obs(1, t + 1), False)
    b = buf.get(np.arange(6), n_step=4)
    np.testing.assert_array_equal(b["steps"], [3, 2, 1, 3, 2, 1])
    np.testing.assert_array_equal(b["rewards"].sum(1), [3, 2, 1, 30, 20, 10])
    np.testing.assert_array_equal(b["next_obs"]["state"][:, :2], [[0, 3]] * 3 + [[1, 3]] * 3)


def to_numpy(batch):
    return {k: to_numpy(v) if isinstance(v, dict) else v.numpy() for k, v in batch.items()}


@pytest.mark.parametrize("n_step", [1, 3])
def test_frames_kept_on_a_device_sample_what_the_host_arrays_hold(tmp_path, n_step):
    """The device copy starts as zeros and is brought up to date by sampling only: through
    ring wraparound (capacity 10, frame ring 12), between inserts, and after a load, every
    batch equals the one the host arrays give for the same generator. (The device here is
    the CPU; tests/robot_rl/test_cuda.py runs the same on a GPU.)"""
    host = ReplayBuffer(10, _spec(cams=("front", "wrist")), 2, frame_capacity=12)
    kept = ReplayBuffer(10, _spec(cams=("front", "wrist")), 2, frame_capacity=12)
    kept.keep_on_device("cpu")
    lengths = np.random.default_rng(0).integers(1, 6, size=12)
    for k, T in enumerate(lengths):
        for buf in (host, kept):
            _fill(buf, [int(T)], ep0=k, cams=("front", "wrist"))
        if k % 3:  # some episodes go in unsampled: the next sync copies several at once
            x = host.sample(32, np.random.default_rng(k), as_torch=True, n_step=n_step)
            y = kept.sample(32, np.random.default_rng(k), as_torch=True, n_step=n_step)
            _assert_same_batch(x, y)
            if n_step == 1:
                _check_consistent(to_numpy(y))
    assert host.frames_written > 2 * host.frame_capacity  # the ring wrapped twice
    saved = ReplayBuffer(10, _spec(cams=("front", "wrist")), 2, frame_capacity=12)
    _fill(saved, [3, 4], ep0=40, cams=("front", "wrist"))  # fewer frames than kept has written
    saved.save(tmp_path / "buf.npz")
    kept.load(tmp_path / "buf.npz")  # every frame differs from what the device holds
    _assert_same_batch(saved.sample(64, np.random.default_rng(1), as_torch=True, n_step=n_step),
                       kept.sample(64, np.random.default_rng(1), as_torch=True, n_step=n_step))
    assert kept.sample(4, np.random.default_rng(2))["obs"]["front"].dtype == np.uint8  # numpy asked


def test_a_mixed_sampler_over_kept_frames_gives_the_host_batches():
    bufs = {}
    for name in ("host", "kept"):
        demo = ReplayBuffer(50, _spec(), 2, is_demo=True)
        online = ReplayBuffer(50, _spec(), 2)
        _fill(demo, [6, 6])
        _fill(online, [5, 5], ep0=10)
        bufs[name] = MixedSampler(demo, online, demo_ratio=0.25)
    assert place_frames([bufs["kept"].demo_buffer, bufs["kept"].online_buffer], "cpu", True)
    x = bufs["host"].sample_fn(16, np.random.default_rng(0))(5)
    y = bufs["kept"].sample_fn(16, np.random.default_rng(0), "cpu")(5)
    _assert_same_batch(x, y)
    assert y["is_demo"][:16].tolist() == [True] * 4 + [False] * 12


def test_frames_stay_on_the_host_unless_a_gpu_has_room_or_it_is_asked():
    buf = ReplayBuffer(10, _spec(), 2)
    assert not place_frames([buf], "cpu", None)   # auto: a GPU only
    assert not place_frames([buf], "cpu", False) and buf._mirror is None
