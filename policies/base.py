"""The policy protocol every adapter implements, the critic protocol V-GPS scores with, and
explicit action-space conversion between them.

- ``Policy.act(obs) -> action``: the action to execute for one (unbatched) observation dict.
- ``Policy.sample(obs, n) -> actions[n]``: n independent draws from the policy's action
  distribution for that observation (``[n, A]``, or ``[n, H, A]`` for policies that emit
  chunks of H actions). A deterministic policy returns n copies.
- ``QFunction.q_values(obs, actions[K, A]) -> [K]``: the value of each candidate action in
  one observation (``robot_rl.agents.offline`` learners implement it).

Policies and critics may live in different action spaces: a generalist policy may emit
end-effector deltas in metres and a gripper in ``[0, 1]``, while our critics are trained on
the env's normalized ``[-1, 1]`` actions. :class:`ActionRescale` is the explicit affine map
between two boxes (per dimension), with its inverse.

Nothing here imports the learner: adapters take agents by duck typing (``policies`` <-
``robot_rl``).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = ["Policy", "QFunction", "ActionRescale", "AgentPolicy", "batch_obs"]


@runtime_checkable
class Policy(Protocol):
    def act(self, obs: Mapping[str, Any]) -> np.ndarray: ...

    def sample(self, obs: Mapping[str, Any], n: int) -> np.ndarray: ...


@runtime_checkable
class QFunction(Protocol):
    def q_values(self, obs: Mapping[str, Any], actions: np.ndarray) -> np.ndarray: ...


class ActionRescale:
    """Per-dimension affine map from box ``[src_low, src_high]`` to ``[dst_low, dst_high]``.

    ``ActionRescale(src_low=[-0.03]*3 + [0], src_high=[0.03]*3 + [1])`` maps a policy that
    emits metres and a 0..1 gripper to the default destination ``[-1, 1]``. Values outside the
    source box map outside the destination box (no silent clipping); ``clip=True`` clips the
    result to the destination box. Works on ``[..., A]`` arrays (candidates, chunks).
    """

    def __init__(self, src_low: Sequence[float], src_high: Sequence[float],
                 dst_low: Optional[Sequence[float]] = None, dst_high: Optional[Sequence[float]] = None,
                 clip: bool = False):
        self.src_low = np.asarray(src_low, np.float64).reshape(-1)
        self.src_high = np.asarray(src_high, np.float64).reshape(-1)
        d = len(self.src_low)
        self.dst_low = np.full(d, -1.0) if dst_low is None else np.asarray(dst_low, np.float64).reshape(-1)
        self.dst_high = np.full(d, 1.0) if dst_high is None else np.asarray(dst_high, np.float64).reshape(-1)
        for name, arr in [("src_high", self.src_high), ("dst_low", self.dst_low), ("dst_high", self.dst_high)]:
            if len(arr) != d:
                raise ValueError(f"ActionRescale: {name} has {len(arr)} dims, src_low has {d}")
        for name, lo, hi in [("src", self.src_low, self.src_high), ("dst", self.dst_low, self.dst_high)]:
            if not np.all(hi > lo):
                raise ValueError(f"ActionRescale: {name}_high must exceed {name}_low in every dim, "
                                 f"got low={lo.tolist()} high={hi.tolist()}")
        self.clip = clip

    @property
    def dim(self) -> int:
        return len(self.src_low)

    def _check(self, a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.float64)
        if a.shape[-1] != self.dim:
            raise ValueError(f"ActionRescale: expected actions with {self.dim} dims, got shape {a.shape}")
        return a

    def __call__(self, a: Any) -> np.ndarray:
        a = self._check(a)
        out = self.dst_low + (a - self.src_low) * (self.dst_high - self.dst_low) / (self.src_high - self.src_low)
        if self.clip:
            out = np.clip(out, self.dst_low, self.dst_high)
        return out.astype(np.float32)

    def inverse(self, a: Any) -> np.ndarray:
        a = self._check(a)
        out = self.src_low + (a - self.dst_low) * (self.src_high - self.src_low) / (self.dst_high - self.dst_low)
        return out.astype(np.float32)


def batch_obs(obs: Mapping[str, Any], n: int) -> dict:
    """One observation -> the same observation ``n`` times along a new leading axis."""
    return {k: np.repeat(np.asarray(v)[None], n, axis=0) for k, v in obs.items()}


class AgentPolicy:
    """A :class:`Policy` over any agent with ``act_batch(obs_batched, deterministic) -> [N, A]``
    (our ``SACAgent`` and ``BCAgent``).

    ``deterministic``: what :meth:`act` executes; the agent's mean action (True) or a sample
    (False). :meth:`sample` always draws from the agent's distribution in one batched forward
    pass; with ``deterministic=False``, ``act(obs)`` is exactly ``sample(obs, 1)[0]``, so a
    V-GPS wrapper with K=1 reproduces it draw for draw.
    """

    def __init__(self, agent: Any, deterministic: bool = False):
        if not callable(getattr(agent, "act_batch", None)):
            raise TypeError(f"{type(agent).__name__} has no act_batch(obs, deterministic) method")
        self.agent, self.deterministic = agent, deterministic

    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        if self.deterministic:
            return self.agent.act_batch(batch_obs(obs, 1), True)[0]
        return self.sample(obs, 1)[0]

    def sample(self, obs: Mapping[str, Any], n: int) -> np.ndarray:
        if n < 1:
            raise ValueError(f"sample: n must be >= 1, got {n}")
        return np.asarray(self.agent.act_batch(batch_obs(obs, n), False))
