"""MuJoCo implementation of the HAL: a world (model, data, renderer; `MujocoWorld` holds what
does not depend on the drive) and the `SimArm`, `SimGripper`, `SimCamera`, `SimClock` views onto
it. The arm, gripper and clock views only call world methods, so pybullet_backend's
`BulletWorld` reuses them.

`SimWorld` is the torque-controlled Panda: the impedance law runs every physics substep, in the
C kernel (`_impedance_kernel.c`) when it was built, else the numpy law (same maths, a slower
env). `ServoWorld` is an arm on position servos (the SO-101): its HAL arm is a
`CartesianPositionArm` over `SimServos`, ticked at the servo rate as the physics runs.
"""
from __future__ import annotations

import atexit
import ctypes
import glob
import os
import warnings
import weakref

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before importing mujoco

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from robot_rl.controllers.diff_ik import DifferentialIK  # noqa: E402
from robot_rl.controllers.frames import mat_to_quat, orientation_error  # noqa: E402
from robot_rl.controllers.impedance import CartesianImpedance, ImpedanceParams  # noqa: E402
from robot_rl.controllers.kinematics import SerialChain  # noqa: E402
from robot_rl.hardware.hal import ArmState, Frame, GripperState  # noqa: E402
from robot_rl.sim.panda_model import ARM_NAMES, FINGER_MAX, HOME_Q, TORQUE_LIMITS  # noqa: E402

NA = 7


class _Kernel(ctypes.Structure):
    _fields_ = [("step1", ctypes.c_void_p), ("step2", ctypes.c_void_p),
                ("jac_site", ctypes.c_void_p), ("solve_m", ctypes.c_void_p),
                ("m", ctypes.c_void_p), ("d", ctypes.c_void_p),
                ("nv", ctypes.c_int), ("site", ctypes.c_int), ("use_minv", ctypes.c_int),
                ("qpos", ctypes.c_void_p), ("qvel", ctypes.c_void_p), ("ctrl", ctypes.c_void_p),
                ("site_xpos", ctypes.c_void_p), ("site_xmat", ctypes.c_void_p),
                ("qfrc_bias", ctypes.c_void_p),
                ("K", ctypes.c_double * 6), ("D", ctypes.c_double * 6),
                ("clip_lo", ctypes.c_double * 6), ("clip_hi", ctypes.c_double * 6),
                ("kn", ctypes.c_double), ("dn", ctypes.c_double), ("max_rate", ctypes.c_double),
                ("tau_lim", ctypes.c_double * NA),
                ("target_pos", ctypes.c_double * 3), ("target_quat", ctypes.c_double * 4),
                ("q_null", ctypes.c_double * NA), ("tau_prev", ctypes.c_double * NA),
                ("have_prev", ctypes.c_int)]


def _load_kernel():
    """(kernel library, libmujoco) via ctypes, or None when the C kernel was not built."""
    try:
        from robot_rl.sim import _impedance_kernel
    except ImportError:
        return None
    lib = ctypes.CDLL(_impedance_kernel.__file__)
    lib.run_substeps.argtypes = [ctypes.POINTER(_Kernel), ctypes.c_int]
    lib.torque_once.argtypes = [ctypes.POINTER(_Kernel), ctypes.POINTER(ctypes.c_double)]
    # The bindings already loaded this exact file: dlopen returns the same instance.
    mj = ctypes.CDLL(glob.glob(os.path.join(os.path.dirname(mujoco.__file__), "libmujoco.so*"))[0])
    return lib, mj


_KERNEL = _load_kernel()
_LIVE_WORLDS: "weakref.WeakSet[SimWorld]" = weakref.WeakSet()
_ATEXIT_REGISTERED = False


def _preload_triton() -> None:
    """triton's native library segfaults when it is first loaded after an EGL context exists
    (torch 2.14 loads it lazily, e.g. when the first optimizer is built: render, then
    `import torch._dynamo` -> SIGSEGV). Loading it before our first GL context avoids that."""
    try:
        import triton  # noqa: F401
    except Exception:  # not installed (CPU-only torch, no torch at all): nothing to protect
        pass


def _close_renderers() -> None:
    for world in list(_LIVE_WORLDS):
        world.close()


def _addr(a: np.ndarray) -> int:
    return a.ctypes.data


