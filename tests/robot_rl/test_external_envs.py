"""Bring your own env: gymnasium envs nobody here wrote (gymnasium's own Pendulum, and small envs
written the way users write theirs in byo_envs.py) through the real adapter, trainer, dataset
writer and CLI."""
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

from robot_rl.data.lerobot import LeRobotDataset
from robot_rl.demos import collect_scripted_demos
from robot_rl.envs import (EnvSpecError, LearnerEnv, LogScaledError, check_env, find_wrapper,
                           make_gym_env)
from robot_rl.run_config import EnvConfig, load_config
from robot_rl.train import Trainer, evaluate

HERE = Path(__file__).parent
REPO = HERE.parents[1]
BYO = "byo_envs:ByoReach-v0"


@pytest.fixture(autouse=True)
def _byo_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))


def test_box_observation_and_bounded_actions_pendulum():
    env = make_gym_env(EnvConfig(id="Pendulum-v1"))
    assert set(env.observation_space.spaces) == {"state"}
    assert env.observation_space["state"].shape == (3,)
    assert env.action_space == gym.spaces.Box(-1, 1, (1,), np.float32)
    obs, _ = env.reset(seed=0)
    assert obs["state"].dtype == np.float32 and obs["state"].shape == (3,)
    # the policy's [-1, 1] reaches Pendulum as [-2, 2]: full torque one way gives the same
    # step as gymnasium's own env stepped with 2.0
    ref = gym.make("Pendulum-v1")
    ref.reset(seed=0)
    ref_obs, ref_r, *_ = ref.step(np.array([2.0], np.float32))
    obs, r, _, _, info = env.step(np.array([1.0], np.float32))
    np.testing.assert_allclose(obs["state"], ref_obs, rtol=1e-6)
    assert r == pytest.approx(ref_r)
    np.testing.assert_array_equal(info["action"], [1.0])  # what the env got, policy coordinates
    assert info["is_success"] is False


def test_goal_dict_and_channel_first_images_are_flattened():
    env = make_gym_env(EnvConfig(id=BYO))
    spaces = env.observation_space.spaces
    assert set(spaces) == {"observation", "desired_goal", "achieved_goal", "pixels_top"}
    assert spaces["pixels_top"].shape == (16, 16, 3) and spaces["pixels_top"].dtype == np.uint8
    assert spaces["desired_goal"].dtype == np.float32
    obs, _ = env.reset(seed=3)
    raw = env.raw_obs
    np.testing.assert_array_equal(obs["pixels_top"], np.moveaxis(raw["pixels"]["top"], 0, -1))
    np.testing.assert_allclose(obs["desired_goal"], raw["desired_goal"].astype(np.float32))
    # action rescaling: [-1, 1] -> [-0.1, 0.1] x [-0.1, 0.1] x [0, 2], clipped first
    byo = env.unwrapped
    _, _, _, _, info = env.step(np.array([1.0, -1.0, 0.0], np.float32))
    np.testing.assert_allclose(byo.received[-1], [0.1, -0.1, 1.0])
    _, _, _, _, info = env.step(np.array([5.0, 0.0, -3.0], np.float32))
    np.testing.assert_allclose(byo.received[-1], [0.1, 0.0, 0.0])
    np.testing.assert_array_equal(info["action"], [1.0, 0.0, -1.0])
    assert env.scale.to_policy(np.array([0.05, -0.1, 2.0])).tolist() == [0.5, -1.0, 1.0]
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0, 0], np.float32))


@pytest.mark.parametrize("env_id, match", [
    ("byo_envs:DiscreteActions-v0", "continuous actions"),
    ("byo_envs:TextObservations-v0", r"observation_space\['instruction'\] is Text"),
    ("byo_envs:UnboundedActions-v0", "finite bounds"),
])
def test_unsupported_spaces_are_refused_by_name(env_id, match):
    with pytest.raises(EnvSpecError, match=match):
        make_gym_env(EnvConfig(id=env_id))


