"""Kill-and-resume with a real subprocess, real SIGKILL and real checkpoint files."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from robot_rl.checkpoint import latest_good

TINY = ["env.id=robot_rl/PandaReach-v0", "agent.num_critics=2", "agent.hidden_dims=[32, 32]",
        "agent.batch_size=32", "agent.utd_ratio=1", "demos.scripted_episodes=2",
        "train.warmup_steps=20", "train.eval_every=100000", "train.video=false",
        "train.checkpoint_every=100", "train.torch_threads=1"]


def train_cmd(run_dir: Path, steps: int):
    return [sys.executable, "-m", "robot_rl.cli", "train", "--no-progress", "config/reach.yaml",
            f"name={run_dir.name}", f"runs_dir={run_dir.parent}", f"train.total_env_steps={steps}",
            *TINY]


def resume_cmd(run_dir: Path):
    return [sys.executable, "-m", "robot_rl.cli", "train", "--no-progress", "--resume", str(run_dir)]


ROOT = Path(__file__).parents[2]


def run(cmd):
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def state_of(run_dir: Path):
    ckpt = latest_good(run_dir / "checkpoints")
    agent = torch.load(ckpt / "agent.pt", weights_only=True)
    z = np.load(ckpt / "replay_online.npz")
    meta = json.loads(str(z["meta"]))
    return ckpt, agent, z, meta


def test_sigkill_then_resume_loses_and_duplicates_nothing(tmp_path):
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(run_dir, 400), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "step_000000200").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline
        time.sleep(0.2)
    time.sleep(0.5)  # let it get into the middle of the next segment
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpt = latest_good(run_dir / "checkpoints")
    assert ckpt.name in ("step_000000200", "step_000000300")
    killed_at = int(ckpt.name.split("_")[1])

    # resuming the same checkpoint twice gives the same run: every RNG and counter restored
    twin = tmp_path / "twin"
    shutil.copytree(run_dir, twin)
    run(resume_cmd(run_dir))
    run(resume_cmd(twin))
    a_ckpt, a_agent, a_z, a_meta = state_of(run_dir)
    b_ckpt, b_agent, b_z, b_meta = state_of(twin)
    assert a_ckpt.name == "step_000000400"
    for k, mod in a_agent["modules"].items():
        for name, t in mod.items():
            assert torch.equal(t, b_agent["modules"][k][name]), (k, name)
    np.testing.assert_array_equal(a_z["field__action"], b_z["field__action"])

    # every env step stored exactly once: 400 online transitions, step counter 400
    assert a_meta["trans_written"] == 400
    trainer = json.loads((a_ckpt / "trainer.json").read_text())
    assert trainer["step"] == 400
    # the episode log has no duplicated or missing ranges after the resume
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    ep = [r for r in rows if r["kind"] == "episode"]
    assert [r["episode"] for r in ep] == list(range(len(ep)))
    assert killed_at <= 400


def test_corrupt_checkpoint_reported_and_previous_used(tmp_path, capsys):
    run_dir = tmp_path / "corrupt"
    run(train_cmd(run_dir, 200))
    newest = run_dir / "checkpoints" / "step_000000200"
    with open(newest / "agent.pt", "r+b") as f:
        f.seek(100)
        f.write(b"garbage!")
    good = latest_good(run_dir / "checkpoints")
    assert good.name == "step_000000100"
    assert "corrupt" in capsys.readouterr().err
    out = run(resume_cmd(run_dir))
    assert "skipping corrupt checkpoint" in out.stderr
    assert (run_dir / "checkpoints" / "step_000000200" / "manifest.json").exists()
    assert latest_good(run_dir / "checkpoints").name == "step_000000200"  # re-done cleanly


def test_refuses_to_overwrite_a_run(tmp_path):
    run_dir = tmp_path / "exists"
    run(train_cmd(run_dir, 100))
    out = subprocess.run(train_cmd(run_dir, 100), cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "already has checkpoints" in out.stderr
