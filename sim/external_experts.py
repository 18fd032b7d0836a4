"""Scripted experts for simulated tasks that we did not write: demos for `robot-rl train` on
gym-hil's and gymnasium-robotics' envs, and a check that those envs are solvable as installed.

Each is a FACTORY: `expert(env)` takes the env (raw or wrapped; only its spaces are checked) and
returns `policy(obs) -> action`, where `obs` is the env's OWN raw observation and the action is
in the env's OWN action space and units. Both policies read the observation only (no simulator
state) and keep no memory between calls, so one policy serves any number of episodes, resets
need no hook, and a human intervention mid-episode is simply continued from.

Nothing of gym_hil or gymnasium_robotics is imported here: this module imports on a bare install.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

Policy = Callable[[dict], np.ndarray]


def _check_box(env, shape: tuple[int, ...], what: str) -> None:
    space = env.action_space
    if getattr(space, "shape", None) != shape or not (np.all(space.low == -1.0)
                                                      and np.all(space.high == 1.0)):
        raise ValueError(f"{what} expects a {shape} action space in [-1, 1], got {space}")


# ---- gym-hil: gym_hil/PandaPickCubeBase-v0 ----------------------------------------------------
# Facts of gym-hil 0.1.14 (gym_hil/envs/panda_pick_gym_env.py, gym_hil/mujoco_gym_env.py):
# obs["agent_pos"] = [arm qpos (7), arm qvel (7), gripper command (1, 0 open .. 255 closed),
# pinch-site xyz (3)]; obs["environment_state"] = block centre xyz (a 4 cm cube resting at
# z = 0.02). Action (7,) in [-1, 1]: [dx, dy, dz] in METRES added to the operational-space
# target (a mocap body, clipped to x 0.2..0.6, y -0.3..0.3, z 0..0.5), [rx, ry, rz] ignored,
# and a gripper DELTA added to the command in [0, 1] (x255). 10 Hz. Sparse reward 1 when the
# block is more than 0.1 m above its start; that also terminates the episode.
_HIL_AGENT_DIM = 18
_HIL_GRIP_CMD, _HIL_TCP = 14, slice(15, 18)
_HIL_MAX_GRIPPER = 255.0


def gym_hil_pick_cube_expert(env, max_step: float = 0.03, hover: float = 0.06,
                             lift_to: float = 0.25, close_rate: float = 0.25) -> Policy:
    """Expert for gym-hil's `gym_hil/PandaPickCubeBase-v0` (state observations,
    `image_obs=False`; with or without `random_block_position`), raw (7-D actions in metres) or
    under gym-hil's `EEActionWrapper(use_gripper=True)` (4-D, scaled by its step size).

    Reads only its observation: the pinch-site position, the gripper command and the block
    position. What it does follows from those alone (no phase memory):
      * gripper not commanded closed: above the block (`hover` m over it), then down until the
        pinch point is at the block's centre, then close by `close_rate` per step;
      * while the gripper is closing (command between open and closed) the arm holds still, so
        the fingers shut around the block before it is lifted (the command is the timer);
      * closed with the block between the fingers: lift the block to `lift_to` m;
      * closed without it (a missed grasp, the block slipped): open, and start over.
    Each step moves the arm's target at most `max_step` m (the env applies the action in metres
    to its operational-space target with no limit of its own).

    gym-hil draws the random block position from the GLOBAL `np.random`, not from
    `reset(seed=...)`: call `np.random.seed(seed)` before `reset` for reproducible episodes.
    """
    ee_step = None
    if getattr(env.action_space, "shape", None) == (4,):
        # under gym-hil's own EEActionWrapper(use_gripper=True), as LeRobot's HIL-SERL runs it:
        # xyz in [-1, 1] times its step size, gripper in [0, 2] (1 + the delta below)
        size = env.get_wrapper_attr("ee_action_step_size")
        ee_step = np.array([size["x"], size["y"], size["z"]], float)
        max_step = min(max_step, float(ee_step.min()))
    else:
        _check_box(env, (7,), "gym_hil_pick_cube_expert")
    obs_space = getattr(env, "observation_space", None)
    if obs_space is not None and hasattr(obs_space, "spaces"):
        if "environment_state" not in obs_space.spaces:
            raise ValueError("gym_hil_pick_cube_expert needs the block position: make the env "
                             "with image_obs=False (obs['environment_state'])")

    def policy(obs: dict) -> np.ndarray:
        agent = np.asarray(obs["agent_pos"], float).reshape(-1)
        if agent.shape[0] != _HIL_AGENT_DIM:
            raise ValueError(f"agent_pos has {agent.shape[0]} entries, expected {_HIL_AGENT_DIM}")
        tcp, block = agent[_HIL_TCP], np.asarray(obs["environment_state"], float).reshape(3)
        grip = agent[_HIL_GRIP_CMD] / _HIL_MAX_GRIPPER  # 0 open .. 1 closed (commanded)
        grasp_z = block[2]  # pinch point at the block's centre

        def toward(target) -> np.ndarray:
            d = np.asarray(target, float) - tcp
            n = np.linalg.norm(d)
            return d if n <= max_step else d * (max_step / n)

        xy_err = np.linalg.norm(tcp[:2] - block[:2])
        held = np.linalg.norm(block - tcp) < 0.02  # the block sits between the fingers
        if grip >= 0.999:
            if held:  # lift
                move, g = toward([block[0], block[1], lift_to]), 1.0
            else:  # missed: open and go again
                move, g = np.zeros(3), -1.0
        elif grip > 0.0:  # closing: hold still until the command reaches "closed"
            move, g = np.zeros(3), close_rate
        elif xy_err > 0.01:  # align above the block (rise first if low, so nothing is swept)
            z = max(block[2] + hover, tcp[2]) if xy_err > 0.03 else block[2] + hover
            move, g = toward([block[0], block[1], z]), -1.0
        elif tcp[2] - grasp_z > 0.005:  # descend around it
            move, g = toward([block[0], block[1], grasp_z]), -1.0
        else:  # at the block: start closing
            move, g = np.zeros(3), close_rate
        if ee_step is not None:
            return np.concatenate([np.clip(move / ee_step, -1, 1), [g + 1.0]]).astype(np.float32)
        return np.concatenate([move, np.zeros(3), [g]]).astype(np.float32)

    return policy


# ---- gymnasium-robotics: FetchReach-v4 (and -v1) ------------------------------------------
# obs = {"observation": [grip xyz, ...], "achieved_goal": grip xyz, "desired_goal": goal xyz};
# action (4,) in [-1, 1]: [dx, dy, dz] scaled by 0.05 m per step, gripper (irrelevant here).
# Success: |grip - goal| < 0.05 m; reward -1 per step until then (no termination), 50 steps.
_FETCH_POS_SCALE = 0.05


def fetch_reach_expert(env, gain: float = 1.0) -> Policy:
    """Expert for gymnasium-robotics' `FetchReach-v4` (`-v1` too): a proportional step of the
    gripper toward the goal, read from the observation (`observation[:3]`, `desired_goal`)."""
    _check_box(env, (4,), "fetch_reach_expert")

    def policy(obs: dict) -> np.ndarray:
        grip = np.asarray(obs["observation"], float)[:3]
        goal = np.asarray(obs["desired_goal"], float)
        a = np.clip(gain * (goal - grip) / _FETCH_POS_SCALE, -1.0, 1.0)
        return np.append(a, 0.0).astype(np.float32)

    return policy


EXTERNAL_EXPERTS = {"gym_hil/PandaPickCubeBase-v0": gym_hil_pick_cube_expert,
                    "FetchReach-v4": fetch_reach_expert, "FetchReach-v1": fetch_reach_expert}
