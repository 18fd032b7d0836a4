"""`robot-rl bench classifier-reward`: the (HIL-)SERL workflow end to end in sim.

1. Scripted-expert rollouts of PandaPickCube give camera frames labelled by the simulator's
   success check: clean ones (a quarter botched), all-botched ones (gripper never closes, or
   closes in the air and lifts nothing), noisy ones, and workspace sweeps (the arm visits
   random points of the safety box, gripper open or closed, cube left on the table) - the
   negatives a SERL user records by moving the arm around without succeeding.
2. A success classifier is trained on them (episode-disjoint splits, threshold for a 1% FPR).
3. Hard-negative rounds: SAC/RLPD trains for `mining_steps` with the classifier as the only
   reward; every frame the classifier calls a success but the simulator does not is a false
   positive, added to the negatives before the classifier is retrained. This is the labelling
   a HIL-SERL user does by hand: a classifier trained once is exploited within a few hundred
   steps (here: the arm raised higher than any training frame scored as "lifted", 8-step
   episodes, 0% true success after 2000 steps), whatever its held-out accuracy.
4. The final run (`config/pick_cube_classifier_reward.yaml`, from scratch) is rewarded and
   terminated by the last classifier only; the result is the TRUE success rate (the simulator's
   `is_success`) on held-out seeds. Env steps of the mining rounds are reported separately.
"""
from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np

CONFIG = Path(__file__).resolve().parents[2] / "config" / "pick_cube_classifier_reward.yaml"


class FalsePositiveRecorder(gym.Wrapper):
    """Keeps the camera frames of steps where the reward model claimed a success the simulator
    denies (`info["model_success"]` vs `info["is_success"]`)."""

    def __init__(self, env: gym.Env, cameras: tuple[str, ...]):
        super().__init__(env)
        self.cameras, self.frames, self.claims = cameras, {c: [] for c in cameras}, 0

    def step(self, action):
        obs, reward, term, trunc, info = self.env.step(action)
        if info.get("model_success"):
            self.claims += 1
            if not info["is_success"]:
                for c in self.cameras:
                    self.frames[c].append(obs[c])
        return obs, reward, term, trunc, info

    @property
    def false_positives(self) -> int:
        return len(self.frames[self.cameras[0]])


