"""`init.from`: an online run starting from a real offline (Cal-QL / IQL) run on a real dataset,
or from a pretrained policy (a real BC run, a policy served over HTTP) distilled into the actor."""
import json

import numpy as np
import pytest
import torch

from robot_rl.agents.offline import load_offline_learner
from robot_rl.agents.warm_start import WarmStartError
from robot_rl.offline import run_offline
from robot_rl.run_config import OfflineRunConfig, load_config
from robot_rl.train import Trainer

pytestmark = pytest.mark.usefixtures("single_torch_thread")

NET = ["agent.hidden_dims=[32, 32]", "agent.actor_hidden_dims=[32, 32]"]
FITS = NET + ["agent.gamma=0.9", "agent.reward_scale=10", "agent.reward_bias=-5", "agent.compile=false"]


@pytest.fixture(scope="module")
def offline_runs(tmp_path_factory):
    """A Cal-QL and an IQL run on ten scripted PandaReach episodes, half of them botched."""
    from robot_rl import config as cfgmod
    from robot_rl.demos import collect_scripted_demos
    root = tmp_path_factory.mktemp("warm")
    collect_scripted_demos("robot_rl/PandaReach-v0", 10, str(root / "reach"), seed=0, noise=0.2, fail_prob=0.5)
    runs = {}
    from robot_rl.offline import run_bc
    from robot_rl.run_config import BCRunConfig
    run_bc(cfgmod.from_dict(BCRunConfig, {"name": "bc", "runs_dir": str(root), "data": {"dataset": str(root / "reach")},
                                          "agent": {"hidden_dims": [32, 32], "steps": 300}}), progress=False)
    runs["bc"] = root / "bc"
    for algo in ("calql", "iql"):
        cfg = cfgmod.from_dict(OfflineRunConfig, {
            "name": algo, "runs_dir": str(root), "data": {"dataset": str(root / "reach")},
            "agent": {"algo": algo, "hidden_dims": [32, 32], "actor_hidden_dims": [32, 32], "gamma": 0.9,
                      "batch_size": 64, "cql_n_actions": 2, "steps": 60}})
        run_offline(cfg, progress=False)
        runs[algo] = root / algo
    return runs


def trainer(tmp_path, *overrides, env="robot_rl/PandaReach-v0"):
    cfg = load_config(None, [f"env.id={env}", f"runs_dir={tmp_path}", "demos.scripted_episodes=2",
                             "train.total_env_steps=120", "train.warmup_steps=60", "train.eval_every=120",
                             "train.eval_episodes=2", "train.checkpoint_every=120", "train.video=false",
                             "train.torch_threads=1", *overrides])
    return Trainer(cfg, progress=False)


def test_online_run_starts_from_the_offline_weights_and_normalization(offline_runs, tmp_path):
    learner = load_offline_learner(offline_runs["calql"] / "critic.pt")
    t = trainer(tmp_path, f"init.from={offline_runs['calql']}", *FITS)
    agent = t.agent
    for mine, theirs in ((agent.critic, learner.critic), (agent.target_critic, learner.target_critic),
                         (agent.actor, learner.actor), (agent.encoder, learner.encoder)):
        for (k, a), (_, b) in zip(sorted(mine.state_dict().items()), sorted(theirs.state_dict().items())):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert agent.log_alpha.item() == pytest.approx(learner.log_alpha.item())
    # the same Q-values on real observations, through the same frozen input normalization
    obs = {k: np.asarray(v)[None] for k, v in t.env.reset(seed=3)[0].items()}
    actions = np.random.default_rng(0).uniform(-1, 1, (5, 3)).astype(np.float32)
    with torch.no_grad():
        feat = agent.encoder({k: torch.as_tensor(v).float() for k, v in obs.items()}).repeat(5, 1)
        q_agent = agent.critic(feat, torch.as_tensor(actions)).mean(0).numpy()
    np.testing.assert_allclose(q_agent, learner.q_values({k: v[0] for k, v in obs.items()}, actions), rtol=1e-5)

    mean_before = agent.encoder.mean_state.clone()
    result = t.run()  # online fine-tuning runs, and keeps the offline run's normalization
    assert result["step"] == 120 and agent.critic_steps > 0
    torch.testing.assert_close(agent.encoder.mean_state, mean_before)
    assert not torch.equal(agent.critic.state_dict()[next(iter(agent.critic.state_dict()))],
                           learner.critic.state_dict()[next(iter(learner.critic.state_dict()))])


