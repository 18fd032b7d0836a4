"""The GPU path, run when torch sees a CUDA device. Without one this module is reported as
skipped with the reason below (these CPU machines have none; the learner's CPU path is tested
everywhere else)."""
import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("no CUDA device here: the GPU path was not run", allow_module_level=True)

from robot_rl.train import Trainer, load_config  # noqa: E402


def test_a_run_trains_on_cuda_and_resumes_there(tmp_path):
    cfg = load_config("config/reach.yaml", [
        "agent.num_critics=2", "agent.hidden_dims=[64, 64]", "agent.batch_size=64",
        "demos.scripted_episodes=2", "train.warmup_steps=20", "train.eval_every=100000",
        "train.video=false", "train.checkpoint_every=100", "train.total_env_steps=100",
        "train.device=cuda", f"runs_dir={tmp_path}", "name=gpu"])
    t = Trainer(cfg, progress=False)
    assert next(t.agent.critic.parameters()).is_cuda
    assert t.online._mirror["state"].is_cuda  # train.replay_on_device auto: the frames fit
    t.run()
    r = Trainer(cfg, run_dir=tmp_path / "gpu", resume=True, progress=False)
    assert r.step == 100 and next(r.agent.actor.parameters()).is_cuda


def test_bench_throughput_runs_on_cuda_against_the_gpus_gemm_rate():
    from robot_rl.bench.learn import throughput
    r = throughput(seconds=2.0, overrides=["agent.compile=false", "train.device=cuda"])
    assert r["device"].startswith("cuda")
    assert 0 < r["matmul_ceiling_fraction"] < 1


def test_batches_from_frames_on_the_gpu_and_through_pinned_memory_equal_the_host_batches():
    import numpy as np

    from robot_rl.data.buffer import ReplayBuffer, place_frames
    spec = {"state": ((3,), np.float32), "front": ((8, 8, 3), np.uint8)}
    bufs = [ReplayBuffer(50, spec, 2) for _ in range(3)]
    rng = np.random.default_rng(0)
    for t in range(60):
        obs = {"state": rng.normal(size=3).astype(np.float32),
               "front": rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)}
        nxt = {k: v + 1 for k, v in obs.items()}
        for b in bufs:
            b.insert(obs, np.zeros(2, np.float32), float(t), nxt, terminated=t % 7 == 6)
    assert place_frames([bufs[1]], "cuda", None)
    host = bufs[0].sample(64, np.random.default_rng(1), as_torch=True, n_step=3)
    for buf in bufs[1:]:  # frames on the GPU; host frames copied through pinned memory
        got = buf.sample(64, np.random.default_rng(1), as_torch=True, device="cuda", n_step=3)
        for k in ("reward", "rewards", "action"):
            assert got[k].is_cuda and torch.equal(got[k].cpu(), host[k])
        for k in spec:
            assert got["obs"][k].is_cuda and torch.equal(got["obs"][k].cpu(), host["obs"][k])
            assert torch.equal(got["next_obs"][k].cpu(), host["next_obs"][k])
