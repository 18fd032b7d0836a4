"""PyBullet implementation of the HAL, and PandaReach / PandaPickCube on it.

The same `RobotEnv`, the same numpy `CartesianImpedance` law, the same task definitions
(action configs, safety boxes, episode lengths, success tests, `env_state`) and the same
scripted experts as the MuJoCo backend (sim/world.py, sim/tasks.py) -- only the physics engine
and the robot model differ: here it is the Franka Panda URDF bundled with `pybullet_data`.

Structure mirrors sim/world.py: one `BulletWorld` (physics client, robot, controller) and the
`BulletArm`, `BulletGripper`, `BulletCamera`, `BulletClock` views onto it.

Model notes
- Physics at 500 Hz (`setTimeStep(0.002)`), policy at 10 Hz: one `BulletClock.wait(0.1)` is
  50 substeps, and the impedance law is evaluated at every substep (the numpy law plus
  PyBullet's Jacobian / mass matrix / inverse dynamics, ~0.15 ms per substep). Measured on the
  2-core dev machine: ~90-150 env steps/s with state observations, ~12-16 env steps/s with both
  64x64 cameras (the TinyRenderer drawing the Panda's visual meshes costs ~20-30 ms per image).
  That is well above 10 steps/s, so the law runs at every substep by default (`law_every=1`);
  `law_every=2` (law every 2nd substep, torque held in between, ~190 steps/s) is an option for
  slower machines.
- The arm is torque-controlled: the default velocity motors are disabled (VELOCITY_CONTROL,
  force 0) and the law's torques are applied with TORQUE_CONTROL every substep.
- The URDF's link inertias (0.1 kg m^2 on every axis of every link) are used as written
  (URDF_USE_INERTIA_FROM_FILE). They are placeholders, not Franka's values, but they play the
  role of the reflected rotor inertia that the MuJoCo model adds as `armature=0.1`: without it
  the wrist's tiny mesh-derived inertias make the law's damping (D = 2 sqrt(K) on the rotation
  axes) unstable under PyBullet's explicit torque integration at 2 ms.
- TCP: link 11 `panda_grasptarget` (hand + 0.105 m, between the fingertips), the counterpart of
  the MuJoCo model's `tcp` site (hand + 0.1034 m).
- Requires `pybullet` (extra `robot-rl[pybullet]`); imported here only, never by `robot_rl.sim`.
"""
from __future__ import annotations

import numpy as np
import pybullet as pb
import pybullet_data

from robot_rl.controllers.frames import orientation_error, quat_to_mat
from robot_rl.controllers.impedance import CartesianImpedance, ImpedanceParams
from robot_rl.controllers.safety import SafetyBox
from robot_rl.hardware.hal import ArmState, Frame, GripperState
from robot_rl.hardware.robot_env import RobotEnv
from robot_rl.hardware.task import ActionConfig, Evaluation, TaskBase
from robot_rl.sim.panda_model import FRONT_CAMERA_POS, FRONT_CAMERA_TARGET, HOME_Q, TORQUE_LIMITS

NA = 7
PHYSICS_DT = 0.002                    # 500 Hz
ARM_JOINTS = list(range(NA))          # panda_joint1..7
FINGER_JOINTS = [9, 10]               # panda_finger_joint1/2
MOVABLE = ARM_JOINTS + FINGER_JOINTS  # the 9 dofs pybullet's dynamics calls expect, in order
HAND_LINK = 8
TCP_LINK = 11                         # panda_grasptarget
TCP_OFFSET = 0.105                    # hand -> TCP along the hand's z, if the URDF lacks link 11
FINGER_MAX = 0.04                     # per finger; gripper opening = 2x
FINGER_FORCE = 40.0                   # N per finger motor
FINGER_SPEED = 0.2                    # m/s per finger (the URDF's velocity limit)
FINGER_FRICTION = 1.5                 # lateral friction of the finger pads (URDF: 1.0)
TABLE_Z = 0.0
WRIST_CAMERA_POS = np.array([0.07, 0.0, 0.065])  # in the hand frame, as sim/panda_model.py's
WRIST_CAMERA_FWD = np.array([-0.3, 0.0, 0.954])  # viewing direction (hand frame)
WRIST_CAMERA_UP = np.array([0.954, 0.0, 0.3])
DOWN = np.array([1.0, 0.0, 0.0, 0.0])  # xyzw: gripper pointing at the table, fingers along y


