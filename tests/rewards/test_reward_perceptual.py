"""Perceptual rewards from demos: planted change points and discriminative dimensions in
synthetic features are recovered; on rendered PandaPickCube demos the reward learned from 8
demos follows true task progress on held-out episodes."""
from __future__ import annotations

import numpy as np
import pytest

from robot_rl.rewards.base import RewardWrapper, spearman
from robot_rl.rewards.perceptual import (PerceptualReward, PooledPixelFeatures, segment_sequence,
                                         select_features)

K, D, PLANTED = 3, 40, 5  # steps, feature dims, planted dims per step


def synthetic_demo(rng, starts, T):
    """Noise everywhere; dims [5i, 5i+5) are raised by 3 during step i."""
    f = rng.normal(0, 1, (T, D))
    bounds = list(starts) + [T]
    for i in range(K):
        f[bounds[i]:bounds[i + 1], PLANTED * i:PLANTED * (i + 1)] += 3.0
    return f


def test_planted_change_points_and_features_are_recovered():
    rng = np.random.default_rng(0)
    demos, truth = [], []
    for _ in range(6):
        T = int(rng.integers(45, 70))
        b1 = int(rng.integers(8, T // 2 - 4))
        b2 = int(rng.integers(b1 + 8, T - 8))
        truth.append([0, b1, b2])
        demos.append(synthetic_demo(rng, [0, b1, b2], T))
    for f, t in zip(demos, truth):
        z = (f - f.mean(0)) / f.std(0)
        found = segment_sequence(z, K)
        assert found[0] == 0 and np.all(np.abs(found - t) <= 2), (found, t)
    model = PerceptualReward.fit(None, features=demos, n_steps=K, n_features=PLANTED,
                                 feature_fn=lambda x: x)
    for i in range(K):
        assert set(model.selected[i]) == set(range(PLANTED * i, PLANTED * (i + 1))), model.selected
    for got, t in zip(model.meta["boundaries"], truth):
        assert np.all(np.abs(np.array(got) - t) <= 2)
    # on a fresh synthetic episode the reward rises step by step
    f = synthetic_demo(rng, [0, 20, 40], 60)
    r = model.reward_from_features(f)
    means = [r[:20].mean(), r[20:40].mean(), r[40:].mean()]
    assert means[0] < means[1] < means[2], means


def test_dp_segmentation_is_optimal_on_small_cases():
    """Against brute force over all split points."""
    from itertools import combinations

    from robot_rl.rewards.perceptual import segment_cost
    rng = np.random.default_rng(1)
    f = rng.normal(size=(12, 3))
    cost = segment_cost(f)
    best = min(combinations(range(1, 12), 2),
               key=lambda c: sum(float(cost(np.array(a), b)) for a, b in zip((0,) + c, c + (12,))))
    assert list(segment_sequence(f, 3)) == [0, *best]


def test_feature_selection_score():
    pos = np.array([[1.0, 0.0, 5.0], [1.2, 0.1, -5.0]])
    neg = np.array([[0.0, 0.0, 0.0], [0.1, 0.1, 0.1]])
    idx, score = select_features(pos, neg, 1, alpha=5.0)
    assert idx[0] == 0  # big mean shift with small spread beats a noisy one
    assert score[2] < score[0]


def test_pooled_pixels():
    img = np.zeros((2, 8, 8, 3), np.uint8)
    img[0, :4, :4, 0] = 255  # top-left quadrant red in the first frame
    f = PooledPixelFeatures(("cam",), grid=2)({"cam": img})
    assert f.shape == (2, 12)
    np.testing.assert_allclose(f[0].reshape(2, 2, 3)[:, :, 0], [[1, 0], [0, 0]])
    np.testing.assert_allclose(f[1], 0)


def test_sim_demos_reward_tracks_progress_on_held_out_episodes(pick_demos, tmp_path):
    """Features: 4x4 average-pooled colour of the wrist camera (no network). The scripted expert
    centres the wrist camera on the cube, so the coarse layout (cube size, fingers, table scale)
    changes with progress wherever the cube is; the front camera's pooled pixels mostly encode
    where the cube is, and Sermanet et al. used semantic (Inception) features for that reason."""
    assert len(pick_demos) >= 12
    train, held_out = pick_demos[:8], pick_demos[8:]
    model = PerceptualReward.fit([obs for obs, _ in train], PooledPixelFeatures(("wrist",), 4),
                                 n_steps=5, n_features=16)
    rhos = [spearman(model(obs), progress) for obs, progress in held_out]
    assert np.mean(rhos) >= 0.8, rhos
    assert min(rhos) >= 0.6, rhos
    # the steps found in each demo are ordered and non-degenerate
    for b, T in zip(model.meta["boundaries"], model.meta["demo_lengths"]):
        assert b[0] == 0 and np.all(np.diff(b + [T]) >= 2)
    # persistence: a pooled-pixel model reloads without its extractor being passed
    path = model.save(tmp_path / "perceptual.npz")
    back = PerceptualReward.load(path)
    obs = held_out[0][0]
    np.testing.assert_allclose(back(obs), model(obs), atol=1e-6)
    from robot_rl.rewards.base import make_reward_model
    np.testing.assert_allclose(make_reward_model("perceptual", path=str(path))(obs), model(obs),
                               atol=1e-6)
    with pytest.raises(KeyError, match="wrist"):
        model({"front": obs["wrist"]})


def test_perceptual_reward_in_wrapper_add_mode(pick_demos):
    from robot_rl.sim.envs import make_sim_env
    from robot_rl.sim.tasks import make_expert
    model = PerceptualReward.fit([obs for obs, _ in pick_demos[:4]], PooledPixelFeatures(("wrist",), 4),
                                 n_steps=3, n_features=8)
    env = RewardWrapper(make_sim_env("PandaPickCube", vision=True, image_size=64), model,
                        mode="add", scale=0.5)
    expert = make_expert(env, seed=0)
    try:
        obs, _ = env.reset(seed=7)
        expert.reset()
        for _ in range(3):
            obs, r, term, trunc, info = env.step(expert.act(obs))
            assert r == pytest.approx(info["env_reward"] + 0.5 * info["model_reward"], abs=1e-6)
            assert info["model_reward"] == pytest.approx(float(model([obs])[0]), abs=1e-6)
    finally:
        env.close()
