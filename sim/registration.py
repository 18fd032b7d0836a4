"""Gymnasium ids for the simulated tasks. Imports only gymnasium: cheap enough to run on
`import robot_rl` and from gymnasium's plugin hook, so `gym.make("robot_rl/...")` just works."""
import gymnasium as gym

# id -> (task, vision, max_episode_steps)
ENV_IDS = {"robot_rl/PandaReach-v0": ("PandaReach", False, 30),
           "robot_rl/PandaPickCube-v0": ("PandaPickCube", False, 50),
           "robot_rl/PandaPickCubeVision-v0": ("PandaPickCube", True, 50),
           "robot_rl/PandaPegInsert-v0": ("PandaPegInsert", False, 60),
           "robot_rl/PandaPegInsertVision-v0": ("PandaPegInsert", True, 60)}


def register_envs() -> None:
    for env_id, (task, vision, steps) in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point="robot_rl.sim.envs:make_sim_env",
                         kwargs={"task": task, "vision": vision}, max_episode_steps=steps)
