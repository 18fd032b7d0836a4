"""PandaReach and PandaPickCube (state observations) on MuJoCo XLA, batched over environments.

`MjxEnv` steps N environments at once: one `jax.jit`-compiled function applies the actions
(RobotEnv's conventions: normalized xyz deltas scaled by the task's step size from the
measured TCP pose, the task's home orientation, the safety box's delta limit and clip, the
gripper command), then runs the control period's physics substeps in a `lax.scan`, the JAX
impedance law evaluated on every one, exactly where the CPU sim's C kernel evaluates it
(after mj_step1's position and velocity stages, before actuation and integration), and
scores the result with the task's own `score` (sim/tasks/, on jax.numpy). Environments are
batched with `jax.vmap`.

Resets run on the host through the CPU env's own task code (`make_sim_env`: seeded draws,
IK, settling), and the resulting state is copied into MJX. So an MJX episode with seed s
starts from exactly the state the CPU env starts from with seed s; only the stepping differs.

Differences from the CPU sim (the README states the measured tolerance):
- float32 (JAX's default; enable `jax_enable_x64` for float64) instead of float64;
- MJX's own collision routines and solver implementation (same Newton solver settings);
- the MJX model disables collisions of the base cylinder, the only geom MJX cannot collide
  (cylinder-box is not implemented in MJX): it can only touch the table (static-static,
  never collided) and a cube pushed 28 cm back into the robot's base.
"""
from __future__ import annotations

import contextlib
import copy
import io
from typing import Any, NamedTuple

import numpy as np

import robot_rl.sim.mjx  # noqa: F401  (sets the XLA CPU flags before JAX starts its backend)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import mujoco  # noqa: E402

with contextlib.redirect_stdout(io.StringIO()):  # mjx prints "Failed to import warp" (no GPU)
    from mujoco import mjx  # noqa: E402

from robot_rl.controllers.impedance import ImpedanceParams  # noqa: E402
from robot_rl.sim.envs import PHYSICS_DT, impedance_params, make_sim_env  # noqa: E402
from robot_rl.sim.mjx import frames  # noqa: E402
from robot_rl.sim.mjx.impedance import Gains, torque  # noqa: E402
from robot_rl.sim.panda_model import FINGER_MAX, TORQUE_LIMITS  # noqa: E402

MJX_TASKS = ("PandaReach", "PandaPickCube")
NA = 7


class EnvState(NamedTuple):
    """Per-environment state (every leaf gets a leading batch axis)."""
    data: Any                  # mjx.Data
    tcp: jnp.ndarray           # (7,) measured TCP pose [xyz, quat xyzw] the next action is relative to
    target_pos: jnp.ndarray    # (3,) impedance setpoint
    target_quat: jnp.ndarray   # (4,)
    q_null: jnp.ndarray        # (7,) nullspace posture
    tau_prev: jnp.ndarray      # (7,) last torque (rate limiter memory)
    goal: jnp.ndarray          # (3,) PandaReach's goal (zeros for PandaPickCube)


class StepOutput(NamedTuple):
    state: EnvState
    obs: dict                  # {"state": (14,), "env_state": (6,)} float32
    reward: jnp.ndarray        # dense task reward in [0, 1]
    success: jnp.ndarray       # bool
    action: jnp.ndarray        # the clipped action that was executed


def mjx_model(model: mujoco.MjModel):
    """The MJX model of a CPU model: a copy with the one collision MJX lacks switched off."""
    m = copy.deepcopy(model)
    for g in range(m.ngeom):
        if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_CYLINDER:
            m.geom_contype[g] = m.geom_conaffinity[g] = 0
    return m, mjx.put_model(m)


