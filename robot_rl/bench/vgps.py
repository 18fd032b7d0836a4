"""`robot-rl bench vgps`: does a Cal-QL critic steer a mediocre BC policy (V-GPS)?

Per seed, on robot_rl/PandaPickCube-v0 (state observations):

1. mixed-quality demos from the scripted expert: Gaussian action noise on every step and a
   fraction of botched episodes (the gripper never closes), written as a LeRobotDataset;
2. a Gaussian BC policy trained on all of them (it copies the good and the bad);
3. a Cal-QL critic trained on the same data (sparse success reward, MC-return calibration);
4. 100 evaluation episodes on held-out seeds (true env success) of
   - ``base``: the BC policy, one sampled action per step (the distribution V-GPS draws from),
   - ``base_deterministic``: the BC policy's mean action,
   - ``vgps``: K candidates from the BC policy, argmax of the Cal-QL Q,
   - ``random_q``: the same with an untrained critic of the same architecture (same input
     normalization), i.e. selection without knowledge,
   - ``k1``: V-GPS with K=1 (must equal ``base``: same policy, same sampling seed).

Every evaluation re-seeds the BC policy's sampling generator with the same seed, so ``base``
and ``k1`` see identical random draws.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

ENV_ID = "robot_rl/PandaPickCube-v0"

# Chosen so the BC policy is mediocre (see README): noisy moves, and half of the episodes
# botched (the gripper never closes, or closes in the air above the cube) -> BC's gripper
# command is bimodal exactly where it matters. Demos are cached in `workdir` by these
# settings and the seed; delete the directory after changing the scripted expert.
DEFAULTS: Dict[str, Any] = dict(
    demo_episodes=200, noise=0.4, fail_prob=0.5,
    bc_steps=3000, q_steps=4000, num_samples=10, episodes=100,
    bc_hidden=(256, 256), q_hidden=(128, 128), cql_n_actions=4,
)


class _Deterministic:
    """``train.evaluate`` calls ``act(obs, deterministic=True)``; a Policy's ``act`` takes obs only."""

    def __init__(self, policy):
        self.policy = policy

    def act(self, obs, deterministic: bool = True):
        return self.policy.act(obs)


def run_seed(seed: int, workdir: Path, progress: bool = True, **overrides) -> Dict[str, Any]:
    import gymnasium as gym
    import torch

    import robot_rl  # noqa: F401  (registers the env ids)
    from robot_rl.agents.bc import BCAgent, BCConfig
    from robot_rl.agents.offline import CalQL, OfflineConfig, load_offline_data
    from robot_rl.demos import collect_scripted_demos
    from robot_rl.policies.bc import BCPolicy
    from robot_rl.policies.vgps import ValueGuidedPolicy
    from robot_rl.train import evaluate

    p = {**DEFAULTS, **overrides}
    torch.set_num_threads(1)  # small nets: one thread is faster and fair on a shared machine
    times: Dict[str, float] = {}
    t0 = time.perf_counter()
    demo_dir = workdir / (f"demos_s{seed}_n{p['demo_episodes']}_noise{p['noise']}_fail{p['fail_prob']}")
    if not (demo_dir / "meta" / "info.json").exists():
        collect_scripted_demos(ENV_ID, p["demo_episodes"], str(demo_dir), seed=100_000 * (seed + 1),
                               noise=p["noise"], fail_prob=p["fail_prob"])
    data = load_offline_data(demo_dir, gamma=0.98, progress=progress)
    demo_success = float(np.mean([data.mc_return[data.episode == e][0] > 0
                                  for e in np.unique(data.episode)]))
    times["demos_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    bc = BCAgent(data.obs_spec, data.action_dim, BCConfig(hidden_dims=p["bc_hidden"], steps=p["bc_steps"]),
                 seed=seed)
    bc.fit(data, seed=seed, progress=progress)
    times["bc_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    qcfg = OfflineConfig(algo="calql", hidden_dims=p["q_hidden"], actor_hidden_dims=p["q_hidden"],
                         steps=p["q_steps"], cql_n_actions=p["cql_n_actions"])
    critic = CalQL(data.obs_spec, data.action_dim, qcfg, seed=seed)
    critic.fit(data, seed=seed, progress=progress)
    calib = critic.calibration_report(data)
    random_critic = CalQL(data.obs_spec, data.action_dim, qcfg, seed=seed + 10_000)
    random_critic.set_obs_normalization(data.obs)  # untrained weights, same inputs
    times["calql_s"] = time.perf_counter() - t0

    env = gym.make(ENV_ID)
    eval_seed = 5_000_000 + 10_000 * seed  # never used for demos
    k = p["num_samples"]
    variants = {
        "base": BCPolicy(bc),
        "base_deterministic": BCPolicy(bc, deterministic=True),
        "vgps": ValueGuidedPolicy(BCPolicy(bc), critic, num_samples=k),
        "random_q": ValueGuidedPolicy(BCPolicy(bc), random_critic, num_samples=k),
        "k1": ValueGuidedPolicy(BCPolicy(bc), critic, num_samples=1),
    }
    out: Dict[str, Any] = {"seed": seed, "demo_success": demo_success, "transitions": len(data),
                           "calibration": calib}
    for name, policy in variants.items():
        t0 = time.perf_counter()
        bc.act_generator.manual_seed(eval_seed)  # identical draws for every variant
        res = evaluate(_Deterministic(policy), env, p["episodes"], eval_seed, progress=progress)
        out[f"{name}_success"] = res["success_rate"]
        out[f"{name}_length"] = res["length"]
        times[f"eval_{name}_s"] = time.perf_counter() - t0
    env.close()
    out["times"] = times
    return out


def run(seeds: int = 3, json_path: Optional[str] = None, workdir: str = "runs/bench_vgps",
        progress: bool = True, **overrides) -> Dict[str, Any]:
    t_start = time.perf_counter()
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    per_seed = []
    for s in range(seeds):
        r = run_seed(s, wd, progress=progress, **overrides)
        per_seed.append(r)
        print(f"seed {s}: demos {r['demo_success']:.2f} success | base {r['base_success']:.2f}  "
              f"base(mean) {r['base_deterministic_success']:.2f}  V-GPS {r['vgps_success']:.2f}  "
              f"random Q {r['random_q_success']:.2f}  K=1 {r['k1_success']:.2f}", flush=True)
    keys = ["base", "base_deterministic", "vgps", "random_q", "k1"]
    result: Dict[str, Any] = {f"{k}_success": [r[f"{k}_success"] for r in per_seed] for k in keys}
    gain = [r["vgps_success"] - r["base_success"] for r in per_seed]
    result.update({
        "env": ENV_ID, "seeds": seeds, "settings": {**DEFAULTS, **overrides},
        "demo_success": [r["demo_success"] for r in per_seed],
        "vgps_gain_points": [100 * g for g in gain],
        "median_vgps_gain_points": float(100 * np.median(gain)),
        "median_random_q_gain_points": float(100 * np.median(
            [r["random_q_success"] - r["base_success"] for r in per_seed])),
        "k1_equals_base": all(r["k1_success"] == r["base_success"] for r in per_seed),
        "target_gain_points": 15.0,
        "per_seed": per_seed,
        "wall_clock_s": time.perf_counter() - t_start,
    })
    print(f"median V-GPS gain over base BC: {result['median_vgps_gain_points']:+.1f} points (target >= +15); "
          f"random Q: {result['median_random_q_gain_points']:+.1f}; K=1 equals base: {result['k1_equals_base']}; "
          f"{result['wall_clock_s']:.0f} s")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2))
    return result
