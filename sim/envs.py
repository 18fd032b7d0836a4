"""Build simulated `RobotEnv`s on the MuJoCo HAL: each task's scene as MJCF snippets, the world,
the views. `assemble_env` is the backend-independent part, shared with make_pybullet_env."""
from __future__ import annotations

from robot_rl.controllers.impedance import ImpedanceParams
from robot_rl.hardware.robot_env import RobotEnv
from robot_rl.sim.panda_model import WRIST_CAMERA, build_scene
from robot_rl.sim.tasks import TASKS, PandaPegInsert, PandaPickCube, PandaReach, SimTask
from robot_rl.sim.world import SimArm, SimCamera, SimClock, SimGripper, SimWorld

PHYSICS_DT = 0.002  # 500 Hz


# each task's scene: (objects in the world body, extras in the hand body), as MJCF text
def _reach_mjcf(t: PandaReach) -> tuple[str, str]:
    return ('<site name="goal" pos="0.45 0 0.2" size="0.015" rgba="0.1 0.8 0.1 0.6" '
            'type="sphere"/>', "")


def _pick_cube_mjcf(t: PandaPickCube) -> tuple[str, str]:
    h = t.half
    return (f'<body name="cube" pos="0.45 0 {h}"><freejoint name="cube"/>'
            f'<geom name="cube" class="object" type="box" size="{h} {h} {h}" mass="0.05" '
            f'rgba="0.85 0.15 0.1 1"/></body>', "")


def _peg_insert_mjcf(t: PandaPegInsert) -> tuple[str, str]:
    h, c, w, depth = t.peg_half, t.clearance, t.wall, t.hole_depth
    inner = h + c
    walls = "".join(
        f'<geom class="object" type="box" size="{sx} {sy} {depth / 2}" pos="{px} {py} {depth / 2}" '
        f'rgba="0.2 0.35 0.8 1"/>'
        for sx, sy, px, py in [(w / 2, inner + w, inner + w / 2, 0), (w / 2, inner + w, -inner - w / 2, 0),
                               (inner, w / 2, 0, inner + w / 2), (inner, w / 2, 0, -inner - w / 2)])
    # the peg is part of the hand: from 1 cm above the TCP to peg_len below it
    top, bottom = -0.01, t.peg_len
    return (f'<body name="hole" mocap="true" pos="0.46 0 0">{walls}</body>',
            f'<geom name="peg" class="object" type="box" size="{h} {h} {(bottom - top) / 2}" '
            f'pos="0 0 {0.1034 + (top + bottom) / 2}" mass="0.05" rgba="0.9 0.6 0.1 1"/>'
            f'<site name="peg_tip" pos="0 0 {0.1034 + bottom}" size="0.003"/>')


SCENES = {"PandaReach": _reach_mjcf, "PandaPickCube": _pick_cube_mjcf,
          "PandaPegInsert": _peg_insert_mjcf}


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


def make_sim_env(task: str = "PandaPickCube", vision: bool = False, image_size: int = 128,
                 cameras: tuple[str, ...] = ("front", "wrist"), control_hz: float = 10.0,
                 reward_type: str = "sparse", impedance: str | ImpedanceParams = "compliant",
                 controller: str = "auto", include_wrench: bool = False,
                 render_mode: str | None = None, privileged_state: bool = False) -> RobotEnv:
    """A `RobotEnv` on the MuJoCo HAL. `vision=True` adds `cameras` (uint8 image_size^2) and drops
    the privileged `env_state` from the observation; `privileged_state=True` keeps it (a state
    policy whose reward model looks at the images, e.g. a success classifier)."""
    if task not in TASKS:
        raise ValueError(f"unknown sim task {task!r}; valid: {sorted(TASKS)}")
    t = TASKS[task]()
    objects, hand = SCENES[task](t)
    world = SimWorld(xml=build_scene(objects, hand + WRIST_CAMERA, PHYSICS_DT),
                     impedance=impedance_params(impedance), controller=controller)
    return assemble_env(world, t, SimArm(world), SimCamera, cameras, vision, image_size,
                        privileged_state, control_hz=control_hz, reward_type=reward_type,
                        include_wrench=include_wrench, render_mode=render_mode)
