"""V-GPS: K=1 reproduces the base policy in a real MuJoCo episode, argmax picks the best
candidate under an analytic Q, softmax sampling matches softmax(Q / beta), and candidates are
scored in the critic's action space but executed in the policy's."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import robot_rl  # noqa: F401  (registers the env ids)
from robot_rl.agents.bc import BCAgent, BCConfig
from robot_rl.agents.offline import CalQL, OfflineConfig
from robot_rl.policies.base import ActionRescale, Policy, QFunction
from robot_rl.policies.bc import BCPolicy
from robot_rl.policies.vgps import ValueGuidedPolicy, softmax


pytestmark = pytest.mark.usefixtures("single_torch_thread")


class FixedCandidates:
    """A policy whose distribution is uniform over a fixed set: sample(obs, n) returns them."""

    def __init__(self, candidates):
        self.candidates = np.asarray(candidates, np.float32)

    def act(self, obs):
        return self.candidates[0]

    def sample(self, obs, n):
        assert n == len(self.candidates)
        return self.candidates.copy()


class DistanceQ:
    """Analytic critic on the [-1, 1] box: Q(s, a) = -||a - s["target"]||^2; rejects actions
    outside the box so a missing policy->critic conversion cannot go unnoticed."""

    def __init__(self):
        self.calls = 0

    def q_values(self, obs, actions):
        self.calls += 1
        actions = np.asarray(actions)
        if np.abs(actions).max() > 1.0 + 1e-6:
            raise ValueError("critic got actions outside [-1, 1]")
        return -np.sum((actions - obs["target"]) ** 2, axis=-1)


def wide_bc(seed: int) -> BCAgent:
    """A real BC network (random weights) on obs {"target": [2]} with a wide distribution."""
    return BCAgent({"target": (2,)}, 2, BCConfig(hidden_dims=(16,), log_std_min=-0.5, log_std_max=0.0),
                   seed=seed)


def test_protocols_are_satisfied():
    assert isinstance(BCPolicy(wide_bc(0)), Policy)
    assert isinstance(ValueGuidedPolicy(BCPolicy(wide_bc(0)), DistanceQ()), Policy)
    assert isinstance(DistanceQ(), QFunction)
    assert isinstance(CalQL({"state": (3,)}, 2, OfflineConfig(hidden_dims=(8,), actor_hidden_dims=(8,))), QFunction)


def test_k1_reproduces_the_base_policy_in_a_real_episode():
    env = gym.make("robot_rl/PandaPickCube-v0")
    spec, A = env.observation_space, env.action_space.shape[0]
    critic = CalQL(spec, A, OfflineConfig(hidden_dims=(16,), actor_hidden_dims=(16,)), seed=0)
    runs = []
    for steer in (False, True):
        bc = BCAgent(spec, A, BCConfig(hidden_dims=(32,)), seed=3)  # same weights, same sampling seed
        policy = ValueGuidedPolicy(BCPolicy(bc), critic, num_samples=1) if steer else BCPolicy(bc)
        obs, _ = env.reset(seed=11)
        trace = []
        for _ in range(15):
            a = policy.act(obs)
            trace.append((a.copy(), obs["state"].copy()))
            obs, *_ = env.step(a)
        runs.append(trace)
        if steer:
            assert policy.last_q is None  # K=1: nothing to score
    env.close()
    for (a0, s0), (a1, s1) in zip(*runs):
        np.testing.assert_array_equal(a0, a1)
        np.testing.assert_array_equal(s0, s1)


def test_argmax_picks_the_best_candidate_under_a_known_q():
    obs = {"target": np.array([0.3, -0.6], np.float32)}
    cands = np.array([[0.0, 0.0], [0.3, -0.5], [-0.9, 0.9], [0.35, -0.6], [1.0, -1.0]], np.float32)
    q = DistanceQ()
    vg = ValueGuidedPolicy(FixedCandidates(cands), q, num_samples=5)
    np.testing.assert_array_equal(vg.act(obs), cands[3])
    assert q.calls == 1  # all K candidates in one critic call
    np.testing.assert_allclose(vg.last_q, q.q_values(obs, cands))
    # Real stochastic BC policy: the chosen action is the best of the K it drew (a twin with the
    # same sampling seed draws the same K).
    for step in range(5):
        twin, steered = BCPolicy(wide_bc(1)), BCPolicy(wide_bc(1))
        obs = {"target": np.random.default_rng(step).uniform(-0.8, 0.8, 2).astype(np.float32)}
        drawn = twin.sample(obs, 16)
        chosen = ValueGuidedPolicy(steered, q, num_samples=16).act(obs)
        np.testing.assert_array_equal(chosen, drawn[np.argmax(q.q_values(obs, drawn))])
        assert np.linalg.norm(chosen - obs["target"]) <= np.linalg.norm(drawn - obs["target"], axis=1).min() + 1e-7


def test_softmax_sampling_frequencies_match_softmax_q_over_beta():
    cands = np.array([[0.0, 0.0], [0.5, 0.0], [0.0, 0.8], [-0.3, -0.3]], np.float32)
    obs = {"target": np.array([0.5, 0.0], np.float32)}
    beta = 0.25
    q = DistanceQ().q_values(obs, cands)
    want = softmax(q, beta)
    assert want.max() < 0.9 and want.min() > 0.01  # every candidate gets a real share
    vg = ValueGuidedPolicy(FixedCandidates(cands), DistanceQ(), num_samples=4, mode="softmax", beta=beta, seed=0)
    n = 40_000
    counts = np.bincount([(vg.act(obs), vg.last_index)[1] for _ in range(n)], minlength=4)
    np.testing.assert_allclose(counts / n, want, atol=0.01)  # ~4 standard errors
    # beta -> 0 approaches argmax; the numerically stable softmax survives huge Q
    np.testing.assert_allclose(softmax(np.array([1000.0, 0.0]), 1e-3), [1.0, 0.0])


def test_action_rescale_round_trip_and_known_values():
    r = ActionRescale(src_low=[-0.03, -0.03, -0.03, 0.0], src_high=[0.03, 0.03, 0.03, 1.0])
    np.testing.assert_allclose(r([[0.015, -0.03, 0.0, 0.25]]), [[0.5, -1.0, 0.0, -0.5]], atol=1e-6)
    a = np.random.default_rng(0).uniform([-0.03] * 3 + [0], [0.03] * 3 + [1], (100, 7, 4))
    np.testing.assert_allclose(r.inverse(r(a)), a, atol=1e-6)
    np.testing.assert_allclose(r([[0.06, 0, 0, 0]])[0, 0], 2.0, rtol=1e-6)  # no silent clipping
    clipped = ActionRescale([-0.03] * 4, [0.03] * 4, clip=True)
    assert clipped([[0.06, 0, 0, 0]])[0, 0] == 1.0
    with pytest.raises(ValueError, match=r"4 dims, got shape \(2, 3\)"):
        r(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="src_high must exceed"):
        ActionRescale([0.0], [0.0])


def test_candidates_are_scored_in_critic_space_and_executed_in_policy_space():
    """The policy emits metres (+-3 cm per step) and a 0..1 gripper; the critic only accepts
    the env's [-1, 1] actions. V-GPS converts for scoring and returns the policy's own action."""
    to_critic = ActionRescale(src_low=[-0.03, -0.03, -0.03, 0.0], src_high=[0.03, 0.03, 0.03, 1.0])
    cands = np.array([[0.03, 0.0, -0.03, 1.0], [0.015, 0.0, 0.0, 0.25], [-0.03, 0.03, 0.0, 0.0]], np.float32)
    obs = {"target": np.array([0.5, 0.0, 0.0, -0.5], np.float32)}  # = candidate 1 in critic space
    # Scoring raw metres against a critic trained on normalized actions ranks them wrongly:
    unconverted = ValueGuidedPolicy(FixedCandidates(cands), DistanceQ(), num_samples=3)
    np.testing.assert_array_equal(unconverted.act(obs), cands[2])
    vg = ValueGuidedPolicy(FixedCandidates(cands), DistanceQ(), num_samples=3, policy_to_critic=to_critic)
    np.testing.assert_array_equal(vg.act(obs), cands[1])


def test_action_chunks_are_scored_by_their_first_action():
    chunks = np.zeros((3, 4, 2), np.float32)
    chunks[:, 0] = [[0.9, 0.9], [0.1, 0.2], [-0.5, 0.5]]
    chunks[:, 1:] = np.arange(3)[:, None, None]  # later steps identify the chunk
    vg = ValueGuidedPolicy(FixedCandidates(chunks), DistanceQ(), num_samples=3)
    chosen = vg.act({"target": np.array([0.0, 0.0], np.float32)})
    assert chosen.shape == (4, 2)
    np.testing.assert_array_equal(chosen, chunks[1])


def test_bad_arguments_are_named():
    pol, q = FixedCandidates([[0.0]]), DistanceQ()
    with pytest.raises(ValueError, match="mode"):
        ValueGuidedPolicy(pol, q, mode="max")
    with pytest.raises(ValueError, match="num_samples"):
        ValueGuidedPolicy(pol, q, num_samples=0)
    with pytest.raises(ValueError, match="beta"):
        ValueGuidedPolicy(pol, q, mode="softmax", beta=0.0)
    with pytest.raises(TypeError, match="sample"):
        ValueGuidedPolicy(object(), q)
    with pytest.raises(TypeError, match="q_values"):
        ValueGuidedPolicy(pol, object())

    class WrongLength:
        def q_values(self, obs, actions):
            return np.zeros(len(actions) + 1)
    with pytest.raises(ValueError, match="critic returned 3 values for 2 candidates"):
        ValueGuidedPolicy(FixedCandidates([[0.0], [1.0]]), WrongLength(), num_samples=2).act({})


@pytest.mark.slow
def test_bench_vgps_end_to_end_smoke(tmp_path):
    """The benchmark's whole path at toy size: demos, BC, Cal-QL, five evaluations, JSON."""
    import json

    from robot_rl.bench import vgps
    out = tmp_path / "vgps.json"
    res = vgps.run(seeds=1, json_path=str(out), workdir=str(tmp_path / "work"), progress=False,
                   demo_episodes=4, bc_steps=20, q_steps=10, episodes=2, num_samples=4,
                   bc_hidden=(16,), q_hidden=(16,))
    saved = json.loads(out.read_text())
    for key in ("base_success", "vgps_success", "random_q_success", "k1_success"):
        assert len(saved[key]) == 1 and 0.0 <= saved[key][0] <= 1.0
    assert res["k1_equals_base"] and saved["per_seed"][0]["k1_length"] == saved["per_seed"][0]["base_length"]
