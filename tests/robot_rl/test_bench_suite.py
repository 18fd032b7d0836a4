"""`robot-rl bench learn --task suite`, end to end on its cheapest task with a tiny budget: a
real training process per run, the JSON it writes, resuming without rerunning, the report (and
a candidate default agent's run beside it)."""
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from robot_rl.bench import report, suite

TINY = ["train.total_env_steps=300", "train.eval_every=150", "train.eval_episodes=5",
        "train.warmup_steps=50", "demos.scripted_episodes=5", "agent.compile=false",
        "train.torch_threads=1", "train.video=false"]


@pytest.mark.slow
def test_suite_runs_writes_resumes_and_reports(tmp_path):
    out = tmp_path / "suite.json"
    envs = ["robot_rl/PandaReach-v0"]
    suite.run(seeds=1, json_path=str(out), runs_dir=str(tmp_path / "runs"), overrides=TINY,
              envs=envs)
    d = json.loads(out.read_text())
    t = d["tasks"]["robot_rl/PandaReach-v0"]
    r = t["runs"][0]
    assert r["returncode"] == 0 and r["seed"] == 0
    assert [s for s, _ in r["curve"]][:1] == [150] and len(r["curve"]) in (1, 2)
    assert 100 < r["peak_rss_mb"] < 8000  # this run's own process: torch + MuJoCo
    assert t["kind"] == "state" and t["target_steps"] == 20_000
    assert t["steps_to_90"] == [r["steps"]]
    assert t["met_target"] == (r["steps"] is not None)  # a reached 90% is within 300 <= 20k
    assert d["config"]["overrides"] == TINY
    metrics = tmp_path / "runs" / "suite_PandaReach_seed0" / "metrics.jsonl"
    before = metrics.stat().st_mtime_ns
    t0 = time.monotonic()
    suite.run(seeds=1, json_path=str(out), runs_dir=str(tmp_path / "runs"), overrides=TINY,
              envs=envs)
    assert time.monotonic() - t0 < 5 and metrics.stat().st_mtime_ns == before  # nothing rerun
    # a run that fails (here: a new JSON file over the same runs dir, whose run exists and
    # ended: only a run stopped part-way is continued) stops
    # the suite with its name instead of being recorded as a run that never learned
    other = tmp_path / "other.json"
    with pytest.raises(RuntimeError, match="suite_PandaReach_seed0 failed"):
        suite.run(seeds=1, json_path=str(other), runs_dir=str(tmp_path / "runs"), overrides=TINY,
                  envs=envs)
    assert not other.exists()
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "suite.json").write_text(out.read_text())
    page = report.build(tmp_path / "bench", tmp_path / "docs")
    assert "## Every sim task, one default agent" in page and "| PandaReach | state |" in page
    assert (tmp_path / "docs" / "img" / "suite_PandaReach.png").stat().st_size > 1000
    assert "## Choosing the default agent" not in page  # no candidate yet
    # a candidate default: the same command with an override, side by side with the default
    suite.run(seeds=1, json_path=str(tmp_path / "bench" / "suite_mc_floor.json"),
              runs_dir=str(tmp_path / "candidate"), overrides=[*TINY, "agent.mc_target_floor=true"],
              envs=envs)
    page = report.build(tmp_path / "bench", tmp_path / "docs")
    study = page.split("## Choosing the default agent")[1].split("\n## ")[0]
    assert "| PandaReach | default | `suite.json` |" in study
    assert "| PandaReach | `agent.mc_target_floor=true` | `suite_mc_floor.json` |" in study
    assert (tmp_path / "docs" / "img" / "agent_study_PandaReach.png").stat().st_size > 1000


def train_children() -> list[int]:
    """The `robot-rl train` processes this test process started."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue  # not a process, or one that has just ended
        if ppid == os.getpid() and b"robot_rl.cli\0train" in cmdline:
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_a_run_stopped_part_way_is_not_recorded_and_the_next_suite_continues_it(tmp_path):
    out, runs, envs = tmp_path / "suite.json", tmp_path / "runs", ["robot_rl/PandaReach-v0"]
    # no update before the cap, so no early stop at 90%: the run must last all 300 steps
    overrides = [*TINY, "train.warmup_steps=300", "train.checkpoint_every=100000"]
    errors: list[Exception] = []

    def suite_run():
        try:
            suite.run(seeds=1, json_path=str(out), runs_dir=str(runs), overrides=overrides, envs=envs)
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=suite_run)
    thread.start()
    try:
        metrics, deadline = runs / "suite_PandaReach_seed0" / "metrics.jsonl", time.time() + 300
        while not (metrics.exists() and metrics.read_text().count('"episode"') >= 2):
            assert thread.is_alive() and time.time() < deadline, errors
            time.sleep(0.1)
        [child] = train_children()
        os.kill(child, signal.SIGTERM)  # what a session's end or `kill` does to a long run
    finally:
        thread.join(timeout=300)
        for pid in train_children():
            os.kill(pid, signal.SIGKILL)
    assert len(errors) == 1 and "was stopped before its end" in str(errors[0])
    assert not out.exists()  # not recorded as a run that ended below 90%
    suite.run(seeds=1, json_path=str(out), runs_dir=str(runs), overrides=overrides, envs=envs)
    r = json.loads(out.read_text())["tasks"]["robot_rl/PandaReach-v0"]["runs"][0]
    assert r["resumed"] and r["returncode"] == 0
    assert [s for s, _ in r["curve"]] == [150, 300]  # each evaluation once: continued, not redone


def test_an_env_outside_the_suite_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not in the suite"):
        suite.run(seeds=1, envs=["robot_rl/Nope-v0"], runs_dir=str(tmp_path))


def test_the_task_peak_rss_is_the_largest_measured_one():
    # a run recorded from a `robot-rl train` of its own has no peak RSS of the suite's child
    run = {"seed": 0, "steps": 10_000, "wall_clock_s": 2336.0, "final_success": 0.97,
           "curve": [(10_000, 0.97)], "peak_rss_mb": None}
    env = "robot_rl/PandaPegInsertVision-v0"
    assert suite.summarize(env, [run])["peak_rss_mb"] is None
    t = suite.summarize(env, [run, {**run, "seed": 1, "steps": None, "peak_rss_mb": 1500.0}])
    assert t["peak_rss_mb"] == 1500.0 and t["steps_to_90"] == [10_000, None]
    assert t["median_steps_to_90"] is None and not t["met_target"]  # one of two never reached 90%


@pytest.mark.slow
def test_suites_of_one_seed_each_run_in_parallel_on_one_json(tmp_path):
    """`--seed S` in two processes at once on one file: each run is added under a lock to the
    file as it is then, so neither overwrites the other's (both read it empty at their start)."""
    out, envs = tmp_path / "suite.json", ["robot_rl/PandaReach-v0"]
    errors = []

    def suite_of(seed):
        try:
            suite.run(seeds=3, json_path=str(out), runs_dir=str(tmp_path / "runs"),
                      overrides=TINY, envs=envs, only_seed=seed)
        except BaseException as e:  # noqa: BLE001 - reported by the assert below
            errors.append(e)
    threads = [threading.Thread(target=suite_of, args=(s,)) for s in (2, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    t = json.loads(out.read_text())["tasks"]["robot_rl/PandaReach-v0"]
    assert [r["seed"] for r in t["runs"]] == [0, 2]
    assert t["steps_to_90"] == [r["steps"] for r in t["runs"]]
    assert not list(tmp_path.glob(".suite.json.*"))  # no temporary file left