def test_module_id_and_wrapper_errors_are_clear():
    with pytest.raises(EnvSpecError, match="cannot import 'no_such_module'"):
        make_gym_env(EnvConfig(id="Pendulum-v1", wrappers=["no_such_module:wrap"]))
    with pytest.raises(EnvSpecError, match="expected 'module:callable'"):
        make_gym_env(EnvConfig(id="Pendulum-v1", wrappers=["byo_envs.BoxToDict"]))
    with pytest.raises(EnvSpecError, match="env.id 'byo_envs:Nope-v0'"):
        make_gym_env(EnvConfig(id="byo_envs:Nope-v0"))


def test_success_key_checked_at_start():
    env = make_gym_env(EnvConfig(id=BYO))  # info has `success` only: found without config
    check_env(env, EnvConfig(id=BYO))
    env.reset(seed=0)
    env.unwrapped.pos = env.unwrapped.goal.copy()
    assert env.step(np.zeros(3, np.float32))[4]["is_success"] is True
    cfg = EnvConfig(id=BYO, success_key="is_success")
    with pytest.raises(EnvSpecError, match=r"success_key is 'is_success'.*\['success'\]"):
        check_env(make_gym_env(cfg), cfg)


def test_ignored_seeds_warn_and_missing_time_limit_refused(tmp_path):
    cfg = EnvConfig(id="byo_envs:SeedlessReach-v0")
    with pytest.warns(UserWarning, match=r"ignores reset\(seed=...\)"):
        check_env(make_gym_env(cfg), cfg)
    # the fix for such an env: seed the global RNG from reset(seed=...)
    cfg = EnvConfig(id="byo_envs:SeedlessReach-v0", wrappers=["robot_rl.envs:SeedGlobalNumpy"])
    assert not [n for n in check_env(make_gym_env(cfg), cfg) if "seed" in n]
    cfg = load_config(None, [f"runs_dir={tmp_path}", "env.id=byo_envs:ByoReachNoLimit-v0",
                             "demos.scripted_episodes=0", "train.video=false"])
    with pytest.raises(EnvSpecError, match="env.max_episode_steps"):
        Trainer(cfg, progress=False)
    with pytest.raises(EnvSpecError, match="env.max_episode_steps"):
        evaluate(None, make_gym_env(cfg.env), 1, 0)
    env = make_gym_env(EnvConfig(id="byo_envs:ByoReachNoLimit-v0", max_episode_steps=7))
    env.reset(seed=0)
    steps = 0
    while True:
        steps += 1
        if any(env.step(np.array([-1.0, -1.0, -1.0], np.float32))[2:4]):
            break
    assert steps == 7


def test_wrapped_box_to_dict_env_writes_demos(tmp_path):
    """A user's ObservationWrapper (Box -> Dict) in env.wrappers: demos are written from the
    outermost env's spaces, with fps and robot type from the env."""
    cfg = EnvConfig(id="Pendulum-v1", wrappers=["byo_envs:BoxToDict"])
    out = tmp_path / "pendulum_demos"
    collect_scripted_demos(cfg, 2, str(out), policy="byo_envs:pendulum_swing_policy")
    ds = LeRobotDataset(out)
    assert ds.num_episodes == 2 and ds.num_frames == 400
    assert ds.features["observation.state"]["shape"] == [3]
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["fps"] == 30  # Pendulum's metadata render_fps
    ep = ds.episode(0)
    # actions are stored in Pendulum's own units: the policy asks for up to +-5, the env gets +-2
    assert np.abs(ep["action"]).max() == pytest.approx(2.0)


def test_policy_hook_demos_take_action_noise_and_botched_episodes(tmp_path):
    """--noise and --fail-prob on a user's policy, as on our experts: Gaussian noise in
    half-widths of the action range, and whole episodes of uniform random actions."""
    cfg = EnvConfig(id="Pendulum-v1", wrappers=["byo_envs:BoxToDict"])

    def actions(noise, fail_prob):
        out = tmp_path / f"still_{noise}_{fail_prob}"
        collect_scripted_demos(cfg, 2, str(out), policy="byo_envs:pendulum_still_policy", seed=1,
                               noise=noise, fail_prob=fail_prob)
        ds = LeRobotDataset(out)
        return np.concatenate([np.asarray(ds.episode(i)["action"]).ravel() for i in range(2)])

    assert np.all(actions(0.0, 0.0) == 0.0)
    noisy = actions(0.5, 0.0)  # N(0, 0.5 * 2), clipped to Pendulum's +-2
    assert abs(noisy.mean()) < 0.15 and 0.85 < noisy.std() < 1.05
    botched = actions(0.0, 1.0)  # uniform on [-2, 2]
    assert abs(botched.mean()) < 0.2 and 0.2 < np.mean(np.abs(botched) > 1.5) < 0.3


