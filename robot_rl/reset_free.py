"""Reset-free training with one policy per direction, as SERL trains object relocation and
RoboFuME its reset-free tasks: a forward and a backward learner share one env and take turns,
each episode starting where the other's ended (`env.reset(options={"reset_free": True,
"direction": ...})`: the scene is not reset and nothing moves).

Each direction is a whole `Trainer` (robot_rl/train.py) in `RUN_DIR/<direction>/`: its own agent,
replay buffers, demos (the task's scripted expert or a dataset, in its direction), evaluation
on held-out seeds with ordinary resets, metrics and checkpoints. This module only decides whose
turn it is and when the scene needs a real reset:
- every `reset_free.full_reset_every` episodes (0: never), a scheduled one (the arm goes home;
  in sim the scene is redrawn too);
- when a direction is stuck (`reset_free.stuck_after` of its episodes failed in a row; the
  other direction's episodes in between do not count, since after a failed forward episode the
  backward goal is often already met): `on_stuck: scripted` resets the env (sim), `human` waits
  for the operator to put the scene back and press Enter (real arms).
Every reset is counted in `reset_free.json` and the metrics. Checkpoints of both learners and
whose turn it is are written together, so `robot-rl train --resume RUN_DIR` continues exactly.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from robot_rl import config as cfgmod
from robot_rl.run_config import RunConfig
from robot_rl.train import EpisodeStats, Trainer, check_run_dir, make_env, saving_on_stop

NEVER = 10 ** 15  # the direction trainers never checkpoint or stop on their own: this module does


class DirectionTrainer(Trainer):
    """One direction's learner; steps the env it is given instead of making one."""

    def __init__(self, cfg: RunConfig, run_dir: Path, env, resume: bool, owner: "ResetFreeTrainer"):
        self._given_env, self.owner = env, owner
        super().__init__(cfg, run_dir=run_dir, resume=resume, progress=False)

    def _make_envs(self):
        env = self._given_env if self._given_env is not None else make_env(self.cfg)
        return env, make_env(self.cfg, teleop=False, reward_model=False)

    def _state(self) -> dict:
        return {**super()._state(), "reset_free": self.owner.state()}