def run(runs_dir: str = "runs/bench", seed: int = 0, frame_episodes: int = 40,
        mining_rounds: int = 3, mining_steps: int = 1000, final_episodes: int = 100,
        json_path: str | None = None, overrides=()) -> dict:
    from robot_rl import train
    from robot_rl.rewards.classifier import (ClassifierConfig, sim_success_frames,
                                             train_success_classifier)
    cfg = train.load_config(str(CONFIG), [f"runs_dir={runs_dir}", f"seed={seed}",
                                          f"name=classifier_reward_s{seed}", *overrides])
    cams, size = tuple(cfg.env.kwargs["cameras"]), cfg.env.kwargs["image_size"]
    bench_dir = Path(cfg.runs_dir) / cfg.name
    bench_dir.mkdir(parents=True, exist_ok=True)
    # frame seeds are disjoint from the demo (seed*7919+500k), training and eval seeds
    data = _concat([sim_success_frames("PandaPickCube", frame_episodes, size, cams,
                                       seed=3_000_000 + seed + 10_000 * i, fail_prob=fail,
                                       noise=noise, progress=True)
                    for i, (fail, noise) in enumerate([(0.25, 0.0), (1.0, 0.0), (0.5, 0.3)])]
                   + [workspace_sweep_frames(frame_episodes, size, cams, seed=4_000_000 + seed)])
    rounds = []
    for r in range(mining_rounds + 1):
        clf, report = train_success_classifier(data["images"], data["label"], data["episode"],
                                               ClassifierConfig(image_keys=cams), seed=seed,
                                               progress=True)
        clf_path = clf.save(bench_dir / f"success_classifier_r{r}.pt")
        test = report["test"]
        print(f"round {r}: classifier held-out accuracy {test['accuracy']:.3f}, FPR "
              f"{test['fpr']:.3f}, TPR {test['tpr']:.3f} at threshold {report['threshold']:.3f}")
        final = r == mining_rounds
        run_cfg = train.load_config(str(CONFIG), [
            f"runs_dir={bench_dir}", f"seed={seed}", f"name={'final' if final else f'mining_r{r}'}",
            *overrides, *([] if final else [f"train.total_env_steps={mining_steps}",
                                            f"train.eval_every={mining_steps}",
                                            "train.eval_episodes=20"])])
        run_cfg.env.reward["kwargs"] = {"path": str(clf_path)}
        trainer = train.Trainer(run_cfg)
        trainer.env = recorder = FalsePositiveRecorder(trainer.env, cams)
        result = trainer.run()
        rounds.append({"round": r, "classifier_test": test, "env_steps": result["step"],
                       "wall_clock_s": result["wall_clock_s"], "eval_true_success":
                       result["eval_success"], "claimed_successes": recorder.claims,
                       "false_positives": recorder.false_positives})
        print(json.dumps(rounds[-1]))
        if final:
            break
        if recorder.false_positives:  # the simulator labels them: more negatives, new episodes
            n, first = recorder.false_positives, int(data["episode"].max()) + 1
            data = {"images": {c: np.concatenate([data["images"][c], np.stack(recorder.frames[c])])
                               for c in cams},
                    "label": np.concatenate([data["label"], np.zeros(n, bool)]),
                    "episode": np.concatenate([data["episode"], first + np.arange(n) // 10])}
    final_eval = train.evaluate(trainer.agent, trainer.eval_env, final_episodes, seed=5_000_000,
                                progress=True)
    out = {"rounds": rounds, "mining_env_steps": sum(x["env_steps"] for x in rounds[:-1]),
           "env_steps": rounds[-1]["env_steps"], "wall_clock_s": rounds[-1]["wall_clock_s"],
           "final_true_success": final_eval["success_rate"], "final_episodes": final_episodes,
           "run_dir": str(bench_dir / "final")}
    print(json.dumps(out, indent=2))
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=2))
    return out


def workspace_sweep_frames(episodes: int, image_size: int, cameras: tuple[str, ...], seed: int,
                           waypoints: int = 4, steps_per_waypoint: int = 12) -> dict:
    """Frames of the arm moving between random points of PandaPickCube's safety box with a
    random gripper command, labelled by the simulator (almost all negatives)."""
    from tqdm import tqdm

    from robot_rl.rewards.classifier import preload_torch_before_rendering
    from robot_rl.sim.envs import make_sim_env
    preload_torch_before_rendering()
    env = make_sim_env("PandaPickCube", vision=True, image_size=image_size, cameras=cameras)
    task, rng = env.task, np.random.default_rng(seed)
    box = task.safety
    images, label, episode = {c: [] for c in cameras}, [], []
    try:
        for e in tqdm(range(episodes), desc="workspace sweeps", unit="ep"):
            obs, _ = env.reset(seed=seed + e)
            for _ in range(waypoints):
                target = rng.uniform(box.xyz_low, box.xyz_high)
                grip = rng.choice([-1.0, 1.0])
                for _ in range(steps_per_waypoint):
                    move = np.clip((target - task.tcp) / task.action.step_pos, -1, 1)
                    obs = env.step(np.append(move, grip).astype(np.float32))[0]
                    for c in cameras:
                        images[c].append(obs[c])
                    label.append(bool(task.evaluate(env).success))
                    episode.append(e)
    finally:
        env.close()
    return {"images": {c: np.stack(v) for c, v in images.items()}, "label": np.array(label),
            "episode": np.array(episode)}


def _concat(parts: list[dict]) -> dict:
    """Frame sets of several rollout batches as one, episode ids kept distinct."""
    offsets = np.cumsum([0] + [int(p["episode"].max()) + 1 for p in parts[:-1]])
    return {"images": {k: np.concatenate([p["images"][k] for p in parts]) for k in parts[0]["images"]},
            "label": np.concatenate([p["label"] for p in parts]),
            "episode": np.concatenate([p["episode"] + o for p, o in zip(parts, offsets)])}
