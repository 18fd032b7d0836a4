"""`robot-rl bench mjx`: env steps/s of N batched MJX environments (N = 1, 64, 1024) against
the CPU MuJoCo env (C impedance kernel), both measured in this run, as ratios."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np


def _mjx_rate(task: str, n: int, min_seconds: float, seed: int = 0) -> dict:
    """Steps/s of one batched MJX step function over `n` envs (random actions sent from the
    host each step, as the vector env does), after its compilation."""
    from robot_rl.sim.mjx.env import MjxEnv
    env = MjxEnv(task)
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    state, _ = env.reset(range(seed, seed + n))
    reset_s = time.perf_counter() - t
    act = lambda: rng.uniform(-1, 1, (n, *env.action_space.shape)).astype(np.float32)  # noqa: E731
    t = time.perf_counter()
    out = env.step(state, act())
    out.success.block_until_ready()
    compile_s = time.perf_counter() - t  # includes one step
    t = time.perf_counter()
    out = env.step(out.state, act())
    out.success.block_until_ready()
    one = time.perf_counter() - t
    steps = max(1, min(50, math.ceil(min_seconds / one)))  # episodes are 50 steps: never more
    t = time.perf_counter()
    for _ in range(steps):
        out = env.step(out.state, act())
    out.success.block_until_ready()
    elapsed = time.perf_counter() - t
    env.close()
    return {"steps_per_s": n * steps / elapsed, "compile_s": compile_s, "host_reset_s": reset_s,
            "batched_steps_timed": steps}


def _cpu_rate(task: str, steps: int) -> float:
    from robot_rl.bench.sim import _env_rate
    from robot_rl.sim.envs import make_sim_env
    env = make_sim_env(task)
    rate = _env_rate(env, steps)
    env.close()
    return rate


def run(batch_sizes=(1, 64, 1024), task: str = "PandaPickCube", cpu_steps: int = 500,
        min_seconds: float = 20.0, json_path: str | None = None) -> dict:
    import jax
    from tqdm import tqdm
    cpu = [_cpu_rate(task, cpu_steps)]
    mjx: dict[str, dict] = {}
    for n in tqdm(batch_sizes, desc="mjx batch sizes", unit="size"):
        mjx[str(n)] = r = _mjx_rate(task, n, min_seconds)
        tqdm.write(f"MJX {n} envs: {r['steps_per_s']:.1f} env steps/s (compile {r['compile_s']:.0f} s)")
        cpu.append(_cpu_rate(task, cpu_steps))  # interleaved: the machine is shared and noisy
    cpu_rate = float(np.median(cpu))
    result = {
        "task": task,
        "jax_backend": jax.default_backend(),
        "dtype": "float64" if jax.config.jax_enable_x64 else "float32",
        "steps_per_s": {n: r["steps_per_s"] for n, r in mjx.items()},
        "cpu_mujoco_steps_per_s": cpu_rate,
        "cpu_mujoco_steps_per_s_samples": cpu,
        "ratio_vs_cpu_mujoco": {n: r["steps_per_s"] / cpu_rate for n, r in mjx.items()},
        "compile_s": {n: r["compile_s"] for n, r in mjx.items()},
        "host_reset_s": {n: r["host_reset_s"] for n, r in mjx.items()},
        "batched_steps_timed": {n: r["batched_steps_timed"] for n, r in mjx.items()},
    }
    print(f"env steps/s, {task} (10 Hz policy, 50 physics substeps per step, "
          f"JAX backend {result['jax_backend']}, {result['dtype']})")
    print(f"{'':<28} {'steps/s':>10} {'vs CPU MuJoCo':>14} {'compile s':>10}")
    print(f"{'CPU MuJoCo env (1 env)':<28} {cpu_rate:>10.1f} {'1.00x':>14}")
    for n, r in mjx.items():
        print(f"{'MJX, ' + n + ' envs':<28} {r['steps_per_s']:>10.1f} "
              f"{r['steps_per_s'] / cpu_rate:>13.3f}x {r['compile_s']:>10.1f}")
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
    return result
