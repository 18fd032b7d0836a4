"""Perceptual rewards from a few demonstrations (Sermanet, Xu & Levine 2016, "Unsupervised
Perceptual Rewards for Imitation Learning").

1. Features of every demo frame from a pretrained image model; the extractor is pluggable:
   `PooledPixelFeatures` (average-pooled colour grid, no network), `TrunkFeatures` (any torch
   image module: `robot_rl.networks.ConvEncoder` / `PretrainedTrunk`), `CLIPImageFeatures`
   (the CLIP image tower of `rewards.clip`), or any callable `obs batch -> [B, D]`.
2. Each demo is split into `n_steps` steps by dynamic programming that minimizes the total
   within-segment variance of the (standardized) features: sum over segments of
   sum_t ||f_t - mean(segment)||^2 (the paper's criterion up to using squared deviations,
   which makes the DP exact and O(K T^2)).
3. Per step i, frames of step i (all demos) are positives and all other frames negatives; each
   feature j is scored alpha |mu+_j - mu-_j| - (sigma+_j + sigma-_j) and the `n_features` best
   are kept.
4. Step score R_i(s) = exp(-1/2 mean_j ((f_j(s) - mu+_ij) / sigma+_ij)^2) over the selected j
   (a per-step diagonal Gaussian, in (0, 1]); the reward is sum_i 2^(i-1) R_i / sum_i 2^(i-1):
   later steps weigh more, so completing later steps is worth more (in [0, 1]).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from robot_rl.rewards.base import RewardModel, as_batch, require_key

__all__ = ["PooledPixelFeatures", "TrunkFeatures", "CLIPImageFeatures", "segment_sequence",
           "segment_cost", "select_features", "PerceptualReward", "demos_from_dataset"]


# ---------------------------------------------------------------------------- features
class PooledPixelFeatures:
    """Average-pool each camera's frame to a `grid` x `grid` colour image and concatenate
    (in [0, 1]): [B, len(keys) * grid * grid * 3]. No learned weights; captures where coloured
    things are at a coarse scale."""

    def __init__(self, keys: Sequence[str] = ("front",), grid: int = 4):
        self.keys, self.grid = tuple(keys), int(grid)

    def spec(self) -> dict:
        return {"type": "pooled_pixels", "keys": list(self.keys), "grid": self.grid}

    def __call__(self, observations) -> np.ndarray:
        batch = as_batch(observations)
        out = []
        for k in self.keys:
            x = np.asarray(require_key(batch, k, "PooledPixelFeatures"), np.float32) / 255.0
            B, H, W, C = x.shape
            g = self.grid
            hs, ws = np.linspace(0, H, g + 1).astype(int), np.linspace(0, W, g + 1).astype(int)
            # mean over each cell via cumulative sums (cells may differ by a pixel in size)
            cs = np.zeros((B, H + 1, W + 1, C), np.float64)
            cs[:, 1:, 1:] = x.cumsum(1).cumsum(2)
            a = cs[:, hs[1:]][:, :, ws[1:]] - cs[:, hs[:-1]][:, :, ws[1:]] \
                - cs[:, hs[1:]][:, :, ws[:-1]] + cs[:, hs[:-1]][:, :, ws[:-1]]
            area = np.outer(np.diff(hs), np.diff(ws))[None, :, :, None]
            out.append((a / area).reshape(B, -1))
        return np.concatenate(out, 1).astype(np.float32)


class TrunkFeatures:
    """Features of a torch image module (uint8 [B, H, W, 3] -> [B, D]) per camera, e.g. a
    frozen `PretrainedTrunk` or a fixed random `ConvEncoder`."""

    def __init__(self, module, keys: Sequence[str] = ("front",), batch_size: int = 64):
        self.module, self.keys, self.batch_size = module, tuple(keys), int(batch_size)

    def __call__(self, observations) -> np.ndarray:
        import torch
        batch = as_batch(observations)
        self.module.eval()
        out = []
        with torch.inference_mode():
            for k in self.keys:
                x = np.asarray(require_key(batch, k, "TrunkFeatures"))
                out.append(np.concatenate([
                    self.module(torch.as_tensor(np.ascontiguousarray(x[i:i + self.batch_size])))
                    .float().numpy() for i in range(0, len(x), self.batch_size)]))
        return np.concatenate(out, 1)


class CLIPImageFeatures:
    """Unit CLIP image embeddings (an `OpenCLIPEncoder` or a `CLIPReward`'s encoder)."""

    def __init__(self, encoder=None, keys: Sequence[str] = ("front",), batch_size: int = 32,
                 **encoder_kwargs):
        if encoder is None:
            from robot_rl.rewards.clip import OpenCLIPEncoder
            encoder = OpenCLIPEncoder(**encoder_kwargs)
        self.encoder = getattr(encoder, "encoder", encoder)
        self.keys, self.batch_size = tuple(keys), int(batch_size)

    def __call__(self, observations) -> np.ndarray:
        import torch
        batch = as_batch(observations)
        out = []
        for k in self.keys:
            x = np.asarray(require_key(batch, k, "CLIPImageFeatures"))
            e = torch.cat([torch.as_tensor(self.encoder.encode_image(x[i:i + self.batch_size]))
                           for i in range(0, len(x), self.batch_size)]).float()
            out.append((e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)).numpy())
        return np.concatenate(out, 1)


