"""The set-up scripts: scripts/setup.sh fails when pip fails (its output filter used to hide a
failed install); scripts/gpu_check.sh runs its steps into $OUT and refuses unknown ones."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_a_failed_install_fails_the_setup_script(tmp_path):
    impossible = tmp_path / "constraints.txt"
    impossible.write_text("numpy==0.0.1\n")  # no such release, and no index: pip must fail
    env = {**os.environ, "PIP_CONSTRAINT": str(impossible), "PIP_NO_INDEX": "1"}
    out = subprocess.run(["bash", "scripts/setup.sh", "learn"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert out.returncode != 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "ERROR" in out.stdout + out.stderr  # and pip's own error reaches the user


def test_the_gpu_check_runs_its_steps_into_out_and_refuses_unknown_ones(tmp_path):
    """scripts/gpu_check.sh as the device call runs it, here on CPU: the CUDA module (skipped
    without a device), its log and exit status under $OUT; an unknown step stops before any."""
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "GPU_CHECK_DEVICE": "cpu"}
    run = lambda *steps: subprocess.run(  # noqa: E731
        ["bash", "scripts/gpu_check.sh", "run", *steps], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=300, stdin=subprocess.DEVNULL)
    bad = run("tests", "fp64")
    assert bad.returncode == 2 and "unknown step fp64" in bad.stderr
    assert not (tmp_path / "log.txt").exists()
    out = run("tests")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    log = (tmp_path / "log.txt").read_text()
    assert "== CUDA tests (at most 60 s)" in log and "1 skipped" in log  # no device here
    assert "== CUDA tests: exit 5" in log  # pytest's "no test ran", recorded, not hidden
    assert (tmp_path / "nvidia-smi.txt").exists()
