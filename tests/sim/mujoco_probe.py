"""Run by test_mujoco_range.py under each end of the supported MuJoCo range (.venv: highest,
.venv-gymhil: lowest): what our sim does there, as one JSON line on stdout.

    python tests/sim/mujoco_probe.py [SEEDS]
"""
import json
import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

import robot_rl  # noqa: E402,F401  (registers robot_rl/*)
import robot_rl.sim.world as world_mod  # noqa: E402
from robot_rl.controllers.impedance import ImpedanceParams  # noqa: E402
from robot_rl.sim.tasks import make_expert, rollout  # noqa: E402
from robot_rl.sim.panda_model import HOME_Q, WRIST_CAMERA, build_scene  # noqa: E402
from robot_rl.sim.world import SimArm, SimWorld  # noqa: E402

TASKS = ("robot_rl/PandaReach-v0", "robot_rl/PandaPickCube-v0", "robot_rl/PandaPegInsert-v0")


def kernel_vs_numpy() -> dict:
    """The C law against the numpy law on random states (one evaluation each), and the same
    5 cm step tracked for 0.5 s by C substeps and by numpy substeps."""
    w = SimWorld(xml=build_scene(hand_extra=WRIST_CAMERA), controller="c")
    rng = np.random.default_rng(0)
    law = 0.0
    for _ in range(50):
        w.set_joints(HOME_Q + rng.normal(scale=0.3, size=7))
        w.data.qvel[:7] = rng.normal(scale=0.5, size=7)
        w.target_pos = w.tcp_pose()[:3] + rng.normal(scale=0.05, size=3)
        w.q_null = HOME_Q + rng.normal(scale=0.2, size=7)
        w.set_impedance(ImpedanceParams(stiffness=rng.uniform(100, 3000, 6),
                                        max_torque_rate=rng.uniform(0.5, 5)))
        tc, tn = w.torque_now("c"), w.torque_now("numpy")
        law = max(law, float(np.max(np.abs(tc - tn) / (1e-8 + 1e-7 * np.abs(tn)))))
    paths = {}
    for ctrl in ("c", "numpy"):
        w = SimWorld(xml=build_scene(hand_extra=WRIST_CAMERA), controller=ctrl)
        w.set_joints(HOME_Q)
        arm = SimArm(w)
        start = arm.state().tcp_pose
        arm.set_target_pose(start[:3] + [0.05, 0.0, 0.0], start[3:])
        xs = []
        for _ in range(50):
            w.step(5)
            xs.append(w.tcp_position())
        paths[ctrl] = np.array(xs)
        w.close()
    return {"auto_controller": SimWorld(xml=build_scene(), controller="auto").controller,
            "law_err_over_tol": law,  # max |c - numpy| / (1e-8 + 1e-7 |numpy|): <= 1 passes
            "substeps_max_dx": float(np.abs(paths["c"] - paths["numpy"]).max()),
            "step_final_err": float(np.linalg.norm(paths["c"][-1] - (start[:3] + [0.05, 0, 0])))}


def expert_episodes(seeds: int) -> dict:
    out = {}
    for env_id in TASKS:
        env = gym.make(env_id)
        expert = make_expert(env)
        eps = []
        for seed in range(seeds):
            obs, _, rewards, _, success = rollout(env, expert, seed)
            eps.append({"success": success, "rewards": [float(r) for r in rewards],
                        "state": [o["state"].tolist() for o in obs],
                        "env_state": [o["env_state"].tolist() for o in obs]})
        env.close()
        out[env_id] = eps
    return out


if __name__ == "__main__":
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    print(json.dumps({"mujoco": mujoco.__version__, "python": sys.executable,
                      "kernel_loaded": world_mod._KERNEL is not None,
                      "kernel": kernel_vs_numpy(), "episodes": expert_episodes(seeds)}))