def test_every_mismatch_is_named_before_anything_loads(offline_runs, tmp_path):
    with pytest.raises(WarmStartError) as e:
        trainer(tmp_path / "a", f"init.from={offline_runs['calql']}", "agent.hidden_dims=[64, 64]",
                "agent.actor_hidden_dims=[32, 32]", "agent.value_bins=51")
    msg = str(e.value)
    for field in ("agent.hidden_dims", "agent.gamma", "agent.reward_scale", "agent.reward_bias",
                  "agent.value_bins"):
        assert field in msg, field
    with pytest.raises(WarmStartError, match="env_state"):  # PandaRelocate: 9-dim env_state
        trainer(tmp_path / "b", f"init.from={offline_runs['calql']}", *FITS, env="robot_rl/PandaRelocate-v0")
    with pytest.raises(WarmStartError, match="4 dims|3 dims"):  # PandaPickCube: xyz + gripper
        trainer(tmp_path / "c", f"init.from={offline_runs['calql']}", *FITS, env="robot_rl/PandaPickCube-v0")
    with pytest.raises(WarmStartError, match="init.actor=false"):
        trainer(tmp_path / "d", f"init.from={offline_runs['iql']}", *FITS)
    with pytest.raises(WarmStartError, match="no critic.pt"):
        trainer(tmp_path / "e", f"init.from={tmp_path}", *FITS)


def test_iql_critic_alone(offline_runs, tmp_path):
    learner = load_offline_learner(offline_runs["iql"] / "critic.pt")
    t = trainer(tmp_path, f"init.from={offline_runs['iql']}", "init.actor=false", *FITS)
    for (k, a), (_, b) in zip(sorted(t.agent.critic.state_dict().items()),
                              sorted(learner.critic.state_dict().items())):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    fresh = trainer(tmp_path / "fresh", *FITS)  # same seed, no init: the actor is the fresh one
    for a, b in zip(t.agent.actor.parameters(), fresh.agent.actor.parameters()):
        torch.testing.assert_close(a, b)


def actor_error(agent, obs: dict, target: np.ndarray) -> float:
    """Mean squared distance of the actor's deterministic actions from `target` on `obs`."""
    return float(np.mean((agent.act_batch(obs, deterministic=True) - target) ** 2))


def visited(env, act, seeds) -> dict:
    """The observations `act` visits in `env`, one episode per seed, stacked per key."""
    seen = []
    for seed in seeds:
        obs, done = env.reset(seed=seed)[0], False
        while not done:
            seen.append(obs)
            obs, _, term, trunc, _ = env.step(act(obs))
            done = term or trunc
    return {k: np.stack([o[k] for o in seen]) for k in seen[0]}