class _Core:
    """The jitted, batched functions of one task configuration (shared by every `MjxEnv` with
    that configuration, so a process compiles them once per batch size)."""

    def __init__(self, task: str, control_hz: float, impedance: ImpedanceParams):
        cpu = make_sim_env(task, control_hz=control_hz, impedance=impedance)
        t, w = cpu.task, cpu.world
        if t.action.dofs != ("x", "y", "z") or t.action.frame != "base":
            raise ValueError(f"MJX supports base-frame xyz actions, task {task} has "
                             f"{t.action.dofs} in the {t.action.frame} frame")
        self.task_name, self.task, self.box = task, t, t.safety
        self.gripper = t.action.gripper
        self.substeps = max(1, int(round(cpu.period / PHYSICS_DT)))  # as SimWorld.advance
        self.model, self.mx = mjx_model(w.model)
        m = self.model
        self.site = w.tcp_site
        self.site_body = int(m.site_bodyid[self.site])
        self.site_root = int(m.body_rootid[self.site_body])
        self.finger_qadr, self.gripper_act = int(w.finger_qadr), int(w.gripper_act)
        if task == "PandaPickCube":
            self.cube_qadr = int(m.jnt_qposadr[m.body("cube").jntadr[0]])
        self.gains = Gains.from_params(impedance, TORQUE_LIMITS)
        self.template = mjx.make_data(self.mx)
        self.step = jax.jit(jax.vmap(self._step_one))
        cpu.close()

    # ---- one environment ---------------------------------------------------------------
    def _tcp_pose(self, d):
        return d.site_xpos[self.site], frames.mat_to_quat(d.site_xmat[self.site])

    def _law(self, d, s: EnvState):
        """The impedance torque on `d` after the position and velocity stages."""
        pos, quat = self._tcp_pose(d)
        jacp, jacr = mjx.jac(self.mx, d, pos, self.site_body)
        J = jnp.concatenate([jacp[:NA].T, jacr[:NA].T])
        M = mjx.full_m(self.mx, d)
        Minv = jnp.linalg.solve(M, jnp.eye(M.shape[0], NA, dtype=M.dtype))[:NA]
        return torque(self.gains, d.qpos[:NA], d.qvel[:NA], J, pos, quat, s.target_pos,
                      s.target_quat, d.qfrc_bias[:NA], s.q_null, s.tau_prev, Minv=Minv)

    def _substep(self, s: EnvState, _):
        """mj_step1, the law, mj_step2 (Euler): the C kernel's order."""
        m, d = self.mx, s.data
        d = mjx.fwd_position(m, d)
        d = mjx.fwd_velocity(m, d)
        tau = self._law(d, s)
        d = d.replace(ctrl=d.ctrl.at[:NA].set(tau))
        d = mjx.fwd_actuation(m, d)
        d = mjx.fwd_acceleration(m, d)
        d = mjx.solve(m, d)  # every scene has constraints (at least the finger coupling)
        d = mjx.euler(m, d)
        return s._replace(data=d, tau_prev=tau), None

    def _twist(self, d):
        """mj_objectVelocity of the TCP site in the world frame, as [linear, angular]."""
        cvel = d.cvel[self.site_body]  # [angular, linear] at the subtree CoM
        offset = d.site_xpos[self.site] - d.subtree_com[self.site_root]
        return jnp.concatenate([cvel[3:] - jnp.cross(offset, cvel[:3]), cvel[:3]])

    def _observe_and_score(self, s: EnvState):
        d = s.data
        pos, quat = self._tcp_pose(d)
        width = d.qpos[self.finger_qadr] / FINGER_MAX  # opening / max opening
        state = jnp.concatenate([pos, frames.canonical_quat(quat), self._twist(d), width[None]])
        if self.task_name == "PandaReach":
            obj = s.goal
        else:
            obj = d.qpos[self.cube_qadr:self.cube_qadr + 3]
        reward, success = self.task.score(pos, obj, xp=jnp)  # the task's own definition
        obs = {"state": state.astype(jnp.float32),
               "env_state": jnp.concatenate([obj, obj - pos]).astype(jnp.float32)}
        return jnp.concatenate([pos, quat]), obs, reward, success

    def _step_one(self, s: EnvState, action) -> StepOutput:
        a = jnp.clip(action, -1.0, 1.0)
        pos, quat = s.tcp[:3], s.tcp[3:]
        target_pos, target_quat = frames.safe_target(
            self.box, pos + a[:3] * self.task.action.step_pos,
            jnp.asarray(self.task.home_quat, pos.dtype), pos, quat)
        d = s.data
        if self.gripper:  # closedness -1..1 -> opening, per finger
            width = jnp.clip((1.0 - a[-1]) / 2.0 * 2 * FINGER_MAX, 0.0, 2 * FINGER_MAX)
            d = d.replace(ctrl=d.ctrl.at[self.gripper_act].set(width / 2))
        s = s._replace(data=d, target_pos=target_pos, target_quat=target_quat)
        s, _ = jax.lax.scan(self._substep, s, None, length=self.substeps)
        tcp, obs, reward, success = self._observe_and_score(s)
        return StepOutput(s._replace(tcp=tcp), obs, reward, success, a)


