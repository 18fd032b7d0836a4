"""Behaviour cloning: a state-conditioned diagonal Gaussian fitted by maximum likelihood.

The policy predicts a mean and a per-dimension log standard deviation for each observation,
so it keeps the spread of the data: on mixed-quality demos the std grows where the
demonstrators disagree (e.g. the gripper command at the grasp), which is what a value
function can later steer (V-GPS). ``act(obs, deterministic=True)`` returns the mean; sampled
actions are clipped to the env's ``[-1, 1]`` box (the mean is not squashed, so actions that
sit on the box edge, as clipped expert moves do, are fitted without a tanh singularity).

Observation inputs are normalized per key with mean/std frozen from the training data
(``ObservationEncoder``), stored in the state dict.

``BCAgent`` exposes ``act`` / ``act_batch(obs, deterministic)`` like ``SACAgent``, so the
adapters in ``robot_rl.policies`` wrap either.
"""
from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from robot_rl.data.buffer import normalize_obs_spec
from robot_rl.networks import MLP, ObservationEncoder
from robot_rl.run_config import BCConfig  # the `agent` section of a `robot-rl bc` config

__all__ = ["BCConfig", "GaussianPolicyNet", "gaussian_log_prob", "BCAgent", "obs_to_tensors"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian log density, summed over the action dims -> ``[B]``."""
    z = (action - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - _HALF_LOG_2PI).sum(-1)


class GaussianPolicyNet(nn.Module):
    """features -> (mean, log_std); log_std squashed into ``[log_std_min, log_std_max]``."""

    def __init__(self, in_dim: int, action_dim: int, cfg: BCConfig):
        super().__init__()
        self.trunk = MLP(in_dim, cfg.hidden_dims, None, cfg.activation, cfg.layer_norm)
        self.head = nn.Linear(self.trunk.out_dim, 2 * action_dim)
        self.log_std_min, self.log_std_max = cfg.log_std_min, cfg.log_std_max

    def forward(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.head(self.trunk(features)).chunk(2, dim=-1)
        span = self.log_std_max - self.log_std_min
        return mean, self.log_std_min + 0.5 * span * (torch.tanh(log_std) + 1.0)


def vector_obs_spec(obs_spec: Any, who: str) -> Dict[str, Tuple[Tuple[int, ...], np.dtype]]:
    """The normalized spec of a learner that takes vector observations only (BC, offline)."""
    spec = normalize_obs_spec(obs_spec)
    bad = [k for k, (s, _) in spec.items() if len(s) != 1]
    if bad:
        raise ValueError(f"{who} take vector observations only; drop keys {bad}")
    return spec


def obs_to_tensors(encoder: ObservationEncoder, obs: Mapping[str, Any], device) -> Dict[str, torch.Tensor]:
    """Batched numpy/torch observation dict -> float tensors for the encoder's vector keys."""
    out = {}
    for k in encoder.vector_keys:
        if k not in obs:
            raise KeyError(f"observation lacks key {k!r}; it has {sorted(obs)}")
        out[k] = torch.as_tensor(np.asarray(obs[k]), device=device).float()
    return out


def set_encoder_normalization(encoder: ObservationEncoder, obs: Mapping[str, np.ndarray]) -> None:
    """Freeze the encoder's per-key input normalization to the data's mean/std."""
    encoder.set_normalization({k: (np.asarray(obs[k], np.float64).mean(0), np.asarray(obs[k], np.float64).std(0))
                               for k in encoder.vector_keys})


class BCAgent:
    """Gaussian behaviour cloning on vector observations.

    Args:
        obs_spec: ``{key: (shape, dtype)}`` or a gymnasium Dict space (vector keys only).
        action_dim: env action dim.
        config: :class:`BCConfig`.
        seed: seeds network init and the sampling generator (``act_generator``).
    """

    def __init__(self, obs_spec: Any, action_dim: int, config: Optional[BCConfig] = None,
                 device: Any = "cpu", seed: int = 0):
        self.config = cfg = config if config is not None else BCConfig()
        self.device = torch.device(device)
        self.obs_spec = vector_obs_spec(obs_spec, "BC agents")
        self.action_dim = int(action_dim)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.encoder = ObservationEncoder(self.obs_spec, encoder_type="none").to(self.device)
            self.net = GaussianPolicyNet(self.encoder.out_dim, self.action_dim, cfg).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.act_generator = torch.Generator(device=self.device)
        self.act_generator.manual_seed(seed + 1)
        self.steps = 0

    # ------------------------------------------------------------------ training
    def set_obs_normalization(self, obs: Mapping[str, np.ndarray]) -> None:
        set_encoder_normalization(self.encoder, obs)

    def log_prob(self, obs: Mapping[str, Any], action: Any) -> torch.Tensor:
        mean, log_std = self.net(self.encoder(obs_to_tensors(self.encoder, obs, self.device)))
        return gaussian_log_prob(mean, log_std, torch.as_tensor(np.asarray(action), device=self.device).float())

    def update(self, batch: Mapping[str, Any], weights: Optional[torch.Tensor] = None) -> float:
        """One gradient step on ``-E[w * log pi(a|s)]`` (``w = 1``: plain BC; IQL passes AWR weights)."""
        logp = self.log_prob(batch["obs"], batch["action"])
        loss = -(logp if weights is None else weights * logp).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.steps += 1
        return float(loss.detach())

    def fit(self, data, steps: Optional[int] = None, seed: int = 0, progress: bool = True,
            log_every: int = 500, log=None) -> Dict[str, float]:
        """Train on ``data`` (anything with ``obs`` and ``sample(batch_size, rng)``, e.g.
        :class:`robot_rl.agents.offline.OfflineData`); normalization is frozen from ``data.obs``
        on the first call. ``log(step, **metrics)`` receives the loss every ``log_every`` steps."""
        from tqdm import tqdm
        if self.steps == 0:
            self.set_obs_normalization(data.obs)
        steps = self.config.steps if steps is None else int(steps)
        rng = np.random.default_rng(seed)
        bar = tqdm(range(steps), desc="bc", unit="step", disable=not progress, leave=False)
        loss = float("nan")
        for i in bar:
            loss = self.update(data.sample(self.config.batch_size, rng))
            if (i + 1) % log_every == 0 or i + 1 == steps:
                bar.set_postfix(nll=f"{loss:.3f}")
                if log is not None:
                    log(self.steps, nll=loss)
        return {"nll": loss, "steps": self.steps}

    # ------------------------------------------------------------------ acting
    def act(self, obs: Mapping[str, Any], deterministic: bool = False) -> np.ndarray:
        """Single observation -> action ``float32 [A]`` in [-1, 1]."""
        return self.act_batch({k: np.asarray(obs[k])[None] for k in self.encoder.vector_keys}, deterministic)[0]

    @torch.no_grad()
    def act_batch(self, obs: Mapping[str, Any], deterministic: bool = False) -> np.ndarray:
        """Batched observations (leading dim N) -> actions ``float32 [N, A]`` in [-1, 1], one
        forward pass (V-GPS draws its K candidates this way)."""
        mean, log_std = self.net(self.encoder(obs_to_tensors(self.encoder, obs, self.device)))
        if deterministic:
            a = mean
        else:
            noise = torch.randn(mean.shape, generator=self.act_generator, device=self.device)
            a = mean + log_std.exp() * noise
        return a.clamp(-1.0, 1.0).cpu().numpy().astype(np.float32)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> Dict[str, Any]:
        return {"kind": "bc", "config": asdict(self.config), "action_dim": self.action_dim,
                "obs_spec": {k: [list(s), np.dtype(d).str] for k, (s, d) in self.obs_spec.items()},
                "encoder": self.encoder.state_dict(), "net": self.net.state_dict(),
                "opt": self.opt.state_dict(), "steps": self.steps,
                "act_generator": self.act_generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.steps = int(state["steps"])
        self.act_generator.set_state(state["act_generator"].cpu())

    def save(self, path) -> None:
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path, device: Any = "cpu", seed: Optional[int] = None) -> "BCAgent":
        """Rebuild from a file written by :meth:`save`. ``seed`` re-seeds the sampling generator
        (default: restore the saved generator state)."""
        state = torch.load(path, map_location=device, weights_only=True)
        if state.get("kind") != "bc":
            raise ValueError(f"{path} is not a BC checkpoint (kind={state.get('kind')!r})")
        spec = {k: (tuple(s), np.dtype(d)) for k, (s, d) in state["obs_spec"].items()}
        agent = cls(spec, state["action_dim"], BCConfig(**state["config"]), device=device)
        agent.load_state_dict(state)
        if seed is not None:
            agent.act_generator.manual_seed(seed)
        return agent
