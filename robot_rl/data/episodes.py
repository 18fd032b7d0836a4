"""Env episodes <-> LeRobotDataset v3.0 frames, shared by demos, interventions and evaluation.

Frame t holds observation t, the action executed at t, and the outcome of that step
(`next.reward`, `next.done`, `next.success`; `next.terminated` separates a real end from a
time limit). Observation keys map to LeRobot names: `state` -> `observation.state`,
`env_state` -> `observation.environment_state`, an image (uint8 HxWxC) `front` ->
`observation.images.front`, any other (vector) key `desired_goal` -> `observation.desired_goal`.
`intervention` marks frames where a human's action replaced the policy's.

Datasets LeRobot itself writes (its HIL-SERL recorder: `next.reward`, `next.done`,
`complementary_info.*`, often channel-first images) lack `next.terminated`, `next.success` and
`intervention`; `episode_outcomes` derives them (see there) and `derived_fields` says which and
how. Their feature names may differ from the env's observation keys: `key_map` (dataset
feature name -> our observation key, e.g. {"observation.image": "front"}) translates.
"""
from __future__ import annotations

import logging
from typing import Any, Iterator, Mapping, Optional

import numpy as np

from robot_rl.data.lerobot import LeRobotDataset, LeRobotDatasetWriter

log = logging.getLogger(__name__)

OBS_NAMES = {"state": "observation.state", "env_state": "observation.environment_state"}
IMAGE_PREFIX = "observation.images."
# Where datasets not written by us keep what we call `next.truncated` / `intervention`.
TRUNCATED_FEATURES = ("next.truncated", "complementary_info.truncated")
INTERVENTION_FEATURES = ("intervention", "complementary_info.is_intervention",
                         "complementary_info.intervention")


def is_image(space_or_value: Any) -> bool:
    """A camera observation: uint8 with three dimensions (a gymnasium Box or an array)."""
    shape = getattr(space_or_value, "shape", None)
    dtype = getattr(space_or_value, "dtype", None)
    if shape is None or dtype is None:
        space_or_value = np.asarray(space_or_value)
        shape, dtype = space_or_value.shape, space_or_value.dtype
    return np.dtype(dtype) == np.uint8 and len(shape) == 3


def obs_feature_name(key: str, space_or_value: Any = None) -> str:
    """Our observation key -> LeRobot feature name. `space_or_value` (the key's gymnasium space
    or an observation value) tells an image from a vector; without it a key other than `state`
    / `env_state` is taken for a camera (the names of datasets written before vector keys had
    their own)."""
    if key in OBS_NAMES:
        return OBS_NAMES[key]
    if space_or_value is None or is_image(space_or_value):
        return IMAGE_PREFIX + key
    return f"observation.{key}"


def feature_obs_key(feature: str) -> Optional[str]:
    """LeRobot feature name -> our observation key (inverse of `obs_feature_name`); None for
    features that are not observations."""
    for key, name in OBS_NAMES.items():
        if feature == name:
            return key
    if feature.startswith(IMAGE_PREFIX):
        return feature[len(IMAGE_PREFIX):]
    if feature.startswith("observation.") and "." not in feature[len("observation."):]:
        return feature[len("observation."):]
    return None


def resolve_obs_features(features: Mapping[str, Any], obs_keys, key_map: Optional[Mapping] = None,
                         observation_space=None, where: Any = "dataset") -> dict[str, str]:
    """{our observation key: dataset feature name} for `obs_keys`. A key named in `key_map`
    (dataset feature -> our key) takes that feature; otherwise, with `observation_space` the
    name follows from the key's space, without it the first of `observation.images.<key>` /
    `observation.<key>` the dataset has. Raises ValueError naming what is missing."""
    inverse: dict[str, str] = {}
    for feature, key in (key_map or {}).items():
        if key in inverse:
            raise ValueError(f"key_map maps both {inverse[key]!r} and {feature!r} to {key!r}")
        inverse[key] = feature
    names, missing = {}, []
    for k in obs_keys:
        if k in inverse:
            candidates = [inverse[k]]
        elif k in OBS_NAMES:
            candidates = [OBS_NAMES[k]]
        elif observation_space is not None and k in getattr(observation_space, "spaces", {}):
            candidates = [obs_feature_name(k, observation_space.spaces[k])]
        else:
            candidates = [IMAGE_PREFIX + k, f"observation.{k}"]
        found = next((c for c in candidates if c in features), None)
        if found is None:
            missing.append(candidates[0] if len(candidates) == 1 else " or ".join(candidates))
        names[k] = found
    if missing:
        hint = "" if key_map else " (map dataset features to observation keys with demos.key_map)"
        raise ValueError(f"dataset {where} lacks {missing}; it has {sorted(features)}{hint}")
    return names


