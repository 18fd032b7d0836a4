"""The conservative term of CQL and Cal-QL, shared by the offline learner (agents/offline.py)
and the online SAC learner (agents/sac.py: `agent.cql_alpha`, Cal-QL's online phase).

CQL(H) pushes down ``logsumexp_a Q(s, a)`` (estimated from uniform actions and the policy's
actions at s and s') and pushes up ``Q(s, a_data)``. Cal-QL's one change: the policy-action
Q-values enter the logsumexp as ``max(Q(s, a_pi), G(s))`` with ``G`` a Monte-Carlo lower
bound of the behaviour policy's return from s, so the push-down stops where Q would fall
below a return that was actually observed (the "unlearning" dip at the start of fine-tuning).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn


def mc_lower_bounds(rewards: Sequence[float], terminated: bool, gamma: float, reward_scale: float = 1.0,
                    reward_bias: float = 0.0, reward_min: float = 0.0) -> np.ndarray:
    """For every step of one episode, the discounted return of the rest of it in the rewards
    the critic learns from (``reward_scale * r + reward_bias``). An episode cut by a time limit
    (``terminated`` false) is assumed to go on with the lowest reward forever, so the value is
    a lower bound of the behaviour policy's infinite-horizon value that the TD target
    estimates."""
    r = reward_scale * np.asarray(rewards, np.float64) + reward_bias
    acc = 0.0 if terminated else (reward_scale * reward_min + reward_bias) / (1.0 - gamma)
    out = np.empty(len(r), np.float32)
    for t in range(len(r) - 1, -1, -1):
        acc = r[t] + gamma * acc
        out[t] = acc
    return out


def calibrate(q_pi: torch.Tensor, mc_return: torch.Tensor) -> torch.Tensor:
    """Cal-QL: ``max(Q(s, a_pi), G(s))`` for policy-action Q-values ``[N, B, n]`` and the
    Monte-Carlo returns ``[B]`` of the batch's states. Where the bound binds, the gradient to
    ``Q(s, a_pi)`` is zero: the regularizer stops pushing that value down."""
    return torch.maximum(q_pi, mc_return.view(1, -1, 1).to(q_pi.dtype))


def cql_logsumexp(q_rand: torch.Tensor, q_cur: torch.Tensor, q_next: torch.Tensor,
                  logp_cur: torch.Tensor, logp_next: torch.Tensor, action_dim: int,
                  temperature: float = 1.0, importance_sample: bool = True) -> torch.Tensor:
    """CQL(H)'s ``temperature * logsumexp(Q / temperature)`` over sampled actions -> ``[N, B]``.

    ``q_*``: ``[N, B, n]`` Q-values of n uniform actions, n policy actions at s, and n policy
    actions at s' (all evaluated at s); ``logp_*``: ``[B, n]`` their log densities. With
    importance sampling each sample is divided by its proposal density (``0.5^A`` for the
    uniform box), making the sum a Monte-Carlo estimate of the integral over actions."""
    if importance_sample:
        cat = torch.cat([q_rand + action_dim * math.log(2.0),
                         q_cur - logp_cur.unsqueeze(0), q_next - logp_next.unsqueeze(0)], dim=-1)
    else:
        cat = torch.cat([q_rand, q_cur, q_next], dim=-1)
    return temperature * torch.logsumexp(cat / temperature, dim=-1)


def conservative_gap(critic: nn.Module, actor: nn.Module, feat: torch.Tensor, next_feat: torch.Tensor,
                     q_data: torch.Tensor, rand_action: torch.Tensor, cur_noise: torch.Tensor,
                     next_noise: torch.Tensor, bound: Optional[torch.Tensor], temperature: float = 1.0,
                     importance_sample: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logsumexp - Q(s, a_data))`` per critic and state ``[N, B]`` (its mean, times the
    weight, is the conservative loss) and the mean Q of the policy's actions at s (logged).

    ``rand_action`` ``[B*n, A]`` uniform in [-1, 1] and the two actor noises ``[B*n, A]`` are
    drawn by the caller, so the function has no randomness of its own (it runs inside the
    compiled SAC update too); ``bound``: Cal-QL's Monte-Carlo lower bounds ``[B]``, None for
    plain CQL. Only the critic (and the encoder that made ``feat``) is trained by it."""
    B, A = feat.shape[0], rand_action.shape[-1]
    n = rand_action.shape[0] // B
    feat_rep = feat.repeat_interleave(n, 0)
    with torch.no_grad():
        a_cur, logp_cur = actor.sample(feat_rep.detach(), cur_noise)
        a_next, logp_next = actor.sample(next_feat.repeat_interleave(n, 0), next_noise)
    # one forward pass for the 3n sampled actions of every state
    q_all = critic(feat_rep.repeat(3, 1), torch.cat([rand_action, a_cur, a_next]))
    q_rand, q_cur, q_next = q_all.view(-1, 3, B, n).unbind(1)
    if bound is not None:
        q_cur, q_next = calibrate(q_cur, bound), calibrate(q_next, bound)
    lse = cql_logsumexp(q_rand, q_cur, q_next, logp_cur.view(B, n), logp_next.view(B, n), A,
                        temperature, importance_sample)
    return lse - q_data, q_cur.detach().mean()
