"""Start an online SAC agent from an earlier run or a pretrained policy (`init.from`).

Two kinds of source:
- a `robot-rl offline` run (Cal-QL / CQL / IQL): its weights load as they are
  (`warm_start`, offline-to-online fine-tuning);
- a policy behind the `Policy` protocol (a `robot-rl bc` run, or a generalist behind an
  `http(s)://` policy server, `load_prior_policy`): the trainer runs it in the env and the
  actor is fit to its actions by behaviour cloning on those rollouts (`distill_actor`).

A `robot-rl offline` run (Cal-QL, CQL or IQL, robot_rl/agents/offline.py) builds its critic
ensemble, actor and input normalization from the same modules as `SACAgent`, so its weights
load as they are. Everything the weights silently depend on is checked first, and a mismatch
is an error naming the field to change: the observation keys and shapes (and the frozen
normalization the critic saw them through, which the agent takes over), the action dims, the
network shapes, the discount and the reward scale the Q-values are expressed in.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping

import numpy as np
import torch

from robot_rl.agents.sac import SACAgent


class WarmStartError(ValueError):
    pass


def offline_checkpoint(source: str | Path) -> Path:
    """The critic.pt of an offline run directory (or the file itself)."""
    p = Path(source)
    if p.is_dir():
        if (p / "critic.pt").exists():
            return p / "critic.pt"
        raise WarmStartError(f"init.from={source}: no critic.pt (offline run) or policy.pt (BC run) "
                             f"in that directory")
    if not p.exists():
        raise WarmStartError(f"init.from={source}: no such file or directory")
    return p


def _checks(agent: SACAgent, state: Dict[str, Any], critic: bool, actor: bool) -> List[str]:
    """Every mismatch between the offline run and the agent, each naming the field to change."""
    c, off = agent.config, state["config"]
    problems = []
    if agent.encoder.image_keys:
        problems.append(f"the env has image observations {agent.encoder.image_keys}; offline runs "
                        f"learn from vector observations only")
    spec = {k: tuple(s) for k, (s, _) in state["obs_spec"].items()}
    mine = {k: tuple(agent.obs_spec[k][0]) for k in agent.encoder.vector_keys}
    if spec != mine:
        problems.append(f"observations differ: the offline run saw {spec}, the env gives {mine} "
                        f"(set the offline run's data.obs_keys, or env.wrappers, to match)")
    if state["action_dim"] != agent.arm_dim:
        problems.append(f"the offline run's actions have {state['action_dim']} dims, the agent's "
                        f"continuous actions {agent.arm_dim}" + (" (agent.grasp_critic=true takes the "
                                                                 "gripper dim out)" if c.grasp_critic else ""))
    if critic:
        wanted = {"num_critics": off["num_critics"], "hidden_dims": tuple(off["hidden_dims"]),
                  "activation": off["activation"], "critic_layer_norm": True, "gamma": off["gamma"],
                  "reward_scale": off["reward_scale"], "reward_bias": off["reward_bias"],
                  "value_bins": 0, "critic_residual_blocks": 0}  # offline critics: plain regression MLPs
        problems += [f"agent.{k}={getattr(c, k)!r}, the offline critic needs agent.{k}={v!r}"
                     for k, v in wanted.items() if (tuple(getattr(c, k)) if k == "hidden_dims"
                                                    else getattr(c, k)) != v]
    if actor:
        if state["algo"] == "iql":
            problems.append("an IQL run's policy is a Gaussian policy, not SAC's tanh actor: "
                            "set init.actor=false to take its critic only")
        else:
            wanted = {"actor_hidden_dims": tuple(off["actor_hidden_dims"]), "activation": off["activation"],
                      "actor_layer_norm": True, "log_std_min": -5.0, "log_std_max": 2.0}
            have = {**{k: getattr(c, k) for k in wanted},
                    "actor_hidden_dims": tuple(c.actor_hidden_dims or c.hidden_dims)}
            problems += [f"agent.{k}={have[k]!r}, the offline actor needs agent.{k}={v!r}"
                         for k, v in wanted.items() if have[k] != v]
    if state.get("task_vectors"):
        problems.append("the offline critic is task-conditioned (data.task_embedding); the online "
                        "env gives no task embedding")
    return problems


def warm_start(agent: SACAgent, source: str | Path, critic: bool = True, actor: bool = True) -> str:
    """Load an offline run's input normalization, critic (and target) and actor (and
    temperature) into `agent`; returns a one-line summary. Raises `WarmStartError` listing every
    mismatch before anything is loaded."""
    if not (critic or actor):
        raise WarmStartError("init.from is set but init.critic and init.actor are both false")
    path = offline_checkpoint(source)
    state = torch.load(path, map_location=agent.device, weights_only=True)
    if state.get("kind") != "offline":
        raise WarmStartError(f"init.from={source}: {path} is not an offline learner's checkpoint")
    problems = _checks(agent, state, critic, actor)
    if problems:
        raise WarmStartError(f"init.from={source} ({state['algo']}) does not fit this run:\n  - "
                             + "\n  - ".join(problems))
    modules = state["modules"]
    for enc in (agent.encoder, agent.target_encoder):
        if enc is not None:
            enc.load_state_dict(modules["encoder"])  # the normalization the weights were trained with
    taken = ["input normalization"]
    if critic:
        agent.critic.load_state_dict(modules["critic"])
        agent.target_critic.load_state_dict(modules["target_critic"])
        taken.append("critic")
    if actor:
        agent.actor.load_state_dict(modules["actor"])
        with torch.no_grad():
            agent.log_alpha.copy_(state["log_alpha"])
        taken.append("actor and temperature")
    return f"initialized {', '.join(taken)} from {path} ({state['algo']}, {state['steps']} offline steps)"


# ---------------------------------------------------------------------------- from a policy

def is_policy_source(source: str | Path | None) -> bool:
    """Whether `init.from` names a policy to distil (a BC run, a policy server) rather than an
    offline run's weights."""
    if source is None:
        return False
    s = str(source)
    if s.startswith(("http://", "https://")):
        return True
    p = Path(s)
    return (p.is_dir() and (p / "policy.pt").exists() and not (p / "critic.pt").exists()) or \
        (p.is_file() and p.name == "policy.pt")


