"""Soft Actor-Critic with the RLPD recipe (+ DrQ augmentation, + HIL-SERL grasp critic).

* Ensemble of ``num_critics`` LayerNorm critics (one batched module); the TD
  target uses the min over a random subset of ``critic_subsample`` target
  critics drawn WITHOUT replacement (``subsample_indices``).
* Actor maximises the *mean* ensemble Q minus ``alpha * log_prob``.
* Temperature is learned to match ``target_entropy`` (default ``target_entropy_per_dim * A``,
  ``-A/2``).
* A shared observation encoder (conv / frozen pretrained trunk + head) is
  trained by the critic loss only; the actor sees detached features (DrQ).
* ``utd_ratio`` critic updates per environment step; the actor/temperature are
  updated every ``actor_update_every`` critic steps (default: once per
  ``utd_ratio`` critic steps, i.e. once per env step as in RLPD).
* Optional HIL-SERL discrete gripper head (:class:`GripperCritic`) trained with
  double DQN; the continuous actor then controls only the arm dims.

All randomness used by updates comes from agent-owned ``torch.Generator``
objects saved in :meth:`SACAgent.state_dict`, so a resumed run continues
bit-exactly given the same batches.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch.optim.adam import adam as torch_adam  # torch.optim.Adam's update as a function

from robot_rl.agents.conservative import conservative_gap
from robot_rl.data.buffer import normalize_obs_spec
from robot_rl.networks import (
    MLP,
    CriticEnsemble,
    ObservationEncoder,
    PretrainedTrunk,
    TanhGaussianActor,
    is_image_spec,
    random_shift,
)
from robot_rl.run_config import SACConfig  # the `agent` section of a run config

__all__ = [
    "SACConfig",
    "SACAgent",
    "GripperCritic",
    "subsample_indices",
    "compute_target_q",
    "temperature_loss",
    "clip_grad_norm_",
    "adam_state",
    "adam_settings",
    "adam_step_",
    "double_dqn_target",
    "grasp_action_to_index",
    "grasp_index_to_action",
    "GRASP_CLOSE",
    "GRASP_STAY",
    "GRASP_OPEN",
]

# Discrete gripper commands.  Index i <-> continuous env value (i - 1).
GRASP_CLOSE, GRASP_STAY, GRASP_OPEN = 0, 1, 2


# ---------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------


def subsample_indices(generator: Optional[torch.Generator], n: int, m: Optional[int]) -> torch.Tensor:
    """``m`` distinct indices from ``range(n)`` (uniform, WITHOUT replacement)."""
    device = generator.device if generator is not None else "cpu"
    if m is None or m >= n:
        return torch.arange(n, device=device)
    return torch.randperm(n, generator=generator, device=device)[:m]


def compute_target_q(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_q: torch.Tensor,
    gamma: Any,
    next_log_prob: Optional[torch.Tensor] = None,
    alpha: Any = 0.0,
    backup_entropy: bool = False,
) -> torch.Tensor:
    """``r + gamma * (1 - terminated) * (min_m Q'_m(s', a') [- alpha * log pi(a'|s')])``;
    ``gamma`` a float or a [B] tensor (``gamma ** k`` after a k-step return).

    ``next_q`` is ``[M, B]`` (the already-subsampled target critics; min over dim 0) or ``[B]``.
    """
    next_v = next_q.min(dim=0).values if next_q.dim() == 2 else next_q
    if backup_entropy:
        next_v = next_v - alpha * next_log_prob
    return reward + gamma * (1.0 - terminated.to(next_v.dtype)) * next_v


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """``alpha * (H - H_target)`` with ``H = -E[log pi]``: alpha shrinks when entropy is above target."""
    return (log_alpha.exp() * (-log_prob.detach() - target_entropy)).mean()


# ---------------------------------------------------------------------------
# The optimizer step: one implementation, run by the eager update and inside the compiled graph
# ---------------------------------------------------------------------------

def clip_grad_norm_(grads: Sequence[torch.Tensor], max_norm: Optional[float]) -> None:
    """Scale ``grads`` in place so their joint L2 norm is at most ``max_norm`` (None: no clip)."""
    if max_norm is None or not grads:
        return
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef)


def adam_state(opt: torch.optim.Optimizer, params: Sequence[torch.Tensor]):
    """``(steps, exp_avgs, exp_avg_sqs)`` of ``params`` in ``opt``, created as ``torch.optim.Adam``
    creates them on its first step, so checkpoints hold them either way. Read them on every
    update: ``load_state_dict`` replaces the tensors."""
    group = opt.param_groups[0]
    on_device = group["fused"] or group["capturable"]
    for p in params:
        st = opt.state[p]
        if not st:
            st["step"] = torch.zeros((), dtype=torch.float32, device=p.device if on_device else "cpu")
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    states = [opt.state[p] for p in params]
    return [s["step"] for s in states], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]


def adam_settings(opt: torch.optim.Optimizer) -> Dict[str, Any]:
    """``opt``'s hyperparameters as ``torch.optim.adam.adam`` takes them."""
    (group,) = opt.param_groups
    if group["amsgrad"]:
        raise ValueError("SAC's optimizer step does not keep amsgrad state")
    return dict(lr=group["lr"], beta1=group["betas"][0], beta2=group["betas"][1], eps=group["eps"],
                weight_decay=group["weight_decay"], maximize=group["maximize"], amsgrad=False,
                decoupled_weight_decay=group["decoupled_weight_decay"], capturable=group["capturable"],
                fused=group["fused"])


@torch.no_grad()
def adam_step_(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], state, settings: Dict[str, Any],
               in_graph: bool = False) -> None:
    """The SAC optimizer step, on both update paths: torch's own Adam (``torch.optim.adam.adam``)
    with an optimizer's ``adam_settings`` and ``adam_state``. ``in_graph`` (inside
    ``torch.compile``): the single-tensor form, which inductor fuses, instead of a fused kernel."""
    steps, exp_avgs, exp_avg_sqs = state
    kw = dict(settings, fused=None, foreach=False) if in_graph else settings
    torch_adam(list(params), list(grads), exp_avgs, exp_avg_sqs, [], steps, **kw)


