"""Neural network building blocks for the robot_rl learner (PyTorch).

Conventions
-----------
* Observations are dicts of tensors with a leading batch dim.  Vector keys are
  float ``[B, D]``; image keys are ``uint8 [B, H, W, C]`` (channels-last, as
  stored in the replay buffer).  A key handled by a :class:`PretrainedTrunk` may
  instead hold cached float features ``[B, F]`` (computed once at insert time).
* Actions live in ``[-1, 1]^A``.
* The critic ensemble returns ``[N, B]`` Q-values computed with batched matmuls
  (one ``einsum``/``baddbmm`` per layer for all ``N`` members).
"""

from __future__ import annotations

import math
import os
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "get_activation",
    "MLP",
    "EnsembleLinear",
    "EnsembleLayerNorm",
    "CriticEnsemble",
    "hl_gauss_probs",
    "TanhGaussianActor",
    "tanh_log_det_jacobian",
    "SpatialSoftmax",
    "ConvEncoder",
    "PretrainedTrunk",
    "ObservationEncoder",
    "random_shift",
    "is_image_spec",
]

_ACTIVATIONS: Dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}


def get_activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name.lower()]()
    except KeyError as e:  # pragma: no cover - config error
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}") from e


# ---------------------------------------------------------------------------
# MLPs
# ---------------------------------------------------------------------------


