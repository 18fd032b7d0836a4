#!/usr/bin/env bash
# Check the layers contract in .importlinter (lint-imports). scripts/test.sh runs it.
# The top-level folders pyproject's package-dir maps into robot_rl (controllers/ ->
# robot_rl.controllers, ...) are also linked inside robot_rl/, so import-linter (grimp walks
# the package folder, following links) sees the installed layout from the repo root.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/lint-imports --no-cache
