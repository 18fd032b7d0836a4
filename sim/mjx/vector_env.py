"""A gymnasium vector env over `MjxEnv`, and batched policy evaluation on it.

`MjxVectorEnv` behaves like `gymnasium.vector.SyncVectorEnv` over N `RobotEnv`s of the task:
`reset(seed=s)` seeds environment i with s + i, a finished environment is reset on the next
`step` (gymnasium's NEXT_STEP autoreset) from its own generator, observations and actions are
batched numpy arrays. Actions cross into JAX once per step as one [N, A] array.
"""
from __future__ import annotations

from typing import Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from robot_rl.sim.mjx.env import MjxEnv

# make_sim_env keyword arguments: passed on, ignored (they only concern the CPU sim or
# rendering), or refused (MJX has no cameras and no wrench sensing)
_PASSED = ("control_hz", "reward_type", "impedance")
_IGNORED = ("controller", "render_mode", "image_size", "cameras")


class MjxVectorEnv(VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, task: str = "PandaPickCube", num_envs: int = 16, control_hz: float = 10.0,
                 reward_type: str = "sparse", impedance="compliant"):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if reward_type not in ("sparse", "dense"):
            raise ValueError(f"reward_type must be 'sparse' or 'dense', got {reward_type!r}")
        self.env = MjxEnv(task, control_hz=control_hz, impedance=impedance)
        self.num_envs, self.reward_type = num_envs, reward_type
        self.single_observation_space = self.env.observation_space
        self.single_action_space = self.env.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.max_episode_steps = self.env.max_episode_steps
        self._rngs = [seeding.np_random(None)[0] for _ in range(num_envs)]
        self._steps = np.zeros(num_envs, int)
        self._autoreset = np.zeros(num_envs, bool)
        self.state = None

    def _host_reset(self, ids) -> tuple[dict, dict]:
        parts = [self.env.host_reset(self._rngs[i]) for i in ids]
        return ({k: np.stack([p[0][k] for p in parts]) for k in parts[0][0]},
                {k: np.stack([p[1][k] for p in parts]) for k in parts[0][1]})

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict | None = None):
        if seed is not None:
            seeds = [seed + i for i in range(self.num_envs)] if np.isscalar(seed) else list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"need {self.num_envs} seeds, got {len(seeds)}")
            self._rngs = [seeding.np_random(int(s))[0] for s in seeds]
        fields, obs = self._host_reset(range(self.num_envs))
        self.state = self.env.state_from_fields(fields)
        self._steps[:] = 0
        self._autoreset[:] = False
        return obs, {"is_success": np.zeros(self.num_envs, bool)}

    def step(self, actions):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(actions, np.float32)
        if a.shape != self.action_space.shape:
            raise ValueError(f"actions must have shape {self.action_space.shape}, got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("actions contain NaN or inf")
        out = self.env.step(self.state, a)
        obs = {k: np.array(v) for k, v in out.obs.items()}
        success = np.array(out.success)
        reward = (success.astype(np.float32) if self.reward_type == "sparse"
                  else np.array(out.reward, np.float32))
        self._steps += 1
        terminated, truncated = success.copy(), self._steps >= self.max_episode_steps
        state = out.state
        ids = np.flatnonzero(self._autoreset)
        if len(ids):  # finished last step: this step resets them instead
            fields = self.env.fields_of(state)
            new_fields, new_obs = self._host_reset(ids)
            for k in fields:
                fields[k][ids] = new_fields[k]
            for k in obs:
                obs[k][ids] = new_obs[k]
            state = self.env.state_from_fields(fields)
            reward[ids], success[ids] = 0.0, False
            terminated[ids], truncated[ids], self._steps[ids] = False, False, 0
        self.state = state
        self._autoreset = terminated | truncated
        return obs, reward, terminated, truncated, {"is_success": success,
                                                    "action": np.array(out.action)}

    def close_extras(self, **kwargs):
        self.env.close()


def make_mjx_vector_env(env_id: str, num_envs: int, **env_kwargs) -> MjxVectorEnv:
    """The MJX vector env of a gymnasium id (`robot_rl/PandaReach-v0`, ...) and its kwargs."""
    sim_ids = {i: spec for i, spec in gym.registry.items()
               if spec.entry_point == "robot_rl.sim.envs:make_sim_env"}  # robot_rl/registry.py
    if env_id not in sim_ids:
        raise ValueError(f"unknown env id {env_id!r}; valid: {sorted(sim_ids)}")
    task, vision = sim_ids[env_id].kwargs["task"], sim_ids[env_id].kwargs["vision"]
    if vision or env_kwargs.get("vision") or env_kwargs.get("include_wrench"):
        raise ValueError(f"{env_id} with {env_kwargs}: the MJX backend has state observations "
                         "only (no cameras, no wrench)")
    unknown = set(env_kwargs) - set(_PASSED) - set(_IGNORED) - {"vision", "include_wrench"}
    if unknown:
        raise ValueError(f"env kwargs {sorted(unknown)} are not supported by the MJX backend; "
                         f"supported: {list(_PASSED)}")
    return MjxVectorEnv(task, num_envs, **{k: v for k, v in env_kwargs.items() if k in _PASSED})


def evaluate_policy(act_batch: Callable[[dict], np.ndarray], venv: MjxVectorEnv, episodes: int,
                    seed: int, progress: bool = False) -> dict:
    """Episodes seed, seed+1, ... (as `train.evaluate`), `venv.num_envs` at a time; success is
    the MJX envs' own task success at the end of each episode."""
    from tqdm import tqdm
    n_env = venv.num_envs
    successes, returns, lengths = [], [], []
    bar = tqdm(total=episodes, desc="eval (mjx)", unit="ep", disable=not progress, leave=False)
    for start in range(0, episodes, n_env):
        n = min(n_env, episodes - start)
        obs, _ = venv.reset(seed=[seed + start + i for i in range(n_env)])
        done = np.zeros(n_env, bool)
        ret, length, success = np.zeros(n_env), np.zeros(n_env, int), np.zeros(n_env, bool)
        while not done[:n].all():
            obs, r, term, trunc, info = venv.step(act_batch(obs))
            live = ~done
            ret[live] += r[live]
            length[live] += 1
            success[live] = info["is_success"][live]
            finished = live & (term | trunc)
            bar.update(int(finished[:n].sum()))
            done |= finished
        successes += success[:n].tolist()
        returns += ret[:n].tolist()
        lengths += length[:n].tolist()
    bar.close()
    return {"success_rate": float(np.mean(successes)), "return": float(np.mean(returns)),
            "length": float(np.mean(lengths)), "episodes": episodes, "backend": "mjx",
            "envs": n_env}
