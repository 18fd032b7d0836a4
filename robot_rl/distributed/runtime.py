"""`robot-rl train CONFIG runtime=ray`: start (or join) Ray, run the learner as a Ray actor on
this node (the run directory is here), show its progress, and restart it from its last
checkpoint if its process dies.

Local by default: `ray.init` with this machine's CPUs, no dashboard, every Ray service bound to
the loopback address. With `runtime.address` it joins an existing cluster instead (its env
actors may then run on any node that has robot_rl installed).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

LOOPBACK = "127.0.0.1"


def init_ray(rt) -> bool:
    """Connect to `rt.address`, or start a local Ray bound to loopback. Returns True if this
    call started Ray (so the caller shuts it down)."""
    if rt.address is None:
        # Ray replaces a loopback node IP by the machine's routable one unless its
        # single-machine mode (the one it uses on macOS/Windows) is on; this env var turns it
        # on, so GCS, raylet and workers listen on 127.0.0.1 only. Ray reads it when imported
        # (workers inherit it); if ray was imported already, set the constant it was read into.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        if "ray" in sys.modules:
            import ray._private.ray_constants as ray_constants
            ray_constants.ENABLE_RAY_CLUSTER = False
    import ray
    if ray.is_initialized():
        return False
    if rt.address is not None:
        ray.init(address=rt.address, log_to_driver=True)
        return True
    ray.init(num_cpus=rt.num_cpus or os.cpu_count(), include_dashboard=False,
             _node_ip_address=LOOPBACK, log_to_driver=True)
    if ray.util.get_node_ip_address() != LOOPBACK:
        print(f"warning: Ray runs on {ray.util.get_node_ip_address()}, not loopback",
              file=sys.stderr)
    return True


def start_learner(cfg, run_dir: Path, resume: bool):
    """The learner as a Ray actor pinned to this node, restarted by Ray if it dies."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from robot_rl.distributed.learner import Learner
    rt = cfg.runtime
    here = ray.get_runtime_context().get_node_id()
    cls = ray.remote(Learner).options(
        name=learner_name(run_dir),  # one learner per run directory, findable with ray.get_actor
        num_cpus=rt.learner_cpus, max_restarts=rt.max_learner_restarts, max_task_retries=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False))
    return cls.remote(cfg, str(run_dir), resume)


def learner_name(run_dir: Path) -> str:
    return f"robot-rl-learner:{Path(run_dir).resolve()}"


def _check_resources(cfg) -> None:
    import ray

    from robot_rl.config import ConfigError
    rt = cfg.runtime
    need = rt.actors * rt.actor_cpus + rt.learner_cpus
    have = ray.cluster_resources().get("CPU", 0)
    if need > have:
        raise ConfigError(f"runtime: {rt.actors} actors x actor_cpus={rt.actor_cpus} + "
                         f"learner_cpus={rt.learner_cpus} need {need:g} CPUs, Ray has {have:g}; "
                         "lower runtime.actors or runtime.actor_cpus (fractions are fine)")


def _wait_restarted(ray, learner, exc, timeout_s: float = 600.0) -> int:
    """After a failed call: wait while Ray restarts the learner; its (new) pid. Raises when
    Ray gave up (restarts used up, or its constructor failed)."""
    import time
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get(learner.ready.remote())["pid"]
        except ray.exceptions.ActorUnavailableError:  # restarting
            if time.monotonic() > deadline:
                raise RuntimeError(f"the learner did not come back within {timeout_s:.0f} s: "
                                   f"{exc}") from None
            time.sleep(0.5)
        except ray.exceptions.RayActorError as dead:
            raise RuntimeError(f"the learner died and was not restarted "
                               f"(runtime.max_learner_restarts): {dead}") from None


def run_distributed(cfg, run_dir: str | Path | None = None, resume: bool = False,
                    progress: bool = True, poll_s: float = 2.0) -> dict:
    from tqdm import tqdm

    from robot_rl.checkpoint import latest_good
    from robot_rl.train import check_run_dir
    run_dir = check_run_dir(Path(run_dir or Path(cfg.runs_dir) / cfg.name), resume).resolve()
    if resume and latest_good(run_dir / "checkpoints") is None:
        raise FileNotFoundError(f"no usable checkpoint under {run_dir / 'checkpoints'}")
    started = init_ray(cfg.runtime)  # before `import ray`: it sets how Ray binds
    import ray
    learner = None
    try:
        if started:  # on a cluster the autoscaler may add nodes, so only check our own Ray
            _check_resources(cfg)
        learner = start_learner(cfg, run_dir, resume)
        try:
            pid = ray.get(learner.ready.remote())["pid"]
        except ray.exceptions.RayActorError as exc:  # its constructor raised: a real error
            raise RuntimeError(f"the learner failed to start: {exc}") from None
        deaths = 0
        bar = tqdm(total=cfg.train.total_env_steps, unit="step", dynamic_ncols=True,
                   disable=not progress, desc=cfg.name)
        try:
            while True:
                try:
                    st = ray.get(learner.train_for.remote(poll_s))
                except ray.exceptions.RayActorError as exc:
                    new_pid = _wait_restarted(ray, learner, exc)
                    if new_pid != pid:
                        pid, deaths = new_pid, deaths + 1
                        print(f"the learner process died; Ray restarted it ({deaths}/"
                              f"{cfg.runtime.max_learner_restarts}) from the last checkpoint",
                              file=sys.stderr)
                    continue
                bar.update(st["step"] - bar.n)
                t = st["transport"]
                bar.set_postfix(refresh=False, **st["postfix"],
                                recv=t["received"], restarts=t["actor_restarts"])
                if st["done"]:
                    return st["result"]
        finally:
            bar.close()
    finally:
        if learner is not None:
            ray.kill(learner, no_restart=True)  # its env actors go with it (it owns them)
        if started:
            ray.shutdown()
