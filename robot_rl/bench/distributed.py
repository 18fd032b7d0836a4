"""`robot-rl bench distributed`: collection throughput of the Ray runtime with 1 vs 2 env
actors (learner paused: it takes and stores transitions but does no updates), and the
learner's update rate with and without actors collecting. One local Ray cluster, one learner
with two actors; the 1-actor and 2-actor windows are interleaved rounds (median), because the
machine is shared and its load drifts.

Baseline from the same rounds: the same `EnvActor.collect` loop in 1 and 2 plain processes
(no Ray, no learner), i.e. what the machine gives two env processes right now; the Ray
speedup is read against it.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def _config(overrides, runs_dir: str):
    from robot_rl.train import load_config
    big = 10**9
    return load_config("config/reach.yaml", [
        "runtime=ray", "runtime.actors=2", f"runs_dir={runs_dir}", f"name=bench_{int(time.time())}",
        f"train.total_env_steps={big}", f"train.eval_every={big}", f"train.checkpoint_every={big}",
        "train.warmup_steps=0", "train.video=false", "demos.scripted_episodes=2",
        "train.torch_threads=1",  # the learner shares the cores with the actors
        *overrides])


class _PlainEnvProcesses:
    """`n` processes each stepping `EnvActor.collect` in a loop when told to (no Ray)."""

    def __init__(self, cfg, n: int):
        import multiprocessing as mp
        ctx = mp.get_context("spawn")  # never fork a process that has Ray threads
        self.pipes, self.procs = [], []
        for i in range(n):
            here, there = ctx.Pipe()
            p = ctx.Process(target=_plain_worker, args=(cfg, 1000 + i, there), daemon=True)
            p.start()
            self.pipes.append(here)
            self.procs.append(p)
        for pipe in self.pipes:
            pipe.recv()  # built its env

    def rate(self, k: int, seconds: float) -> float:
        """Total env steps/s of the first k processes running together."""
        for pipe in self.pipes[:k]:
            pipe.send(seconds)
        return sum(pipe.recv() for pipe in self.pipes[:k])

    def close(self) -> None:
        for pipe, p in zip(self.pipes, self.procs):
            pipe.send(None)
            p.join(timeout=10)


def _plain_worker(cfg, stream: int, conn) -> None:
    from robot_rl.distributed.actor import EnvActor
    actor = EnvActor(cfg, stream)
    actor.version = 0  # act with its own initial weights: nothing to fetch
    n_msg = cfg.runtime.transitions_per_message
    conn.send("ready")
    while (seconds := conn.recv()) is not None:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            actor.collect(n_msg, [], 0, False)
            n += n_msg
        conn.send(n / (time.perf_counter() - t0))


# Probes run in the learner's process (`Learner.call`) on its `DistributedTrainer`.
def collect_for(trainer, seconds: float, active: int) -> dict:
    """Learner paused (no updates): take and store transitions from the first `active`
    actors for `seconds`. Returns transitions/s."""
    if not trainer.started:
        trainer.start()
    n0, t0, busy = trainer.step, time.perf_counter(), 0.0
    while time.perf_counter() - t0 < seconds:
        trainer._request(active, limit=1 << 40)
        batches = trainer.fleet.poll(timeout=0.2)
        t = time.perf_counter()
        for batch in batches:
            trainer._ingest(batch, learn=False)
        busy += time.perf_counter() - t
    dt = time.perf_counter() - t0
    return {"transitions": trainer.step - n0, "seconds": dt,
            "steps_per_s": (trainer.step - n0) / dt, "learner_ingest_fraction": busy / dt}


def update_for(trainer, seconds: float, active: int) -> dict:
    """Critic updates back to back for `seconds` while the first `active` actors (0: none)
    keep collecting into the replay. Returns updates/s and transitions/s."""
    if not trainer.started:
        trainer.start()
    if trainer.cfg.train.normalize_obs and not trainer.normalized:
        trainer._freeze_normalization()
    u0, n0, t0 = trainer.agent.critic_steps, trainer.step, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if active:
            trainer._request(active, limit=1 << 40)
            for batch in trainer.fleet.poll(timeout=0.0):
                trainer._ingest(batch, learn=False)
        trainer.agent.update(trainer.sample())
    dt = time.perf_counter() - t0
    return {"updates_per_s": (trainer.agent.critic_steps - u0) / dt,
            "steps_per_s": (trainer.step - n0) / dt, "seconds": dt}


def run(json_path: str | None = None, seconds: float = 10.0, rounds: int = 3,
        overrides: list[str] = (), runs_dir: str | None = None) -> dict:
    from tqdm import tqdm

    from robot_rl.distributed.learner import DistributedTrainer
    from robot_rl.distributed.runtime import init_ray, start_learner
    tmp = tempfile.TemporaryDirectory(prefix="bench_distributed_") if runs_dir is None else None
    cfg = _config(list(overrides), runs_dir or tmp.name)
    load_before = os.getloadavg()
    started = init_ray(cfg.runtime)
    import ray
    learner = plain = None
    try:
        plain = _PlainEnvProcesses(cfg, 2)
        learner = start_learner(cfg, Path(cfg.runs_dir) / cfg.name, resume=False)
        drain = DistributedTrainer.drain
        ray.get(learner.call.remote(collect_for, 3.0, 2))  # warm-up: envs built, policy loaded
        ray.get(learner.call.remote(drain))
        collect: dict[int, list[float]] = {1: [], 2: []}
        baseline: dict[int, list[float]] = {1: [], 2: []}
        updates: dict[int, list[float]] = {0: [], 2: []}
        during: list[float] = []
        ingest: list[float] = []  # fraction of the 2-actor windows the learner was busy storing
        bar = tqdm(total=rounds * 6, desc="bench distributed", unit="window")
        for _ in range(rounds):
            for k in (1, 2):
                baseline[k].append(plain.rate(k, seconds))
                bar.update(1)
            for k in (1, 2):
                res = ray.get(learner.call.remote(collect_for, seconds, k))
                collect[k].append(res["steps_per_s"])
                if k == 2:
                    ingest.append(res["learner_ingest_fraction"])
                ray.get(learner.call.remote(drain))  # leftover requests stay out of the next window
                bar.update(1)
            for k in (0, 2):
                res = ray.get(learner.call.remote(update_for, seconds, k))
                updates[k].append(res["updates_per_s"])
                if k:
                    during.append(res["steps_per_s"])
                ray.get(learner.call.remote(drain))
                bar.update(1)
        bar.close()
        transport = ray.get(learner.transport.remote())
    finally:
        if plain is not None:
            plain.close()
        if learner is not None:
            ray.get(learner.shutdown.remote())
            ray.kill(learner)
        if started:
            ray.shutdown()
        if tmp is not None:
            tmp.cleanup()
    med = statistics.median
    rt = cfg.runtime
    out = {
        "one_actor_steps_per_s": med(collect[1]),
        "two_actor_steps_per_s": med(collect[2]),
        "speedup": med(collect[2]) / med(collect[1]),
        "learner_updates_per_s_no_actors": med(updates[0]),
        "learner_updates_per_s_two_actors": med(updates[2]),
        "steps_per_s_during_updates_two_actors": med(during),
        "learner_ingest_fraction_two_actors": med(ingest),
        "plain_one_process_steps_per_s": med(baseline[1]),
        "plain_two_process_steps_per_s": med(baseline[2]),
        "plain_speedup": med(baseline[2]) / med(baseline[1]),
        "rounds": {"one_actor": collect[1], "two_actor": collect[2],
                   "plain_one": baseline[1], "plain_two": baseline[2],
                   "updates_no_actors": updates[0], "updates_two_actors": updates[2]},
        "transport_totals": transport["totals"],
        "setup": {"env": cfg.env.id, "seconds_per_window": seconds, "rounds": rounds,
                  "transitions_per_message": rt.transitions_per_message,
                  "max_inflight": rt.max_inflight, "actor_cpus": rt.actor_cpus,
                  "agent": {"hidden_dims": list(cfg.agent.hidden_dims),
                            "num_critics": cfg.agent.num_critics,
                            "batch_size": cfg.agent.batch_size},
                  "learner_torch_threads": cfg.train.torch_threads,
                  "cpu_count": os.cpu_count(), "loadavg_before": list(load_before),
                  "loadavg_after": list(os.getloadavg())},
    }
    print(f"collection, learner paused: 1 actor {out['one_actor_steps_per_s']:.0f} steps/s, "
          f"2 actors {out['two_actor_steps_per_s']:.0f} steps/s, speedup "
          f"{out['speedup']:.2f}x (target >= 1.6x); the learner was busy storing "
          f"{100 * out['learner_ingest_fraction_two_actors']:.0f}% of the 2-actor windows")
    print(f"same env loop in plain processes (no Ray, no learner): 1 process "
          f"{out['plain_one_process_steps_per_s']:.0f} steps/s, 2 processes "
          f"{out['plain_two_process_steps_per_s']:.0f} steps/s, {out['plain_speedup']:.2f}x")
    print(f"learner updates/s: {out['learner_updates_per_s_no_actors']:.1f} without actors, "
          f"{out['learner_updates_per_s_two_actors']:.1f} with 2 actors collecting "
          f"({out['steps_per_s_during_updates_two_actors']:.0f} steps/s meanwhile)")
    print(f"load average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    t = transport["totals"]
    print(f"transport: sent {t['sent']} received {t['received']} stored {t['stored']}")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(out, indent=1))
    return out
