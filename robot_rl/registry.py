"""Every gymnasium id robot-rl provides, in one table: the simulated tasks (MuJoCo; the MJX
backend runs the same ids), the real Franka, the SO-100/SO-101 (through LeRobot) and any ROS 2 arm. `import robot_rl` registers
them, so `gym.make("robot_rl/...")` just works.

Entry points are strings, resolved only when an env is made. The only modules imported here
are the sim task definitions (numpy, no physics engine), for their episode lengths."""
from __future__ import annotations

from dataclasses import dataclass, field

from robot_rl.sim.tasks import TASKS

SIM_ENTRY_POINT = "robot_rl.sim.envs:make_sim_env"


@dataclass(frozen=True)
class EnvEntry:
    entry_point: str
    kwargs: dict = field(default_factory=dict)
    max_episode_steps: int | None = None  # None: the env ends its own episodes (real tasks)
    physical: bool = False  # drives a real arm: one process at a time may own it


def _sim(task: str, vision: bool = False) -> EnvEntry:
    return EnvEntry(SIM_ENTRY_POINT, {"task": task, "vision": vision},
                    TASKS[task].max_episode_steps)


ENV_IDS: dict[str, EnvEntry] = {
    "robot_rl/PandaReach-v0": _sim("PandaReach"),
    "robot_rl/PandaPickCube-v0": _sim("PandaPickCube"),
    "robot_rl/PandaPickCubeVision-v0": _sim("PandaPickCube", vision=True),
    "robot_rl/PandaPegInsert-v0": _sim("PandaPegInsert"),
    "robot_rl/PandaPegInsertVision-v0": _sim("PandaPegInsert", vision=True),
    "robot_rl/PandaTightInsert-v0": _sim("PandaTightInsert"),
    "robot_rl/PandaTightInsertVision-v0": _sim("PandaTightInsert", vision=True),
    "robot_rl/PandaRelocate-v0": _sim("PandaRelocate"),
    "robot_rl/PandaRelocateVision-v0": _sim("PandaRelocate", vision=True),
    "robot_rl/SO101Reach-v0": _sim("SO101Reach"),
    "robot_rl/SO101PickCube-v0": _sim("SO101PickCube"),
    "robot_rl/SO101PickCubeVision-v0": _sim("SO101PickCube", vision=True),
    "robot_rl/FrankaPegInsert-v0": EnvEntry("robot_rl.hardware.franka_env:make_franka_env", physical=True),
    "robot_rl/ROS2Arm-v0": EnvEntry("robot_rl.hardware.ros2.hal:make_ros2_env", physical=True),
    "robot_rl/SO101-v0": EnvEntry("robot_rl.hardware.so101_env:make_so101_env", physical=True),
}


def is_physical(env_id: str) -> bool:
    """Whether `env_id` is one of our real-arm envs."""
    return env_id in ENV_IDS and ENV_IDS[env_id].physical


def register_envs() -> None:
    import gymnasium as gym
    for env_id, e in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=e.entry_point, kwargs=e.kwargs,
                         max_episode_steps=e.max_episode_steps)
