"""Success classifier: trained on rendered PandaPickCube frames (cube lifted vs not, labels from
the simulator), judged on held-out episodes; threshold for a target FPR; save/load; as the
reward of a real vision env with terminate_on_success; the train-classifier CLI on a dataset."""
from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np
import pytest

from robot_rl.rewards.base import RewardWrapper
from robot_rl.rewards.classifier import (ClassifierConfig, ClassifierReward, SuccessClassifier,
                                         threshold_for_fpr, train_success_classifier)


@pytest.fixture(scope="module")
def trained(pick_frames):
    d = pick_frames
    clf, report = train_success_classifier(
        d["images"], d["label"], d["episode"], ClassifierConfig(image_keys=("front", "wrist")),
        steps=300, target_fpr=0.02, seed=0)
    return clf, report


def test_classifier_held_out_accuracy(trained, pick_frames):
    clf, report = trained
    test = report["test"]
    # the split is by episode: test frames come from episodes never seen in training
    assert report["episodes"]["test"] >= 3 and test["positives"] > 20 and test["negatives"] > 20
    assert test["accuracy"] >= 0.95, report
    assert test["fpr"] <= 0.05, report
    assert report["calibration"]["fpr"] <= 0.02 + 1e-9  # the target, on the calibration split
    assert 0.5 <= report["threshold"] < 1.0


def test_threshold_for_target_fpr():
    neg = np.linspace(0.0, 0.99, 100)  # 100 negatives
    t = threshold_for_fpr(neg, 0.05, min_threshold=0.0)
    assert (neg >= t).mean() <= 0.05 and (neg >= np.nextafter(t, -1)).sum() >= 5
    assert threshold_for_fpr(neg, 0.0, min_threshold=0.0) > neg.max()
    assert threshold_for_fpr(np.full(10, 0.1), 0.01) == 0.5  # never below min_threshold


def test_save_load_roundtrip(trained, pick_frames, tmp_path):
    clf, report = trained
    path = clf.save(tmp_path / "clf.pt")
    back = SuccessClassifier.load(path)
    batch = {k: v[:40] for k, v in pick_frames["images"].items()}
    np.testing.assert_allclose(back.predict_proba(batch), clf.predict_proba(batch), atol=1e-6)
    assert back.threshold == clf.threshold and back.report["test"] == report["test"]
    from robot_rl.rewards.base import make_reward_model
    rm = make_reward_model("classifier", path=str(path), reward="prob")
    np.testing.assert_allclose(rm(batch), clf.predict_proba(batch), atol=1e-6)
    np.testing.assert_array_equal(rm.success(batch), clf.predict(batch))
    with pytest.raises(ValueError, match="shape"):
        back.predict_proba({"front": batch["front"][:, :32], "wrist": batch["wrist"][:, :32]})


class IgnoreEnvTermination(gym.Wrapper):
    """Test scaffolding: the task's own success no longer ends the episode, so only the
    classifier can."""

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        return obs, r, False, trunc, info


def test_classifier_reward_ends_episode_in_a_real_vision_env(trained):
    """RewardWrapper(classifier, terminate_on_success) on a real vision env: the scripted expert
    lifts the cube and the classifier (alone) ends the episode, within a step of the true
    success."""
    from robot_rl.sim.envs import make_sim_env
    from robot_rl.sim.tasks import make_expert
    clf, _ = trained
    base = make_sim_env("PandaPickCube", vision=True, image_size=64)
    env = RewardWrapper(IgnoreEnvTermination(base), ClassifierReward(classifier=clf),
                        mode="replace", terminate_on_success=True)
    expert = make_expert(env, seed=0)
    try:
        obs, _ = env.reset(seed=12345)  # a seed none of the training episodes used
        expert.reset()
        rewards, env_success, term = [], [], False
        while not term and len(rewards) < 50:
            obs, r, term, trunc, info = env.step(expert.act(obs))
            rewards.append(r)
            env_success.append(bool(info["is_success"]))
            assert info["model_reward"] == r and info["model_success"] == (r == 1.0)
        lift = float(base.task.cube_pos[2] - base.task.half)
    finally:
        env.close()
    assert term and rewards[-1] == 1.0 and sum(rewards) == 1.0
    first_true = env_success.index(True) if True in env_success else None
    assert first_true is not None, "the expert did not lift the cube"
    assert abs((len(rewards) - 1) - first_true) <= 1, (len(rewards) - 1, first_true)
    assert lift > 0.03, lift


