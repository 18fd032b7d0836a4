"""Scripted demos for any env, written as a LeRobotDataset v3.0: our sim tasks' experts, or a
user's `module:callable` policy (`demos.policy`) on their own env."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from robot_rl.data.episodes import make_frame, open_writer
from robot_rl.envs import EnvSpecError, is_factory, is_ours, load_callable, make_gym_env


def _env_config(env, env_kwargs: dict | None):
    from robot_rl.run_config import EnvConfig
    return env if isinstance(env, EnvConfig) else EnvConfig(id=env, kwargs=dict(env_kwargs or {}))


def scripted_policy(env, policy: str | None, noise: float = 0.0, fail_prob: float = 0.0,
                    seed: int = 0):
    """(reset_fn, act_fn) for one of the demo sources. `act_fn(obs)` returns the action in the
    env's own units: our experts act on the learner's observation (their env's own), a user's
    policy on the raw observation of the env `LearnerEnv` wraps."""
    if policy is not None:
        return _user_policy(env, policy, noise, fail_prob, seed)
    if not is_ours(env.spec.id if env.spec else ""):
        raise EnvSpecError(f"no scripted expert for {env.spec.id if env.spec else env!r}: set "
                           f"demos.policy to a 'module:callable' policy, or demos.dataset")
    from robot_rl.sim.tasks import make_expert
    expert = make_expert(env, noise=noise, fail_prob=fail_prob, seed=seed)
    return expert.reset, expert.act


def _user_policy(env, policy: str, noise: float, fail_prob: float, seed: int):
    """A user's policy hook with the same mixed-quality knobs as our experts: Gaussian action
    noise (`noise`, in units of the action range's half-width) and, with probability
    `fail_prob` per episode, a botched episode of uniform random actions."""
    fn = load_callable(policy, "demos.policy")
    if is_factory(fn):
        fn = fn(env.env)
    lo, hi = env.scale.low, env.scale.high  # the env receives no more than its bounds
    rng = np.random.default_rng(seed)
    failing = [False]

    def reset():
        getattr(fn, "reset", lambda: None)()
        failing[0] = rng.random() < fail_prob

    def act(obs):
        if failing[0]:
            return rng.uniform(lo, hi)
        a = np.asarray(fn(env.raw_obs), np.float64)
        if noise > 0:
            a = a + rng.normal(0.0, noise, a.shape) * (hi - lo) / 2
        return np.clip(a, lo, hi)
    return reset, act


def collect_scripted_demos(env, episodes: int, out: str, seed: int = 0,
                           noise: float = 0.0, fail_prob: float = 0.0,
                           only_success: bool = False, max_attempts: int | None = None,
                           env_kwargs: dict | None = None, reward: dict | None = None,
                           policy: str | None = None, video_codec: str | None = None) -> str:
    """`env`: an env id or a config's `env` section. `policy`: a `module:callable` scripted
    policy (see `scripted_policy`); None: our sim task's expert. `reward`: a config's
    `env.reward` section; the demos are then recorded through that reward model, so their
    rewards and episode ends are the model's (kept episodes are still those the env scores as
    successful). Actions are stored in the env's own units."""
    cfg = _env_config(env, env_kwargs)
    env = make_gym_env(cfg)
    learner = env
    reset_policy, act = scripted_policy(learner, policy, noise, fail_prob, seed)
    if reward:
        from robot_rl.rewards.base import wrap_env_with_reward
        env = wrap_env_with_reward(env, reward)
    task = getattr(env.unwrapped, "task", None)
    instruction = cfg.instruction or getattr(task, "instruction", None) or cfg.id
    kept = attempts = 0
    limit = max_attempts or 10 * episodes
    with open_writer(out, env, fps=cfg.fps, robot_type=cfg.robot_type,
                     video_codec=video_codec) as writer, \
            tqdm(total=episodes, desc="demos", unit="ep") as bar:
        while kept < episodes and attempts < limit:
            obs, _ = env.reset(seed=seed + attempts)
            reset_policy()
            attempts += 1
            done = False
            while not done:
                action = act(obs)
                nxt, r, term, trunc, info = env.step(learner.scale.to_policy(action))
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
