#!/usr/bin/env bash
# Idempotent: .venv-frankasim, the franka-sim server (a second Franka-protocol simulator, which
# enforces the FR3's joint torque, velocity and acceleration limits as the real robot does;
# franky-sim does not). It pins mujoco<3.3 and numpy 1.26, so it gets its own venv; the tests
# run it as a subprocess on a loopback address (tests/hardware/conftest.py: franka_sim) and
# drive it with our franky client from .venv.
#
#   bash scripts/setup_frankasim.sh          (after scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

FRANKA_SIM="franka-sim==1.1.7"
BASE_PY="$(.venv/bin/python -c 'import sys; print(sys._base_executable)')"
WANT="$FRANKA_SIM $BASE_PY"
if [ "$(cat .venv-frankasim/.robot_rl_stamp 2>/dev/null)" != "$WANT" ]; then
  rm -rf .venv-frankasim
  "$BASE_PY" -m venv .venv-frankasim
  echo "installing into .venv-frankasim: $FRANKA_SIM"
  # pipefail: pip's failure survives the filter and stops the script
  .venv-frankasim/bin/python -m pip install -q "$FRANKA_SIM" 2>&1 | { grep -v "is ignored" || true; }
  echo "$WANT" > .venv-frankasim/.robot_rl_stamp
fi
.venv-frankasim/bin/python -c "import franka_sim.franka_sim_server; print('franka-sim venv ok')"
