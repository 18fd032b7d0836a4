"""Standalone: measures gym-hil's PandaPickCubeBase-v0 steps/s. Runs in whatever Python has
gym-hil (it pins mujoco<3.9, so usually its own venv); imports nothing from robot_rl.
Prints one JSON line: {"state": steps/s, "vision": steps/s}."""
import json
import sys
import time

import gymnasium as gym
import gym_hil  # noqa: F401


def rate(image_obs: bool, steps: int) -> float:
    env = gym.make("gym_hil/PandaPickCubeBase-v0", image_obs=image_obs, random_block_position=True)
    env.reset(seed=0)
    for _ in range(5):
        env.step(env.action_space.sample())
    t = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    dt = time.perf_counter() - t
    env.close()
    return steps / dt


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    print(json.dumps({"state": rate(False, n), "vision": rate(True, max(20, n // 5))}))
