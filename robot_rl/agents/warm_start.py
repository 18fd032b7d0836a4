"""Start an online SAC agent from an offline run (`init.from`): offline-to-online fine-tuning.

A `robot-rl offline` run (Cal-QL, CQL or IQL, robot_rl/agents/offline.py) builds its critic
ensemble, actor and input normalization from the same modules as `SACAgent`, so its weights
load as they are. Everything the weights silently depend on is checked first, and a mismatch
is an error naming the field to change: the observation keys and shapes (and the frozen
normalization the critic saw them through, which the agent takes over), the action dims, the
network shapes, the discount and the reward scale the Q-values are expressed in.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

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
        hint = " (a BC run: BC policies cannot seed the SAC actor yet)" if (p / "policy.pt").exists() else ""
        raise WarmStartError(f"init.from={source}: no critic.pt in that directory{hint}; "
                             f"expected a `robot-rl offline` run")
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
                  "reward_scale": off["reward_scale"], "reward_bias": off["reward_bias"]}
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
