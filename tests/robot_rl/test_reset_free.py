"""Reset-free training on PandaRelocate: a forward and a backward learner share one real MuJoCo
env, taking turns without scene resets except the scheduled and stuck ones, which are counted."""
import json

import pytest

from robot_rl.run_config import load_config
from robot_rl.train import resume, train

pytestmark = pytest.mark.usefixtures("single_torch_thread")

SMALL = ["env.id=robot_rl/PandaRelocate-v0", "reset_free.enabled=true", "demos.scripted_episodes=2",
         "agent.hidden_dims=[32, 32]", "agent.utd_ratio=1", "agent.batch_size=64", "agent.compile=false",
         "train.warmup_steps=100", "train.eval_every=200", "train.eval_episodes=2", "train.video=false",
         "train.torch_threads=1", "train.checkpoint_every=200"]


def episodes(run_dir, direction):
    rows = [json.loads(line) for line in (run_dir / direction / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "episode"]


def test_two_learners_take_turns_on_one_env_and_every_reset_is_counted(tmp_path):
    cfg = load_config(None, [*SMALL, f"runs_dir={tmp_path}", "name=rf", "train.total_env_steps=600",
                             "reset_free.full_reset_every=4", "reset_free.stuck_after=1"])
    result = train(cfg, progress=False)
    run = tmp_path / "rf"
    fwd, bwd = episodes(run, "forward"), episodes(run, "backward")
    assert result["step"] >= 600 and result["episodes"] == len(fwd) + len(bwd)
    assert abs(len(fwd) - len(bwd)) <= 1 and all(r["direction"] == "forward" for r in fwd)
    assert all(r["direction"] == "backward" for r in bwd)
    n = result["episodes"]
    assert n >= 5 and result["resets"]["scheduled"] == (n - 1) // 4  # episodes 4, 8, ...: real resets
    assert result["resets"]["stuck"] >= 1  # an untrained forward learner fails: scripted reset
    state = json.loads((run / "reset_free.json").read_text())
    assert state["resets"] == result["resets"] and state["episodes"] == n
    # no reset between turns: a failed forward episode leaves the cube in zone A, where the
    # backward task is already done, so its episodes end at once
    assert any(r["success"] and r["length"] <= 3 for r in bwd)
    for d in ("forward", "backward"):
        assert (run / d / "checkpoints").exists()
    evals = [json.loads(x) for x in (run / "forward" / "metrics.jsonl").read_text().splitlines()]
    assert [r for r in evals if r["kind"] == "eval"]  # on held-out seeds, with ordinary resets


def test_resume_continues_both_learners_and_whose_turn_it_is(tmp_path):
    cfg = load_config(None, [*SMALL, f"runs_dir={tmp_path}", "name=rf", "train.total_env_steps=250"])
    first = train(cfg, progress=False)
    run = tmp_path / "rf"
    saved = json.loads((run / "reset_free.json").read_text())
    second = resume(run, progress=False, overrides=["train.total_env_steps=450"])
    assert second["step"] >= 450 and second["episodes"] > first["episodes"] == saved["episodes"]
    fwd, bwd = episodes(run, "forward"), episodes(run, "backward")
    assert len(fwd) + len(bwd) == second["episodes"]  # no episode logged twice, none lost
    # turns strictly alternate from the first episode on, across the restart too
    assert saved["turn"] == saved["episodes"] % 2
    assert (len(fwd), len(bwd)) == ((second["episodes"] + 1) // 2, second["episodes"] // 2)
