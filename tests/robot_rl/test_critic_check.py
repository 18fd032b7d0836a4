"""`robot-rl eval RUN --critic`: a real (short) PandaReach run's critic against the scripted
expert's episodes; the discounted returns it compares with are known exactly for a sparse
reward that ends the episode."""
import json

import numpy as np
import pytest

from robot_rl.cli import main
from robot_rl.run_config import load_config

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_critic_check_of_a_trained_run(tmp_path, capsys):
    from robot_rl.train import Trainer
    cfg = load_config(None, [f"runs_dir={tmp_path}", "name=reach", "env.id=robot_rl/PandaReach-v0",
                             "agent.hidden_dims=[32, 32]", "agent.batch_size=32", "agent.utd_ratio=1",
                             "agent.gamma=0.9", "demos.scripted_episodes=3", "train.total_env_steps=200",
                             "train.warmup_steps=50", "train.eval_every=200", "train.eval_episodes=1",
                             "train.video=false", "train.torch_threads=1"])
    Trainer(cfg, progress=False).run()
    assert main(["eval", str(tmp_path / "reach"), "--critic", "--episodes", "4"]) == 0
    out = capsys.readouterr().out
    assert "successful demo-policy episodes (gamma 0.9)" in out and "mean Q" in out
    res = json.loads(out.strip().splitlines()[-1])
    assert res["successful"] == res["episodes"] == 4  # the expert always reaches
    last = res["by_steps_before_end"][0]
    assert last["steps_before_end"] == [1, 3] and last["pairs"] == 12
    # reward 1 on the terminating step only: the return k steps before the end is gamma^(k-1)
    assert last["return_mean"] == pytest.approx((1 + 0.9 + 0.81) / 3, rel=1e-6)
    assert all(np.isfinite(r["q_mean"]) for r in res["by_steps_before_end"])
    assert sum(r["pairs"] for r in res["by_steps_before_end"]) >= 4 * 4
