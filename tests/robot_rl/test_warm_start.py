"""`init.from`: an online run starting from a real offline (Cal-QL / IQL) run on a real dataset."""
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
                "agent.actor_hidden_dims=[32, 32]")
    msg = str(e.value)
    for field in ("agent.hidden_dims", "agent.gamma", "agent.reward_scale", "agent.reward_bias"):
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