def features_for(observation_space, action_dim: int) -> dict:
    feats = {}
    for key, space in observation_space.spaces.items():
        if is_image(space):
            feats[obs_feature_name(key, space)] = {"dtype": "video", "shape": list(space.shape),
                                                   "names": ["height", "width", "channels"]}
        else:
            feats[obs_feature_name(key, space)] = {"dtype": "float32", "shape": list(space.shape),
                                                   "names": None}
    feats["action"] = {"dtype": "float32", "shape": [action_dim], "names": None}
    for name, dtype in [("next.reward", "float32"), ("next.done", "bool"),
                        ("next.terminated", "bool"), ("next.success", "bool"),
                        ("intervention", "bool")]:
        feats[name] = {"dtype": dtype, "shape": [1], "names": None}
    return feats


def make_frame(obs: dict, action, reward: float, terminated: bool, truncated: bool,
               success: bool, intervention: bool = False) -> dict:
    frame = {obs_feature_name(k, v): v for k, v in obs.items()}
    frame.update({"action": np.asarray(action, np.float32),
                  "next.reward": np.float32(reward), "next.done": bool(terminated or truncated),
                  "next.terminated": bool(terminated), "next.success": bool(success),
                  "intervention": bool(intervention)})
    return frame


def env_fps(env) -> int:
    """The env's control rate: its `period`, else `metadata['render_fps']`, else 10."""
    period = getattr(env.unwrapped, "period", None)
    if period:
        return int(round(1.0 / period))
    return int((getattr(env, "metadata", None) or {}).get("render_fps") or 10)


def env_robot_type(env) -> str:
    """`env.unwrapped.robot_type` if the env says; our own envs (Panda sim/real) "panda";
    else "unknown"."""
    base = env.unwrapped
    rt = getattr(base, "robot_type", None)
    if rt:
        return str(rt)
    return "panda" if type(base).__module__.startswith("robot_rl.") else "unknown"


def open_writer(root, env, fps: Optional[int] = None, robot_type: Optional[str] = None,
                video_codec: Optional[str] = None) -> LeRobotDatasetWriter:
    """A dataset writer for `env`'s episodes (as `make_frame` records them). Features come from
    the OUTERMOST env's spaces, the observations the caller actually sees (a user's
    ObservationWrapper may change them). fps: the env's control period, else
    `metadata["render_fps"]`, else 10. video_codec: None matches an existing dataset's codec
    (e.g. LeRobot's AV1) when appending, else libx264."""
    space = env.observation_space
    if not hasattr(space, "spaces") or not isinstance(space.spaces, Mapping):
        raise ValueError(f"datasets record dict observations; this env's observation space is "
                         f"{type(space).__name__} {space} (wrap it so observations are a dict, "
                         f"e.g. {{'state': ...}})")
    return LeRobotDatasetWriter(root, fps=fps or env_fps(env),
                                features=features_for(space, env.action_space.shape[0]),
                                robot_type=robot_type or env_robot_type(env),
                                video_codec=video_codec)


# ---------------------------------------------------------------------------- outcomes
def derived_fields(features: Mapping[str, Any], max_episode_steps: Optional[int] = None,
                   sparse_reward: bool = False) -> dict[str, str]:
    """Which per-frame outcomes a dataset with `features` lacks and how `episode_outcomes`
    derives them ({field: how}); empty for datasets we write."""
    out = {}
    if "next.terminated" not in features:
        trunc = next((f for f in TRUNCATED_FEATURES if f in features), None)
        if trunc:
            out["next.terminated"] = f"next.done and not {trunc}"
        elif max_episode_steps:
            out["next.terminated"] = (f"next.done, except at the time limit (frame "
                                      f"{max_episode_steps}) without success")
        else:
            out["next.terminated"] = ("next.done (time limits not knowable: pass "
                                      "max_episode_steps to tell them)")
    if "next.success" not in features:
        out["next.success"] = ("next.reward > 0 (sparse task)" if sparse_reward else
                               "unknown: False (no sparse reward to read it from)")
    if not any(f in features for f in INTERVENTION_FEATURES):
        out["intervention"] = "False (not recorded)"
    return out


