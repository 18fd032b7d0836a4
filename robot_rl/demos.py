"""Scripted-expert demos in sim, written as a LeRobotDataset v3.0."""
from __future__ import annotations

import gymnasium as gym
from tqdm import tqdm

import robot_rl  # noqa: F401  (registers the env ids)
from robot_rl.data.episodes import make_frame, open_writer
from robot_rl.sim.experts import make_expert


def collect_scripted_demos(env_id: str, episodes: int, out: str, seed: int = 0,
                           noise: float = 0.0, fail_prob: float = 0.0,
                           only_success: bool = False, max_attempts: int | None = None,
                           env_kwargs: dict | None = None, reward: dict | None = None) -> str:
    """`reward`: a config's `env.reward` section; the demos are then recorded through that
    reward model, so their rewards and episode ends are the model's (kept episodes are still
    those the simulator scores as successful)."""
    env = gym.make(env_id, **(env_kwargs or {}))
    if reward:
        from robot_rl.rewards.base import wrap_env_with_reward
        env = wrap_env_with_reward(env, reward)
    expert = make_expert(env, noise=noise, fail_prob=fail_prob, seed=seed)
    instruction = env.unwrapped.task.instruction
    kept = attempts = 0
    limit = max_attempts or 10 * episodes
    with open_writer(out, env) as writer, tqdm(total=episodes, desc="demos", unit="ep") as bar:
        while kept < episodes and attempts < limit:
            obs, _ = env.reset(seed=seed + attempts)
            expert.reset()
            attempts += 1
            done = False
            while not done:
                action = expert.act(obs)
                nxt, r, term, trunc, info = env.step(action)
                writer.add_frame(make_frame(obs, action, r, term, trunc, info["is_success"]),
                                 task=instruction)
                obs, done = nxt, term or trunc
            if only_success and not info["is_success"]:
                writer.discard_episode()
                continue
            writer.save_episode()
            kept += 1
            bar.update(1)
            bar.set_postfix(attempts=attempts)
    env.close()
    if kept < episodes:
        raise RuntimeError(f"only {kept}/{episodes} episodes kept after {attempts} attempts")
    return f"wrote {kept} episodes ({attempts} attempts) to {out}"