def double_dqn_target(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_q_online: torch.Tensor,
    next_q_target: torch.Tensor,
    gamma: Any,
    penalty: Any = 0.0,
) -> torch.Tensor:
    """Double-DQN target ``(r + penalty) + gamma (1 - d) Q_target(s', argmax_a Q_online(s', a))``."""
    a_star = next_q_online.argmax(dim=-1, keepdim=True)
    next_v = next_q_target.gather(-1, a_star).squeeze(-1)
    return reward + penalty + gamma * (1.0 - terminated.to(next_v.dtype)) * next_v


def grasp_action_to_index(a: Any) -> Any:
    """Continuous gripper command in [-1, 1] -> {0: close (-1), 1: stay (0), 2: open (+1)}."""
    if isinstance(a, torch.Tensor):
        return (torch.round(a.clamp(-1.0, 1.0)) + 1).long()
    return (np.round(np.clip(a, -1.0, 1.0)) + 1).astype(np.int64)


def grasp_index_to_action(idx: Any) -> Any:
    if isinstance(idx, torch.Tensor):
        return idx.float() - 1.0
    return np.asarray(idx, dtype=np.float32) - 1.0


def _slice_batch(b: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of every tensor in a (nested) batch, as views."""
    if isinstance(b, Mapping):
        return {k: _slice_batch(v, start, stop) for k, v in b.items()}
    return b[start:stop]


class GripperCritic(nn.Module):
    """Discrete Q(s, g) for gripper commands g in {close, stay, open} (HIL-SERL)."""

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int] = (256, 256),
        activation: str = "relu",
        layer_norm: bool = True,
        num_actions: int = 3,
    ):
        super().__init__()
        self.net = MLP(in_dim, hidden_dims, num_actions, activation, layer_norm)
        self.num_actions = num_actions

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


# ---------------------------------------------------------------------------
# Agent
# ---------------------------------------------------------------------------


class SACAgent:
    """SAC/RLPD learner.

    Args:
        obs_spec: raw environment observation spec (gymnasium Dict or ``{key: (shape, dtype)}``).
        action_dim: environment action dim ``A`` (includes the gripper dim when
            ``config.grasp_critic``; the continuous actor then has ``A - 1`` dims).
        config: :class:`SACConfig`.
        device: torch device.
        seed: seeds network init (locally) and the agent's generators.
    """

    def __init__(
        self,
        obs_spec: Any,
        action_dim: int,
        config: Optional[SACConfig] = None,
        device: Any = "cpu",
        seed: int = 0,
    ):
        self.config = cfg = config if config is not None else SACConfig()
        self.device = torch.device(device)
        self.obs_spec = normalize_obs_spec(obs_spec)
        self.action_dim = int(action_dim)
        self.arm_dim = self.action_dim - 1 if cfg.grasp_critic else self.action_dim
        if self.arm_dim < 1:
            raise ValueError("need at least one continuous action dim")
        self.target_entropy = float(cfg.target_entropy if cfg.target_entropy is not None
                                    else cfg.target_entropy_per_dim * self.arm_dim)
        self.actor_update_every = int(cfg.actor_update_every or cfg.utd_ratio)
        self.image_keys = sorted(
            k for k, (s, d) in self.obs_spec.items() if is_image_spec(s, d) and cfg.image_encoder != "none"
        )

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.trunk: Optional[PretrainedTrunk] = None
            if cfg.image_encoder == "pretrained" and self.image_keys:
                self.trunk = PretrainedTrunk(cfg.pretrained_name, cfg.pretrained_weights)
            self.encoder = self._make_encoder()
            feat_dim = self.encoder.out_dim
            self.critic = CriticEnsemble(
                feat_dim, self.arm_dim, cfg.num_critics, cfg.hidden_dims, cfg.activation, cfg.critic_layer_norm,
                cfg.value_bins, cfg.value_range, cfg.critic_residual_blocks,
            )
            self.actor = TanhGaussianActor(
                feat_dim,
                self.arm_dim,
                cfg.actor_hidden_dims or cfg.hidden_dims,
                cfg.activation,
                cfg.actor_layer_norm,
                cfg.log_std_min,
                cfg.log_std_max,
            )
            self.grasp: Optional[GripperCritic] = None
            if cfg.grasp_critic:
                self.grasp = GripperCritic(
                    feat_dim, cfg.grasp_hidden_dims or cfg.hidden_dims, cfg.activation, cfg.critic_layer_norm
                )
        self.target_critic = self._frozen_copy(self.critic)
        self.target_grasp = self._frozen_copy(self.grasp) if self.grasp is not None else None
        self.target_encoder: Optional[ObservationEncoder] = None
        if cfg.use_target_encoder:
            self.target_encoder = self._make_encoder()
            self.target_encoder.load_state_dict(self.encoder.state_dict())
            self.target_encoder.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(cfg.init_temperature), dtype=torch.float32))

        for m in self._modules().values():
            m.to(self.device)
        self.log_alpha.data = self.log_alpha.data.to(self.device)

        critic_params = list(self.encoder.parameters()) + list(self.critic.parameters())
        if self.grasp is not None:
            critic_params += list(self.grasp.parameters())
        self._critic_params = [p for p in critic_params if p.requires_grad]
        self.critic_opt = self._adam(self._critic_params, cfg.critic_lr)
        self.actor_opt = self._adam(list(self.actor.parameters()), cfg.actor_lr)
        self.temp_opt = self._adam([self.log_alpha], cfg.temp_lr)

        online, target = list(self.critic.parameters()), list(self.target_critic.parameters())
        if self.grasp is not None:
            online += list(self.grasp.parameters())
            target += list(self.target_grasp.parameters())
        if self.target_encoder is not None:
            online += [p for p in self.encoder.parameters() if p.requires_grad]
            target += [p for p in self.target_encoder.parameters()]
        self._polyak_online, self._polyak_target = online, target

        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed + 1)
        self.act_generator = torch.Generator(device=self.device)
        self.act_generator.manual_seed(seed + 2)

        self.critic_steps = 0
        self.actor_steps = 0

        self._compiled_update = None
        if cfg.compile:
            from robot_rl.agents.compiled_update import CompiledUpdate
            self._compiled_update = CompiledUpdate(self, cfg.compile_mode)

    # ------------------------------------------------------------------ construction helpers
    def _make_encoder(self) -> ObservationEncoder:
        cfg = self.config
        return ObservationEncoder(
            self.obs_spec,
            encoder_type=cfg.image_encoder,
            feature_dim=cfg.image_feature_dim,
            conv_filters=cfg.conv_filters,
            conv_strides=cfg.conv_strides,
            conv_pooling=cfg.conv_pooling,
            trunk=self.trunk,
            image_keys=self.image_keys,
            fourier_features=cfg.fourier_features,
            fourier_scale=cfg.fourier_scale,
        )

    def _adam(self, params, lr: float) -> torch.optim.Optimizer:
        # fused Adam: one kernel per parameter on CPU/CUDA (torch's CPU default is a slow per-op loop)
        if self.config.fused_adam and self.device.type in ("cpu", "cuda"):
            try:
                return torch.optim.Adam(params, lr=lr, fused=True)
            except (RuntimeError, TypeError, ValueError):
                pass
        return torch.optim.Adam(params, lr=lr)

    @staticmethod
    def _frozen_copy(m: nn.Module) -> nn.Module:
        c = copy.deepcopy(m)
        c.requires_grad_(False)
        return c

    def _modules(self) -> Dict[str, nn.Module]:
        mods: Dict[str, nn.Module] = {
            "encoder": self.encoder,
            "critic": self.critic,
            "target_critic": self.target_critic,
            "actor": self.actor,
        }
        if self.trunk is not None:
            mods["trunk"] = self.trunk
        if self.target_encoder is not None:
            mods["target_encoder"] = self.target_encoder
        if self.grasp is not None:
            mods["grasp"] = self.grasp
            mods["target_grasp"] = self.target_grasp
        return mods

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    def replay_transforms(self, dtype=np.float16) -> Dict[str, Callable[[np.ndarray], np.ndarray]]:
        """``obs_transforms`` for a ReplayBuffer: cache frozen-trunk features per image key."""
        if self.trunk is None:
            return {}
        fn = self.trunk.numpy_transform(dtype)
        return {k: fn for k in self.image_keys}

    def set_obs_normalization(self, obs: Mapping[str, np.ndarray]) -> Dict[str, Any]:
        """Freeze input normalization to the mean/std of a batch of observations (e.g. the
        demos plus the warm-up data). Stored in the modules' state, so checkpoints keep it."""
        stats = {k: (np.asarray(v, np.float64).mean(0), np.asarray(v, np.float64).std(0))
                 for k, v in obs.items() if k in self.encoder.vector_keys}
        for enc in (self.encoder, self.target_encoder):
            if enc is not None:
                enc.set_normalization(stats)
        return stats

    # ------------------------------------------------------------------ batches
    def _obs_to_tensors(self, obs: Mapping[str, Any], augment: bool) -> Dict[str, torch.Tensor]:
        out = {}
        for k in self.encoder.vector_keys + self.encoder.image_keys:
            v = obs[k]
            t = v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v))
            t = t.to(self.device, non_blocking=True)
            if t.dtype == torch.float16 or t.dtype == torch.float64:
                t = t.float()
            if augment and t.dim() == 4 and t.dtype == torch.uint8 and self.config.drq_pad > 0:
                t = random_shift(t, self.config.drq_pad, self.generator)
            out[k] = t
        return out

    def _tensor(self, v: Any, dtype=torch.float32) -> torch.Tensor:
        t = v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
        return t.to(self.device, dtype=dtype, non_blocking=True)

    def prepare_batch(self, batch: Mapping[str, Any], augment: bool = True) -> Dict[str, Any]:
        """numpy/torch replay batch -> device tensors (+ DrQ shifts on image keys)."""
        b = {
            "obs": self._obs_to_tensors(batch["obs"], augment),
            "next_obs": self._obs_to_tensors(batch["next_obs"], augment),
            "action": self._tensor(batch["action"]),
            "terminated": self._tensor(batch["terminated"]).reshape(-1),
        }
        b["reward"], b["discount"] = self._returns(batch)
        gp = batch.get("grasp_penalty")
        b["grasp_penalty"] = self._tensor(gp).reshape(-1) if gp is not None else torch.zeros_like(b["reward"])
        if self.uses_mc_bounds:
            if batch.get("mc_bound") is None:
                raise ValueError("agent.cql_calibrated and agent.mc_target_floor need Monte-Carlo "
                                 "bounds ('mc_bound') in the batch")
            b["mc_bound"] = self._tensor(batch["mc_bound"]).reshape(-1)
        return b

    def _returns(self, batch: Mapping[str, Any]) -> Tuple[torch.Tensor, torch.Tensor]:
        """(the critics' reward, the bootstrap's discount), both [B]: ``reward_scale * r +
        reward_bias`` and ``gamma``; with n-step batches (``"rewards"`` [B, n], ``"steps"``
        [B], see ReplayBuffer.get) the discounted sum of the first ``steps`` scaled rewards
        and ``gamma ** steps``."""
        c = self.config
        if "rewards" not in batch:
            r = c.reward_scale * self._tensor(batch["reward"]).reshape(-1) + c.reward_bias
            return r, torch.full_like(r, c.gamma)
        rewards = self._tensor(batch["rewards"])
        steps = self._tensor(batch["steps"])
        k = torch.arange(rewards.shape[1], device=rewards.device, dtype=rewards.dtype)
        weight = c.gamma ** k * (k < steps.unsqueeze(1)).to(rewards.dtype)
        return ((c.reward_scale * rewards + c.reward_bias) * weight).sum(1), c.gamma ** steps

    # ------------------------------------------------------------------ losses (compilable, RNG-free)
    def _critic_loss(
        self,
        obs: Dict[str, torch.Tensor],
        next_obs: Dict[str, torch.Tensor],
        action: torch.Tensor,
        reward: torch.Tensor,
        terminated: torch.Tensor,
        discount: torch.Tensor,
        grasp_penalty: torch.Tensor,
        next_noise: torch.Tensor,
        idx: torch.Tensor,
        alpha: torch.Tensor,
        conservative: Optional[Dict[str, Any]] = None,
        target_floor: Optional[torch.Tensor] = None,
    ):
        """TD loss of the critic ensemble (+ the grasp critic's), plus, with ``conservative``
        (Cal-QL's online phase: the random draws, Monte-Carlo bounds and weight from
        ``_conservative_inputs``), the weighted conservative term of agents/conservative.py.
        ``target_floor`` (`mc_target_floor`: the batch's Monte-Carlo returns) lower-bounds the
        ensemble's TD targets. ``reward`` and ``discount`` come from ``_returns`` (scaled;
        n-step where the batch is)."""
        cfg = self.config
        feat = self.encoder(obs)
        with torch.no_grad():
            next_feat = self.encoder(next_obs)
            next_feat_t = self.target_encoder(next_obs) if self.target_encoder is not None else next_feat
            next_action, next_logp = self.actor.sample(next_feat, next_noise)
            next_q = self.target_critic(next_feat_t, next_action, idx)
            target = compute_target_q(reward, terminated, next_q, discount, next_logp, alpha, cfg.backup_entropy)
            if target_floor is not None:
                target = torch.maximum(target, target_floor)
        critic_loss, q = self.critic.td_loss(feat, action[:, : self.arm_dim], target)
        stats = [critic_loss.detach(), q.detach().mean(), target.mean()]
        loss = critic_loss
        if conservative is not None:
            c = conservative
            gap, q_pi = conservative_gap(self.critic, self.actor, feat, next_feat, q, c["rand_action"],
                                         c["cur_noise"], c["next_noise"], c.get("bound"),
                                         cfg.cql_temperature, cfg.cql_importance_sample)
            loss = loss + c["weight"] * gap.mean()
            stats += [gap.detach().mean(), q_pi]
        if self.grasp is not None:
            g_idx = grasp_action_to_index(action[:, -1])
            with torch.no_grad():
                penalty = grasp_penalty + cfg.grasp_penalty * (g_idx != GRASP_STAY).to(reward.dtype)
                g_target = double_dqn_target(
                    reward, terminated, self.grasp(next_feat), self.target_grasp(next_feat_t), discount, penalty
                )
            gq = self.grasp(feat.detach()).gather(-1, g_idx.unsqueeze(-1)).squeeze(-1)
            grasp_loss = (gq - g_target).pow(2).mean()
            loss = loss + grasp_loss
            stats += [grasp_loss.detach(), gq.detach().mean()]
        return loss, feat, torch.stack(stats)

    def _actor_loss(self, feat: torch.Tensor, noise: torch.Tensor, alpha: torch.Tensor,
                    batch_action: Optional[torch.Tensor] = None):
        """SAC's actor loss; with `bc_weight` and the batch's actions, plus the Q-filtered
        behaviour-cloning term (``_q_filtered_bc``)."""
        mean, log_std = self.actor(feat)  # one actor pass serves the sample and the BC term
        action, logp = self.actor.squash_and_log_prob(mean, log_std, noise)
        q = self.critic(feat, action, detach_params=True).mean(dim=0)
        loss = (alpha * logp - q).mean()
        bc_weight = self.config.bc_weight
        if bc_weight > 0 and batch_action is not None:
            loss = loss + bc_weight * self._q_filtered_bc(feat, torch.tanh(mean), q.detach(),
                                                          batch_action[:, : self.arm_dim])
        return loss, logp.detach(), torch.stack([loss.detach(), -logp.detach().mean(), q.detach().mean()])

    def _q_filtered_bc(self, feat: torch.Tensor, mean_action: torch.Tensor, q_policy: torch.Tensor,
                       batch_action: torch.Tensor) -> torch.Tensor:
        """Squared distance of the actor's mean action to each batch action, counted only where
        the critics' mean Q of that action exceeds the policy's (the Q-filter): the actor copies
        demos (and its own luckier actions) while its critic says they are better, and stops
        copying them once it is better itself, so imperfect demos cannot cap it."""
        with torch.no_grad():
            better = (self.critic(feat, batch_action).mean(dim=0) > q_policy).to(feat.dtype)
        return (better * (mean_action - batch_action).pow(2).sum(-1)).mean()

    def actor_loss(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Actor loss on a batch (features detached from the shared encoder). For inspection/tests."""
        b = self.prepare_batch(batch, augment=False)
        feat = self.encoder(b["obs"]).detach()
        noise = torch.randn(feat.shape[0], self.arm_dim, generator=self.generator, device=self.device)
        return self._actor_loss(feat, noise, self.log_alpha.detach().exp())[0]

    # ------------------------------------------------------------------ updates
    @torch.no_grad()
    def _polyak(self) -> None:
        torch._foreach_lerp_(self._polyak_target, self._polyak_online, self.config.tau)

    def _eager_update(self, b, next_noise, idx, alpha, actor_step: bool):
        """Critic step (+ actor and temperature step): the reference for ``CompiledUpdate``."""
        cfg = self.config
        loss, feat, cstats = self._critic_loss(
            b["obs"], b["next_obs"], b["action"], b["reward"], b["terminated"], b["discount"],
            b["grasp_penalty"], next_noise, idx, alpha, b.get("conservative"), self._target_floor(b),
        )
        self._step(self.critic_opt, loss, cfg.grad_clip_norm)
        self._polyak()
        if not actor_step:
            return cstats, None, None
        noise = torch.randn(feat.shape[0], self.arm_dim, generator=self.generator, device=self.device)
        a_loss, logp, astats = self._actor_loss(feat.detach(), noise, alpha, b["action"])
        self._step(self.actor_opt, a_loss, cfg.grad_clip_norm)
        t_loss = temperature_loss(self.log_alpha, logp, self.target_entropy)
        self._step(self.temp_opt, t_loss, None)
        return cstats, astats, t_loss.detach()

    @staticmethod
    def _step(opt: torch.optim.Optimizer, loss: torch.Tensor, clip: Optional[float]) -> None:
        """Backward, clip, Adam: the eager form of what ``CompiledUpdate`` does in its graph."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in opt.param_groups[0]["params"] if p.grad is not None]
        grads = [p.grad for p in params]
        clip_grad_norm_(grads, clip)
        adam_step_(params, grads, adam_state(opt, params), adam_settings(opt))

    @property
    def uses_mc_bounds(self) -> bool:
        """Whether updates need each transition's Monte-Carlo return (`mc_bound`): Cal-QL's
        calibrated online phase or `mc_target_floor`."""
        c = self.config
        return c.mc_target_floor or (c.cql_alpha > 0 and c.cql_calibrated)

    def _target_floor(self, b: Mapping[str, Any]) -> Optional[torch.Tensor]:
        return b["mc_bound"] if self.config.mc_target_floor else None

    @property
    def conservative(self) -> bool:
        """Whether the critic loss has the conservative term (`agent.cql_alpha`)."""
        return self.config.cql_alpha > 0

    def cql_weight(self) -> float:
        """The conservative term's weight at this critic step: `cql_alpha`, or its linear
        schedule to `cql_alpha_end` over `cql_anneal_steps` updates."""
        c = self.config
        if c.cql_alpha_end is None:
            return c.cql_alpha
        frac = min(1.0, self.critic_steps / c.cql_anneal_steps)
        return c.cql_alpha + frac * (c.cql_alpha_end - c.cql_alpha)

    def _conservative_inputs(self, b: Mapping[str, Any], weight: float) -> Dict[str, Any]:
        """The conservative term's random draws (from the agent's generator, after the TD
        target's), the batch's Monte-Carlo bounds and this step's `weight` (a tensor, so a
        changing weight does not recompile the compiled update)."""
        c, g = self.config, self.generator
        shape = (b["reward"].shape[0] * c.cql_n_actions, self.arm_dim)
        out = {"rand_action": torch.rand(shape, generator=g, device=self.device) * 2.0 - 1.0,
               "cur_noise": torch.randn(shape, generator=g, device=self.device),
               "next_noise": torch.randn(shape, generator=g, device=self.device),
               "weight": torch.tensor(weight, device=self.device)}
        if c.cql_calibrated:
            out["bound"] = b["mc_bound"]
        return out

    def update(self, batch: Mapping[str, Any]) -> Dict[str, float]:
        """One critic (+grasp critic) update; actor & temperature every ``actor_update_every`` critic steps."""
        return self._update_prepared(self.prepare_batch(batch, augment=True))

    def _update_prepared(self, b: Mapping[str, Any]) -> Dict[str, float]:
        cfg = self.config
        B = b["reward"].shape[0]
        g = self.generator
        next_noise = torch.randn(B, self.arm_dim, generator=g, device=self.device)
        idx = subsample_indices(g, cfg.num_critics, cfg.critic_subsample)
        alpha = self.log_alpha.detach().exp()
        cql_weight = self.cql_weight() if self.conservative else None
        if cql_weight is not None:
            b = {**b, "conservative": self._conservative_inputs(b, cql_weight)}

        actor_step = (self.critic_steps + 1) % self.actor_update_every == 0
        if self._compiled_update is not None:
            noise = torch.randn(B, self.arm_dim, generator=g, device=self.device) if actor_step else None
            cstats, astats, t_loss = self._compiled_update(b, next_noise, idx, alpha, noise)
        else:
            cstats, astats, t_loss = self._eager_update(b, next_noise, idx, alpha, actor_step)
        self.critic_steps += 1
        names = (["critic_loss", "q", "target_q"] + (["cql_gap", "q_pi"] if self.conservative else [])
                 + (["grasp_loss", "grasp_q"] if self.grasp is not None else []))
        metrics = dict(zip(names, cstats.tolist()))
        if actor_step:
            self.actor_steps += 1
            metrics.update(zip(["actor_loss", "entropy", "actor_q"], astats.tolist()))
            metrics["temperature_loss"] = float(t_loss)
        metrics["alpha"] = self.alpha
        if cql_weight is not None:
            metrics["cql_alpha"] = cql_weight
        metrics["critic_steps"] = self.critic_steps
        metrics["actor_steps"] = self.actor_steps
        return metrics

    def update_many(self, sample_fn: Callable[[int], Mapping[str, Any]], n: Optional[int] = None) -> Dict[str, float]:
        """``n`` (default ``utd_ratio``) consecutive updates, one per minibatch of ``sample_fn(n)``
        (``n`` equal minibatches stacked along the batch dim, as ``ReplayBuffer.sample_fn`` gives).
        Converting and augmenting them in one go, as SERL does for its UTD loop, pays the
        per-batch overhead once per call instead of once per update (docs/results.md).

        Returns the last step's metrics, with actor metrics from the last actor step.
        """
        n = self.config.utd_ratio if n is None else int(n)
        b = self.prepare_batch(sample_fn(n), augment=True)
        rows = b["reward"].shape[0]
        if rows % n:
            raise ValueError(f"sample_fn({n}) returned {rows} rows, not a multiple of {n}")
        size = rows // n
        out: Dict[str, float] = {}
        for i in range(n):
            out.update(self._update_prepared(_slice_batch(b, i * size, (i + 1) * size)))
        return out

    # ------------------------------------------------------------------ acting
    def act(self, obs: Mapping[str, Any], deterministic: bool = False) -> np.ndarray:
        """Single (unbatched) observation dict -> env action ``float32 [A]`` in [-1, 1]."""
        batched = {k: np.asarray(obs[k])[None] for k in self.encoder.vector_keys + self.encoder.image_keys}
        return self.act_batch(batched, deterministic)[0]

    @torch.no_grad()
    def act_batch(self, obs: Mapping[str, Any], deterministic: bool = False) -> np.ndarray:
        """Batched observation dict (leading dim N) -> env actions ``float32 [N, A]`` in [-1, 1],
        one forward pass for N environments (vector envs, V-GPS candidates)."""
        feat = self.encoder(self._obs_to_tensors(obs, augment=False))
        n = feat.shape[0]
        if deterministic:
            a = self.actor.deterministic(feat)
        else:
            noise = torch.randn(n, self.arm_dim, generator=self.act_generator, device=self.device)
            a = self.actor.sample(feat, noise)[0]
        if self.grasp is not None:
            g = self.grasp(feat).argmax(dim=-1)
            if not deterministic and self.config.grasp_epsilon > 0:
                u = torch.rand(n, generator=self.act_generator, device=self.device)
                r = torch.randint(0, 3, (n,), generator=self.act_generator, device=self.device)
                g = torch.where(u < self.config.grasp_epsilon, r, g)
            a = torch.cat([a, grasp_index_to_action(g).unsqueeze(-1)], dim=-1)
        return a.float().cpu().numpy()

    @torch.no_grad()
    def q_values(self, obs: Mapping[str, Any], actions: Any) -> np.ndarray:
        """Critic ensemble mean ``[N]`` of batched observations and their ``[N, A]`` actions
        (policy units, [-1, 1]), in the critic's reward units."""
        feat = self.encoder(self._obs_to_tensors(obs, augment=False))
        a = self._tensor(actions)[:, : self.arm_dim]
        return self.critic(feat, a).mean(dim=0).reshape(-1).float().cpu().numpy()

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to resume exactly (modules, optimizers, temperature, counters, RNG).

        Tensors are references (as with ``nn.Module.state_dict``): serialise
        (``torch.save``) or deep-copy before training further.
        """
        return {
            "config": asdict(self.config),
            "modules": {k: m.state_dict() for k, m in self._modules().items()},
            "log_alpha": self.log_alpha.detach(),
            "optimizers": {
                "critic": self.critic_opt.state_dict(),
                "actor": self.actor_opt.state_dict(),
                "temp": self.temp_opt.state_dict(),
            },
            "counters": {"critic_steps": self.critic_steps, "actor_steps": self.actor_steps},
            "rng": {"generator": self.generator.get_state(), "act_generator": self.act_generator.get_state()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        mods = self._modules()
        if set(state["modules"]) != set(mods):
            raise ValueError(f"module mismatch: {sorted(state['modules'])} vs {sorted(mods)}")
        for k, m in mods.items():
            m.load_state_dict(state["modules"][k])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.critic_opt.load_state_dict(state["optimizers"]["critic"])
        self.actor_opt.load_state_dict(state["optimizers"]["actor"])
        self.temp_opt.load_state_dict(state["optimizers"]["temp"])
        self.critic_steps = int(state["counters"]["critic_steps"])
        self.actor_steps = int(state["counters"]["actor_steps"])
        self.generator.set_state(state["rng"]["generator"].cpu())
        self.act_generator.set_state(state["rng"]["act_generator"].cpu())

    def save(self, path: str) -> None:
        torch.save(self.state_dict(), path)

    def load(self, path: str) -> None:
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))