def episode_outcomes(ep: Mapping[str, np.ndarray], max_episode_steps: Optional[int] = None,
                     sparse_reward: bool = False) -> dict[str, np.ndarray]:
    """Per-frame `terminated`, `success`, `intervention` (bool [T]) of one episode read by
    `LeRobotDataset.episode`: the recorded features where present (our datasets: unchanged),
    else derived as `derived_fields` says: success = reward > 0 for a sparse task; terminated =
    done, and not where a truncation flag says so or, with `max_episode_steps`, where the
    episode ends at the time limit without success; intervention = False."""
    T = len(ep["action"])
    reward = np.asarray(ep["next.reward"], np.float64).reshape(T)
    if "next.success" in ep:
        success = np.asarray(ep["next.success"], bool).reshape(T)
    else:
        success = reward > 0 if sparse_reward else np.zeros(T, bool)
    if "next.terminated" in ep:
        terminated = np.asarray(ep["next.terminated"], bool).reshape(T)
    else:
        done = np.asarray(ep["next.done"], bool).reshape(T) if "next.done" in ep else np.zeros(T, bool)
        trunc = next((f for f in TRUNCATED_FEATURES if f in ep), None)
        if trunc:
            terminated = done & ~np.asarray(ep[trunc], bool).reshape(T)
        else:
            terminated = done.copy()
            if max_episode_steps and T >= max_episode_steps:
                terminated[max_episode_steps - 1:] &= success[max_episode_steps - 1:]
    src = next((f for f in INTERVENTION_FEATURES if f in ep), None)
    intervention = (np.asarray(ep[src]).reshape(T).astype(bool) if src else np.zeros(T, bool))
    return {"terminated": terminated, "success": success, "intervention": intervention}


_noted: set = set()


def note_derived(dataset, derived: Mapping[str, str]) -> None:
    """Log (once per dataset and derivation) what `episode_outcomes` derives."""
    if not derived:
        return
    where = str(getattr(dataset, "root", dataset))
    msg = "; ".join(f"{k} derived as {v}" for k, v in derived.items())
    if (where, msg) not in _noted:
        _noted.add((where, msg))
        log.warning("dataset %s: %s", where, msg)


def iter_transitions(dataset: LeRobotDataset, obs_keys: list[str],
                     key_map: Optional[Mapping[str, str]] = None, *, observation_space=None,
                     max_episode_steps: Optional[int] = None, sparse_reward: bool = False,
                     derived: Optional[dict] = None) -> Iterator[dict]:
    """(obs, action, reward, next_obs, terminated, truncated, intervention) per step, for
    filling a replay buffer. A time-limited episode's last step has no stored next
    observation, so it is skipped rather than bootstrapped from a wrong one; a terminated
    episode's last step keeps it, with its own observation standing in for the next one
    (never bootstrapped) and `next_obs_stored` False, so nothing scores that stand-in.

    `key_map`: dataset feature name -> observation key, for datasets whose names differ from
    the env's. `observation_space`: the env's (tells images from vectors by space; without it
    the dataset's names decide). Outcomes a dataset lacks (LeRobot's own RL recordings) are
    derived by `episode_outcomes` (`max_episode_steps`: the env's time limit, so an episode
    ending there is truncated unless it succeeded, success read from the reward when
    `sparse_reward`); what was derived is logged once and, if `derived` (a dict) is given,
    written into it."""
    names = resolve_obs_features(dataset.features, obs_keys, key_map, observation_space,
                                 where=getattr(dataset, "root", dataset))
    how = derived_fields(dataset.features, max_episode_steps, sparse_reward)
    if not (max_episode_steps and "next.terminated" in how):
        how.pop("next.success", None)  # used only to tell success at a time limit
    if derived is not None:
        derived.clear()
        derived.update(how)
    note_derived(dataset, how)
    for e in range(dataset.num_episodes):
        ep = dataset.episode(e)
        T = len(ep["action"])
        out = episode_outcomes(ep, max_episode_steps, sparse_reward) if how else None
        term = ep["next.terminated"] if out is None else out["terminated"]
        interv = ep["intervention"] if out is None else out["intervention"]
        for t in range(T):
            terminated = bool(term[t])
            if t == T - 1 and not terminated:
                break
            nxt = min(t + 1, T - 1)
            yield {"obs": {k: ep[n][t] for k, n in names.items()},
                   "action": ep["action"][t].astype(np.float32),
                   "reward": float(ep["next.reward"][t]),
                   "next_obs": {k: ep[n][nxt] for k, n in names.items()},
                   "terminated": terminated, "truncated": t == T - 1 and not terminated,
                   "intervention": bool(interv[t]), "next_obs_stored": t < T - 1}
