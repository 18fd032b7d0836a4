"""Shared fixtures.

The other-sims venv (`.venv-gymhil`, made by `bash scripts/setup_gymhil.sh`; override the
interpreter with $ROBOT_RL_GYMHIL_PYTHON): robot-rl beside gym-hil and gymnasium-robotics at
the LOWEST supported MuJoCo. It is required: without it the tests that use it FAIL (CI creates
it), they do not skip."""
import json
import os
import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def single_torch_thread():
    """Tiny nets: one intra-op thread is as fast and much more robust on a shared 2-core box."""
    import torch
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


ROOT = Path(__file__).resolve().parents[1]
GYMHIL_PYTHON = Path(os.environ.get("ROBOT_RL_GYMHIL_PYTHON",
                                    ROOT / ".venv-gymhil" / "bin" / "python"))
SETUP_HINT = "create it with `bash scripts/setup_gymhil.sh` (CI runs this before pytest)"


@pytest.fixture(scope="session")
def gymhil_python() -> str:
    if not GYMHIL_PYTHON.exists():
        pytest.fail(f"gym-hil venv interpreter {GYMHIL_PYTHON} not found: {SETUP_HINT}",
                    pytrace=False)
    r = subprocess.run([str(GYMHIL_PYTHON), "-c", "import gym_hil, gymnasium_robotics, robot_rl"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    if r.returncode != 0:
        pytest.fail(f"{GYMHIL_PYTHON} cannot import gym_hil + gymnasium_robotics + robot_rl "
                    f"({SETUP_HINT}):\n{r.stderr[-3000:]}", pytrace=False)
    return str(GYMHIL_PYTHON)


def _run_python(python: str, args: list[str], timeout: float = 300) -> str:
    """`python args...` from the repo root with headless rendering; its stdout (fails the test
    with its stderr if it exits non-zero)."""
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)  # that venv's own packages, not this one's
    r = subprocess.run([python, *args], capture_output=True, text=True, timeout=timeout,
                       cwd=ROOT, env=env)
    if r.returncode != 0:
        pytest.fail(f"{python} {' '.join(args)} exited {r.returncode}:\n"
                    f"{r.stdout[-3000:]}\n{r.stderr[-5000:]}", pytrace=False)
    return r.stdout


@pytest.fixture(scope="session")
def run_python():
    """`run_python(python, args, timeout=300) -> stdout` (a non-zero exit fails the test)."""
    return _run_python


@pytest.fixture(scope="session")
def run_json():
    """`run_json(python, args, timeout=300) -> dict`: the last stdout line, as JSON."""
    return lambda *a, **k: json.loads(_run_python(*a, **k).strip().splitlines()[-1])
