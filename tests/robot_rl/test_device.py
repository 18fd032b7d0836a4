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


def test_a_run_with_its_replay_frames_on_the_device_learns_exactly_what_a_host_replay_run_does(tmp_path):
    """`train.replay_on_device=true` (here the device is the CPU; on a GPU, auto keeps it there):
    the same seed gives the same batches, so the same weights, and a resumed run refills the
    device copy from the checkpoint's replay."""
    def run(where, steps=80, resume=False):
        cfg = load_config("config/reach.yaml", [
            "agent.num_critics=2", "agent.hidden_dims=[32, 32]", "agent.batch_size=32",
            "agent.compile=false", "demos.scripted_episodes=2", "train.warmup_steps=20",
            "train.eval_every=100000", "train.video=false", "train.checkpoint_every=40",
            f"train.total_env_steps={steps}", "train.device=cpu", "train.torch_threads=1",
            f"train.replay_on_device={where == 'device'}", f"runs_dir={tmp_path}", f"name={where}"])
        t = Trainer(cfg, run_dir=tmp_path / where, resume=resume, progress=False)
        t.run()
        return t
    on, off = run("device"), run("host")
    assert on.online._mirror is not None and off.online._mirror is None
    for a, b in zip(on.agent.critic.parameters(), off.agent.critic.parameters()):
        assert torch.equal(a, b)
    on, off = run("device", 120, resume=True), run("host", 120, resume=True)
    assert on.step == 120
    for a, b in zip(on.agent.actor.parameters(), off.agent.actor.parameters()):
        assert torch.equal(a, b)
