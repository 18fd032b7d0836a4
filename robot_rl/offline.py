"""Offline training on a LeRobotDataset: `robot-rl offline CONFIG.yaml [key=value ...]` trains a
critic (Cal-QL / CQL / IQL), `robot-rl bc CONFIG.yaml [key=value ...]` a behaviour-cloning policy.

This module is the runtime of both: their run configs, the two training runs and the command
lines. The algorithms are in robot_rl/agents/offline.py and robot_rl/agents/bc.py. Each run
writes `runs/<name>/`: `config.yaml` (resolved), `critic.pt` / `policy.pt`, `metrics.jsonl`
(+ TensorBoard) and returns a summary dict, which the command prints as one JSON line. Configs
are typed (`OfflineRunConfig`, `BCRunConfig`): a wrong key is an error naming it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from robot_rl import config as cfgmod
from robot_rl.run_config import BCRunConfig, OfflineRunConfig, resolve_device


def _prepare(cfg, gamma: float, artifact: str, progress: bool):
    import torch

    from robot_rl.agents.offline import load_offline_data
    from robot_rl.metrics import MetricsLogger
    if not cfg.data.dataset:
        raise cfgmod.ConfigError("data.dataset is required (a LeRobotDataset directory)")
    run_dir = Path(cfg.runs_dir) / cfg.name
    if (run_dir / artifact).exists():
        raise FileExistsError(f"{run_dir / artifact} exists; pick another name (name=...)")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfgmod.save(cfg, run_dir / "config.yaml")
    torch.set_num_threads(cfg.torch_threads)
    data = load_offline_data(cfg.data.dataset, cfg.data.obs_keys, gamma, cfg.data.task_embedding,
                             progress=progress)
    logger = MetricsLogger(run_dir)
    return run_dir, data, (lambda step, **m: logger.log("train", step, **m))


def run_offline(cfg: OfflineRunConfig, progress: bool = True) -> dict:
    from robot_rl.agents.offline import make_offline_learner
    run_dir, data, log = _prepare(cfg, cfg.agent.gamma, "critic.pt", progress)
    learner = make_offline_learner(data.obs_spec, data.action_dim, cfg.agent, seed=cfg.seed,
                                   device=resolve_device(cfg.device))
    t0 = time.perf_counter()
    metrics = learner.fit(data, seed=cfg.seed, progress=progress, log=log)
    learner.save(run_dir / "critic.pt")
    return {"run_dir": str(run_dir), "algo": cfg.agent.algo, "steps": learner.steps,
            "transitions": len(data), "episodes": data.num_episodes,
            "wall_clock_s": time.perf_counter() - t0, **metrics, **learner.calibration_report(data)}


def run_bc(cfg: BCRunConfig, progress: bool = True) -> dict:
    from robot_rl.agents.bc import BCAgent
    run_dir, data, log = _prepare(cfg, 0.0, "policy.pt", progress)
    agent = BCAgent(data.obs_spec, data.action_dim, cfg.agent, seed=cfg.seed,
                    device=resolve_device(cfg.device))
    t0 = time.perf_counter()
    metrics = agent.fit(data, seed=cfg.seed, progress=progress, log=log)
    agent.save(run_dir / "policy.pt")
    return {"run_dir": str(run_dir), "transitions": len(data), "episodes": data.num_episodes,
            "wall_clock_s": time.perf_counter() - t0, **metrics}


# ---- command line ------------------------------------------------------------------------
def _cmd_offline(args) -> int:
    cfg = cfgmod.load(OfflineRunConfig, args.config, args.overrides)
    print(json.dumps(run_offline(cfg, progress=not args.no_progress)))
    return 0


def _cmd_bc(args) -> int:
    cfg = cfgmod.load(BCRunConfig, args.config, args.overrides)
    print(json.dumps(run_bc(cfg, progress=not args.no_progress)))
    return 0


def add_cli(sub) -> None:
    """Register `offline` and `bc` on the `robot-rl` subparsers."""
    o = sub.add_parser("offline", help="train an offline critic (Cal-QL / CQL / IQL) on a LeRobotDataset")
    o.add_argument("config", help="YAML config, e.g. config/offline_pick_cube.yaml")
    o.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. agent.steps=2000")
    o.add_argument("--no-progress", action="store_true")
    o.set_defaults(func=_cmd_offline)
    b = sub.add_parser("bc", help="behaviour cloning on a LeRobotDataset")
    b.add_argument("config", help="YAML config, e.g. config/bc_pick_cube.yaml")
    b.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. agent.steps=2000")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=_cmd_bc)
