"""Any gymnasium env as the learner sees it: our own `robot_rl/...` ids and a user's env alike.

`make_gym_env(env_cfg)` builds the configured env (`env.id` may be `module:EnvId`, gymnasium's own
syntax, so the module that registers the id is imported first), applies `env.max_episode_steps`
and the user's `env.wrappers` (`module:callable`, each called with the env, or
`{module:callable: {kwargs}}`), and wraps the result
in `LearnerEnv`, which gives every env the one interface the agents, replay buffers and datasets
use:

- observations: a flat `dict` of float32 vectors and uint8 `HxWxC` images. A `Box` vector becomes
  `state`, an image `Box` becomes `image`; a `Dict` keeps its keys, nested dicts (goal envs:
  `observation`/`desired_goal`/`achieved_goal`) are flattened with `_` joining the names;
  channel-first `CxHxW` images are transposed; any other vector `Box` is flattened to float32.
- actions: the policy acts in `[-1, 1]^d`; `LearnerEnv` rescales to the env's finite `Box` bounds
  and reports the action the env received, in the policy's coordinates, as `info["action"]`.
- `info["is_success"]`: from `env.success_key` (every step must carry it), or when unset from
  `is_success`, else `success`, else a positive reward on a terminating step.

Spaces we cannot learn from (`Discrete` actions, `Text` observations, ...) are refused when the env
is built, with an error naming the space and what is supported.
"""
from __future__ import annotations

import importlib
import inspect
import warnings
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from robot_rl.hardware.task import log_scaled

SUCCESS_KEYS = ("is_success", "success")


class EnvSpecError(ValueError):
    """The env (or its config) cannot be used by the learner; the message says why and what to do."""


def load_callable(spec: str, what: str) -> Callable:
    """`package.module:attr` -> the object, with errors that name the config field."""
    module_name, sep, attr = str(spec).partition(":")
    if not sep or not module_name or not attr:
        raise EnvSpecError(f"{what}: expected 'module:callable', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EnvSpecError(f"{what}: cannot import {module_name!r} ({exc})") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise EnvSpecError(f"{what}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise EnvSpecError(f"{what}: {spec!r} is not callable")
    return obj


def is_factory(fn: Callable) -> bool:
    """A `demos.policy` hook is a factory taking the env when its first parameter is named `env`
    (a class `Expert(env)` or `def make(env)`); otherwise it is the policy `obs -> action`."""
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] == "env"


def is_ours(env_id: str) -> bool:
    return str(env_id).startswith("robot_rl/")


# ---- observations ---------------------------------------------------------------------------
def _image_layout(space: gym.spaces.Box) -> str | None:
    """'hwc' or 'chw' for a uint8 image Box, None for anything else."""
    if space.dtype != np.uint8 or len(space.shape) != 3:
        return None
    if space.shape[-1] in (1, 3, 4):
        return "hwc"
    if space.shape[0] in (1, 3, 4):
        return "chw"
    return None


def _leaves(space: gym.Space, path: tuple[str, ...], where: str):
    """(path, Box) for every leaf of a (nested) Dict space, refusing what we cannot learn from."""
    if isinstance(space, gym.spaces.Dict):
        for k, sub in space.spaces.items():
            yield from _leaves(sub, path + (str(k),), f"{where}[{k!r}]")
    elif isinstance(space, gym.spaces.Box):
        yield path, space
    else:
        raise EnvSpecError(
            f"observation space {where} is {space}: robot-rl learns from Box observations "
            f"(vectors, uint8 HxWxC or CxHxW images) and Dict spaces of them (nested dicts "
            f"are flattened); map it to a Box with an env.wrappers hook")


