"""ROS 2 integration: the policy node (`node.py`), the ROS 2 HAL backend (`hal.py`), bag
recording / bag -> LeRobotDataset (`bags.py`) and message conversions + a Cyclone DDS peer
(`messages.py`).

Nothing here imports rclpy at import time. Commands that need rclpy (`run`, `trigger`,
`record`) re-run themselves (`python -m robot_rl.cli ros2 ...`) under the ROS 2 Python when the
current one lacks rclpy: $ROBOT_RL_ROS2_PYTHON, else `<repo>/.venv-ros2/bin/python` (made by
scripts/setup_ros2.sh: the PyPI Kilted rclpy wheels layered over the project venv).

    robot-rl ros2 run --policy RUN_DIR [--config ros2.yaml] [--autostart] [--localhost-only] [--ros-args ...]
    robot-rl ros2 trigger start|stop|reset [--node /robot_rl_policy]
    robot-rl ros2 record OUT_BAG [--topics /a /b ...] [--duration S]
    robot-rl ros2 bag-to-lerobot BAG OUT (--policy RUN_DIR | --env-config CFG) [--config ros2.yaml]

The gymnasium id `robot_rl/ROS2Arm-v0` (`hal.make_ros2_env`) is registered with every other id
in robot_rl/registry.py, so a run config can train on a ROS 2 arm with
`env: {id: "robot_rl/ROS2Arm-v0", kwargs: {...}}`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable, NamedTuple

ENV_ID = "robot_rl/ROS2Arm-v0"  # make_ros2_env's id (registered in robot_rl/registry.py)
ROS2_PYTHON_ENV = "ROBOT_RL_ROS2_PYTHON"


class Runtime(NamedTuple):
    """The training runtime's functions that the ROS 2 commands use. The CLI hands them in:
    hardware sits below the runtime in the layers (.importlinter) and does not import it."""
    load_config: Callable   # (path) -> RunConfig
    make_env: Callable      # (cfg, teleop=False) -> env
    load_policy: Callable   # (run_dir) -> (agent, cfg) of the latest good checkpoint


# ------------------------------------------------------------------ which Python has rclpy


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]   # <repo>/hardware/ros2/__init__.py


def ros2_python() -> str | None:
    """The interpreter to run rclpy code with: $ROBOT_RL_ROS2_PYTHON, else
    <repo>/.venv-ros2/bin/python, else ./.venv-ros2/bin/python; None if none exists."""
    env = os.environ.get(ROS2_PYTHON_ENV)
    if env:
        return env
    for base in (repo_root(), Path.cwd()):
        p = base / ".venv-ros2" / "bin" / "python"
        if p.exists():
            return str(p)
    return None


def _have_rclpy() -> bool:
    try:
        import rclpy  # noqa: F401
    except ImportError:
        return False
    return True


def _ensure_rclpy(argv: list[str]) -> None:
    """Return if rclpy imports here; else exec `python -m robot_rl.cli ros2 ARGV` under the
    ROS 2 Python (never returns), or exit with instructions."""
    if _have_rclpy():
        return
    py = ros2_python()
    if py is None or os.environ.get("_ROBOT_RL_ROS2_REEXEC"):
        from robot_rl.hardware.ros2.hal import ROS_MISSING
        raise SystemExit("error: " + ROS_MISSING.format(exe=sys.executable))
    os.environ["_ROBOT_RL_ROS2_REEXEC"] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(py, [py, "-m", "robot_rl.cli", "ros2", *argv])


# ------------------------------------------------------------------ commands


LOCALHOST_ONLY = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",  # Iron and later
                  "CYCLONEDDS_URI": Path(__file__).with_name("cyclonedds_localhost.xml").as_uri()}


def _localhost_only() -> None:
    """Keep the node's DDS traffic on this machine (set before rclpy starts, inherited by a
    re-executed ROS 2 Python): Fast DDS through ROS's discovery range, Cyclone DDS through
    its config file. Humble predates the range: there, ROS_LOCALHOST_ONLY=1 does it."""
    for key, value in LOCALHOST_ONLY.items():
        os.environ.setdefault(key, value)
    print(f"DDS: localhost only ({', '.join(f'{k}={os.environ[k]}' for k in LOCALHOST_ONLY)})",
          flush=True)


def _cmd_run(args) -> int:
    if args.localhost_only:
        _localhost_only()
    _ensure_rclpy(["run", "--policy", args.policy,
                   *(["--config", args.config] if args.config else []),
                   *(["--rate", str(args.rate)] if args.rate else []),
                   *(["--autostart"] if args.autostart else []),
                   "--torch-threads", str(args.torch_threads), *_ros_args(args.ros_args)])
    from robot_rl.hardware.ros2.node import run
    overrides = {}
    if args.rate:
        overrides["rate_hz"] = float(args.rate)
    if args.autostart:
        overrides["autostart"] = True
    return run(args.policy, args.runtime, args.config, _ros_args(args.ros_args), overrides,
               torch_threads=args.torch_threads)


def _cmd_trigger(args) -> int:
    _ensure_rclpy(["trigger", args.service, "--node", args.node,
                   "--timeout", str(args.timeout)])
    from robot_rl.hardware.ros2.node import call_trigger
    try:
        ok, message = call_trigger(f"{args.node.rstrip('/')}/{args.service}", args.timeout)
    except TimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"success": ok, "message": message}))
    return 0 if ok else 1


def _cmd_record(args) -> int:
    _ensure_rclpy(["record", args.out, *(["--topics", *args.topics] if args.topics else []),
                   *(["--duration", str(args.duration)] if args.duration else []),
                   "--wait", str(args.wait),
                   *(["--ready-file", args.ready_file] if args.ready_file else []),
                   *_ros_args(args.ros_args)])
    from robot_rl.hardware.ros2.bags import record
    try:
        res = record(args.out, args.topics, args.duration, _ros_args(args.ros_args),
                     wait_topics=args.wait, ready_file=args.ready_file)
    except TimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(res))
    return 0


def spec_from_run_config(cfg, make_env):
    """`PolicySpec` of a run config. ROS 2 envs are read from their kwargs (no robot needed);
    others are built once with `make_env` (MuJoCo) and inspected."""
    import numpy as np

    from robot_rl.hardware.ros2.node import PolicySpec
    if cfg.env.id.split(":")[-1] == ENV_ID:
        from robot_rl.controllers.safety import SafetyBox
        from robot_rl.hardware.ros2.hal import ROS2Task
        from robot_rl.hardware.task import ActionConfig
        kw = dict(cfg.env.kwargs)
        task = dict(kw.get("task", {}))
        action = ActionConfig(**{k: tuple(v) if k == "dofs" else v
                                 for k, v in task.pop("action", {}).items()})
        safety = task.pop("safety", None)
        t = ROS2Task(action=action, safety=SafetyBox(**safety) if safety else None, **task)
        size = int(kw.get("image_size", 128))
        return PolicySpec(action=t.action, safety=t.safety, home_quat=np.array(t.home_quat),
                          name=t.name, instruction=t.instruction,
                          max_episode_steps=t.max_episode_steps,
                          cameras={n: (size, size, 3) for n in kw.get("cameras") or {}},
                          include_wrench=bool(kw.get("include_wrench", False)),
                          env_state_dim=6 if t.has_goal else None,
                          control_hz=float(kw.get("control_hz", 10.0)))
    env = make_env(cfg, teleop=False)
    try:
        return PolicySpec.from_env(env)
    finally:
        env.close()


def _cmd_bag_to_lerobot(args) -> int:
    from robot_rl.hardware.ros2.bags import bag_to_lerobot
    from robot_rl.hardware.ros2.node import load_param_file
    cfg_path = (str(Path(args.policy) / "config.yaml") if args.policy else args.env_config)
    spec = spec_from_run_config(args.runtime.load_config(cfg_path), args.runtime.make_env)
    params = load_param_file(args.config) if args.config else {}
    res = bag_to_lerobot(args.bag, args.out, spec, params, namespace=args.namespace,
                         fps=args.fps, task=args.task, gap=args.gap)
    print(json.dumps(res))
    return 0


def _ros_args(extra: list[str]) -> list[str]:
    """argparse drops the `--ros-args` flag itself; rclpy needs it back."""
    return ["--ros-args", *extra] if extra else []


def add_cli(subparsers, runtime: Runtime) -> None:
    """Register `ros2 {run,trigger,record,bag-to-lerobot}` on robot-rl's subparsers."""
    r = subparsers.add_parser("ros2", help="ROS 2: policy node, bag recording and conversion",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    r.set_defaults(runtime=runtime)
    sub = r.add_subparsers(dest="ros2_command", required=True)

    run = sub.add_parser("run", help="run a trained policy as a ROS 2 node")
    run.add_argument("--policy", required=True, metavar="RUN_DIR",
                     help="run directory (latest good checkpoint is used)")
    run.add_argument("--config", help="YAML of node parameters (topics, frames, rate, ...)")
    run.add_argument("--rate", type=float, help="policy rate [Hz] (parameter rate_hz)")
    run.add_argument("--autostart", action="store_true", help="act without a ~/start call")
    run.add_argument("--localhost-only", action="store_true",
                     help="no DDS traffic off this machine (the arm's controller runs here too)")
    run.add_argument("--torch-threads", type=int, default=1)
    run.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                     help="ROS 2 arguments, last: --ros-args -p name:=value -r __ns:=/arm")
    run.set_defaults(func=_cmd_run)

    trig = sub.add_parser("trigger", help="call the policy node's start/stop/reset service")
    trig.add_argument("service", choices=["start", "stop", "reset"])
    trig.add_argument("--node", default="/robot_rl_policy", help="the node's full name")
    trig.add_argument("--timeout", type=float, default=10.0)
    trig.set_defaults(func=_cmd_trigger)

    rec = sub.add_parser("record", help="record topics to a rosbag2 (MCAP)")
    rec.add_argument("out", help="bag directory to create")
    rec.add_argument("--topics", nargs="+", help="topics to record (default: all)")
    rec.add_argument("--duration", type=float, help="stop after this many seconds")
    rec.add_argument("--wait", type=float, default=10.0,
                     help="seconds to wait for the topics to appear")
    rec.add_argument("--ready-file", help="write this file once recording has started")
    rec.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                     help="ROS 2 arguments, last")
    rec.set_defaults(func=_cmd_record)

    conv = sub.add_parser("bag-to-lerobot", help="convert a bag to a LeRobotDataset v3.0")
    conv.add_argument("bag")
    conv.add_argument("out")
    src = conv.add_mutually_exclusive_group(required=True)
    src.add_argument("--policy", metavar="RUN_DIR", help="observation/action layout of this run")
    src.add_argument("--env-config", help="run config YAML whose env gives the layout")
    conv.add_argument("--config", help="YAML of node parameters (topic names, frames, ...)")
    conv.add_argument("--namespace", default="", help="ROS namespace the topics were in")
    conv.add_argument("--fps", type=int, help="dataset fps (default: the policy rate)")
    conv.add_argument("--task", help="task string (default: the env's instruction)")
    conv.add_argument("--gap", type=float, default=1.0,
                      help="a pause longer than this [s] starts a new episode")
    conv.set_defaults(func=_cmd_bag_to_lerobot)

