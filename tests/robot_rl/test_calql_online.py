"""Monte-Carlo returns in the online SAC learner: Cal-QL's online phase (`agent.cql_alpha`: the
conservative term of agents/conservative.py on real networks) and the MCAC target floor
(`agent.mc_target_floor`); bounds written at each episode's end by a real training run on
PandaPickCube, per actor stream when streams interleave; the compiled update equal to the
eager one."""
import numpy as np
import pytest
import torch

from robot_rl.agents.conservative import mc_lower_bounds
from robot_rl.agents.offline import CalQL, OfflineData
from robot_rl.agents.sac import SACAgent
from robot_rl.run_config import OfflineConfig, SACConfig, load_config

pytestmark = pytest.mark.usefixtures("single_torch_thread")

SPEC = {"state": ((3,), np.float32)}
SMALL = dict(hidden_dims=(32, 32), num_critics=2, critic_subsample=2, batch_size=32, utd_ratio=2,
             reward_scale=10.0, reward_bias=-5.0, gamma=0.9)


def batch(rng, B=32, bound=None):
    b = {"obs": {"state": rng.standard_normal((B, 3)).astype(np.float32)},
         "next_obs": {"state": rng.standard_normal((B, 3)).astype(np.float32)},
         "action": rng.uniform(-1, 1, (B, 2)).astype(np.float32),
         "reward": (rng.random(B) < 0.3).astype(np.float32), "terminated": rng.random(B) < 0.1}
    b["mc_bound"] = np.full(B, -np.inf if bound is None else bound, np.float32)
    return b


def test_episode_bounds_equal_the_offline_learners_bounds():
    """The online bound (computed once per episode) is the offline learner's (from stored
    Monte-Carlo returns), for an episode that terminated and one cut by a time limit."""
    rng = np.random.default_rng(0)
    episodes = [{"obs": {"state": rng.standard_normal((T + 1, 3))}, "action": rng.uniform(-1, 1, (T, 2)),
                 "reward": (rng.random(T) < 0.4).astype(np.float32), "terminated": term}
                for T, term in ((7, True), (9, False))]
    cfg = OfflineConfig(gamma=0.9, reward_scale=10.0, reward_bias=-5.0, reward_min=0.0)
    data = OfflineData.from_episodes(episodes, cfg.gamma)
    offline = CalQL(data.obs_spec, 2, cfg).mc_lower_bound(data.mc_return, data.remaining, data.truncated_end)
    online = np.concatenate([mc_lower_bounds(e["reward"], e["terminated"], 0.9, 10.0, -5.0, 0.0)
                             for e in episodes])
    np.testing.assert_allclose(online, offline.numpy(), rtol=1e-5)
    # by hand: the last step of the terminated episode is its own scaled reward; the cut one
    # continues with -5 (reward_min 0, scaled) forever
    assert online[6] == pytest.approx(10 * episodes[0]["reward"][-1] - 5)
    assert online[-1] == pytest.approx(10 * episodes[1]["reward"][-1] - 5 + 0.9 * -5 / 0.1)


def test_conservative_term_pushes_policy_values_down_and_calibration_stops_it():
    """Same seeds, same batches: CQL's term lowers Q of the policy's actions below plain SAC's;
    with Cal-QL's bound at a return that was observed, the term no longer pushes the policy's
    values down (its gradient there is zero), so they end well above CQL's."""
    def q_pi(**kw):
        agent = SACAgent(SPEC, 2, SACConfig(**SMALL, **kw), seed=0)
        rng = np.random.default_rng(1)
        fixed = batch(rng, bound=20.0)  # a high observed return: calibration binds
        for _ in range(150):
            agent.update(fixed)
        with torch.no_grad():
            feat = agent.encoder(agent.prepare_batch(fixed, augment=False)["obs"])
            a, _ = agent.actor.sample(feat, generator=torch.Generator().manual_seed(0))
            return float(agent.critic(feat, a).mean())

    sac, cql, calql = q_pi(), q_pi(cql_alpha=5.0, cql_calibrated=False), q_pi(cql_alpha=5.0)
    print(f"Q(s, a_pi): SAC {sac:.2f}, CQL {cql:.2f}, Cal-QL {calql:.2f}")
    assert cql < sac - 1.0
    assert calql > cql + 1.0


