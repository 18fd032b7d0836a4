"""Distributed actors + learner on a real local Ray cluster (2 CPUs, loopback), real MuJoCo
envs in the actor processes, real SIGKILLs of actor and learner processes."""
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from robot_rl.run_config import RuntimeConfig, load_config
from robot_rl.train import resume, train

TINY = ["agent.hidden_dims=[32, 32]", "agent.batch_size=32", "agent.utd_ratio=1",
        "demos.scripted_episodes=2", "train.warmup_steps=20", "train.eval_every=100000",
        "train.eval_episodes=2", "train.video=false", "train.torch_threads=1",
        "runtime=ray", "runtime.actors=2", "runtime.transitions_per_message=8",
        "runtime.weight_sync_every=20"]


@pytest.fixture(scope="module")
def ray_cluster():
    from robot_rl.distributed.runtime import init_ray
    assert init_ray(RuntimeConfig(num_cpus=2))
    import ray
    yield ray
    ray.shutdown()


def rows(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def online_transitions(run_dir: Path) -> int:
    import numpy as np

    from robot_rl.checkpoint import latest_good
    z = np.load(latest_good(run_dir / "checkpoints") / "replay_online.npz")
    return json.loads(str(z["meta"]))["trans_written"]


def assert_counts_match(run_dir: Path, total: int) -> dict:
    """sent == received == stored == what the replay buffer holds, in total and per stream;
    the live actors' own counters agree with the learner's."""
    final = rows(run_dir, "transport")[-1]
    assert final["sent"] == final["received"] == final["stored"] == total, final
    assert final["sequence_errors"] == 0 and final["inflight"] == 0
    assert online_transitions(run_dir) == total
    for s in final["streams"].values():
        assert s["sent"] == s["received"] == s["stored"], final["streams"]
    for a in final["actors"]:  # idle at the end: nothing stepped that was not sent
        mine = final["streams"][str(a["stream"])]
        assert a["stepped"] == a["sent"] == mine["sent"], (a, mine)
    return final


def test_ray_binds_loopback(ray_cluster):
    ray = ray_cluster
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    assert ray.cluster_resources()["CPU"] == 2


def test_killed_actor_is_replaced_and_counts_match(ray_cluster, tmp_path):
    """Rule: transitions an actor returned are never lost (they are in Ray's object store);
    a killed actor loses only the batch it was stepping: at most transitions_per_message."""
    ray = ray_cluster
    from robot_rl.distributed.runtime import start_learner
    n_msg, total = 8, 800  # multiples of n_msg: every request is a full batch
    cfg = load_config("config/reach.yaml", TINY + [f"runs_dir={tmp_path}", "name=kill",
                                                   f"train.total_env_steps={total}",
                                                   "train.checkpoint_every=200"])
    learner = start_learner(cfg, tmp_path / "kill", resume=False)
    st = ray.get(learner.train_for.remote(1.0))
    while st["step"] < 150:  # short calls: the kill must land well before the run's end
        st = ray.get(learner.train_for.remote(0.1))
    victim = ray.get(learner.actor_stats.remote())[0]
    os.kill(victim["pid"], signal.SIGKILL)
    while ray.get(learner.transport.remote())["totals"]["actor_restarts"] == 0:
        assert not st["done"], "the run ended before the learner noticed the death"
        st = ray.get(learner.train_for.remote(0.2))  # the learner notices the death
    assert not st["done"]
    # wait (learner idle) until the replacement has built its env, so it takes part
    assert {a["stream"] for a in ray.get(learner.actor_stats.remote())} == {1, 2}
    while not st["done"]:
        st = ray.get(learner.train_for.remote(1.0))
    ray.kill(learner)
    run = tmp_path / "kill"

    final = assert_counts_match(run, total)
    assert final["actor_restarts"] == 1 and final["num_streams"] == 3
    restart = rows(run, "actor_restart")
    assert len(restart) == 1 and restart[0]["dead_stream"] == victim["stream"]
    assert restart[0]["new_stream"] == 2 and restart[0]["slot"] == 0
    dead = final["streams"][str(victim["stream"])]
    # every step the victim had taken when we looked was delivered, except at most the batch
    # it was stepping when it died
    assert dead["sent"] >= victim["stepped"] - n_msg, (dead, victim)
    assert dead["sent"] % n_msg == 0  # only whole batches arrive
    live = {a["stream"] for a in final["actors"]}
    assert live == {1, 2}
    # seeds: distinct across actors and the replacement (new stream, new seeds)
    eps = rows(run, "episode")
    seeds = [e["episode_seed"] for e in eps]
    assert len(seeds) == len(set(seeds))
    # the replacement took part (its first episode may still be running when the run ends)
    assert {0, 1} <= {e["stream"] for e in eps} <= {0, 1, 2}
    assert final["streams"]["2"]["sent"] > 0
    assert all(e["episode_seed"] // 10**9 == e["stream"] + 1 for e in eps)


def test_learner_killed_resumes_checkpoint_then_resume_continues(ray_cluster, tmp_path):
    ray = ray_cluster
    run = tmp_path / "lrn"
    cfg = load_config("config/reach.yaml", TINY + [f"runs_dir={tmp_path}", "name=lrn",
                                                   "train.total_env_steps=500",
                                                   "train.checkpoint_every=100",
                                                   "runtime.actors=1"])
    result = {}
    t = threading.Thread(target=lambda: result.update(train(cfg, progress=False)))
    t.start()
    deadline = time.time() + 120
    # the pid comes from the log: asking the learner would queue behind its training call
    # (a Ray actor runs one call at a time) and could let the run finish before the kill
    starts = []
    while not starts:
        assert t.is_alive() and time.time() < deadline
        time.sleep(0.05)
        try:
            starts = rows(run, "learner_start")
        except (FileNotFoundError, ValueError):  # not written yet / a line half-written
            pass
    pid = starts[0]["pid"]
    while not (run / "checkpoints" / "step_000000200").exists():
        assert t.is_alive() and time.time() < deadline
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    t.join(timeout=150)
    assert not t.is_alive() and result["step"] == 500, result
    # the restarted learner came from a checkpoint (200 or later), not from scratch
    starts = rows(run, "learner_start")
    assert [(s["resumed"], s["restarted"]) for s in starts] == [(False, False), (True, True)]
    assert starts[1]["step"] >= 200
    trains = rows(run, "transport")
    assert_counts_match(run, 500)
    steps = [e["step"] for e in rows(run, "episode")]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # log truncated at resume
    assert trains[-1]["num_streams"] == 2  # a new actor (new stream) after the restart

    # `robot-rl train --resume RUN_DIR` path: continue the finished run to 700 steps
    out = resume(run, progress=False, overrides=["train.total_env_steps=700"])
    assert out["step"] == 700
    final = assert_counts_match(run, 700)
    assert final["num_streams"] == 3


@pytest.mark.slow
def test_two_actors_train_reach_to_90_percent(ray_cluster, tmp_path):
    cfg = load_config("config/reach_ray.yaml", [f"runs_dir={tmp_path}", "train.video=false"])
    assert cfg.runtime.kind == "ray" and cfg.runtime.actors == 2
    result = train(cfg, progress=False)
    assert result["eval_success"] >= 0.9, result
    run = tmp_path / "reach_ray"
    final = assert_counts_match(run, result["step"])
    assert final["actor_restarts"] == 0
    eps = rows(run, "episode")
    assert {e["actor"] for e in eps} == {0, 1}  # both actors contributed
    seeds = [e["episode_seed"] for e in eps]
    assert len(seeds) == len(set(seeds))


def test_a_real_arm_is_refused_before_anything_connects():
    """Two Ray actors (and the learner, which builds the env for its spaces) would each open the
    one robot. Refused before any process starts or any connection is tried."""
    config = Path(__file__).resolve().parents[2] / "config" / "franka_peg_insert.yaml"
    cfg = load_config(str(config), ["runtime=ray", "env.kwargs.host=192.0.2.1"])  # TEST-NET: nothing there
    with pytest.raises(ValueError, match="a real arm, is refused"):
        train(cfg)
