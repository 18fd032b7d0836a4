"""`robot-rl bench learn --task suite`: every sim task trained by the default agent, with no
per-task tuning: state tasks with config/pick_cube.yaml, vision tasks with
config/pick_cube_vision.yaml, only `env.id` changed.

For each task and seed: env steps and wall-clock until >= 90% success on 100 held-out
evaluation seeds (evaluated every 1000 state / 2500 vision steps, capped at the targets: 20k
state, 40k vision env steps), the learning curve, and the peak resident memory of the training
process (each run is its own process, so the peak is that run's). Per task: the median over
seeds (a seed that never reached 90% counts as infinite) and whether it met the target.

Resumable: results are written to the JSON after every run and a rerun skips the runs it
already has and continues a run that was stopped part-way from its last checkpoint, so a suite
stopped after hours continues where it was.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from robot_rl.run_config import RunConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
SUITE = ("robot_rl/PandaReach-v0", "robot_rl/PandaPickCube-v0", "robot_rl/PandaPegInsert-v0",
         "robot_rl/PandaTightInsert-v0", "robot_rl/PandaRelocate-v0", "robot_rl/SO101Reach-v0",
         "robot_rl/SO101PickCube-v0", "robot_rl/PandaPickCubeVision-v0",
         "robot_rl/PandaPegInsertVision-v0", "robot_rl/PandaTightInsertVision-v0",
         "robot_rl/PandaRelocateVision-v0", "robot_rl/SO101PickCubeVision-v0")
TARGET_STEPS = {"state": 20_000, "vision": 40_000}
THRESHOLD = 0.9


def kind_of(env_id: str) -> str:
    return "vision" if env_id.endswith("Vision-v0") else "state"


def short_name(env_id: str) -> str:
    return env_id.split("/")[-1].removesuffix("-v0")


def one_run(env_id: str, seed: int, runs_dir: str, overrides: list[str]) -> dict:
    """Train `env_id` with the default agent in a child process; its result and peak RSS. A run
    stopped part-way (Ctrl-C, a signal, a session's end) is continued from its checkpoint."""
    from robot_rl.bench.learn import reached
    from robot_rl.metrics import read_metrics
    from robot_rl.run_config import load_config
    kind = kind_of(env_id)
    name = f"suite_{short_name(env_id)}_seed{seed}"
    run_dir = Path(runs_dir) / name
    config = CONFIG_DIR / ("pick_cube_vision.yaml" if kind == "vision" else "pick_cube.yaml")
    args = [f"env.id={env_id}", f"seed={seed}", f"name={name}", f"runs_dir={runs_dir}",
            f"train.total_env_steps={TARGET_STEPS[kind]}", "train.eval_episodes=100",
            f"train.eval_every={1000 if kind == 'state' else 2500}",
            f"train.stop_at_success={THRESHOLD}", *overrides]
    cfg = load_config(str(config), args)
    resume = stopped_part_way(run_dir, cfg)
    child = subprocess.Popen([sys.executable, "-m", "robot_rl.cli", "train",
                              *(["--resume", str(run_dir)] if resume else [str(config), *args])])
    try:
        _, status, usage = os.wait4(child.pid, 0)
    except BaseException:  # Ctrl-C: the child saves its checkpoint on SIGINT; wait for it
        child.wait()
        raise
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:  # e.g. the run's directory exists: recording it would report a 0% run
        raise RuntimeError(f"{name} failed (exit {child.returncode}, its error is printed above); "
                           f"nothing was recorded for it")
    if stopped_part_way(run_dir, cfg):  # a stop signal ends a run with exit 0
        raise RuntimeError(f"{name} was stopped before its end; nothing was recorded for it: "
                           f"run the suite again to continue it from its checkpoint")
    evals = read_metrics(run_dir, "eval")
    return {"seed": seed, "returncode": child.returncode, "resumed": resume,
            **reached(evals, THRESHOLD, evals[-1]["wall_clock_s"] if evals else None),
            "peak_rss_mb": usage.ru_maxrss / 1024}  # Linux: kilobytes (of the last process)


def stopped_part_way(run_dir: Path, cfg: RunConfig) -> bool:
    """Whether `run_dir` holds a checkpointed run of exactly `cfg` that ended before its last
    step without reaching `stop_at_success` (a run of other settings is never continued)."""
    from robot_rl.metrics import read_metrics
    from robot_rl.run_config import load_config
    from robot_rl.train import has_checkpoint
    saved = run_dir / "config.yaml"
    if not (has_checkpoint(run_dir) and saved.exists()
            and load_config(str(saved)) == cfg):
        return False
    evals, stop_at = read_metrics(run_dir, "eval"), cfg.train.stop_at_success
    return not evals or (evals[-1]["step"] < cfg.train.total_env_steps
                         and (stop_at is None or evals[-1]["success_rate"] < stop_at))


def summarize(env_id: str, runs: list[dict]) -> dict:
    steps = [r["steps"] for r in runs]
    median = float(np.median([np.inf if s is None else s for s in steps]))
    kind = kind_of(env_id)
    return {"kind": kind, "steps_to_90": steps,
            "median_steps_to_90": None if np.isinf(median) else median,
            "target_steps": TARGET_STEPS[kind],
            "met_target": bool(np.isfinite(median) and median <= TARGET_STEPS[kind]),
            "wall_clock_s": [r["wall_clock_s"] for r in runs],
            "final_success": [r["final_success"] for r in runs],
            # None where no run's was measured (a run recorded from a `robot-rl train` of its own)
            "peak_rss_mb": max((r["peak_rss_mb"] for r in runs if r["peak_rss_mb"] is not None),
                               default=None), "runs": runs}


def run(seeds: int = 3, json_path: str | None = None, runs_dir: str = "runs/bench",
        overrides: list[str] = (), envs: list[str] | None = None,
        only_seed: int | None = None) -> dict:
    """Seeds 0..seeds-1 of every task in `envs` (or only seed `only_seed`: one process per
    seed, in parallel, on one `json_path`); the runs `json_path` holds are skipped."""
    envs = list(envs or SUITE)
    unknown = [e for e in envs if e not in SUITE]
    if unknown:
        raise ValueError(f"not in the suite: {unknown}; the suite is {list(SUITE)}")
    path = Path(json_path) if json_path else None
    config = {"state": "config/pick_cube.yaml", "vision": "config/pick_cube_vision.yaml",
              "overrides": list(overrides)}
    result = {"config": config, "tasks": {}}
    for env_id in envs:
        for seed in range(seeds) if only_seed is None else [only_seed]:
            if path:  # read again: a suite in another process may have recorded runs since
                result = load(path, config)
            if seed in {r["seed"] for r in result["tasks"].get(env_id, {}).get("runs", [])}:
                continue
            result = record(path, env_id, one_run(env_id, seed, runs_dir, list(overrides)),
                            result)
        if path:
            result = load(path, config)
        t = result["tasks"].get(env_id)
        if t is None:
            continue
        rss = t["peak_rss_mb"]
        print(f"{env_id}: steps to 90% {t['steps_to_90']} (median {t['median_steps_to_90']}, "
              f"target <= {t['target_steps']}: {'met' if t['met_target'] else 'NOT met'}), "
              f"peak RSS {'-' if rss is None else round(rss)} MB")
    return result


def load(path: Path, config: dict) -> dict:
    result = json.loads(path.read_text()) if path.exists() else {}
    result.setdefault("config", config)
    result.setdefault("tasks", {})
    return result


def record(path: Path | None, env_id: str, run_result: dict, result: dict) -> dict:
    """`result` with `run_result` added to its task; with a `path`, under a lock on its folder
    and read again first, so suites in parallel processes on one file keep each other's runs."""
    def add(result: dict) -> dict:
        runs = {r["seed"]: r for r in result["tasks"].get(env_id, {}).get("runs", [])}
        runs[run_result["seed"]] = run_result
        result["tasks"][env_id] = summarize(env_id, [runs[s] for s in sorted(runs)])
        return result
    if path is None:
        return add(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        result = add(load(path, result["config"]))
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(result, indent=2))
        tmp.replace(path)  # whole or not at all: a reader never sees half a file
    finally:
        os.close(folder)  # and with it the lock
    return result
