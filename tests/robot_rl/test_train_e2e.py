"""End to end: real MuJoCo env, real scripted demos on disk, real SAC/RLPD training."""
import json

import pytest

from robot_rl.train import Trainer, load_config, load_policy, make_env, evaluate


@pytest.mark.slow
def test_reach_trains_to_90_percent(tmp_path):
    cfg = load_config("config/reach.yaml", [f"runs_dir={tmp_path}", "train.total_env_steps=5000",
                                            "train.eval_episodes=50", "train.stop_at_success=0.9",
                                            "train.video=true"])
    result = Trainer(cfg, progress=False).run()
    assert result["eval_success"] >= 0.9, result
    run = tmp_path / "reach"
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()
             if '"eval"' in x]
    assert evals[-1]["success_rate"] >= 0.9 and evals[-1]["episodes"] == 50
    assert (run / "learning_curve.png").stat().st_size > 0
    assert list((run / "videos").glob("eval_step_*.mp4"))
    # the saved policy reproduces on seeds it never saw
    agent, cfg2 = load_policy(run)
    res = evaluate(agent, make_env(cfg2, teleop=False), 50, seed=7_000_000)
    assert res["success_rate"] >= 0.8, res