class MujocoWorld:
    """A MuJoCo model + data and everything about it that does not depend on how the arm is
    driven: the TCP, the gripper, task objects, rendering. `SimWorld` (the torque-controlled
    Panda under the impedance law) and `ServoWorld` (position-servoed arms) add the drive."""
    finger_max: float  # per finger [m]

    def __init__(self, xml: str | None, model_path: str | None, names: dict, n_arm: int):
        if (xml is None) == (model_path is None):
            raise ValueError("give exactly one of xml= or model_path=")
        if model_path is not None and not os.path.exists(model_path):
            raise FileNotFoundError(f"MJCF file not found: {model_path}")
        self.model = (mujoco.MjModel.from_xml_path(model_path) if model_path
                      else mujoco.MjModel.from_xml_string(xml))
        self.data = mujoco.MjData(self.model)
        self.n_arm = n_arm
        m = self.model
        try:
            self.tcp_site = m.site(names["tcp_site"]).id
            self.finger_qadr = m.jnt_qposadr[m.joint(names["finger_joint"]).id]
            self.gripper_act = m.actuator(names["gripper_actuator"]).id
            arm_acts = [m.actuator(n).id for n in names["arm_actuators"]]
        except KeyError as exc:
            raise ValueError(f"the model lacks a name robot_rl needs ({exc}); required names: "
                             f"{names}") from None
        if arm_acts != list(range(n_arm)) or any(m.jnt_qposadr[m.actuator_trnid[i, 0]] != i
                                                  for i in range(n_arm)):
            raise ValueError(f"the arm's {n_arm} joints and actuators must come first in the model")
        self.gripper_bodies = {m.body(n).id for n in ("hand", "finger_left", "finger_right")}
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._objects: dict[str, tuple[bool, int, int]] = {}
        _LIVE_WORLDS.add(self)

    def step(self, n: int) -> None:
        raise NotImplementedError

    def advance(self, seconds: float) -> None:
        self.step(max(1, int(round(seconds / self.model.opt.timestep))))

    def reset(self) -> None:
        """Back to the model's initial state; nothing from the last episode survives."""
        mujoco.mj_resetData(self.model, self.data)

    def tcp_position(self) -> np.ndarray:
        return self.data.site_xpos[self.tcp_site].copy()

    def tcp_pose(self) -> np.ndarray:
        d = self.data
        return np.concatenate([d.site_xpos[self.tcp_site],
                               mat_to_quat(d.site_xmat[self.tcp_site].reshape(3, 3))])

    def tcp_twist(self) -> np.ndarray:
        v = np.zeros(6)
        mujoco.mj_objectVelocity(self.model, self.data, mujoco.mjtObj.mjOBJ_SITE, self.tcp_site,
                                 v, 0)
        return np.concatenate([v[3:], v[:3]])  # MuJoCo gives [angular, linear]

    def tcp_wrench(self) -> np.ndarray:
        """External contact wrench on the gripper, at the TCP, in the base frame."""
        m, d = self.model, self.data
        w, f6 = np.zeros(6), np.zeros(6)
        tcp = d.site_xpos[self.tcp_site]
        for i in range(d.ncon):
            c = d.contact[i]
            b1, b2 = m.geom_bodyid[c.geom[0]], m.geom_bodyid[c.geom[1]]
            sign = 1.0 if b2 in self.gripper_bodies else (-1.0 if b1 in self.gripper_bodies else 0.0)
            if sign == 0.0 or (b1 in self.gripper_bodies and b2 in self.gripper_bodies):
                continue
            mujoco.mj_contactForce(m, d, i, f6)
            f = sign * (c.frame.reshape(3, 3).T @ f6[:3])  # contact frame -> world, force on b2
            w[:3] += f
            w[3:] += np.cross(c.pos - tcp, f)
        return w

    def arm_joints(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.qpos[:self.n_arm].copy(), self.data.qvel[:self.n_arm].copy()

    def command_fingers(self, per_finger: float) -> None:
        self.data.ctrl[self.gripper_act] = per_finger

    def gripper_widths(self) -> tuple[float, float]:
        """(measured, commanded) opening."""
        d = self.data
        return 2 * float(d.qpos[self.finger_qadr]), 2 * float(d.ctrl[self.gripper_act])

    def now_ns(self) -> int:
        return int(self.data.time * 1e9)

    # ---- task objects: the world interface of sim/tasks/ ------------------------------
    def set_marker(self, name: str, pos) -> None:
        """Move a visual-only marker (a site of the world body)."""
        self.model.site_pos[self.model.site(name).id] = pos

    def _object(self, name: str) -> tuple[bool, int, int]:
        """(is mocap, mocap id or free joint's qpos address, its dof address) of a body."""
        if name not in self._objects:
            m, b = self.model, self.model.body(name).id
            j = m.body_jntadr[b]  # a free joint is its body's only joint
            if m.body_mocapid[b] >= 0:
                self._objects[name] = (True, int(m.body_mocapid[b]), -1)
            elif j >= 0 and m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
                self._objects[name] = (False, int(m.jnt_qposadr[j]), int(m.jnt_dofadr[j]))
            else:
                raise ValueError(f"body {name!r} is neither mocap nor free-floating")
        return self._objects[name]

    def body_position(self, name: str) -> np.ndarray:
        mocap, i, _ = self._object(name)
        return (self.data.mocap_pos[i] if mocap else self.data.qpos[i:i + 3]).copy()

    def place_body(self, name: str, pos, yaw: float = 0.0) -> None:
        """Put a free or mocap body at `pos`, turned by `yaw` about the vertical, at rest."""
        mocap, i, dof = self._object(name)
        d = self.data
        quat = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]  # MuJoCo's wxyz
        if mocap:
            d.mocap_pos[i], d.mocap_quat[i] = pos, quat
        else:
            d.qpos[i:i + 3], d.qpos[i + 3:i + 7] = pos, quat
            d.qvel[dof:dof + 6] = 0.0

    def ik(self, pos, quat, q_seed, iters: int = 200, tol: float = 1e-5) -> np.ndarray:
        """Damped least-squares IK for the TCP (used for reset poses, never in the control
        loop). Works on a scratch MjData so the live simulation is untouched."""
        m, site = self.model, self.tcp_site
        d = mujoco.MjData(m)
        q = np.array(q_seed, float)
        n = self.n_arm
        lo, hi = m.jnt_range[:n, 0], m.jnt_range[:n, 1]
        jacp, jacr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        for _ in range(iters):
            d.qpos[:n] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            cur_q = mat_to_quat(d.site_xmat[site].reshape(3, 3))
            e = np.concatenate([pos - d.site_xpos[site], orientation_error(quat, cur_q)])
            if np.linalg.norm(e) < tol:
                break
            mujoco.mj_jacSite(m, d, jacp, jacr, site)
            J = np.vstack([jacp[:, :n], jacr[:, :n]])
            dq = J.T @ np.linalg.solve(J @ J.T + 1e-4 * np.eye(6), e)
            q = np.clip(q + dq, lo, hi)
        return q

    # ---- rendering -------------------------------------------------------------------
    def render(self, camera: str, height: int, width: int) -> np.ndarray:
        key = (height, width)
        if key not in self._renderers:
            _preload_triton()
            self._renderers[key] = mujoco.Renderer(self.model, height, width)
            global _ATEXIT_REGISTERED
            if not _ATEXIT_REGISTERED:
                # MuJoCo's EGL backend registers eglTerminate at exit when its first context is
                # made; registering after it makes ours run first (atexit is LIFO), so contexts
                # are freed while the display is alive instead of erroring in __del__.
                atexit.register(_close_renderers)
                _ATEXIT_REGISTERED = True
        r = self._renderers[key]
        r.update_scene(self.data, camera=camera)
        return r.render()

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()