class _ObsLayout:
    """How one raw observation becomes the learner's flat dict: (our key, raw path, kind)."""

    def __init__(self, space: gym.Space):
        entries = []
        if isinstance(space, gym.spaces.Box):
            kind = _image_layout(space)
            entries.append(("image" if kind else "state", (), kind or "vector", space))
        else:
            for path, box in _leaves(space, (), "observation_space"):
                kind = _image_layout(box)
                entries.append(("_".join(path), path, kind or "vector", box))
        keys = [e[0] for e in entries]
        clash = sorted({k for k in keys if keys.count(k) > 1})
        if clash:
            raise EnvSpecError(f"observation keys collide after flattening nested dicts: {clash}")
        self.entries = [(k, p, kind) for k, p, kind, _ in entries]
        spaces = {}
        for key, _, kind, box in entries:
            if kind == "hwc":
                spaces[key] = gym.spaces.Box(0, 255, box.shape, np.uint8)
            elif kind == "chw":
                spaces[key] = gym.spaces.Box(0, 255, tuple(box.shape[i] for i in (1, 2, 0)),
                                             np.uint8)
            else:
                spaces[key] = gym.spaces.Box(-np.inf, np.inf, (int(np.prod(box.shape)),),
                                             np.float32)
        self.space = gym.spaces.Dict(spaces)

    def __call__(self, obs: Any) -> dict[str, np.ndarray]:
        out = {}
        for key, path, kind in self.entries:
            v = obs
            for p in path:
                v = v[p]
            if kind == "hwc":
                out[key] = np.asarray(v, np.uint8)
            elif kind == "chw":
                out[key] = np.ascontiguousarray(np.moveaxis(np.asarray(v, np.uint8), 0, -1))
            else:
                out[key] = np.asarray(v, np.float32).reshape(-1)
        return out


# ---- actions --------------------------------------------------------------------------------
class ActionScale:
    """The policy's `[-1, 1]^d` <-> the env's `Box(low, high)`."""

    def __init__(self, space: gym.Space):
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise EnvSpecError(
                f"action space {space}: robot-rl learns continuous actions, a 1-D gymnasium Box "
                f"with finite bounds (SAC); discrete or structured actions are not supported")
        low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(high > low)):
            raise EnvSpecError(
                f"action space {space} needs finite bounds with high > low: the policy's [-1, 1] "
                f"is rescaled to them (wrap the env with gymnasium.wrappers.RescaleAction or "
                f"ClipAction through env.wrappers)")
        self.low, self.high, self.dtype = low, high, space.dtype
        self.identity = bool(np.all(low == -1.0) and np.all(high == 1.0))

    def to_env(self, a: np.ndarray) -> np.ndarray:
        a = np.clip(np.asarray(a, np.float64), -1.0, 1.0)
        return (self.low + (a + 1.0) * 0.5 * (self.high - self.low)).astype(self.dtype)

    def to_policy(self, a: np.ndarray) -> np.ndarray:
        """The env's action (e.g. a dataset's) in the policy's coordinates, clipped to [-1, 1]
        (unchanged where the env already acts in [-1, 1])."""
        if self.identity:
            return np.asarray(a, np.float32)
        a = np.asarray(a, np.float64)
        return np.clip((a - self.low) / (self.high - self.low) * 2.0 - 1.0, -1.0, 1.0
                       ).astype(np.float32)


# ---- the wrapper ----------------------------------------------------------------------------
class LearnerEnv(gym.Wrapper):
    """See the module docstring. `raw_obs` is the wrapped env's own last observation (what a
    user's scripted policy reads)."""

    def __init__(self, env: gym.Env, success_key: str | None = None):
        super().__init__(env)
        self.layout = _ObsLayout(env.observation_space)
        self.scale = ActionScale(env.action_space)
        self.observation_space = self.layout.space
        self.action_space = gym.spaces.Box(-1.0, 1.0, env.action_space.shape, np.float32)
        self.success_key = success_key
        self.success_from = success_key  # where the last step's success came from
        self.raw_obs = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.raw_obs = obs
        return self.layout(obs), info

    def step(self, action):
        a = np.asarray(action, np.float32)
        if a.shape != self.action_space.shape or not np.all(np.isfinite(a)):
            raise ValueError(f"action must be finite with shape {self.action_space.shape}, "
                             f"got {a.tolist()}")
        a = np.clip(a, -1.0, 1.0)
        return self.step_env(self.scale.to_env(a), a)

    def step_env(self, env_action, policy_action=None):
        """Step with an action in the env's own units (a user's scripted policy)."""
        if policy_action is None:
            policy_action = self.scale.to_policy(env_action)
        obs, reward, term, trunc, info = self.env.step(env_action)
        self.raw_obs = obs
        info = {**info, "is_success": self._success(info, reward, term)}
        info.setdefault("action", np.asarray(policy_action, np.float32))
        return self.layout(obs), reward, term, trunc, info

    def _success(self, info: dict, reward: float, terminated: bool) -> bool:
        if self.success_key is not None:
            if self.success_key not in info:
                raise EnvSpecError(
                    f"env.success_key is {self.success_key!r} but this step's info has only "
                    f"{sorted(info)}; set env.success_key to the key the env reports success "
                    f"under, or leave it unset to take success from a positive final reward")
            return bool(np.asarray(info[self.success_key]).any())
        for key in SUCCESS_KEYS:
            if key in info:
                self.success_from = key
                return bool(np.asarray(info[key]).any())
        self.success_from = "reward"
        return bool(terminated and reward > 0)


