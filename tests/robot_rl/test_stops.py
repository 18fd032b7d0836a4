"""Nothing lost on any stop: SIGTERM, an exception in the loop, a full disk, a first checkpoint
killed mid-write, a metrics line cut short, fsync of the directories a checkpoint renames.
Real subprocesses, signals, checkpoint files and a real (size-limited) tmpfs."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robot_rl.checkpoint import CheckpointError, latest_good, save_checkpoint
from robot_rl.train import Trainer, load_config

from faults import RaisesOnStep
from test_resume import ROOT, TINY, resume_cmd, run, state_of, train_cmd


def counts(run_dir: Path) -> tuple[int, int, str]:
    """(the checkpoint's step counter, transitions in its online replay, its name)."""
    ckpt, _, _, meta = state_of(run_dir)
    step = json.loads((ckpt / "trainer.json").read_text())["step"]
    return step, meta["trans_written"], ckpt.name


def episodes_contiguous(run_dir: Path) -> list[int]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["episode"] for r in rows if r["kind"] == "episode"]


def test_sigterm_mid_run_saves_whole_steps_and_the_run_resumes(tmp_path):
    run_dir = tmp_path / "term"
    cmd = train_cmd(run_dir, 400) + ["train.checkpoint_every=100000"]  # no periodic checkpoint
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.time() + 300
        metrics = run_dir / "metrics.jsonl"
        while not (metrics.exists() and metrics.read_text().count('"episode"') >= 2):
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.time() < deadline
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert "SIGTERM: checkpoint saved" in out
    step, stored, name = counts(run_dir)
    assert 0 < step < 400 and stored == step and name == f"step_{step:09d}"
    run(resume_cmd(run_dir))
    assert counts(run_dir)[:2] == (400, 400)
    eps = episodes_contiguous(run_dir)
    assert eps == list(range(len(eps)))


def tiny_config(tmp_path: Path, steps: int, *extra: str):
    return load_config("config/reach.yaml", [
        *TINY, "train.checkpoint_every=100000", f"train.total_env_steps={steps}",
        f"runs_dir={tmp_path}", "name=run", *extra])


def test_an_exception_in_the_loop_saves_a_checkpoint_then_propagates(tmp_path):
    cfg = tiny_config(tmp_path, 200)
    trainer = Trainer(cfg, progress=False)
    trainer.env = RaisesOnStep(trainer.env, 130, RuntimeError("reflex: cartesian_reflex"))
    with pytest.raises(RuntimeError, match="cartesian_reflex"):
        trainer.run()
    assert counts(tmp_path / "run") == (129, 129, "step_000000129")
    Trainer(cfg, run_dir=tmp_path / "run", resume=True, progress=False).run()
    assert counts(tmp_path / "run")[:2] == (200, 200)


def _mount_helper(size: str, script: str) -> subprocess.CompletedProcess:
    """Run `script` (Python) with a `size` tmpfs mounted at $MNT in a private mount namespace:
    the mount disappears with the process, also when the test fails."""
    shell = ('set -e; MNT=$(mktemp -d); mount -t tmpfs -o size=%s tmpfs "$MNT"; '
             'MNT="$MNT" "%s" -c "$0"' % (size, sys.executable))
    return subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", shell, script],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_a_full_disk_leaves_no_partial_checkpoint_and_keeps_the_previous_one():
    script = '''
import os, json
from pathlib import Path
from robot_rl.checkpoint import CheckpointError, latest_good, save_checkpoint, verify
d = Path(os.environ["MNT"]) / "checkpoints"
blob = lambda n: (lambda p: p.write_bytes(os.urandom(n)))
save_checkpoint(d, 100, {"a.bin": blob(600_000)})
try:
    save_checkpoint(d, 200, {"a.bin": blob(600_000)})     # no room for a second copy
    raise SystemExit("the second save should have failed")
except CheckpointError as exc:
    msg = str(exc)
print(json.dumps({"msg": msg, "names": sorted(p.name for p in d.iterdir()),
                  "latest": latest_good(d).name}))
'''
    out = _mount_helper("1m", script)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert "No space left on device" in res["msg"] and "previous checkpoints are intact" in res["msg"]
    assert res["names"] == ["step_000000100"]  # no .tmp_step_* left behind
    assert res["latest"] == "step_000000100"