def load_prior_policy(init: Any, obs_shapes: Mapping[str, tuple], action_dim: int):
    """(policy, rescale): the `Policy` named by `init.from` (see `InitConfig`), and the map of
    its actions into the learner's [-1, 1] box when `init.policy_low/policy_high` give its own
    box (None: its actions are in the env's own units, as a dataset's are)."""
    from robot_rl.policies.base import ActionRescale
    source = str(init.from_)
    if source.startswith(("http://", "https://")):
        from robot_rl.policies.http import HTTPPolicy
        policy = HTTPPolicy(source, instruction=init.instruction, timeout=init.timeout, action_dim=action_dim)
    else:
        from robot_rl.agents.bc import BCAgent
        from robot_rl.policies.bc import BCPolicy
        path = Path(source) / "policy.pt" if Path(source).is_dir() else Path(source)
        bc = BCAgent.load(path)
        wanted = {k: tuple(shape) for k, (shape, _) in bc.obs_spec.items()}
        if any(tuple(obs_shapes.get(k, ())) != shape for k, shape in wanted.items()):
            raise WarmStartError(f"init.from={source}: the BC policy reads observation keys {wanted}, "
                                 f"the env gives {dict(obs_shapes)}; train it on data with the env's "
                                 f"observations (robot-rl bc data.obs_keys=...)")
        if bc.action_dim != action_dim:
            raise WarmStartError(f"init.from={source}: the BC policy's actions have {bc.action_dim} "
                                 f"dims, the env's {action_dim}")
        policy = BCPolicy(bc, deterministic=True)  # its mean: what it means to do; SAC explores later
    rescale = None
    if init.policy_low is not None or init.policy_high is not None:
        if init.policy_low is None or init.policy_high is None or \
                not len(init.policy_low) == len(init.policy_high) == action_dim:
            raise WarmStartError(f"init.policy_low and init.policy_high must both be set, with "
                                 f"{action_dim} values each (the policy's own action box)")
        rescale = ActionRescale(init.policy_low, init.policy_high, clip=True)
    return policy, rescale


def distill_actor(agent: SACAgent, sample: Callable[[], Mapping[str, Any]], steps: int,
                  lr: float = 3e-4) -> Dict[str, float]:
    """Fit the actor (and the observation encoder it reads) to the actions in `sample()`'s
    batches by maximum likelihood under its tanh-Gaussian: the stored actions are the prior
    policy's, in the learner's [-1, 1] box. A grasp critic's gripper dim is left to Q-learning.
    Returns the negative log-likelihood before and after."""
    params = list(agent.actor.parameters()) + [p for p in agent.encoder.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    eps = 1e-3  # keeps atanh finite for saturated actions (a gripper at exactly +-1)
    nll = []
    for _ in range(steps):
        b = agent.prepare_batch(sample())
        feat = agent.encoder(b["obs"])
        a = b["action"][:, :agent.arm_dim].clamp(-1 + eps, 1 - eps)
        mean, log_std = agent.actor(feat)
        # -log N(atanh(a); mean, std) (the tanh Jacobian does not depend on the weights)
        loss = (0.5 * ((torch.atanh(a) - mean) / log_std.exp()).pow(2) + log_std).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        nll.append(loss.item())
    if agent.target_encoder is not None:
        agent.target_encoder.load_state_dict(agent.encoder.state_dict())
    return {"nll_start": nll[0] if nll else float("nan"), "nll_end": float(np.mean(nll[-20:])) if nll else float("nan")}
