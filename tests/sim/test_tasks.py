"""Simulated tasks through RobotEnv: safety, determinism, experts, rendering, bad input."""
import gymnasium as gym
import numpy as np
import pytest

import robot_rl  # noqa: F401  (registers the ids)
from robot_rl.registry import ENV_IDS, SIM_ENTRY_POINT
from robot_rl.sim.envs import make_sim_env
from robot_rl.sim.tasks import TASKS, make_expert, rollout

SIM_IDS = [i for i, e in ENV_IDS.items() if e.entry_point == SIM_ENTRY_POINT]


@pytest.mark.parametrize("env_id", SIM_IDS)
def test_gym_ids_make_reset_step(env_id):
    env = gym.make(env_id)
    # the time limit is the task's own episode length
    assert env.spec.max_episode_steps == env.unwrapped.task.max_episode_steps == \
        TASKS[ENV_IDS[env_id].kwargs["task"]].max_episode_steps
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, r, term, trunc, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    assert {"is_success", "intervention"} <= set(info)
    env.close()


def test_every_id_is_registered_on_import_robot_rl_alone():
    """`import robot_rl` registers the whole table (real arms too) without importing any
    robot's module; each entry point resolves, and the id the hardware modules check for is
    the one registered."""
    import subprocess
    import sys
    code = ("import sys, robot_rl, gymnasium as gym; from robot_rl.registry import ENV_IDS; "
            "assert all(gym.spec(i).entry_point == e.entry_point for i, e in ENV_IDS.items()); "
            "gym.spec('robot_rl/ROS2Arm-v0'); gym.spec('robot_rl/FrankaPegInsert-v0'); "
            "loaded = [m for m in sys.modules if m.startswith(('robot_rl.hardware.ros2', "
            "'robot_rl.hardware.franka', 'robot_rl.sim.envs', 'mujoco', 'jax', 'torch'))]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)
    from gymnasium.envs.registration import load_env_creator

    from robot_rl.hardware import franka_env, ros2
    for env_id in ENV_IDS:
        assert callable(load_env_creator(gym.spec(env_id).entry_point))
    assert {franka_env.ENV_ID, ros2.ENV_ID} <= set(ENV_IDS)


def test_safety_box_never_violated_over_10k_random_and_extreme_actions():
    env = make_sim_env("PandaPickCube")
    box, world = env.safety, env.world
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    extremes = np.array([[1, 1, 1, 1], [-1, -1, -1, -1], [1, -1, -1, 1], [-1, 1, 1, -1]], float)
    worst = 0.0
    for i in range(10_000):
        a = extremes[rng.integers(4)] * rng.uniform(1, 100) if i % 3 == 0 else rng.uniform(-1, 1, 4)
        _, _, term, trunc, _ = env.step(a)
        assert box.contains(world.target_pos, world.target_quat), (i, world.target_pos)
        tcp = world.tcp_pose()[:3]
        worst = max(worst, np.max(np.maximum(np.asarray(box.xyz_low) - tcp, tcp - box.xyz_high)))
        if term or trunc:
            env.reset(seed=i)
    # the measured TCP may lag its target but stays inside the box up to the tracking error
    assert worst < 0.015


@pytest.mark.parametrize("task", ["PandaPickCube", "SO101PickCube"])
def test_same_seed_same_episode_bit_for_bit(task):
    def episode(env, seed):
        obs, _ = env.reset(seed=seed)
        out = [obs["state"].copy(), obs["env_state"].copy()]
        rng = np.random.default_rng(123)
        for _ in range(20):
            obs, *_ = env.step(rng.uniform(-1, 1, 4))
            out += [obs["state"].copy(), obs["env_state"].copy()]
        return np.concatenate(out)
    a, b = make_sim_env(task), make_sim_env(task)
    first = episode(a, 7)
    episode(b, 3)  # a different history on the second env must not leak into the next episode
    np.testing.assert_array_equal(first, episode(b, 7))
    assert not np.array_equal(first, episode(b, 8))


@pytest.mark.parametrize("task", ["PandaReach", "PandaPickCube", "PandaPegInsert", "PandaTightInsert",
                                  "SO101Reach", "SO101PickCube"])
def test_scripted_expert_success_over_100_seeds(task):
    env = make_sim_env(task)
    expert = make_expert(env)
    wins = sum(rollout(env, expert, seed=10_000 + s)[-1] for s in range(100))
    assert wins >= 95, f"{task}: {wins}/100"


def test_images_not_blank_and_change_when_cube_moves():
    env = make_sim_env("PandaPickCube", vision=True)
    obs, _ = env.reset(seed=0)
    for cam in ("front", "wrist"):
        img = obs[cam]
        assert img.dtype == np.uint8 and img.shape == (128, 128, 3)
        assert img.std() > 10, f"{cam} image looks blank"
    task = env.task
    before = env.cameras[0].read().rgb.astype(int)
    task.world.place_body("cube", task.cube_pos + [0.0, 0.08, 0.0])
    import mujoco
    mujoco.mj_forward(task.world.model, task.world.data)
    after = env.cameras[0].read().rgb.astype(int)
    assert np.abs(after - before).sum(-1).astype(bool).mean() > 0.002  # cube pixels moved


@pytest.mark.parametrize("bad,msg", [([np.nan, 0, 0, 0], "NaN or inf"), ([0, np.inf, 0, 0], "NaN or inf"),
                                     ([0, 0, 0], "shape"), ([[0, 0, 0, 0]], "shape")])
def test_bad_actions_raise_and_leave_state_unchanged(bad, msg):
    env = make_sim_env("PandaPickCube")
    env.reset(seed=0)
    w = env.world
    qpos, time, target = w.data.qpos.copy(), w.data.time, w.target_pos.copy()
    with pytest.raises(ValueError, match=msg):
        env.step(bad)
    np.testing.assert_array_equal(w.data.qpos, qpos)
    np.testing.assert_array_equal(w.target_pos, target)
    assert w.data.time == time


def test_end_effector_frame_actions():
    env = make_sim_env("PandaReach")
    env.reset(seed=0)
    pose = env.arm.state().tcp_pose
    # gripper points down (180 deg about x): +z in the EE frame is -z in the base frame
    from dataclasses import replace
    env.task.action = replace(env.task.action, frame="ee")
    pos, _ = env.target_from_action(np.array([0, 0, 1.0]), pose)
    np.testing.assert_allclose(pos - pose[:3], [0, 0, -env.task.action.step_pos], atol=1e-3)


def test_a_yaw_only_action_holds_roll_and_pitch_at_home():
    """With yaw the only rotation the task controls, a tilted measured pose does not carry its
    tilt into the target: roll and pitch come from the home orientation, yaw from the measured
    yaw plus the action's."""
    from dataclasses import replace

    from robot_rl.controllers.frames import quat_mul, quat_to_rpy, rpy_to_quat
    env = make_sim_env("PandaReach")
    env.reset(seed=0)
    env.task.action = replace(env.task.action, dofs=("x", "y", "z", "yaw"), step_rot=0.1)
    pose = env.arm.state().tcp_pose.copy()
    tilted = quat_mul(rpy_to_quat([0.04, -0.05, 0.05]), env.task.home_quat)  # tilt + yaw
    pose[3:] = tilted
    _, quat = env.target_from_action(np.array([0, 0, 0, 0.5]), pose)
    want = quat_to_rpy(env.task.home_quat)
    got = quat_to_rpy(quat)
    np.testing.assert_allclose(np.cos(got[0] - want[0]), 1.0, atol=1e-9)  # roll at home
    assert got[1] == pytest.approx(want[1], abs=1e-9)                      # pitch at home
    assert got[2] == pytest.approx(quat_to_rpy(tilted)[2] + 0.05, abs=1e-6)  # yaw moved


def test_pick_cube_expert_lifts_to_a_drawn_height():
    """`lift_to`: each episode the expert carries the cube to its own height in the range (the
    spread a success classifier's training frames need)."""
    env = make_sim_env("PandaPickCube")
    expert = make_expert(env, seed=3, lift_to=(0.10, 0.34))
    targets, reached = [], []
    for s in range(4):
        env.reset(seed=20_000 + s)
        expert.reset()
        for _ in range(80):  # past the task's success: the sim env keeps stepping
            env.step(expert.act())
        targets.append(expert.lift_z)
        reached.append((env.task.tcp[2], env.task.lift))
    assert all(0.10 <= z <= 0.34 for z in targets) and np.ptp(targets) > 0.05
    for z, (tcp_z, lift) in zip(targets, reached):
        assert abs(tcp_z - z) < 0.01 and lift > 0.07  # the cube came along


@pytest.mark.parametrize("task", ["PandaPegInsert", "PandaTightInsert"])
def test_insertion_state_resolves_a_millimetre_at_the_hole(task):
    """The privileged state holds the tip-to-hole offset twice: in metres, and log-scaled from
    `fine_offset_scale` (1 mm) up, so the last millimetres are not lost to normalization by
    the workspace's centimetres. Checked against MuJoCo's own tip and hole positions."""
    import mujoco
    env = make_sim_env(task)
    obs, _ = env.reset(seed=0)
    t = env.task
    for dx in (0.001, -0.01, 0.0):  # the hole 1 mm, -10 mm, 0 mm in x from under the tip
        t.world.place_body("hole", [t.peg_tip[0] + dx, t.peg_tip[1], t.hole_pos[2]],
                           **({"yaw": t.hole_yaw} if task == "PandaTightInsert" else {}))
        mujoco.mj_forward(t.world.model, t.world.data)
        offset = t.hole_pos - t.peg_tip
        state = t.env_state()
        np.testing.assert_allclose(state[3:6], offset)
        np.testing.assert_allclose(state[6:9], np.sign(offset) * np.log1p(np.abs(offset) / 0.001))
        assert state[6] == pytest.approx(np.sign(dx) * np.log1p(abs(dx) / 0.001), abs=1e-6)
    assert obs["env_state"].shape == state.shape
    # the fine copy can be switched off (the observation of runs measured before it)
    assert make_sim_env(task, fine_offset_scale=None).task.env_state().shape == (state.size - 3,)
