"""robot-rl: sample-efficient robotic RL on one gymnasium env for sim and real arms."""
__version__ = "0.1.0"

from robot_rl.registry import register_envs  # noqa: E402  (gymnasium and the task tables only)

register_envs()
