"""scripts/setup.sh fails when pip fails (its output filter used to hide a failed install)."""
import os
import subprocess
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
