"""`robot-rl`: the command-line entry point. Each subcommand imports what it needs lazily."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_rollout(args) -> int:
    """Scripted-expert rollouts on a sim env, written as an mp4 (a smoke test of the install)."""
    import gymnasium as gym
    from tqdm import tqdm

    import robot_rl  # noqa: F401
    from robot_rl.sim.tasks import make_expert
    from robot_rl.video import env_frame, write_mp4
    env = gym.make(args.env)
    expert = make_expert(env)
    frames, wins = [], 0
    for ep in tqdm(range(args.episodes), desc="episodes", unit="ep"):
        obs, _ = env.reset(seed=args.seed + ep)
        expert.reset()
        frames.append(env_frame(env))
        done = False
        while not done:
            obs, _, term, trunc, info = env.step(expert.act(obs))
            frames.append(env_frame(env))
            done = term or trunc
        wins += bool(info["is_success"])
    write_mp4(args.video, frames, fps=10)
    print(f"success {wins}/{args.episodes}; video: {args.video}")
    return 0


def _cmd_demos(args) -> int:
    from robot_rl.demos import collect_scripted_demos
    env, policy = args.env, args.policy
    if args.config:  # a run config's env section (wrappers, time limit, ...) and demos.policy
        from robot_rl.run_config import load_config
        cfg = load_config(args.config)
        env, policy = cfg.env, policy or cfg.demos.policy
    if env is None:
        raise SystemExit("robot-rl demos: give --env ID or --config CONFIG.yaml")
    summary = collect_scripted_demos(env, args.episodes, args.out, seed=args.seed,
                                     noise=args.noise, fail_prob=args.fail_prob,
                                     only_success=args.only_success, policy=policy,
                                     video_codec=args.video_codec)
    print(summary)
    return 0


def _cmd_train(args) -> int:
    from robot_rl import train
    if args.resume:
        if args.config and "=" in args.config:  # argparse took the first override for CONFIG
            args.overrides, args.config = [args.config, *args.overrides], None
        if args.config:
            raise SystemExit("give either CONFIG or --resume RUN_DIR, not both")
        result = train.resume(args.resume, progress=not args.no_progress, overrides=args.overrides)
    else:
        if not args.config:
            raise SystemExit("usage: robot-rl train CONFIG.yaml [key=value ...] | --resume RUN_DIR")
        cfg = train.load_config(args.config, args.overrides)
        result = train.train(cfg, progress=not args.no_progress)
    print(train.where_it_is(result))
    print(json.dumps(result))  # last line: machine-readable
    return 0


def _cmd_eval(args) -> int:
    from pathlib import Path

    from robot_rl import train
    agent, cfg = train.load_policy(args.run_dir)
    if args.backend == "mjx":  # N parallel MJX envs; actions cross as one [N, A] array per step
        from robot_rl.sim.mjx.vector_env import evaluate_policy, make_mjx_vector_env
        if args.video:
            raise SystemExit("--video needs --backend mujoco (the MJX backend does not render)")
        venv = make_mjx_vector_env(cfg.env.id, args.envs, **cfg.env.kwargs)
        print(json.dumps(evaluate_policy(lambda o: agent.act_batch(o, deterministic=True), venv,
                                         args.episodes, args.seed, progress=True)))
        return 0
    if args.critic:
        from robot_rl.critic_check import critic_check, format_report
        res = critic_check(agent, cfg, args.episodes, args.seed)
        print(format_report(res))
        print(json.dumps(res))
        return 0
    env = train.make_env(cfg)
    video = Path(args.run_dir) / "videos" / "eval_cli.mp4" if args.video else None
    res = train.evaluate(agent, env, args.episodes, args.seed, video, progress=True)
    print(json.dumps({**res, "video": str(video) if video else None}))
    return 0


def _cmd_bench(args) -> int:
    if args.what == "sim":
        from robot_rl.bench import sim
        sim.run(steps=args.steps, rounds=args.rounds, json_path=args.json,
                gym_hil_python=args.gym_hil_python)
        return 0
    if args.what == "mjx":
        from robot_rl.bench import mjx
        mjx.run(json_path=args.json)
        return 0
    if args.what == "rewards":
        from robot_rl.bench import rewards
        rewards.run(args.json)
        return 0
    if args.what == "robot":
        from robot_rl.bench import robot
        robot.run(args.json, steps=min(args.steps, 300), host=args.host, cameras=args.cameras)
        return 0
    if args.what == "classifier-reward":
        from robot_rl.bench import classifier_reward
        classifier_reward.run(seeds=range(args.seeds or 3), runs_dir=args.runs_dir, json_path=args.json,
                              overrides=args.overrides)
        return 0
    if args.what == "distributed":
        from robot_rl.bench import distributed
        distributed.run(json_path=args.json, rounds=args.rounds, overrides=args.overrides)
        return 0
    if args.what == "language":
        from robot_rl.bench import language_rewards
        language_rewards.run(args.json, seeds=args.seeds or 3)
        return 0
    if args.what == "vgps":
        from robot_rl.bench import vgps
        vgps.run(seeds=args.seeds or 3, json_path=args.json)
        return 0
    if args.what == "learn" and args.device:  # the learner's device, for every part of the bench
        args.overrides = [*args.overrides, f"train.device={args.device}"]
    if args.what == "learn" and args.task == "suite":
        from robot_rl.bench import suite
        suite.run(seeds=args.seeds or 3, json_path=args.json, runs_dir=args.runs_dir,
                  overrides=args.overrides, envs=args.envs.split(",") if args.envs else None,
                  only_seed=args.seed)
        return 0
    if args.what == "learn":
        from robot_rl.bench import learn
        tasks = ["throughput", "replay", "state"] if args.quick else \
            (args.task.split(",") if args.task else ["throughput", "replay", "state", "vision"])
        learn.run(tasks, seeds=1 if args.quick else args.seeds or 3, json_path=args.json,
                  runs_dir=args.runs_dir, overrides=args.overrides)
        return 0
    if args.what == "external":
        from robot_rl.bench import external
        external.run(json_path=args.json, seeds=args.seeds or 1,
                     tasks=args.task.split(",") if args.task else None,
                     gym_hil_python=args.gym_hil_python, runs_dir=args.runs_dir,
                     overrides=args.overrides)
        return 0
    if args.what == "finetune":
        from robot_rl.bench import finetune
        finetune.run(seeds=args.seeds or 1, json_path=args.json, runs_dir=str(Path(args.runs_dir) / "finetune"),
                     overrides=args.overrides)
        return 0
    if args.what == "reset-free":
        from robot_rl.bench import reset_free
        reset_free.run(seeds=args.seeds or 1, json_path=args.json, runs_dir=args.runs_dir,
                       overrides=args.overrides)
        return 0
    if args.what == "report":
        from robot_rl.bench import report
        report.build(Path(args.bench_dir), Path(args.docs_dir))
        print(f"wrote {Path(args.docs_dir) / 'results.md'} and its curves in {Path(args.docs_dir) / 'img'}")
        return 0
    raise SystemExit(f"unknown benchmark {args.what!r}")


# The runtime functions handed to the hardware commands (`robot check`, `ros2 ...`): hardware
# sits below the runtime in the layers (.importlinter), so it is given them rather than
# importing them. Imported when a command runs: robot_rl.train pulls in torch.
def _load_config(path, overrides=()):
    from robot_rl.run_config import load_config
    return load_config(path, overrides)


def _make_env(cfg, teleop=True):
    from robot_rl.train import make_env
    return make_env(cfg, teleop=teleop)


def _load_policy(run_dir):
    from robot_rl.train import load_policy
    return load_policy(run_dir)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="robot-rl", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("rollout", help="run the scripted expert on a sim env and save a video")
    r.add_argument("--env", default="robot_rl/PandaPickCube-v0")
    r.add_argument("--episodes", type=int, default=3)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--video", default="runs/rollout.mp4")
    r.set_defaults(func=_cmd_rollout)

    d = sub.add_parser("demos", help="record scripted demos (our experts or a policy hook) as a "
                                      "LeRobotDataset v3.0")
    d.add_argument("--env", help="env id (ours, or 'module:EnvId')")
    d.add_argument("--config", help="take env (and demos.policy) from this run config")
    d.add_argument("--policy", help="'module:callable' scripted policy: obs -> action in the "
                                    "env's units, or a factory taking the env")
    d.add_argument("--episodes", type=int, default=20)
    d.add_argument("--out", required=True)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--noise", type=float, default=0.0, help="Gaussian action noise (std)")
    d.add_argument("--fail-prob", type=float, default=0.0, help="fraction of botched episodes")
    d.add_argument("--only-success", action="store_true", help="keep successful episodes only")
    d.add_argument("--video-codec", default=None,
                   help="PyAV encoder, e.g. libx264 or libsvtav1 (default: the dataset's codec "
                        "when appending, else libx264)")
    d.set_defaults(func=_cmd_demos)

    t = sub.add_parser("train", help="train SAC/RLPD on a config (or resume a run)")
    t.add_argument("config", nargs="?", help="YAML config, e.g. config/quickstart.yaml")
    t.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.total_env_steps=2000")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last good checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (logs still written)")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("eval", help="evaluate a run's latest checkpoint on held-out seeds")
    e.add_argument("run_dir")
    e.add_argument("--episodes", type=int, default=20)
    e.add_argument("--seed", type=int, default=2_000_000)
    e.add_argument("--video", action="store_true", help="write videos/eval_cli.mp4 (first episode)")
    e.add_argument("--backend", choices=["mujoco", "mjx"], default="mujoco",
                   help="mjx: batched MuJoCo XLA envs (state tasks; needs the mjx extra)")
    e.add_argument("--envs", type=int, default=16, help="mjx: parallel environments")
    e.add_argument("--critic", action="store_true",
                   help="instead: the critic's Q along the demo policy's successful episodes vs "
                        "their discounted returns (robot_rl/critic_check.py)")
    e.set_defaults(func=_cmd_eval)

    b = sub.add_parser("bench", help="benchmarks (ratios against baselines from the same run)")
    b.add_argument("what", choices=["sim", "learn", "robot", "rewards", "classifier-reward",
                                      "distributed", "language", "vgps", "mjx", "external", "finetune", "reset-free",
                                      "report"])
    b.add_argument("--json", help="write the results here")
    b.add_argument("--steps", type=int, default=1000)
    b.add_argument("--rounds", type=int, default=3)
    b.add_argument("--seeds", type=int, help="learn, classifier-reward, language, vgps: seeds "
                                             "(default 3); external, finetune, reset-free: training seeds (default 1)")
    b.add_argument("--seed", type=int, help="learn --task suite: run only this seed (processes "
                                            "with one seed each, on one --json, run in parallel)")
    b.add_argument("--envs", help="learn --task suite: comma list of env ids (default: the "
                                  "whole suite, robot_rl/bench/suite.py)")
    b.add_argument("--task", help="learn: comma list of throughput,replay,state,vision, or suite "
                                  "(every sim task, default agent); "
                                  "external: of pick_cube,gym_hil_pick_cube,fetch_reach,fetch_reach_demos")
    b.add_argument("--quick", action="store_true", help="learn: throughput, replay, one state seed")
    b.add_argument("--runs-dir", default="runs/bench", help="learn: where benchmark runs go")
    b.add_argument("--device", help="learn: where the learner computes, auto | cpu | cuda[:N] | mps "
                                    "(train.device; default auto: CUDA when present)")
    b.add_argument("overrides", nargs="*", help="learn / classifier-reward / finetune / reset-free: config overrides for the training runs")
    b.add_argument("--host", help="robot: Franka host (default: start a franky-sim on loopback)")
    b.add_argument("--cameras", choices=["opencv", "realsense", "mixed"], default="opencv",
                   help="robot: the two cameras used")
    b.add_argument("--gym-hil-python", help="sim, external: a Python with gym-hil (and, for "
                                            "external, gymnasium-robotics) installed (default: "
                                            "this one, then ./.venv-gymhil/bin/python)")
    b.add_argument("--bench-dir", default="bench", help="report: the benchmark JSONs")
    b.add_argument("--docs-dir", default="docs", help="report: writes results.md and img/*.png here")
    b.set_defaults(func=_cmd_bench)

    from robot_rl.collect import add_cli  # collect / replay (teleoperation)
    add_cli(sub)
    from robot_rl.hardware.session import add_cli as add_robot_cli  # robot check
    add_robot_cli(sub, _load_config)
    from robot_rl.rewards.cli import add_cli as add_reward_cli  # reward eval / gvl filter
    add_reward_cli(sub)
    from robot_rl.hardware.ros2 import Runtime, add_cli as add_ros2_cli  # ros2 run / record / ...
    add_ros2_cli(sub, Runtime(_load_config, _make_env, _load_policy))
    from robot_rl.offline import add_cli as add_offline_cli  # offline (Cal-QL / IQL), bc
    add_offline_cli(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow options (`bench learn --task throughput agent.x=1`)
    if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        from robot_rl.config import ConfigError
        if isinstance(exc, (ConfigError, FileNotFoundError, FileExistsError)):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