@pytest.mark.slow
def test_policy_hook_demos_then_training_reaches_success(tmp_path):
    """demos.policy (a factory taking the env) on a goal-dict image env with `success` only in
    its info; the learner trains on it from those demos through the public Trainer."""
    cfg = load_config(None, [
        f"runs_dir={tmp_path}", "name=byo", f"env.id={BYO}", "env.fps=20",
        "demos.policy=byo_envs:ReachExpert", "demos.scripted_episodes=10",
        "agent.image_encoder=none", "agent.num_critics=2", "agent.utd_ratio=2", "agent.gamma=0.9",
        "train.total_env_steps=3000", "train.warmup_steps=100", "train.eval_every=250",
        "train.eval_episodes=20", "train.checkpoint_every=500", "train.stop_at_success=0.9",
        "train.video=true", "env.kwargs.render_mode=rgb_array"])
    result = Trainer(cfg, progress=False).run()
    run = tmp_path / "byo"
    demos = LeRobotDataset(run / "demos")
    info = json.loads((run / "demos" / "meta" / "info.json").read_text())
    assert demos.num_episodes == 10 and info["fps"] == 20 and info["robot_type"] == "point2d"
    assert "observation.images.pixels_top" in demos.features
    assert "observation.desired_goal" in demos.features
    assert result["eval_success"] >= 0.9, result
    assert list((run / "videos").glob("eval_step_*.mp4"))


def test_env_without_render_trains_without_video(tmp_path):
    cfg = load_config(None, [f"runs_dir={tmp_path}", "name=norender", f"env.id={BYO}",
                             "demos.policy=byo_envs:reach_policy", "demos.scripted_episodes=2",
                             "agent.image_encoder=none", "train.total_env_steps=60",
                             "train.warmup_steps=50", "train.eval_every=60",
                             "train.eval_episodes=2", "train.checkpoint_every=60"])
    with pytest.warns(UserWarning, match="cannot render"):
        trainer = Trainer(cfg, progress=False)
    trainer.run()
    assert not (tmp_path / "norender" / "videos").exists()
    assert (tmp_path / "norender" / "checkpoints" / "step_000000060").exists()


def test_failing_evaluation_keeps_the_training(tmp_path):
    cfg = load_config(None, [f"runs_dir={tmp_path}", "name=evalfail",
                             "env.id=byo_envs:FailingEvalReach-v0", "train.video=false",
                             "demos.policy=byo_envs:reach_policy", "demos.scripted_episodes=2",
                             "agent.image_encoder=none", "train.total_env_steps=200",
                             "train.warmup_steps=50", "train.eval_every=80",
                             "train.checkpoint_every=1000", "train.eval_seed=1000000"])
    with pytest.raises(RuntimeError, match="evaluation broke"):
        Trainer(cfg, progress=False)  # the start check resets on an evaluation seed too
    cfg.train.eval_seed = 999_990  # the start check passes; the 11th eval episode breaks
    cfg.train.eval_episodes = 12
    cfg.name = "evalfail2"
    with pytest.raises(RuntimeError, match="evaluation broke"):
        Trainer(cfg, progress=False).run()
    assert (tmp_path / "evalfail2" / "checkpoints" / "step_000000080").exists()