class SeedGlobalNumpy(gym.Wrapper):
    """For envs that draw from the global `np.random` and ignore `reset(seed=...)` (gym-hil,
    SERL's franka_sim): seeds it on every seeded reset, so held-out evaluation seeds mean
    something. Use as `env.wrappers: [robot_rl.envs:SeedGlobalNumpy]`."""

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            np.random.seed(seed % 2**32)
        return self.env.reset(seed=seed, options=options)


class LogScaledError(gym.ObservationWrapper):
    """Adds an error to a goal, log-scaled from `scale` up (`hardware/task.py:log_scaled`), to
    the observation, for a precise task whose state holds that error in metres: normalized by
    its spread over the workspace, the last millimetres are lost to the networks (our
    insertions went from 3-87% at 20k env steps to 90% by 4000-11000 with it, docs/results.md).

    The error is `obs[key][indices]`, minus `obs[minus][indices]` when `minus` is given (e.g.
    `key: desired_goal, minus: achieved_goal`). A `Dict` observation gets it as key `name`; a
    `Box` one (key unset) gets it appended, so a scripted policy reading the first entries
    still works. Use as `env.wrappers: [{robot_rl.envs:LogScaledError: {scale: 0.001,
    indices: [8, 9]}}]`."""

    def __init__(self, env: gym.Env, scale: float, key: str | None = None,
                 indices: list[int] | None = None, minus: str | None = None,
                 name: str = "fine_error"):
        super().__init__(env)
        if not scale > 0:
            raise ValueError(f"LogScaledError: scale must be > 0 (metres, say), got {scale}")
        space = env.observation_space
        box, spaces = isinstance(space, gym.spaces.Box), getattr(space, "spaces", {})
        if not (box and key is None or isinstance(space, gym.spaces.Dict) and key is not None):
            raise ValueError(f"LogScaledError: a Box observation takes no key, a Dict one needs "
                             f"one of {list(spaces)}; got key={key!r} for "
                             f"{type(space).__name__}")
        for k in (key, minus):
            if k is not None and k not in spaces:
                raise ValueError(f"LogScaledError: no key {k!r} in the observation {list(spaces)}")
        if name in spaces:
            raise ValueError(f"LogScaledError: the observation has a {name!r} already; set name")
        self.scale, self.key, self.minus, self.name = scale, key, minus, name
        source = space if box else spaces[key]
        self.indices = np.arange(int(np.prod(source.shape))) if indices is None else \
            np.asarray(indices, int)
        extra = gym.spaces.Box(-np.inf, np.inf, (len(self.indices),), np.float32)
        if box:
            self.observation_space = gym.spaces.Box(
                np.concatenate([np.ravel(space.low), extra.low]).astype(np.float32),
                np.concatenate([np.ravel(space.high), extra.high]).astype(np.float32))
        else:
            self.observation_space = gym.spaces.Dict({**spaces, name: extra})

    def observation(self, obs):
        source = obs if self.key is None else obs[self.key]
        error = np.ravel(source)[self.indices]
        if self.minus is not None:
            error = error - np.ravel(obs[self.minus])[self.indices]
        fine = log_scaled(error, self.scale).astype(np.float32)
        if self.key is None:
            return np.concatenate([np.ravel(obs).astype(np.float32), fine])
        return {**obs, self.name: fine}


