"""`robot-rl bench sim`: our env vs the raw physics limit and gym-hil, measured in one run."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PROBE = Path(__file__).with_name("gym_hil_probe.py")


def _env_rate(env, steps: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    t = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - t)


def _physics_rate(env, steps: int) -> float:
    import mujoco
    env.reset(seed=0)
    m, d = env.world.model, env.world.data
    t = time.perf_counter()
    for _ in range(steps):
        mujoco.mj_step(m, d)
    return steps / (time.perf_counter() - t)


def find_gym_hil_python(explicit: str | None) -> str | None:
    """A Python that can import gym_hil: --gym-hil-python, this one, or ./.venv-gymhil."""
    candidates = [explicit] if explicit else [sys.executable, ".venv-gymhil/bin/python"]
    for py in candidates:
        if py and (os.path.exists(py) or shutil.which(py)):
            ok = subprocess.run([py, "-c", "import gym_hil"], capture_output=True).returncode == 0
            if ok:
                return py
    return None


def run(steps: int = 1000, rounds: int = 3, json_path: str | None = None,
        gym_hil_python: str | None = None) -> dict:
    from robot_rl.sim.envs import PHYSICS_DT, make_sim_env
    substeps = int(round(0.1 / PHYSICS_DT))
    state_env = make_sim_env("PandaPickCube")
    numpy_env = make_sim_env("PandaPickCube", controller="numpy")
    vision_env = make_sim_env("PandaPickCube", vision=True)
    res: dict[str, list[float]] = {k: [] for k in ("physics", "state", "numpy", "vision")}
    for _ in range(rounds):  # interleaved rounds, median: the machine is shared and noisy
        res["physics"].append(_physics_rate(state_env, steps * substeps // 4) / substeps)
        res["state"].append(_env_rate(state_env, steps))
        res["numpy"].append(_env_rate(numpy_env, max(50, steps // 5)))
        res["vision"].append(_env_rate(vision_env, max(50, steps // 5)))
    med = {k: float(np.median(v)) for k, v in res.items()}
    hil_state = hil_vision = None
    py = find_gym_hil_python(gym_hil_python)
    if py:
        out = subprocess.run([py, str(PROBE), str(max(100, steps // 5))], capture_output=True,
                             text=True, env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
        if out.returncode == 0:
            hil = json.loads(out.stdout.strip().splitlines()[-1])
            hil_state, hil_vision = hil["state"], hil["vision"]
        else:
            print(f"gym-hil probe failed:\n{out.stderr[-2000:]}", file=sys.stderr)
    result = {
        "physics_limit_steps_per_s": med["physics"],
        "state_steps_per_s": med["state"],
        "vision_steps_per_s": med["vision"],
        "numpy_controller_state_steps_per_s": med["numpy"],
        "gym_hil_state_steps_per_s": hil_state,
        "gym_hil_vision_steps_per_s": hil_vision,
        "state_fraction_of_physics_limit": med["state"] / med["physics"],
        "c_kernel_speedup_vs_numpy": med["state"] / med["numpy"],
        "vs_gym_hil_state": med["state"] / hil_state if hil_state else None,
        "vs_gym_hil_vision": med["vision"] / hil_vision if hil_vision else None,
        "substeps_per_env_step": substeps,
        "rounds": rounds,
    }
    rows = [("physics limit (mj_step/s / %d)" % substeps, med["physics"], ""),
            ("ours, state, C kernel", med["state"], f"{result['state_fraction_of_physics_limit']:.0%} of physics limit"),
            ("ours, state, numpy law", med["numpy"], f"C kernel = {result['c_kernel_speedup_vs_numpy']:.1f}x"),
            ("ours, vision (2 x 128x128)", med["vision"], ""),
            ("gym-hil state", hil_state, f"ours = {result['vs_gym_hil_state']:.1f}x" if hil_state else "gym-hil not found"),
            ("gym-hil vision", hil_vision, f"ours = {result['vs_gym_hil_vision']:.1f}x" if hil_vision else "")]
    print(f"{'env steps/s (PandaPickCube, 10 Hz policy, 500 Hz physics)':<44} {'median':>9}")
    for name, v, note in rows:
        print(f"{name:<44} {v if v is None else round(v, 1)!s:>9}  {note}")
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
    for env in (state_env, numpy_env, vision_env):
        env.close()
    return result