class MLP(nn.Module):
    """``[Linear -> LayerNorm -> act] * len(hidden_dims)`` (+ optional output Linear)."""

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int] = (256, 256),
        out_dim: Optional[int] = None,
        activation: str = "relu",
        layer_norm: bool = True,
    ):
        super().__init__()
        layers = []
        d = in_dim
        for h in hidden_dims:
            layers.append(nn.Linear(d, h))
            if layer_norm:
                layers.append(nn.LayerNorm(h))
            layers.append(get_activation(activation))
            d = h
        if out_dim is not None:
            layers.append(nn.Linear(d, out_dim))
            d = out_dim
        self.net = nn.Sequential(*layers)
        self.out_dim = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class EnsembleLinear(nn.Module):
    """``N`` independent linear layers evaluated with one batched matmul.

    weight: ``[N, in, out]``, bias: ``[N, 1, out]``.
    Input ``[B, in]`` (shared by all members) or ``[N, B, in]``; output ``[N, B, out]``.
    ``idx`` (LongTensor ``[M]``) evaluates only the selected members.
    """

    def __init__(self, num_members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.num_members, self.in_dim, self.out_dim = num_members, in_dim, out_dim
        self.weight = nn.Parameter(torch.empty(num_members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same distribution as nn.Linear's default init, independently per member.
        bound = 1.0 / math.sqrt(self.in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(
        self, x: torch.Tensor, idx: Optional[torch.Tensor] = None, detach_params: bool = False
    ) -> torch.Tensor:
        w, b = self.weight, self.bias
        if detach_params:
            w, b = w.detach(), b.detach()
        if idx is not None:
            w, b = w[idx], b[idx]
        if x.dim() == 2:
            # shared input: a single [B, in] x [in, N*out] GEMM via einsum
            return torch.einsum("bi,nio->nbo", x, w) + b
        return torch.baddbmm(b, x, w)

    def extra_repr(self) -> str:
        return f"members={self.num_members}, in={self.in_dim}, out={self.out_dim}"


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dim with per-member affine params ``[N, 1, D]``."""

    def __init__(self, num_members: int, dim: int, eps: float = 1e-5):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(num_members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(num_members, 1, dim))

    def forward(
        self, x: torch.Tensor, idx: Optional[torch.Tensor] = None, detach_params: bool = False
    ) -> torch.Tensor:
        w, b = self.weight, self.bias
        if detach_params:
            w, b = w.detach(), b.detach()
        if idx is not None:
            w, b = w[idx], b[idx]
        return torch.addcmul(b, F.layer_norm(x, (self.dim,), eps=self.eps), w)


class CriticEnsemble(nn.Module):
    """Ensemble of ``N`` Q(s, a) MLPs (Linear -> LayerNorm -> act), batched.

    ``forward(features [B, F], action [B, A], idx=None) -> [N or M, B]``.

    ``residual_blocks`` > 0 appends BRO-style residual blocks (Nauman et al. 2024) after the
    hidden layers: ``x + LN(Linear(act(LN(Linear(x)))))`` at the last hidden width, the
    normalized residual form that lets critics grow deeper without losing plasticity.

    With ``value_bins`` > 0 each member is an HL-Gauss classification critic (Farebrother
    et al. 2024, "Stop Regressing"): it outputs logits over ``value_bins`` values evenly
    spaced over ``value_range``, its Q is their softmax-weighted mean, and ``td_loss``
    is the cross-entropy against a Gaussian of std ``0.75`` bin widths centred on the
    TD target (clipped to the bins' outer edges, half a bin past the range), integrated
    over each bin. Regression critics (the default) are fit by the squared error.
    """

    def __init__(
        self,
        in_dim: int,
        action_dim: int,
        num_critics: int = 10,
        hidden_dims: Sequence[int] = (256, 256),
        activation: str = "relu",
        layer_norm: bool = True,
        value_bins: int = 0,
        value_range: Tuple[float, float] = (0.0, 1.0),
        residual_blocks: int = 0,
    ):
        super().__init__()
        self.num_critics = num_critics
        self.layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        d = in_dim + action_dim
        for h in hidden_dims:
            self.layers.append(EnsembleLinear(num_critics, d, h))
            self.norms.append(EnsembleLayerNorm(num_critics, h) if layer_norm else nn.Identity())
            d = h
        self.act = get_activation(activation)
        self.blocks = nn.ModuleList(
            nn.ModuleList([EnsembleLinear(num_critics, d, d), EnsembleLayerNorm(num_critics, d),
                           EnsembleLinear(num_critics, d, d), EnsembleLayerNorm(num_critics, d)])
            for _ in range(residual_blocks))
        self.value_bins = int(value_bins)
        self.out = EnsembleLinear(num_critics, d, max(1, self.value_bins))
        if self.value_bins:
            lo, hi = map(float, value_range)
            if not (hi > lo and self.value_bins >= 2):
                raise ValueError(f"HL-Gauss critics need value_bins >= 2 and value_range lo < hi, "
                                 f"got {self.value_bins} bins over {value_range}")
            width = (hi - lo) / (self.value_bins - 1)
            # bin centres at exactly lo..hi, so both ends of the range are representable
            self.register_buffer("bin_centers", torch.linspace(lo, hi, self.value_bins))
            self.register_buffer("bin_edges", torch.linspace(lo - width / 2, hi + width / 2, self.value_bins + 1))
            self.sigma = 0.75 * width

    def _outputs(self, features, action, idx, detach_params) -> torch.Tensor:
        x = torch.cat([features, action], dim=-1)
        for layer, norm in zip(self.layers, self.norms):
            x = layer(x, idx, detach_params)
            if isinstance(norm, EnsembleLayerNorm):
                x = norm(x, idx, detach_params)
            x = self.act(x)
        for lin1, norm1, lin2, norm2 in self.blocks:
            y = self.act(norm1(lin1(x, idx, detach_params), idx, detach_params))
            x = x + norm2(lin2(y, idx, detach_params), idx, detach_params)
        return self.out(x, idx, detach_params)

    def _values(self, out: torch.Tensor) -> torch.Tensor:
        if not self.value_bins:
            return out.squeeze(-1)
        return out.softmax(-1) @ self.bin_centers

    def forward(
        self,
        features: torch.Tensor,
        action: torch.Tensor,
        idx: Optional[torch.Tensor] = None,
        detach_params: bool = False,
    ) -> torch.Tensor:
        return self._values(self._outputs(features, action, idx, detach_params))

    def td_loss(self, features: torch.Tensor, action: torch.Tensor,
                target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(loss averaged over members and batch, Q ``[N, B]``) of every member fit to
        ``target`` ``[B]``: squared error, or HL-Gauss cross-entropy with ``value_bins``."""
        out = self._outputs(features, action, None, False)
        q = self._values(out)
        if not self.value_bins:
            return (q - target.unsqueeze(0)).pow(2).mean(), q
        return -(hl_gauss_probs(target, self.bin_edges, self.sigma) * out.log_softmax(-1)).sum(-1).mean(), q


def hl_gauss_probs(target: torch.Tensor, edges: torch.Tensor, sigma: float) -> torch.Tensor:
    """``[B, K]`` mass of a Normal(target clipped into the bins, sigma) in each of the K bins
    bounded by ``edges`` ``[K + 1]``, renormalised to the bins' span."""
    t = target.clamp(edges[0], edges[-1]).unsqueeze(-1)
    cdf = torch.special.ndtr((edges - t) / sigma)
    return (cdf[:, 1:] - cdf[:, :-1]) / (cdf[:, -1:] - cdf[:, :1])


# ---------------------------------------------------------------------------
# Actor
# ---------------------------------------------------------------------------

_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def tanh_log_det_jacobian(u: torch.Tensor) -> torch.Tensor:
    """``log(1 - tanh(u)^2)`` computed stably, elementwise."""
    return 2.0 * (_LOG2 - u - F.softplus(-2.0 * u))


class TanhGaussianActor(nn.Module):
    """Tanh-squashed diagonal Gaussian policy.

    ``log_std`` is squashed into ``[log_std_min, log_std_max]`` with a tanh.
    ``sample(features, noise)`` uses externally supplied standard-normal noise so
    callers control the RNG (and compiled graphs stay RNG-free).
    """

    def __init__(
        self,
        in_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int] = (256, 256),
        activation: str = "relu",
        layer_norm: bool = True,
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
    ):
        super().__init__()
        self.action_dim = action_dim
        self.trunk = MLP(in_dim, hidden_dims, None, activation, layer_norm)
        self.head = nn.Linear(self.trunk.out_dim, 2 * action_dim)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.head(self.trunk(features)).chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(log_std) + 1.0)
        return mean, log_std

    @staticmethod
    def squash_and_log_prob(
        mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        u = mean + log_std.exp() * noise
        log_prob = (-0.5 * noise.pow(2) - log_std - _HALF_LOG_2PI).sum(-1)
        log_prob = log_prob - tanh_log_det_jacobian(u).sum(-1)
        return torch.tanh(u), log_prob

    def sample(
        self,
        features: torch.Tensor,
        noise: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized sample; returns ``(action [B, A], log_prob [B])``."""
        mean, log_std = self(features)
        if noise is None:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return self.squash_and_log_prob(mean, log_std, noise)

    def deterministic(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(features)[0])


# ---------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------


def is_image_spec(shape: Sequence[int], dtype) -> bool:
    """An observation key is an image if it is a 3-D uint8 array ``[H, W, C]``."""
    return len(tuple(shape)) == 3 and np.dtype(dtype) == np.uint8


def random_shift(
    images: torch.Tensor, pad: int = 4, generator: Optional[torch.Generator] = None,
    shifts: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """DrQ random-shift augmentation for channels-last images ``[B, H, W, C]``.

    Equivalent to replicate-padding by ``pad`` and taking a random ``H x W``
    crop, i.e. each image is translated by an integer ``(dy, dx)`` in
    ``[-pad, pad]^2`` with border replication.  Implemented as one gather with
    clamped indices (no padding copy, works on uint8), so it is cheap on CPU.
    ``shifts`` (``[B, 2]`` ints in ``[0, 2*pad]``) can be passed explicitly;
    output pixel ``(i, j)`` = input pixel ``(clamp(i + sy - pad), clamp(j + sx - pad))``.
    """
    if pad <= 0:
        return images
    B, H, W = images.shape[:3]
    dev = images.device
    if shifts is None:
        shifts = torch.randint(0, 2 * pad + 1, (B, 2), generator=generator, device=generator.device if generator is not None else dev)
    shifts = shifts.to(dev)
    rows = (torch.arange(H, device=dev).unsqueeze(0) + shifts[:, :1] - pad).clamp_(0, H - 1)  # [B, H]
    cols = (torch.arange(W, device=dev).unsqueeze(0) + shifts[:, 1:] - pad).clamp_(0, W - 1)  # [B, W]
    # two cheap gathers (whole rows, then columns) beat one 3-index gather on CPU
    out = images[torch.arange(B, device=dev).unsqueeze(1), rows]  # [B, H, W, ...]
    idx = cols.view(B, 1, W, *([1] * (images.dim() - 3))).expand(out.shape)
    return torch.gather(out, 2, idx)


class SpatialSoftmax(nn.Module):
    """Per-channel soft-argmax keypoints: ``[B, C, h, w] -> [B, 2C]`` (x, y in [-1, 1])."""

    def __init__(self, height: int, width: int, learnable_temperature: bool = True):
        super().__init__()
        ys, xs = torch.meshgrid(
            torch.linspace(-1.0, 1.0, height), torch.linspace(-1.0, 1.0, width), indexing="ij"
        )
        self.register_buffer("pos", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1), persistent=False)
        self.log_temperature = nn.Parameter(torch.zeros(()), requires_grad=learnable_temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C = x.shape[:2]
        attn = torch.softmax(x.reshape(B, C, -1) / self.log_temperature.exp(), dim=-1)
        return (attn @ self.pos).reshape(B, 2 * C)


class ConvEncoder(nn.Module):
    """Small conv encoder trained from scratch (DrQ/SERL style).

    uint8 ``[B, H, W, C]`` -> ``/255 - 0.5`` -> convs (3x3, ReLU) -> pooling
    (``flatten`` | ``spatial_softmax`` | ``avg``) -> Linear -> LayerNorm -> tanh.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        filters: Sequence[int] = (32, 32, 32, 32),
        strides: Sequence[int] = (2, 2, 2, 1),
        kernel_size: int = 3,
        pooling: str = "flatten",
        feature_dim: int = 64,
        activation: str = "relu",
    ):
        super().__init__()
        H, W, C = image_shape
        if len(strides) != len(filters):
            raise ValueError("conv filters and strides must have the same length")
        layers = []
        c = C
        for f, s in zip(filters, strides):
            layers += [nn.Conv2d(c, f, kernel_size, stride=s), get_activation(activation)]
            c = f
        self.convs = nn.Sequential(*layers)
        with torch.no_grad():
            h, w = self.convs(torch.zeros(1, C, H, W)).shape[-2:]
        self.pooling = pooling
        if pooling == "flatten":
            self.pool: nn.Module = nn.Flatten()
            pooled = c * h * w
        elif pooling == "spatial_softmax":
            self.pool = SpatialSoftmax(h, w)
            pooled = 2 * c
        elif pooling == "avg":
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            pooled = c
        else:
            raise ValueError(f"unknown pooling {pooling!r}")
        self.proj = nn.Sequential(nn.Linear(pooled, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
        self.out_dim = feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2)  # channels-last memory -> NCHW view (channels_last format)
        x = x.float() * (1.0 / 255.0) - 0.5
        return self.proj(self.pool(self.convs(x)))


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class PretrainedTrunk(nn.Module):
    """Frozen torchvision backbone (default resnet18) producing a feature vector.

    ``name`` is a torchvision model name (or directly a local resnet18 state_dict
    path).  ``weights`` may be:
      * ``None``: random init (tests / offline machines),
      * a torchvision weights identifier (``"DEFAULT"``, ``"IMAGENET1K_V1"``, ...),
        loaded through ``torchvision.models.get_model(name, weights=...)``,
      * a path to a local ``state_dict`` file (``torch.save(model.state_dict())``).

    Input uint8 ``[B, H, W, 3]`` -> ImageNet normalisation -> backbone without
    its classifier -> ``[B, out_dim]`` float32.  Always eval mode, no gradients,
    so the features can be computed once when a frame is inserted into the
    replay buffer and cached there (see :meth:`numpy_transform`).
    """

    def __init__(self, name: str = "resnet18", weights: Optional[str] = None, resize: Optional[int] = None):
        super().__init__()
        import torchvision

        if os.path.isfile(str(name)):  # PretrainedTrunk("/path/to/resnet18.pt")
            name, weights = "resnet18", str(name)
        self.name, self.weights_spec, self.resize = name, weights, resize
        if weights is not None and os.path.isfile(str(weights)):
            model = torchvision.models.get_model(name, weights=None)
            state = torch.load(str(weights), map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            missing, unexpected = model.load_state_dict(state, strict=False)
            bad = [k for k in missing if not k.startswith(("fc.", "classifier.", "head"))]
            if bad:
                raise RuntimeError(f"pretrained weights {weights} missing keys: {bad[:5]}")
        else:
            model = torchvision.models.get_model(name, weights=weights)
        # strip the classification head
        if hasattr(model, "fc"):
            out_dim = model.fc.in_features
            model.fc = nn.Identity()
        elif hasattr(model, "classifier"):
            last = [m for m in model.classifier.modules() if isinstance(m, nn.Linear)][0]
            out_dim = last.in_features
            model.classifier = nn.Identity()
        elif hasattr(model, "heads"):
            out_dim = model.hidden_dim
            model.heads = nn.Identity()
        else:  # pragma: no cover
            raise ValueError(f"don't know how to strip the head of {name}")
        self.model = model
        self.out_dim = int(out_dim)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "PretrainedTrunk":  # always frozen (BatchNorm stats too)
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() * (1.0 / 255.0)
        if self.resize is not None:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        return self.model(x).float()

    def numpy_transform(self, dtype=np.float16) -> Callable[[np.ndarray], np.ndarray]:
        """Function ``uint8 [H, W, 3] -> dtype [out_dim]`` for replay-buffer insert-time caching."""

        def fn(img: np.ndarray) -> np.ndarray:
            dev = self.mean.device
            t = torch.as_tensor(np.ascontiguousarray(img), device=dev).unsqueeze(0)
            return self(t)[0].cpu().numpy().astype(dtype)

        return fn


class ObservationEncoder(nn.Module):
    """Encodes an observation dict into one feature vector.

    * vector keys (``state``, ``env_state``, ...): concatenated as-is,
    * image keys: one encoder per camera:
        - ``"conv"``: :class:`ConvEncoder` trained from scratch,
        - ``"pretrained"``: a frozen :class:`PretrainedTrunk` (shared, not registered
          as a submodule here so that copies of this encoder share it) followed by a
          trainable ``Linear -> LayerNorm -> tanh`` head.  The input for such a key
          may be either raw uint8 images ``[B, H, W, 3]`` or cached trunk features
          ``[B, F]``.
        - ``"none"``: image keys are ignored.

    ``obs_spec`` maps key -> ``(shape, dtype)`` of the *raw* environment observation.
    """

    def __init__(
        self,
        obs_spec: Mapping[str, Tuple[Tuple[int, ...], np.dtype]],
        encoder_type: str = "conv",
        feature_dim: int = 64,
        conv_filters: Sequence[int] = (32, 32, 32, 32),
        conv_strides: Sequence[int] = (2, 2, 2, 1),
        conv_pooling: str = "flatten",
        trunk: Optional[PretrainedTrunk] = None,
        image_keys: Optional[Sequence[str]] = None,
        fourier_features: int = 0,
        fourier_scale: float = 3.0,
    ):
        super().__init__()
        self.encoder_type = encoder_type
        spec = {k: (tuple(s), np.dtype(d)) for k, (s, d) in obs_spec.items()}
        all_images = sorted(k for k, (s, d) in spec.items() if is_image_spec(s, d))
        self.vector_keys = sorted(k for k, (s, d) in spec.items() if len(s) == 1)
        if image_keys is None:
            image_keys = all_images
        if encoder_type == "none":
            image_keys = []
        self.image_keys = list(image_keys)
        self.image_encoders = nn.ModuleDict()
        self._trunk = [trunk]  # plain list: not a registered submodule
        dim = sum(spec[k][0][0] for k in self.vector_keys)
        # Fourier features of the normalized vector inputs, [sin, cos](2 pi x B) with a fixed
        # Gaussian B (scale: cycles per std): an MLP fits fine-scale structure of its inputs,
        # such as a millimetre next to a hole, poorly (spectral bias; Yang et al. 2022 fit
        # value functions this way). Fixed seed: every copy of the encoder has the same B.
        B = None
        if fourier_features and dim:
            B = torch.randn(dim, fourier_features, generator=torch.Generator().manual_seed(0))
            B, dim = B * fourier_scale, dim + 2 * fourier_features
        self.register_buffer("fourier", B)
        # Frozen per-key normalization of vector inputs (set from data by set_normalization).
        # Robot states are metres and radians of a few cm: unnormalized, the critic cannot tell
        # states apart and its values flatten out (docs/results.md).
        for k in self.vector_keys:
            n = spec[k][0][0]
            self.register_buffer(f"mean_{k}", torch.zeros(n))
            self.register_buffer(f"std_{k}", torch.ones(n))
        for k in self.image_keys:
            if encoder_type == "conv":
                enc = ConvEncoder(spec[k][0], conv_filters, conv_strides, pooling=conv_pooling, feature_dim=feature_dim)
            elif encoder_type == "pretrained":
                if trunk is None:
                    raise ValueError("encoder_type='pretrained' needs a PretrainedTrunk")
                enc = nn.Sequential(nn.Linear(trunk.out_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
            else:
                raise ValueError(f"unknown image encoder type {encoder_type!r}")
            self.image_encoders[k] = enc
            dim += feature_dim
        if dim == 0:
            raise ValueError("observation spec has no usable keys")
        self.out_dim = dim

    @property
    def trunk(self) -> Optional[PretrainedTrunk]:
        return self._trunk[0]

    def encode_image(self, key: str, x: torch.Tensor) -> torch.Tensor:
        if self.encoder_type == "pretrained":
            if x.dim() == 4:  # raw image -> frozen trunk
                x = self.trunk(x)
            x = x.float()
        return self.image_encoders[key](x)

    @torch.no_grad()
    def set_normalization(self, stats: Mapping[str, Tuple[np.ndarray, np.ndarray]],
                          min_std: float = 1e-2) -> None:
        """stats: key -> (mean, std) of that vector input. `min_std` keeps near-constant
        inputs (e.g. a fixed orientation) from being blown up into noise."""
        for k, (mean, std) in stats.items():
            if k in self.vector_keys:
                getattr(self, f"mean_{k}").copy_(torch.as_tensor(mean, dtype=torch.float32))
                getattr(self, f"std_{k}").copy_(torch.as_tensor(np.maximum(std, min_std), dtype=torch.float32))

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        parts = [(obs[k].float() - getattr(self, f"mean_{k}")) / getattr(self, f"std_{k}")
                 for k in self.vector_keys]
        if self.fourier is not None:
            angle = 2 * math.pi * torch.cat(parts, dim=-1) @ self.fourier
            parts += [torch.sin(angle), torch.cos(angle)]
        parts += [self.encode_image(k, obs[k]) for k in self.image_keys]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
