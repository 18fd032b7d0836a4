"""Single-process SERL-style training: SAC + RLPD (+ DrQ for images) on one gymnasium env.

`runs/<name>/` gets the resolved `config.yaml`, `checkpoints/`, `metrics.jsonl`, TensorBoard
events, evaluation videos and `learning_curve.png`. Resume is exact: replay buffers, networks,
optimizers, counters and every RNG come back from the last good checkpoint, the env starts a
fresh episode, and the step counter continues, so each env step is stored exactly once.
Nothing is lost on a stop: SIGTERM or Ctrl-C end the run at the next step with a checkpoint,
and an exception in the loop (a robot error, a policy server failing) saves one before it
propagates. The config schema (`RunConfig`, `load_config`) is in robot_rl/run_config.py.
"""
from __future__ import annotations

import json
import signal
import threading
import time
import warnings
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from robot_rl import config as cfgmod
from robot_rl.run_config import RunConfig, load_config, resolve_device, set_matmul_precision


def make_env(cfg: RunConfig, teleop: bool = True, reward_model: bool = True):
    """The configured env; with `teleop`, wrapped so a human can take over, and with
    `reward_model`, rewarded by the configured model. Evaluation uses neither: it never opens
    the device and scores the env's true success."""
    from robot_rl.envs import make_gym_env
    env = make_gym_env(cfg.env)
    if reward_model and cfg.env.reward:
        from robot_rl.rewards.base import wrap_env_with_reward
        env = wrap_env_with_reward(env, cfg.env.reward)
    if teleop and cfg.env.teleop:
        from robot_rl.hardware.intervention import InterventionWrapper
        from robot_rl.hardware.teleop import make_teleop
        device = make_teleop(cfg.env.teleop.kind, **cfg.env.teleop.kwargs)
        recorder = None
        if cfg.env.teleop.record_interventions:
            from robot_rl.collect import EpisodeRecorder
            recorder = EpisodeRecorder(cfg.env.teleop.record_interventions, env, env_id=cfg.env.id,
                                       fps=cfg.env.fps, robot_type=cfg.env.robot_type,
                                       task=cfg.env.instruction)
        env = InterventionWrapper(env, device, recorder=recorder)
    return env


@dataclass
class EpisodeStats:
    """Running totals of the current episode of one env."""
    ret: float = 0.0
    length: int = 0
    interventions: int = 0

    def reset(self) -> None:
        self.ret, self.length, self.interventions = 0.0, 0, 0


def evaluate(agent, env, episodes: int, seed: int, video_path: Path | None = None,
             progress: bool = False) -> dict:
    """Deterministic policy on held-out seeds. Returns success rate, mean return and length.
    An env without a time limit is refused (evaluation would never end); `video_path` is
    ignored, with a warning, for an env that cannot render."""
    from robot_rl.envs import EnvSpecError, can_render, has_time_limit
    from robot_rl.video import env_frame, write_mp4
    if not has_time_limit(env):
        raise EnvSpecError("evaluation needs episodes that end: the env has no time limit; set "
                           "env.max_episode_steps")
    if video_path is not None and not can_render(env):
        warnings.warn("no evaluation video: the env cannot render (set env.kwargs.render_mode: "
                      "rgb_array if it supports it)", stacklevel=2)
        video_path = None
    successes, returns, lengths, frames = [], [], [], []
    it = range(episodes)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="eval", unit="ep", leave=False)
    for i in it:
        obs, _ = env.reset(seed=seed + i)
        record = video_path is not None and i == 0
        if record:
            frames.append(env_frame(env))
        done, ret, n = False, 0.0, 0
        while not done:
            obs, r, term, trunc, info = env.step(agent.act(obs, deterministic=True))
            ret, n, done = ret + r, n + 1, term or trunc
            if record:
                frames.append(env_frame(env))
        successes.append(bool(info["is_success"]))
        returns.append(ret)
        lengths.append(n)
    if video_path is not None and frames:
        write_mp4(video_path, frames, fps=10)
    return {"success_rate": float(np.mean(successes)), "return": float(np.mean(returns)),
            "length": float(np.mean(lengths)), "episodes": episodes}


