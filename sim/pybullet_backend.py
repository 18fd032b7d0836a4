"""PyBullet implementation of the HAL, and PandaReach / PandaPickCube on it.

The same `RobotEnv`, the same numpy `CartesianImpedance` law, the same task classes
(sim/tasks/) and the same scripted experts as the MuJoCo backend -- only the physics engine
and the robot model differ: here it is the Franka Panda URDF bundled with `pybullet_data`.

Structure mirrors sim/world.py: one `BulletWorld` (physics client, robot, controller, and the
world interface the tasks use) and the views onto it: `BulletArm`, `BulletCamera`, and
sim/world.py's `SimGripper` and `SimClock`. This module builds only the tasks' scenes
(`SCENES`), from the tasks' numbers.

Model notes
- Physics at 500 Hz (`setTimeStep(0.002)`), policy at 10 Hz: one `SimClock.wait(0.1)` is
  50 substeps, and the impedance law is evaluated at every substep (the numpy law plus
  PyBullet's Jacobian / mass matrix / inverse dynamics). That runs well above the 10 Hz policy
  rate (docs/results.md), so the law runs at every substep by default (`law_every=1`);
  `law_every=2` (law every 2nd substep, torque held in between) is an option for slower
  machines.
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
from robot_rl.hardware.hal import Frame
from robot_rl.hardware.robot_env import RobotEnv
from robot_rl.sim.envs import PHYSICS_DT, assemble_env, impedance_params
from robot_rl.sim.panda_model import (FINGER_MAX, FRONT_CAMERA_POS, FRONT_CAMERA_TARGET, HOME_Q,
                                      TORQUE_LIMITS)
from robot_rl.sim.tasks import TABLE_Z, TASKS
from robot_rl.sim.world import NA, SimArm

ARM_JOINTS = list(range(NA))          # panda_joint1..7
FINGER_JOINTS = [9, 10]               # panda_finger_joint1/2
MOVABLE = ARM_JOINTS + FINGER_JOINTS  # the 9 dofs pybullet's dynamics calls expect, in order
HAND_LINK = 8
TCP_LINK = 11                         # panda_grasptarget
TCP_OFFSET = 0.105                    # hand -> TCP along the hand's z, if the URDF lacks link 11
FINGER_FORCE = 40.0                   # N per finger motor
FINGER_SPEED = 0.2                    # m/s per finger (the URDF's velocity limit)
FINGER_FRICTION = 1.5                 # lateral friction of the finger pads (URDF: 1.0)
WRIST_CAMERA_POS = np.array([0.07, 0.0, 0.065])  # in the hand frame, as sim/panda_model.py's
WRIST_CAMERA_FWD = np.array([-0.3, 0.0, 0.954])  # viewing direction (hand frame)
WRIST_CAMERA_UP = np.array([0.954, 0.0, 0.3])


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
    finger_max = FINGER_MAX
    home_q = HOME_Q

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
        self.markers: dict[str, int] = {}
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

    def add_marker(self, name: str, radius: float, pos, rgba) -> None:
        """A visual-only sphere (no collision, no mass), kept across resets."""
        vis = pb.createVisualShape(pb.GEOM_SPHERE, radius=radius, rgbaColor=rgba,
                                   physicsClientId=self.client)
        self.markers[name] = pb.createMultiBody(0.0, -1, vis, pos, physicsClientId=self.client)

    # ---- task objects: the world interface of sim/tasks/ ------------------------------
    def set_marker(self, name: str, pos) -> None:
        pb.resetBasePositionAndOrientation(self.markers[name], np.asarray(pos, float).tolist(),
                                           [0, 0, 0, 1], physicsClientId=self.client)

    def body_position(self, name: str) -> np.ndarray:
        return np.array(pb.getBasePositionAndOrientation(self.bodies[name],
                                                         physicsClientId=self.client)[0])

    def place_body(self, name: str, pos, yaw: float = 0.0) -> None:
        """Put a box at `pos`, turned by `yaw` about the vertical, at rest."""
        body, c = self.bodies[name], self.client
        quat = [0.0, 0.0, float(np.sin(yaw / 2)), float(np.cos(yaw / 2))]  # PyBullet's xyzw
        pb.resetBasePositionAndOrientation(body, list(pos), quat, physicsClientId=c)
        pb.resetBaseVelocity(body, [0, 0, 0], [0, 0, 0], physicsClientId=c)

    def ik(self, pos, quat, q_seed, iters: int = 200, tol: float = 1e-5) -> np.ndarray:
        """Damped least-squares IK for the TCP (used for reset poses, never in the control
        loop). Uses the live robot's kinematics and puts its joint state back afterwards."""
        c, r = self.client, self.robot
        saved = pb.getJointStates(r, MOVABLE, physicsClientId=c)
        q = np.clip(np.array(q_seed, float), self.q_low, self.q_high)
        fingers = np.array([s[0] for s in saved[NA:]])
        try:
            for _ in range(iters):
                for j, qj in zip(ARM_JOINTS, q):
                    pb.resetJointState(r, j, float(qj), physicsClientId=c)
                cur_p, cur_q = self._tcp_from_link(self._link())
                e = np.concatenate([np.asarray(pos) - cur_p, orientation_error(quat, cur_q)])
                if np.linalg.norm(e) < tol:
                    break
                J = self.jacobian(np.concatenate([q, fingers]))[:, :NA]
                dq = J.T @ np.linalg.solve(J @ J.T + 1e-4 * np.eye(6), e)
                q = np.clip(q + dq, self.q_low, self.q_high)
        finally:
            for j, s in zip(MOVABLE, saved):
                pb.resetJointState(r, j, s[0], s[1], physicsClientId=c)
        return q

    # ---- controller ------------------------------------------------------------------
    def set_impedance(self, params: ImpedanceParams) -> None:
        self.impedance.params = params

    def joint_states(self) -> tuple[np.ndarray, np.ndarray]:
        """(q, dq) of the 9 movable dofs: 7 arm joints, 2 fingers."""
        s = pb.getJointStates(self.robot, MOVABLE, physicsClientId=self.client)
        return np.array([x[0] for x in s]), np.array([x[1] for x in s])

    def arm_joints(self) -> tuple[np.ndarray, np.ndarray]:
        q, dq = self.joint_states()
        return q[:NA], dq[:NA]

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

    def gripper_widths(self) -> tuple[float, float]:
        """(measured, commanded) opening."""
        q, _ = self.joint_states()
        return float(q[NA] + q[NA + 1]), 2 * self.finger_target

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

    def tcp_position(self) -> np.ndarray:
        return self._tcp_from_link(self._link())[0]

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


class BulletArm(SimArm):
    def close(self) -> None:
        """Disconnect the physics client (`RobotEnv.close()` calls this last)."""
        self.world.close()


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


# ---- task scenes ---------------------------------------------------------------------------
def _reach_scene(world: BulletWorld, t) -> None:
    world.add_marker("goal", t.marker_size, t.goal, t.marker_rgba)


def _pick_cube_scene(world: BulletWorld, t) -> None:
    world.add_box("cube", [t.half] * 3, [0.45, 0.0, TABLE_Z + t.half], t.mass, t.rgba,
                  friction=1.0, spinning_friction=0.002)


SCENES = {"PandaReach": _reach_scene, "PandaPickCube": _pick_cube_scene}
BULLET_TASKS = {name: TASKS[name] for name in SCENES}


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
    world = BulletWorld(impedance=impedance_params(impedance), law_every=law_every)
    SCENES[task](world, t)
    return assemble_env(world, t, BulletArm(world), BulletCamera, cameras, vision, image_size,
                        control_hz=control_hz, reward_type=reward_type,
                        include_wrench=include_wrench, render_mode=render_mode)
