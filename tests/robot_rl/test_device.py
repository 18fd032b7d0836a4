"""`train.device` / the dataset runs' `device`: which torch device the learner computes on."""
import pytest
import torch

from robot_rl.run_config import resolve_device
from robot_rl.train import Trainer, load_config, load_policy


def test_auto_is_cuda_when_present_and_a_missing_device_is_an_error():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    n = torch.cuda.device_count()
    with pytest.raises(ValueError, match=rf"device 'cuda:{n}': torch sees {n} CUDA device"):
        resolve_device(f"cuda:{n}")
    with pytest.raises(ValueError, match="device 'gpu0'"):
        resolve_device("gpu0")


def test_the_learner_runs_on_the_configured_device_and_its_policy_loads_anywhere(tmp_path):
    cfg = load_config("config/reach.yaml", [
        "agent.num_critics=2", "agent.hidden_dims=[32, 32]", "agent.batch_size=32",
        "agent.utd_ratio=1", "demos.scripted_episodes=2", "train.warmup_steps=20",
        "train.eval_every=100000", "train.video=false", "train.checkpoint_every=60",
        "train.total_env_steps=60", "train.device=auto", f"runs_dir={tmp_path}", "name=dev"])
    trainer = Trainer(cfg, progress=False)
    want = resolve_device("auto")
    assert all(p.device.type == want.type for p in trainer.agent.critic.parameters())
    trainer.run()
    agent, _ = load_policy(tmp_path / "dev")  # acts on CPU, wherever it was trained
    assert all(p.device.type == "cpu" for p in agent.actor.parameters())
    resumed = Trainer(cfg, run_dir=tmp_path / "dev", resume=True, progress=False)
    assert all(p.device.type == want.type for p in resumed.agent.actor.parameters())
