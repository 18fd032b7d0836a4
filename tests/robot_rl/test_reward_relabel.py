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
