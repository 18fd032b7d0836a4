"""RewardModel protocol, RewardWrapper (replace / add / terminate_on_success / invalid rewards) on a
real MuJoCo env, the factory and config hook, metrics, and `robot-rl reward eval` on a dataset
recorded by the scripted expert."""
from __future__ import annotations

import argparse
import json
import math

import gymnasium as gym
import numpy as np
import pytest

import robot_rl  # noqa: F401  (env ids)
from robot_rl.rewards.base import (RewardModel, RewardModelError, RewardWrapper, as_batch,
                                   epic_distance, evaluate_reward_model, make_reward_model,
                                   pearson, rankdata, register_reward_model, relabel_transitions,
                                   spearman, wrap_env_with_reward)


class ReachOracle(RewardModel):
    """Success of PandaReach from the privileged env_state (goal - tcp offset)."""
    has_success = True

    def __init__(self, tol: float = 0.02, bad_every: int = 0, dense: bool = False):
        self.tol, self.bad_every, self.calls, self.resets = tol, bad_every, 0, 0
        self.dense = dense

    def reset(self):
        self.resets += 1

    def __call__(self, observations):
        self.calls += 1
        b = as_batch(observations)
        d = np.linalg.norm(b["env_state"][:, 3:6], axis=1)
        r = (1.0 - np.tanh(10.0 * d) if self.dense else d < self.tol).astype(np.float32)
        if self.bad_every and self.calls % self.bad_every == 0:
            r[:] = np.nan
        return r

    def success(self, observations):
        b = as_batch(observations)
        return np.linalg.norm(b["env_state"][:, 3:6], axis=1) < self.tol


register_reward_model("test_reach_oracle", ReachOracle)


def run_expert(env, seed=0, steps=30):
    from robot_rl.sim.tasks import make_expert
    expert = make_expert(env, seed=seed)
    obs, _ = env.reset(seed=seed)
    expert.reset()
    out = []
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(expert.act(obs))
        out.append((obs, r, term, trunc, info))
        if term or trunc:
            break
    return out


def test_replace_add_and_terminate_on_success():
    # a loose tolerance: the model says "success" before the env's own (2 cm) success
    env = RewardWrapper(gym.make("robot_rl/PandaReach-v0"), ReachOracle(tol=0.06),
                        mode="replace", terminate_on_success=True)
    steps = run_expert(env)
    obs, r, term, trunc, info = steps[-1]
    assert term and r == 1.0 and info["model_success"] and not info["is_success"]
    assert all(s[1] == 0.0 for s in steps[:-1]) and env.model.resets == 1
    env = RewardWrapper(gym.make("robot_rl/PandaReach-v0", reward_type="dense"), ReachOracle(0.06),
                        mode="add", scale=2.0)
    for obs, r, term, trunc, info in run_expert(env):
        assert r == pytest.approx(info["env_reward"] + 2.0 * info["model_reward"])
    assert term and info["is_success"]  # without terminate_on_success the env's end holds
    # success_to_info: the model's verdict becomes is_success (tasks that cannot score themselves)
    env = RewardWrapper(gym.make("robot_rl/PandaReach-v0"), ReachOracle(0.06),
                        terminate_on_success=True, success_to_info=True)
    assert run_expert(env)[-1][4]["is_success"]


def test_model_ends_episodes_ignores_the_env_termination():
    """With a model that never sees success the env's own 2 cm success does not end the episode: the
    expert hovers at the goal until the time limit, never rewarded; a loose model ends it."""
    strict = RewardWrapper(gym.make("robot_rl/PandaReach-v0"), ReachOracle(tol=0.0),
                           terminate_on_success=True, model_ends_episodes=True)
    steps = run_expert(strict)
    assert any(info["is_success"] for *_, info in steps)  # the simulator saw success ...
    assert not any(term for _, _, term, _, _ in steps) and steps[-1][3]  # ... only truncation
    assert all(r == 0.0 for _, r, *_ in steps)
    loose = RewardWrapper(gym.make("robot_rl/PandaReach-v0"), ReachOracle(tol=0.06),
                          terminate_on_success=True, model_ends_episodes=True)
    *_, (obs, r, term, trunc, info) = run_expert(loose)
    assert term and r == 1.0 and not info["is_success"]
    with pytest.raises(ValueError, match="needs terminate_on_success"):
        RewardWrapper(gym.make("robot_rl/PandaReach-v0"), ReachOracle(), model_ends_episodes=True)


def test_invalid_rewards_are_never_silent():
    env = RewardWrapper(gym.make("robot_rl/PandaReach-v0"), ReachOracle(bad_every=3))
    env.reset(seed=0)
    env.step(env.action_space.sample())
    env.step(env.action_space.sample())
    with pytest.raises(RewardModelError, match="non-finite"):
        env.step(env.action_space.sample())
    env = RewardWrapper(gym.make("robot_rl/PandaReach-v0", reward_type="dense"),
                        ReachOracle(bad_every=2), on_invalid="env")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    _, r, _, _, info = env.step(env.action_space.sample())
    assert info["reward_invalid"] and r == info["env_reward"] and env.invalid_steps == 1