@pytest.mark.slow
def test_cli_trains_pendulum(tmp_path):
    """`robot-rl train` on gymnasium's Pendulum-v1, a config of a few lines, no demos, no video
    (Pendulum has no render mode set): a smoke run that checkpoints, evaluates and resumes."""
    cfg = {"name": "pendulum", "runs_dir": str(tmp_path), "env": {"id": "Pendulum-v1"},
           "demos": {"scripted_episodes": 0},
           "agent": {"num_critics": 2, "utd_ratio": 1, "batch_size": 64},
           "train": {"total_env_steps": 400, "warmup_steps": 100, "eval_every": 200,
                     "eval_episodes": 2, "checkpoint_every": 200}}
    path = tmp_path / "pendulum.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cli = [sys.executable, "-m", "robot_rl.cli"]
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    out = subprocess.run(cli + ["train", str(path), "--no-progress"], capture_output=True,
                         text=True, timeout=600, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "cannot render" in out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["step"] == 400 and result["eval_success"] == 0.0
    evals = [json.loads(x) for x in (tmp_path / "pendulum" / "metrics.jsonl").read_text()
             .splitlines() if '"eval"' in x]
    assert [e["step"] for e in evals] == [200, 400] and evals[-1]["length"] == 200
    out = subprocess.run(cli + ["train", "--resume", str(tmp_path / "pendulum"), "--no-progress",
                                "train.total_env_steps=600"], capture_output=True, text=True,
                         timeout=600, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["step"] == 600


def test_wrappers_take_keyword_arguments():
    cfg = EnvConfig(id="Pendulum-v1", wrappers=[
        {"gymnasium.wrappers:RescaleAction": {"min_action": -0.5, "max_action": 0.5}}])
    env = make_gym_env(cfg)
    env.reset(seed=0)
    env.step(np.array([1.0], np.float32))  # policy +1 -> RescaleAction's +0.5 -> Pendulum's +2
    np.testing.assert_allclose(env.unwrapped.last_u, 2.0)
    with pytest.raises(EnvSpecError, match=r"env.wrappers\[0\]: expected"):
        make_gym_env(EnvConfig(id="Pendulum-v1", wrappers=[{"a:b": 1, "c:d": 2}]))


def test_log_scaled_error_on_an_env_nobody_here_wrote():
    """gymnasium's Reacher-v5 (a Box whose last two entries are fingertip - target) through
    env.wrappers: the learner's state gets the error log-scaled from 1 mm appended, checked
    against MuJoCo's own fingertip and target positions."""
    cfg = EnvConfig(id="Reacher-v5", wrappers=[
        {"robot_rl.envs:LogScaledError": {"scale": 0.001, "indices": [8, 9]}}])
    env = make_gym_env(cfg)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        sim = env.unwrapped
        error = (sim.get_body_com("fingertip") - sim.get_body_com("target"))[:2]
        assert obs["state"].shape == (12,)
        np.testing.assert_allclose(obs["state"][8:10], error, atol=1e-6)
        np.testing.assert_allclose(obs["state"][10:], np.sign(error) * np.log1p(np.abs(error) / 0.001),
                                   rtol=1e-5)
        obs, *_ = env.step(env.action_space.sample())
    assert find_wrapper(env, LogScaledError).observation_space.shape == (12,)
    with pytest.raises(ValueError, match="a Box observation takes no key"):
        LogScaledError(gym.make("Reacher-v5"), 0.001, key="state")
    with pytest.raises(ValueError, match="scale must be > 0"):
        LogScaledError(gym.make("Reacher-v5"), 0.0)


def test_log_scaled_error_of_a_dict_observation_equals_the_insertions_own():
    """On a Dict observation (ours without its built-in copy), the wrapper adds the same numbers
    the insertion task computes itself, as key `name`; `minus` takes a goal-env's difference."""
    ours = gym.make("robot_rl/PandaPegInsert-v0")
    plain = LogScaledError(gym.make("robot_rl/PandaPegInsert-v0", fine_offset_scale=None), 0.001,
                           key="env_state", indices=[3, 4, 5])
    a, _ = ours.reset(seed=4)
    b, _ = plain.reset(seed=4)
    np.testing.assert_allclose(b["fine_error"], a["env_state"][6:9], rtol=1e-5)
    assert plain.observation_space["fine_error"].shape == (3,)
    goal = LogScaledError(gym.make("robot_rl/PandaPegInsert-v0", fine_offset_scale=None), 0.001,
                          key="env_state", indices=[0, 1, 2], minus="env_state", name="zero")
    np.testing.assert_array_equal(goal.reset(seed=4)[0]["zero"], 0.0)  # a key minus itself
    with pytest.raises(ValueError, match="no key 'nope'"):
        LogScaledError(gym.make("robot_rl/PandaPegInsert-v0"), 0.001, key="nope")
