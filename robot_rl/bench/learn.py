"""`robot-rl bench learn`: sample efficiency, learner throughput vs the matmul ceiling, and
replay memory, each measured in the same run.

- state:   config/pick_cube.yaml for K seeds; env steps until >= 90% success on 100 held-out
           seeds (evaluated every 1000 steps), wall-clock, final success.
- vision:  config/pick_cube_vision.yaml, one seed; env steps until >= 80%.
- throughput: critic updates/s of the default agent (config/pick_cube.yaml: 2 critics, batch
           256, compiled update) and that rate's FLOP/s as a fraction of a plain GEMM's FLOP/s
           on the same device at the same float32 matmul precision (`train.matmul_precision`;
           the faster of two measurements, just before and just after); then the same for the
           eager update. The device is `train.device` (`--device` sets it: auto picks CUDA when
           present), for the training runs below too.
- replay:  bytes per stored image transition / raw uint8 bytes of one observation's frames.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def _sync(device) -> None:
    """CUDA runs queued kernels asynchronously: wait for them, so a clock times the work."""
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_flops_per_s(device="cpu", seconds: float = 2.0) -> float:
    """FLOP/s of square fp32 matmuls on `device`, at the float32 matmul precision torch is set
    to (TF32 on CUDA only where that allows it). 512 fills these CPU cores; a GPU needs 4096."""
    import torch
    device = torch.device(device)
    n = 4096 if device.type == "cuda" else 512
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(5):
        a @ b
    _sync(device)
    reps, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        for _ in range(10 if device.type == "cuda" else 1):  # queue work between the clock reads
            a @ b
            reps += 1
        _sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def critic_update_flops(agent, batch: int) -> float:
    """Matmul FLOPs of one critic update of the default agent, including its share of the actor
    step that follows every `actor_update_every` critic updates. Trained nets cost ~3x their
    forward (forward + input and weight gradients); the target critics and the next-action actor
    forward only; the actor step's critic pass (weights detached) forward + input gradient ~2x."""
    def mlp(dims):
        return sum(2 * batch * i * o for i, o in zip(dims[:-1], dims[1:]))
    cfg, feat, act = agent.config, agent.encoder.out_dim, agent.arm_dim
    critic = mlp([feat + act, *cfg.hidden_dims, 1])
    actor = mlp([feat, *(cfg.actor_hidden_dims or cfg.hidden_dims), 2 * act])
    m = cfg.critic_subsample or cfg.num_critics
    critic_step = 3 * cfg.num_critics * critic + m * critic + actor
    actor_step = 3 * actor + 2 * cfg.num_critics * critic
    return critic_step + actor_step / agent.actor_update_every


def throughput(seconds: float = 20.0, threads: int = 2, overrides: list[str] = ()) -> dict:
    import gymnasium as gym
    import torch

    import robot_rl  # noqa: F401
    from robot_rl.agents.sac import SACAgent
    from robot_rl.data.buffer import ReplayBuffer, place_frames
    from robot_rl.run_config import resolve_device, set_matmul_precision
    from robot_rl.train import load_config
    torch.set_num_threads(threads)
    cfg = load_config(str(CONFIG_DIR / "pick_cube.yaml"), list(overrides))
    device = resolve_device(cfg.train.device)
    set_matmul_precision(cfg.train.matmul_precision)  # the GEMM ceiling runs at it too
    env = gym.make(cfg.env.id)
    agent = SACAgent(env.observation_space, env.action_space.shape[0], cfg.agent, device=device)
    buf = ReplayBuffer(5000, env.observation_space, env.action_space.shape[0])
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    for _ in range(1000):
        a = env.action_space.sample()
        nxt, r, term, trunc, _ = env.step(a)
        buf.insert(obs, a, r, nxt, term, trunc)
        obs = nxt if not (term or trunc) else env.reset()[0]
    on_device = place_frames([buf], device, cfg.train.replay_on_device)  # as training places it
    sample = buf.sample_fn(cfg.agent.batch_size, rng, device, n_step=cfg.agent.n_step)
    gemm_before = gemm_flops_per_s(device)
    utd = cfg.agent.utd_ratio  # updates per call, as in training
    for _ in range(5):  # warm-up (and compilation)
        agent.update_many(sample, utd)
    _sync(device)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        agent.update_many(sample, utd)
        n += utd
    _sync(device)
    rate = n / (time.perf_counter() - t)
    # the faster of two GEMM measurements around the updates: the machine is shared, and a
    # momentarily slow GEMM would flatter the fraction
    ceiling = max(gemm_before, gemm_flops_per_s(device))
    flops = critic_update_flops(agent, cfg.agent.batch_size)
    return {"critic_updates_per_s": rate, "gemm_flops_per_s": ceiling,
            "flops_per_critic_update": flops, "matmul_ceiling_fraction": rate * flops / ceiling,
            "ceiling_updates_per_s": ceiling / flops, "num_critics": cfg.agent.num_critics,
            "compiled": cfg.agent.compile, "device": _device_name(device),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "replay_on_device": on_device, "batch_size": cfg.agent.batch_size, "threads": threads}


