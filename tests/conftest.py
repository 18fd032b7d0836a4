"""Shared fixtures.

The other-sims venv (`.venv-gymhil`, made by `bash scripts/setup_gymhil.sh`; override the
interpreter with $ROBOT_RL_GYMHIL_PYTHON): robot-rl beside gym-hil and gymnasium-robotics at
the LOWEST supported MuJoCo. The LeRobot venv (`.venv-lerobot`, `bash scripts/setup_lerobot.sh`;
$ROBOT_RL_LEROBOT_PYTHON): the real lerobot 0.6.1 (Python >= 3.12) with its Feetech bus, and
robot-rl beside it. Both are required: without them the tests that use them FAIL (CI creates
them), they do not skip."""
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
LEROBOT_PYTHON = Path(os.environ.get("ROBOT_RL_LEROBOT_PYTHON",
                                     ROOT / ".venv-lerobot" / "bin" / "python"))


def _venv_python(python: Path, imports: str, setup: str) -> str:
    """`python` if it exists and can import `imports`, else fail the test with how to make it."""
    hint = f"create it with `bash scripts/{setup}` (CI runs this before pytest)"
    if not python.exists():
        pytest.fail(f"venv interpreter {python} not found: {hint}", pytrace=False)
    r = subprocess.run([str(python), "-c", f"import {imports}"], capture_output=True, text=True,
                       timeout=180, cwd=ROOT)
    if r.returncode != 0:
        pytest.fail(f"{python} cannot import {imports} ({hint}):\n{r.stderr[-3000:]}",
                    pytrace=False)
    return str(python)


@pytest.fixture(scope="session")
def gymhil_python() -> str:
    return _venv_python(GYMHIL_PYTHON, "gym_hil, gymnasium_robotics, robot_rl", "setup_gymhil.sh")


@pytest.fixture(scope="session")
def lerobot_python() -> str:
    """lerobot 0.6.1 (datasets, the SO-101 follower/leader on the Feetech bus) and robot-rl."""
    python = _venv_python(LEROBOT_PYTHON, "lerobot.datasets.lerobot_dataset, "
                          "lerobot.robots.so_follower, scservo_sdk, robot_rl", "setup_lerobot.sh")
    r = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('lerobot'))"],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "0.6.1", r.stdout
    return python


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