def prior_rows(t) -> list:
    rows = [json.loads(x) for x in (t.run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "episode" and r.get("prior")], \
        [r for r in rows if r["kind"] == "distill"]


def test_a_bc_run_is_distilled_into_the_actor_from_its_own_rollouts(offline_runs, tmp_path):
    from robot_rl.agents.bc import BCAgent
    bc = BCAgent.load(offline_runs["bc"] / "policy.pt")
    init = [f"init.from={offline_runs['bc']}", "init.rollouts=8", "demos.scripted_episodes=0"]
    t = trainer(tmp_path / "fit", *init, "init.distill_steps=400", "train.total_env_steps=300",
                "train.eval_every=300", "train.checkpoint_every=300")
    undistilled = trainer(tmp_path / "raw", *init, "init.distill_steps=0")  # same seed, same start
    episodes, [distill] = prior_rows(t)
    # the rollouts are real env steps: stored in the replay, counted, logged as episodes
    assert len(episodes) == 8 and t.step == sum(r["length"] for r in episodes) == len(t.online) > 0
    assert t.episode == 8 and distill["rollouts"] == 8 and distill["nll_end"] < distill["nll_start"]
    # in episodes the rollouts never saw, the actor now acts like the BC policy
    obs = visited(t.eval_env, lambda o: bc.act(o, deterministic=True), seeds=range(9000, 9003))
    target = bc.act_batch(obs, deterministic=True)
    before, after = actor_error(undistilled.agent, obs, target), actor_error(t.agent, obs, target)
    assert after < 0.5 * before, (before, after)  # measured 0.029 vs 0.091 (8 rollouts of 30 steps)
    result = t.run()  # and RL goes on from there
    assert result["step"] == 300 and t.agent.critic_steps > 0


class LinearPolicy:
    """A stand-in generalist with known actions: a fixed linear map of the state, in its own
    action box [-2, 2]^3 (metres of a different scale than the env's)."""

    def __init__(self, dim: int):
        self.w = np.random.default_rng(0).normal(0, 0.5, (dim, 3))

    def act(self, obs):
        return np.clip(np.asarray(obs["state"], np.float64) @ self.w, -2, 2).astype(np.float32)

    def sample(self, obs, n):
        return np.repeat(self.act(obs)[None], n, axis=0)


def test_a_policy_server_is_distilled_through_its_action_box(tmp_path):
    from robot_rl.policies.http import serve
    probe = trainer(tmp_path / "probe", "demos.scripted_episodes=0")
    policy = LinearPolicy(probe.env.observation_space["state"].shape[0])
    server = serve(policy)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/act"
        box = ["init.policy_low=[-2, -2, -2]", "init.policy_high=[2, 2, 2]", "demos.scripted_episodes=0",
               f"init.from={url}", "init.rollouts=4"]
        t = trainer(tmp_path / "fit", *box, "init.distill_steps=400")
        undistilled = trainer(tmp_path / "raw", *box, "init.distill_steps=0")
        # the server's actions reached the env and the replay mapped from [-2, 2] onto [-1, 1]
        stored = t.online.get(t.online.valid_ids())
        expect = np.stack([policy.act(o) / 2.0 for o in (dict(state=s) for s in stored["obs"]["state"])])
        np.testing.assert_allclose(stored["action"], expect, atol=1e-5)
        obs = visited(probe.eval_env, lambda o: policy.act(o) / 2.0, seeds=range(7000, 7003))
        target = np.stack([policy.act({"state": s}) / 2.0 for s in obs["state"]])
        before, after = actor_error(undistilled.agent, obs, target), actor_error(t.agent, obs, target)
        assert after < 0.5 * before, (before, after)
        with pytest.raises(WarmStartError, match="policy_low"):
            trainer(tmp_path / "bad", *box[2:], "init.policy_low=[-2, -2]")
    finally:
        server.shutdown()
        server.server_close()


class WildPolicy:
    """A server gone wrong: actions of magnitude up to 1e3 in random directions, or NaN."""

    def __init__(self, nan: bool = False):
        self.rng, self.nan = np.random.default_rng(1), nan

    def act(self, obs):
        return np.full(3, np.nan, np.float32) if self.nan else self.rng.uniform(-1e3, 1e3, 3).astype(np.float32)

    def sample(self, obs, n):
        return np.stack([self.act(obs) for _ in range(n)])


def test_a_wild_policy_server_moves_the_arm_only_inside_the_safety_box(tmp_path):
    from robot_rl.policies.http import PolicyServerProtocolError, serve
    for wild, name in ((WildPolicy(), "huge"), (WildPolicy(nan=True), "nan")):
        server = serve(wild)
        try:
            args = (tmp_path / name, f"init.from=http://127.0.0.1:{server.server_address[1]}/act",
                    "init.rollouts=3", "init.distill_steps=10", "demos.scripted_episodes=0")
            if wild.nan:  # refused by the client before it reaches the env
                with pytest.raises(PolicyServerProtocolError, match="NaN"):
                    trainer(*args)
                continue
            t = trainer(*args)
            stored = t.online.get(t.online.valid_ids())
            assert len(stored["action"]) > 0 and np.all(np.abs(stored["action"]) <= 1.0)
            box = t.env.unwrapped.safety
            for tcp in stored["next_obs"]["state"][:, :3]:  # measured, so allow tracking error
                assert box.contains(tcp, tol=0.01), tcp
        finally:
            server.shutdown()
            server.server_close()


def test_policy_sources_refuse_what_they_cannot_do(offline_runs, tmp_path):
    from robot_rl.train import train
    with pytest.raises(ValueError, match="init.actor=false"):
        trainer(tmp_path / "a", f"init.from={offline_runs['bc']}", "init.actor=false")
    cfg = load_config(None, [f"init.from={offline_runs['bc']}", "runtime.kind=ray"])
    with pytest.raises(ValueError, match="runtime=local"):
        train(cfg)
    with pytest.raises(WarmStartError, match="observation keys"):
        trainer(tmp_path / "b", f"init.from={offline_runs['bc']}", env="robot_rl/PandaRelocate-v0")