class BulletWorld:
    """A PyBullet physics client (DIRECT, headless) with the Panda, a table, and the impedance
    controller attached to the arm. `add_box` / `add_marker` put task objects in the scene.

    `reset()` re-creates every box (table, task objects) from its spec and puts the arm back,
    instead of `saveState`/`restoreState`: restoring a state does not clear the contact
    manifolds (and their warm-start impulses / friction anchors) left by the previous episode,
    so the next episode would depend on the last one. A removed body takes its manifolds with
    it, and the arm touches nothing else (fixed base, no self-collision), so after `reset()`
    the simulation is a function of the seed alone. Sleeping is disabled for the same reason.
    """

    def __init__(self, impedance: ImpedanceParams | None = None, law_every: int = 1):
        if law_every < 1:
            raise ValueError(f"law_every must be >= 1, got {law_every}")
        self.client = pb.connect(pb.DIRECT)
        self._connected = True
        c = self.client
        pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
        pb.setGravity(0, 0, -9.81, physicsClientId=c)
        pb.setTimeStep(PHYSICS_DT, physicsClientId=c)
        pb.setPhysicsEngineParameter(deterministicOverlappingPairs=1, physicsClientId=c)
        # floor below the table; the table top is the z = 0 plane, as in the MuJoCo scene
        self.bodies: dict[str, int] = {}
        self._specs: dict[str, dict] = {}
        self.floor = pb.loadURDF("plane.urdf", [0, 0, -0.04], physicsClientId=c)
        self.add_box("table", [0.55, 0.6, 0.02], [0.45, 0.0, -0.02], mass=0.0,
                     rgba=(0.55, 0.45, 0.35, 1.0), friction=1.0)
        self.robot = pb.loadURDF("franka_panda/panda.urdf", [0, 0, 0], useFixedBase=True,
                                 flags=pb.URDF_USE_INERTIA_FROM_FILE, physicsClientId=c)
        r = self.robot
        names = [pb.getJointInfo(r, j, physicsClientId=c)[12].decode()
                 for j in range(pb.getNumJoints(r, physicsClientId=c))]
        has_tcp = len(names) > TCP_LINK and names[TCP_LINK] == "panda_grasptarget"
        self.tcp_link = TCP_LINK if has_tcp else HAND_LINK
        self.tcp_local = np.zeros(3) if self.tcp_link == TCP_LINK else np.array([0, 0, TCP_OFFSET])
        info = [pb.getJointInfo(r, j, physicsClientId=c) for j in ARM_JOINTS]
        self.q_low = np.array([i[8] for i in info])
        self.q_high = np.array([i[9] for i in info])
        for link in range(-1, pb.getNumJoints(r, physicsClientId=c)):
            pb.changeDynamics(r, link, linearDamping=0.0, angularDamping=0.0,
                              activationState=pb.ACTIVATION_STATE_DISABLE_SLEEPING,
                              physicsClientId=c)
        for link in FINGER_JOINTS:
            pb.changeDynamics(r, link, lateralFriction=FINGER_FRICTION, spinningFriction=0.002,
                              frictionAnchor=True, physicsClientId=c)
        # torque control: switch off the default velocity motors once
        pb.setJointMotorControlArray(r, ARM_JOINTS, pb.VELOCITY_CONTROL, forces=[0.0] * NA,
                                     physicsClientId=c)
        self.impedance = CartesianImpedance(impedance or ImpedanceParams.compliant(),
                                            torque_limits=np.array(TORQUE_LIMITS, float))
        self.law_every = law_every
        self.target_pos = np.zeros(3)
        self.target_quat = np.array([0, 0, 0, 1.0])
        self.q_null = np.array(HOME_Q, float)
        self.finger_target = FINGER_MAX
        self.steps = 0
        self._tau = np.zeros(NA)
        self._reset_robot()

    # ---- scene -----------------------------------------------------------------------
    def add_box(self, name: str, half_extents, pos, mass: float, rgba, friction: float = 1.0,
                spinning_friction: float = 0.0) -> int:
        """A box body, re-created from this spec by every `reset()`; its current id is
        `bodies[name]` (ids change on reset: look them up, do not keep them)."""
        c = self.client
        # shapes are made once and shared by every re-spawn (they are not freed with the body)
        col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=list(half_extents),
                                      physicsClientId=c)
        vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=list(half_extents),
                                   rgbaColor=list(rgba), physicsClientId=c)
        self._specs[name] = dict(col=col, vis=vis, pos=list(pos), mass=mass, friction=friction,
                                 spinning_friction=spinning_friction)
        return self._spawn(name)

    def _spawn(self, name: str) -> int:
        c, sp = self.client, self._specs[name]
        if name in self.bodies:
            pb.removeBody(self.bodies[name], physicsClientId=c)
        body = pb.createMultiBody(sp["mass"], sp["col"], sp["vis"], sp["pos"], physicsClientId=c)
        pb.changeDynamics(body, -1, lateralFriction=sp["friction"],
                          spinningFriction=sp["spinning_friction"],
                          activationState=pb.ACTIVATION_STATE_DISABLE_SLEEPING, physicsClientId=c)
        self.bodies[name] = body
        return body

    def add_marker(self, radius: float, pos, rgba) -> int:
        """A visual-only sphere (no collision, no mass)."""
        vis = pb.createVisualShape(pb.GEOM_SPHERE, radius=radius, rgbaColor=rgba,
                                   physicsClientId=self.client)
        return pb.createMultiBody(0.0, -1, vis, pos, physicsClientId=self.client)

    # ---- controller ------------------------------------------------------------------
    def set_impedance(self, params: ImpedanceParams) -> None:
        self.impedance.params = params

    def joint_states(self) -> tuple[np.ndarray, np.ndarray]:
        """(q, dq) of the 9 movable dofs: 7 arm joints, 2 fingers."""
        s = pb.getJointStates(self.robot, MOVABLE, physicsClientId=self.client)
        return np.array([x[0] for x in s]), np.array([x[1] for x in s])

    def _link(self, velocity: bool = False):
        return pb.getLinkState(self.robot, self.tcp_link, computeLinkVelocity=int(velocity),
                               computeForwardKinematics=1, physicsClientId=self.client)

    def _tcp_from_link(self, ls) -> tuple[np.ndarray, np.ndarray]:
        pos, quat = np.array(ls[4]), np.array(ls[5])
        if self.tcp_link != TCP_LINK:
            pos = pos + quat_to_mat(quat) @ self.tcp_local
        return pos, quat

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """6x9 geometric Jacobian of the TCP (linear; angular) in the base frame."""
        zeros = [0.0] * len(MOVABLE)
        # localPosition is in the URDF link frame (checked against link 11 vs hand + offset)
        jl, ja = pb.calculateJacobian(self.robot, self.tcp_link, self.tcp_local.tolist(),
                                      q.tolist(), zeros, zeros, physicsClientId=self.client)
        return np.vstack([np.array(jl), np.array(ja)])

    def _torque(self) -> np.ndarray:
        c, r = self.client, self.robot
        q, dq = self.joint_states()
        ql, dql = q.tolist(), dq.tolist()
        J = self.jacobian(q)[:, :NA]
        M = np.array(pb.calculateMassMatrix(r, ql, physicsClientId=c))
        Minv = np.linalg.inv(M)[:NA, :NA]
        bias = np.array(pb.calculateInverseDynamics(r, ql, dql, [0.0] * len(MOVABLE),
                                                    physicsClientId=c))[:NA]
        pos, quat = self._tcp_from_link(self._link())
        return self.impedance.torque(q[:NA], dq[:NA], J, pos, quat, self.target_pos,
                                     self.target_quat, bias, self.q_null, Minv=Minv)

    def _gravity(self) -> np.ndarray:
        q, _ = self.joint_states()
        z = [0.0] * len(MOVABLE)
        return np.array(pb.calculateInverseDynamics(self.robot, q.tolist(), z, z,
                                                    physicsClientId=self.client))[:NA]

    def step(self, n: int) -> None:
        """n physics substeps, the impedance law evaluated every `law_every`-th one (the torque
        is held in between); the gripper's position motors run inside PyBullet."""
        c, r = self.client, self.robot
        for i in range(n):
            if i % self.law_every == 0:
                self._tau = self._torque()
            pb.setJointMotorControlArray(r, ARM_JOINTS, pb.TORQUE_CONTROL,
                                         forces=self._tau.tolist(), physicsClientId=c)
            pb.stepSimulation(physicsClientId=c)
            self.steps += 1

    def advance(self, seconds: float) -> None:
        self.step(max(1, int(round(seconds / PHYSICS_DT))))

    def _command_fingers(self) -> None:
        for j in FINGER_JOINTS:  # position motors with a force and a velocity cap
            pb.setJointMotorControl2(self.robot, j, pb.POSITION_CONTROL,
                                     targetPosition=self.finger_target, force=FINGER_FORCE,
                                     maxVelocity=FINGER_SPEED, physicsClientId=self.client)

    def command_fingers(self, per_finger: float) -> None:
        self.finger_target = float(np.clip(per_finger, 0.0, FINGER_MAX))
        self._command_fingers()

    # ---- state -----------------------------------------------------------------------
    def _reset_robot(self) -> None:
        for j in FINGER_JOINTS:
            pb.resetJointState(self.robot, j, FINGER_MAX, 0.0, physicsClientId=self.client)
        self.finger_target = FINGER_MAX
        self._command_fingers()
        self.impedance.tau_prev = None
        self.set_joints(HOME_Q)

    def reset(self) -> None:
        """Back to the initial scene; nothing from the last episode survives (see the class
        docstring): boxes re-created at their spawn poses, arm at HOME_Q at rest, fingers
        open, controller state cleared, sim time zero."""
        for name in self._specs:
            self._spawn(name)
        self._reset_robot()
        self.steps = 0

    def set_joints(self, q: np.ndarray) -> None:
        """Teleport the arm, zero its velocities, and hold the resulting pose."""
        for j, qj in zip(ARM_JOINTS, q):
            pb.resetJointState(self.robot, j, float(qj), 0.0, physicsClientId=self.client)
        self.q_null = np.array(q, float)
        pos, quat = self._tcp_from_link(self._link())
        self.target_pos, self.target_quat = pos, quat
        self._tau = self._gravity()
        self.impedance.reset(self._tau)  # start the rate limiter from gravity compensation

    def tcp_pose(self) -> np.ndarray:
        pos, quat = self._tcp_from_link(self._link())
        return np.concatenate([pos, quat])

    def tcp_twist(self) -> np.ndarray:
        ls = self._link(velocity=True)
        v, w = np.array(ls[6]), np.array(ls[7])
        if self.tcp_link != TCP_LINK:
            v = v + np.cross(w, quat_to_mat(ls[5]) @ self.tcp_local
                             - (np.array(ls[0]) - np.array(ls[4])))
        return np.concatenate([v, w])

    def tcp_wrench(self) -> np.ndarray:
        """External contact wrench on the hand and fingers, at the TCP, in the base frame."""
        w = np.zeros(6)
        tcp = self.tcp_pose()[:3]
        for cp in pb.getContactPoints(bodyA=self.robot, physicsClientId=self.client):
            if cp[3] < HAND_LINK or cp[2] == self.robot:
                continue
            # force on A (the robot): normal from B towards A, plus the two friction components
            f = (cp[9] * np.array(cp[7]) + cp[10] * np.array(cp[11]) + cp[12] * np.array(cp[13]))
            w[:3] += f
            w[3:] += np.cross(np.array(cp[5]) - tcp, f)
        return w

    def now_ns(self) -> int:
        return int(round(self.steps * PHYSICS_DT * 1e9))

    def render(self, view: np.ndarray, fov: float, height: int, width: int) -> np.ndarray:
        proj = pb.computeProjectionMatrixFOV(fov, width / height, 0.01, 5.0,
                                             physicsClientId=self.client)
        img = pb.getCameraImage(width, height, view, proj, renderer=pb.ER_TINY_RENDERER,
                                flags=pb.ER_NO_SEGMENTATION_MASK, physicsClientId=self.client)
        rgba = np.reshape(np.asarray(img[2], dtype=np.uint8), (height, width, 4))
        return np.ascontiguousarray(rgba[:, :, :3])

    def hand_frame(self) -> tuple[np.ndarray, np.ndarray]:
        ls = pb.getLinkState(self.robot, HAND_LINK, computeForwardKinematics=1,
                             physicsClientId=self.client)
        return np.array(ls[4]), quat_to_mat(ls[5])

    def close(self) -> None:
        if self._connected:
            self._connected = False
            try:
                pb.disconnect(physicsClientId=self.client)
            except pb.error:
                pass

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def solve_ik(world: BulletWorld, pos, quat, q_seed, iters: int = 200,
             tol: float = 1e-5) -> np.ndarray:
    """Damped least-squares IK for the TCP (used for reset poses, never in the control loop).
    Uses the live robot's kinematics and puts its joint state back afterwards."""
    c, r = world.client, world.robot
    saved = pb.getJointStates(r, MOVABLE, physicsClientId=c)
    q = np.clip(np.array(q_seed, float), world.q_low, world.q_high)
    fingers = np.array([s[0] for s in saved[NA:]])
    try:
        for _ in range(iters):
            for j, qj in zip(ARM_JOINTS, q):
                pb.resetJointState(r, j, float(qj), physicsClientId=c)
            cur_p, cur_q = world._tcp_from_link(world._link())
            e = np.concatenate([np.asarray(pos) - cur_p, orientation_error(quat, cur_q)])
            if np.linalg.norm(e) < tol:
                break
            J = world.jacobian(np.concatenate([q, fingers]))[:, :NA]
            dq = J.T @ np.linalg.solve(J @ J.T + 1e-4 * np.eye(6), e)
            q = np.clip(q + dq, world.q_low, world.q_high)
    finally:
        for j, s in zip(MOVABLE, saved):
            pb.resetJointState(r, j, s[0], s[1], physicsClientId=c)
    return q


