#!/usr/bin/env bash
# Install the dev extras and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh learn,dev
bash scripts/setup_ros2.sh   # .venv-ros2: real rclpy (own venv: its wheels install a .pth hook)
bash scripts/setup_gymhil.sh # .venv-gymhil: robot-rl beside gym-hil + gymnasium-robotics, MuJoCo 3.3.0
bash scripts/setup_frankasim.sh # .venv-frankasim: franka-sim, a Franka peer that enforces the FR3 torque limits
bash scripts/setup_lerobot.sh # .venv-lerobot: the real lerobot 0.6.1 (Python >= 3.12) for interop tests
bash scripts/lint_imports.sh   # the layers contract in .importlinter
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$(mktemp -d)"  # the docs site: no warnings allowed
export MUJOCO_GL="${MUJOCO_GL:-egl}"
exec .venv/bin/python -m pytest -q "$@"
