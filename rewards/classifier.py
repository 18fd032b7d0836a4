"""Success classifier reward (SERL / HIL-SERL style).

A binary classifier p(success | images) over one or more cameras: a per-camera trunk (a small
conv net trained from scratch, or a frozen pretrained torchvision trunk whose features are
computed once) and a trained MLP head. Training uses balanced positive/negative batches and
DrQ random-shift augmentation; episodes are split into train / calibration / test parts, the
decision threshold is chosen on the calibration negatives for a target false-positive rate
(a false "success" ends an episode early and rewards a failure, so FPR is what matters), and
accuracy / FPR / TPR at that threshold are reported on the held-out test episodes.

Labels come from a recorded dataset (`label.success` written by `robot-rl collect`, else the
observation-aligned `next.success`), or from a simulator (`sim_success_frames` in
robot_rl/bench/classifier_reward.py).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from robot_rl.rewards.base import RewardModel, RewardOutput, as_batch, require_key

__all__ = ["ClassifierConfig", "SuccessClassifier", "ClassifierReward", "train_success_classifier",
           "threshold_for_fpr", "split_episodes", "frames_from_dataset",
           "train_classifier_from_dataset", "preload_torch_before_rendering"]


@dataclass
class ClassifierConfig:
    image_keys: tuple[str, ...] = ("front",)
    trunk: str = "conv"                  # "conv" (trained from scratch) | "pretrained" (frozen)
    pretrained_name: str = "resnet18"    # torchvision name or local state_dict file (pretrained)
    pretrained_weights: str | None = None  # torchvision weights id, state_dict file, or None
    pretrained_resize: int | None = None
    conv_filters: tuple[int, ...] = (16, 32, 32)
    conv_strides: tuple[int, ...] = (2, 2, 2)
    feature_dim: int = 64
    hidden_dims: tuple[int, ...] = (64,)
    shift_pad: int = 4                   # random-shift augmentation (pixels), 0 = none

    def __post_init__(self):
        if self.trunk not in ("conv", "pretrained"):
            raise ValueError(f"classifier trunk must be 'conv' or 'pretrained', got {self.trunk!r}")
        self.image_keys = tuple(self.image_keys)
        self.conv_filters, self.conv_strides = tuple(self.conv_filters), tuple(self.conv_strides)
        self.hidden_dims = tuple(self.hidden_dims)


def _build_net(cfg: ClassifierConfig, image_shapes: Mapping[str, Sequence[int]]):
    import torch.nn as nn

    from robot_rl.networks import ConvEncoder, PretrainedTrunk

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoders = nn.ModuleDict()
            self.trunk = None
            if cfg.trunk == "pretrained":
                self.trunk = PretrainedTrunk(cfg.pretrained_name, cfg.pretrained_weights,
                                             cfg.pretrained_resize)
            for k in cfg.image_keys:
                if cfg.trunk == "conv":
                    self.encoders[k] = ConvEncoder(tuple(image_shapes[k]), cfg.conv_filters,
                                                   cfg.conv_strides, feature_dim=cfg.feature_dim)
                else:
                    self.encoders[k] = nn.Sequential(
                        nn.Linear(self.trunk.out_dim, cfg.feature_dim),
                        nn.LayerNorm(cfg.feature_dim), nn.Tanh())
            layers, d = [], cfg.feature_dim * len(cfg.image_keys)
            for h in cfg.hidden_dims:
                layers += [nn.Linear(d, h), nn.ReLU()]
                d = h
            layers.append(nn.Linear(d, 1))
            self.head = nn.Sequential(*layers)

        def features(self, k, x):
            """Trunk features of raw uint8 frames (pretrained) or the frames themselves."""
            return self.trunk(x) if self.trunk is not None and x.dim() == 4 else x

        def forward(self, inputs):
            import torch
            parts = [self.encoders[k](self.features(k, inputs[k])) for k in cfg.image_keys]
            return self.head(torch.cat(parts, -1)).squeeze(-1)

    return Net()


class SuccessClassifier:
    """A trained classifier with its decision threshold. `predict_proba(observations)` ->
    p(success) [B]; `predict` -> p >= threshold."""

    def __init__(self, config: ClassifierConfig, image_shapes: Mapping[str, Sequence[int]],
                 threshold: float = 0.5, net=None, report: dict | None = None):
        self.config = config
        self.image_shapes = {k: tuple(int(s) for s in v) for k, v in image_shapes.items()}
        self.net = net if net is not None else _build_net(config, self.image_shapes)
        self.threshold = float(threshold)
        self.report = dict(report or {})

    def _inputs(self, batch: Mapping[str, np.ndarray]):
        import torch
        out = {}
        for k in self.config.image_keys:
            x = np.asarray(require_key(batch, k, "SuccessClassifier"))
            if x.shape[1:] != self.image_shapes[k]:
                raise ValueError(f"camera {k!r}: the classifier was trained on frames of shape "
                                 f"{self.image_shapes[k]}, got {x.shape[1:]}")
            out[k] = torch.as_tensor(np.ascontiguousarray(x))
        return out

    def logits(self, observations, batch_size: int = 256) -> np.ndarray:
        import torch
        batch = as_batch(observations)
        self.net.eval()
        n = len(next(iter(batch.values())))
        out = []
        with torch.inference_mode():
            for i in range(0, n, batch_size):
                inp = self._inputs({k: v[i:i + batch_size] for k, v in batch.items()})
                out.append(self.net(inp).float().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def predict_proba(self, observations) -> np.ndarray:
        z = self.logits(observations).astype(np.float64)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def predict(self, observations) -> np.ndarray:
        return self.predict_proba(observations) >= self.threshold

    def save(self, path) -> Path:
        import torch
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rebuildable = self.config.trunk == "pretrained" and self.config.pretrained_weights
        # a frozen trunk with named/file weights is rebuilt on load; a random one is saved
        state = {k: v for k, v in self.net.state_dict().items()
                 if not (rebuildable and k.startswith("trunk."))}
        blob = {"format": "robot_rl.success_classifier/1", "config": asdict(self.config),
                "image_shapes": self.image_shapes, "threshold": self.threshold,
                "report": self.report, "state_dict": state}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(blob, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path, device: str = "cpu") -> "SuccessClassifier":
        import torch
        blob = torch.load(str(path), map_location=device, weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != "robot_rl.success_classifier/1":
            raise ValueError(f"{path} is not a robot_rl success classifier")
        clf = cls(ClassifierConfig(**blob["config"]), blob["image_shapes"], blob["threshold"],
                  report=blob.get("report"))
        missing, unexpected = clf.net.load_state_dict(blob["state_dict"], strict=False)
        missing = [k for k in missing if not k.startswith("trunk.")]
        if missing or unexpected:
            raise ValueError(f"{path}: state dict mismatch (missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]})")
        clf.net.eval()
        return clf


class ClassifierReward(RewardModel):
    """Reward from a success classifier: `reward="binary"` gives 1.0 when p >= threshold
    (SERL's sparse learned reward), `"prob"` gives p. `success` is p >= threshold."""
    name = "classifier"
    has_success = True

    def __init__(self, path=None, classifier: SuccessClassifier | None = None,
                 reward: str = "binary", threshold: float | None = None):
        if (path is None) == (classifier is None):
            raise ValueError("give exactly one of path= or classifier=")
        if reward not in ("binary", "prob"):
            raise ValueError(f"reward must be 'binary' or 'prob', got {reward!r}")
        self.classifier = classifier if classifier is not None else SuccessClassifier.load(path)
        self.reward_type = reward
        self.threshold = self.classifier.threshold if threshold is None else float(threshold)

    def score(self, observations) -> RewardOutput:
        p = self.classifier.predict_proba(observations)
        succ = p >= self.threshold
        r = succ.astype(np.float32) if self.reward_type == "binary" else p.astype(np.float32)
        return RewardOutput(r, succ)

    def __call__(self, observations) -> np.ndarray:
        return self.score(observations).reward

    def success(self, observations) -> np.ndarray:
        return self.score(observations).success


# ---------------------------------------------------------------------------- training
def threshold_for_fpr(neg_scores, target_fpr: float, min_threshold: float = 0.5) -> float:
    """The smallest threshold t (at least `min_threshold`) with fraction of negatives scoring
    >= t at most `target_fpr`."""
    s = np.sort(np.asarray(neg_scores, np.float64))[::-1]
    if len(s) == 0:
        return float(min_threshold)
    k = int(math.floor(target_fpr * len(s) + 1e-9))  # negatives allowed at or above t
    t = float(np.nextafter(s[k], np.inf)) if k < len(s) else float(s[-1])
    return max(t, float(min_threshold))


def split_episodes(groups, calib_fraction: float, test_fraction: float, seed: int):
    """Disjoint episode ids for train / calibration / test (each non-empty when possible)."""
    ids = np.unique(np.asarray(groups))
    rng = np.random.default_rng(seed)
    ids = ids[rng.permutation(len(ids))]
    n = len(ids)
    n_test = max(1, int(round(test_fraction * n))) if test_fraction > 0 and n >= 3 else 0
    n_cal = max(1, int(round(calib_fraction * n))) if calib_fraction > 0 and n - n_test >= 2 else 0
    return ids[n_test + n_cal:], ids[n_test:n_test + n_cal], ids[:n_test]


def _rates(p: np.ndarray, y: np.ndarray, t: float) -> dict:
    pred = p >= t
    pos, neg = y.astype(bool), ~y.astype(bool)
    return {"accuracy": float((pred == pos).mean()) if len(y) else float("nan"),
            "fpr": float(pred[neg].mean()) if neg.any() else float("nan"),
            "tpr": float(pred[pos].mean()) if pos.any() else float("nan"),
            "frames": int(len(y)), "positives": int(pos.sum()), "negatives": int(neg.sum())}


def train_success_classifier(images: Mapping[str, np.ndarray], labels, groups=None,
                             config: ClassifierConfig | None = None, steps: int = 400,
                             batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 1e-4,
                             target_fpr: float = 0.01, min_threshold: float = 0.5,
                             calib_fraction: float = 0.15, test_fraction: float = 0.2,
                             seed: int = 0, progress: bool = False, sample_weight=None,
                             init: "SuccessClassifier | None" = None):
    """Train a `SuccessClassifier` on uint8 frames `images[key]` [N, H, W, 3] with boolean
    `labels` [N]. `groups` [N] (episode ids) keeps the splits episode-disjoint (default: every
    frame its own group). `sample_weight` [N] (default all 1) makes some frames more likely in
    the balanced batches, e.g. hard negatives a deployed classifier got wrong, which would
    otherwise be a small fraction of the negatives. `init`: start from this classifier's
    weights (same config and image shapes) instead of random ones, so a retraining on a few
    new frames moves the decision boundary little. Returns `(classifier, report)`; the report
    has the threshold, the held-out test accuracy / FPR / TPR at it and the calibration
    numbers."""
    import torch
    import torch.nn.functional as F

    from robot_rl.networks import random_shift
    cfg = config or ClassifierConfig(image_keys=tuple(images))
    y = np.asarray(labels, bool).reshape(-1)
    n = len(y)
    for k in cfg.image_keys:
        if k not in images:
            raise KeyError(f"no frames for camera {k!r}; have {sorted(images)}")
        if len(images[k]) != n or images[k].dtype != np.uint8 or images[k].ndim != 4:
            raise ValueError(f"images[{k!r}] must be uint8 [N={n}, H, W, 3], got "
                             f"{images[k].dtype} {images[k].shape}")
    g = np.arange(n) if groups is None else np.asarray(groups).reshape(-1)
    tr_ids, cal_ids, te_ids = split_episodes(g, calib_fraction, test_fraction, seed)
    tr, cal, te = np.isin(g, tr_ids), np.isin(g, cal_ids), np.isin(g, te_ids)
    pos_idx, neg_idx = np.flatnonzero(tr & y), np.flatnonzero(tr & ~y)
    if len(pos_idx) == 0 or len(neg_idx) == 0:
        raise ValueError(f"training split needs positives and negatives; has {len(pos_idx)} "
                         f"positive and {len(neg_idx)} negative frames")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    shapes = {k: images[k].shape[1:] for k in cfg.image_keys}
    clf = SuccessClassifier(cfg, shapes)
    if init is not None:
        clf.net.load_state_dict(init.net.state_dict())
    net = clf.net
    frozen = cfg.trunk == "pretrained"
    data = {k: torch.as_tensor(images[k]) for k in cfg.image_keys}
    if frozen:  # frozen trunk: features once; no pixel augmentation on cached features
        with torch.inference_mode():
            data = {k: torch.cat([net.trunk(v[i:i + 64]) for i in range(0, n, 64)]).clone()
                    for k, v in data.items()}
    params = [p for name, p in net.named_parameters() if not name.startswith("trunk.")]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64).reshape(-1)
    if len(w) != n or np.any(w < 0):
        raise ValueError(f"sample_weight must be {n} non-negative numbers")
    p_pos, p_neg = w[pos_idx] / w[pos_idx].sum(), w[neg_idx] / w[neg_idx].sum()
    half = batch_size // 2
    target = torch.cat([torch.ones(half), torch.zeros(batch_size - half)])
    t0, losses = time.monotonic(), []
    it = range(steps)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="classifier", unit="step")
    net.train()
    for step in it:
        idx = np.concatenate([rng.choice(pos_idx, half, p=p_pos),
                              rng.choice(neg_idx, batch_size - half, p=p_neg)])
        inp = {}
        for k in cfg.image_keys:
            x = data[k][idx]
            if not frozen and cfg.shift_pad > 0:
                x = random_shift(x, cfg.shift_pad, generator=gen)
            inp[k] = x
        loss = F.binary_cross_entropy_with_logits(net(inp), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if progress and step % 20 == 0:
            it.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    net.eval()
    train_time = time.monotonic() - t0

    def proba(mask):
        if not mask.any():
            return np.zeros(0, np.float32)
        return clf.predict_proba({k: images[k][mask] for k in cfg.image_keys})

    # threshold from calibration negatives (training negatives if there is no calibration split)
    cal_mask = cal if cal.any() else tr
    p_cal = proba(cal_mask)
    thr = threshold_for_fpr(p_cal[~y[cal_mask]], target_fpr, min_threshold)
    clf.threshold = thr
    report = {"threshold": thr, "target_fpr": target_fpr, "min_threshold": min_threshold,
              "calibration_split": "calibration" if cal.any() else "train (no calibration episodes)",
              "calibration": _rates(p_cal, y[cal_mask], thr),
              "train": _rates(proba(tr), y[tr], thr),
              "test": _rates(proba(te), y[te], thr) if te.any() else None,
              "episodes": {"train": len(tr_ids), "calibration": len(cal_ids), "test": len(te_ids)},
              "steps": steps, "final_loss": float(np.mean(losses[-20:])),
              "train_seconds": round(train_time, 2), "config": asdict(cfg)}
    clf.report = report
    return clf, report


# ---------------------------------------------------------------------------- data
def frames_from_dataset(dataset, image_keys: Sequence[str] | None = None,
                        label_key: str | None = None, episodes: Sequence[int] | None = None):
    """(images {key: [N,H,W,3]}, labels [N], episode ids [N]) from a LeRobotDataset.

    `label_key` default: `label.success` (per-observation labels from `robot-rl collect`),
    else `next.success` shifted to the observation it describes (frame t+1's observation is
    the result of step t; frame 0 is labelled False)."""
    from robot_rl.data.lerobot import LeRobotDataset
    ds = dataset if isinstance(dataset, LeRobotDataset) else LeRobotDataset(dataset)
    cams = [k[len("observation.images."):] for k in ds.camera_keys]
    keys = list(image_keys) if image_keys else cams
    missing = [k for k in keys if k not in cams]
    if missing:
        raise ValueError(f"{ds.root} has no camera(s) {missing}; it has {cams}")
    if label_key is None:
        label_key = "label.success" if "label.success" in ds.features else "next.success"
    if label_key not in ds.features:
        raise ValueError(f"{ds.root} has no labels {label_key!r}")
    imgs = {k: [] for k in keys}
    labels, groups = [], []
    for e in (range(ds.num_episodes) if episodes is None else episodes):
        ep = ds.episode(e)
        lab = np.asarray(ep[label_key], bool).reshape(-1)
        if label_key == "next.success":
            lab = np.concatenate([[False], lab[:-1]])
        for k in keys:
            imgs[k].append(ep[f"observation.images.{k}"])
        labels.append(lab)
        groups.append(np.full(len(lab), e))
    if not labels:
        raise ValueError(f"{ds.root} has no episodes")
    return ({k: np.concatenate(v) for k, v in imgs.items()}, np.concatenate(labels),
            np.concatenate(groups))


def preload_torch_before_rendering() -> None:
    """Import torch's compiler stack (torch._dynamo -> triton) before MuJoCo's EGL/OSMesa
    renderer is initialized. Measured here: importing triton AFTER an offscreen render
    segfaults the process (triton's bundled LLVM vs the GL driver's), and torch imports it
    lazily on the first optimizer construction. Harmless if torch is absent."""
    try:
        import torch._dynamo  # noqa: F401
    except Exception:  # noqa: BLE001 - only an ordering guard
        pass


def train_classifier_from_dataset(dataset, out, image_keys: Sequence[str] | None = None,
                                  label_key: str | None = None, progress: bool = True,
                                  **train_kwargs) -> dict:
    """`robot-rl reward train-classifier`: train on a LeRobotDataset, save to `out`, return the
    report (held-out accuracy and FPR at the chosen threshold)."""
    images, labels, groups = frames_from_dataset(dataset, image_keys, label_key)
    cfg_fields = set(ClassifierConfig.__dataclass_fields__)
    cfg_kwargs = {k: train_kwargs.pop(k) for k in list(train_kwargs) if k in cfg_fields}
    cfg = ClassifierConfig(image_keys=tuple(images), **cfg_kwargs)
    clf, report = train_success_classifier(images, labels, groups, config=cfg,
                                           progress=progress, **train_kwargs)
    clf.save(out)
    return {**report, "dataset": str(dataset), "out": str(out),
            "label_key": label_key or ("label.success" if "label.success" in
                                       _features(dataset) else "next.success")}


def _features(dataset) -> dict:
    from robot_rl.data.lerobot import LeRobotDataset
    return (dataset if isinstance(dataset, LeRobotDataset) else LeRobotDataset(dataset)).features