def test_weight_schedule_and_plain_sac_unchanged():
    rng = np.random.default_rng(0)
    kept = SACAgent(SPEC, 2, SACConfig(**SMALL, cql_alpha=5.0), seed=0)
    annealed = SACAgent(SPEC, 2, SACConfig(**SMALL, cql_alpha=5.0, cql_alpha_end=1.0, cql_anneal_steps=4), seed=0)
    weights = []
    for _ in range(6):
        m = annealed.update(batch(rng, bound=0.0))
        weights.append(m["cql_alpha"])
    assert weights == pytest.approx([5.0, 4.0, 3.0, 2.0, 1.0, 1.0])
    assert kept.update(batch(rng, bound=0.0))["cql_alpha"] == 5.0
    assert "cql_gap" not in SACAgent(SPEC, 2, SACConfig(**SMALL), seed=0).update(batch(rng))
    with pytest.raises(ValueError, match="mc_bound"):
        b = batch(rng)
        del b["mc_bound"]
        kept.update(b)
    with pytest.raises(ValueError, match="cql_anneal_steps"):
        SACConfig(cql_alpha=5.0, cql_alpha_end=0.0)


def test_compiled_update_matches_eager_with_the_conservative_term():
    eager, compiled = (SACAgent(SPEC, 2, SACConfig(**SMALL, cql_alpha=2.0, compile=c), seed=3)
                       for c in (False, True))
    for i in range(4):  # a changing weight must not recompile into something else
        b = batch(np.random.default_rng(i), bound=float(i))
        me, mc = eager.update(b), compiled.update(b)
        assert set(me) == set(mc) and "cql_gap" in me
        for k in me:
            assert mc[k] == pytest.approx(me[k], rel=1e-4, abs=1e-6), k
    for p, q in zip(eager.critic.parameters(), compiled.critic.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)


def test_target_floor_lifts_values_to_observed_returns_and_ignores_unknown_ones():
    """`mc_target_floor`: with every return unknown (-inf: episodes still running) the update
    is exactly plain SAC's; with an observed return of 3 on 0-reward transitions the TD
    targets are never below 3, and the critic is pulled up to it where plain SAC's stays near 0."""
    def run(floor, bound, steps=500):
        agent = SACAgent(SPEC, 2, SACConfig(**{**SMALL, "reward_scale": 1.0, "reward_bias": 0.0},
                                            mc_target_floor=floor), seed=0)
        b = batch(np.random.default_rng(1), bound=bound)
        b["reward"][:] = 0.0
        return [agent.update(b) for _ in range(steps)]

    plain, unknown = run(False, None, 20), run(True, None, 20)
    assert [m["critic_loss"] for m in unknown] == [m["critic_loss"] for m in plain]
    floored, sac = run(True, 3.0), run(False, 3.0)
    assert min(m["target_q"] for m in floored) >= 3.0 - 1e-6
    assert floored[-1]["q"] == pytest.approx(3.0, abs=0.3)
    assert abs(sac[-1]["q"]) < 0.5


def test_compiled_update_matches_eager_with_the_target_floor():
    eager, compiled = (SACAgent(SPEC, 2, SACConfig(**SMALL, mc_target_floor=True, compile=c), seed=3)
                       for c in (False, True))
    for i in range(3):
        b = batch(np.random.default_rng(i), bound=float(i))
        b["mc_bound"][::2] = -np.inf  # unfinished episodes in the same batch
        me, mc = eager.update(b), compiled.update(b)
        for k in me:
            assert mc[k] == pytest.approx(me[k], rel=1e-4, abs=1e-6), k


