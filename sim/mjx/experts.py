"""The tasks' scripted experts (sim/tasks/), one per MJX environment, fed from batched
observations (scripted demos or baselines on N parallel environments)."""
from __future__ import annotations

import numpy as np

from robot_rl.sim.tasks import EXPERTS


class _TaskView:
    """The part of a sim task a scripted expert reads (`tcp`, the object, the action config),
    filled in from one environment's observation: env_state = [object, object - tcp]."""

    def __init__(self, task):
        self.name, self.action = task.name, task.action
        self.lift_height = getattr(task, "lift_height", None)

    def update(self, env_state: np.ndarray) -> None:
        obj = np.asarray(env_state[:3], float)
        self.tcp = obj - np.asarray(env_state[3:6], float)
        self.goal = self.cube_pos = obj


class _ExpertEnv:
    """What `ScriptedExpert.__init__` reads of an env."""

    def __init__(self, task_view):
        self.task, self.unwrapped = task_view, self


class BatchedExpert:
    """N scripted experts for `venv` (a `MjxVectorEnv`); `act(obs)` -> actions [N, A].
    Call `reset(i)` when environment i starts a new episode (all of them after `venv.reset`)."""

    def __init__(self, venv, noise: float = 0.0, fail_prob: float = 0.0, seed: int | None = None):
        task = venv.env.task
        if task.name not in EXPERTS:
            raise ValueError(f"no scripted expert for task {task.name!r}")
        self.views = [_TaskView(task) for _ in range(venv.num_envs)]
        seeds = np.random.SeedSequence(seed).spawn(venv.num_envs)
        self.experts = [EXPERTS[task.name](_ExpertEnv(v), noise=noise, fail_prob=fail_prob,
                                           seed=s) for v, s in zip(self.views, seeds)]

    def reset(self, i: int | None = None) -> None:
        for e in self.experts if i is None else [self.experts[i]]:
            e.reset()

    def act(self, obs: dict) -> np.ndarray:
        for view, env_state in zip(self.views, obs["env_state"]):
            view.update(env_state)
        return np.stack([e.act() for e in self.experts])
