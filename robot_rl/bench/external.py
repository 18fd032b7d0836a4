"""`robot-rl bench external`: the learner on environments nobody here wrote, beside our own
PandaPickCube as the baseline measured in the same run.

- gym_hil_pick_cube: gym-hil's PandaPickCubeBase-v0 (random block position), 20 demos from our
  scripted expert for it (`robot_rl.sim.external_experts`), gym-hil's own sparse reward.
- fetch_reach: gymnasium-robotics' FetchReach-v4 with its own reward, no demos.
- fetch_reach_demos: the same with 20 demos of our scripted expert for it (`demos.policy`).
- pick_cube: our PandaPickCube-v0 (config/pick_cube.yaml), the baseline.

Each is `robot-rl train CONFIG` in a subprocess (gym-hil pins mujoco<3.9 and gymnasium-robotics'
Fetch breaks on MuJoCo 3.17, so those two run in the other-sims venv, `--gym-hil-python`), and the
figures come from the run's metrics.jsonl: env steps and wall-clock until evaluation success
first reached 80% and 90% (on `train.eval_episodes` held-out seeds; each run stops at 90% or its
step budget), median over seeds.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
TASKS = {  # name -> (config, runs in the other-sims venv, its overrides)
    "pick_cube": ("pick_cube.yaml", False, []),
    "gym_hil_pick_cube": ("gym_hil_pick_cube.yaml", True, []),
    "fetch_reach": ("fetch_reach.yaml", True, []),
    "fetch_reach_demos": ("fetch_reach.yaml", True, [
        "demos.scripted_episodes=20", "demos.policy=robot_rl.sim.external_experts:fetch_reach_expert"]),
}


def first_reaching(evals: list[dict], level: float) -> tuple[int | None, float | None]:
    """(env steps, wall-clock s) of the first evaluation at or above `level`, or (None, None)."""
    for e in evals:
        if e["success_rate"] >= level:
            return e["step"], e["wall_clock_s"]
    return None, None


def run_training(python: str, config: Path, overrides: list[str], timeout_s: float) -> list[dict]:
    """`robot-rl train` in `python`; its evaluation rows. The whole process group is killed on
    a timeout or an error, so no env or compile worker outlives the benchmark."""
    cmd = [python, "-m", "robot_rl.cli", "train", str(config), *overrides, "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    run_dir = Path(json.loads(out.strip().splitlines()[-1])["run_dir"])
    from robot_rl.metrics import read_metrics
    return read_metrics(run_dir, "eval")


def _median(values):
    vals = [v for v in values if v is not None]
    return float(np.median(vals)) if len(vals) == len(values) and vals else None


def run(json_path: str | None = None, seeds: int = 1, tasks: list[str] | None = None,
        gym_hil_python: str | None = None, runs_dir: str | None = None,
        overrides: list[str] = (), timeout_s: float = 3600) -> dict:
    from robot_rl.bench.sim import find_gym_hil_python
    tasks = list(tasks or TASKS)
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise SystemExit(f"unknown task(s) {unknown}; choose from {sorted(TASKS)}")
    sims_python = find_gym_hil_python(gym_hil_python)
    if any(TASKS[t][1] for t in tasks) and sims_python is None:
        raise SystemExit("no Python with gym-hil: run `bash scripts/setup_gymhil.sh` first")
    runs_dir = runs_dir or tempfile.mkdtemp(prefix="bench_external_")
    results = {}
    for name in tasks:
        config, sims, task_overrides = TASKS[name]
        per_seed = []
        for seed in range(seeds):
            evals = run_training(sims_python if sims else sys.executable, REPO / "config" / config,
                                 [*task_overrides, f"seed={seed}", f"name={name}_s{seed}",
                                  f"runs_dir={runs_dir}", "train.stop_at_success=0.9", *overrides],
                                 timeout_s)
            s80, t80 = first_reaching(evals, 0.8)
            s90, t90 = first_reaching(evals, 0.9)
            per_seed.append({"seed": seed, "steps_to_80": s80, "wall_clock_s_to_80": t80,
                             "steps_to_90": s90, "wall_clock_s_to_90": t90,
                             "final_success": evals[-1]["success_rate"] if evals else None,
                             "curve": [[e["step"], e["success_rate"]] for e in evals]})
            print(f"{name} seed {seed}: 80% at {s80} steps ({t80 and round(t80)} s), "
                  f"90% at {s90} steps ({t90 and round(t90)} s), final "
                  f"{per_seed[-1]['final_success']}", flush=True)
        results[name] = {"config": " ".join([f"config/{config}", *task_overrides]), "seeds": per_seed,
                         **{k: _median([s[k] for s in per_seed]) for k in
                            ("steps_to_80", "steps_to_90", "wall_clock_s_to_80",
                             "wall_clock_s_to_90")}}
    base = results.get("pick_cube", {}).get("steps_to_90")
    for name, r in results.items():
        if name != "pick_cube" and base and r["steps_to_90"]:
            r["steps_to_90_vs_pick_cube"] = r["steps_to_90"] / base
    print(json.dumps({k: {m: v for m, v in r.items() if m != "seeds"}
                      for k, r in results.items()}, indent=1))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps({"tasks": results, "seeds": seeds}, indent=1))
    return results
