"""`robot-rl bench finetune`: offline-to-online fine-tuning on PandaPickCube (state), the
walk-through of docs/finetuning.md measured.

Per seed: a mixed-quality dataset (the scripted expert, `--noise 0.4 --fail-prob 0.5`, 200
episodes, failures kept), a Cal-QL run on it (config/offline_pick_cube.yaml), the offline
policy's success, then four online runs at equal env steps, all with the dataset as
demos (config/finetune_pick_cube.yaml):
- calql:        Cal-QL's online phase from the offline run (conservative term kept);
- rlpd_init:    SAC/RLPD from the same initialization (`agent.cql_alpha=0`);
- rlpd_scratch: SAC/RLPD from scratch with the same data (no `init.from`);
- bc_init:      SAC/RLPD whose actor starts as a BC policy trained on the same data
                (config/bc_pick_cube.yaml; `init.from` the BC run: 10 rollouts, then distilled).
Reported: success curves (50 held-out seeds every 500 steps), the initial dip (offline
success minus the lowest eval success in the first 2000 online steps; Cal-QL's "unlearning"
measure, target <= 0.10) and env steps to 90%.
"""
from __future__ import annotations

import json
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
ENV_ID = "robot_rl/PandaPickCube-v0"
DIP_WINDOW = 2000
ARMS = ("calql", "rlpd_init", "rlpd_scratch", "bc_init")


def offline_success(cfg) -> float:
    """The offline run's policy as the online runs start from it, on their evaluation seeds."""
    from robot_rl.agents.sac import SACAgent
    from robot_rl.agents.warm_start import warm_start
    from robot_rl.train import evaluate, make_env
    env = make_env(cfg, teleop=False, reward_model=False)
    try:
        agent = SACAgent(env.observation_space, env.action_space.shape[0], cfg.agent, seed=cfg.seed)
        warm_start(agent, cfg.init.from_)
        return evaluate(agent, env, cfg.train.eval_episodes, cfg.train.eval_seed)["success_rate"]
    finally:
        env.close()


def summarize(curve: list[tuple[int, float]], start: float | None) -> dict:
    early = [s for step, s in curve if step <= DIP_WINDOW]
    hit = next((step for step, s in curve if s >= 0.9), None)
    return {"curve": curve, "steps_to_90": hit, "final_success": curve[-1][1] if curve else None,
            "dip": (start - min(early)) if start is not None and early else None}


def one_seed(seed: int, runs_dir: Path, overrides: list[str]) -> dict:
    from robot_rl import config as cfgmod
    from robot_rl.demos import collect_scripted_demos
    from robot_rl.metrics import read_metrics
    from robot_rl.offline import run_bc, run_offline
    from robot_rl.run_config import BCRunConfig, OfflineRunConfig, load_config
    from robot_rl.train import train
    data = runs_dir / f"pick_mixed_seed{seed}"
    if not (data / "meta" / "info.json").exists():
        collect_scripted_demos(ENV_ID, 200, str(data), seed=seed * 1000 + 77, noise=0.4, fail_prob=0.5,
                               only_success=False)
    offline_dir = runs_dir / f"offline_seed{seed}"
    if not (offline_dir / "critic.pt").exists():
        off = cfgmod.load(OfflineRunConfig, str(CONFIG_DIR / "offline_pick_cube.yaml"),
                          [f"seed={seed}", f"runs_dir={runs_dir}", f"name=offline_seed{seed}",
                           f"data.dataset={data}"])
        run_offline(off)
    bc_dir = runs_dir / f"bc_seed{seed}"
    if not (bc_dir / "policy.pt").exists():
        run_bc(cfgmod.load(BCRunConfig, str(CONFIG_DIR / "bc_pick_cube.yaml"),
                           [f"seed={seed}", f"runs_dir={runs_dir}", f"name=bc_seed{seed}", f"data.dataset={data}"]))
    common = [f"seed={seed}", f"runs_dir={runs_dir}", f"demos.dataset={data}", "train.eval_every=500",
              "train.eval_episodes=50", "train.total_env_steps=6000", "train.checkpoint_every=6000", *overrides]
    arms = {"calql": [f"init.from={offline_dir}"],
            "rlpd_init": [f"init.from={offline_dir}", "agent.cql_alpha=0"],
            "rlpd_scratch": ["init.from=null", "agent.cql_alpha=0"],
            "bc_init": [f"init.from={bc_dir}", "init.rollouts=10", "agent.cql_alpha=0"]}
    out: dict = {"seed": seed}
    for arm, extra in arms.items():
        cfg = load_config(str(CONFIG_DIR / "finetune_pick_cube.yaml"), [*common, f"name={arm}_seed{seed}", *extra])
        if arm == "calql":
            out["offline_success"] = offline_success(cfg)
            print(f"offline policy: {out['offline_success']:.0%}")
        res = train(cfg)
        curve = [(r["step"], r["success_rate"]) for r in read_metrics(res["run_dir"], "eval")]
        start = out["offline_success"] if arm in ("calql", "rlpd_init") else None
        out[arm] = {**summarize(curve, start), "wall_clock_s": res["wall_clock_s"]}
        distilled = read_metrics(res["run_dir"], "distill")
        if distilled:  # the BC policy's own rollouts, before RL: where this arm starts from
            out[arm].update(prior_success=distilled[0]["success_rate"], prior_steps=distilled[0]["step"])
        print(json.dumps({arm: out[arm]}))
    return out


def run(seeds: int = 1, json_path: str | None = None, runs_dir: str = "runs/bench/finetune",
        overrides: list[str] = ()) -> dict:
    per_seed = [one_seed(s, Path(runs_dir), list(overrides)) for s in range(seeds)]
    result = {"task": f"{ENV_ID} (state), 200 mixed episodes (noise 0.4, fail 0.5)",
              "overrides": list(overrides), "seeds": per_seed}
    for s in per_seed:
        print(f"seed {s['seed']}: offline {s['offline_success']:.0%}; " + "; ".join(
            f"{arm} dip {s[arm]['dip']}, steps to 90% {s[arm]['steps_to_90']}, final {s[arm]['final_success']:.0%}"
            for arm in ARMS if arm in s))
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
    return result
