"""The reward-model protocol, the env wrapper that applies a model, the factory used by configs,
and the evaluation metrics (Pearson, Spearman, EPIC) shared by all reward models.

A `RewardModel` scores a *batch* of observations (the observation a step led to, i.e. s' of
(s, a, s')) in one call::

    rewards = model({"front": frames_uint8_BxHxWx3, "state": states_Bx14})   # float32 [B]
    done = model.success(batch)                                               # bool [B]

A list of per-step observation dicts is accepted too and stacked. Models that can tell success
set `has_success = True`; `score(batch)` returns both in one pass (models override it when
they share work, e.g. one forward pass of a classifier).

`RewardWrapper(env, model, mode="replace"|"add", terminate_on_success=...)` applies a model to a
gymnasium env; `make_reward_model(name, **kwargs)` builds one by name, and
`wrap_env_with_reward(env, {"name": ..., "kwargs": ..., "mode": ..., ...})` does both from a
config section.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Callable, Mapping, Sequence

import gymnasium as gym
import numpy as np

__all__ = [
    "RewardModel", "RewardOutput", "RewardModelError", "RewardWrapper", "as_batch",
    "batch_size", "make_reward_model", "register_reward_model", "reward_model_names",
    "wrap_env_with_reward", "relabel_transitions", "rankdata", "spearman", "pearson",
    "epic_distance", "episode_observations", "evaluate_reward_model",
]



class RewardModelError(RuntimeError):
    """A reward model could not produce a valid reward (e.g. an unparseable VLM answer)."""


@dataclass
class RewardOutput:
    reward: np.ndarray                # float32 [B]
    success: np.ndarray | None        # bool [B], or None when the model cannot tell


def as_batch(observations) -> dict[str, np.ndarray]:
    """A batch `{key: [B, ...]}` from a batch dict (returned as is) or a list of obs dicts."""
    if isinstance(observations, Mapping):
        return {k: np.asarray(v) for k, v in observations.items()}
    obs = list(observations)
    if not obs:
        raise ValueError("empty list of observations")
    keys = set(obs[0])
    for o in obs[1:]:
        if set(o) != keys:
            raise ValueError(f"observations have different keys: {sorted(keys)} vs {sorted(o)}")
    return {k: np.stack([np.asarray(o[k]) for o in obs]) for k in obs[0]}


def batch_size(batch: Mapping[str, np.ndarray]) -> int:
    sizes = {len(v) for v in batch.values()}
    if len(sizes) != 1:
        raise ValueError(f"batch entries have different leading sizes: {sorted(sizes)}")
    return sizes.pop()


def require_key(batch: Mapping[str, np.ndarray], key: str, who: str) -> np.ndarray:
    if key not in batch:
        raise KeyError(f"{who} reads observation key {key!r}, but the observations have "
                       f"{sorted(batch)}")
    return batch[key]


class RewardModel:
    """Base class of reward models. Subclasses implement `__call__` (and `success` if
    `has_success`); `score` and `reset` have defaults."""
    name: str = "reward"
    has_success: bool = False

    def __call__(self, observations) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def success(self, observations) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} has no success detector")

    def score(self, observations) -> RewardOutput:
        batch = as_batch(observations)
        reward = np.asarray(self(batch), np.float32)
        succ = np.asarray(self.success(batch), bool) if self.has_success else None
        return RewardOutput(reward, succ)

    def reset(self) -> None:
        """Start of an episode (stateful models, e.g. ones that look at the last k frames)."""


# ---------------------------------------------------------------------------- the wrapper
class RewardWrapper(gym.Wrapper):
    """Applies a `RewardModel` to every step's resulting observation.

    * `mode="replace"`: reward = scale * model reward; `mode="add"`: env reward + scale * model.
    * `terminate_on_success`: the episode terminates when the model reports success (the
      model must have a success detector). With `model_ends_episodes`, only the model ends
      episodes: the env's own termination (a simulator's success check) is ignored, so no
      ground truth reaches a learned-reward run. With `success_to_info`, `info["is_success"]` is
      the model's verdict (for real robots whose task cannot score success itself); otherwise
      it stays the env's and the model's is in `info["model_success"]`.
    * a non-finite model reward raises `RewardModelError` (`on_invalid="raise"`, default) or,
      with `on_invalid="env"`, falls back to the env's reward for that step and flags
      `info["reward_invalid"]` (counted in `invalid_steps`) - never silently a made-up value.

    `info` also carries `env_reward`, `env_terminated` and `model_reward` (the replay keeps the
    first two, so a new model can relabel stored transitions: `Trainer.set_reward_model`).
    """

    def __init__(self, env: gym.Env, model: RewardModel, mode: str = "replace",
                 terminate_on_success: bool = False, scale: float = 1.0,
                 success_to_info: bool = False, on_invalid: str = "raise",
                 model_ends_episodes: bool = False):
        super().__init__(env)
        if mode not in ("replace", "add"):
            raise ValueError(f"reward mode must be 'replace' or 'add', got {mode!r}")
        if on_invalid not in ("raise", "env"):
            raise ValueError(f"on_invalid must be 'raise' or 'env', got {on_invalid!r}")
        if model_ends_episodes and not terminate_on_success:
            raise ValueError("model_ends_episodes needs terminate_on_success")
        if (terminate_on_success or success_to_info) and not model.has_success:
            raise ValueError(f"{type(model).__name__} has no success detector: it cannot "
                             f"terminate episodes on success")
        self.model, self.mode, self.scale = model, mode, float(scale)
        self.terminate_on_success, self.success_to_info = terminate_on_success, success_to_info
        self.on_invalid = on_invalid
        self.model_ends_episodes = model_ends_episodes
        self.invalid_steps = 0

    def reset(self, **kwargs):
        self.model.reset()
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        need_success = self.terminate_on_success or self.success_to_info
        if need_success or self.model.has_success:
            out = self.model.score([obs])
            model_reward, model_success = float(out.reward[0]), bool(out.success[0])
        else:
            model_reward, model_success = float(np.asarray(self.model([obs]))[0]), None
        info = dict(info, env_reward=float(env_reward), env_terminated=bool(terminated),
                    model_reward=model_reward)
        if not math.isfinite(model_reward):
            if self.on_invalid == "raise":
                raise RewardModelError(f"{type(self.model).__name__} returned a non-finite "
                                       f"reward ({model_reward}); see its logs, or use "
                                       f"on_invalid='env' to fall back to the env reward")
            self.invalid_steps += 1
            info["reward_invalid"] = True
            reward = float(env_reward)
        else:
            learned = self.scale * model_reward
            reward = learned if self.mode == "replace" else float(env_reward) + learned
        if model_success is not None:
            info["model_success"] = model_success
            if self.success_to_info:
                info["is_success"] = model_success
            if self.model_ends_episodes:
                terminated = model_success
            elif self.terminate_on_success and model_success:
                terminated = True
        return obs, reward, terminated, truncated, info

    def relabel(self, next_observations, env_rewards, terminated):
        """`relabel_transitions` with this wrapper's model, mode, scale and termination rule:
        stored transitions labelled as this wrapper would label them now."""
        return relabel_transitions(self.model, next_observations, env_rewards=env_rewards,
                                   mode=self.mode, scale=self.scale,
                                   terminate_on_success=self.terminate_on_success,
                                   terminated=terminated)


def relabel_transitions(model: RewardModel, next_observations, env_rewards=None,
                        mode: str = "replace", scale: float = 1.0,
                        terminate_on_success: bool = False, terminated=None):
    """Rewards (and terminal flags) for stored transitions, as `RewardWrapper` would have
    produced them: use it on demo / offline data so it agrees with the online reward.
    Returns `(rewards float32 [B], terminated bool [B])`."""
    out = model.score(next_observations)
    r = scale * out.reward.astype(np.float64)
    if mode == "add":
        if env_rewards is None:
            raise ValueError("mode='add' needs the env rewards")
        r = np.asarray(env_rewards, np.float64) + r
    elif mode != "replace":
        raise ValueError(f"reward mode must be 'replace' or 'add', got {mode!r}")
    if not np.all(np.isfinite(r)):
        raise RewardModelError(f"{type(model).__name__} returned non-finite rewards for "
                               f"{int((~np.isfinite(r)).sum())} of {len(r)} transitions")
    term = np.zeros(len(r), bool) if terminated is None else np.asarray(terminated, bool).copy()
    if terminate_on_success:
        if out.success is None:
            raise ValueError(f"{type(model).__name__} has no success detector")
        term |= out.success
    return r.astype(np.float32), term


# ---------------------------------------------------------------------------- the factory
_FACTORIES: dict[str, Callable[..., RewardModel] | str] = {
    # name -> factory or "module:attribute" (imported lazily: open_clip/torch stay optional)
    "clip": "robot_rl.rewards.clip:CLIPReward",
    "vlm_rm": "robot_rl.rewards.clip:CLIPReward",
    "classifier": "robot_rl.rewards.classifier:ClassifierReward",
    "perceptual": "robot_rl.rewards.perceptual:PerceptualReward.from_config",
    "vlm_success": "robot_rl.rewards.gvl:VLMSuccessDetector",
    "language": "robot_rl.rewards.language:LanguageReward.load",
}


def register_reward_model(name: str, factory: Callable[..., RewardModel] | str) -> None:
    """Make `make_reward_model(name, ...)` (and configs) build your model."""
    _FACTORIES[name] = factory


def reward_model_names() -> list[str]:
    return sorted(_FACTORIES)


def _resolve(spec: Callable | str) -> Callable:
    if callable(spec):
        return spec
    import importlib
    module, attr = spec.split(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def make_reward_model(name: str, **kwargs) -> RewardModel:
    """Build a reward model by name: "clip" (alias "vlm_rm"), "classifier", "perceptual",
    "vlm_success", or one added with `register_reward_model`. `kwargs` go to its constructor:

    * clip: `target_prompts, baseline_prompts=(), alpha=0.5, model="ViT-B-32",
      pretrained=None|tag|path, image_key="front", batch_size=32, success_threshold=None`
    * classifier: `path, reward="binary"|"prob", threshold=None`
    * perceptual: `path` (a fitted model) or `demos` (LeRobotDataset dir) + fit options
    * vlm_success: `task, image_key="front", base_url=None, model=None, api_key=None, ...`
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown reward model {name!r}; valid: {reward_model_names()}")
    model = _resolve(_FACTORIES[name])(**kwargs)
    if not isinstance(model, RewardModel):
        raise TypeError(f"factory for {name!r} returned {type(model).__name__}, not a RewardModel")
    return model


