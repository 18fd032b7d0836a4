"""PandaRelocate (forward A -> B, backward B -> A) on the real MuJoCo env, and the reset-free
episodes it exists for: `reset(options={"reset_free": True, "direction": ...})`."""
import gymnasium as gym
import numpy as np
import pytest

import robot_rl  # noqa: F401  (registers the ids)
from robot_rl.sim.tasks import PandaRelocate, make_expert, rollout
from robot_rl.sim.tasks.base import TABLE_Z


def in_zone(task, zone, xy):
    return bool(np.all(np.abs(np.asarray(xy) - task.zones[zone]) <= task.zone_half))


@pytest.mark.parametrize("direction", PandaRelocate.directions)
def test_reset_puts_the_cube_in_the_start_zone_and_the_expert_moves_it(direction):
    env = gym.make("robot_rl/PandaRelocate-v0", direction=direction)
    task = env.unwrapped.task
    expert = make_expert(env, seed=0)
    successes = []
    for seed in range(8):
        env.reset(seed=seed)
        start = task.cube_pos
        assert in_zone(task, task.start_zone, start[:2]) and not in_zone(task, task.goal_zone, start[:2])
        assert abs(start[2] - (TABLE_Z + task.half)) < 0.005
        *_, success = rollout(env, expert, seed)
        successes.append(success)
        if success:
            assert in_zone(task, task.goal_zone, task.cube_pos[:2])
    assert np.mean(successes) >= 0.9, successes
    env.close()


def test_holding_the_cube_over_the_goal_is_not_success():
    """Success needs the cube resting in the zone and let go, not carried above it."""
    env = gym.make("robot_rl/PandaRelocate-v0", reward_type="dense")
    task = env.unwrapped.task
    expert = make_expert(env, seed=0)
    env.reset(seed=3)
    expert.reset()
    held_over_goal = 0
    for _ in range(env.spec.max_episode_steps):
        if expert.phase >= 4:  # carried to above the goal: hold it there, closed
            a = np.append(expert.move(np.array([*task.goal, expert.carry_z])), 1.0).astype(np.float32)
        else:
            a = expert.act()
        _, reward, terminated, _, info = env.step(a)
        assert not terminated and not info["is_success"]
        if in_zone(task, task.goal_zone, task.cube_pos[:2]) and task.cube_pos[2] > TABLE_Z + 0.08:
            held_over_goal += 1
            assert 0.5 < reward < 0.7 + 1e-6  # reach + carry terms, no success term
    assert held_over_goal >= 5
    env.close()


def test_reset_free_legs_alternate_without_touching_the_scene():
    """The loop reset-free training runs: forward, then backward from wherever forward left
    the cube, and so on. A reset-free reset changes nothing physical and moves nothing."""
    env = gym.make("robot_rl/PandaRelocate-v0")
    u = env.unwrapped
    task = u.task
    expert = make_expert(env, seed=1)
    env.reset(seed=0)
    legs = []
    for leg in range(6):
        direction = task.directions[leg % 2]
        cube_before, tcp_before = task.cube_pos, task.tcp
        target_before = u.arm.state().tcp_pose.copy()
        obs, info = env.reset(options={"reset_free": True, "direction": direction})
        assert task.direction == direction and not info["is_success"]
        np.testing.assert_array_equal(task.cube_pos, cube_before)
        np.testing.assert_array_equal(task.tcp, tcp_before)
        np.testing.assert_array_equal(u.arm.state().tcp_pose, target_before)
        np.testing.assert_allclose(obs["env_state"][6:], task.zones[task.goal_zone])
        expert.reset()
        success = False
        for _ in range(env.spec.max_episode_steps):
            _, _, terminated, truncated, info = env.step(expert.act())
            if terminated or truncated:
                success = bool(info["is_success"])
                break
        legs.append(success)
        assert in_zone(task, task.goal_zone, task.cube_pos[:2]) == success
    assert all(legs), legs
    env.close()


def test_home_arm_resets_only_the_arm():
    """`home_arm` (reset-free training's default, as SERL's robot resets itself): the arm goes
    back to its start region with the gripper open, and a cube it was holding drops where it
    is; nothing else is moved."""
    env = gym.make("robot_rl/PandaRelocate-v0")
    task = env.unwrapped.task
    expert = make_expert(env, seed=2)
    env.reset(seed=3)
    expert.reset()
    for _ in range(env.spec.max_episode_steps):  # until the cube is carried up
        env.step(expert.act())
        if task.cube_pos[2] > TABLE_Z + task.half + 0.05:
            break
    held = task.cube_pos.copy()
    assert held[2] > TABLE_Z + task.half + 0.05
    env.reset(options={"reset_free": True, "home_arm": True, "direction": "backward"})
    assert np.all(np.abs(task.tcp - task.start_pos) <= task.start_noise + 0.01)
    assert env.unwrapped.gripper.state().width > 2 * task.half + 0.005  # open
    np.testing.assert_allclose(task.cube_pos[:2], held[:2], atol=0.03)  # dropped in place
    assert task.cube_pos[2] < held[2] - 0.03
    env.close()


def test_direction_errors_name_the_choices():
    with pytest.raises(ValueError, match="forward"):
        gym.make("robot_rl/PandaRelocate-v0", direction="sideways")
    env = gym.make("robot_rl/PandaReach-v0")
    with pytest.raises(ValueError, match="PandaReach has no directions"):
        env.reset(options={"direction": "backward"})
    env.close()


def test_vision_variant_shows_both_zones():
    env = gym.make("robot_rl/PandaRelocateVision-v0", image_size=96)
    obs, _ = env.reset(seed=0)
    task = env.unwrapped.task
    img = obs["front"].astype(int)
    for zone, rgba in task.zone_rgba.items():
        colour = np.array(rgba[:3]) * 255
        close = np.abs(img - colour).max(axis=-1) < 60
        assert close.sum() > 20, zone  # the pad's colour is on screen
    assert "env_state" not in obs
    env.close()
