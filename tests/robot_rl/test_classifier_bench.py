"""The label-error recorder of `robot-rl bench classifier-reward` (HIL-SERL's human labeller,
played by the simulator) on a real vision env driven by the scripted expert."""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from robot_rl.bench.classifier_reward import LabelErrorRecorder, clear_label
from robot_rl.rewards.base import RewardModel, RewardWrapper


class Constant(RewardModel):
    """Claims success on every frame (or on none): its errors are known exactly."""
    has_success = True

    def __init__(self, claim: bool):
        self.claim = claim

    def success(self, observations):
        return np.full(len(observations["state"]), self.claim)

    def __call__(self, observations):
        return self.success(observations).astype(np.float32)


class KeepGoing(gym.Wrapper):
    """The task's success no longer ends the episode: the expert keeps lifting."""

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        return obs, r, False, trunc, info


def _rollout(claim: bool, margin: float = 0.02):
    from robot_rl.sim.envs import make_sim_env
    from robot_rl.sim.tasks import make_expert
    base = make_sim_env("PandaPickCube", vision=True, image_size=32)
    env = LabelErrorRecorder(RewardWrapper(KeepGoing(base), Constant(claim)), ("front",), margin)
    expert = make_expert(env, fail_prob=0.0, seed=0)
    lifts = []
    try:
        obs, _ = env.reset(seed=777)
        expert.reset()
        for _ in range(50):
            obs = env.step(expert.act(obs))[0]
            lifts.append(base.task.lift)
    finally:
        env.close()
    return env, np.array(lifts)


def test_clear_label_leaves_out_the_band_past_the_threshold():
    assert clear_label(0.049, 0.05, 0.02) is False
    assert clear_label(0.05, 0.05, 0.02) is None and clear_label(0.069, 0.05, 0.02) is None
    assert clear_label(0.07, 0.05, 0.02) is True
    assert clear_label(0.05, 0.05, 0.0) is True


def test_false_positives_become_negatives():
    env, lifts = _rollout(claim=True)
    below = int((lifts < 0.05).sum())
    assert 0 < below < len(lifts)  # the expert lifted the cube part-way through
    assert env.claims == len(lifts) and env.false_positives == below and env.missed == 0
    got = env.take()
    assert got["label"].tolist() == [False] * below and got["images"]["front"].shape == (below, 32, 32, 3)
    assert env.take() is None  # handed over once


def test_missed_successes_become_positives_only_when_clear():
    env, lifts = _rollout(claim=False)
    assert env.claims == 0 and env.missed == int((lifts >= 0.05).sum()) > 0
    got = env.take()
    clear, band = int((lifts >= 0.07).sum()), int(((lifts >= 0.05) & (lifts < 0.07)).sum())
    assert clear > 0 and band > 0  # the lift passed through the 5-7 cm band: left out
    assert got["label"].tolist() == [True] * clear
