"""Run by test_external_experts.py in .venv-gymhil: episodes of an external env under its
scripted expert from robot_rl.sim.external_experts, summarised as one JSON line on stdout.

    python tests/sim/external_expert_runs.py gym_hil|gym_hil_fixed|fetch_reach EPISODES
"""
import json
import os
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

from robot_rl.sim.external_experts import fetch_reach_expert, gym_hil_pick_cube_expert  # noqa: E402


def make(which: str):
    if which.startswith("gym_hil"):
        import gym_hil  # noqa: F401  (registers gym_hil/*)
        env = gym.make("gym_hil/PandaPickCubeBase-v0",
                       random_block_position=which == "gym_hil")
        return env, gym_hil_pick_cube_expert(env)
    import gymnasium_robotics
    gym.register_envs(gymnasium_robotics)
    env = gym.make("FetchReach-v4")
    return env, fetch_reach_expert(env)


def main(which: str, episodes: int) -> dict:
    env, policy = make(which)
    t0 = time.perf_counter()
    successes, lengths, first_success, blocks, in_space = [], [], [], [], True
    for seed in range(episodes):
        np.random.seed(seed)  # gym-hil draws its block position from the GLOBAL np.random
        obs, _ = env.reset(seed=seed)
        if "environment_state" in obs:
            blocks.append(np.asarray(obs["environment_state"], float)[:2].tolist())
        first, steps, done = None, 0, False
        while not done:
            a = policy(obs)
            in_space &= bool(env.action_space.contains(a))
            obs, r, term, trunc, info = env.step(a)
            steps += 1
            ok = bool(info["is_success"]) if "is_success" in info else r == 1.0
            if ok and first is None:
                first = steps
            done = term or trunc
        # gym-hil: success is its sparse reward (1 = block lifted > 0.1 m), which ends the
        # episode; FetchReach never terminates: success is `is_success` at the last step
        successes.append(ok)
        lengths.append(steps)
        first_success.append(first)
    env.close()
    return {"success_rate": float(np.mean(successes)), "failed_seeds":
            [s for s, ok in enumerate(successes) if not ok], "lengths": lengths,
            "first_success": first_success, "blocks": blocks, "actions_in_space": in_space,
            "max_episode_steps": env.spec.max_episode_steps,
            "seconds": time.perf_counter() - t0}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