def _feature_fn_from_spec(spec: Mapping) -> Callable:
    if spec.get("type") == "pooled_pixels":
        return PooledPixelFeatures(spec["keys"], spec["grid"])
    raise ValueError(f"cannot rebuild feature extractor {spec!r}: pass feature_fn= to load()")


# ---------------------------------------------------------------------------- segmentation
def segment_cost(features: np.ndarray):
    """cost(i, j) = sum_{t=i}^{j-1} ||f_t - mean_{i..j-1}||^2 via prefix sums; returns a
    function of (i, j) that accepts numpy index arrays for i."""
    f = np.asarray(features, np.float64)
    T = len(f)
    s1 = np.zeros((T + 1, f.shape[1]))
    s1[1:] = f.cumsum(0)
    s2 = np.zeros(T + 1)
    s2[1:] = (f * f).sum(1).cumsum()

    def cost(i, j):
        i = np.asarray(i)
        n = (j - i).astype(np.float64)
        d = s1[j] - s1[i]
        return s2[j] - s2[i] - (d * d).sum(-1) / np.maximum(n, 1.0)

    return cost


def segment_sequence(features: np.ndarray, n_steps: int, min_length: int = 1) -> np.ndarray:
    """Split a sequence [T, D] into `n_steps` contiguous segments minimizing the total
    within-segment sum of squared deviations (exact dynamic programming). Returns the start
    index of each segment ([0, b1, ..., b_{K-1}])."""
    T = len(features)
    if n_steps < 1 or n_steps * min_length > T:
        raise ValueError(f"cannot split {T} frames into {n_steps} steps of >= {min_length} frames")
    cost = segment_cost(features)
    INF = np.inf
    D = np.full((n_steps + 1, T + 1), INF)
    arg = np.zeros((n_steps + 1, T + 1), int)
    D[0, 0] = 0.0
    for k in range(1, n_steps + 1):
        for j in range(k * min_length, T - (n_steps - k) * min_length + 1):
            i = np.arange((k - 1) * min_length, j - min_length + 1)
            c = D[k - 1, i] + cost(i, j)
            b = int(np.argmin(c))
            D[k, j], arg[k, j] = c[b], i[b]
    starts, j = [], T
    for k in range(n_steps, 0, -1):
        j = arg[k, j]
        starts.append(j)
    return np.array(starts[::-1])


def select_features(pos: np.ndarray, neg: np.ndarray, n_select: int, alpha: float = 5.0):
    """Indices of the `n_select` features best separating positives from negatives by
    alpha |mu+ - mu-| - (sigma+ + sigma-), best first, and all scores."""
    mp, mn = pos.mean(0), neg.mean(0)
    sp, sn = pos.std(0), neg.std(0)
    score = alpha * np.abs(mp - mn) - (sp + sn)
    order = np.argsort(-score, kind="stable")[:n_select]
    return order, score