class SimWorld(MujocoWorld):
    """The Panda: torque actuators under the Cartesian impedance law, every physics substep."""
    finger_max = FINGER_MAX
    home_q = HOME_Q

    def __init__(self, xml: str | None = None, model_path: str | None = None,
                 impedance: ImpedanceParams | None = None, controller: str = "auto"):
        super().__init__(xml, model_path, ARM_NAMES, NA)
        if controller not in ("auto", "c", "numpy"):
            raise ValueError(f"controller must be 'auto', 'c' or 'numpy', got {controller!r}")
        if controller == "c" and _KERNEL is None:
            raise RuntimeError("the C kernel is not built (reinstall with a C compiler)")
        self.controller = "c" if controller in ("auto", "c") and _KERNEL is not None else "numpy"
        if controller == "auto" and self.controller == "numpy":
            warnings.warn("C substep kernel not built: using the numpy controller (slower)")
        self.impedance = CartesianImpedance(impedance or ImpedanceParams.compliant(),
                                            torque_limits=np.array(TORQUE_LIMITS, float))
        self.target_pos = np.zeros(3)
        self.target_quat = np.array([0, 0, 0, 1.0])
        self.q_null = np.zeros(NA)
        self._k = self._make_kernel() if self.controller == "c" else None

    # ---- controller ------------------------------------------------------------------
    def _make_kernel(self) -> _Kernel:
        lib, mj = _KERNEL
        d, k = self.data, _Kernel()
        fn = lambda name: ctypes.cast(getattr(mj, name), ctypes.c_void_p).value  # noqa: E731
        k.step1, k.step2 = fn("mj_step1"), fn("mj_step2")
        k.jac_site, k.solve_m = fn("mj_jacSite"), fn("mj_solveM")
        k.m, k.d = self.model._address, d._address
        k.nv, k.site, k.use_minv = self.model.nv, self.tcp_site, 1
        k.qpos, k.qvel, k.ctrl = _addr(d.qpos), _addr(d.qvel), _addr(d.ctrl)
        k.site_xpos, k.site_xmat = _addr(d.site_xpos[self.tcp_site]), _addr(d.site_xmat[self.tcp_site])
        k.qfrc_bias = _addr(d.qfrc_bias)
        k.tau_lim[:] = TORQUE_LIMITS
        self._lib = lib
        return k

    def _sync_kernel(self) -> None:
        k, p = self._k, self.impedance.params
        k.K[:], k.D[:] = p.K, p.D
        k.clip_lo[:], k.clip_hi[:] = p.clip_low, p.clip_high
        k.kn, k.dn, k.max_rate = p.kn, p.dn, p.max_torque_rate
        k.target_pos[:], k.target_quat[:] = self.target_pos, self.target_quat
        k.q_null[:] = self.q_null

    def set_impedance(self, params: ImpedanceParams) -> None:
        self.impedance.params = params

    def _numpy_torque(self) -> np.ndarray:
        m, d = self.model, self.data
        jacp, jacr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        mujoco.mj_jacSite(m, d, jacp, jacr, self.tcp_site)
        J = np.vstack([jacp[:, :NA], jacr[:, :NA]])
        unit = np.zeros((NA, m.nv))
        unit[np.arange(NA), np.arange(NA)] = 1.0
        sol = np.zeros_like(unit)
        mujoco.mj_solveM(m, d, sol, unit)
        return self.impedance.torque(
            d.qpos[:NA], d.qvel[:NA], J, d.site_xpos[self.tcp_site],
            mat_to_quat(d.site_xmat[self.tcp_site].reshape(3, 3)), self.target_pos,
            self.target_quat, d.qfrc_bias[:NA], self.q_null, Minv=sol[:, :NA])

    def torque_now(self, backend: str) -> np.ndarray:
        """Evaluate the law once on the current state (after mj_forward) without stepping and
        without touching the rate limiter's memory: for comparing the C and numpy paths."""
        mujoco.mj_forward(self.model, self.data)
        if backend == "numpy":
            saved = self.impedance.tau_prev
            tau = self._numpy_torque()
            self.impedance.tau_prev = saved
            return tau
        if self._k is None:
            raise RuntimeError("the C kernel is not in use")
        self._sync_kernel()
        out = (ctypes.c_double * NA)()
        self._lib.torque_once(ctypes.byref(self._k), out)
        return np.array(out)

    def step(self, n: int) -> None:
        """n physics substeps, the impedance law evaluated at every one."""
        if self.controller == "c":
            self._sync_kernel()
            if self._lib.run_substeps(ctypes.byref(self._k), n) != 0:
                raise RuntimeError("C kernel: model has too many dofs (max 64)")
            self.impedance.tau_prev = np.array(self._k.tau_prev)
            return
        for _ in range(n):
            mujoco.mj_step1(self.model, self.data)
            self.data.ctrl[:NA] = self._numpy_torque()
            mujoco.mj_step2(self.model, self.data)

    # ---- state -----------------------------------------------------------------------
    def reset(self) -> None:
        super().reset()
        self.impedance.tau_prev = None
        if self._k is not None:
            self._k.have_prev = 0

    def set_joints(self, q: np.ndarray) -> None:
        """Teleport the arm, zero velocities, and hold the resulting pose."""
        d = self.data
        d.qpos[:NA] = q
        d.qvel[:] = 0.0
        mujoco.mj_forward(self.model, d)
        self.q_null = np.array(q, float)
        self.target_pos = d.site_xpos[self.tcp_site].copy()
        self.target_quat = mat_to_quat(d.site_xmat[self.tcp_site].reshape(3, 3))
        self.impedance.reset(d.qfrc_bias[:NA])  # start the rate limiter from gravity compensation
        if self._k is not None:
            self._k.tau_prev[:] = d.qfrc_bias[:NA]
            self._k.have_prev = 1


