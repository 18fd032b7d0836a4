#!/usr/bin/env bash
# Idempotent: .venv-gymhil, robot-rl installed BESIDE gym-hil (HIL-SERL's MuJoCo sims) at the
# LOWEST MuJoCo release robot-rl supports. It is both
#   * the proof that robot-rl's dependency ranges admit gym-hil (mujoco<3.9) and Meta-World
#     (mujoco==3.3.0): robot-rl[learn], gym-hil and that MuJoCo resolve in one pip install, and
#   * the "lowest MuJoCo" test bed: tests/sim/test_mujoco_range.py runs our envs and the C
#     substep kernel here and compares them with .venv (the highest: mujoco==3.17.0, the MJX pin).
# Not layered over .venv (unlike .venv-ros2): its MuJoCo must differ from .venv's.
#
#   bash scripts/setup_gymhil.sh        (needs gcc and the GL libraries of scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

MUJOCO_LOWEST="3.3.0"     # keep in step with the mujoco floor in pyproject.toml
GYM_HIL="gym-hil==0.1.14"
# pytest: tests/sim/test_mujoco_range.py runs our sim test files under this MuJoCo too
TEST_PKGS="pytest>=8 pytest-timeout>=2.2"
# Python 3.11 like .venv, so the local torch wheels (cp311) are found
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then
    PY="$(.venv/bin/python -c 'import sys; print(sys._base_executable)')"
  else
    PY="$(command -v python3.11 || command -v python3)"
  fi
fi

pipq() { "$@" 2>&1 | grep -v "is ignored" || true; }

STAMP=".venv-gymhil/.robot_rl_stamp"
# the stamp also covers pyproject.toml/setup.py: a changed dependency list re-resolves
WANT="$GYM_HIL $TEST_PKGS mujoco==$MUJOCO_LOWEST $PY $ROOT $(cat pyproject.toml setup.py | sha1sum | cut -c1-12)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  rm -rf .venv-gymhil
  "$PY" -m venv .venv-gymhil
  pipq .venv-gymhil/bin/python -m pip install -q --upgrade pip
  echo "installing into .venv-gymhil: robot-rl[learn] (editable) $GYM_HIL mujoco==$MUJOCO_LOWEST"
  # one resolve: fails here if robot-rl's ranges exclude gym-hil's or Meta-World's MuJoCo
  .venv-gymhil/bin/python -m pip install -q -e ".[learn]" "$GYM_HIL" "mujoco==$MUJOCO_LOWEST" $TEST_PKGS \
    2>&1 | grep -v "is ignored" || true
  .venv-gymhil/bin/python -m pip check >/dev/null || {
    .venv-gymhil/bin/python -m pip check >&2; exit 1; }
  echo "$WANT" > "$STAMP"
fi

# smoke test: the pinned MuJoCo, gym-hil's env ids, our package with its C kernel
MUJOCO_GL="${MUJOCO_GL:-egl}" .venv-gymhil/bin/python - "$MUJOCO_LOWEST" <<'EOF'
import sys
import mujoco
assert mujoco.__version__ == sys.argv[1], (mujoco.__version__, sys.argv[1])
import gymnasium as gym
import gym_hil  # noqa: F401  (registers gym_hil/*)
assert "gym_hil/PandaPickCubeBase-v0" in gym.registry
import robot_rl.sim.world as w
assert w._KERNEL is not None, "C kernel missing"
print(f"gym-hil venv ok: mujoco {mujoco.__version__}, gym_hil/PandaPickCubeBase-v0, C kernel loaded")
EOF