class BulletArm:
    def __init__(self, world: BulletWorld):
        self.world = world

    def state(self) -> ArmState:
        w = self.world
        q, dq = w.joint_states()
        return ArmState(q=q[:NA], dq=dq[:NA], tcp_pose=w.tcp_pose(), tcp_twist=w.tcp_twist(),
                        wrench=w.tcp_wrench(), t_ns=w.now_ns())

    def set_target_pose(self, pos: np.ndarray, quat: np.ndarray) -> None:
        self.world.target_pos = np.asarray(pos, float).copy()
        self.world.target_quat = np.asarray(quat, float).copy()

    def set_impedance(self, params: ImpedanceParams) -> None:
        self.world.set_impedance(params)

    def move_to_joints(self, q: np.ndarray) -> None:
        self.world.set_joints(np.asarray(q, float))

    def stop(self) -> None:  # hold the current pose
        pose = self.world.tcp_pose()
        self.set_target_pose(pose[:3], pose[3:])

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def close(self) -> None:
        """Disconnect the physics client (`RobotEnv.close()` calls this last)."""
        self.world.close()


class BulletGripper:
    max_width = 2 * FINGER_MAX

    def __init__(self, world: BulletWorld):
        self.world = world

    def command(self, width: float) -> None:
        self.world.command_fingers(float(np.clip(width, 0, self.max_width)) / 2)

    def state(self) -> GripperState:
        q, _ = self.world.joint_states()
        width = float(q[NA] + q[NA + 1])
        commanded = 2 * self.world.finger_target
        return GripperState(width=width, max_width=self.max_width,
                            grasped=bool(width > 0.004 and width > commanded + 0.003),
                            t_ns=self.world.now_ns())


