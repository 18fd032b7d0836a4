"""A LeRobot policy (ACT, Diffusion Policy, SmolVLA, pi0, ...) as a Policy.

``lerobot`` is an optional dependency imported only when this adapter is built; without it
the constructor raises an ``ImportError`` that says how to install it. Written against the
LeRobot 0.4 API (``PreTrainedConfig.from_pretrained``, ``lerobot.policies.factory``'s
``get_policy_class`` and ``make_pre_post_processors``); it is not exercised here because
``lerobot`` is not installed on the machines this was built on.

Observations map onto LeRobot's names (the same as our datasets): ``state`` ->
``observation.state``, ``env_state`` -> ``observation.environment_state``, camera ``front``
-> ``observation.images.front`` as float ``[1, 3, H, W]`` in ``[0, 1]``; the instruction
goes in ``task``. ``act`` calls ``select_action`` (LeRobot's own action queue executes chunks
step by step); ``sample(obs, n)`` batches the observation n times and returns
``predict_action_chunk`` -> ``[n, H, A]`` when the policy has it (stochastic policies such as
Diffusion Policy give n different chunks), else ``select_action`` -> ``[n, A]``.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Optional

import numpy as np

__all__ = ["LeRobotPolicy", "require_lerobot", "to_lerobot_batch"]

INSTALL_HINT = ("the LeRobot adapter needs the `lerobot` package, which is not installed: "
                "`pip install lerobot` (see https://github.com/huggingface/lerobot)")


def require_lerobot():
    try:
        import lerobot
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return lerobot


def to_lerobot_batch(obs: Mapping[str, Any], n: int = 1, instruction: Optional[str] = None,
                     device: Any = "cpu") -> dict:
    """Our observation dict -> a LeRobot batch of ``n`` copies (torch tensors)."""
    import torch

    from robot_rl.data.episodes import obs_feature_name  # leaf module: dataset naming
    batch: dict = {}
    for k, v in obs.items():
        a = np.asarray(v)
        t = torch.as_tensor(a)
        if a.ndim == 3 and a.dtype == np.uint8:  # image HWC uint8 -> CHW float in [0, 1]
            t = t.permute(2, 0, 1).float() / 255.0
        else:
            t = t.float()
        batch[obs_feature_name(k, a)] = t.unsqueeze(0).expand(n, *t.shape).contiguous().to(device)
    if instruction is not None:
        batch["task"] = [instruction] * n
    return batch


class LeRobotPolicy:
    """Args:
        policy: a LeRobot policy object, or a path / hub id of a pretrained one.
        instruction: task string for language-conditioned policies.
        preprocess / postprocess: LeRobot processor pipelines (loaded with the policy when
            ``policy`` is a path); identity when None.
        device: torch device of the policy.
    """

    def __init__(self, policy: Any, instruction: Optional[str] = None,
                 preprocess: Optional[Callable] = None, postprocess: Optional[Callable] = None,
                 device: Any = "cpu"):
        require_lerobot()
        if isinstance(policy, (str, os.PathLike)):
            policy, preprocess, postprocess = self._load(str(policy), device)
        if not callable(getattr(policy, "select_action", None)):
            raise TypeError(f"{type(policy).__name__} is not a LeRobot policy (no select_action)")
        self.policy, self.instruction, self.device = policy, instruction, device
        self.preprocess = preprocess or (lambda b: b)
        self.postprocess = postprocess or (lambda a: a)
        if hasattr(policy, "eval"):
            policy.eval()

    @staticmethod
    def _load(path: str, device: Any):
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors
        cfg = PreTrainedConfig.from_pretrained(path)
        cfg.device = str(device)
        policy = get_policy_class(cfg.type).from_pretrained(path, config=cfg)
        pre, post = make_pre_post_processors(cfg, pretrained_path=path)
        return policy, pre, post

    def reset(self) -> None:
        """Clear LeRobot's action queue (call at the start of every episode)."""
        if hasattr(self.policy, "reset"):
            self.policy.reset()

    def _run(self, fn: Callable, obs: Mapping[str, Any], n: int) -> np.ndarray:
        import torch
        with torch.no_grad():
            batch = self.preprocess(to_lerobot_batch(obs, n, self.instruction, self.device))
            out = self.postprocess(fn(batch))
        return np.asarray(out.detach().cpu().numpy() if hasattr(out, "detach") else out, np.float32)

    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        return self._run(self.policy.select_action, obs, 1)[0]

    def sample(self, obs: Mapping[str, Any], n: int) -> np.ndarray:
        if n < 1:
            raise ValueError(f"sample: n must be >= 1, got {n}")
        chunk = getattr(self.policy, "predict_action_chunk", None)
        if callable(chunk):
            return self._run(chunk, obs, n)
        self.reset()  # select_action would otherwise pop queued actions of an earlier call
        return self._run(self.policy.select_action, obs, n)