class StopSignals:
    """SIGTERM and SIGINT ask the training loop to stop at the next step boundary (`requested`
    names the signal), so the checkpoint it then saves holds whole steps only; a second Ctrl-C
    aborts at once. Installed only in the main thread (Python delivers signals there)."""

    def __init__(self):
        self.requested: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        print(f"\n{self.requested}: stopping after this step and saving a checkpoint"
              + (" (Ctrl-C again to abort)" if signum == signal.SIGINT else ""), flush=True)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@contextmanager
def saving_on_stop(save: Callable[[], object], run_dir: Path):
    """The training loop's guard (yields its `StopSignals`): a stop signal ends the loop at the
    next step, then a checkpoint is saved; an exception saves one before it propagates,
    without letting a second failure (a full disk) hide the first."""
    with StopSignals() as stop:
        try:
            yield stop
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt) and stop.requested:
                raise  # a second Ctrl-C: abort now, the last checkpoint stands
            try:
                save()
                print(f"{run_dir} stopped by an error: checkpoint saved; fix the cause and "
                      f"resume with `robot-rl train --resume {run_dir}`", flush=True)
            except Exception as exc:  # noqa: BLE001 - the original error is what the user must see
                print(f"{run_dir}: could not save a checkpoint after the error ({exc})", flush=True)
            raise
        if stop.requested:
            save()
            print(f"{stop.requested}: checkpoint saved; resume with "
                  f"`robot-rl train --resume {run_dir}`", flush=True)


def has_checkpoint(run_dir: Path) -> bool:
    """Whether `run_dir` has a checkpoint (complete or not): a run to resume, never to overwrite."""
    return any((Path(run_dir) / "checkpoints").glob("step_*"))


def check_run_dir(run_dir: Path, resume: bool) -> Path:
    """A new run must not overwrite one that has checkpoints."""
    if not resume and has_checkpoint(run_dir):
        raise FileExistsError(f"{run_dir} already has checkpoints: resume it with "
                              f"`robot-rl train --resume {run_dir}` or pick another name")
    return run_dir


# replay extras of runs with `env.reward`: what the env itself said (see RewardWrapper)
REWARD_MODEL_EXTRAS = {"env_reward": ((), np.float32), "env_terminated": ((), np.bool_)}


