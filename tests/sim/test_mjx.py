"""The MJX backend (sim/mjx) against the CPU sim it ports.

- the JAX impedance law, frame math and safety box equal the numpy ones on random states
  (float64: to rounding; float32: within the stated tolerance);
- MJX and CPU MuJoCo trajectories of PandaPickCube under the same random actions agree for the
  first second of simulated time (10 policy steps, 500 physics substeps);
- the scripted expert succeeds on the same seeds, in the same number of steps, on both;
- `robot-rl eval RUN_DIR --backend mjx --envs N` agrees with the CPU evaluation of the same
  policy on the same seeds.

JIT compilation dominates the cost (about 35 s of CPU time per batch size), so every test
steps PandaPickCube with the same batch size, N_ENVS, and shares one compiled step function.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from robot_rl.sim.mjx.env import MjxEnv  # noqa: I001  (first: sets the XLA CPU flag)
from robot_rl.sim.mjx.experts import BatchedExpert
from robot_rl.sim.mjx.vector_env import MjxVectorEnv

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import mujoco  # noqa: E402

from robot_rl.controllers.frames import mat_to_quat, orientation_error, rpy_to_quat  # noqa: E402
from robot_rl.controllers.impedance import CartesianImpedance, ImpedanceParams  # noqa: E402
from robot_rl.sim.envs import make_sim_env  # noqa: E402
from robot_rl.sim.tasks import TASKS, make_expert  # noqa: E402
from robot_rl.sim.mjx import frames as jframes  # noqa: E402
from robot_rl.sim.mjx.impedance import Gains, torque  # noqa: E402
from robot_rl.sim.panda_model import HOME_Q, TORQUE_LIMITS  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
N_ENVS = 4
TASK = "PandaPickCube"
# MJX (float32, MJX collision and solver code) vs CPU MuJoCo (float64) after 1 s of the same
# actions; measured worst cases are 10-100x below these (README: MJX section)
TOL = {"tcp_pos_m": 2e-5, "tcp_quat": 2e-5, "tcp_twist": 5e-4, "gripper": 2e-5, "object_m": 2e-5}


# ---- the law, frames and safety box ----------------------------------------------------
def _law_inputs(rng, world):
    """A random arm state of the CPU world and everything the law reads from it (float64)."""
    m, d = world.model, world.data
    world.set_joints(HOME_Q + rng.normal(scale=0.3, size=7))
    d.qvel[:7] = rng.normal(scale=0.5, size=7)
    mujoco.mj_forward(m, d)
    jacp, jacr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
    mujoco.mj_jacSite(m, d, jacp, jacr, world.tcp_site)
    unit = np.zeros((7, m.nv))
    unit[np.arange(7), np.arange(7)] = 1.0
    sol = np.zeros_like(unit)
    mujoco.mj_solveM(m, d, sol, unit)
    pos = d.site_xpos[world.tcp_site].copy()
    quat = mat_to_quat(d.site_xmat[world.tcp_site].reshape(3, 3))
    return dict(q=d.qpos[:7].copy(), dq=d.qvel[:7].copy(), J=np.vstack([jacp[:, :7], jacr[:, :7]]),
                pos=pos, quat=quat, target_pos=pos + rng.normal(scale=0.02, size=3),
                target_quat=rpy_to_quat(rng.normal(scale=0.1, size=3)) if rng.random() < 0.5
                else quat, bias=d.qfrc_bias[:7].copy(), q_null=HOME_Q + rng.normal(scale=0.2, size=7),
                Minv=sol[:, :7].copy())


def _compare_laws(dtype, rtol, atol):
    world = make_sim_env(TASK).world
    rng = np.random.default_rng(0)
    law = jax.jit(torque)
    law_static = jax.jit(lambda g, *a: torque(g, *a, Minv=None))
    worst = 0.0
    for i in range(40):
        params = ImpedanceParams(stiffness=rng.uniform(100, 3000, 6),
                                 max_torque_rate=rng.uniform(0.5, 5))
        x = _law_inputs(rng, world)
        ref = CartesianImpedance(params, torque_limits=np.array(TORQUE_LIMITS, float))
        ref.tau_prev = x["bias"] + rng.normal(scale=3.0, size=7)  # exercises the rate limit
        tau_prev = ref.tau_prev.copy()
        Minv = x.pop("Minv")
        Minv = Minv if i % 4 else None  # every 4th: the static projector
        expected = ref.torque(**x, Minv=Minv)
        g = Gains.from_params(params, TORQUE_LIMITS)
        args = [np.asarray(x[k], dtype) for k in ("q", "dq", "J", "pos", "quat", "target_pos",
                                                   "target_quat", "bias", "q_null")]
        tau_prev = np.asarray(tau_prev, dtype)
        got = (law(g, *args, tau_prev, Minv=np.asarray(Minv, dtype)) if Minv is not None
               else law_static(g, *args, tau_prev))
        assert np.asarray(got).dtype == dtype
        np.testing.assert_allclose(np.asarray(got), expected, rtol=rtol, atol=atol)
        worst = max(worst, float(np.abs(np.asarray(got) - expected).max()))
    return worst


def test_jax_law_equals_numpy_law_float64():
    with jax.enable_x64(True):
        _compare_laws(np.float64, rtol=1e-9, atol=1e-9)


def test_jax_law_float32_within_stated_tolerance():
    # float32 (MJX's default): measured worst 2.6e-5 Nm on these states (torques up to 87 Nm)
    assert _compare_laws(np.float32, rtol=0, atol=2e-4) < 2e-4


def test_frames_and_safety_box_equal_numpy():
    rng = np.random.default_rng(1)
    box = make_sim_env(TASK).task.safety
    with jax.enable_x64(True):
        m2q, oe = jax.jit(jframes.mat_to_quat), jax.jit(jframes.orientation_error)
        safe = jax.jit(lambda *a: jframes.safe_target(box, *a))
        for i in range(200):
            # rotations near 180 degrees too: all four branches of Shepperd's method
            q = rng.normal(size=4)
            q[3] *= 0.05 if i % 2 else 1.0
            q /= np.linalg.norm(q)
            R = jframes.quat_to_mat(q)
            np.testing.assert_allclose(m2q(R), mat_to_quat(np.asarray(R)), atol=1e-12)
            q2 = rpy_to_quat(rng.normal(scale=0.3, size=3))
            np.testing.assert_allclose(oe(q2, q), orientation_error(q2, q), atol=1e-9)
            lo, hi = np.asarray(box.xyz_low), np.asarray(box.xyz_high)
            margin = 0.1 if i % 3 == 0 else 0.0  # a third of the references outside the box
            ref_pos = rng.uniform(lo - margin, hi + margin)
            ref_quat = rpy_to_quat([np.pi + rng.normal(scale=0.2), *rng.normal(scale=0.2, size=2)])
            target = ref_pos + rng.normal(scale=0.05, size=3)
            tq = rpy_to_quat([np.pi + rng.normal(scale=0.5), *rng.normal(scale=0.5, size=2)])
            want = box.apply(target, tq, ref_pos=ref_pos, ref_quat=ref_quat)
            got = safe(target, tq, ref_pos, ref_quat)
            np.testing.assert_allclose(got[0], want[0], atol=1e-12)
            np.testing.assert_allclose(got[1], want[1], atol=1e-9)


@pytest.mark.parametrize("task", ["PandaReach", "PandaPickCube", "PandaPegInsert"])
def test_task_score_on_jax_equals_numpy(task):
    """The MJX env scores with the task's own `score` on jax.numpy: over random TCP (peg tip)
    and object positions, successes and failures both, it gives what the MuJoCo task gives."""
    t, rng = TASKS[task](), np.random.default_rng(2)
    # where success lies, relative to the object
    aim = ([0, 0, t.hole_depth - t.insert_depth - 0.002] if task == "PandaPegInsert" else 0.0)
    wins = 0
    with jax.enable_x64(True):
        score = jax.jit(lambda tcp, obj: t.score(tcp, obj, xp=jnp))
        for i in range(300):
            obj = rng.uniform([0.35, -0.15, 0.0], [0.55, 0.15, 0.1])
            if task == "PandaPickCube" and i % 2:
                obj[2] = t.half + rng.uniform(0.0, 2 * t.lift_height)  # lifted or not
            tcp = obj + aim + rng.normal(scale=[0.001, 0.05][i % 2], size=3)
            want_reward, want_success = t.score(tcp, obj)
            got_reward, got_success = score(tcp, obj)
            np.testing.assert_allclose(float(got_reward), float(want_reward), rtol=1e-12)
            assert bool(got_success) == bool(want_success)
            wins += bool(want_success)
    assert 0 < wins < 300


# ---- batched environments (one compiled step, N_ENVS wide) ------------------------------
@pytest.fixture(scope="module")
def mjx_env():
    env = MjxEnv(TASK)
    yield env
    env.close()


def test_reset_observation_equals_cpu_env(mjx_env):
    cpu = make_sim_env(TASK)
    seeds = [3, 11, 12, 400]
    _, obs = mjx_env.reset(seeds)
    for i, s in enumerate(seeds):
        ref, _ = cpu.reset(seed=s)
        for k in ref:
            np.testing.assert_array_equal(obs[k][i], ref[k])


def test_mjx_tracks_cpu_trajectories_for_one_second(mjx_env):
    cpu = make_sim_env(TASK)
    rng = np.random.default_rng(7)
    seeds = list(range(100, 100 + N_ENVS))
    steps = 10  # 1 s of simulated time at 10 Hz
    # random moves plus a gripper that opens and closes: arm, fingers and cube all move
    actions = rng.uniform(-1, 1, (steps, N_ENVS, 4)).astype(np.float32)
    state, _ = mjx_env.reset(seeds)
    mjx_obs = []
    for k in range(steps):
        out = mjx_env.step(state, actions[k])
        state = out.state
        mjx_obs.append({key: np.asarray(v) for key, v in out.obs.items()})
    err = dict.fromkeys(TOL, 0.0)
    for i, s in enumerate(seeds):
        cpu.reset(seed=s)
        for k in range(steps):
            ref, *_ = cpu.step(actions[k, i])
            d = np.abs(mjx_obs[k]["state"][i] - ref["state"])
            e = np.abs(mjx_obs[k]["env_state"][i] - ref["env_state"])
            for name, v in (("tcp_pos_m", d[:3]), ("tcp_quat", d[3:7]), ("tcp_twist", d[7:13]),
                            ("gripper", d[13:]), ("object_m", e)):
                err[name] = max(err[name], float(v.max()))
    assert all(err[k] < TOL[k] for k in TOL), err


def test_scripted_expert_succeeds_on_the_same_seeds_in_the_same_steps(mjx_env):
    venv = MjxVectorEnv(TASK, N_ENVS)
    assert venv.env.core is mjx_env.core  # the compiled step is shared
    expert = BatchedExpert(venv)
    cpu = make_sim_env(TASK)
    cpu_expert = make_expert(cpu)
    mjx_runs, cpu_runs = [], []
    for start in (0, N_ENVS):  # 8 episodes, seeds 0..7
        obs, _ = venv.reset(seed=start)
        expert.reset()
        done = np.zeros(N_ENVS, bool)
        length, success = np.zeros(N_ENVS, int), np.zeros(N_ENVS, bool)
        autoreset_obs = [None] * N_ENVS
        while not all(o is not None for o in autoreset_obs):
            obs, reward, term, trunc, info = venv.step(expert.act(obs))
            for i in np.flatnonzero(done):  # gymnasium NEXT_STEP autoreset: a fresh episode
                if autoreset_obs[i] is None:
                    assert reward[i] == 0 and not term[i] and not trunc[i]
                    autoreset_obs[i] = {k: v[i].copy() for k, v in obs.items()}
            live = ~done
            length[live] += 1
            success[live] = info["is_success"][live]
            done |= live & (term | trunc)
        mjx_runs += list(zip(success.tolist(), length.tolist()))
        for i in range(N_ENVS):
            obs_c, _ = cpu.reset(seed=start + i)
            cpu_expert.reset()
            n, end = 0, False
            while not end:
                obs_c, _, term_c, trunc_c, info_c = cpu.step(cpu_expert.act(obs_c))
                n, end = n + 1, term_c or trunc_c
            cpu_runs.append((bool(info_c["is_success"]), n))
            # the next episode continues env i's own generator, as RobotEnv.reset() does
            nxt, _ = cpu.reset()
            for k in nxt:
                np.testing.assert_array_equal(autoreset_obs[i][k], nxt[k])
    assert np.mean([s for s, _ in cpu_runs]) >= 0.75  # the expert works on the CPU sim
    assert [s for s, _ in mjx_runs] == [s for s, _ in cpu_runs]
    assert all(abs(a[1] - b[1]) <= 1 for a, b in zip(mjx_runs, cpu_runs)), (mjx_runs, cpu_runs)


def test_vector_env_rejects_bad_input(mjx_env):
    venv = MjxVectorEnv(TASK, N_ENVS)
    with pytest.raises(RuntimeError, match="reset"):
        venv.step(np.zeros((N_ENVS, 4)))
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        venv.step(np.zeros((N_ENVS, 3)))
    with pytest.raises(ValueError, match="NaN"):
        venv.step(np.full((N_ENVS, 4), np.nan))
    with pytest.raises(ValueError, match="seeds"):
        venv.reset(seed=[1, 2])
    with pytest.raises(ValueError, match="MJX task"):
        MjxEnv("PandaPegInsert")
    from robot_rl.sim.mjx.vector_env import make_mjx_vector_env
    with pytest.raises(ValueError, match="state observations"):
        make_mjx_vector_env("robot_rl/PandaPickCubeVision-v0", 2)
    with pytest.raises(ValueError, match="not supported"):
        make_mjx_vector_env("robot_rl/PandaPickCube-v0", 2, frobnicate=1)


def _untrained_run_dir(root):
    """A run directory holding an untrained agent, saved by the trainer's checkpoint code."""
    import torch

    from robot_rl import config as cfgmod
    from robot_rl import train
    from robot_rl.agents.sac import SACAgent
    from robot_rl.checkpoint import save_checkpoint
    cfg = train.load_config(str(REPO / "config" / "pick_cube.yaml"),
                            [f"runs_dir={root}", "name=untrained", "env.kwargs.reward_type=dense"])
    run_dir = root / "untrained"
    run_dir.mkdir()
    cfgmod.save(cfg, run_dir / "config.yaml")
    env = train.make_env(cfg)
    agent = SACAgent(env.observation_space, env.action_space.shape[0], cfg.agent, seed=0)
    # normalize inputs like a trained agent, so the random actor reacts to the state
    obs = [env.reset(seed=s)[0] for s in range(16)]
    agent.set_obs_normalization({k: np.stack([o[k] for o in obs]) for k in obs[0]})
    save_checkpoint(run_dir / "checkpoints", 0,
                    {"agent.pt": lambda p: torch.save(agent.state_dict(), p)})
    env.close()
    return run_dir


@pytest.mark.slow
def test_eval_cli_mjx_backend_agrees_with_cpu_eval(mjx_env, tmp_path, capsys):
    from robot_rl import cli
    run_dir = _untrained_run_dir(tmp_path)
    args = ["eval", str(run_dir), "--episodes", str(N_ENVS), "--seed", "500"]
    assert cli.main(args + ["--backend", "mjx", "--envs", str(N_ENVS)]) == 0
    mjx_res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert cli.main(args) == 0
    cpu_res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert mjx_res["backend"] == "mjx" and mjx_res["envs"] == N_ENVS
    assert mjx_res["episodes"] == cpu_res["episodes"] == N_ENVS
    assert mjx_res["success_rate"] == cpu_res["success_rate"]
    assert mjx_res["length"] == cpu_res["length"]
    # dense return summed over up to 50 steps: trajectories agree, so returns do too
    assert abs(mjx_res["return"] - cpu_res["return"]) < 0.05, (mjx_res, cpu_res)
