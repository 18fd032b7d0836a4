"""The PyBullet HAL (real pybullet, DIRECT mode): same protocols, same impedance law, same
RobotEnv, same tasks and unchanged scripted experts as the MuJoCo backend."""
import numpy as np
import pytest

import pybullet  # noqa: F401,E402  (a dev dependency: CI installs it, so no skip)

from robot_rl.hardware.hal import Arm, Camera, Clock, Gripper  # noqa: E402
from robot_rl.hardware.robot_env import RobotEnv  # noqa: E402
from robot_rl.sim.tasks import ReachExpert, PickCubeExpert, make_expert, rollout  # noqa: E402
from robot_rl.sim.panda_model import HOME_Q  # noqa: E402
from robot_rl.sim.pybullet_backend import (HAND_LINK, TCP_OFFSET, BulletArm,  # noqa: E402
                                           BulletCamera, BulletWorld, make_pybullet_env)
from robot_rl.sim.world import SimClock, SimGripper  # noqa: E402  (shared by both backends)


@pytest.fixture(scope="module")
def reach_env():
    env = make_pybullet_env("PandaReach")
    yield env
    env.close()


@pytest.fixture(scope="module")
def pick_env():
    env = make_pybullet_env("PandaPickCube")
    yield env
    env.close()


def test_hal_protocols_and_same_env_class():
    w = BulletWorld()
    try:
        arm = BulletArm(w)
        assert isinstance(arm, Arm)
        assert isinstance(SimGripper(w), Gripper)
        assert isinstance(BulletCamera(w, "front", 32, 32), Camera)
        assert isinstance(BulletCamera(w, "wrist", 32, 32), Camera)
        assert isinstance(SimClock(w), Clock)
        assert w.tcp_link == 11  # panda_grasptarget, between the fingertips
        with arm as a:
            s = a.state()
        assert s.q.shape == (7,) and s.tcp_pose.shape == (7,) and s.wrench.shape == (6,)
        with pytest.raises(ValueError, match="no camera named"):
            BulletCamera(w, "top")
    finally:
        w.close()
    with pytest.raises(ValueError, match="unknown pybullet task"):
        make_pybullet_env("PandaPegInsert")


def test_tasks_match_the_mujoco_definitions():
    from robot_rl.sim.pybullet_backend import BULLET_TASKS
    from robot_rl.sim.tasks import TASKS
    for name, cls in BULLET_TASKS.items():
        b, m = cls(), TASKS[name]()
        assert (b.name, b.action, b.safety, b.max_episode_steps) == \
            (m.name, m.action, m.safety, m.max_episode_steps)


def test_tcp_jacobian_matches_finite_differences_and_hand_offset_fallback():
    w = BulletWorld()
    try:
        q = np.concatenate([HOME_Q + [0.2, 0.1, -0.2, 0.3, 0.1, -0.2, 0.3], [0.04, 0.04]])
        w.set_joints(q[:7])
        J = w.jacobian(q)
        fd, eps = np.zeros((3, 7)), 1e-3  # central differences (link poses come back as float32)
        for i in range(7):
            dq = np.zeros(7)
            dq[i] = eps
            w.set_joints(q[:7] + dq)
            plus = w.tcp_pose()[:3]
            w.set_joints(q[:7] - dq)
            fd[:, i] = (plus - w.tcp_pose()[:3]) / (2 * eps)
        np.testing.assert_allclose(J[:3, :7], fd, atol=1e-3)
        w.set_joints(q[:7])
        pose = w.tcp_pose()
        w.tcp_link, w.tcp_local = HAND_LINK, np.array([0.0, 0.0, TCP_OFFSET])  # no link 11
        np.testing.assert_allclose(w.tcp_pose(), pose, atol=1e-6)
        np.testing.assert_allclose(w.jacobian(q), J, atol=1e-9)
    finally:
        w.close()


def test_hold_still_under_gravity(reach_env):
    reach_env.reset(seed=0)
    arm, world = reach_env.arm, reach_env.world
    q0 = arm.state().q
    world.advance(1.0)
    assert np.abs(arm.state().q - q0).max() < 1e-3
    assert np.abs(arm.state().tcp_twist).max() < 1e-3


