"""`robot-rl offline CONFIG.yaml [key=value ...]` (Cal-QL / CQL / IQL critic) and
`robot-rl bc CONFIG.yaml [key=value ...]` (behaviour cloning), both on a LeRobotDataset;
each prints one JSON summary line. The work is in `robot_rl.offline_train`, imported only
when a command runs. Registered on the main parser with `add_cli(subparsers)`.
"""
from __future__ import annotations

import json


def _cmd_offline(args) -> int:
    from robot_rl import config as cfgmod
    from robot_rl.offline_train import OfflineRunConfig, run_offline
    cfg = cfgmod.load(OfflineRunConfig, args.config, args.overrides)
    print(json.dumps(run_offline(cfg, progress=not args.no_progress)))
    return 0


def _cmd_bc(args) -> int:
    from robot_rl import config as cfgmod
    from robot_rl.offline_train import BCRunConfig, run_bc
    cfg = cfgmod.load(BCRunConfig, args.config, args.overrides)
    print(json.dumps(run_bc(cfg, progress=not args.no_progress)))
    return 0


def add_cli(sub) -> None:
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
