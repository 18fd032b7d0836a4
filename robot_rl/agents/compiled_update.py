"""One whole SAC update as one ``torch.compile`` graph (``agent.compile=true``).

The eager update dispatches about ten pieces per critic step: the loss graph, the autograd
backward, clipping, Adam, Polyak, and on every ``actor_update_every``-th step a second loss
graph, its backward and two more Adam steps. On these 2-core CPUs each piece costs 50-300 us
of Python and dispatch on top of its arithmetic; for the 2-critic default that overhead was
as large as the matmuls themselves. Here the gradients come from ``torch.func.grad`` inside
the graph and clipping, Adam and Polyak are written out, so one call performs a whole update
(critic step, then optionally the actor and temperature step) and inductor fuses the
elementwise tail.

The graph updates, in place, the very tensors the eager path uses: the module parameters and
the ``step`` / ``exp_avg`` / ``exp_avg_sq`` state of the agent's ``torch.optim.Adam``
optimizers. Checkpoints, resume and switching between the two paths need nothing extra, and
both paths take their random draws from the agent's generator in the same order.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.func import functional_call, grad

from robot_rl.agents.sac import temperature_loss


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


class _AdamGroup:
    """Adam over one optimizer's parameters, with the optimizer's own state tensors."""

    def __init__(self, opt: torch.optim.Optimizer, params: Sequence[nn.Parameter], clip: Optional[float]):
        (group,) = opt.param_groups
        if group["weight_decay"] or group["amsgrad"] or group["maximize"]:
            raise ValueError("the compiled update implements plain Adam only")
        if {id(p) for p in group["params"]} != {id(p) for p in params}:
            raise ValueError("optimizer parameters differ from the differentiated ones")
        self.opt, self.params, self.clip = opt, list(params), clip

    def state(self) -> Tuple[List[torch.Tensor], List[torch.Tensor], List[torch.Tensor]]:
        """``(steps, exp_avgs, exp_avg_sqs)``, created as ``torch.optim.Adam`` would on its
        first step. Read on every call: ``load_state_dict`` replaces the tensors."""
        group = self.opt.param_groups[0]
        on_device = group["fused"] or group["capturable"]
        for p in self.params:
            st = self.opt.state[p]
            if not st:
                st["step"] = torch.zeros((), dtype=torch.float32, device=p.device if on_device else "cpu")
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        states = [self.opt.state[p] for p in self.params]
        return [s["step"] for s in states], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]

    def hyper(self) -> Tuple[float, float, float, float]:
        g = self.opt.param_groups[0]
        return float(g["lr"]), float(g["betas"][0]), float(g["betas"][1]), float(g["eps"])


def _clip_(grads: Sequence[torch.Tensor], max_norm: Optional[float]) -> None:
    """``nn.utils.clip_grad_norm_`` on gradient tensors."""
    if max_norm is None:
        return
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef)


def _adam_(params, grads, steps, exp_avgs, exp_avg_sqs, lr, beta1, beta2, eps) -> None:
    """``torch.optim.Adam``'s update (no weight decay, no amsgrad), in place."""
    for p, g, step, m, v in zip(params, grads, steps, exp_avgs, exp_avg_sqs):
        step.add_(1)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        bias1 = 1 - beta1 ** step
        bias2 = 1 - beta2 ** step
        p.sub_(lr / bias1 * m / (v.sqrt() / bias2.sqrt() + eps))


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
        self.critic_adam = _AdamGroup(agent.critic_opt, critic_params, cfg.grad_clip_norm)
        self.actor_adam = _AdamGroup(agent.actor_opt, actor_params, cfg.grad_clip_norm)
        self.temp_adam = _AdamGroup(agent.temp_opt, [agent.log_alpha], None)
        # two functions, hence two code objects, each with its own single-entry dynamo cache
        kw = {"mode": mode} if mode else {}
        self._critic_step = torch.compile(self._critic_update, **kw)
        self._critic_actor_step = torch.compile(self._critic_actor_update, **kw)

    def __call__(self, batch: Dict[str, Any], next_noise: torch.Tensor, idx: torch.Tensor, alpha: torch.Tensor,
                 actor_noise: Optional[torch.Tensor] = None):
        critic = (batch, next_noise, idx, alpha, self.critic_adam.params, self.critic_adam.state(),
                  self.critic_adam.hyper())
        if actor_noise is None:
            return self._critic_step(*critic)[0], None, None
        actor = (actor_noise, self.actor_adam.params, self.actor_adam.state(), self.actor_adam.hyper(),
                 self.temp_adam.state(), self.temp_adam.hyper())
        return self._critic_actor_step(critic, actor)

    def _critic_update(self, b, next_noise, idx, alpha, params, state, hyper):
        """Returns the loss stats and the encoder features (detached) the actor step uses."""
        agent = self.agent
        args = (b["obs"], b["next_obs"], b["action"], b["reward"], b["terminated"], b["grasp_penalty"],
                next_noise, idx, alpha)

        def objective(ps):
            loss, feat, stats = functional_call(self.critic_call, dict(zip(self.critic_names, ps)), args)
            return loss, (feat.detach(), stats)

        grads, (feat, stats) = grad(objective, has_aux=True)(params)
        with torch.no_grad():
            _clip_(grads, self.critic_adam.clip)
            _adam_(params, grads, *state, *hyper)
            torch._foreach_lerp_(agent._polyak_target, agent._polyak_online, agent.config.tau)
        return stats, feat

    def _critic_actor_update(self, critic, actor):
        """The critic update, then the actor and temperature step on its (detached) features."""
        agent = self.agent
        cstats, feat = self._critic_update(*critic)
        alpha = critic[3]  # (batch, next_noise, idx, alpha, ...)
        noise, params, state, hyper, temp_state, temp_hyper = actor

        def objective(ps, log_alpha):
            # the actor loss sees alpha as a constant and the temperature loss a detached
            # log-prob, so the sum's gradient splits into the two separate SAC gradients
            a_loss, logp, astats = functional_call(self.actor_call, dict(zip(self.actor_names, ps)),
                                                   (feat, noise, alpha))
            t_loss = temperature_loss(log_alpha, logp, agent.target_entropy)
            return a_loss + t_loss, (astats, t_loss.detach())

        (grads, t_grad), (astats, t_loss) = grad(objective, argnums=(0, 1), has_aux=True)(params, agent.log_alpha)
        with torch.no_grad():
            _clip_(grads, self.actor_adam.clip)
            _adam_(params, grads, *state, *hyper)
            _adam_([agent.log_alpha], [t_grad], *temp_state, *temp_hyper)
        return cstats, astats, t_loss
