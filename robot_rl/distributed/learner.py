"""The learner of a distributed run: the single-process `Trainer` (same agent, replay buffers,
demos, checkpoints, metrics and evaluation) fed by an `ActorFleet` instead of its own env.

Each received transition goes through `Trainer.record`, exactly as an env step does in the
single-process loop: stored, counted, `utd_ratio` updates once past warm-up, episode logged.
So the update-to-data ratio, and with it the sample efficiency, is the single-process one;
the actors run ahead by at most `max_inflight` batches each.

Requests never reach past the next checkpoint step, so at every checkpoint all requested
transitions are stored and sent == received == stored holds in the saved state; a restarted
learner resumes from it with new actors on new seed streams.
"""
from __future__ import annotations

import os

import time
from pathlib import Path

from robot_rl.distributed.actor import policy_state, unpack
from robot_rl.distributed.fleet import ActorFleet, TransportCounts
from robot_rl.train import EpisodeStats, Trainer, make_env


class DistributedTrainer(Trainer):
    def __init__(self, cfg, run_dir: Path, resume: bool, restarted: bool = False):
        self._transport_state: dict = {}
        super().__init__(cfg, run_dir=run_dir, resume=resume, progress=False)
        if restarted and not resume:  # died before its first checkpoint: start over cleanly
            self.metrics.truncate_after(0)
        self.metrics.log("learner_start", self.step, resumed=resume, restarted=restarted,
                         pid=os.getpid())
        self.counts = TransportCounts(self._transport_state.get("counts"))
        self.fleet = ActorFleet(cfg, self.counts, self._transport_state.get("next_stream", 0),
                                log=lambda kind, **v: self.metrics.log(kind, self.step, **v))
        self.episodes: dict[int, EpisodeStats] = {}  # per stream: the episode in progress
        self.published_at = 0
        self.published_normalized = False
        self.started = self.done = False
        self.unstored = 0          # transitions of the batch being ingested not yet recorded
        self.save_pending = False
        self.t_start = self.t_transport_log = 0.0

    def _make_envs(self):
        # the actors step their own envs (and own the teleop device); this one gives the
        # spaces and the reward model for relabeling demos, and is never stepped
        return make_env(self.cfg, teleop=False), make_env(self.cfg, teleop=False,
                                                          reward_model=False)

    # ---- checkpoint state ---------------------------------------------------------------
    def _state(self) -> dict:
        return {**super()._state(), "transport": {"counts": self.counts.state(),
                                                  "next_stream": self.fleet.next_stream}}

    def _load_state(self, state: dict) -> None:
        super()._load_state(state)
        self._transport_state = state.get("transport", {})

    def save(self):
        if self.unstored or self.fleet.inflight_transitions():
            # an early stop mid-pipeline: save once the collected rest is stored (`_finish`),
            # so that every checkpoint has sent == received == stored
            self.save_pending = True
            return None
        self.save_pending = False
        return super().save()

    # ---- loop ---------------------------------------------------------------------------
    def start(self) -> None:
        self.fleet.start()
        self._publish(force=True)
        self.t_start = time.perf_counter() - self.elapsed
        self.t_last = self.t_transport_log = time.perf_counter()
        self.started = True

    def _publish(self, force: bool = False) -> None:
        if force or self.normalized != self.published_normalized or \
                self.agent.critic_steps - self.published_at >= self.cfg.runtime.weight_sync_every:
            self.fleet.publish(policy_state(self.agent))
            self.published_at = self.agent.critic_steps
            self.published_normalized = self.normalized

    def _request_limit(self) -> int:
        """Transitions still wanted before the next checkpoint (or the end)."""
        c = self.cfg.train
        next_ckpt = (self.step // c.checkpoint_every + 1) * c.checkpoint_every
        return min(next_ckpt, c.total_env_steps) - self.step

    def _request(self, active: int | None = None, limit: int | None = None) -> None:
        c = self.cfg.train
        limit = self._request_limit() if limit is None else limit
        random_actions = self.step + self.fleet.inflight_transitions() < c.random_steps
        self.fleet.request(limit, random_actions, active)

    def train_for(self, seconds: float) -> dict:
        """Train for about `seconds` (the driver calls this in a loop and shows progress)."""
        if self.step >= self.cfg.train.total_env_steps:
            self.done = True  # e.g. resuming a finished run: no actors needed
        elif not self.started:
            self.start()
        deadline = time.perf_counter() + seconds
        while not self.done and time.perf_counter() < deadline:
            if self.step >= self.cfg.train.total_env_steps:
                self.done = True
                break
            self._publish()
            self._request()
            for batch in self.fleet.poll(timeout=min(0.5, max(0.0, deadline - time.perf_counter()))):
                self._ingest(batch, learn=True)
            self._log_transport()
        if self.done:
            self._finish()
        return self.status()

    def _ingest(self, batch: dict, learn: bool) -> None:
        stream = batch["stream"]
        slot = self.counts.streams[stream]["slot"]
        self.unstored = batch["n"]
        for obs, action, reward, next_obs, term, trunc, info, seed, _t in unpack(batch):
            ep = self.episodes.setdefault(stream, EpisodeStats())
            self.record(obs, action, reward, next_obs, term, trunc, info, ep,
                        learn=learn and not self.done, actor=slot, stream=stream,
                        episode_seed=seed)
            self.unstored -= 1
            self.fleet.count_stored(stream)
            if self.done or not learn:
                continue
            self._publish()
            self.report()
            self.elapsed = time.perf_counter() - self.t_start
            if info.get("teleop_lost"):
                print("teleop device lost: stopping after a checkpoint; reconnect it and resume "
                      f"with `robot-rl train --resume {self.run_dir}`")
                self.done = True
            if self.evaluate_and_checkpoint():
                self.done = True

    def _finish(self) -> None:
        """Store what the actors already collected (never dropped), save, stop the actors."""
        self.drain()
        if self.started:
            self.elapsed = time.perf_counter() - self.t_start
        if self.save_pending or not (self.run_dir / "checkpoints" /
                                     f"step_{self.step:09d}").exists():
            self.save()
        # the final row has both sides of every stream: the live actors' own counters
        # (all requests answered, so each has stepped == sent) and the learner's counts
        self._log_transport(force=True, streams=self.counts.state()["streams"],
                            actors=self.fleet.stats())
        self.fleet.shutdown()
        self.metrics.plot_curve()

    def _log_transport(self, force: bool = False, every_s: float = 10.0, **extra) -> None:
        now = time.perf_counter()
        if force or now - self.t_transport_log > every_s:
            self.t_transport_log = now
            self.metrics.log("transport", self.step, inflight=self.fleet.inflight_transitions(),
                             policy_version=self.fleet.version, **self.counts.totals(), **extra)

    def status(self) -> dict:
        return {"step": self.step, "total": self.cfg.train.total_env_steps, "done": self.done,
                "postfix": self.postfix(), "transport": self.counts.totals(),
                "result": self.result() if self.done else None}

    def result(self) -> dict:
        return {**super().result(), "transport": self.counts.totals()}

    def drain(self) -> None:
        """Take and store every requested batch (no updates)."""
        while self.fleet.inflight_transitions():
            for batch in self.fleet.poll(timeout=1.0):
                self._ingest(batch, learn=False)


class Learner:
    """The Ray actor around `DistributedTrainer`. If its process dies, Ray restarts it
    (`max_restarts`) and this constructor runs again: it then resumes the last checkpoint."""

    def __init__(self, cfg, run_dir: str, resume: bool):
        import warnings

        import ray

        from robot_rl.checkpoint import latest_good
        with warnings.catch_warnings():  # it reads a deprecated property internally
            warnings.simplefilter("ignore", DeprecationWarning)
            restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        has_ckpt = latest_good(Path(run_dir) / "checkpoints") is not None
        self.trainer = DistributedTrainer(cfg, Path(run_dir),
                                          resume=resume or (restarted and has_ckpt),
                                          restarted=restarted)
        self.restarted = restarted

    def ready(self) -> dict:
        import os
        return {"pid": os.getpid(), "step": self.trainer.step, "restarted": self.restarted}

    def train_for(self, seconds: float) -> dict:
        return self.trainer.train_for(seconds)

    def status(self) -> dict:
        return self.trainer.status()

    def actor_stats(self) -> list[dict]:
        return self.trainer.fleet.stats()

    def transport(self) -> dict:
        """Per-stream counts (for checks) and the fleet's live streams."""
        return {"streams": self.trainer.counts.state()["streams"],
                "totals": self.trainer.counts.totals(),
                "live_streams": [inc.stream for inc in self.trainer.fleet.slots],
                "online_transitions": self.trainer.online.transitions_written}

    def call(self, fn, *args):
        """`fn(trainer, *args)` in the learner's process: for probes that need the trainer
        itself (robot_rl/bench/distributed.py)."""
        return fn(self.trainer, *args)

    def shutdown(self) -> None:
        self.trainer.fleet.shutdown()
