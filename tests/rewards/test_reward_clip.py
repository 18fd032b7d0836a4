"""CLIP / VLM-RM reward: the goal-baseline algebra, an oracle encoder with known progress, and the
real open_clip ViT-B-32 architecture (random weights: no downloads here) on rendered sim frames."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from robot_rl.rewards.base import spearman
from robot_rl.rewards.clip import CLIPReward, OpenCLIPEncoder, goal_baseline_reward, projection_matrix

D = 32


def unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.fixture
def gb():
    rng = np.random.default_rng(0)
    return unit(rng.normal(size=D)), unit(rng.normal(size=D)), rng


def test_alpha_zero_is_cosine_similarity(gb):
    g, b, rng = gb
    x = rng.normal(size=(50, D)) * rng.uniform(0.1, 10, (50, 1))  # any norm
    r = goal_baseline_reward(torch.tensor(x), g, b, alpha=0.0).numpy()
    np.testing.assert_allclose(r, unit(x) @ g, atol=1e-12)
    # no baseline at all: also plain cosine
    np.testing.assert_allclose(goal_baseline_reward(torch.tensor(x), g, None, 0.0).numpy(),
                               unit(x) @ g, atol=1e-12)


def test_projection_symmetric_and_idempotent(gb):
    g, b, _ = gb
    P = projection_matrix(g, b, 1.0).numpy()
    np.testing.assert_allclose(P, P.T, atol=1e-14)
    np.testing.assert_allclose(P @ P, P, atol=1e-12)
    assert np.isclose(np.trace(P), 1.0)  # rank one: the direction g - b
    d = g - b
    np.testing.assert_allclose(P @ d, d, atol=1e-12)
    for a in (0.0, 0.3, 0.7):
        Pa = projection_matrix(g, b, a).numpy()
        np.testing.assert_allclose(Pa, Pa.T, atol=1e-14)
        np.testing.assert_allclose(Pa, a * P + (1 - a) * np.eye(D), atol=1e-12)


def test_alpha_one_ignores_directions_orthogonal_to_goal_minus_baseline(gb):
    g, b, rng = gb
    dh = unit(g - b)
    for _ in range(20):
        # two unit embeddings with the same component along g - b, different elsewhere
        c = rng.uniform(-0.9, 0.9)
        u1, u2 = (unit(v - (v @ dh) * dh) for v in rng.normal(size=(2, D)))
        x1, x2 = c * dh + np.sqrt(1 - c * c) * u1, c * dh + np.sqrt(1 - c * c) * u2
        r = goal_baseline_reward(torch.tensor(np.stack([x1, x2])), g, b, alpha=1.0).numpy()
        assert abs(r[0] - r[1]) < 1e-12
        r_half = goal_baseline_reward(torch.tensor(np.stack([x1, x2])), g, b, alpha=0.5).numpy()
        assert abs(r_half[0] - r_half[1]) > 1e-6  # ... which only alpha = 1 does


class OracleEncoder:
    """Text: target prompts -> g, baseline prompts -> b. Image: the embedding moves from b to g
    with the progress p stored in pixel [0, 0, 0] (p = value / 255), plus a nuisance component of
    strength s (pixel [0, 0, 1]) along a direction orthogonal to g - b (it still moves the
    normalized embedding, so the ranking is not trivially exact)."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.g, self.b = unit(rng.normal(size=D)), unit(rng.normal(size=D))
        dh, ugb = unit(self.g - self.b), unit(self.g + self.b)
        w = rng.normal(size=D)
        w = unit(w - (w @ dh) * dh - (w @ ugb) * ugb)
        self.v = unit(ugb + w)  # orthogonal to g - b
        self.text_calls = []

    def encode_text(self, prompts):
        self.text_calls.append(list(prompts))
        return torch.tensor(np.stack([self.g if p.startswith("goal") else self.b for p in prompts]))

    def encode_image(self, frames):
        p = frames[:, 0, 0, 0].astype(np.float64)[:, None] / 255.0
        s = frames[:, 0, 0, 1].astype(np.float64)[:, None] / 255.0
        return torch.tensor((1 - p) * self.b + p * self.g + 0.8 * s * self.v)


def frames_with(progress, distractor):
    f = np.zeros((len(progress), 4, 4, 3), np.uint8)
    f[:, 0, 0, 0] = np.round(np.asarray(progress) * 255)
    f[:, 0, 0, 1] = np.round(np.asarray(distractor) * 255)
    return f


