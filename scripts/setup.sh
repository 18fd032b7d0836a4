#!/usr/bin/env bash
# Idempotent set-up: Debian packages (as root, only what is missing), .venv, the package.
#   bash scripts/setup.sh [EXTRAS]      EXTRAS defaults to "learn"; tests use "learn,dev"
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-learn}"

# OpenGL for offscreen MuJoCo (EGL, OSMesa fallback), a C compiler for the substep kernel,
# libusb/hidapi for RealSense cameras and SpaceMice, Xvfb for the keyboard-teleop tests.
DEBS="libegl1 libgl1 libgles2 libosmesa6 libglib2.0-0 gcc libusb-1.0-0 libhidapi-hidraw0 xvfb"
missing=""
for p in $DEBS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "missing Debian packages:$missing (run: sudo apt-get install$missing)" >&2
    exit 1
  fi
fi

PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# the filter never fails the pipe, so under pipefail a failed install fails the script
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | { grep -v "is ignored" || true; }
.venv/bin/python -m pip install -q -e ".[$EXTRAS]" 2>&1 | { grep -v "is ignored" || true; }
.venv/bin/python -c "import robot_rl.sim.world as w; assert w._KERNEL is not None, 'C kernel missing'"
