"""Build simulated `RobotEnv`s on the MuJoCo HAL: the task's scene (its `mjcf`) in its arm's
model (the Panda or the SO-101), the world, the views. `assemble_env` is the backend-independent part, shared with
make_pybullet_env."""
from __future__ import annotations

from robot_rl.controllers.impedance import ImpedanceParams
from robot_rl.hardware import so101
from robot_rl.hardware.position_arm import CartesianPositionArm
from robot_rl.hardware.robot_env import RobotEnv
from robot_rl.sim import so101_model
from robot_rl.sim.panda_model import WRIST_CAMERA, build_scene
from robot_rl.sim.tasks import TASKS, SimTask
from robot_rl.sim.world import (ServoWorld, SimArm, SimCamera, SimClock, SimGripper, SimServos,
                                SimWorld)

PHYSICS_DT = 0.002  # 500 Hz


def impedance_params(impedance: str | ImpedanceParams) -> ImpedanceParams:
    return ImpedanceParams.preset(impedance) if isinstance(impedance, str) else impedance


def assemble_env(world, task: SimTask, arm: SimArm, camera_cls, cameras: tuple[str, ...],
                 vision: bool, image_size: int, privileged_state: bool = False,
                 **env_kwargs) -> RobotEnv:
    """Bind `task` to `world` (either backend) and wrap them in a `RobotEnv`; with `vision`, the
    `cameras` replace the privileged `env_state` in the observation unless `privileged_state`."""
    task.bind(world)
    if vision and not privileged_state:
        task.env_state = lambda: None  # images replace privileged object state
    cams = [camera_cls(world, c, image_size, image_size) for c in cameras] if vision else []
    env = RobotEnv(arm, SimGripper(world), cams, task, clock=SimClock(world), **env_kwargs)
    env.world = world
    return env


def _panda_world(task: SimTask, impedance, controller):
    objects, hand = task.mjcf()
    world = SimWorld(xml=build_scene(objects, hand + WRIST_CAMERA, PHYSICS_DT),
                     impedance=impedance_params(impedance), controller=controller)
    return world, SimArm(world)


def _so101_world(task: SimTask, impedance, controller):
    """The SO-101: position servos, and the Cartesian layer (`CartesianPositionArm`) as its
    HAL arm, ticked at the servo rate. The impedance preset and controller do not apply."""
    objects, hand = task.mjcf()
    world = ServoWorld(so101_model.build_scene(objects, hand + so101_model.WRIST_CAMERA,
                                               PHYSICS_DT),
                       so101.SO101_CHAIN, so101_model.ARM_NAMES, so101.FINGER_MAX, so101.HOME_Q)
    arm = CartesianPositionArm(SimServos(world), so101.SO101_CHAIN, servo_hz=world.servo_hz)
    world.on_servo_tick.append(arm.tick)
    return world, arm


ARMS = {"panda": _panda_world, "so101": _so101_world}


def make_sim_env(task: str = "PandaPickCube", vision: bool = False, image_size: int = 128,
                 cameras: tuple[str, ...] = ("front", "wrist"), control_hz: float = 10.0,
                 reward_type: str = "sparse", impedance: str | ImpedanceParams = "compliant",
                 controller: str = "auto", include_wrench: bool = False,
                 render_mode: str | None = None, privileged_state: bool = False,
                 **task_kwargs) -> RobotEnv:
    """A `RobotEnv` on the MuJoCo HAL, with the arm the task is built for (`task.arm`: the
    Panda under impedance control, or the SO-101 on position servos). `vision=True` adds
    `cameras` (uint8 image_size^2) and drops the privileged `env_state` from the observation;
    `privileged_state=True` keeps it (a state policy whose reward model looks at the images,
    e.g. a success classifier). Other keyword arguments go to the task (e.g. PandaRelocate's
    `direction`)."""
    if task not in TASKS:
        raise ValueError(f"unknown sim task {task!r}; valid: {sorted(TASKS)}")
    t = TASKS[task](**task_kwargs)
    world, arm = ARMS[t.arm](t, impedance, controller)
    return assemble_env(world, t, arm, SimCamera, cameras, vision, image_size,
                        privileged_state, control_hz=control_hz, reward_type=reward_type,
                        include_wrench=include_wrench, render_mode=render_mode)