_CORES: dict[tuple, _Core] = {}


class MjxEnv:
    """N environments of one task on MJX. `reset(seeds)` returns (state, obs) with batched
    leaves; `step(state, actions[N, A])` returns a `StepOutput`. Functional: the state is a
    value, so rollouts can be replayed, forked and batched freely."""

    def __init__(self, task: str = "PandaPickCube", control_hz: float = 10.0,
                 impedance: str | ImpedanceParams = "compliant"):
        if task not in MJX_TASKS:
            raise ValueError(f"unknown MJX task {task!r}; valid: {list(MJX_TASKS)}")
        params = impedance_params(impedance)
        key = (task, float(control_hz), params)
        if key not in _CORES:
            _CORES[key] = _Core(task, control_hz, params)
        self.core = _CORES[key]
        # the CPU env that resets the scenes (its task code, seeded draws and IK)
        self.cpu = make_sim_env(task, control_hz=control_hz, impedance=params)
        self.task = self.cpu.task
        self.observation_space = self.cpu.observation_space
        self.action_space = self.cpu.action_space
        self.max_episode_steps = self.task.max_episode_steps
        self._templates: dict[int, Any] = {}

    def host_reset(self, rng: np.random.Generator) -> tuple[dict, dict]:
        """Reset the CPU env with `rng` as its generator: (MJX state fields, observation)."""
        env, w = self.cpu, self.cpu.world
        env.np_random = rng
        obs, _ = env.reset()
        d = w.data
        fields = {"qpos": d.qpos.copy(), "qvel": d.qvel.copy(), "ctrl": d.ctrl.copy(),
                  "qacc_warmstart": d.qacc_warmstart.copy(), "time": np.float64(d.time),
                  "tcp": w.tcp_pose(), "target_pos": w.target_pos.copy(),
                  "target_quat": w.target_quat.copy(), "q_null": w.q_null.copy(),
                  "tau_prev": np.asarray(w.impedance.tau_prev, float).copy(),
                  "goal": np.asarray(getattr(self.task, "goal", np.zeros(3)), float).copy()}
        return fields, obs

    def state_from_fields(self, fields: dict[str, np.ndarray]) -> EnvState:
        """A batched `EnvState` from stacked host fields (see `host_reset`)."""
        n = len(fields["qpos"])
        if n not in self._templates:
            self._templates[n] = jax.tree_util.tree_map(
                lambda x: jnp.broadcast_to(x, (n, *x.shape)), self.core.template)
        dt = self.core.template.qpos.dtype
        f = {k: jnp.asarray(np.asarray(v), dtype=dt) for k, v in fields.items()}
        data = self._templates[n].replace(qpos=f["qpos"], qvel=f["qvel"], ctrl=f["ctrl"],
                                          qacc_warmstart=f["qacc_warmstart"], time=f["time"])
        state = EnvState(data, f["tcp"], f["target_pos"], f["target_quat"], f["q_null"],
                         f["tau_prev"], f["goal"])
        # committed to the device like step()'s outputs: jit keys its cache on that, and an
        # uncommitted first state would cost a second compilation of the step
        return jax.device_put(state, jax.devices()[0])

    @staticmethod
    def fields_of(state: EnvState) -> dict[str, np.ndarray]:
        """The host copy of a state's fields (inverse of `state_from_fields`)."""
        d = state.data
        out = {k: np.array(getattr(d, k)) for k in ("qpos", "qvel", "ctrl", "qacc_warmstart",
                                                       "time")}
        out.update({k: np.array(getattr(state, k)) for k in
                    ("tcp", "target_pos", "target_quat", "q_null", "tau_prev", "goal")})
        return out

    def reset(self, seeds) -> tuple[EnvState, dict[str, np.ndarray]]:
        """One environment per seed (as `RobotEnv.reset(seed=s)`)."""
        from gymnasium.utils import seeding
        parts = [self.host_reset(seeding.np_random(int(s))[0]) for s in seeds]
        fields = {k: np.stack([p[0][k] for p in parts]) for k in parts[0][0]}
        obs = {k: np.stack([p[1][k] for p in parts]) for k in parts[0][1]}
        return self.state_from_fields(fields), obs

    def step(self, state: EnvState, actions) -> StepOutput:
        return self.core.step(state, jnp.asarray(actions, self.core.template.qpos.dtype))

    def close(self) -> None:
        self.cpu.close()
