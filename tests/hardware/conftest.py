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
