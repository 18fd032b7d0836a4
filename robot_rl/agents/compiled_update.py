"""One whole SAC update as one ``torch.compile`` graph (``agent.compile=true``).

The eager update dispatches about ten pieces per critic step: the loss graph, the autograd
backward, clipping, Adam, Polyak, and on every ``actor_update_every``-th step a second loss
graph, its backward and two more Adam steps. Each piece costs Python and dispatch time on top
of its arithmetic, and on small CPU networks that overhead rivals the matmuls
(docs/results.md). Here the gradients come from ``torch.func.grad`` inside the graph, so one
call performs a whole update (critic step, then optionally the actor and temperature step)
and inductor fuses the elementwise tail.

Losses, gradient clipping and the Adam step are the eager path's own functions
(``SACAgent._critic_loss``/``_actor_loss``, ``clip_grad_norm_``, ``adam_step_`` in sac.py),
so a change to either is made once. The graph updates, in place, the very tensors the eager
path uses: the module parameters and the ``step`` / ``exp_avg`` / ``exp_avg_sq`` state of
the agent's ``torch.optim.Adam`` optimizers. Checkpoints, resume and switching between the
two paths need nothing extra, and both paths take their random draws from the agent's
generator in the same order.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.func import functional_call, grad

from robot_rl.agents.sac import adam_settings, adam_state, adam_step_, clip_grad_norm_, temperature_loss


class _Substitutable(nn.Module):
    """Registers ``modules`` as children so that ``functional_call`` can swap their
    parameters in while ``fn`` (which reaches the same module objects) runs."""

    def __init__(self, fn: Callable, **modules: Optional[nn.Module]):
        super().__init__()
        self.fn = fn
        for name, m in modules.items():
            if m is not None:
                self.add_module(name, m)

    def forward(self, *args):
        return self.fn(*args)

    def trainable(self) -> Tuple[List[str], List[nn.Parameter]]:
        named = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        return [n for n, _ in named], [p for _, p in named]


class _Optimized:
    """The parameters one of the agent's optimizers steps, in the order they are differentiated."""

    def __init__(self, opt: torch.optim.Optimizer, params: Sequence[nn.Parameter], clip: Optional[float]):
        if {id(p) for p in opt.param_groups[0]["params"]} != {id(p) for p in params}:
            raise ValueError("optimizer parameters differ from the differentiated ones")
        self.opt, self.params, self.clip = opt, list(params), clip

    def args(self):
        """(params, Adam state, Adam settings) for one graph call, read fresh each time."""
        return self.params, adam_state(self.opt, self.params), adam_settings(self.opt)


class CompiledUpdate:
    """``CompiledUpdate(agent)(batch, next_noise, idx, alpha, actor_noise=None)`` ->
    ``(critic_stats, actor_stats, temperature_loss)``: one critic update, and the actor and
    temperature step too when ``actor_noise`` is given (otherwise the last two are ``None``)."""

    def __init__(self, agent: Any, mode: Optional[str] = None):
        cfg = agent.config
        self.agent = agent
        self.critic_call = _Substitutable(agent._critic_loss, encoder=agent.encoder, critic=agent.critic,
                                          grasp=agent.grasp)
        self.critic_names, critic_params = self.critic_call.trainable()
        self.actor_call = _Substitutable(agent._actor_loss, actor=agent.actor)
        self.actor_names, actor_params = self.actor_call.trainable()
        self.critic_opt = _Optimized(agent.critic_opt, critic_params, cfg.grad_clip_norm)
        self.actor_opt = _Optimized(agent.actor_opt, actor_params, cfg.grad_clip_norm)
        self.temp_opt = _Optimized(agent.temp_opt, [agent.log_alpha], None)
        # two functions, hence two code objects, each with its own single-entry dynamo cache
        kw = {"mode": mode} if mode else {}
        self._critic_step = torch.compile(self._critic_update, **kw)
        self._critic_actor_step = torch.compile(self._critic_actor_update, **kw)

    def __call__(self, batch: Dict[str, Any], next_noise: torch.Tensor, idx: torch.Tensor, alpha: torch.Tensor,
                 actor_noise: Optional[torch.Tensor] = None):
        critic = (batch, next_noise, idx, alpha, *self.critic_opt.args())
        if actor_noise is None:
            return self._critic_step(*critic)[0], None, None
        _, temp_state, temp_settings = self.temp_opt.args()
        actor = (actor_noise, *self.actor_opt.args(), temp_state, temp_settings)
        return self._critic_actor_step(critic, actor)

    def _critic_update(self, b, next_noise, idx, alpha, params, state, settings):
        """Returns the loss stats and the encoder features (detached) the actor step uses."""
        agent = self.agent
        args = (b["obs"], b["next_obs"], b["action"], b["reward"], b["terminated"], b["discount"],
                b["grasp_penalty"], next_noise, idx, alpha, b.get("conservative"), agent._target_floor(b))

        def objective(ps):
            loss, feat, stats = functional_call(self.critic_call, dict(zip(self.critic_names, ps)), args)
            return loss, (feat.detach(), stats)

        grads, (feat, stats) = grad(objective, has_aux=True)(params)
        with torch.no_grad():
            clip_grad_norm_(grads, self.critic_opt.clip)
            adam_step_(params, grads, state, settings, in_graph=True)
            torch._foreach_lerp_(agent._polyak_target, agent._polyak_online, agent.config.tau)
        return stats, feat

    def _critic_actor_update(self, critic, actor):
        """The critic update, then the actor and temperature step on its (detached) features."""
        agent = self.agent
        cstats, feat = self._critic_update(*critic)
        batch, alpha = critic[0], critic[3]  # (batch, next_noise, idx, alpha, ...)
        noise, params, state, settings, temp_state, temp_settings = actor

        def objective(ps, log_alpha):
            # the actor loss sees alpha as a constant and the temperature loss a detached
            # log-prob, so the sum's gradient splits into the two separate SAC gradients
            a_loss, logp, astats = functional_call(self.actor_call, dict(zip(self.actor_names, ps)),
                                                   (feat, noise, alpha, batch["action"]))
            t_loss = temperature_loss(log_alpha, logp, agent.target_entropy)
            return a_loss + t_loss, (astats, t_loss.detach())

        (grads, t_grad), (astats, t_loss) = grad(objective, argnums=(0, 1), has_aux=True)(params, agent.log_alpha)
        with torch.no_grad():
            clip_grad_norm_(grads, self.actor_opt.clip)
            adam_step_(params, grads, state, settings, in_graph=True)
            adam_step_([agent.log_alpha], [t_grad], temp_state, temp_settings, in_graph=True)
        return cstats, astats, t_loss