def test_five_cm_step_tracked_within_3mm(reach_env):
    reach_env.reset(seed=1)
    arm, world = reach_env.arm, reach_env.world
    start = arm.state().tcp_pose
    target = start[:3] + [0.05, 0.0, 0.0]
    arm.set_target_pose(target, start[3:])
    xs = []
    for _ in range(100):  # 2 s at 500 Hz, sampled every 10 ms
        world.step(5)
        xs.append(arm.state().tcp_pose[:3])
    xs = np.array(xs)
    assert np.linalg.norm(xs[-1] - target) < 0.003
    clip = world.impedance.params.clip_high[0]
    assert xs[:, 0].max() - target[0] < clip          # overshoot bounded by the error clip
    assert np.abs(xs[:, 1:] - start[1:3]).max() < clip  # no big excursion off-axis
    # orientation held
    assert np.abs(arm.state().tcp_pose[3:] - start[3:]).max() < 0.02


def test_contact_force_bounded_by_clip_when_pressing_into_table(reach_env):
    reach_env.reset(seed=2)
    arm, world = reach_env.arm, reach_env.world
    start = arm.state().tcp_pose
    arm.set_target_pose([start[0], start[1], -0.05], start[3:])
    world.advance(1.5)
    fz = arm.state().wrench[2]
    k, clip = world.impedance.params.K[2], world.impedance.params.clip_high[2]
    assert 0.8 * k * clip < fz < 1.2 * k * clip  # the table pushes up with ~K * clip


def test_reach_expert_succeeds_on_pybullet(reach_env):
    assert isinstance(reach_env, RobotEnv) and reach_env.unwrapped.task.name == "PandaReach"
    expert = make_expert(reach_env)
    assert isinstance(expert, ReachExpert)
    wins = [rollout(reach_env, expert, seed)[-1] for seed in range(10)]
    assert sum(wins) >= 9, wins


def test_pick_cube_expert_succeeds_on_pybullet(pick_env):
    assert pick_env.unwrapped.task.name == "PandaPickCube"
    expert = make_expert(pick_env)
    assert isinstance(expert, PickCubeExpert)
    wins = []
    for seed in range(10):
        ok = rollout(pick_env, expert, seed)[-1]
        wins.append(ok)
        if ok:  # lifted by the fingers, not balanced on them
            assert pick_env.gripper.state().grasped
    assert sum(wins) >= 7, wins


def test_reset_randomizes_from_the_seed_only(pick_env):
    starts = []
    for seed in (0, 1, 0):
        obs, _ = pick_env.reset(seed=seed)
        starts.append(np.concatenate([obs["state"][:3], obs["env_state"]]))
    np.testing.assert_array_equal(starts[0], starts[2])
    assert np.abs(starts[0] - starts[1]).max() > 1e-3
    cube = starts[0][3:]
    task = pick_env.task
    assert np.all(cube[:2] >= task.cube_low - 1e-3) and np.all(cube[:2] <= task.cube_high + 1e-3)
    assert abs(cube[2] - task.half) < 2e-3  # resting on the table


def test_same_seed_same_episode_bit_for_bit():
    def episode(env, seed):
        obs, _ = env.reset(seed=seed)
        out = [obs["state"].copy(), obs["env_state"].copy()]
        rng = np.random.default_rng(123)
        for _ in range(15):
            obs, *_ = env.step(rng.uniform(-1, 1, 4))
            out += [obs["state"].copy(), obs["env_state"].copy()]
        return np.concatenate(out)
    a, b = make_pybullet_env("PandaPickCube"), make_pybullet_env("PandaPickCube")
    try:
        first = episode(a, 7)
        episode(b, 3)  # a different history on the second env must not leak into the next one
        np.testing.assert_array_equal(first, episode(b, 7))
        np.testing.assert_array_equal(first, episode(a, 7))
        assert not np.array_equal(first, episode(b, 8))
    finally:
        a.close()
        b.close()


def test_vision_observations_uint8_and_show_the_scene():
    env = make_pybullet_env("PandaPickCube", vision=True, image_size=64)
    try:
        obs, _ = env.reset(seed=0)
        assert "env_state" not in obs
        assert env.observation_space.contains(obs)
        for name in ("front", "wrist"):
            img = obs[name]
            assert img.dtype == np.uint8 and img.shape == (64, 64, 3)
            assert img.std() > 10 and len(np.unique(img.reshape(-1, 3), axis=0)) >= 4, name
        def red(im):
            return np.sum((im[..., 0] > 150) & (im[..., 1] < 80) & (im[..., 2] < 80))
        assert red(obs["front"]) > 0  # the red cube is in view of both cameras
        assert red(obs["wrist"]) > 0
        obs2, *_ = env.step(np.array([0.0, 0.0, 1.0, -1.0]))  # arm rises: the wrist view changes
        assert not np.array_equal(obs["wrist"], obs2["wrist"])
        assert env.observation_space.contains(obs2)
    finally:
        env.close()
