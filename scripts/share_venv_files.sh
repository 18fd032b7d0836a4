#!/usr/bin/env bash
# Make the files of VENV that are byte-identical to .venv's (same name, mode and owner) hard
# links to them: .venv-gymhil installs the same torch build as .venv (~5.8 GB of it CUDA
# libraries), .venv-lerobot the same CUDA libraries in part (~1.5 GB). CI disks can be small:
# a run on a disk with less free space than all venvs' copies failed with ENOSPC.
# Safe with pip: it replaces files, never rewrites them in place. Skipped where util-linux's
# `hardlink` or .venv is missing (the venvs then just take more disk).
#
#   bash scripts/share_venv_files.sh .venv-gymhil
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$1"
if [ ! -x .venv/bin/python ] || ! command -v hardlink >/dev/null; then
  echo "note: no .venv or no util-linux 'hardlink': $VENV keeps its own copies of its files" >&2
  exit 0
fi
site() { "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
# --maximize: keep the copy that is linked already, so one venv's sharing survives the next's
hardlink --quiet --ignore-time --respect-name --maximize --minimum-size 64K \
  "$(site .venv)" "$(site "$VENV")"
echo "$VENV: $(du -sh .venv "$VENV" | tail -1 | cut -f1) on disk beside .venv"
