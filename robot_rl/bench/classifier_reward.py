"""`robot-rl bench classifier-reward`: the (HIL-)SERL workflow end to end in sim.

1. Scripted-expert rollouts of PandaPickCube give camera frames labelled by the simulator's
   success check: clean ones (a quarter botched), all-botched ones (gripper never closes, or
   closes in the air and lifts nothing), noisy ones, and workspace sweeps (the arm visits
   random points of the safety box, gripper open or closed, cube left on the table) - the
   negatives a SERL user records by moving the arm around without succeeding. Each rollout
   lifts to its own height (`lift_to`), so the arm's height says nothing about success.
2. A success classifier is trained on them (episode-disjoint splits, threshold for a 1% FPR),
   with clear labels only (`clear_label`: lifted `clear_margin` past the success height is a
   positive, below it a negative, the band in between left out); optionally the frames a
   deployed classifier got wrong drawn `hard_weight` times more often.
3. Hard-negative rounds: SAC/RLPD trains for `mining_steps` with the classifier as the only
   reward; every frame the classifier calls a success but the simulator does not is a false
   positive, added to the negatives before the classifier is retrained. This is the labelling
   a HIL-SERL user does by hand: a classifier trained once is exploited within a few hundred
   steps (here: the arm raised higher than any training frame scored as "lifted", 8-step
   episodes, 0% true success after 2000 steps), whatever its held-out accuracy.
4. The final run (`config/pick_cube_classifier_reward.yaml`, from scratch) is rewarded and
   terminated by the classifier only. HIL-SERL's in-run loop: every `refresh_every` env steps
   the frames the classifier got wrong since the last refresh (false positives as negatives,
   missed successes as positives; the simulator plays the human who labels them) join the
   data, the classifier is retrained, swapped into the env and the online replay is relabeled
   (`Trainer.set_reward_model`). The result is the TRUE success rate (the simulator's
   `is_success`) on held-out seeds. Env steps of the mining rounds are reported separately.
5. `run` does all of this per seed (`run_seed`) and reports the median true success.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import gymnasium as gym
import numpy as np

CONFIG = Path(__file__).resolve().parents[2] / "config" / "pick_cube_classifier_reward.yaml"


class LabelErrorRecorder(gym.Wrapper):
    """Keeps the camera frames of steps where the reward model and the simulator disagree on
    success (`info["model_success"]` vs `info["is_success"]`), labelled the way the first
    training frames were (`clear_label`): false positives as negatives, missed successes as
    positives only when the cube is clearly lifted. `take()` hands them over and starts over."""

    def __init__(self, env: gym.Env, cameras: tuple[str, ...], clear_margin: float):
        super().__init__(env)
        self.cameras, self.clear_margin = cameras, clear_margin
        self.claims = self.false_positives = self.missed = 0  # totals since construction
        self._frames, self._labels = {c: [] for c in cameras}, []

    def step(self, action):
        obs, reward, term, trunc, info = self.env.step(action)
        claimed, true = bool(info.get("model_success")), bool(info["is_success"])
        self.claims += claimed
        self.false_positives += claimed and not true
        self.missed += true and not claimed
        if claimed != true:
            task = self.env.unwrapped.task
            label = clear_label(task.lift, task.lift_height, self.clear_margin)
            if label is not None:
                for c in self.cameras:
                    self._frames[c].append(obs[c])
                self._labels.append(label)
        return obs, reward, term, trunc, info

    def take(self) -> dict | None:
        """The frames recorded since the last call as `{"images", "label"}`, or None."""
        if not self._labels:
            return None
        out = {"images": {c: np.stack(v) for c, v in self._frames.items()},
               "label": np.array(self._labels)}
        self._frames, self._labels = {c: [] for c in self.cameras}, []
        return out


def clear_label(lift: float, lift_height: float, margin: float) -> bool | None:
    """A success classifier's training label: True when the cube is lifted `margin` past the
    success height, False below it, None (left out) in between. A policy rewarded by the
    classifier lifts just until it fires, so a classifier whose boundary sits on the true
    threshold is wrong about half the successes it grants; one trained on clear successes
    fires only past it."""
    if lift < lift_height:
        return False
    return True if lift >= lift_height + margin else None


def _clear_frames(data: dict, lift_height: float, margin: float) -> dict:
    """`data` without the frames `clear_label` leaves out, labels recomputed from `lift`."""
    labels = [clear_label(x, lift_height, margin) for x in data["lift"]]
    keep = np.array([lab is not None for lab in labels])
    return {"images": {c: v[keep] for c, v in data["images"].items()},
            "label": np.array([lab for lab in labels if lab is not None], bool),
            "hard": np.zeros(int(keep.sum()), bool),
            "episode": data["episode"][keep]}


def run(seeds=(0, 1, 2), json_path: str | None = None, **kwargs) -> dict:
    """`run_seed` for each seed; the headline is the median true success of the final policies
    (one seed's swings are larger than most differences between settings)."""
    per_seed = [run_seed(seed=s, **kwargs) for s in seeds]
    success = [r["final_true_success"] for r in per_seed]
    out = {"seeds": list(seeds), "final_true_success": success,
           "median_final_true_success": float(np.median(success)),
           "env_steps": [r["env_steps"] for r in per_seed],
           "wall_clock_s": [r["wall_clock_s"] for r in per_seed], "per_seed": per_seed}
    print(f"true success of the final policies, seeds {list(seeds)}: {success} "
          f"(median {out['median_final_true_success']:.2f}); final-run env steps {out['env_steps']}")
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=2))
    return out


