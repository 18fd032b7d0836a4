#!/usr/bin/env bash
# Install and run the main job: a short simulated training run on the default env.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh learn
export MUJOCO_GL="${MUJOCO_GL:-egl}"
if [ -d runs/quickstart/checkpoints ]; then
  exec .venv/bin/robot-rl train --resume runs/quickstart   # re-running continues the same run
fi
exec .venv/bin/robot-rl train config/quickstart.yaml
