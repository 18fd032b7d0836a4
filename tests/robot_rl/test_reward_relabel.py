"""With a reward model configured, demo transitions are relabeled by that same model."""
import numpy as np

from robot_rl.data.lerobot import LeRobotDataset
from robot_rl.rewards.base import RewardModel, as_batch, register_reward_model
from robot_rl.train import Trainer, load_config


class CubeHeight(RewardModel):
    """A reward with known ground truth: the cube's height in the next observation."""

    def __call__(self, observations):
        return np.asarray(as_batch(observations)["env_state"], np.float32)[:, 2]


def test_demo_rewards_come_from_the_configured_reward_model(tmp_path):
    register_reward_model("cube_height_test", CubeHeight)
    cfg = load_config("config/pick_cube.yaml", [
        f"runs_dir={tmp_path}", "demos.scripted_episodes=2", "agent.hidden_dims=[32, 32]",
        "train.torch_threads=1", "env.reward={name: cube_height_test, mode: replace}"])
    trainer = Trainer(cfg, progress=False)
    batch = trainer.demo.get(trainer.demo.valid_ids())
    assert len(batch["reward"]) > 20
    # relabeled wherever the dataset holds the next observation ...
    stored = ~batch["terminated"].astype(bool)
    np.testing.assert_allclose(batch["reward"][stored],
                               batch["next_obs"]["env_state"][stored, 2], rtol=1e-6)
    assert batch["reward"].max() > 0.05  # the demos lift the cube, so heights vary
    # ... and an episode's last step keeps the model's reward recorded with the demo (the
    # dataset has no observation after it: its stand-in must not be scored)
    demos = LeRobotDataset(trainer.run_dir / "demos")
    recorded = [demos.episode(e)["next.reward"][-1] for e in range(demos.num_episodes)]
    np.testing.assert_allclose(np.sort(batch["reward"][~stored]), np.sort(recorded), rtol=1e-6)
    assert min(recorded) > 0.05
    # the online env is rewarded by the same model; evaluation keeps the true success signal
    obs, _ = trainer.env.reset(seed=0)
    nxt, r, *_ = trainer.env.step(np.zeros(4, np.float32))
    assert np.isclose(r, nxt["env_state"][2])
    assert type(trainer.eval_env).__name__ != "RewardWrapper"


class TcpAbove(RewardModel):
    """Success (and reward 1) when the gripper is above height `h`: known ground truth."""
    has_success = True

    def __init__(self, h: float):
        self.h = h

    def success(self, observations):
        return np.asarray(as_batch(observations)["state"])[:, 2] > self.h

    def __call__(self, observations):
        return self.success(observations).astype(np.float32)


def test_swapping_the_reward_model_relabels_the_online_replay(tmp_path):
    """HIL-SERL's loop: a retrained model replaces the old one mid-run and every stored online
    transition gets the reward and terminal flag the new model gives its next observation."""
    register_reward_model("tcp_above_test", TcpAbove)
    cfg = load_config("config/pick_cube.yaml", [
        f"runs_dir={tmp_path}", "demos.scripted_episodes=0", "agent.hidden_dims=[32, 32]",
        "train.torch_threads=1", "train.total_env_steps=300", "train.warmup_steps=100000",
        "train.random_steps=100000", "train.eval_every=100000", "train.checkpoint_every=100000",
        "env.reward={name: tcp_above_test, kwargs: {h: 0.24}, mode: replace, "
        "terminate_on_success: true, model_ends_episodes: true}"])
    trainer = Trainer(cfg, progress=False)
    calls = []
    trainer.every(100, lambda t: calls.append(t.step))
    trainer.run()
    assert calls == [100, 200, 300]
    before = trainer.online.get(trainer.online.valid_ids())
    z = before["next_obs"]["state"][:, 2]
    assert len(z) == 300
    np.testing.assert_array_equal(before["terminated"], z > 0.24)  # the model ended episodes
    assert (z > 0.21).sum() > (z > 0.24).sum()  # the new threshold changes some labels

    changed = trainer.set_reward_model(TcpAbove(0.21))
    after = trainer.online.get(trainer.online.valid_ids())
    np.testing.assert_array_equal(after["reward"], (z > 0.21).astype(np.float32))
    np.testing.assert_array_equal(after["terminated"], z > 0.21)
    assert changed == int(((z > 0.21) != (z > 0.24)).sum())
    np.testing.assert_array_equal(after["env_reward"], before["env_reward"])  # the sim's, kept
    # the env now rewards with the new model too
    trainer.env.reset(seed=1)
    obs, r, term, _, info = trainer.env.step(np.zeros(4, np.float32))
    assert r == float(obs["state"][2] > 0.21) and term == (obs["state"][2] > 0.21)
