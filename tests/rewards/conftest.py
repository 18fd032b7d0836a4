"""Shared fixtures for the reward-model tests: one thread for torch (the machine is shared), and
one set of rendered PandaPickCube scripted rollouts (64x64 front + wrist cameras, continuing
past success) reused by the classifier, perceptual and CLIP tests."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_rl.bench.classifier_reward import sim_success_frames
from robot_rl.rewards.classifier import preload_torch_before_rendering

torch.set_num_threads(1)
preload_torch_before_rendering()  # triton after an EGL render segfaults (see its docstring)


@pytest.fixture(scope="session")
def pick_frames() -> dict:
    """20 episodes x 51 frames; a quarter are deliberately botched (the gripper never closes),
    so 'arm up, cube on the table' negatives exist."""
    return sim_success_frames("PandaPickCube", episodes=20, image_size=64,
                              cameras=("front", "wrist"), seed=0, fail_prob=0.25)


@pytest.fixture(scope="session")
def pick_demos(pick_frames) -> list:
    """Successful episodes cut at their first success, with true progress t / T_success."""
    d = pick_frames
    out = []
    for e in np.unique(d["episode"]):
        fs = d["first_success"][e]
        if fs < 0:
            continue
        m = (d["episode"] == e) & (d["t"] <= fs)
        out.append(({k: v[m] for k, v in d["images"].items()}, d["t"][m] / fs))
    return out
