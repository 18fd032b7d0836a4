#!/usr/bin/env bash
# Idempotent: .venv-lerobot, the real `lerobot` (0.6.1, [dataset,feetech] extras) for the
# LeRobot interop tests (tests/robot_rl/test_lerobot_interop.py: datasets, through files on
# disk) and the SO-101 adapter's tests (tests/hardware/test_so101_lerobot.py: robot-rl itself,
# installed here without its dependencies, drives LeRobot's SO101Follower/Leader). lerobot
# needs Python >= 3.12, so it gets its own venv (our .venv is 3.11). About 5 GB (lerobot pins torch < 2.12, which PyPI has only as a CUDA
# build for 3.12); measured here: ~2.5 min to install.
#
#   bash scripts/setup_lerobot.sh          ($LEROBOT_PYTHON: a python3.12+ to use)
#
# Python 3.12+: $LEROBOT_PYTHON, else python3.12 / python3.13 on PATH, else pyenv's, else
# Debian's python3.12 (apt) where the release has it. Video: LeRobot decodes with PyAV (its
# wheel bundles FFmpeg) or torchcodec, which loads the system FFmpeg libraries: Debian's are
# installed (as root) so both backends work.
set -euo pipefail
cd "$(dirname "$0")/.."

LEROBOT_VERSION="0.6.1"
VENV=".venv-lerobot"
STAMP="$VENV/.robot_rl_stamp"

py_ok() { [ -n "$1" ] && "$1" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }

find_python() {
  # 3.12 first (what this was measured with), then newer; PATH before pyenv's versions dir
  # (a pyenv shim fails for a version that is installed but not selected).
  local c root="${PYENV_ROOT:-$HOME/.pyenv}" minor
  for c in "${LEROBOT_PYTHON:-}"; do py_ok "$c" && { echo "$c"; return 0; }; done
  for minor in 12 13; do
    c="$(command -v python3.$minor || true)"
    py_ok "$c" && { echo "$c"; return 0; }
    for c in $(ls -d "$root"/versions/3.$minor.* 2>/dev/null | sort -V -r); do
      py_ok "$c/bin/python3" && { echo "$c/bin/python3"; return 0; }
    done
  done
  return 1
}

PY="$(find_python || true)"
if [ -z "$PY" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq >/dev/null 2>&1 || true
  if apt-cache show python3.12-venv >/dev/null 2>&1; then
    echo "installing Debian's python3.12"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3.12 python3.12-venv >/dev/null
    PY="$(command -v python3.12)"
  fi
fi
if [ -z "$PY" ]; then
  echo "error: lerobot $LEROBOT_VERSION needs Python >= 3.12: none found (PATH, pyenv, apt);" \
       "install one or set LEROBOT_PYTHON" >&2
  exit 1
fi

# FFmpeg shared libraries for torchcodec (Debian 12: FFmpeg 5.1). Optional: PyAV works without.
FFMPEG_DEBS=""
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  libpkg() {  # the release's plain package of an FFmpeg library, e.g. libavcodec59
    apt-cache search --names-only "^$1[0-9]+\$" 2>/dev/null | awk '{print $1}' \
      | grep -E "^$1[0-9]+\$" | sort -V | tail -1
  }
  for lib in libavcodec libavformat libavutil libswscale libswresample libavfilter libavdevice; do
    pkg="$(libpkg "$lib")"
    if [ -z "$pkg" ]; then apt-get update -qq >/dev/null 2>&1 || true; pkg="$(libpkg "$lib")"; fi
    # installed already (or its -extra variant, which provides the same library)
    if [ -n "$pkg" ] && ! dpkg -s "$pkg" >/dev/null 2>&1 \
        && ! dpkg -s "${pkg%%[0-9]*}-extra${pkg##*[!0-9]}" >/dev/null 2>&1; then
      FFMPEG_DEBS="$FFMPEG_DEBS $pkg"
    fi
  done
  if [ -n "$FFMPEG_DEBS" ]; then
    echo "installing Debian's FFmpeg libraries (for torchcodec):$FFMPEG_DEBS"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $FFMPEG_DEBS \
      >/dev/null || echo "warning: FFmpeg libraries not installed; LeRobot will decode with PyAV" >&2
  fi
fi

WANT="lerobot[dataset,feetech]==$LEROBOT_VERSION $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ] || [ ! -x "$VENV/bin/python" ]; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  echo "installing into $VENV: lerobot[dataset,feetech]==$LEROBOT_VERSION (with $("$PY" --version))"
  start=$(date +%s)
  # pip's constraints file here caps torch for our 3.11 venv; lerobot picks its own (< 2.12).
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | { grep -v "is ignored" || true; }
  # --no-cache-dir: ~3 GB of downloaded wheels would otherwise stay in pip's cache
  "$VENV/bin/python" -m pip install -q --no-cache-dir "lerobot[dataset,feetech]==$LEROBOT_VERSION" 2>&1 \
    | { grep -v "is ignored" || true; }  # pip's status survives (pipefail)
  bash scripts/share_venv_files.sh "$VENV"  # CUDA libraries in common with .venv
  echo "installed in $(( $(date +%s) - start )) s"
  echo "$WANT" > "$STAMP"
fi

# robot-rl beside it, without its dependencies (lerobot brings numpy and gymnasium; the SO-101
# adapter needs nothing else), editable so the tests run this checkout.
# (checked from / : from the repo root `import robot_rl` would find the source tree uninstalled)
if ! (cd / && "$OLDPWD/$VENV/bin/python" -c \
      "import robot_rl.hardware.so101, sys; sys.exit(not robot_rl.__file__.startswith('$PWD/'))") \
    >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip install -q --no-deps -e . 2>&1 | { grep -v "is ignored" || true; }
fi

# Smoke test (from /, as the tests run it): lerobot's dataset API and the SO-101 classes import;
# report the video decoders.
(cd / && "$OLDPWD/$VENV/bin/python" -) <<'EOF'
import importlib.metadata as md
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: F401
from lerobot.robots.so_follower import SO101Follower  # noqa: F401
import robot_rl.hardware.so101  # noqa: F401
import av
backends = ["pyav"]
try:
    import torchcodec.decoders  # noqa: F401  (loads the FFmpeg libraries)
    backends.append("torchcodec")
except Exception:  # noqa: BLE001
    pass
print(f"lerobot venv ok: lerobot {md.version('lerobot')}, av {av.__version__}, "
      f"decoders: {', '.join(backends)}")
EOF