class BulletCamera:
    """`front`: fixed, looking at the workspace (the MuJoCo scene's front camera pose);
    `wrist`: on the hand, looking past the fingers (the MuJoCo wrist camera's pose)."""
    FOV = {"front": 50.0, "wrist": 75.0}

    def __init__(self, world: BulletWorld, name: str, height: int = 128, width: int = 128):
        if name not in self.FOV:
            raise ValueError(f"no camera named {name!r}; have {sorted(self.FOV)}")
        self.world, self.name, self.shape = world, name, (height, width, 3)

    def _view(self):
        if self.name == "front":
            return pb.computeViewMatrix(FRONT_CAMERA_POS.tolist(), FRONT_CAMERA_TARGET.tolist(),
                                        [0, 0, 1], physicsClientId=self.world.client)
        p, R = self.world.hand_frame()
        eye = p + R @ WRIST_CAMERA_POS
        return pb.computeViewMatrix(eye.tolist(), (eye + R @ WRIST_CAMERA_FWD).tolist(),
                                    (R @ WRIST_CAMERA_UP).tolist(),
                                    physicsClientId=self.world.client)

    def read(self) -> Frame:
        rgb = self.world.render(self._view(), self.FOV[self.name], self.shape[0], self.shape[1])
        return Frame(rgb=rgb, t_ns=self.world.now_ns())


