"""The LeRobot side of tests/robot_rl/test_lerobot_interop.py, run by `.venv-lerobot/bin/python`
(the real `lerobot` 0.6.1, Python >= 3.12). Importable from our own venv too: `lerobot` and
`torch` are imported only inside the commands, so the test regenerates the exact values the
peer wrote from `rl_episode` without a copy of this code.

    python lerobot_peer.py write-rl ROOT --dtype video|image [--image-key NAME] [--chw]
    python lerobot_peer.py read ROOT OUT.npz [--image-key NAME ...]

`write-rl` records with `LeRobotDataset.create / add_frame / save_episode / finalize` in
LeRobot's HIL-SERL layout (`next.reward`, `next.done`, `complementary_info.*`, no
`next.terminated` / `next.success` / `intervention`); `read` loads a dataset with LeRobot's
reader (PyAV decoding) and saves every frame, plus the dataset's stats run through LeRobot's
QUANTILES normalizer, to an npz.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

FPS = 10
H = W = 32
STATE_DIM = 5
ACTION_DIM = 4
# (length, last step's reward): episode 1 stops at a time limit of 6 steps without success.
EPISODES = [(6, 1.0), (6, 0.0), (5, 1.0)]
TASK = "pick the cube"


def rl_image(ep: int, t: int) -> np.ndarray:
    """Smooth moving gradients, HWC uint8 (lossy video keeps them within a few levels)."""
    y, x = np.mgrid[0:H, 0:W] / H
    ph = 0.31 * ep + 0.05 * t
    r = 128 + 90 * np.sin(2 * np.pi * (0.7 * x + ph))
    g = 128 + 90 * np.cos(2 * np.pi * (0.5 * y - ph))
    b = 128 + 60 * np.sin(np.pi * (x + y) + 3 * ph)
    return np.stack([r, g, b], -1).round().astype(np.uint8)


def rl_episode(ep: int) -> dict[str, np.ndarray]:
    """Episode `ep` as LeRobot's HIL-SERL recorder would log it: per frame observation t, the
    action at t, reward and done of that step. Sparse reward: 1 on the success step only."""
    n, last_reward = EPISODES[ep]
    rng = np.random.default_rng(1000 + ep)
    reward = np.zeros(n, np.float32)
    reward[-1] = last_reward
    done = np.zeros(n, bool)
    done[-1] = True
    return {
        "state": rng.normal(size=(n, STATE_DIM)).astype(np.float32),
        "action": rng.uniform(-1, 1, size=(n, ACTION_DIM)).astype(np.float32),
        "reward": reward,
        "done": done,
        "penalty": rng.uniform(-0.1, 0, size=n).astype(np.float32),
        "image": np.stack([rl_image(ep, t) for t in range(n)]),
    }


def cmd_write_rl(args) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    img_shape = (3, H, W) if args.chw else (H, W, 3)
    img_names = ["channels", "height", "width"] if args.chw else ["height", "width", "channels"]
    features = {
        "observation.state": {"dtype": "float32", "shape": (STATE_DIM,), "names": None},
        args.image_key: {"dtype": args.dtype, "shape": img_shape, "names": img_names},
        "action": {"dtype": "float32", "shape": (ACTION_DIM,),
                   "names": ["delta_x", "delta_y", "delta_z", "gripper"]},
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.done": {"dtype": "bool", "shape": (1,), "names": None},
        "complementary_info.discrete_penalty": {"dtype": "float32", "shape": (1,),
                                                "names": ["discrete_penalty"]},
    }
    ds = LeRobotDataset.create("local/rl", FPS, root=args.root, features=features,
                               use_videos=args.dtype == "video", robot_type="so100_follower")
    for e in range(len(EPISODES)):
        data = rl_episode(e)
        for t in range(len(data["action"])):
            img = data["image"][t]
            ds.add_frame({
                "observation.state": data["state"][t],
                args.image_key: img.transpose(2, 0, 1) if args.chw else img,
                "action": data["action"][t],
                "next.reward": np.array([data["reward"][t]], np.float32),
                "next.done": np.array([data["done"][t]], bool),
                "complementary_info.discrete_penalty": np.array([data["penalty"][t]], np.float32),
                "task": TASK,
            })
        ds.save_episode()
    ds.finalize()
    print(json.dumps({"episodes": ds.meta.total_episodes, "frames": ds.meta.total_frames}))


def cmd_read(args) -> None:
    import torch
    from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.processor.normalize_processor import NormalizerProcessorStep

    ds = LeRobotDataset("local/ours", root=args.root, video_backend="pyav")
    out: dict[str, list] = {}
    for i in range(len(ds)):
        item = ds[i]
        for k, v in item.items():
            if isinstance(v, torch.Tensor):
                out.setdefault(k, []).append(v.numpy())
    arrays = {k: np.stack(v) for k, v in out.items()}
    # pi0.5-style QUANTILES normalization of state and action from the dataset's own stats.
    stats = ds.meta.stats
    feats = {"observation.state": PolicyFeature(FeatureType.STATE, tuple(ds.features["observation.state"]["shape"])),
             "action": PolicyFeature(FeatureType.ACTION, tuple(ds.features["action"]["shape"]))}
    norm = NormalizerProcessorStep(features=feats, norm_map={FeatureType.STATE: NormalizationMode.QUANTILES,
                                                             FeatureType.ACTION: NormalizationMode.QUANTILES},
                                   stats=stats)
    state = torch.as_tensor(arrays["observation.state"])
    arrays["quantile_normalized_state"] = norm._normalize_observation(
        {"observation.state": state}, inverse=False)["observation.state"].numpy()
    for key, st in stats.items():
        for s, v in st.items():
            arrays[f"stats|{key}|{s}"] = np.asarray(v)
    info = {"total_episodes": ds.meta.total_episodes, "total_frames": ds.meta.total_frames,
            "video_keys": list(ds.meta.video_keys), "image_keys": list(ds.meta.image_keys),
            "robot_type": ds.meta.robot_type}
    np.savez(args.out, **arrays)
    print(json.dumps(info))


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write-rl")
    w.add_argument("root")
    w.add_argument("--dtype", choices=["video", "image"], default="video")
    w.add_argument("--image-key", default="observation.images.front")
    w.add_argument("--chw", action="store_true", help="channel-first image feature [3, H, W]")
    w.set_defaults(func=cmd_write_rl)
    r = sub.add_parser("read")
    r.add_argument("root")
    r.add_argument("out")
    r.set_defaults(func=cmd_read)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
