"""franky-sim fixtures: a real Franka-protocol simulator (MuJoCo FR3) as a subprocess on a
loopback address. One server per test session; tests that kill the robot get their own."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def franky_sim():
    """A shared franky-sim server. Tests connect one client at a time and close it."""
    from robot_rl.hardware.franka import FrankySim
    sim = FrankySim().start()
    yield sim
    sim.stop()


@pytest.fixture
def private_franky_sim():
    """A server of the test's own (it may kill it to simulate a lost robot)."""
    from robot_rl.hardware.franka import FrankySim
    sim = FrankySim().start()
    yield sim
    sim.stop()


FRANKA_SIM_LAUNCH = """
import sys
from franka_sim.franka_sim_server import FrankaSimServer
FrankaSimServer(host=sys.argv[1], enable_gripper=False,
                enforce_motion_limits=sys.argv[2] == "1").start()
"""


@pytest.fixture
def franka_sim(tmp_path):
    """franka_sim(enforce_limits) -> host: franka-sim (.venv-frankasim, scripts/
    setup_frankasim.sh), a Franka-protocol server that checks the FR3's joint torque,
    velocity and acceleration limits (with `enforce_limits`, a violation aborts the motion
    with the robot's reflex, as the real FCI does; without, it is logged and the arm goes
    on). It binds all interfaces by default; here it binds a free loopback address. Its FR3
    model is franky-sim's bundled MJCF (franka-sim would download one from GitHub). Every
    server is stopped at teardown."""
    import os
    import socket
    import subprocess
    import time
    from pathlib import Path

    import franky_sim
    root = Path(__file__).resolve().parents[2]
    python = root / ".venv-frankasim" / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} not found: run `bash scripts/setup_frankasim.sh` (CI does)",
                    pytrace=False)
    assets = Path(franky_sim.__file__).parent / "assets"
    mjcf = tmp_path / "fr3.xml"  # the same model with its meshes found from anywhere
    mjcf.write_text((assets / "fr3.xml").read_text().replace(
        'meshdir="assets"', f'meshdir="{assets / "meshes"}"'))
    procs = []

    def start(enforce_limits: bool) -> str:
        for last in range(60, 250):
            host = f"127.0.0.{last}"
            with socket.socket() as s:
                try:
                    s.bind((host, 1337))
                except OSError:
                    continue
            break
        log = open(tmp_path / f"franka-sim-{host}.log", "w")
        proc = subprocess.Popen([str(python), "-c", FRANKA_SIM_LAUNCH, host,
                                 "1" if enforce_limits else "0"],
                                env={**os.environ, "FR3_MJCF": str(mjcf)},
                                stdout=log, stderr=subprocess.STDOUT)
        procs.append((proc, log))
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection((host, 1337), timeout=0.5).close()
                return host
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("franka-sim did not start:\n"
                                       + (tmp_path / f"franka-sim-{host}.log").read_text()[-3000:])
                time.sleep(0.2)

    start.log = lambda: "\n".join(p.read_text() for p in tmp_path.glob("franka-sim-*.log"))
    yield start
    for proc, log in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