class ResetFreeTrainer:
    def __init__(self, cfg: RunConfig, run_dir: Path | None = None, resume: bool = False,
                 progress: bool = True):
        rf = cfg.reset_free
        self.cfg, self.progress = cfg, progress
        self.run_dir = check_run_dir(Path(run_dir or Path(cfg.runs_dir) / cfg.name), resume)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cfgmod.save(cfg, self.run_dir / "config.yaml")
        self.directions = tuple(rf.directions)
        self.failures_in_a_row = {d: 0 for d in self.directions}
        self.turn, self.episodes = 0, 0
        self.resets = {"scheduled": 0, "stuck": 0}
        self.elapsed, self.checkpoints = 0.0, 0
        self.stopped_by: str | None = None
        self.trainers: dict[str, DirectionTrainer] = {}
        env = None
        for d in self.directions:
            sub = dataclasses.replace(
                cfg, name=d, env=dataclasses.replace(cfg.env, kwargs={**cfg.env.kwargs, "direction": d}),
                train=dataclasses.replace(cfg.train, total_env_steps=NEVER, checkpoint_every=NEVER,
                                          stop_at_success=None))
            self.trainers[d] = DirectionTrainer(sub, self.run_dir / d, env, resume, self)
            env = self.trainers[d].env
        self.env = env
        if resume:
            states = [json.loads(self._latest_state(d)) for d in self.directions]
            if states[0] != states[1]:
                raise RuntimeError(f"{self.run_dir}: the directions' latest checkpoints were written "
                                   f"at different times; remove the newer one to resume")
            self._load(states[0])

    def _latest_state(self, direction: str) -> str:
        from robot_rl.checkpoint import latest_good
        ckpt = latest_good(self.run_dir / direction / "checkpoints")
        return json.dumps(json.loads((ckpt / "trainer.json").read_text())["reset_free"])

    def state(self) -> dict:
        return {"turn": self.turn, "episodes": self.episodes, "failures_in_a_row": dict(self.failures_in_a_row),
                "resets": dict(self.resets), "elapsed": self.elapsed, "checkpoints": self.checkpoints}

    def _load(self, s: dict) -> None:
        self.turn, self.episodes, self.failures_in_a_row = s["turn"], s["episodes"], dict(s["failures_in_a_row"])
        self.resets, self.elapsed, self.checkpoints = dict(s["resets"]), s["elapsed"], s["checkpoints"]

    @property
    def step(self) -> int:
        return sum(t.step for t in self.trainers.values())

    def save(self) -> None:
        self.checkpoints += 1
        for t in self.trainers.values():
            t.save()
        (self.run_dir / "reset_free.json").write_text(json.dumps({**self.state(), "step": self.step}))

    def _start_episode(self, direction: str, trainer: Trainer):
        """A reset-free start, or a real reset when one is due (first episode, schedule, stuck)."""
        rf = self.cfg.reset_free
        reason = None
        if self.episodes == 0:
            reason = "first"
        elif rf.full_reset_every and self.episodes % rf.full_reset_every == 0:
            reason = "scheduled"
        elif rf.stuck_after and self.failures_in_a_row[direction] >= rf.stuck_after:
            reason = "stuck"
        if reason is None:
            return self.env.reset(options={"reset_free": True, "home_arm": rf.home_arm,
                                           "direction": direction})[0]
        if reason != "first":
            self.resets[reason] += 1
            self.failures_in_a_row = {d: 0 for d in self.directions}
            trainer.metrics.log("reset", trainer.step, reason=reason, **self.resets)
        if reason == "stuck" and rf.on_stuck == "human":
            input(f"[reset-free] stuck after {rf.stuck_after} failed episodes: put the scene back "
                  f"for '{direction}', then press Enter ")
        return self.env.reset(seed=trainer._episode_seed(), options={"direction": direction})[0]

    def run(self) -> dict:
        from tqdm import tqdm
        total = self.cfg.train.total_env_steps
        c = self.cfg.train
        bar = tqdm(total=total, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=not self.progress, desc=self.cfg.name)
        t_start = time.perf_counter() - self.elapsed
        stop = False
        try:
            with saving_on_stop(self.save, self.run_dir) as signals:
                while self.step < total and not stop and not signals.requested:
                    direction = self.directions[self.turn]
                    t = self.trainers[direction]
                    obs = self._start_episode(direction, t)
                    ep, done, before = EpisodeStats(), False, self.step
                    while not done and not signals.requested:
                        if t.step < c.random_steps:
                            action = t.rng.uniform(-1, 1, self.env.action_space.shape).astype(np.float32)
                        else:
                            action = t.agent.act(obs)
                        next_obs, reward, term, trunc, info = self.env.step(action)
                        t.record(obs, action, reward, next_obs, term, trunc, info, ep, direction=direction)
                        obs, done = next_obs, term or trunc
                        self.elapsed = time.perf_counter() - t_start
                        t.evaluate_and_checkpoint()
                        t.report(bar)
                    bar.update(self.step - before)
                    if not done:  # stopped by a signal mid-episode: saved on the way out
                        break
                    self.episodes += 1
                    self.failures_in_a_row[direction] = 0 if info["is_success"] else self.failures_in_a_row[direction] + 1
                    self.turn = 1 - self.turn
                    forward = self.trainers[self.directions[0]]
                    stop = c.stop_at_success is not None and (forward.last_eval or 0.0) >= c.stop_at_success
                    if self.step // c.checkpoint_every > before // c.checkpoint_every or self.step >= total or stop:
                        self.save()
            self.stopped_by = signals.requested
        finally:
            bar.close()
            for t in self.trainers.values():
                t.eval_env.close()
                t.metrics.plot_curve()
            self.env.close()
        return self.result()

    def result(self) -> dict:
        return {"step": self.step, "episodes": self.episodes, "resets": dict(self.resets),
                "eval_success": {d: t.last_eval for d, t in self.trainers.items()},
                "wall_clock_s": self.elapsed, "run_dir": str(self.run_dir),
                "stopped_by": self.stopped_by}