class Trainer:
    def __init__(self, cfg: RunConfig, run_dir: Path | None = None, resume: bool = False,
                 progress: bool = True):
        import torch
        # before any env: importing triton (torch._dynamo, which the optimizers load lazily)
        # segfaults once gym-hil's renderer has set up OpenGL in the process
        import torch._dynamo  # noqa: F401

        from robot_rl.agents.sac import SACAgent
        from robot_rl.data.buffer import DEFAULT_EXTRA_SPEC, MixedSampler, ReplayBuffer, place_frames
        from robot_rl.metrics import MetricsLogger
        self.cfg = cfg
        self.run_dir = check_run_dir(Path(run_dir or Path(cfg.runs_dir) / cfg.name), resume)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume and not has_checkpoint(self.run_dir):
            # killed before its first checkpoint was complete: nothing to resume, so start it
            # (re-running quickstart.sh used to fail with "no usable checkpoint" forever)
            print(f"{self.run_dir} has no completed checkpoint: starting it from step 0")
            resume = False
            (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
        cfgmod.save(cfg, self.run_dir / "config.yaml")
        torch.set_num_threads(cfg.train.torch_threads)
        set_matmul_precision(cfg.train.matmul_precision)
        self.progress = progress
        self.env, self.eval_env = self._make_envs()
        self.video = self._check_envs()
        obs_space, act_dim = self.env.observation_space, self.env.action_space.shape[0]
        self.agent = SACAgent(obs_space, act_dim, cfg.agent, seed=cfg.seed,
                              device=resolve_device(cfg.train.device))
        transforms = self.agent.replay_transforms()
        # with a reward model the env's own reward and termination are kept too, so a new
        # model can relabel what is stored (`set_reward_model`)
        extras = {**DEFAULT_EXTRA_SPEC, **(REWARD_MODEL_EXTRAS if cfg.env.reward else {})}
        if self.agent.uses_mc_bounds:  # each episode's Monte-Carlo returns
            extras["mc_bound"] = ((), np.float32)
        # per actor stream (one in a local run): the current episode's online transitions and
        # rewards, whose Monte-Carlo returns are written when it ends
        self.open_episodes: dict[int | None, tuple[list[int], list[float]]] = {}
        self.online = ReplayBuffer(cfg.train.replay_capacity, obs_space, act_dim,
                                   obs_transforms=transforms, extra_spec=extras)
        self.demo = ReplayBuffer(cfg.train.replay_capacity, obs_space, act_dim,
                                 obs_transforms=transforms, extra_spec=extras, is_demo=True)
        self.periodic: list[tuple[int, Callable[["Trainer"], None]]] = []  # see `every`
        self.sampler = MixedSampler(self.demo, self.online, cfg.agent.demo_ratio)
        if place_frames((self.online, self.demo), self.agent.device, cfg.train.replay_on_device):
            mb = (self.online.frame_nbytes() + self.demo.frame_nbytes()) / 2**20
            print(f"replay frames kept on {self.agent.device} ({mb:.0f} MB)")
        self.rng = np.random.default_rng(cfg.seed)
        self.step = self.episode = 0
        self.recent = deque(maxlen=20)  # (success, intervention fraction) of recent episodes
        self.last_eval: float | None = None
        self.stopped_by: str | None = None  # the signal that ended the run early, if one did
        self.recorded_at_checkpoint: int | None = None  # the dataset's episodes at the resumed one
        self.normalized = False
        self.elapsed = 0.0
        self.metrics = MetricsLogger(self.run_dir)
        self.sample = self.sampler.sample_fn(cfg.agent.batch_size, self.rng, self.agent.device,
                                             n_step=cfg.agent.n_step)
        self.updates_since, self.t_last, self.upd_rate = 0, time.perf_counter(), 0.0
        if resume:
            self._restore()
        else:
            self._warm_start()
            self._load_demos()
            self._distill_prior_policy()

    def _warm_start(self) -> None:
        """`init.from`: weights and input normalization from an earlier run; the normalization
        stays as that run froze it (the weights were trained on inputs scaled that way)."""
        from robot_rl.agents.warm_start import is_policy_source, warm_start
        init = self.cfg.init
        if init.from_ is None or is_policy_source(init.from_):
            return
        print(warm_start(self.agent, init.from_, critic=init.critic, actor=init.actor))
        self.normalized = True

    def _distill_prior_policy(self) -> None:
        """`init.from` a policy (a BC run, a policy server): it runs `init.rollouts` episodes in
        the env (stored and counted like any env steps), then the actor is fit to its actions."""
        from robot_rl.agents.warm_start import distill_actor, is_policy_source, load_prior_policy
        from robot_rl.envs import LearnerEnv, find_wrapper
        from tqdm import tqdm
        init = self.cfg.init
        if not is_policy_source(init.from_):
            return
        if not init.actor:
            raise ValueError(f"init.from={init.from_} is a policy: it only seeds the actor, and init.actor=false")
        env = self.env
        policy, rescale = load_prior_policy(init, {k: sp.shape for k, sp in env.observation_space.spaces.items()},
                                            env.action_space.shape[0])
        scale = find_wrapper(env, LearnerEnv).scale
        ep = EpisodeStats()
        successes = 0
        for _ in tqdm(range(init.rollouts), desc=f"rollouts of {init.from_}", disable=not self.progress):
            obs, _ = env.reset(seed=self._episode_seed())
            while True:
                a = np.asarray(policy.act(obs), np.float32)
                a = a[0] if a.ndim == 2 else a  # a chunk of H actions: execute its first, ask again
                action = rescale(a) if rescale is not None else scale.to_policy(a)
                next_obs, reward, term, trunc, info = env.step(action)
                self.record(obs, action, reward, next_obs, term, trunc, info, ep, learn=False, prior=True)
                obs = next_obs
                if term or trunc:
                    successes += bool(info["is_success"])
                    break
        if self.cfg.train.normalize_obs:  # the actor is fit on the inputs RL will see
            self._freeze_normalization()
        fit = distill_actor(self.agent, self.online.sample_fn(self.cfg.agent.batch_size, self.rng),
                            init.distill_steps, lr=self.cfg.agent.actor_lr)
        self.metrics.log("distill", self.step, rollouts=init.rollouts, success_rate=successes / init.rollouts, **fit)
        print(f"{init.from_}: {successes}/{init.rollouts} rollouts succeeded ({self.step} env steps); "
              f"actor fit to its actions in {init.distill_steps} steps (NLL {fit['nll_start']:.2f} -> "
              f"{fit['nll_end']:.2f})")

    def _make_envs(self):
        """The env this process steps and the evaluation env."""
        return make_env(self.cfg), make_env(self.cfg, teleop=False, reward_model=False)

    def _check_envs(self) -> bool:
        """A user's env gets `check_env` (one reset and step of the evaluation env) before
        anything else, so a missing time limit or success key, or an ignored seed, shows at
        start. Returns whether to make evaluation videos (`train.video`, off with a warning
        when the env cannot render)."""
        from robot_rl.envs import can_render, check_env, is_ours
        if not is_ours(self.cfg.env.id):
            check_env(self.eval_env, self.cfg.env, seed=self.cfg.train.eval_seed)
        if self.cfg.train.video and not can_render(self.eval_env):
            warnings.warn(f"train.video is on but {self.cfg.env.id} cannot render: evaluation "
                          f"videos are off (set env.kwargs.render_mode: rgb_array if the env "
                          f"supports it, or train.video: false)", stacklevel=2)
            return False
        return self.cfg.train.video

    # ---- demos --------------------------------------------------------------------------
    def _load_demos(self) -> None:
        from robot_rl.data.episodes import iter_transitions
        from robot_rl.data.lerobot import LeRobotDataset
        d = self.cfg.demos
        path = d.dataset
        if path is None and d.scripted_episodes > 0:
            from robot_rl.demos import collect_scripted_demos
            path = str(self.run_dir / "demos")
            if not (Path(path) / "meta" / "info.json").exists():
                collect_scripted_demos(self.cfg.env, d.scripted_episodes, path,
                                       seed=self.cfg.seed * 7919 + 500_000,
                                       noise=d.scripted_noise, only_success=True,
                                       reward=self.cfg.env.reward, policy=d.policy)
        if path is None:
            return
        from robot_rl.envs import LearnerEnv, find_wrapper
        keys = list(self.env.observation_space.spaces)
        transitions = list(iter_transitions(  # (LeRobot's own recordings lack some outcomes)
            LeRobotDataset(path), keys, key_map=d.key_map,
            observation_space=self.env.observation_space,
            max_episode_steps=getattr(self.env.spec, "max_episode_steps", None),
            sparse_reward=getattr(self.env.unwrapped, "reward_type", None) == "sparse"))
        scale = find_wrapper(self.env, LearnerEnv).scale  # datasets hold the env's own units
        for t in transitions:
            t["action"] = scale.to_policy(t["action"])
        relabeled = self._relabel_with_reward_model(transitions)
        if self.agent.uses_mc_bounds:
            self._add_mc_bounds(transitions)
        for t in transitions:
            self.demo.insert(t["obs"], t["action"], t["reward"], t["next_obs"], t["terminated"],
                             t["truncated"], {"mc_bound": t.get("mc_bound", -np.inf)},
                             intervention=t["intervention"], is_demo=True)
        print(f"loaded {len(self.demo)} demo transitions from {path}"
              + (" (rewards relabeled by the reward model)" if relabeled else ""))

    def mc_bounds(self, rewards: list[float], terminated: bool) -> np.ndarray:
        """The Monte-Carlo returns of one episode (Cal-QL's bounds, `mc_target_floor`'s floor),
        in the critic's reward units."""
        from robot_rl.agents.conservative import mc_lower_bounds
        a = self.cfg.agent
        return mc_lower_bounds(rewards, terminated, a.gamma, a.reward_scale, a.reward_bias, a.reward_min)

    def _add_mc_bounds(self, transitions: list[dict]) -> None:
        """`mc_bound` of every dataset transition, episode by episode (a dataset's last
        episode without an end counts as cut by a time limit)."""
        start = 0
        for i, t in enumerate(transitions):
            if t["terminated"] or t["truncated"] or i == len(transitions) - 1:
                episode = transitions[start:i + 1]
                bounds = self.mc_bounds([x["reward"] for x in episode], bool(t["terminated"]))
                for x, g in zip(episode, bounds):
                    x["mc_bound"] = g
                start = i + 1

    def _reward_wrapper(self):
        from robot_rl.rewards.base import RewardWrapper
        env = self.env
        while not isinstance(env, RewardWrapper):  # make_env put it under any other wrapper
            if not hasattr(env, "env"):
                raise ValueError("this run has no reward model (env.reward is not set)")
            env = env.env
        return env

    def set_reward_model(self, model) -> int:
        """Swap the run's reward model (e.g. a success classifier retrained on the false
        positives the policy found: HIL-SERL's loop) and relabel the online replay with it,
        as the env would have rewarded and terminated those steps under the new model. Demo
        transitions keep their labels: a terminated demo's last next observation is not
        stored. Returns how many online transitions changed."""
        w = self._reward_wrapper()
        w.model = model
        changed = self.online.relabel(lambda batch: w.relabel(
            batch["next_obs"], batch["env_reward"],
            None if w.model_ends_episodes else batch["env_terminated"]))
        self.metrics.log("reward_model_swap", self.step, relabeled=changed,
                         transitions=len(self.online))
        return changed

    def every(self, n_steps: int, fn: Callable[["Trainer"], None]) -> None:
        """Call `fn(trainer)` after every `n_steps`-th env step of `run` (e.g. to refresh a
        reward model)."""
        self.periodic.append((int(n_steps), fn))

    def _relabel_with_reward_model(self, transitions: list[dict], chunk: int = 64) -> bool:
        """With `env.reward` set, demo rewards come from the same model as online rewards, so
        the two halves of every RLPD batch agree on what is rewarded. A terminated episode's
        last step keeps its recorded reward: its next observation is not in the dataset.
        (Record demos through the model, as scripted demos are, for that reward to be the
        model's too.)"""
        if not self.cfg.env.reward or not transitions:
            return False
        wrapper = self._reward_wrapper()
        transitions = [t for t in transitions if t.get("next_obs_stored", True)]
        for i in range(0, len(transitions), chunk):
            part = transitions[i:i + chunk]
            nxt = {k: np.stack([t["next_obs"][k] for t in part]) for k in part[0]["next_obs"]}
            rewards, term = wrapper.relabel(nxt, [t["reward"] for t in part],
                                            [t["terminated"] for t in part])
            for t, r, d in zip(part, rewards, term):
                t["reward"], t["terminated"] = float(r), bool(d)
        return True

    # ---- checkpoints --------------------------------------------------------------------
    def _recorder(self):
        """The `env.teleop.record_interventions` dataset's recorder, if the run has one."""
        from robot_rl.envs import find_wrapper
        from robot_rl.hardware.intervention import InterventionWrapper
        return getattr(find_wrapper(self.env, InterventionWrapper), "recorder", None)

    def _skip_episodes_recorded_since_checkpoint(self) -> None:
        """Episodes the `record_interventions` dataset got after the checkpoint (the one in
        progress at a stop, or all since it after a hard kill) stay in the dataset; their
        numbers, and so their seeds, are not used again, so no episode is recorded twice."""
        recorder = self._recorder()
        if recorder is None or self.recorded_at_checkpoint is None:
            return
        later = recorder.writer.num_episodes - self.recorded_at_checkpoint
        if later > 0:
            self.episode += later
            print(f"{recorder.root}: {later} episode(s) recorded after the checkpoint are kept; "
                  f"training continues from episode {self.episode}")
        self.recorded_at_checkpoint = None

    def _state(self) -> dict:
        """Counters and RNG saved in `trainer.json` (subclasses add theirs)."""
        recorder = self._recorder()
        return {"step": self.step, "episode": self.episode, "rng": self.rng.bit_generator.state,
                "recent": list(self.recent), "last_eval": self.last_eval,
                "elapsed": self.elapsed, "normalized": self.normalized,
                "recorded_episodes": None if recorder is None else recorder.writer.num_episodes}

    def _load_state(self, state: dict) -> None:
        self.step, self.episode = state["step"], state["episode"]
        self.recorded_at_checkpoint = state.get("recorded_episodes")
        self.rng.bit_generator.state = state["rng"]
        self.recent.extend(tuple(x) for x in state["recent"])
        self.last_eval, self.elapsed = state["last_eval"], state["elapsed"]
        self.normalized = state["normalized"]

    def save(self) -> Path:
        import torch

        from robot_rl.checkpoint import save_checkpoint
        state = self._state()
        return save_checkpoint(self.run_dir / "checkpoints", self.step, {
            "agent.pt": lambda p: torch.save(self.agent.state_dict(), p),
            "replay_online.npz": self.online.save,
            "replay_demo.npz": self.demo.save,
            "trainer.json": lambda p: p.write_text(json.dumps(state)),
        })

    def _restore(self) -> None:
        import torch

        from robot_rl.checkpoint import latest_good
        ckpt = latest_good(self.run_dir / "checkpoints")
        if ckpt is None:
            raise FileNotFoundError(f"no usable checkpoint under {self.run_dir / 'checkpoints'}")
        self.agent.load_state_dict(torch.load(ckpt / "agent.pt", map_location=self.agent.device,
                                              weights_only=True))
        self.online.load(ckpt / "replay_online.npz")
        self.demo.load(ckpt / "replay_demo.npz")
        self._load_state(json.loads((ckpt / "trainer.json").read_text()))
        self.metrics.truncate_after(self.step)
        print(f"resumed {self.run_dir} from {ckpt.name} (step {self.step})")

    # ---- loop ---------------------------------------------------------------------------
    def _episode_seed(self) -> int:
        return self.cfg.seed * 100_003 + self.episode

    def run(self) -> dict:
        from tqdm import tqdm
        c = self.cfg.train
        env, agent = self.env, self.agent
        self._skip_episodes_recorded_since_checkpoint()
        obs, _ = env.reset(seed=self._episode_seed())
        ep = EpisodeStats()
        bar = tqdm(total=c.total_env_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=not self.progress, desc=self.cfg.name)
        t_start = time.perf_counter() - self.elapsed
        self.t_last = time.perf_counter()
        try:
            with saving_on_stop(self.save, self.run_dir) as stop:
                while self.step < c.total_env_steps and not stop.requested:
                    if self.step < c.random_steps:
                        action = self.rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
                    else:
                        action = agent.act(obs)
                    next_obs, reward, term, trunc, info = env.step(action)
                    self.record(obs, action, reward, next_obs, term, trunc, info, ep)
                    for n_steps, fn in self.periodic:
                        if self.step % n_steps == 0:
                            fn(self)
                    obs = next_obs
                    if term or trunc:
                        if info.get("teleop_lost"):
                            self.save()
                            print("teleop device lost: checkpoint saved; reconnect it and resume "
                                  f"with `robot-rl train --resume {self.run_dir}`")
                            break
                        obs, _ = env.reset(seed=self._episode_seed())
                    self.report(bar)
                    self.elapsed = time.perf_counter() - t_start
                    if self.evaluate_and_checkpoint():
                        break
            self.stopped_by = stop.requested
        finally:
            bar.close()
            self.env.close()  # flushes a recording wrapper's last episode
            self.eval_env.close()  # a real robot's connection is shared: its last handle frees it
            self.metrics.plot_curve()
        return self.result()

    def record(self, obs, action, reward, next_obs, term, trunc, info, ep: EpisodeStats,
               learn: bool = True, **episode_fields) -> None:
        """One env step, wherever it was taken: store it (human corrections also into the
        demo buffer), count it, run the `utd_ratio` updates once past warm-up, and log the
        episode when it ends (`episode_fields` go into that row). A step on which the robot
        connection was lost only ends the episode: it has no real next observation, so nothing
        is stored or counted."""
        if info.get("connection_lost"):
            self._end_episode(info, ep, episode_fields)
            return
        executed = info.get("intervene_action", info.get("action", action))
        tid = self.online.insert(obs, executed, reward, next_obs, term, trunc, info)
        if self.agent.uses_mc_bounds:
            ids, rewards = self.open_episodes.setdefault(episode_fields.get("stream"), ([], []))
            ids.append(tid)
            rewards.append(float(reward))
        if info.get("intervention"):  # HIL-SERL: human corrections also go to the demos
            self.demo.insert(obs, executed, reward, next_obs, term, trunc, info,
                             intervention=True, is_demo=True)
            ep.interventions += 1
        self.step += 1
        ep.ret += reward
        ep.length += 1
        if learn and self.step > self.cfg.train.warmup_steps:
            if self.cfg.train.normalize_obs and not self.normalized:
                self._freeze_normalization()
            self.agent.update_many(self.sample)
            self.updates_since += self.cfg.agent.utd_ratio
        if term or trunc:
            self._end_episode(info, ep, episode_fields, terminated=bool(term))

    def _end_episode(self, info: dict, ep: EpisodeStats, episode_fields: dict,
                     terminated: bool = False) -> None:
        ids, rewards = self.open_episodes.pop(episode_fields.get("stream"), ([], []))
        if ids:
            self.online.set_extra("mc_bound", ids, self.mc_bounds(rewards, terminated))
        rate = ep.interventions / max(ep.length, 1)
        self.recent.append((bool(info["is_success"]), rate))
        self.metrics.log("episode", self.step, episode=self.episode,
                         success=bool(info["is_success"]), episode_return=ep.ret,
                         length=ep.length, intervention_rate=rate, **episode_fields)
        self.episode += 1
        ep.reset()

    def report(self, bar=None, every_s: float = 2.0) -> None:
        """Updates/s into metrics.jsonl every `every_s` seconds; progress-bar postfix."""
        now = time.perf_counter()
        if now - self.t_last > every_s:
            self.upd_rate = self.updates_since / (now - self.t_last)
            self.t_last, self.updates_since = now, 0
            self.metrics.log("train", self.step, updates_per_s=self.upd_rate,
                             critic_steps=self.agent.critic_steps, alpha=self.agent.alpha)
        if bar is None:
            return
        bar.update(self.step - bar.n)
        if self.step % 10 == 0:
            bar.set_postfix(refresh=False, **self.postfix())

    def postfix(self) -> dict:
        rs = list(self.recent)
        return {"ep": self.episode,
                "succ": f"{np.mean([s for s, _ in rs]):.2f}" if rs else "-",
                "eval": "-" if self.last_eval is None else f"{self.last_eval:.2f}",
                "upd_s": f"{self.upd_rate:.0f}",
                "interv": f"{np.mean([i for _, i in rs]):.2f}" if rs else "-"}

    def evaluate_and_checkpoint(self) -> bool:
        """When their step comes, `evaluate` the policy on the evaluation env (logged, with a
        video) and save a checkpoint. True when the run should stop (`train.stop_at_success`)."""
        c = self.cfg.train
        stop = False
        if self.step % c.eval_every == 0 or self.step == c.total_env_steps:
            video = (self.run_dir / "videos" / f"eval_step_{self.step:09d}.mp4") if self.video else None
            res = evaluate(self.agent, self.eval_env, c.eval_episodes, c.eval_seed, video)
            self.last_eval = res["success_rate"]
            self.metrics.log("eval", self.step, wall_clock_s=self.elapsed, **res)
            self.metrics.plot_curve()
            stop = c.stop_at_success is not None and res["success_rate"] >= c.stop_at_success
        if self.step % c.checkpoint_every == 0 or self.step == c.total_env_steps or stop:
            self.save()
        return stop

    def result(self) -> dict:
        return {"step": self.step, "episodes": self.episode, "eval_success": self.last_eval,
                "wall_clock_s": self.elapsed, "run_dir": str(self.run_dir),
                "stopped_by": self.stopped_by}

    def _freeze_normalization(self) -> None:
        keys = self.agent.encoder.vector_keys
        parts = [b.get(b.valid_ids())["obs"] for b in (self.demo, self.online) if len(b)]
        self.agent.set_obs_normalization({k: np.concatenate([p[k] for p in parts]) for k in keys})
        self.normalized = True


def train(cfg: RunConfig, progress: bool = True, run_dir: Path | None = None, resume: bool = False) -> dict:
    if cfg.runtime.kind == "ray" and cfg.agent.cql_alpha > 0:
        raise ValueError("agent.cql_alpha (Cal-QL's online phase) runs with runtime=local: the Ray "
                         "actors do not compute episodes' Monte-Carlo bounds")
    from robot_rl.agents.warm_start import is_policy_source
    from robot_rl.registry import is_physical
    if cfg.runtime.kind == "ray" and is_physical(cfg.env.id):
        raise ValueError(f"runtime=ray with {cfg.env.id}, a real arm, is refused: every Ray actor and "
                         f"the learner would each open the robot (one client at a time); train it "
                         f"with runtime=local")
    if is_policy_source(cfg.init.from_) and (cfg.runtime.kind == "ray" or cfg.reset_free.enabled):
        raise ValueError(f"init.from={cfg.init.from_} (a policy to distil) runs with episodic "
                         f"runtime=local training")
    if cfg.reset_free.enabled:
        if cfg.runtime.kind == "ray":
            raise ValueError("reset_free runs one env with two learners in this process: use runtime=local")
        from robot_rl.reset_free import ResetFreeTrainer
        return ResetFreeTrainer(cfg, run_dir=run_dir, resume=resume, progress=progress).run()
    if cfg.runtime.kind == "ray":
        from robot_rl.distributed.runtime import run_distributed
        return run_distributed(cfg, run_dir=run_dir, resume=resume, progress=progress)
    return Trainer(cfg, run_dir=run_dir, resume=resume, progress=progress).run()


def where_it_is(result: dict) -> str:
    """What a finished (or stopped) run left behind, for the end of `robot-rl train`."""
    run = Path(result["run_dir"])
    lines = [f"run {run}: step {result.get('step')}, eval success {result.get('eval_success')}, "
             f"{result.get('wall_clock_s', 0):.0f} s"
             + (f" (stopped by {result['stopped_by']})" if result.get("stopped_by") else "")]
    curves = sorted(run.rglob("learning_curve.png"))
    videos = sorted(run.rglob("eval_step_*.mp4"))
    if curves:
        lines.append("  learning curve:   " + ", ".join(map(str, curves)))
    if videos:
        lines.append(f"  latest eval video: {videos[-1]}")
    lines.append(f"  metrics:          {run / 'metrics.jsonl'} (TensorBoard: tensorboard --logdir {run})")
    lines.append(f"  evaluate:         robot-rl eval {run}")
    lines.append(f"  continue:         robot-rl train --resume {run} train.total_env_steps=N")
    return "\n".join(lines)


def resume(run_dir: str | Path, progress: bool = True, overrides: list[str] = ()) -> dict:
    run_dir = Path(run_dir)
    return train(load_config(str(run_dir / "config.yaml"), overrides), progress, run_dir, resume=True)


def load_policy(run_dir: str | Path):
    """The agent of a run's latest good checkpoint, plus its config."""
    import torch

    from robot_rl.agents.sac import SACAgent
    from robot_rl.checkpoint import latest_good
    run_dir = Path(run_dir)
    cfg = load_config(str(run_dir / "config.yaml"))
    ckpt = latest_good(run_dir / "checkpoints")
    if ckpt is None:
        raise FileNotFoundError(f"no usable checkpoint under {run_dir / 'checkpoints'}")
    env = make_env(cfg)
    agent = SACAgent(env.observation_space, env.action_space.shape[0], cfg.agent, seed=cfg.seed)
    # on CPU, wherever it was trained: `robot-rl eval`, the ROS 2 node and V-GPS act with it
    agent.load_state_dict(torch.load(ckpt / "agent.pt", map_location="cpu", weights_only=True))
    env.close()
    return agent, cfg