class BulletClock:
    """Sim time: waiting one control period steps the physics."""

    def __init__(self, world: BulletWorld):
        self.world = world

    def wait(self, period_s: float) -> None:
        self.world.advance(period_s)

    def now_ns(self) -> int:
        return self.world.now_ns()


# ---- tasks ---------------------------------------------------------------------------------
class BulletTask(TaskBase):
    """Common reset: back to the initial scene, arm teleported to a (randomized) start pose. The
    randomization draws match sim/tasks.py's SimTask, in the same order."""
    start_pos = np.array([0.45, 0.0, 0.22])
    start_noise = np.array([0.03, 0.03, 0.02])

    def build(self, world: BulletWorld) -> None:
        """Add the task's objects to the scene."""

    def bind(self, world: BulletWorld) -> None:
        self.world = world
        self._q_start = solve_ik(world, self.start_pos, DOWN, HOME_Q)
        self.home_quat = DOWN

    def reset_arm(self, env, rng: np.random.Generator) -> None:
        self.world.reset()
        start = self.start_pos + rng.uniform(-1, 1, 3) * self.start_noise
        env.arm.move_to_joints(solve_ik(self.world, start, DOWN, self._q_start))
        if env.gripper is not None:
            env.gripper.command(env.gripper.max_width)

    def settle(self, seconds: float = 0.1) -> None:
        self.world.advance(seconds)

    @property
    def tcp(self) -> np.ndarray:
        return self.world.tcp_pose()[:3]


