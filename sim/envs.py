"""Build simulated `RobotEnv`s and register their gymnasium ids."""
from __future__ import annotations

import gymnasium as gym

from robot_rl.controllers.impedance import ImpedanceParams
from robot_rl.hardware.robot_env import RobotEnv
from robot_rl.sim.panda_model import WRIST_CAMERA, build_scene
from robot_rl.sim.tasks import TASKS
from robot_rl.sim.world import SimArm, SimCamera, SimClock, SimGripper, SimWorld

PHYSICS_DT = 0.002  # 500 Hz


def make_sim_env(task: str = "PandaPickCube", vision: bool = False, image_size: int = 128,
                 cameras: tuple[str, ...] = ("front", "wrist"), control_hz: float = 10.0,
                 reward_type: str = "sparse", impedance: str | ImpedanceParams = "compliant",
                 controller: str = "auto", include_wrench: bool = False,
                 render_mode: str | None = None) -> RobotEnv:
    """A `RobotEnv` on the MuJoCo HAL. `vision=True` adds `cameras` (uint8 image_size^2) and drops
    the privileged `env_state` from the observation."""
    if task not in TASKS:
        raise ValueError(f"unknown sim task {task!r}; valid: {sorted(TASKS)}")
    t = TASKS[task]()
    world = SimWorld(xml=build_scene(t.objects_xml, t.hand_xml + WRIST_CAMERA, PHYSICS_DT),
                     impedance=ImpedanceParams.preset(impedance) if isinstance(impedance, str)
                     else impedance, controller=controller)
    t.bind(world)
    if vision:
        t.env_state = lambda: None  # images replace privileged object state
    cams = [SimCamera(world, c, image_size, image_size) for c in cameras] if vision else []
    env = RobotEnv(SimArm(world), SimGripper(world), cams, t, clock=SimClock(world),
                   control_hz=control_hz, reward_type=reward_type, include_wrench=include_wrench,
                   render_mode=render_mode)
    env.world = world
    return env