def _device_name(device) -> str:
    import torch
    return f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)


def replay_ratio() -> float:
    from robot_rl.data.buffer import ReplayBuffer
    spec = {"state": ((14,), np.float32), "front": ((128, 128, 3), np.uint8),
            "wrist": ((128, 128, 3), np.uint8)}
    buf = ReplayBuffer(2000, spec, 4)
    rng = np.random.default_rng(0)
    for ep in range(40):
        for t in range(50):
            o = {"state": rng.normal(size=14).astype(np.float32),
                 "front": rng.integers(0, 255, (128, 128, 3), dtype=np.uint8),
                 "wrist": rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)}
            buf.insert(o, np.zeros(4), 0.0, o, False, t == 49)
    return buf.bytes_per_transition() / (2 * 128 * 128 * 3)


def sample_efficiency(config: str, seeds: list[int], threshold: float, overrides: list[str],
                      runs_dir: str) -> list[dict]:
    from robot_rl.metrics import read_metrics
    from robot_rl.train import Trainer, load_config
    out = []
    for seed in seeds:
        cfg = load_config(str(CONFIG_DIR / config),
                          [f"seed={seed}", f"name={Path(config).stem}_seed{seed}",
                           f"runs_dir={runs_dir}", "train.eval_episodes=100",
                           f"train.stop_at_success={threshold}", *overrides])
        res = Trainer(cfg).run()
        out.append({"seed": seed, **reached(read_metrics(res["run_dir"], "eval"), threshold,
                                            res["wall_clock_s"])})
        print(json.dumps(out[-1]))
    return out


def reached(evals: list[dict], threshold: float, wall_clock_s: float | None) -> dict:
    """A run's evaluations summed up: env steps and wall-clock of the first at >= `threshold`
    (steps None and the run's `wall_clock_s` if none was), the last success, the curve."""
    hit = next((e for e in evals if e["success_rate"] >= threshold), None)
    return {"steps": hit["step"] if hit else None,
            "wall_clock_s": hit["wall_clock_s"] if hit else wall_clock_s,
            "final_success": evals[-1]["success_rate"] if evals else None,
            "curve": [(e["step"], e["success_rate"]) for e in evals]}


def run(tasks: list[str], seeds: int = 3, json_path: str | None = None,
        runs_dir: str = "runs/bench", overrides: list[str] = ()) -> dict:
    env_ids = [o.split("=", 1)[1] for o in overrides if o.startswith("env.id=")]
    result: dict = {"env_id": env_ids[-1] if env_ids else "robot_rl/PandaPickCube-v0"}
    if "throughput" in tasks:
        # the agent and where it computes (train.device, train.matmul_precision); the env stays PickCube
        agent_overrides = [o for o in overrides if o.startswith(("agent.", "train."))]
        result.update(throughput(overrides=agent_overrides))
        eager = throughput(overrides=[*agent_overrides, "agent.compile=false"])
        result.update({f"eager_{k}": eager[k] for k in ("critic_updates_per_s", "matmul_ceiling_fraction")})
        print(f"{result['device']}: critic updates/s {result['critic_updates_per_s']:.1f} "
              f"({'compiled' if result['compiled'] else 'eager'}, replay frames on "
              f"{'the device' if result['replay_on_device'] else 'the host'}; ceiling {result['ceiling_updates_per_s']:.1f}/s "
              f"from GEMM {result['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s): "
              f"{result['matmul_ceiling_fraction']:.0%} of the matmul ceiling; "
              f"eager {eager['critic_updates_per_s']:.1f}/s: {eager['matmul_ceiling_fraction']:.0%}")
    if "replay" in tasks:
        result["replay_bytes_ratio"] = replay_ratio()
        print(f"replay bytes per image transition / raw frame bytes: {result['replay_bytes_ratio']:.3f}")
    if "state" in tasks:
        runs = sample_efficiency("pick_cube.yaml", list(range(seeds)), 0.9, list(overrides), runs_dir)
        steps = [r["steps"] for r in runs]
        reached = sorted(s for s in steps if s is not None)
        result.update({"steps_to_90": steps,
                       "median_steps_to_90": float(np.median([s if s is not None else np.inf
                                                             for s in steps])),
                       "wall_clock_s": [r["wall_clock_s"] for r in runs],
                       "final_success": [r["final_success"] for r in runs],
                       "state_curves": [r["curve"] for r in runs]})
        print(f"{result['env_id']} state: steps to 90% {steps} (median {result['median_steps_to_90']}), "
              f"wall-clock {[round(w) for w in result['wall_clock_s']]} s, reached {len(reached)}/{seeds}")
    if "vision" in tasks:
        runs = sample_efficiency("pick_cube_vision.yaml", [0], 0.8, list(overrides), runs_dir)
        result.update({"vision_steps_to_80": runs[0]["steps"],
                       "vision_wall_clock_s": runs[0]["wall_clock_s"],
                       "vision_final_success": runs[0]["final_success"]})
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
    return result