def wrap_env_with_reward(env: gym.Env, spec: Any) -> gym.Env:
    """`env` wrapped by the reward model a config section describes (a run config's
    `RewardConfig`, or a mapping such as `{"name": "classifier", "kwargs": {"path": "clf.pt"},
    "mode": "replace", "terminate_on_success": True}`). Returns `env` unchanged for a
    None/empty spec."""
    if is_dataclass(spec):
        spec = asdict(spec)
    if not spec or not spec.get("name"):
        return env
    unknown = set(spec) - {"name", "kwargs", "mode", "terminate_on_success", "scale",
                           "success_to_info", "on_invalid", "model_ends_episodes"}
    if unknown:
        raise ValueError(f"unknown env.reward keys {sorted(unknown)}")
    model = make_reward_model(spec["name"], **dict(spec.get("kwargs") or {}))
    return RewardWrapper(env, model, mode=spec.get("mode", "replace"),
                         terminate_on_success=bool(spec.get("terminate_on_success", False)),
                         scale=float(spec.get("scale", 1.0)),
                         success_to_info=bool(spec.get("success_to_info", False)),
                         on_invalid=spec.get("on_invalid", "raise"),
                         model_ends_episodes=bool(spec.get("model_ends_episodes", False)))


# ---------------------------------------------------------------------------- metrics
def rankdata(x) -> np.ndarray:
    """Ranks 0..n-1 with ties given their average rank (as scipy.stats.rankdata - 1)."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), np.float64)
    xs = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j)
        i = j + 1
    return ranks


def pearson(a, b) -> float:
    """Pearson correlation; NaN when either side is constant or fewer than 2 points."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if len(a) < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def spearman(a, b) -> float:
    """Spearman rank correlation (ties averaged); NaN for constant inputs."""
    return pearson(rankdata(a), rankdata(b))


