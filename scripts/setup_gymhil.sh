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
# gymnasium-robotics' Fetch envs break on MuJoCo 3.17 (their joint-type asserts compare
# numpy.int32 with MuJoCo's enums, which 3.17's bindings no longer equate): they live here
GYM_ROBOTICS="gymnasium-robotics==1.4.2"
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

STAMP=".venv-gymhil/.robot_rl_stamp"
VENV_ID="$PY $ROOT"
PKGS="$GYM_HIL $GYM_ROBOTICS mujoco==$MUJOCO_LOWEST $TEST_PKGS"
# robot-rl's own dependency list is part of what was installed: a change re-resolves in place
WANT="$VENV_ID | $PKGS | $(cat pyproject.toml setup.py | sha1sum | cut -c1-12)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  if [ ! -f "$STAMP" ] || [ "$(cut -d'|' -f1 "$STAMP")" != "$VENV_ID " ]; then
    rm -rf .venv-gymhil
    "$PY" -m venv .venv-gymhil
    .venv-gymhil/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1
  fi
  echo "installing into .venv-gymhil: robot-rl[learn] (editable) $PKGS"
  # one resolve: fails here if robot-rl's ranges exclude gym-hil's or Meta-World's MuJoCo
  LOG=.venv-gymhil/pip-install.log
  # shellcheck disable=SC2086
  if ! .venv-gymhil/bin/python -m pip install -e ".[learn]" $PKGS >"$LOG" 2>&1; then
    grep -v "is ignored" "$LOG" | tail -40 >&2
    echo "error: pip could not install robot-rl[learn] beside $PKGS (log: $LOG)" >&2
    exit 1
  fi
  .venv-gymhil/bin/python -m pip check >&2
  bash scripts/share_venv_files.sh .venv-gymhil  # its torch is .venv's: ~5.8 GB shared
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
import gymnasium_robotics
gym.register_envs(gymnasium_robotics)
assert "FetchReach-v4" in gym.registry
import robot_rl.sim.world as w
assert w._KERNEL is not None, "C kernel missing"
print(f"gym-hil venv ok: mujoco {mujoco.__version__}, gym_hil/PandaPickCubeBase-v0, FetchReach-v4, "
      "C kernel loaded")
EOF
