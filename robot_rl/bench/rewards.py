"""`robot-rl bench rewards`: per-frame latency of each reward model on this machine.

Frames are rendered from scripted PandaPickCube rollouts (front + wrist cameras). Models:
CLIP ViT-B-32 (open_clip architecture, random weights: the cost does not depend on the
weights; frames are resized to 224^2), the success classifier (default architecture, both
cameras), and the perceptual reward (pooled-pixel features). Each is timed at every batch size
(median of `repeats` rounds after a warm-up). The baseline measured in the same run is one
simulated vision env step (physics + rendering), so `overhead_vs_env_step` says how much a
reward model adds to stepping the env once per frame.
"""
from __future__ import annotations

import json
import platform
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np


def _frames(image_size: int, n: int, seed: int = 0):
    from robot_rl.rewards.classifier import preload_torch_before_rendering
    preload_torch_before_rendering()
    from robot_rl.sim.envs import make_sim_env
    from robot_rl.sim.tasks import make_expert
    env = make_sim_env("PandaPickCube", vision=True, image_size=image_size)
    expert = make_expert(env, seed=seed)
    obs_list, step_times = [], []
    try:
        ep = 0
        while len(obs_list) < n:
            obs, _ = env.reset(seed=seed + ep)
            expert.reset()
            obs_list.append(obs)
            done = False
            while not done and len(obs_list) < n:
                t0 = time.perf_counter()
                obs, _, term, trunc, _ = env.step(expert.act(obs))
                step_times.append(time.perf_counter() - t0)
                obs_list.append(obs)
                done = term or trunc
            ep += 1
    finally:
        env.close()
    batch = {k: np.stack([o[k] for o in obs_list]) for k in ("front", "wrist")}
    return batch, 1e3 * float(np.median(step_times))


def _time(fn, batch: dict, bs: int, repeats: int, min_frames: int) -> float:
    """Median ms per frame of fn on batches of `bs` frames."""
    n = len(next(iter(batch.values())))
    sub = {k: v[np.arange(bs) % n] for k, v in batch.items()}
    fn(sub)  # warm-up
    calls = max(1, -(-min_frames // bs))
    per_round = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(sub)
        per_round.append((time.perf_counter() - t0) / (calls * bs))
    return 1e3 * float(np.median(per_round))


def run(json_path: str | None = None, image_size: int = 128,
        batch_sizes: Sequence[int] = (1, 32), repeats: int = 3,
        min_frames: int = 32, models: Sequence[str] = ("clip_vit_b32", "classifier",
                                                        "perceptual"),
        torch_threads: int | None = None, progress: bool = True) -> dict:
    import torch
    if torch_threads:
        torch.set_num_threads(int(torch_threads))
    say = print if progress else (lambda *a, **k: None)
    batch, env_ms = _frames(image_size, max(32, *batch_sizes))
    say(f"env step (PandaPickCube vision {image_size}^2, 2 cameras): {env_ms:.1f} ms")
    fns = {}
    if "clip_vit_b32" in models:
        from robot_rl.rewards.clip import CLIPReward
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clip = CLIPReward(["a robot arm holding a red cube above the table"],
                              ["a robot arm and a red cube"], alpha=0.5, model="ViT-B-32",
                              pretrained=None, image_key="front", batch_size=max(batch_sizes))
        fns["clip_vit_b32"] = clip
    if "classifier" in models:
        from robot_rl.rewards.classifier import ClassifierConfig, ClassifierReward, SuccessClassifier
        clf = SuccessClassifier(ClassifierConfig(image_keys=("front", "wrist")),
                                {k: batch[k].shape[1:] for k in ("front", "wrist")})
        fns["classifier"] = ClassifierReward(classifier=clf)
    if "perceptual" in models:
        from robot_rl.rewards.perceptual import PerceptualReward, PooledPixelFeatures
        demos = [{"wrist": batch["wrist"][i:i + 16]} for i in range(0, len(batch["wrist"]) - 15, 16)]
        fns["perceptual"] = PerceptualReward.fit(demos, PooledPixelFeatures(("wrist",), 4),
                                                 n_steps=3, n_features=16)
    ms: dict[str, dict[str, float]] = {}
    for name, fn in fns.items():
        ms[name] = {}
        for bs in batch_sizes:
            ms[name][str(bs)] = round(_time(fn, batch, bs, repeats, min_frames), 3)
            say(f"{name:>14s} batch {bs:>3d}: {ms[name][str(bs)]:8.2f} ms/frame "
                f"({1e3 / ms[name][str(bs)]:7.1f} frames/s, "
                f"{ms[name][str(bs)] / env_ms:.2f}x an env step)")
    result = {
        "ms_per_frame": ms,
        "frames_per_s": {m: {b: round(1e3 / v, 2) for b, v in d.items()} for m, d in ms.items()},
        "baseline": {"env_step_ms": round(env_ms, 3),
                     "what": f"PandaPickCube vision env step, {image_size}^2 front+wrist"},
        "overhead_vs_env_step": {m: {b: round(v / env_ms, 3) for b, v in d.items()}
                                 for m, d in ms.items()},
        "image_size": image_size, "clip_input": 224, "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "machine": platform.machine(), "repeats": repeats,
        "notes": "CLIP uses random weights (cost is weight-independent); classifier = default "
                 "ClassifierConfig conv trunk on both cameras; perceptual = pooled pixels "
                 "(wrist, 4x4 grid).",
    }
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2))
        say(f"wrote {json_path}")
    return result