def test_a_training_run_on_a_full_disk_fails_clearly_and_leaves_nothing_half_written():
    script = '''
import os, json
from pathlib import Path
from robot_rl.train import Trainer, load_config
mnt = Path(os.environ["MNT"])
cfg = load_config("config/reach.yaml", %r + ["train.checkpoint_every=100", "train.total_env_steps=300",
      "runs_dir=" + str(mnt), "name=run"])
t = Trainer(cfg, progress=False)

def fill_the_disk(trainer):  # just before the step-100 checkpoint: 8 KiB left
    st = os.statvfs(mnt)
    with open(mnt / "filler", "wb") as f:
        f.write(bytes(st.f_bavail * st.f_frsize - 8192))

t.every(100, fill_the_disk)
try:
    t.run()
    err = None
except Exception as exc:
    err = type(exc).__name__ + ": " + str(exc)
ck = mnt / "run" / "checkpoints"
print(json.dumps({"err": err, "names": sorted(p.name for p in ck.iterdir())}))
''' % (TINY,)
    out = _mount_helper("64m", script)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["err"] and res["err"].startswith("CheckpointError") and "No space left" in res["err"]
    assert not [n for n in res["names"] if n.startswith(".tmp")], res["names"]
    assert "could not save a checkpoint after the error" in out.stdout


def test_a_first_checkpoint_killed_mid_write_does_not_wedge_the_rerun(tmp_path):
    """What a SIGKILL during the first save leaves: the run's config and a half-written
    temporary checkpoint of a process that is gone. Re-running (quickstart.sh resumes when
    `checkpoints/` exists) used to fail with "no usable checkpoint" on every attempt."""
    run_dir = tmp_path / "first"
    proc = subprocess.Popen(train_cmd(run_dir, 100), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (run_dir / "metrics.jsonl").exists():
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    dead_pid = proc.pid
    half = run_dir / "checkpoints" / f".tmp_step_000000100_{dead_pid}"
    half.mkdir(parents=True, exist_ok=True)
    (half / "agent.pt").write_bytes(b"\x80\x02half")
    for p in (run_dir / "checkpoints").glob("step_*"):  # killed before the first rename
        import shutil
        shutil.rmtree(p)
    out = run(resume_cmd(run_dir))
    assert "no completed checkpoint: starting it from step 0" in out.stdout
    assert counts(run_dir)[:2] == (100, 100)
    assert not list((run_dir / "checkpoints").glob(".tmp_*"))


def test_a_metrics_line_cut_short_by_a_kill_does_not_break_resume(tmp_path):
    run_dir = tmp_path / "cut"
    run(train_cmd(run_dir, 200))
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"kind": "episode", "step": 20')  # the process died mid-write
    out = run(resume_cmd(run_dir) + ["train.total_env_steps=300"])
    assert "step 200" in out.stdout
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] <= 300 and counts(run_dir)[:2] == (300, 300)


def test_renames_are_made_durable_by_fsyncing_their_directories(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    final = save_checkpoint(tmp_path / "ck", 7, {"x.npy": lambda p: np.save(p, np.arange(3))})
    assert os.stat(tmp_path / "ck").st_ino in synced        # the rename into place
    assert os.stat(final).st_ino in synced                  # the files' entries in it
    assert os.stat(final / "x.npy").st_ino in synced
    assert latest_good(tmp_path / "ck") == final
    with pytest.raises(CheckpointError, match="could not write"):
        save_checkpoint(tmp_path / "ck", 8, {"x.npy": lambda p: (_ for _ in ()).throw(OSError(28, "No space left on device"))})
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["step_000000007"]
