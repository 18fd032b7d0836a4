#!/usr/bin/env bash
# Idempotent: .venv-frankasim, the franka-sim server (a second Franka-protocol simulator, which
# enforces the FR3's joint torque, velocity and acceleration limits as the real robot does;
# franky-sim does not). It pins mujoco<3.3 and numpy 1.26, so it gets its own venv; the tests
# run it as a subprocess on a loopback address (tests/hardware/conftest.py: franka_sim) and
# drive it with our franky client from .venv.
#
#   bash scripts/setup_frankasim.sh
set -euo pipefail
cd "$(dirname "$0")/.."

FRANKA_SIM="franka-sim==1.1.7"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then
    PY="$(.venv/bin/python -c 'import sys; print(sys._base_executable)')"
  else
    PY="$(command -v python3.11 || command -v python3)"
  fi
fi
STAMP=".venv-frankasim/.robot_rl_stamp"
WANT="$PY | $FRANKA_SIM"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  rm -rf .venv-frankasim
  "$PY" -m venv .venv-frankasim
  echo "installing into .venv-frankasim: $FRANKA_SIM"
  LOG=.venv-frankasim/pip-install.log
  if ! .venv-frankasim/bin/python -m pip install "$FRANKA_SIM" >"$LOG" 2>&1; then
    grep -v "is ignored" "$LOG" | tail -40 >&2
    echo "error: pip could not install $FRANKA_SIM (log: $LOG)" >&2
    exit 1
  fi
  echo "$WANT" > "$STAMP"
fi
.venv-frankasim/bin/python -c "import franka_sim.franka_sim_server; print('franka-sim venv ok')"
