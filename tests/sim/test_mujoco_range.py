"""Our MuJoCo sim at both ends of the supported MuJoCo range: the lowest in `.venv-gymhil`
(pyproject's floor, beside gym-hil), the highest in `.venv` (the `mjx`/`dev` pin). The C
substep kernel loads and equals the numpy law at each, our sim test files pass at the lowest
too, and the scripted experts play the same episodes at both (tolerances below)."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import mujoco
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = "tests/sim/mujoco_probe.py"
SEEDS = 10

# Tolerances for "the same episode" at MuJoCo 3.3.0 vs 3.17.0, per task, on the observation.
# Free-space arm motion (Reach; the arm of PegInsert before the peg touches) depends only on
# the arm's dynamics and our controller, and agrees to 1e-10 m (measured): 1e-5 m still catches
# any real change. Contacts differ between releases (solver updates): while the PickCube
# gripper squeezes the cube the fingers close up to 1.5 mm further at 3.17 (opening 0.019 of
# its 0..1 range, measured, every seed), which moves the TCP and cube by <= 0.17 mm. The bounds
# are 2.5-10x the measured differences and far below what decides a task (lift 5 cm, reach
# 2 cm, peg clearance 1 mm: PegInsert's contacts agree to 2e-6 m).
#          tcp xyz (m), tcp twist, gripper opening (0..1), env_state (m)
TOL = {"robot_rl/PandaReach-v0": (1e-5, 1e-4, 1e-3, 1e-5),
       "robot_rl/PandaPickCube-v0": (1e-3, 1e-2, 0.05, 1e-3),
       "robot_rl/PandaPegInsert-v0": (1e-4, 1e-3, 1e-3, 1e-4)}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _venv_mujoco(python: str) -> str:
    return subprocess.run([python, "-c", "import mujoco; print(mujoco.__version__)"],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def probes(gymhil_python, run_json) -> dict:
    """The probe at the highest (this interpreter) and the lowest (.venv-gymhil) MuJoCo."""
    return {"highest": run_json(sys.executable, [PROBE, str(SEEDS)]),
            "lowest": run_json(gymhil_python, [PROBE, str(SEEDS)])}


def test_the_two_venvs_are_the_two_ends_of_the_declared_range(gymhil_python):
    p = _pyproject()
    core = [d for d in p["project"]["dependencies"] if re.match(r"mujoco\b", d)]
    assert len(core) == 1 and "==" not in core[0], f"core mujoco must be a range: {core}"
    floor = re.search(r">=\s*([\d.]+)", core[0]).group(1)
    pins = {re.search(r"==\s*([\d.]+)", d).group(1)
            for extra in ("mjx", "dev") for d in p["project"]["optional-dependencies"][extra]
            if re.match(r"mujoco\s*==", d)}
    assert len(pins) == 1, f"mjx and dev must pin one mujoco (the MJX pairing): {pins}"
    (pin,) = pins
    assert mujoco.__version__ == pin, ".venv should hold the mjx pin (the highest)"
    assert _venv_mujoco(gymhil_python) == floor, ".venv-gymhil should hold the floor (the lowest)"
    lowest = tuple(map(int, floor.split(".")))
    assert lowest <= (3, 3, 0), "Meta-World needs mujoco==3.3.0"
    assert lowest < (3, 9), "gym-hil needs mujoco<3.9"


@pytest.mark.parametrize("end", ["lowest", "highest"])
def test_c_kernel_loads_and_equals_the_numpy_law(probes, end):
    p = probes[end]
    assert p["kernel_loaded"], f"C kernel not loaded at mujoco {p['mujoco']}"
    k = p["kernel"]
    assert k["auto_controller"] == "c"
    assert k["law_err_over_tol"] <= 1.0, "C torque != numpy torque (rtol 1e-7, atol 1e-8)"
    assert k["substeps_max_dx"] < 1e-9, "C substeps and numpy substeps track differently"
    assert k["step_final_err"] < 0.01  # 5 cm step, 0.5 s: well on its way (2 mm after 2 s)


def test_kernel_law_is_the_same_at_both_ends(probes):
    lo, hi = probes["lowest"]["kernel"], probes["highest"]["kernel"]
    assert abs(lo["step_final_err"] - hi["step_final_err"]) < 1e-9


@pytest.mark.parametrize("env_id", list(TOL))
def test_scripted_expert_plays_the_same_episodes_at_both_ends(probes, env_id):
    lo, hi = probes["lowest"]["episodes"][env_id], probes["highest"]["episodes"][env_id]
    tol_pos, tol_twist, tol_grip, tol_env = TOL[env_id]
    assert [e["success"] for e in lo] == [e["success"] for e in hi] == [True] * SEEDS
    for seed, (a, b) in enumerate(zip(lo, hi)):
        assert len(a["state"]) == len(b["state"]), f"seed {seed}: episode lengths differ"
        np.testing.assert_allclose(a["rewards"], b["rewards"], atol=1e-6)
        sa, sb = np.array(a["state"]), np.array(b["state"])
        ea, eb = np.array(a["env_state"]), np.array(b["env_state"])
        for name, sl, tol in (("tcp xyz", slice(0, 3), tol_pos), ("twist", slice(7, 13), tol_twist),
                              ("gripper", slice(13, 14), tol_grip)):
            err = np.abs(sa[:, sl] - sb[:, sl]).max()
            assert err <= tol, f"{env_id} seed {seed}: {name} differs by {err:.2e} > {tol}"
        # env_state: [object, object - tcp] in metres, then (the insertions) that offset
        # log-scaled from 1 mm, whose slope of up to 1 / 1 mm magnifies any difference
        err = np.abs(ea[:, :6] - eb[:, :6]).max()
        assert err <= tol_env, f"{env_id} seed {seed}: env_state differs by {err:.2e}"
        err = np.abs(ea[:, 6:] - eb[:, 6:]).max(initial=0.0)
        assert err <= tol_env / 1e-3, f"{env_id} seed {seed}: log-scaled offset differs by {err:.2e}"


def test_sim_test_files_pass_at_the_lowest_mujoco(gymhil_python, run_python):
    """tests/sim/test_world.py and test_tasks.py (kernel == numpy, tracking, seeding, experts
    over 100 seeds, rendering) run unchanged under .venv-gymhil's pytest."""
    out = run_python(gymhil_python, ["-m", "pytest", "-q", "-p", "no:cacheprovider",
                                     "tests/sim/test_world.py", "tests/sim/test_tasks.py"],
                     timeout=400)
    assert re.search(r"\b\d+ passed\b", out) and "failed" not in out, out[-2000:]
