"""CLIP reward (VLM-RM, Rocamonde et al. 2023) with goal-baseline regularization.

    R(x) = 1 - 1/2 || (x - g) P_alpha ||^2,   P_alpha = alpha P + (1 - alpha) I,
    P = d d^T / ||d||^2,  d = g - b

x is the L2-normalized image embedding, g (b) the normalized mean of the normalized target
(baseline) prompt embeddings. Normalization convention: VLM-RM's code averages the unit prompt
embeddings but does not renormalize the mean; we do, so that g and b lie on the unit sphere and
at alpha = 0, 1 - 1/2 ||x - g||^2 = x.g is exactly the cosine similarity (with a mean of norm
|g| < 1 it would be |g| cos + (1 - |g|^2)/2: the same ranking, a different value). At alpha = 1
only the component of x along g - b counts.

The image/text encoder is pluggable (`encoder=` anything with `encode_image(uint8 [B,H,W,3])`
and `encode_text(list[str])`); the default is an open_clip model by name with a `pretrained`
tag (downloaded by open_clip, needs network the first time), a local checkpoint file, or None
(random weights: tests and benchmarks only). Text embeddings are computed once per prompt and
cached; frames are embedded in batches of `batch_size`.
"""
from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np

from robot_rl.rewards.base import RewardModel, as_batch, batch_size as _batch_size, require_key

__all__ = ["OpenCLIPEncoder", "CLIPReward", "projection_matrix", "goal_baseline_reward"]


def _normalize(x, eps: float = 1e-12):
    import torch
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def projection_matrix(goal, baseline, alpha: float):
    """P_alpha = alpha P + (1 - alpha) I with P the orthogonal projection onto g - b."""
    import torch
    g = torch.as_tensor(goal, dtype=torch.float64).reshape(-1)
    eye = torch.eye(g.numel(), dtype=torch.float64)
    if baseline is None:
        if alpha != 0:
            raise ValueError("alpha != 0 needs baseline prompts (the direction g - b)")
        return eye
    d = g - torch.as_tensor(baseline, dtype=torch.float64).reshape(-1)
    n2 = float(d @ d)
    if n2 <= 1e-20:
        raise ValueError("goal and baseline embeddings coincide: no direction g - b")
    P = torch.outer(d, d) / n2
    return alpha * P + (1.0 - alpha) * eye


def goal_baseline_reward(x, goal, baseline=None, alpha: float = 0.0, proj=None):
    """R = 1 - 1/2 ||(x/|x| - g) P_alpha||^2 for embeddings x [B, D] (g, b unit vectors)."""
    import torch
    x = _normalize(torch.as_tensor(x, dtype=torch.float64))
    g = torch.as_tensor(goal, dtype=torch.float64).reshape(1, -1)
    P = projection_matrix(g, baseline, alpha) if proj is None else proj.to(torch.float64)
    return 1.0 - 0.5 * ((x - g) @ P).pow(2).sum(-1)


class OpenCLIPEncoder:
    """An open_clip model as an encoder. `pretrained`: an open_clip tag (e.g.
    "laion2b_s34b_b79k", "openai"; fetched through open_clip/huggingface_hub), a local
    checkpoint file, or None for random weights. `model` may also be "hf-hub:org/repo"."""

    def __init__(self, model: str = "ViT-B-32", pretrained: str | None = None,
                 device: str = "cpu", cache_dir: str | None = None, precision: str = "fp32"):
        try:
            import open_clip
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError("the CLIP reward needs open_clip: pip install open_clip_torch") from e
        import torch
        self.model_name, self.pretrained, self.device = model, pretrained, torch.device(device)
        if pretrained is None and not model.startswith(("hf-hub:", "local-dir:")):
            warnings.warn(f"CLIP model {model!r} with RANDOM weights (pretrained=None): fine for "
                          f"tests and timing, meaningless as a reward", stacklevel=3)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model = open_clip.create_model(
                    model, pretrained=pretrained, device=device, precision=precision,
                    cache_dir=cache_dir, require_pretrained=pretrained is not None)
        except Exception as e:
            local = pretrained is not None and os.path.isfile(str(pretrained))
            hint = "" if local else (" (no network? download the checkpoint elsewhere and pass "
                                     "pretrained=/path/to/open_clip_model.safetensors)")
            raise RuntimeError(f"cannot load open_clip model {model!r} with pretrained="
                               f"{pretrained!r}: {e}{hint}") from e
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(model, cache_dir=cache_dir)
        cfg = getattr(self.model.visual, "preprocess_cfg", {}) or {}
        size = cfg.get("size", getattr(self.model.visual, "image_size", 224))
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.mean = torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD)).view(1, 3, 1, 1)
        self.interpolation = cfg.get("interpolation", "bicubic")
        if self.interpolation not in ("bicubic", "bilinear", "nearest"):
            self.interpolation = "bicubic"

    def preprocess(self, frames: np.ndarray):
        """uint8 [B, H, W, 3] -> normalized float [B, 3, h, w]: resize the shorter side to the
        model's size (antialiased, like open_clip's transform), center crop, normalize. Done on
        the whole batch in torch, each frame independently of the others."""
        import torch
        import torch.nn.functional as F
        x = torch.as_tensor(np.ascontiguousarray(frames))
        if x.dim() != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames [B, H, W, 3], got {tuple(x.shape)}")
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        th, tw = self.image_size
        h, w = x.shape[-2:]
        scale = max(th / h, tw / w)
        nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
        if (nh, nw) != (h, w):
            kw = {"antialias": True} if self.interpolation != "nearest" else {}
            kw |= {"align_corners": False} if self.interpolation != "nearest" else {}
            x = F.interpolate(x, size=(nh, nw), mode=self.interpolation, **kw).clamp_(0.0, 1.0)
        top, left = (nh - th) // 2, (nw - tw) // 2
        x = x[:, :, top:top + th, left:left + tw]
        return ((x - self.mean) / self.std).to(self.device)

    def encode_image(self, frames: np.ndarray):
        import torch
        with torch.inference_mode():
            return self.model.encode_image(self.preprocess(frames)).float().cpu()

    def encode_text(self, prompts: Sequence[str]):
        import torch
        with torch.inference_mode():
            return self.model.encode_text(self.tokenizer(list(prompts)).to(self.device)).float().cpu()