def test_oracle_encoder_progress_is_recovered_and_text_is_cached():
    rng = np.random.default_rng(1)
    enc = OracleEncoder()
    p = rng.uniform(0, 1, 200)
    frames = frames_with(p, rng.uniform(0, 1, 200))
    rho = {}
    for alpha in (0.0, 0.5, 1.0):
        model = CLIPReward(["goal: cube lifted", "goal: cube in the air"], ["baseline: a cube"],
                           alpha=alpha, encoder=enc, image_key="front", batch_size=64)
        rho[alpha] = spearman(model({"front": frames}), p)
    assert min(rho.values()) > 0.95, rho
    # every prompt was encoded exactly once per model; set_prompts with the same prompts: none
    calls = sum(len(c) for c in enc.text_calls)
    model.set_prompts(["goal: cube lifted"], ["baseline: a cube"], alpha=0.5)
    assert sum(len(c) for c in enc.text_calls) == calls
    # with several target prompts the goal is renormalized: alpha=0 is exactly the cosine
    m0 = CLIPReward(["goal: a", "goal: b"], [], alpha=0.0, encoder=enc)
    x = unit(enc.encode_image(frames).numpy())
    np.testing.assert_allclose(m0({"front": frames}), (x @ enc.g).astype(np.float32), atol=1e-6)


def test_clip_reward_rejects_bad_configs():
    enc = OracleEncoder()
    with pytest.raises(ValueError, match="baseline"):
        CLIPReward(["goal"], [], alpha=0.5, encoder=enc)
    with pytest.raises(ValueError, match="alpha"):
        CLIPReward(["goal"], ["base"], alpha=1.5, encoder=enc)
    with pytest.raises(KeyError, match="wrist"):
        CLIPReward(["goal"], ["base"], encoder=enc, image_key="wrist")({"front": frames_with([0], [0])})


@pytest.fixture(scope="module")
def vit_b32():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return OpenCLIPEncoder("ViT-B-32", pretrained=None)


def test_real_vit_b32_on_rendered_frames_is_deterministic_and_batch_independent(vit_b32, pick_frames):
    frames = pick_frames["images"]["front"][[0, 15, 25, 40, 60]]  # 64x64 renders, resized to 224
    model = CLIPReward(["a robot arm holding a red cube in the air"],
                       ["a robot arm next to a red cube on a table"], alpha=0.5,
                       encoder=vit_b32, batch_size=32)
    assert vit_b32.image_size == (224, 224)
    assert vit_b32.tokenizer(["pick up the red cube"]).shape == (1, 77)  # bundled BPE vocab
    r = model({"front": frames})
    assert r.shape == (5,) and r.dtype == np.float32 and np.all(np.isfinite(r))
    assert np.ptp(r) > 0  # different frames, different rewards
    np.testing.assert_array_equal(model({"front": frames}), r)  # deterministic
    singles = np.concatenate([model({"front": frames[i:i + 1]}) for i in range(5)])
    np.testing.assert_allclose(singles, r, atol=1e-5)
    mixed = model({"front": frames[[4, 1, 1, 3]]})  # other batch composition, duplicates
    np.testing.assert_allclose(mixed, r[[4, 1, 1, 3]], atol=1e-5)
    model.batch_size = 2  # internal chunking does not matter either
    np.testing.assert_allclose(model({"front": frames}), r, atol=1e-5)
    # the list-of-observations form gives the same
    np.testing.assert_allclose(model([{"front": f} for f in frames]), r, atol=1e-5)


def test_local_checkpoint_loading_path(tmp_path):
    """pretrained=/path/to/file goes through open_clip's own checkpoint loader (a tiny registered
    architecture keeps the file small)."""
    import open_clip
    cfg_path = tmp_path / "robot-rl-tiny-clip.json"
    cfg_path.write_text(json.dumps({
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}))
    open_clip.add_model_config(cfg_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = OpenCLIPEncoder("robot-rl-tiny-clip", pretrained=None)
    ckpt = tmp_path / "tiny.pt"
    torch.save(a.model.state_dict(), ckpt)
    b = OpenCLIPEncoder("robot-rl-tiny-clip", pretrained=str(ckpt))
    frames = np.random.default_rng(0).integers(0, 256, (3, 48, 80, 3), dtype=np.uint8)
    ra = CLIPReward(["lifted"], ["on the table"], alpha=1.0, encoder=a)({"front": frames})
    rb = CLIPReward(["lifted"], ["on the table"], alpha=1.0, encoder=b)({"front": frames})
    np.testing.assert_allclose(ra, rb, atol=1e-6)
    with pytest.raises(RuntimeError, match="cannot load open_clip model"):
        OpenCLIPEncoder("robot-rl-tiny-clip", pretrained=str(tmp_path / "missing.pt"))
