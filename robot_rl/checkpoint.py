"""Atomic, verified checkpoints: `checkpoints/step_000001000/` with a manifest of sha256s.

A checkpoint directory is written under a temporary name and renamed into place only when
complete, so a crash never leaves a half-written checkpoint under a real name. On load every
file is checked against the manifest; a corrupt checkpoint is reported and the previous good
one is used, never silently loaded, and never overwritten by the next save.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

MANIFEST = "manifest.json"


class CheckpointError(RuntimeError):
    pass


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory: that makes a rename or a new entry in it durable (a
    file's own fsync does not cover its directory entry)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(ckpt_dir: Path) -> None:
    """Half-written checkpoints of processes that died while writing them."""
    for tmp in ckpt_dir.glob(".tmp_step_*"):
        try:
            pid = int(tmp.name.rsplit("_", 1)[1])
        except ValueError:
            pid = -1
        if pid == os.getpid() or pid <= 0 or not _pid_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)


def save_checkpoint(ckpt_dir: Path, step: int, writers: dict[str, Callable[[Path], None]],
                    keep: int = 2) -> Path:
    """`writers` maps file name -> fn(path) writing that file. Returns the final directory.
    A failed save (a full disk) removes what it wrote and raises `CheckpointError`; the
    checkpoints already there are untouched."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(ckpt_dir)
    final = ckpt_dir / f"step_{step:09d}"
    tmp = ckpt_dir / f".tmp_step_{step:09d}_{os.getpid()}"
    try:
        tmp.mkdir()
        for name, write in writers.items():
            write(tmp / name)
        manifest = {"step": step, "files": {n: _sha256(tmp / n) for n in writers}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        for p in [*tmp.iterdir(), tmp]:  # durable before the rename makes it visible
            fsync_path(p)
    except Exception as exc:  # OSError from numpy, RuntimeError from torch.save on ENOSPC
        shutil.rmtree(tmp, ignore_errors=True)
        free = shutil.disk_usage(ckpt_dir).free
        if getattr(exc, "errno", None) == errno.ENOSPC or free < (1 << 20):
            exc = f"No space left on device ({free >> 10} KiB free: {exc})"
        raise CheckpointError(f"could not write checkpoint {final.name} under {ckpt_dir}: {exc}; "
                              f"the previous checkpoints are intact") from None
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it whole
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_path(ckpt_dir)  # the rename itself survives a power cut
    for old in sorted(ckpt_dir.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def verify(path: Path) -> dict:
    m = path / MANIFEST
    if not m.exists():
        raise CheckpointError(f"{path}: no {MANIFEST} (incomplete checkpoint)")
    try:
        manifest = json.loads(m.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{m}: unreadable manifest ({exc})") from None
    for name, digest in manifest["files"].items():
        f = path / name
        if not f.exists():
            raise CheckpointError(f"{path}: missing file {name}")
        if _sha256(f) != digest:
            raise CheckpointError(f"{path}: {name} is corrupt (checksum mismatch)")
    return manifest


def latest_good(ckpt_dir: Path) -> Path | None:
    """Newest checkpoint that verifies; corrupt ones are reported on stderr and skipped."""
    for path in sorted(ckpt_dir.glob("step_*"), reverse=True):
        try:
            verify(path)
            return path
        except CheckpointError as exc:
            print(f"warning: skipping corrupt checkpoint: {exc}", file=sys.stderr)
    return None
