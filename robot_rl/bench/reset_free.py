"""`robot-rl bench reset-free`: reset-free training (forward and backward learners sharing one
scene) against episodic training, at equal env steps, on PandaRelocate (config/relocate.yaml).

For each seed, both runs take the same number of env steps (`train.total_env_steps`, default
20000): episodic training spends them all on the forward task with a reset before every
episode; reset-free training splits them between the two learners and resets only when due
(`reset_free.full_reset_every`, `reset_free.stuck_after`, scripted in sim). Then both forward
policies are evaluated on the same 100 held-out seeds (deterministic actions, ordinary resets).
Reported per seed: forward success, the real resets after the first each run needed (episodic: one per
episode; reset-free: scheduled + stuck, none by hand) and wall-clock.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CONFIG = Path(__file__).resolve().parents[2] / "config" / "relocate.yaml"
EVAL_SEED, EVAL_EPISODES = 10_000, 100


def forward_success(run_dir: Path) -> float:
    from robot_rl.train import evaluate, load_policy, make_env
    agent, cfg = load_policy(run_dir)
    env = make_env(cfg, teleop=False, reward_model=False)
    try:
        return evaluate(agent, env, EVAL_EPISODES, EVAL_SEED)["success_rate"]
    finally:
        env.close()


def one_seed(seed: int, runs_dir: str, overrides: list[str]) -> dict:
    from robot_rl.train import load_config, train
    out = {"seed": seed}
    for mode in ("episodic", "reset_free"):
        name = f"relocate_{mode}_seed{seed}"
        cfg = load_config(str(CONFIG), [f"seed={seed}", f"name={name}", f"runs_dir={runs_dir}",
                                        f"reset_free.enabled={mode == 'reset_free'}", *overrides])
        res = train(cfg)
        run = Path(res["run_dir"])
        forward = run / "forward" if mode == "reset_free" else run
        resets = sum(res["resets"].values()) if mode == "reset_free" else res["episodes"] - 1
        by_hand = res["resets"]["stuck"] if mode == "reset_free" and cfg.reset_free.on_stuck == "human" else 0
        out[mode] = {"env_steps": res["step"], "episodes": res["episodes"], "real_resets": resets,
                     "manual_resets": by_hand, "resets": res.get("resets"), "wall_clock_s": res["wall_clock_s"],
                     "forward_success": forward_success(forward)}
        print(json.dumps({mode: out[mode]}))
    return out


def run(seeds: int = 1, json_path: str | None = None, runs_dir: str = "runs/bench",
        overrides: list[str] = ()) -> dict:
    overrides = ["train.total_env_steps=20000", *overrides]  # later overrides win
    per_seed = [one_seed(s, runs_dir, list(overrides)) for s in range(seeds)]
    result = {"task": "robot_rl/PandaRelocate-v0 (config/relocate.yaml)", "overrides": list(overrides),
              "eval": f"{EVAL_EPISODES} held-out seeds from {EVAL_SEED}", "seeds": per_seed}
    for mode in ("episodic", "reset_free"):
        result[f"{mode}_median_forward_success"] = float(np.median([s[mode]["forward_success"] for s in per_seed]))
        result[f"{mode}_median_real_resets"] = float(np.median([s[mode]["real_resets"] for s in per_seed]))
    print(f"forward success (median of {seeds}): episodic {result['episodic_median_forward_success']:.0%} "
          f"with {result['episodic_median_real_resets']:.0f} resets, reset-free "
          f"{result['reset_free_median_forward_success']:.0%} with "
          f"{result['reset_free_median_real_resets']:.0f} (none by hand)")
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
    return result