def test_interleaved_actor_streams_get_their_own_episodes_bounds(tmp_path):
    """A distributed learner records steps of several actors' episodes interleaved (`stream`):
    each episode's bounds come from its own rewards, as if it had been recorded alone."""
    from robot_rl.train import EpisodeStats, Trainer, make_env
    cfg = load_config(None, [f"runs_dir={tmp_path}", "name=streams", "env.id=robot_rl/PandaReach-v0",
                             "agent.hidden_dims=[32, 32]", "agent.mc_target_floor=true",
                             "demos.scripted_episodes=0", "train.video=false", "train.torch_threads=1"])
    t = Trainer(cfg, progress=False)
    envs = [make_env(cfg) for _ in range(2)]
    try:
        obs = [e.reset(seed=i)[0] for i, e in enumerate(envs)]
        rng, ids, rewards = np.random.default_rng(0), {0: [], 1: []}, {0: [], 1: []}
        ended = set()
        for k in range(80):  # stream 1 steps twice as often as stream 0
            s = 0 if k % 3 == 0 else 1
            if s in ended:
                continue
            a = rng.uniform(-1, 1, envs[s].action_space.shape).astype(np.float32)
            nxt, r, term, trunc, info = envs[s].step(a)
            r = float(rng.random() < 0.2)  # rewards that tell the streams' episodes apart
            ids[s].append(t.online.transitions_written)
            rewards[s].append(r)
            t.record(obs[s], a, r, nxt, term or len(ids[s]) == 12, trunc, info, EpisodeStats(),
                     learn=False, stream=s)
            obs[s] = nxt
            if term or len(ids[s]) == 12:
                ended.add(s)
    finally:
        for e in envs:
            e.close()
    assert ended == {0, 1}
    for s in (0, 1):
        got = t.online.get(np.asarray(ids[s]))["mc_bound"]
        np.testing.assert_allclose(got, mc_lower_bounds(rewards[s], True, cfg.agent.gamma), rtol=1e-5)


@pytest.mark.parametrize("learner", ["agent.cql_alpha=1.0", "agent.mc_target_floor=true"])
def test_training_run_writes_each_episodes_bounds(tmp_path, learner):
    """A real PandaPickCube run with Cal-QL's online phase or the target floor: every finished
    episode's online transitions carry the bound of their stored rewards, every demo
    transition its episode's."""
    from robot_rl.train import Trainer
    cfg = load_config(None, [f"runs_dir={tmp_path}", "name=calql", "env.id=robot_rl/PandaPickCube-v0",
                             "agent.hidden_dims=[32, 32]", "agent.batch_size=32", "agent.utd_ratio=1",
                             learner, "agent.reward_scale=10", "agent.reward_bias=-5",
                             "demos.scripted_episodes=2", "train.total_env_steps=160", "train.warmup_steps=60",
                             "train.eval_every=160", "train.eval_episodes=1", "train.video=false",
                             "train.torch_threads=1"])
    t = Trainer(cfg, progress=False)
    t.run()
    a = cfg.agent
    got = t.online.get(t.online.valid_ids())
    ends = np.flatnonzero(got["terminated"] | got["truncated"])
    assert len(ends) >= 2
    start = 0
    for end in ends:
        want = mc_lower_bounds(got["reward"][start:end + 1], bool(got["terminated"][end]), a.gamma, 10, -5)
        np.testing.assert_allclose(got["mc_bound"][start:end + 1], want, rtol=1e-5)
        start = end + 1
    assert np.all(got["mc_bound"][start:] == -np.inf)  # the unfinished episode has none yet
    demo = t.demo.get(t.demo.valid_ids())
    assert np.all(np.isfinite(demo["mc_bound"])) and demo["mc_bound"].max() > 0  # successful demos
