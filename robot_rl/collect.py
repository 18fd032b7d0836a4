"""Teleoperated demo collection and replay, on any `RobotEnv` (sim or real).

`collect(env_id, teleop, episodes, out)` drives the env with a teleop device and writes a
LeRobotDataset v3.0 (`robot_rl.data.episodes` layout: state, actions, every camera as mp4,
the task string, `next.success`) plus two per-frame features:

* `label.success` (bool): the frame's OBSERVATION shows the task accomplished — set when the
  step that led to it reported `info["is_success"]`, or when the operator pressed "success"
  while looking at it. This is the label a success classifier trains on.
* `episode_seed` (int64, -1 if none): the `reset(seed=...)` the episode started from, so
  `replay_episode` can re-run it.

Device events: "success" executes one hold step (no motion, gripper unchanged) so the success
observation is recorded, and ends the episode as a success (`next.success`,
`next.terminated`, reward at least 1); "failure" ends it as a failure (time-limit style:
`next.done` without `next.terminated`); "rerecord" drops it and restarts from the same seed;
"discard" drops it and moves to the next seed. With `only_success` failed episodes are
dropped too. Saved episodes are committed atomically: an interrupt, a crash or a lost device
loses only the episode in progress.

`meta/robot_rl.json` (beside LeRobot's meta files) remembers the env id for `replay`.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from robot_rl.config import parse_key_values  # noqa: E402  (yaml only)

EXTRA_FEATURES = {
    "label.success": {"dtype": "bool", "shape": [1], "names": None},
    "episode_seed": {"dtype": "int64", "shape": [1], "names": None},
}
META_FILE = "meta/robot_rl.json"


def collect_features(env) -> dict:
    """`robot_rl.data.episodes.features_for` (of the outermost env's spaces, what the recorder
    is given) plus `EXTRA_FEATURES`."""
    from robot_rl.data.episodes import features_for
    feats = features_for(env.observation_space, env.action_space.shape[0])
    feats.update({k: dict(v) for k, v in EXTRA_FEATURES.items()})
    return feats


def _write_meta(root: Path, meta: dict) -> None:
    path = root / META_FILE
    old = json.loads(path.read_text()) if path.exists() else {}
    if old.get("env_id") and meta.get("env_id") and old["env_id"] != meta["env_id"]:
        raise ValueError(f"{root} holds episodes of {old['env_id']!r}, not {meta['env_id']!r}")
    old.update({k: v for k, v in meta.items() if v is not None})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(old, indent=2))
    os.replace(tmp, path)


def read_meta(root) -> dict:
    path = Path(root) / META_FILE
    return json.loads(path.read_text()) if path.exists() else {}


class EpisodeRecorder:
    """Writes env episodes to a LeRobotDataset with per-frame intervention flags and the extra
    features above. Used by `collect` and as the `recorder` of `InterventionWrapper`.

    Frames are held back by one step, so the last frame can still be relabelled (`mark_last`)
    when the operator ends an episode. With `autosave`, an episode is saved as soon as a step
    ends it (terminated or truncated); `close()` saves a partial episode unless told not to.
    """

    def __init__(self, root, env, fps: int | None = None, robot_type: str | None = None,
                 autosave: bool = True, env_id: str | None = None, task: str | None = None,
                 video_codec: str | None = None):
        from robot_rl.data.episodes import env_fps, env_robot_type
        from robot_rl.data.lerobot import LeRobotDatasetWriter
        self.root = Path(root)
        self.task = task or getattr(getattr(env.unwrapped, "task", None), "instruction", "") \
            or env_id or "task"
        self.autosave = autosave
        self.writer = LeRobotDatasetWriter(self.root, fps=fps or env_fps(env),
                                           features=collect_features(env),
                                           robot_type=robot_type or env_robot_type(env),
                                           video_codec=video_codec)
        _write_meta(self.root, {"env_id": env_id or getattr(env.spec, "id", None),
                                "task": self.task})
        self._pending: dict | None = None
        self._obs = None
        self._obs_success = False
        self._seed = -1
        self._frames = 0
        self.saved_episodes = 0

    @property
    def num_frames(self) -> int:
        """Frames of the episode in progress."""
        return self._frames

    def start_episode(self, obs, seed: int | None = None, info: dict | None = None) -> None:
        if self._frames:  # reset before the episode ended: keep what was recorded
            self.save()
        self._obs = obs
        self._obs_success = bool((info or {}).get("is_success", False))
        self._seed = -1 if seed is None else int(seed)

    def label_observation(self, success: bool) -> None:
        """Label the current observation (the next frame's) as showing success or not."""
        self._obs_success = bool(success)

    def add_step(self, action, reward, terminated, truncated, info, next_obs) -> None:
        from robot_rl.data.episodes import make_frame
        if self._obs is None:
            raise RuntimeError("start_episode(obs, seed) must come before add_step")
        if info.get("connection_lost"):  # no real next observation: end at the last real frame
            if self._pending is not None:
                self.mark_last(truncated=True)
            if self.autosave:
                self.save()
            return
        frame = make_frame(self._obs, action, reward, terminated, truncated,
                           bool(info.get("is_success", False)), bool(info.get("intervention")))
        frame["label.success"] = self._obs_success
        frame["episode_seed"] = np.int64(self._seed)
        self._flush_pending()
        self._pending = frame
        self._frames += 1
        self._obs, self._obs_success = next_obs, bool(info.get("is_success", False))
        if self.autosave and (terminated or truncated):
            self.save()

    def mark_last(self, *, success: bool | None = None, terminated: bool | None = None,
                  truncated: bool | None = None, label_success: bool | None = None,
                  min_reward: float | None = None) -> None:
        """Relabel the last frame's outcome (and its observation label)."""
        f = self._pending
        if f is None:
            raise RuntimeError("no frame to relabel")
        if success is not None:
            f["next.success"] = bool(success)
        if terminated is not None:
            f["next.terminated"] = bool(terminated)
        done = f["next.terminated"] or bool(truncated)
        if terminated is not None or truncated is not None:
            f["next.done"] = bool(done)
        if label_success is not None:
            f["label.success"] = bool(label_success)
        if min_reward is not None:
            f["next.reward"] = np.float32(max(float(f["next.reward"]), min_reward))

    def _flush_pending(self) -> None:
        if self._pending is not None:
            self.writer.add_frame(self._pending, task=self.task)
            self._pending = None

    def save(self) -> int | None:
        """Commit the episode in progress; returns its index (None when empty)."""
        self._flush_pending()
        if not self._frames:
            return None
        self._frames = 0
        ep = self.writer.save_episode()
        self.saved_episodes += 1
        return ep

    def discard(self) -> None:
        self._pending = None
        self._frames = 0
        self.writer.discard_episode()

    def close(self, save_partial: bool = True) -> None:
        try:
            if self._frames:
                self.save() if save_partial else self.discard()
        finally:
            self.writer.close()


# ---- live view ---------------------------------------------------------------------------
def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_viewer(env):
    """A MuJoCo passive viewer on a sim env's world, or None (headless, real robot, or no
    GLFW): collection never fails because of the view."""
    world = getattr(env.unwrapped, "world", None)
    if world is None or not _has_display():
        return None
    try:
        import mujoco.viewer
        return mujoco.viewer.launch_passive(world.model, world.data, show_left_ui=False,
                                            show_right_ui=False)
    except Exception:
        return None


def _sync_viewer(viewer) -> None:
    if viewer is None:
        return
    try:
        if viewer.is_running():
            viewer.sync()
    except Exception:
        pass


# ---- collection --------------------------------------------------------------------------
def _tcp_quat(obs):
    if isinstance(obs, dict) and "state" in obs:
        return np.asarray(obs["state"][3:7], np.float64)
    return None


def collect(env_id: str, teleop, episodes: int, out: str, only_success: bool = False,
            seed: int = 0, realtime: bool = True, view: bool = True,
            max_attempts: int | None = None, env_kwargs: dict | None = None,
            teleop_kwargs: dict | None = None, progress: bool = True, env=None,
            robot_type: str | None = None, video_codec: str | None = None) -> dict:
    """Record `episodes` teleoperated episodes of `env_id` into the LeRobotDataset `out`
    (appending if it exists). `teleop` is a device name for `make_teleop` or a `Teleop`.
    `realtime` paces the loop at the env's control rate (needed in sim, where stepping is
    faster than real time). `env` may be given instead of being built with `gym.make`.
    Returns a summary dict."""
    import gymnasium as gym
    from tqdm import tqdm

    import robot_rl  # noqa: F401  (registers the env ids)
    from robot_rl.data.episodes import env_fps
    from robot_rl.hardware.teleop import DeviceLostError, make_teleop, teleop_to_action
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    own_env = env is None
    if own_env:
        env = gym.make(env_id, **(env_kwargs or {}))
    own_teleop = isinstance(teleop, str)
    viewer = recorder = None
    try:
        if own_teleop:
            teleop = make_teleop(teleop, **(teleop_kwargs or {}))
        if hasattr(teleop, "attach"):  # a device that needs the follower's pose (a leader arm)
            teleop.attach(env.unwrapped)
        cfg = env.unwrapped.task.action
        period = 1.0 / env_fps(env)
        recorder = EpisodeRecorder(out, env, robot_type=robot_type, autosave=False, env_id=env_id,
                                   video_codec=video_codec)
        viewer = open_viewer(env) if view else None
        stats = dict(episodes=0, attempts=0, successes=0, rerecorded=0, discarded=0,
                     failures_dropped=0)
        next_seed, ep_seed = seed, None
        limit = max_attempts if max_attempts is not None else float("inf")
        sync = getattr(teleop, "sync_gripper", None)
        with tqdm(total=episodes, desc="collect", unit="ep", disable=not progress) as bar:
            if progress:
                bar.write(f"collecting {episodes} episode(s) of {env_id!r} "
                          f"('{recorder.task}') into {out}; device events: success / failure "
                          f"end an episode, rerecord restarts it, discard drops it")
            while stats["episodes"] < episodes and stats["attempts"] < limit:
                if ep_seed is None:  # a fresh episode (not a rerecord)
                    ep_seed, next_seed = next_seed, next_seed + 1
                stats["attempts"] += 1
                obs, info = env.reset(seed=ep_seed)
                recorder.start_episode(obs, ep_seed, info)
                gripper = -1.0 if cfg.gripper else 1.0
                if sync is not None and cfg.gripper:
                    sync(gripper)
                teleop.poll()  # drop events from between episodes
                if sync is not None and cfg.gripper:
                    sync(gripper)
                _sync_viewer(viewer)
                outcome = None
                while outcome is None:
                    t0 = time.monotonic()
                    try:
                        cmd = teleop.poll()
                    except (OSError, IOError) as e:
                        recorder.discard()
                        raise DeviceLostError(
                            f"teleop device lost ({e}); the episode in progress was dropped, "
                            f"the {stats['episodes']} saved episode(s) in {out} are intact") from e
                    ev = cmd.buttons
                    if "rerecord" in ev:
                        outcome = "rerecord"
                        break
                    if "discard" in ev:
                        outcome = "discard"
                        break
                    if "failure" in ev:
                        outcome = "failure" if recorder.num_frames else "discard"
                        if recorder.num_frames:
                            recorder.mark_last(success=False, truncated=True)
                        break
                    action = teleop_to_action(cmd, cfg, gripper, _tcp_quat(obs))
                    op_success = "success" in ev
                    if op_success:  # hold still for one step: records the success observation
                        action[:len(cfg.dofs)] = 0.0
                        recorder.label_observation(success=True)
                    nxt, r, term, trunc, info = env.step(action)
                    if cfg.gripper:
                        gripper = float(action[-1])
                        if sync is not None:
                            sync(gripper)
                    info = dict(info, intervention=False)
                    recorder.add_step(action, r, term, trunc, info, nxt)
                    obs = nxt
                    if op_success:
                        recorder.mark_last(success=True, terminated=True, min_reward=1.0)
                        outcome = "success"
                    elif term or trunc:
                        outcome = "success" if info.get("is_success") else "failure"
                    _sync_viewer(viewer)
                    if realtime:
                        time.sleep(max(0.0, period - (time.monotonic() - t0)))
                if outcome == "rerecord":
                    recorder.discard()
                    stats["rerecorded"] += 1
                    continue  # same seed
                ep_seed = None
                if outcome == "discard":
                    recorder.discard()
                    stats["discarded"] += 1
                elif outcome == "failure" and only_success:
                    recorder.discard()
                    stats["failures_dropped"] += 1
                else:
                    recorder.save()
                    stats["episodes"] += 1
                    stats["successes"] += outcome == "success"
                    bar.update(1)
                bar.set_postfix(attempts=stats["attempts"], last=outcome,
                                succ=f"{stats['successes']}/{stats['episodes']}", refresh=False)
    finally:
        if recorder is not None:
            recorder.close(save_partial=False)
        if viewer is not None:
            try:
                viewer.close()
            except Exception:
                pass
        if own_teleop and hasattr(teleop, "close"):
            teleop.close()
        if own_env:
            env.close()
    stats["out"] = str(out)
    if stats["episodes"] < episodes:
        raise RuntimeError(f"only {stats['episodes']}/{episodes} episodes kept after "
                           f"{stats['attempts']} attempts ({stats})")
    return stats


# ---- replay ------------------------------------------------------------------------------
def replay_episode(dataset_dir, episode: int, env_id: str | None = None,
                   env_kwargs: dict | None = None, key_map: dict | None = None) -> dict:
    """Re-execute a recorded episode's actions (from its recorded reset seed) and compare the
    replayed `observation.state` with the recorded one, frame by frame. `key_map` (dataset
    feature -> observation key) finds the state under another name. Datasets without
    `next.success` (LeRobot's own recordings) get it derived from the reward when the env's
    reward is sparse (else it is reported as None); `derived` in the result says what was."""
    import gymnasium as gym

    import robot_rl  # noqa: F401
    from robot_rl.data.episodes import (derived_fields, episode_outcomes, note_derived,
                                        resolve_obs_features)
    from robot_rl.data.lerobot import LeRobotDataset
    ds = LeRobotDataset(dataset_dir)
    env_id = env_id or read_meta(dataset_dir).get("env_id")
    if not env_id:
        raise ValueError(f"{dataset_dir} does not record its env id: pass env_id / --env")
    state_name = resolve_obs_features(ds.features, ["state"], key_map, where=dataset_dir)["state"]
    ep = ds.episode(episode)
    seed = None
    if "episode_seed" in ep and int(ep["episode_seed"][0]) >= 0:
        seed = int(ep["episode_seed"][0])
    env = gym.make(env_id, **(env_kwargs or {}))
    try:
        sparse = getattr(env.unwrapped, "reward_type", None) == "sparse"
        derived = {k: v for k, v in derived_fields(ds.features, sparse_reward=sparse).items()
                   if k == "next.success"}
        note_derived(ds, derived)
        recorded_success = bool(episode_outcomes(ep, sparse_reward=sparse)["success"][-1])
        if "next.success" in derived and not sparse:
            recorded_success = None
        obs, _ = env.reset(seed=seed)
        recorded = np.asarray(ep[state_name], np.float64)
        replayed = []
        info: dict[str, Any] = {}
        for a in ep["action"]:
            replayed.append(np.asarray(obs["state"], np.float64))
            obs, _, term, trunc, info = env.step(np.asarray(a, np.float32))
    finally:
        env.close()
    diff = np.abs(np.stack(replayed) - recorded)
    return {"episode": int(episode), "env_id": env_id, "seed": seed, "steps": len(recorded),
            "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "recorded_success": recorded_success,
            "replayed_success": bool(info.get("is_success", False)), "derived": derived}


# ---- CLI ---------------------------------------------------------------------------------


def _cmd_collect(args) -> int:
    stats = collect(args.env, args.teleop, args.episodes, args.out,
                    only_success=args.only_success, seed=args.seed, view=not args.no_view,
                    teleop_kwargs=parse_key_values(args.teleop_arg), env_kwargs=parse_key_values(args.env_arg),
                    realtime=not args.no_realtime, video_codec=args.video_codec)
    print(json.dumps(stats))
    return 0


def _cmd_replay(args) -> int:
    key_map = parse_key_values(args.key_map) if args.key_map else None
    print(json.dumps(replay_episode(args.dataset, args.episode, args.env, key_map=key_map)))
    return 0


def add_cli(subparsers) -> None:
    """Register `collect` and `replay` on the `robot-rl` subparsers."""
    c = subparsers.add_parser("collect", help="record teleoperated demos as a LeRobotDataset v3.0")
    c.add_argument("--env", required=True, help="gymnasium id, e.g. robot_rl/PandaPickCube-v0")
    c.add_argument("--teleop", required=True,
                   help="spacemouse | keyboard | gamepad (or e.g. spacemouse+keyboard)")
    c.add_argument("--episodes", type=int, default=10)
    c.add_argument("--out", required=True, help="dataset directory (appended to if it exists)")
    c.add_argument("--only-success", action="store_true", help="keep successful episodes only")
    c.add_argument("--seed", type=int, default=0, help="reset seed of the first episode")
    c.add_argument("--no-view", action="store_true", help="no MuJoCo viewer window in sim")
    c.add_argument("--no-realtime", action="store_true",
                   help="do not pace the loop at the control rate")
    c.add_argument("--teleop-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="device option, e.g. deadzone=0.2 or operator_yaw_deg=180")
    c.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="gymnasium.make option, e.g. image_size=64")
    c.add_argument("--video-codec", default=None,
                   help="PyAV encoder, e.g. libx264 or libsvtav1 (default: the dataset's codec "
                        "when appending, else libx264)")
    c.set_defaults(func=_cmd_collect)

    r = subparsers.add_parser("replay", help="re-run a recorded episode in sim and compare states")
    r.add_argument("dataset", help="LeRobotDataset directory")
    r.add_argument("--episode", type=int, default=0)
    r.add_argument("--env", default=None, help="env id (default: the one recorded)")
    r.add_argument("--key-map", action="append", default=[], metavar="FEATURE=KEY",
                   help="dataset feature -> observation key, e.g. observation.joints=state")
    r.set_defaults(func=_cmd_replay)