# ---------------------------------------------------------------------------- the reward
class PerceptualReward(RewardModel):
    """A fitted perceptual reward (see the module docstring). Build with `fit`, persist with
    `save` / `load` (the feature extractor is saved when it is a `PooledPixelFeatures`;
    otherwise pass the same `feature_fn` to `load`)."""
    name = "perceptual"

    def __init__(self, feature_fn: Callable, mean: np.ndarray, std: np.ndarray,
                 selected: np.ndarray, step_mean: np.ndarray, step_std: np.ndarray,
                 weights: np.ndarray | None = None, success_threshold: float | None = None,
                 meta: dict | None = None):
        self.feature_fn = feature_fn
        self.mean, self.std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        self.selected = np.asarray(selected, int)           # [K, M]
        self.step_mean = np.asarray(step_mean, np.float64)  # [K, M]
        self.step_std = np.asarray(step_std, np.float64)    # [K, M]
        K = len(self.selected)
        self.weights = (2.0 ** np.arange(K) if weights is None else np.asarray(weights, np.float64))
        self.success_threshold = success_threshold
        self.has_success = success_threshold is not None
        self.meta = dict(meta or {})

    @property
    def n_steps(self) -> int:
        return len(self.selected)

    @classmethod
    def fit(cls, demos: Sequence, feature_fn: Callable | None = None, n_steps: int = 5,
            n_features: int = 16, alpha: float = 5.0, min_length: int = 2,
            min_std: float = 0.05, success_threshold: float | None = None,
            features: Sequence[np.ndarray] | None = None) -> "PerceptualReward":
        """`demos`: observation batches (one `{key: [T, ...]}` per demo, or lists of obs
        dicts), featurized with `feature_fn` (default `PooledPixelFeatures(("front",))`).
        Alternatively pass precomputed `features` ([T, D] per demo) and `demos=None`."""
        if feature_fn is None:
            feature_fn = PooledPixelFeatures()
        if features is None:
            features = [np.asarray(feature_fn(d), np.float64) for d in demos]
        feats = [np.asarray(f, np.float64) for f in features]
        if not feats:
            raise ValueError("no demos")
        allf = np.concatenate(feats)
        mean, std = allf.mean(0), allf.std(0)
        std = np.where(std < 1e-8, 1.0, std)
        z = [(f - mean) / std for f in feats]
        bounds = [segment_sequence(f, n_steps, min_length) for f in z]
        step_of = [np.searchsorted(b, np.arange(len(f)), side="right") - 1 for b, f in zip(bounds, z)]
        Z, S = np.concatenate(z), np.concatenate(step_of)
        M = min(n_features, Z.shape[1])
        sel, mu, sd, scores = [], [], [], []
        for i in range(n_steps):
            idx, score = select_features(Z[S == i], Z[S != i], M, alpha)
            sel.append(idx)
            mu.append(Z[S == i][:, idx].mean(0))
            sd.append(np.maximum(Z[S == i][:, idx].std(0), min_std))
            scores.append(score[idx])
        meta = {"n_steps": n_steps, "n_features": M, "alpha": alpha, "min_length": min_length,
                "demo_lengths": [len(f) for f in feats],
                "boundaries": [b.tolist() for b in bounds]}
        return cls(feature_fn, mean, std, np.array(sel), np.array(mu), np.array(sd),
                   success_threshold=success_threshold, meta=meta)

    def step_scores_from_features(self, f: np.ndarray) -> np.ndarray:
        """Per-step Gaussian scores [B, K] in (0, 1] of raw features [B, D]."""
        z = (np.asarray(f, np.float64) - self.mean) / self.std
        out = np.empty((len(z), self.n_steps))
        for i in range(self.n_steps):
            d = (z[:, self.selected[i]] - self.step_mean[i]) / self.step_std[i]
            out[:, i] = np.exp(-0.5 * (d * d).mean(1))
        return out

    def reward_from_features(self, f: np.ndarray) -> np.ndarray:
        s = self.step_scores_from_features(f)
        return (s @ self.weights / self.weights.sum()).astype(np.float32)

    def step_scores(self, observations) -> np.ndarray:
        return self.step_scores_from_features(self.feature_fn(as_batch(observations)))

    def __call__(self, observations) -> np.ndarray:
        return self.reward_from_features(self.feature_fn(as_batch(observations)))

    def success(self, observations) -> np.ndarray:
        """The last step's score reaches `success_threshold`."""
        if self.success_threshold is None:
            raise NotImplementedError("PerceptualReward without success_threshold")
        return self.step_scores(observations)[:, -1] >= self.success_threshold

    # ---- persistence -------------------------------------------------------------------
    def save(self, path) -> Path:
        import json
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        spec = self.feature_fn.spec() if hasattr(self.feature_fn, "spec") else None
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, mean=self.mean, std=self.std, selected=self.selected,
                 step_mean=self.step_mean, step_std=self.step_std, weights=self.weights,
                 info=np.array(json.dumps({"feature_spec": spec, "meta": self.meta,
                                           "success_threshold": self.success_threshold})))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path, feature_fn: Callable | None = None) -> "PerceptualReward":
        import json
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(str(z["info"]))
            if feature_fn is None:
                if info["feature_spec"] is None:
                    raise ValueError(f"{path} was fitted with a custom feature extractor: pass "
                                     f"feature_fn=")
                feature_fn = _feature_fn_from_spec(info["feature_spec"])
            return cls(feature_fn, z["mean"], z["std"], z["selected"], z["step_mean"],
                       z["step_std"], z["weights"], info.get("success_threshold"), info["meta"])

    @classmethod
    def from_config(cls, path: str | None = None, demos: str | None = None,
                    keys: Sequence[str] = ("front",), grid: int = 4,
                    episodes: Sequence[int] | None = None, only_success: bool = True,
                    **fit_kwargs) -> "PerceptualReward":
        """Factory for `make_reward_model("perceptual", ...)`: load a fitted model (`path`) or
        fit on a LeRobotDataset of demos (`demos`) with pooled-pixel features of `keys`."""
        if (path is None) == (demos is None):
            raise ValueError("perceptual reward: give exactly one of path= or demos=")
        if path is not None:
            return cls.load(path)
        batches = demos_from_dataset(demos, keys, episodes, only_success)
        return cls.fit(batches, PooledPixelFeatures(keys, grid), **fit_kwargs)


def demos_from_dataset(dataset, keys: Sequence[str] = ("front",),
                       episodes: Sequence[int] | None = None, only_success: bool = True):
    """Observation batches `{camera: [T, H, W, 3]}` of a LeRobotDataset's (successful) demos."""
    from robot_rl.data.lerobot import LeRobotDataset
    ds = dataset if isinstance(dataset, LeRobotDataset) else LeRobotDataset(dataset)
    out = []
    for e in (range(ds.num_episodes) if episodes is None else episodes):
        ep = ds.episode(e)
        if only_success and "next.success" in ep and not bool(np.any(ep["next.success"])):
            continue
        out.append({k: ep[f"observation.images.{k}"] for k in keys})
    if not out:
        raise ValueError(f"{ds.root}: no (successful) demos")
    return out