class BulletReach(BulletTask):
    goal_low, goal_high = np.array([0.33, -0.15, 0.08]), np.array([0.57, 0.15, 0.3])
    tolerance = 0.02

    def __init__(self):
        super().__init__(name="PandaReach", instruction="move the gripper to the green sphere",
                         action=ActionConfig(dofs=("x", "y", "z"), gripper=False, step_pos=0.03),
                         safety=SafetyBox((0.25, -0.25, 0.05), (0.65, 0.25, 0.4),
                                          (3.0, -0.15, -0.15), (-3.0, 0.15, 0.15)),
                         max_episode_steps=30)
        self._goal = np.array([0.45, 0.0, 0.2])

    def build(self, world):
        self._marker = world.add_marker(0.015, self._goal, (0.1, 0.8, 0.1, 0.6))

    @property
    def goal(self) -> np.ndarray:
        return self._goal

    def reset(self, env, rng):
        self.reset_arm(env, rng)
        self._goal = rng.uniform(self.goal_low, self.goal_high)
        pb.resetBasePositionAndOrientation(self._marker, self._goal.tolist(), [0, 0, 0, 1],
                                           physicsClientId=self.world.client)
        self.settle(0.02)

    def env_state(self):
        return np.concatenate([self.goal, self.goal - self.tcp])

    def evaluate(self, env) -> Evaluation:
        d = float(np.linalg.norm(self.tcp - self.goal))
        return Evaluation(reward=1.0 - np.tanh(10.0 * d), success=d < self.tolerance)


