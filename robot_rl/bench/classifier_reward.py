"""`robot-rl bench classifier-reward`: the SERL workflow end to end in sim.

1. Scripted-expert rollouts of PandaPickCube give camera frames labelled by the simulator's
   success check: clean ones (a quarter botched), all-botched ones (gripper never closes, or
   closes in the air and lifts nothing) and noisy ones. The botched ones matter: trained on
   clean rollouts only, the classifier took "arm raised" for success and the learner found
   that in 8 steps (true success 0% after 2000 steps) - SERL's users meet the same false
   positives and answer them with more negatives.
2. A success classifier is trained on them (episode-disjoint splits, threshold for a 1% FPR).
3. SAC/RLPD trains with `config/pick_cube_classifier_reward.yaml`: the classifier, not the
   simulator, gives every reward (demo rewards relabeled by it too) and ends episodes.
4. The result is the TRUE success rate (the simulator's `is_success`) on held-out seeds.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CONFIG = Path(__file__).resolve().parents[2] / "config" / "pick_cube_classifier_reward.yaml"


def run(runs_dir: str = "runs/bench", seed: int = 0, frame_episodes: int = 40,
        final_episodes: int = 100, json_path: str | None = None, overrides=()) -> dict:
    from robot_rl import train
    from robot_rl.rewards.classifier import (ClassifierConfig, sim_success_frames,
                                             train_success_classifier)
    cfg = train.load_config(str(CONFIG), [f"runs_dir={runs_dir}", f"seed={seed}",
                                          f"name=classifier_reward_s{seed}", *overrides])
    kw = cfg.env.kwargs
    run_dir = Path(cfg.runs_dir) / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    clf_path = run_dir / "success_classifier.pt"
    report_path = run_dir / "classifier_report.json"
    if not clf_path.exists():
        # frame seeds are disjoint from the demo (seed*7919+500k), training and eval seeds
        cams = tuple(kw["cameras"])
        data = _concat([sim_success_frames("PandaPickCube", frame_episodes, kw["image_size"], cams,
                                           seed=3_000_000 + seed + 10_000 * i, fail_prob=fail,
                                           noise=noise, progress=True)
                        for i, (fail, noise) in enumerate([(0.25, 0.0), (1.0, 0.0), (0.5, 0.3)])])
        clf, report = train_success_classifier(
            data["images"], data["label"], data["episode"],
            ClassifierConfig(image_keys=tuple(kw["cameras"])), seed=seed, progress=True)
        clf.save(clf_path)
        report_path.write_text(json.dumps(report, indent=2))
    report = json.loads(report_path.read_text())
    test = report["test"]
    print(f"classifier: held-out accuracy {test['accuracy']:.3f}, FPR {test['fpr']:.3f}, "
          f"TPR {test['tpr']:.3f} at threshold {report['threshold']:.3f}")
    cfg.env.reward["kwargs"] = {"path": str(clf_path)}
    resume = (run_dir / "checkpoints").exists() and any((run_dir / "checkpoints").glob("step_*"))
    trainer = train.Trainer(cfg, run_dir=run_dir, resume=resume)
    result = trainer.run()
    final = train.evaluate(trainer.agent, trainer.eval_env, final_episodes, seed=5_000_000,
                           progress=True)
    out = {"classifier_test_accuracy": test["accuracy"], "classifier_test_fpr": test["fpr"],
           "classifier_test_tpr": test["tpr"], "env_steps": result["step"],
           "wall_clock_s": result["wall_clock_s"], "last_eval_true_success": result["eval_success"],
           "final_true_success": final["success_rate"], "final_episodes": final_episodes,
           "run_dir": str(run_dir)}
    print(json.dumps(out, indent=2))
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=2))
    return out


def _concat(parts: list[dict]) -> dict:
    """Frame sets of several rollout batches as one, episode ids kept distinct."""
    offsets = np.cumsum([0] + [int(p["episode"].max()) + 1 for p in parts[:-1]])
    return {"images": {k: np.concatenate([p["images"][k] for p in parts]) for k in parts[0]["images"]},
            "label": np.concatenate([p["label"] for p in parts]),
            "episode": np.concatenate([p["episode"] + o for p, o in zip(parts, offsets)])}
