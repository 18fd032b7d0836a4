"""`robot-rl train` on simulators nobody here wrote, through the CLI, in the other-sims venv
(.venv-gymhil: gym-hil and gymnasium-robotics at MuJoCo 3.3.0): gym-hil's PandaPickCubeBase-v0
with demos from our scripted expert for it, and gymnasium-robotics' FetchReach-v4 (goal dict)
with its own reward. Smoke runs: they check the whole path (env adapter, success key, seeding
wrapper, demo hooks, dataset, checkpoints, evaluation), not the learning curve, which
`robot-rl bench external` measures."""
import json
from pathlib import Path

import pytest

from robot_rl.data.lerobot import LeRobotDataset

pytestmark = pytest.mark.slow


def _train(run_python, python, config, tmp_path, *overrides):
    out = run_python(python, ["-m", "robot_rl.cli", "train", f"config/{config}",
                              f"runs_dir={tmp_path}", "agent.compile=false", "--no-progress",
                              *overrides], timeout=600)
    result = json.loads(out.strip().splitlines()[-1])
    evals = [json.loads(x) for x in (Path(result["run_dir"]) / "metrics.jsonl").read_text()
             .splitlines() if '"eval"' in x]
    return result, evals


def test_gym_hil_pick_cube_trains_from_expert_demos(gymhil_python, run_python, tmp_path):
    result, evals = _train(run_python, gymhil_python, "gym_hil_pick_cube.yaml", tmp_path,
                           "demos.scripted_episodes=4", "train.total_env_steps=250",
                           "train.warmup_steps=100", "train.eval_every=250",
                           "train.eval_episodes=2", "train.checkpoint_every=250")
    run = tmp_path / "gym_hil_pick_cube"
    assert result["step"] == 250 and (run / "checkpoints" / "step_000000250").exists()
    assert len(evals) == 1 and evals[0]["episodes"] == 2
    demos = LeRobotDataset(run / "demos")
    # kept demos are the ones the env scored successful: success was read from info['succeed']
    assert demos.num_episodes == 4
    assert demos.features["observation.agent_pos"]["shape"] == [18]
    assert demos.features["observation.environment_state"]["shape"] == [3]
    assert demos.features["action"]["shape"] == [4]  # gym-hil's EEActionWrapper: xyz + gripper
    info = json.loads((run / "demos" / "meta" / "info.json").read_text())
    assert info["fps"] == 10
    last = demos.episode(0)
    assert bool(last["next.success"][-1]) and bool(last["next.terminated"][-1])
    assert float(last["next.reward"][-1]) == 1.0


def test_fetch_reach_trains_with_its_own_reward(gymhil_python, run_python, tmp_path):
    result, evals = _train(run_python, gymhil_python, "fetch_reach.yaml", tmp_path,
                           "train.total_env_steps=300", "train.warmup_steps=100",
                           "train.eval_every=150", "train.eval_episodes=2")
    assert result["step"] == 300 and [e["step"] for e in evals] == [150, 300]
    assert all(e["length"] == 50 for e in evals)  # FetchReach's own time limit
    # Fetch's reward is -1 per step until reached: returns lie in [-50, 0]
    assert all(-50 <= e["return"] <= 0 for e in evals)


def test_fetch_reach_demos_from_a_policy_hook(gymhil_python, run_python, tmp_path):
    """`robot-rl demos --config ... --policy module:callable` on a goal-dict env: the expert's
    episodes all succeed, and the flattened goal keys are the dataset's features."""
    out = tmp_path / "fetch_demos"
    run_python(gymhil_python, ["-m", "robot_rl.cli", "demos", "--config",
                               "config/fetch_reach.yaml", "--policy",
                               "robot_rl.sim.external_experts:fetch_reach_expert",
                               "--episodes", "3", "--out", str(out), "--only-success"],
               timeout=300)
    ds = LeRobotDataset(out)
    assert ds.num_episodes == 3 and ds.num_frames == 150
    assert {"observation.observation", "observation.desired_goal",
            "observation.achieved_goal"} <= set(ds.features)
    ep = ds.episode(2)
    assert bool(ep["next.success"][-1])
