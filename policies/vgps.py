"""V-GPS: value-guided policy steering (Nakamoto et al., 2024).

At every step, draw K candidate actions from any policy (a generalist served over HTTP, a BC
policy, SAC, LeRobot), score each with a learned critic Q(s, a), and execute

- ``mode="argmax"``: the candidate with the highest Q, or
- ``mode="softmax"``: a candidate drawn with probability ``softmax(Q / beta)``.

The policy is not changed; the critic only re-ranks what the policy proposes, so it can be
trained once offline (Cal-QL in ``robot_rl.agents.offline``) and put in front of any policy.
With K=1 there is nothing to choose: ``act`` returns the policy's own sample unchanged (no
critic call, no extra random draw), so it reproduces the base policy draw for draw.

Action spaces are explicit: candidates are executed exactly as the policy emitted them;
``policy_to_critic`` (an :class:`~robot_rl.policies.base.ActionRescale` or any function
``[K, A_policy] -> [K, A_critic]``) converts them into the critic's action space only for
scoring. Chunked policies (``sample`` -> ``[K, H, A]``) are scored by the first action of
each chunk (a single-step critic cannot score the rest) and the whole chosen chunk is
returned.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import numpy as np

__all__ = ["ValueGuidedPolicy", "softmax"]


def softmax(q: np.ndarray, beta: float) -> np.ndarray:
    z = np.asarray(q, np.float64) / beta
    z = np.exp(z - z.max())
    return z / z.sum()


class ValueGuidedPolicy:
    """Args:
        policy: any object with ``sample(obs, n)`` (see ``robot_rl.policies.base.Policy``).
        critic: any object with ``q_values(obs, actions[K, A]) -> [K]``.
        num_samples: K, candidates per step.
        mode: ``argmax`` or ``softmax``.
        beta: softmax temperature (``softmax`` mode).
        policy_to_critic: maps candidates from the policy's to the critic's action space
            (default: identity, i.e. both use the env's normalized actions).
        seed: seeds the softmax draw.
    """

    def __init__(self, policy: Any, critic: Any, num_samples: int = 10, mode: str = "argmax",
                 beta: float = 1.0, policy_to_critic: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                 seed: int = 0):
        if not callable(getattr(policy, "sample", None)):
            raise TypeError(f"policy {type(policy).__name__} has no sample(obs, n) method")
        if not callable(getattr(critic, "q_values", None)):
            raise TypeError(f"critic {type(critic).__name__} has no q_values(obs, actions) method")
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if mode not in ("argmax", "softmax"):
            raise ValueError(f"mode must be 'argmax' or 'softmax', got {mode!r}")
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        self.policy, self.critic = policy, critic
        self.num_samples, self.mode, self.beta = int(num_samples), mode, float(beta)
        self.policy_to_critic = policy_to_critic
        self.rng = np.random.default_rng(seed)
        self.last_q: Optional[np.ndarray] = None       # scores of the last step's candidates
        self.last_index: Optional[int] = None          # which candidate was executed

    def score(self, obs: Mapping[str, Any], candidates: np.ndarray) -> np.ndarray:
        """Q of each candidate ``[K]`` (chunks scored by their first action)."""
        first = candidates[:, 0] if candidates.ndim == 3 else candidates
        if self.policy_to_critic is not None:
            first = self.policy_to_critic(first)
        q = np.asarray(self.critic.q_values(obs, np.asarray(first, np.float32)), np.float64).reshape(-1)
        if q.shape != (len(candidates),):
            raise ValueError(f"critic returned {q.shape[0]} values for {len(candidates)} candidates")
        return q

    def choose(self, q: np.ndarray) -> int:
        if self.mode == "argmax":
            return int(np.argmax(q))
        return int(self.rng.choice(len(q), p=softmax(q, self.beta)))

    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        candidates = np.asarray(self.policy.sample(obs, self.num_samples))
        if candidates.ndim not in (2, 3) or len(candidates) != self.num_samples:
            raise ValueError(f"policy.sample(obs, {self.num_samples}) returned shape {candidates.shape}; "
                             f"expected [{self.num_samples}, A] or [{self.num_samples}, H, A]")
        if self.num_samples == 1:
            self.last_q, self.last_index = None, 0
            return candidates[0]
        q = self.score(obs, candidates)
        i = self.choose(q)
        self.last_q, self.last_index = q, i
        return candidates[i]

    def sample(self, obs: Mapping[str, Any], n: int) -> np.ndarray:
        """n independent V-GPS decisions (each from its own K candidates)."""
        return np.stack([self.act(obs) for _ in range(n)])