def test_train_classifier_cli(tmp_path, pick_frames):
    """`robot-rl reward train-classifier DATASET --out FILE` on a LeRobotDataset (mp4 frames)
    whose per-frame `label.success` marks the lifted frames."""
    from robot_rl.data.lerobot import write_episodes
    from robot_rl.rewards.cli import add_cli
    d = pick_frames
    eps = []
    for e in range(8):
        m = d["episode"] == e
        eps.append({"observation.images.wrist": d["images"]["wrist"][m],
                    "label.success": d["label"][m]})
    write_episodes(tmp_path / "ds", eps, fps=10, task="pick up the red cube", features={
        "observation.images.wrist": {"dtype": "video", "shape": [64, 64, 3]},
        "label.success": {"dtype": "bool", "shape": [1]}})
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="cmd"))
    out = tmp_path / "clf.pt"
    args = parser.parse_args(["reward", "train-classifier", str(tmp_path / "ds"), "--out", str(out),
                              "--steps", "40", "--json", str(tmp_path / "report.json")])
    assert args.func(args) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["label_key"] == "label.success" and report["test"]["frames"] > 0
    for k in ("accuracy", "fpr", "tpr"):
        assert 0.0 <= report["test"][k] <= 1.0
    assert SuccessClassifier.load(out).config.image_keys == ("wrist",)


def test_frozen_pretrained_trunk_variant_roundtrip(pick_frames, tmp_path):
    """trunk="pretrained": a frozen torchvision resnet18 (random weights here: no downloads)
    whose features are computed once; only the head trains. A random trunk cannot be rebuilt
    from a name, so it is saved with the head."""
    idx = np.flatnonzero(pick_frames["episode"] < 4)
    images = {"wrist": pick_frames["images"]["wrist"][idx]}
    clf, report = train_success_classifier(
        images, pick_frames["label"][idx], pick_frames["episode"][idx],
        ClassifierConfig(image_keys=("wrist",), trunk="pretrained"), steps=5)
    assert report["test"]["frames"] > 0
    back = SuccessClassifier.load(clf.save(tmp_path / "frozen.pt"))
    sample = {"wrist": images["wrist"][:8]}
    np.testing.assert_allclose(back.predict_proba(sample), clf.predict_proba(sample), atol=1e-6)


def test_warm_start_and_sample_weights(trained, pick_frames):
    """`init` starts from a trained classifier's weights (with lr 0 nothing moves: the same
    probabilities); `sample_weight` must be one non-negative number per frame."""
    clf, _ = trained
    d = pick_frames
    cfg = ClassifierConfig(image_keys=("front", "wrist"))
    same, _ = train_success_classifier(d["images"], d["label"], d["episode"], cfg, steps=1,
                                       lr=0.0, init=clf, seed=1)
    some = {k: v[:40] for k, v in d["images"].items()}
    np.testing.assert_allclose(same.predict_proba(some), clf.predict_proba(some), atol=1e-6)
    fresh, _ = train_success_classifier(d["images"], d["label"], d["episode"], cfg, steps=1,
                                        lr=0.0, seed=1)
    assert np.abs(fresh.predict_proba(some) - clf.predict_proba(some)).max() > 0.1
    with pytest.raises(ValueError, match="sample_weight"):
        train_success_classifier(d["images"], d["label"], d["episode"], cfg, steps=1,
                                 sample_weight=np.ones(3))
