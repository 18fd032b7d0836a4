"""Offline training runs on a LeRobotDataset: a critic (Cal-QL / CQL / IQL) or a BC policy.

Each writes `runs/<name>/`: `config.yaml` (resolved), `critic.pt` / `policy.pt`,
`metrics.jsonl` (+ TensorBoard) and returns a summary dict. Configs are typed
(`OfflineRunConfig`, `BCRunConfig`): a wrong key is an error naming it. The commands are
`robot-rl offline` and `robot-rl bc` (`robot_rl/offline_cli.py`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from robot_rl import config as cfgmod
from robot_rl.agents.bc import BCConfig
from robot_rl.agents.offline import OfflineConfig


@dataclass
class OfflineDataConfig:
    dataset: str = ""                       # LeRobotDataset directory (required)
    obs_keys: Optional[List[str]] = None    # default: every vector observation
    task_embedding: Optional[str] = None    # onehot | minilm | sentence-transformers:<model>


@dataclass
class OfflineRunConfig:
    name: str = "offline"
    seed: int = 0
    runs_dir: str = "runs"
    torch_threads: int = 1
    data: OfflineDataConfig = field(default_factory=OfflineDataConfig)
    agent: OfflineConfig = field(default_factory=OfflineConfig)


@dataclass
class BCRunConfig:
    name: str = "bc"
    seed: int = 0
    runs_dir: str = "runs"
    torch_threads: int = 1
    data: OfflineDataConfig = field(default_factory=OfflineDataConfig)
    agent: BCConfig = field(default_factory=BCConfig)


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
    learner = make_offline_learner(data.obs_spec, data.action_dim, cfg.agent, seed=cfg.seed)
    t0 = time.perf_counter()
    metrics = learner.fit(data, seed=cfg.seed, progress=progress, log=log)
    learner.save(run_dir / "critic.pt")
    return {"run_dir": str(run_dir), "algo": cfg.agent.algo, "steps": learner.steps,
            "transitions": len(data), "episodes": data.num_episodes,
            "wall_clock_s": time.perf_counter() - t0, **metrics, **learner.calibration_report(data)}


def run_bc(cfg: BCRunConfig, progress: bool = True) -> dict:
    from robot_rl.agents.bc import BCAgent
    run_dir, data, log = _prepare(cfg, 0.0, "policy.pt", progress)
    agent = BCAgent(data.obs_spec, data.action_dim, cfg.agent, seed=cfg.seed)
    t0 = time.perf_counter()
    metrics = agent.fit(data, seed=cfg.seed, progress=progress, log=log)
    agent.save(run_dir / "policy.pt")
    return {"run_dir": str(run_dir), "transitions": len(data), "episodes": data.num_episodes,
            "wall_clock_s": time.perf_counter() - t0, **metrics}