def epic_distance(pred, true) -> float:
    """EPIC pseudometric (Gleave et al. 2021) between two rewards of the next state, sampled on
    the same transitions.

    EPIC canonicalizes each reward, C(R)(s,a,s') = R(s,a,s') + E[g R(s',A,S') - R(s,A,S')
    - g R(S,A,S')], then takes the Pearson distance sqrt((1 - rho) / 2). For rewards that depend
    on the next state only, R = f(s'), canonicalization reduces to f(s') - E f(S') for any
    discount g, so EPIC is the Pearson distance of the sampled rewards (0: equivalent up to
    shaping and positive scale, 1: anti-correlated)."""
    rho = pearson(pred, true)
    return float(math.sqrt(max(0.0, (1.0 - rho) / 2.0))) if math.isfinite(rho) else float("nan")


# ---------------------------------------------------------------------------- datasets
def episode_observations(episode: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The observation batch `{key: [T, ...]}` of an episode read by `LeRobotDataset.episode`."""
    from robot_rl.data.episodes import feature_obs_key
    out = {}
    for feature, value in episode.items():
        key = feature_obs_key(feature)
        if key is not None:
            out[key] = np.asarray(value)
    return out


def evaluate_reward_model(model: RewardModel, dataset, target_key: str = "next.reward",
                          align: str = "next", episodes: Sequence[int] | None = None,
                          batch_size: int = 64, progress: bool = False) -> dict:
    """Score `model` against a dataset's ground-truth reward.

    `align="next"`: `target_key` is a step outcome (`next.reward` of frame t is the reward of
    the step t -> t+1), compared with the model's reward of observation t+1 (the last frame has
    no stored next observation and is skipped). `align="same"`: the target belongs to frame t's
    own observation (e.g. `label.success` or a per-frame progress column).

    Returns Pearson, Spearman and EPIC distance over all scored frames, the mean per-episode
    Spearman, and counts."""
    from robot_rl.data.lerobot import LeRobotDataset
    if align not in ("next", "same"):
        raise ValueError(f"align must be 'next' or 'same', got {align!r}")
    ds = dataset if isinstance(dataset, LeRobotDataset) else LeRobotDataset(dataset)
    if target_key not in ds.features:
        raise ValueError(f"{ds.root} has no {target_key!r}; it has {sorted(ds.features)}")
    idx = list(range(ds.num_episodes)) if episodes is None else list(episodes)
    preds, targets, per_episode = [], [], []
    it = idx
    if progress:
        from tqdm import tqdm
        it = tqdm(idx, desc="reward eval", unit="ep")
    for e in it:
        ep = ds.episode(e)
        obs = episode_observations(ep)
        target = np.asarray(ep[target_key], np.float64).reshape(-1)
        if align == "next":
            obs = {k: v[1:] for k, v in obs.items()}
            target = target[:-1]
        if len(target) == 0:
            continue
        model.reset()
        pred = np.concatenate([np.asarray(model({k: v[i:i + batch_size] for k, v in obs.items()}),
                                          np.float64)
                               for i in range(0, len(target), batch_size)])
        preds.append(pred)
        targets.append(target)
        per_episode.append(spearman(pred, target))
    if not preds:
        raise ValueError("no frames to score")
    p, t = np.concatenate(preds), np.concatenate(targets)
    finite = np.isfinite(p)
    ep_rho = [r for r in per_episode if math.isfinite(r)]
    return {"pearson": pearson(p[finite], t[finite]), "spearman": spearman(p[finite], t[finite]),
            "epic_distance": epic_distance(p[finite], t[finite]),
            "episode_spearman_mean": float(np.mean(ep_rho)) if ep_rho else float("nan"),
            "frames": int(len(p)), "invalid_frames": int((~finite).sum()),
            "episodes": len(preds), "target_key": target_key, "align": align}