def run_seed(runs_dir: str = "runs/bench", seed: int = 0, frame_episodes: int = 40,
             mining_rounds: int = 3, mining_steps: int = 1000, refresh_every: int = 1000,
             clear_margin: float = 0.02, hard_weight: float = 1.0, warm_start: bool = False,
             refresh_steps: int = 150, lift_to: tuple[float, float] | None = (0.10, 0.34),
             final_episodes: int = 100, overrides=()) -> dict:
    """Defaults: the best setting of the runs in docs/results.md. `lift_to`: the expert's lift
    heights for the classifier's frames (None: one height); `hard_weight`: label-error frames
    are drawn this much more often when training; `warm_start`: each in-run retraining starts
    from the last classifier for `refresh_steps` steps."""
    from robot_rl import config as cfgmod
    from robot_rl import train
    from robot_rl.rewards.classifier import ClassifierReward
    cfg = train.load_config(str(CONFIG), [f"runs_dir={runs_dir}", f"seed={seed}",
                                          f"name=classifier_reward_s{seed}", *overrides])
    cams, size = tuple(cfg.env.kwargs["cameras"]), cfg.env.kwargs["image_size"]
    bench_dir = Path(cfg.runs_dir) / cfg.name
    bench_dir.mkdir(parents=True, exist_ok=True)
    # frame seeds are disjoint from the demo (seed*7919+500k), training and eval seeds
    from robot_rl.sim.tasks import PandaPickCube
    lift_height = PandaPickCube.lift_height
    data = _concat([sim_success_frames("PandaPickCube", frame_episodes, size, cams,
                                       seed=3_000_000 + seed + 10_000 * i, fail_prob=fail,
                                       noise=noise, progress=True, lift_to=lift_to)
                    for i, (fail, noise) in enumerate([(0.25, 0.0), (1.0, 0.0), (0.5, 0.3)])]
                   + [workspace_sweep_frames(frame_episodes, size, cams, seed=4_000_000 + seed)])
    data = _clear_frames(data, lift_height, clear_margin)
    rounds, refreshes = [], []
    for r in range(mining_rounds + 1):
        clf, clf_path, test = _train_classifier(data, cams, seed, bench_dir / f"success_classifier_r{r}.pt",
                                                hard_weight)
        print(f"round {r}: classifier held-out accuracy {test['accuracy']:.3f}, FPR "
              f"{test['fpr']:.3f}, TPR {test['tpr']:.3f}")
        final = r == mining_rounds
        run_cfg = train.load_config(str(CONFIG), [
            f"runs_dir={bench_dir}", f"seed={seed}", f"name={'final' if final else f'mining_r{r}'}",
            *overrides, *([] if final else [f"train.total_env_steps={mining_steps}",
                                            f"train.eval_every={mining_steps}",
                                            "train.eval_episodes=20"])])
        run_cfg.env.reward.kwargs = {"path": str(clf_path)}
        trainer = train.Trainer(run_cfg)
        trainer.env = recorder = LabelErrorRecorder(trainer.env, cams, clear_margin)

        def refresh(t: train.Trainer) -> None:
            """HIL-SERL's loop: label what the classifier got wrong, retrain, swap, relabel."""
            nonlocal data, clf
            new = recorder.take()
            if new is None:
                return
            data = _add_frames(data, new)
            k = len(refreshes) + 1
            # warm start: the boundary moves to take in the new frames, not everywhere
            clf, path, test = _train_classifier(data, cams, seed,
                                                bench_dir / f"success_classifier_final_{k}.pt",
                                                hard_weight, init=clf if warm_start else None,
                                                steps=refresh_steps if warm_start else 400)
            changed = t.set_reward_model(ClassifierReward(path=str(path)))
            t.cfg.env.reward.kwargs = {"path": str(path)}  # `train --resume` uses the latest
            cfgmod.save(t.cfg, t.run_dir / "config.yaml")
            refreshes.append({"step": t.step, "new_frames": int(len(new["label"])),
                              "new_positives": int(new["label"].sum()),
                              "classifier_test": test, "relabeled_transitions": changed})
            print(f"\nrefresh {k} at step {t.step}: +{len(new['label'])} frames "
                  f"({int(new['label'].sum())} missed successes), held-out acc "
                  f"{test['accuracy']:.3f} FPR {test['fpr']:.3f}, relabeled {changed} transitions")

        if final and refresh_every:
            trainer.every(refresh_every, refresh)
        result = trainer.run()
        rounds.append({"round": r, "classifier_test": test, "env_steps": result["step"],
                       "wall_clock_s": result["wall_clock_s"], "eval_true_success":
                       result["eval_success"], "claimed_successes": recorder.claims,
                       "false_positives": recorder.false_positives,
                       "missed_successes": recorder.missed})
        print(json.dumps(rounds[-1]))
        if final:
            break
        new = recorder.take()
        if new is not None:  # the simulator labels them: more examples, new episodes
            data = _add_frames(data, new)
    final_eval = train.evaluate(trainer.agent, trainer.eval_env, final_episodes, seed=5_000_000,
                                progress=True)
    out = {"rounds": rounds, "refreshes": refreshes, "refresh_every": refresh_every,
           "clear_margin_m": clear_margin, "hard_weight": hard_weight,
           "warm_start": warm_start, "refresh_steps": refresh_steps,
           "mining_env_steps": sum(x["env_steps"] for x in rounds[:-1]),
           "env_steps": rounds[-1]["env_steps"], "wall_clock_s": rounds[-1]["wall_clock_s"],
           "final_true_success": final_eval["success_rate"], "final_episodes": final_episodes,
           "run_dir": str(bench_dir / "final")}
    print(json.dumps(out, indent=2))
    return out