class ServoWorld(MujocoWorld):
    """An arm of joint-position servos (MuJoCo position actuators, like hobby servos). The HAL arm
    is a `CartesianPositionArm` over `SimServos(world)`: it adds itself to `on_servo_tick`, which
    runs once per servo period while the physics advances, as the Cartesian layer runs on a
    real arm's host at the servo rate."""

    def __init__(self, xml: str, chain: SerialChain, names: dict, finger_max: float,
                 home_q, servo_hz: float = 50.0):
        super().__init__(xml, None, names, chain.n)
        self.chain, self.finger_max, self.servo_hz = chain, finger_max, servo_hz
        self.home_q = np.asarray(home_q, float)
        self.substeps_per_tick = max(1, int(round(1.0 / (servo_hz * self.model.opt.timestep))))
        self.on_servo_tick: list = []
        self._substep = 0
        self._ik = DifferentialIK(chain)

    def step(self, n: int) -> None:
        m, d, k = self.model, self.data, self.substeps_per_tick
        while n > 0:
            if self._substep % k == 0:
                for tick in self.on_servo_tick:
                    tick()
            chunk = min(n, k - self._substep % k)
            mujoco.mj_step(m, d, nstep=chunk)
            self._substep += chunk
            n -= chunk

    def reset(self) -> None:
        super().reset()
        self._substep = 0

    def set_joints(self, q: np.ndarray) -> None:
        """Teleport the arm, zero velocities, and servo to the new pose."""
        d, n = self.data, self.n_arm
        d.qpos[:n] = d.ctrl[:n] = q
        d.qvel[:] = 0.0
        mujoco.mj_forward(self.model, d)

    def command_joints(self, q: np.ndarray) -> None:
        self.data.ctrl[:self.n_arm] = q

    def ik(self, pos, quat, q_seed, iters: int = 300, tol: float = 1e-7) -> np.ndarray:
        """The chain's IK (the Cartesian layer's own kinematics), for reset poses."""
        return self._ik.solve(q_seed, pos, quat, iters, tol)


