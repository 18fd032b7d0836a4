#!/usr/bin/env bash
# Install and run the main job: a short simulated training run on the default env.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh learn
export MUJOCO_GL="${MUJOCO_GL:-egl}"
exec .venv/bin/robot-rl rollout --env robot_rl/PandaPickCube-v0 --episodes 3 --video runs/quickstart/rollout.mp4