def _train_classifier(data: dict, cams: tuple[str, ...], seed: int, path: Path,
                      hard_weight: float, init=None, steps: int = 400):
    from robot_rl.rewards.classifier import ClassifierConfig, train_success_classifier
    clf, report = train_success_classifier(data["images"], data["label"], data["episode"],
                                           ClassifierConfig(image_keys=cams), seed=seed,
                                           progress=True, steps=steps, init=init,
                                           sample_weight=np.where(data["hard"], hard_weight, 1.0))
    return clf, clf.save(path), report["test"]


def _add_frames(data: dict, new: dict, frames_per_episode: int = 10) -> dict:
    """Labelled frames appended as new pseudo-episodes of `frames_per_episode` (the splits
    stay episode-disjoint)."""
    n, first = len(new["label"]), int(data["episode"].max()) + 1
    return {"images": {c: np.concatenate([data["images"][c], new["images"][c]]) for c in data["images"]},
            "label": np.concatenate([data["label"], new["label"].astype(bool)]),
            "hard": np.concatenate([data["hard"], np.ones(n, bool)]),
            "episode": np.concatenate([data["episode"], first + np.arange(n) // frames_per_episode])}


def sim_success_frames(task: str = "PandaPickCube", episodes: int = 20, image_size: int = 64,
                       cameras: Sequence[str] = ("front", "wrist"), steps: int | None = None,
                       seed: int = 0, fail_prob: float = 0.25, noise: float = 0.0,
                       progress: bool = False, **expert_kwargs) -> dict:
    """Scripted-expert rollouts in sim with per-frame ground truth, continuing past success
    (so lifted frames are not only the last one). Returns a dict of arrays over all frames:
    images {camera: [N,H,W,3]}, `label` (task success of that observation), `episode`, `t`,
    `dense` (the task's dense reward), `first_success` [episodes] (step index or -1), and for
    tasks that report it, `lift` (PandaPickCube: the cube's height above the table, m).
    `expert_kwargs` go to the task's scripted expert (PandaPickCube: `lift_to`)."""
    from robot_rl.rewards.classifier import preload_torch_before_rendering
    from robot_rl.sim.envs import make_sim_env
    preload_torch_before_rendering()
    from robot_rl.sim.tasks import make_expert
    env = make_sim_env(task, vision=True, image_size=image_size, cameras=tuple(cameras))
    expert = make_expert(env, fail_prob=fail_prob, noise=noise, seed=seed, **expert_kwargs)
    steps = steps or env.task.max_episode_steps
    imgs = {c: [] for c in cameras}
    label, ep_id, tt, dense, first, lift = [], [], [], [], [], []
    has_lift = hasattr(env.task, "lift")
    it = range(episodes)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="sim frames", unit="ep")
    try:
        for e in it:
            obs, _ = env.reset(seed=seed + e)
            expert.reset()
            fs = -1
            for t in range(steps + 1):
                outcome = env.task.outcome(env)
                for c in cameras:
                    imgs[c].append(obs[c])
                label.append(bool(outcome.success))
                dense.append(float(outcome.reward))
                if has_lift:
                    lift.append(env.task.lift)
                ep_id.append(e)
                tt.append(t)
                if outcome.success and fs < 0:
                    fs = t
                if t < steps:  # keep going after success (the env would terminate)
                    obs = env.step(expert.act(obs))[0]
            first.append(fs)
    finally:
        env.close()
    out = {"images": {c: np.stack(v) for c, v in imgs.items()}, "label": np.array(label),
           "episode": np.array(ep_id), "t": np.array(tt), "dense": np.array(dense, np.float32),
           "first_success": np.array(first)}
    if has_lift:
        out["lift"] = np.array(lift, np.float32)
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
    images, label, episode, lift = {c: [] for c in cameras}, [], [], []
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
                    label.append(bool(task.outcome(env).success))
                    lift.append(task.lift)
                    episode.append(e)
    finally:
        env.close()
    return {"images": {c: np.stack(v) for c, v in images.items()}, "label": np.array(label),
            "episode": np.array(episode), "lift": np.array(lift, np.float32)}


def _concat(parts: list[dict]) -> dict:
    """Frame sets of several rollout batches as one, episode ids kept distinct."""
    offsets = np.cumsum([0] + [int(p["episode"].max()) + 1 for p in parts[:-1]])
    return {"images": {k: np.concatenate([p["images"][k] for p in parts]) for k in parts[0]["images"]},
            "label": np.concatenate([p["label"] for p in parts]),
            "lift": np.concatenate([p["lift"] for p in parts]),
            "episode": np.concatenate([p["episode"] + o for p, o in zip(parts, offsets)])}
