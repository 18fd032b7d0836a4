#!/usr/bin/env bash
# Check the layers contract in .importlinter (lint-imports). scripts/test.sh runs it.
# grimp finds a package by walking its folder, so in the repo it would see robot_rl/ only and
# miss the top-level folders pyproject's package-dir maps into it (controllers/ ->
# robot_rl.controllers, ...). So the installed layout is assembled in a temp dir first.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bin="$repo/.venv/bin"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"   # not the repo, and PYTHONPATH first: the editable install must not shadow the copy
PYTHONPATH="$tmp" "$bin/python" - "$repo" <<'PY'
import pathlib, shutil, sys, tomllib

import grimp

repo, tmp = pathlib.Path(sys.argv[1]), pathlib.Path.cwd()
package_dir = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
copied = 0
for package, folder in package_dir.items():
    for path in (repo / folder).rglob("*.py"):
        target = tmp.joinpath(*package.split("."), path.relative_to(repo / folder))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        copied += 1
seen = len(grimp.build_graph("robot_rl", cache_dir=None).modules)
print(f"lint-imports: {seen} modules in robot_rl ({copied} files)")
if seen != copied:
    sys.exit(f"grimp sees {seen} modules but {copied} files were assembled: is a package "
             "missing an __init__.py?")
PY
PYTHONPATH="$tmp" "$bin/lint-imports" --no-cache --no-logo "$repo/.importlinter"
