"""`robot-rl bench robot`: the per-step overhead of the real-robot `RobotEnv` (everything in
`step` except the rate sleep: safety checks, target streaming into franky's 1 kHz loop, state,
gripper and two camera frames, task evaluation) against franky-sim on loopback, with two
cameras: OpenCV on 640x480 video files, RealSense recordings played back through the real
pipeline + rs.align, or one of each. Target: p99 <= 10 ms at 10 Hz.

    run("bench_robot.json")    # starts its own franky-sim
    run(host="127.0.0.1")      # or a running one / a real robot
"""
from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from robot_rl.hardware.hal import WallClock

RESET_Q = [0.0, -0.1113, 0.0, -2.2754, 0.0, 2.1655, 0.7853]


class _TimedClock(WallClock):
    """WallClock that remembers how long the last wait slept."""

    def __init__(self):
        super().__init__()
        self.last_wait = 0.0

    def wait(self, period_s: float) -> None:
        t = time.perf_counter()
        super().wait(period_s)
        self.last_wait = time.perf_counter() - t


def _video(path: Path, w: int = 640, h: int = 480, n: int = 60, fps: float = 30.0) -> str:
    import cv2
    rng = np.random.default_rng(0)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    for i in range(n):
        out.write(np.roll(base, 8 * i, axis=1))
    out.release()
    return str(path)


def _realsense_recording(path: Path, serial: str, w: int = 640, h: int = 480,
                         n: int = 30) -> str:
    from robot_rl.hardware.cameras import write_realsense_recording
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    depth = (500 + rng.integers(0, 1000, (h, w))).astype(np.uint16)
    return write_realsense_recording(path, [np.roll(img, 4 * k, axis=1) for k in range(n)],
                                     [depth] * n, serial, fx_color=600.0, fx_depth=600.0,
                                     baseline=0.015)


def _camera_specs(kind: str, tmp: Path, image_size: int) -> list[dict]:
    size = [image_size, image_size]
    crop = [80, 0, 480, 480]  # centre square of 640x480, as for a real wrist camera
    def opencv(name: str, i: int) -> dict:
        return {"type": "opencv", "name": name, "size": size, "crop": crop,
                "source": _video(tmp / f"{name}.avi", n=60 + i)}

    def realsense(name: str, serial: str) -> dict:
        return {"type": "realsense", "name": name, "size": size, "crop": crop, "serial": serial,
                "playback": _realsense_recording(tmp / f"{name}.db3", serial)}

    if kind == "opencv":
        return [opencv("front", 0), opencv("wrist", 1)]
    if kind == "realsense":
        return [realsense("front", "000000000001"), realsense("wrist", "000000000002")]
    if kind == "mixed":
        return [opencv("front", 0), realsense("wrist", "000000000002")]
    raise ValueError(f"cameras must be opencv | realsense | mixed, got {kind!r}")


def _pct(xs, q) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q))


def run(json_path: str | None = None, steps: int = 300, host: str | None = None,
        cameras: str = "opencv", control_hz: float = 10.0, image_size: int = 128,
        seed: int = 0, progress: bool = True) -> dict:
    """Measure RobotEnv.step overhead (excluding the rate sleep) on franky-sim with two
    cameras; returns (and writes to `json_path`) step_overhead_p50_ms / _p99_ms and more."""
    from robot_rl.hardware.franka import FrankySim
    from robot_rl.hardware.franka_env import make_franka_env

    sim = None
    env = None
    with tempfile.TemporaryDirectory(prefix="bench_robot_") as tmpdir:
        try:
            if host is None:
                sim = FrankySim().start()
                host = sim.host
            specs = _camera_specs(cameras, Path(tmpdir), image_size)
            env = make_franka_env(host, task={"reset_q": RESET_Q, "max_episode_steps": 100},
                                  gripper=True, cameras=specs, control_hz=control_hz)
            robot_env = env.unwrapped
            clock = robot_env.clock = _TimedClock()
            observe_t: list[float] = []
            inner_observe = robot_env.observe

            def timed_observe():
                t = time.perf_counter()
                obs = inner_observe()
                observe_t.append(time.perf_counter() - t)
                return obs
            robot_env.observe = timed_observe
            rng = np.random.default_rng(seed)
            t = time.perf_counter()
            env.reset(seed=seed)
            reset_s = [time.perf_counter() - t]
            overhead, period, truncations = [], [], 0
            observe_t.clear()
            last_start = None
            for i in range(steps):
                a = rng.uniform(-0.5, 0.5, env.action_space.shape)
                t0 = time.perf_counter()
                if last_start is not None:
                    period.append(t0 - last_start)
                last_start = t0
                _, _, term, trunc, info = env.step(a)
                overhead.append(time.perf_counter() - t0 - clock.last_wait)
                if info.get("connection_lost"):
                    raise RuntimeError(f"connection lost during the benchmark: {info['error']}")
                if term or trunc:
                    truncations += 1
                    t = time.perf_counter()
                    env.reset(seed=seed + i)
                    reset_s.append(time.perf_counter() - t)
                    last_start = None
                    clock._next = None
                if progress and (i + 1) % 50 == 0:
                    print(f"  bench robot: {i + 1}/{steps} steps, overhead p50 "
                          f"{_pct(overhead, 50):.2f} ms p99 {_pct(overhead, 99):.2f} ms",
                          flush=True)
            obs_steps = observe_t[-len(overhead):]
            result = {
                "step_overhead_p50_ms": _pct(overhead, 50),
                "step_overhead_p99_ms": _pct(overhead, 99),
                "step_overhead_mean_ms": float(np.mean(overhead) * 1e3),
                "step_overhead_max_ms": float(np.max(overhead) * 1e3),
                "observe_p50_ms": _pct(obs_steps, 50), "observe_p99_ms": _pct(obs_steps, 99),
                "step_period_p50_ms": _pct(period, 50) if period else math.nan,
                "step_period_p99_ms": _pct(period, 99) if period else math.nan,
                "reset_mean_s": float(np.mean(reset_s)), "resets": len(reset_s),
                "steps": steps, "control_hz": control_hz, "cameras": cameras,
                "camera_specs": [{k: v for k, v in s.items() if k not in ("source", "playback")}
                                 for s in specs],
                "image_size": image_size, "host": host,
                "robot": "franky-sim (MuJoCo FR3, loopback)" if sim is not None else host,
                "target_p99_ms": 10.0,
            }
            result["meets_target"] = result["step_overhead_p99_ms"] <= 10.0
        finally:
            if env is not None:
                env.close()
            if sim is not None:
                sim.stop()
    if progress:
        print(f"bench robot ({cameras} cameras, {steps} steps at {control_hz:g} Hz): "
              f"step overhead p50 {result['step_overhead_p50_ms']:.2f} ms, "
              f"p99 {result['step_overhead_p99_ms']:.2f} ms (target <= 10 ms: "
              f"{'met' if result['meets_target'] else 'MISSED'}); observation p99 "
              f"{result['observe_p99_ms']:.2f} ms; step period p99 "
              f"{result['step_period_p99_ms']:.1f} ms")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2))
    return result