def find_wrapper(env: gym.Env, cls: type):
    """The first wrapper of type `cls` in `env`'s chain, or None."""
    while env is not None:
        if isinstance(env, cls):
            return env
        env = getattr(env, "env", None)
    return None


def has_time_limit(env: gym.Env) -> bool:
    """A TimeLimit (gymnasium's, or a `RobotEnv` task's own episode length) ends every episode."""
    spec = getattr(env, "spec", None)
    task = getattr(env.unwrapped, "task", None)
    return bool(getattr(spec, "max_episode_steps", None)) or \
        find_wrapper(env, gym.wrappers.TimeLimit) is not None or \
        bool(getattr(task, "max_episode_steps", None))


def make_gym_env(env_cfg) -> LearnerEnv:
    """The configured env in the learner's interface (see the module docstring)."""
    import robot_rl  # noqa: F401  (registers the robot_rl/... ids)
    kwargs = dict(env_cfg.kwargs)
    if env_cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = env_cfg.max_episode_steps
    try:
        env = gym.make(env_cfg.id, **kwargs)
    except gym.error.Error as exc:
        raise EnvSpecError(f"env.id {env_cfg.id!r}: {exc} (an id registered by a package is "
                           f"written 'package:EnvId-v0', which imports the package first)"
                           ) from None
    for i, item in enumerate(env_cfg.wrappers):
        where = f"env.wrappers[{i}]"
        spec, kwargs = item, {}
        if isinstance(item, dict):  # {'module:callable': {keyword arguments}}
            if len(item) != 1 or not isinstance(next(iter(item.values())) or {}, dict):
                raise EnvSpecError(f"{where}: expected 'module:callable' or "
                                   f"{{'module:callable': {{kwargs}}}}, got {item!r}")
            spec, kwargs = next(iter(item.items()))
        env = load_callable(spec, where)(env, **(kwargs or {}))
        if not isinstance(env, gym.Env):
            raise EnvSpecError(f"{where} {spec!r} returned {type(env).__name__}, "
                               f"not a gymnasium env")
    return LearnerEnv(env, success_key=env_cfg.success_key)


def _obs_equal(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[k], b[k]) for k in a)


def check_env(env: gym.Env, env_cfg, seed: int = 0) -> list[str]:
    """One reset and one step before training, so a misconfigured env fails at start with a
    clear message instead of an episode later: no time limit, a configured success key missing
    from `info`. Returns warnings (also emitted): the env ignores `reset(seed=...)`, success
    comes from the reward."""
    if not has_time_limit(env):
        raise EnvSpecError(f"{env_cfg.id} has no time limit (no TimeLimit wrapper, no "
                           f"max_episode_steps), so neither training episodes nor evaluation "
                           f"end: set env.max_episode_steps")
    notes = []
    obs1, _ = env.reset(seed=seed)
    obs2, _ = env.reset(seed=seed)
    if not _obs_equal(obs1, obs2):
        notes.append(f"{env_cfg.id}: two resets with seed {seed} gave different observations: "
                     f"the env ignores reset(seed=...), so evaluation on held-out seeds is not "
                     f"reproducible")
    env.step(np.zeros(env.action_space.shape, np.float32))
    learner = find_wrapper(env, LearnerEnv)
    if learner is not None and learner.success_from == "reward":
        notes.append(f"{env_cfg.id}: the env's info has no {' or '.join(SUCCESS_KEYS)} key; "
                     f"success is taken from a positive reward on a terminating step. Set "
                     f"env.success_key if the env reports it under another key")
    env.reset(seed=seed)
    for n in notes:
        warnings.warn(n, stacklevel=2)
    return notes


def can_render(env: gym.Env) -> bool:
    """Whether evaluation videos can be made: our sims render their own front camera; any other
    env needs `render_mode='rgb_array'` (e.g. `env.kwargs.render_mode: rgb_array`)."""
    world = getattr(env.unwrapped, "world", None)
    return (world is not None and hasattr(world, "render")) or env.render_mode == "rgb_array"
