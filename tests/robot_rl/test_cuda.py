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
    t.run()
    r = Trainer(cfg, run_dir=tmp_path / "gpu", resume=True, progress=False)
    assert r.step == 100 and next(r.agent.actor.parameters()).is_cuda


def test_bench_throughput_runs_on_cuda_against_the_gpus_gemm_rate():
    from robot_rl.bench.learn import throughput
    r = throughput(seconds=2.0, overrides=["agent.compile=false", "train.device=cuda"])
    assert r["device"].startswith("cuda")
    assert 0 < r["matmul_ceiling_fraction"] < 1