class SimServos:
    """`JointServos` of a `ServoWorld`: targets to its position actuators."""

    def __init__(self, world: ServoWorld):
        self.world = world

    def read(self) -> tuple[np.ndarray, np.ndarray, int]:
        q, dq = self.world.arm_joints()
        return q, dq, self.world.now_ns()

    def command(self, q: np.ndarray) -> None:
        self.world.command_joints(q)

    def move_to(self, q: np.ndarray) -> None:
        self.world.set_joints(np.asarray(q, float))


class SimArm:
    """The arm of a simulated world (a `SimWorld` or a `BulletWorld`): targets go to the world's
    impedance controller, state comes from its sensors."""

    def __init__(self, world: SimWorld):
        self.world = world

    def state(self) -> ArmState:
        w = self.world
        q, dq = w.arm_joints()
        return ArmState(q=q, dq=dq, tcp_pose=w.tcp_pose(), tcp_twist=w.tcp_twist(),
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


class SimGripper:
    """The gripper of a simulated world (a `SimWorld`, `ServoWorld` or `BulletWorld`)."""

    def __init__(self, world: SimWorld):
        self.world = world
        self.max_width = 2 * world.finger_max

    def command(self, width: float) -> None:
        self.world.command_fingers(float(np.clip(width, 0, self.max_width)) / 2)

    def state(self) -> GripperState:
        width, commanded = self.world.gripper_widths()
        return GripperState(width=width, max_width=self.max_width,
                            grasped=bool(width > 0.004 and width > commanded + 0.003),
                            t_ns=self.world.now_ns())


class SimCamera:
    def __init__(self, world: SimWorld, name: str, height: int = 128, width: int = 128):
        if mujoco.mj_name2id(world.model, mujoco.mjtObj.mjOBJ_CAMERA, name) < 0:
            raise ValueError(f"no camera named {name!r} in the model")
        self.world, self.name, self.shape = world, name, (height, width, 3)

    def read(self) -> Frame:
        rgb = self.world.render(self.name, self.shape[0], self.shape[1])
        return Frame(rgb=rgb, t_ns=self.world.now_ns())

    def close(self) -> None:
        self.world.close()


class SimClock:
    """Sim time of a `SimWorld` or a `BulletWorld`: waiting one control period steps the physics."""

    def __init__(self, world: SimWorld):
        self.world = world

    def wait(self, period_s: float) -> None:
        self.world.advance(period_s)

    def now_ns(self) -> int:
        return self.world.now_ns()
