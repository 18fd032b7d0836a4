"""robot-rl: sample-efficient robotic RL on one gymnasium env for sim and real arms."""
__version__ = "0.1.0"

from robot_rl.sim.registration import register_envs  # noqa: E402  (gymnasium only; cheap)

register_envs()

from robot_rl.hardware.franka_env import register_real_envs  # noqa: E402  (no heavy imports)

register_real_envs()