class BulletPickCube(BulletTask):
    half = 0.02
    mass = 0.05
    friction = 1.0
    cube_low, cube_high = np.array([0.35, -0.15]), np.array([0.55, 0.15])
    lift_height = 0.05

    def __init__(self):
        super().__init__(name="PandaPickCube", instruction="pick up the red cube",
                         action=ActionConfig(dofs=("x", "y", "z"), gripper=True, step_pos=0.03),
                         safety=SafetyBox((0.25, -0.25, 0.005), (0.65, 0.25, 0.35),
                                          (3.0, -0.15, -0.15), (-3.0, 0.15, 0.15)),
                         max_episode_steps=50)

    def build(self, world):
        world.add_box("cube", [self.half] * 3, [0.45, 0.0, TABLE_Z + self.half], self.mass,
                      (0.85, 0.15, 0.1, 1.0), friction=self.friction, spinning_friction=0.002)

    @property
    def cube_pos(self) -> np.ndarray:
        return np.array(pb.getBasePositionAndOrientation(
            self.world.bodies["cube"], physicsClientId=self.world.client)[0])

    def reset(self, env, rng):
        self.reset_arm(env, rng)
        xy = rng.uniform(self.cube_low, self.cube_high)
        cube, c = self.world.bodies["cube"], self.world.client
        pb.resetBasePositionAndOrientation(cube, [xy[0], xy[1], TABLE_Z + self.half],
                                           [0, 0, 0, 1], physicsClientId=c)
        pb.resetBaseVelocity(cube, [0, 0, 0], [0, 0, 0], physicsClientId=c)
        self.settle(0.1)

    def env_state(self):
        return np.concatenate([self.cube_pos, self.cube_pos - self.tcp])

    def evaluate(self, env) -> Evaluation:
        cube = self.cube_pos
        lift = float(cube[2] - (TABLE_Z + self.half))
        reach = 1.0 - np.tanh(10.0 * float(np.linalg.norm(self.tcp - cube)))
        dense = 0.3 * reach + 0.7 * float(np.clip(lift / self.lift_height, 0.0, 1.0))
        return Evaluation(reward=dense, success=lift >= self.lift_height)


BULLET_TASKS = {"PandaReach": BulletReach, "PandaPickCube": BulletPickCube}


def make_pybullet_env(task: str = "PandaReach", vision: bool = False, image_size: int = 64,
                      cameras: tuple[str, ...] = ("front", "wrist"), control_hz: float = 10.0,
                      reward_type: str = "sparse", impedance: str | ImpedanceParams = "compliant",
                      law_every: int = 1, include_wrench: bool = False,
                      render_mode: str | None = None) -> RobotEnv:
    """A `RobotEnv` on the PyBullet HAL (the same class as `make_sim_env`'s). `vision=True` adds
    `cameras` (uint8 image_size^2) and drops the privileged `env_state` from the observation."""
    if task not in BULLET_TASKS:
        raise ValueError(f"unknown pybullet task {task!r}; valid: {sorted(BULLET_TASKS)}")
    t = BULLET_TASKS[task]()
    world = BulletWorld(impedance=ImpedanceParams.preset(impedance) if isinstance(impedance, str)
                        else impedance, law_every=law_every)
    t.build(world)
    t.bind(world)
    if vision:
        t.env_state = lambda: None  # images replace privileged object state
    cams = [BulletCamera(world, c, image_size, image_size) for c in cameras] if vision else []
    env = RobotEnv(BulletArm(world), BulletGripper(world), cams, t, clock=BulletClock(world),
                   control_hz=control_hz, reward_type=reward_type, include_wrench=include_wrench,
                   render_mode=render_mode)
    env.world = world
    return env
