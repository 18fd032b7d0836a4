"""The actor/learner split as users deploy it: env actors on the robot PC, the learner on a
GPU box, a Ray cluster between them with TLS and token authentication. Two network
namespaces joined by a veth pair stand in for the two machines (10.77.0.1: learner, head;
10.77.0.2: robot PC, the only node with the `robot` resource the actors ask for). A process
without the token, or without TLS, cannot join the cluster, so it cannot forge actor batches.
Everything started here is stopped, and the namespaces deleted, also on failure."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
LEARNER_IP, ROBOT_IP = "10.77.0.1", "10.77.0.2"

pytestmark = pytest.mark.slow


def sh(*args, check=True, timeout=60, **kw):
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))}: {out.stdout[-2000:]}{out.stderr[-3000:]}")
    return out


def in_ns(ns, *args, **kw):
    return sh("ip", "netns", "exec", ns, *args, **kw)


@pytest.fixture
def two_machines():
    tag = f"{os.getpid() % 100000}"
    learner, robot = f"rrl{tag}", f"rrr{tag}"
    for ns in (learner, robot):
        sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", f"vl{tag}", "type", "veth", "peer", "name", f"vr{tag}")
        for ns, dev, ip in ((learner, f"vl{tag}", LEARNER_IP), (robot, f"vr{tag}", ROBOT_IP)):
            sh("ip", "link", "set", dev, "netns", ns)
            in_ns(ns, "ip", "addr", "add", f"{ip}/24", "dev", dev)
            in_ns(ns, "ip", "link", "set", dev, "up")
            in_ns(ns, "ip", "link", "set", "lo", "up")
        yield learner, robot
    finally:
        for ns in (learner, robot):
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def cluster_env(tmp_path):
    """TLS (our own CA, one certificate for both machines' addresses) and a token."""
    ca, node = tmp_path / "ca", tmp_path / "node"
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key",
       "-out", f"{ca}.crt", "-days", "1", "-subj", "/CN=robot-rl test CA")
    sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{node}.key", "-out",
       f"{node}.csr", "-subj", "/CN=robot-rl node")
    ext = tmp_path / "san.ext"
    ext.write_text(f"subjectAltName=IP:{LEARNER_IP},IP:{ROBOT_IP},IP:127.0.0.1,DNS:localhost\n")
    sh("openssl", "x509", "-req", "-in", f"{node}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
       "-CAcreateserial", "-out", f"{node}.crt", "-days", "1", "-extfile", str(ext))
    home = tmp_path / "home"  # no ~/.ray token from elsewhere
    home.mkdir()
    # Ray's session files, incl. the "current cluster" address file that a later local
    # ray.init() would try to join, stay out of /tmp/ray (short: socket paths are limited)
    ray_tmp = tempfile.mkdtemp(prefix="rr-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), RAY_TMPDIR=ray_tmp, RAY_USAGE_STATS_ENABLED="0", RAY_USE_TLS="1",
               RAY_TLS_SERVER_CERT=f"{node}.crt", RAY_TLS_SERVER_KEY=f"{node}.key",
               RAY_TLS_CA_CERT=f"{ca}.crt", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=secrets.token_hex(32), PYTHONUNBUFFERED="1")
    yield env
    shutil.rmtree(ray_tmp, ignore_errors=True)


JOIN = "import ray; ray.init(address='{addr}'); print('JOINED', ray.cluster_resources())"


def test_actors_on_the_robot_pc_and_the_learner_elsewhere_with_tls_and_a_token(
        two_machines, cluster_env, tmp_path):
    learner, robot = two_machines
    env = cluster_env
    addr = f"{LEARNER_IP}:6379"
    in_ns(learner, RAY, "start", "--head", f"--node-ip-address={LEARNER_IP}", "--port=6379",
          "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats", env=env,
          timeout=180)
    in_ns(robot, RAY, "start", f"--address={addr}", f"--node-ip-address={ROBOT_IP}",
          "--num-cpus=1", '--resources={"robot": 1}', "--disable-usage-stats", env=env,
          timeout=180)

    # a process on the robot's network without the token, or without TLS, cannot join
    wrong = {**env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    no_tls = {k: v for k, v in env.items() if not k.startswith("RAY_TLS") and k != "RAY_USE_TLS"}
    for name, bad, why in (("wrong token", wrong, "InvalidAuthToken"),
                           ("no TLS", no_tls, "Failed to connect to GCS")):
        out = in_ns(robot, "timeout", "20", sys.executable, "-c", JOIN.format(addr=addr),
                    env=bad, check=False, timeout=60)
        assert out.returncode != 0 and "JOINED" not in out.stdout, (name, out.stdout)
        assert why in out.stderr, (name, out.stderr[-2000:])

    # the run: the learner (and the driver, with the run directory) on the head, the env
    # actor on the robot PC, the only node with the resource it asks for
    run = in_ns(learner, sys.executable, "-m", "robot_rl.cli", "train", "--no-progress",
                "config/reach.yaml", "runtime=ray", f"runtime.address={addr}", "runtime.actors=1",
                "runtime.actor_resources={robot: 1}", "runtime.transitions_per_message=32",
                "train.total_env_steps=300", "train.warmup_steps=50", "train.eval_every=300",
                "train.eval_episodes=2", "train.checkpoint_every=300", "train.video=false",
                "train.torch_threads=1", "agent.hidden_dims=[32, 32]", "agent.num_critics=2",
                "agent.batch_size=32", "agent.utd_ratio=1", "demos.scripted_episodes=2",
                f"runs_dir={tmp_path / 'runs'}", "name=split",
                env=env, cwd=ROOT, check=False, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-4000:]
    rows = [json.loads(x) for x in (tmp_path / "runs" / "split" / "metrics.jsonl").read_text().splitlines()]
    starts = [r for r in rows if r["kind"] == "actor_start"]
    assert starts and all(r["node_ip"] == ROBOT_IP for r in starts), starts
    assert json.loads(run.stdout.strip().splitlines()[-1])["step"] >= 300
