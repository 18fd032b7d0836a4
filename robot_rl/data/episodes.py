"""Env episodes <-> LeRobotDataset v3.0 frames, shared by demos, interventions and evaluation.

Frame t holds observation t, the action executed at t, and the outcome of that step
(`next.reward`, `next.done`, `next.success`; `next.terminated` separates a real end from a
time limit). Observation keys map to LeRobot names: `state` -> `observation.state`,
`env_state` -> `observation.environment_state`, camera `front` -> `observation.images.front`.
`intervention` marks frames where a human's action replaced the policy's.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from robot_rl.data.lerobot import LeRobotDataset, LeRobotDatasetWriter

OBS_NAMES = {"state": "observation.state", "env_state": "observation.environment_state"}


def obs_feature_name(key: str) -> str:
    return OBS_NAMES.get(key, f"observation.images.{key}")


def features_for(observation_space, action_dim: int) -> dict:
    feats = {}
    for key, space in observation_space.spaces.items():
        if space.dtype == np.uint8 and len(space.shape) == 3:
            feats[obs_feature_name(key)] = {"dtype": "video", "shape": list(space.shape),
                                            "names": ["height", "width", "channels"]}
        else:
            feats[obs_feature_name(key)] = {"dtype": "float32", "shape": list(space.shape),
                                            "names": None}
    feats["action"] = {"dtype": "float32", "shape": [action_dim], "names": None}
    for name, dtype in [("next.reward", "float32"), ("next.done", "bool"),
                        ("next.terminated", "bool"), ("next.success", "bool"),
                        ("intervention", "bool")]:
        feats[name] = {"dtype": dtype, "shape": [1], "names": None}
    return feats


def make_frame(obs: dict, action, reward: float, terminated: bool, truncated: bool,
               success: bool, intervention: bool = False) -> dict:
    frame = {obs_feature_name(k): v for k, v in obs.items()}
    frame.update({"action": np.asarray(action, np.float32),
                  "next.reward": np.float32(reward), "next.done": bool(terminated or truncated),
                  "next.terminated": bool(terminated), "next.success": bool(success),
                  "intervention": bool(intervention)})
    return frame


def open_writer(root, env, fps: int = 10, robot_type: str = "panda") -> LeRobotDatasetWriter:
    base = env.unwrapped
    return LeRobotDatasetWriter(root, fps=fps, features=features_for(base.observation_space,
                                                                     base.action_space.shape[0]),
                                robot_type=robot_type)


def iter_transitions(dataset: LeRobotDataset, obs_keys: list[str]) -> Iterator[dict]:
    """(obs, action, reward, next_obs, terminated, truncated, intervention) per step, for
    filling a replay buffer. A time-limited episode's last step has no stored next
    observation, so it is skipped rather than bootstrapped from a wrong one; a terminated
    episode's last step keeps it, with its own observation standing in for the next one
    (never bootstrapped) and `next_obs_stored` False, so nothing scores that stand-in."""
    names = {k: obs_feature_name(k) for k in obs_keys}
    missing = [n for n in names.values() if n not in dataset.features]
    if missing:
        raise ValueError(f"dataset {dataset.root} lacks {missing}; it has {sorted(dataset.features)}")
    for e in range(dataset.num_episodes):
        ep = dataset.episode(e)
        T = len(ep["action"])
        for t in range(T):
            terminated = bool(ep["next.terminated"][t])
            if t == T - 1 and not terminated:
                break
            nxt = min(t + 1, T - 1)
            yield {"obs": {k: ep[n][t] for k, n in names.items()},
                   "action": ep["action"][t].astype(np.float32),
                   "reward": float(ep["next.reward"][t]),
                   "next_obs": {k: ep[n][nxt] for k, n in names.items()},
                   "terminated": terminated, "truncated": t == T - 1 and not terminated,
                   "intervention": bool(ep["intervention"][t]), "next_obs_stored": t < T - 1}