def test_wrapper_config_errors():
    class NoSuccess(RewardModel):
        def __call__(self, observations):
            return np.zeros(len(as_batch(observations)["state"]), np.float32)

    base = gym.make("robot_rl/PandaReach-v0")
    with pytest.raises(ValueError, match="no success detector"):
        RewardWrapper(base, NoSuccess(), terminate_on_success=True)
    with pytest.raises(ValueError, match="mode"):
        RewardWrapper(base, NoSuccess(), mode="multiply")
    with pytest.raises(ValueError, match="unknown reward model 'nope'"):
        make_reward_model("nope")
    with pytest.raises(ValueError, match="unknown env.reward keys"):
        wrap_env_with_reward(base, {"name": "test_reach_oracle", "moed": "add"})
    assert wrap_env_with_reward(base, None) is base and wrap_env_with_reward(base, {}) is base
    env = wrap_env_with_reward(base, {"name": "test_reach_oracle", "kwargs": {"tol": 0.05},
                                      "mode": "add", "terminate_on_success": True})
    assert isinstance(env, RewardWrapper) and env.model.tol == 0.05 and env.mode == "add"


def test_relabel_transitions_matches_the_wrapper():
    env = RewardWrapper(gym.make("robot_rl/PandaReach-v0", reward_type="dense"), ReachOracle(0.06),
                        mode="add", terminate_on_success=True)
    steps = run_expert(env)
    r, term = relabel_transitions(ReachOracle(0.06), [s[0] for s in steps],
                                  env_rewards=[s[4]["env_reward"] for s in steps], mode="add",
                                  terminate_on_success=True)
    np.testing.assert_allclose(r, [s[1] for s in steps], atol=1e-6)
    np.testing.assert_array_equal(term, [s[2] for s in steps])
    with pytest.raises(RewardModelError):
        relabel_transitions(ReachOracle(bad_every=1), [s[0] for s in steps])


def test_metrics_against_known_values():
    np.testing.assert_array_equal(rankdata([10, 20, 20, 5]), [1, 2.5, 2.5, 0])
    x = np.arange(20.0)
    assert spearman(x, x ** 3) == pytest.approx(1.0) and pearson(x, x ** 3) < 0.95
    assert spearman(x, -x) == pytest.approx(-1.0)
    # Spearman with ties equals Pearson of average ranks (scipy's definition)
    a, b = [1, 2, 2, 3, 4], [2, 1, 3, 3, 5]
    assert spearman(a, b) == pytest.approx(pearson(rankdata(a), rankdata(b)))
    assert spearman(a, b) == pytest.approx(0.7631578947368421)  # scipy.stats.spearmanr
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    rng = np.random.default_rng(0)
    r = rng.normal(size=500)
    assert epic_distance(r, 3 * r + 7) == pytest.approx(0.0, abs=1e-7)  # affine: equivalent
    assert epic_distance(r, -r) == pytest.approx(1.0)
    assert epic_distance(r, rng.normal(size=500)) == pytest.approx(math.sqrt(0.5), abs=0.05)


def test_reward_eval_cli_on_recorded_demos(tmp_path):
    """A dataset recorded from the env with its dense reward (`next.reward` of frame t is the
    reward of the observation t+1) against an oracle computing that reward from the privileged
    state: with the step alignment they agree exactly; misaligned by one frame they do not."""
    from robot_rl.data.episodes import make_frame, open_writer
    from robot_rl.rewards.cli import add_cli
    from robot_rl.sim.tasks import make_expert
    env = gym.make("robot_rl/PandaReach-v0", reward_type="dense")
    expert = make_expert(env, seed=0, noise=0.3)
    with open_writer(tmp_path / "reach", env) as writer:
        for ep in range(4):
            obs, _ = env.reset(seed=ep)
            expert.reset()
            done = False
            while not done:
                a = expert.act(obs)
                nxt, r, term, trunc, info = env.step(a)
                writer.add_frame(make_frame(obs, a, r, term, trunc, info["is_success"]), task="reach")
                obs, done = nxt, term or trunc
            writer.save_episode()
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["reward", "eval", str(tmp_path / "reach"), "--model",
                              "test_reach_oracle", "--kwarg", "dense=true", "--json",
                              str(tmp_path / "eval.json")])
    assert args.func(args) == 0
    res = json.loads((tmp_path / "eval.json").read_text())
    assert res["frames"] >= 15 and res["episodes"] == 4 and res["invalid_frames"] == 0
    assert res["pearson"] == pytest.approx(1.0, abs=1e-5) and res["spearman"] == pytest.approx(1.0)
    assert res["epic_distance"] == pytest.approx(0.0, abs=3e-3) and res["kwargs"] == {"dense": True}
    same = evaluate_reward_model(ReachOracle(dense=True), tmp_path / "reach", align="same")
    assert same["epic_distance"] > res["epic_distance"] + 0.01