class CLIPReward(RewardModel):
    """VLM-RM reward of one camera's frames (see the module docstring).

    `success_threshold` (optional) turns the reward into a zero-shot success detector
    (reward >= threshold), e.g. for `terminate_on_success`."""
    name = "clip"

    def __init__(self, target_prompts: Sequence[str] | str, baseline_prompts: Sequence[str] | str = (),
                 alpha: float = 0.5, model: str = "ViT-B-32", pretrained: str | None = None,
                 image_key: str = "front", batch_size: int = 32, device: str = "cpu",
                 cache_dir: str | None = None, success_threshold: float | None = None,
                 encoder=None):
        import torch
        if isinstance(target_prompts, str):
            target_prompts = [target_prompts]
        if isinstance(baseline_prompts, str):
            baseline_prompts = [baseline_prompts]
        if not target_prompts:
            raise ValueError("CLIPReward needs at least one target prompt")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if alpha != 0.0 and not baseline_prompts:
            raise ValueError("alpha > 0 needs baseline prompts")
        self.encoder = encoder if encoder is not None else OpenCLIPEncoder(
            model, pretrained, device=device, cache_dir=cache_dir)
        self.image_key, self.batch_size, self.alpha = image_key, int(batch_size), float(alpha)
        self.success_threshold = success_threshold
        self.has_success = success_threshold is not None
        self._text_cache: dict[str, torch.Tensor] = {}
        self.set_prompts(target_prompts, baseline_prompts, alpha)

    # ---- text side (cached) ----------------------------------------------------------
    def text_embeddings(self, prompts: Sequence[str]):
        """Unit embeddings [N, D] of prompts, each computed once."""
        import torch
        new = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        if new:
            emb = _normalize(torch.as_tensor(self.encoder.encode_text(new), dtype=torch.float64))
            self._text_cache.update(zip(new, emb))
        return torch.stack([self._text_cache[p] for p in prompts])

    def set_prompts(self, target_prompts: Sequence[str], baseline_prompts: Sequence[str] = (),
                    alpha: float | None = None) -> None:
        alpha = self.alpha if alpha is None else float(alpha)
        self.target_prompts, self.baseline_prompts = list(target_prompts), list(baseline_prompts)
        self.goal = _normalize(self.text_embeddings(self.target_prompts).mean(0))
        self.baseline = (_normalize(self.text_embeddings(self.baseline_prompts).mean(0))
                         if self.baseline_prompts else None)
        self.alpha = alpha
        self.proj = projection_matrix(self.goal, self.baseline, alpha)

    # ---- image side ------------------------------------------------------------------
    def image_embeddings(self, frames: np.ndarray):
        import torch
        frames = np.asarray(frames)
        chunks = [torch.as_tensor(self.encoder.encode_image(frames[i:i + self.batch_size]))
                  for i in range(0, len(frames), self.batch_size)]
        return torch.cat(chunks).to(torch.float64)

    def __call__(self, observations) -> np.ndarray:
        batch = as_batch(observations)
        frames = require_key(batch, self.image_key, "CLIPReward")
        if _batch_size(batch) == 0:
            return np.zeros(0, np.float32)
        x = self.image_embeddings(frames)
        r = goal_baseline_reward(x, self.goal, self.baseline, self.alpha, proj=self.proj)
        return r.numpy().astype(np.float32)

    def success(self, observations) -> np.ndarray:
        if self.success_threshold is None:
            raise NotImplementedError("CLIPReward without success_threshold has no success detector")
        return self(observations) >= self.success_threshold

    def score(self, observations):
        from robot_rl.rewards.base import RewardOutput
        r = self(observations)
        return RewardOutput(r, r >= self.success_threshold if self.has_success else None)
