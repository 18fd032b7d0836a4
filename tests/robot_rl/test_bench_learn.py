"""`robot-rl bench learn --task throughput`: critic updates/s against the GEMM rate of the device
the updates ran on, measured in the same run (the CUDA twin of this test is in test_cuda.py)."""
import re

import pytest
import torch

from robot_rl.bench.learn import throughput
from robot_rl.cli import main
from robot_rl.run_config import set_matmul_precision


def test_throughput_is_a_fraction_of_its_own_devices_gemm_rate(single_torch_thread):  # restores the threads
    try:
        r = throughput(seconds=1.0, threads=1, overrides=[
            "agent.compile=false", "agent.hidden_dims=[64, 64]", "train.device=cpu",
            "train.matmul_precision=high"])
    finally:
        set_matmul_precision("highest")  # process-wide: leave it as every other test expects
    assert r["device"] == "cpu" and r["float32_matmul_precision"] == "high"
    assert r["critic_updates_per_s"] > 0
    # the fraction is the updates' matmul FLOP/s over the GEMM's: below 1 on any machine
    assert r["matmul_ceiling_fraction"] == pytest.approx(
        r["critic_updates_per_s"] * r["flops_per_critic_update"] / r["gemm_flops_per_s"])
    assert 0 < r["matmul_ceiling_fraction"] < 1


def test_bench_device_that_is_not_there_is_an_error_not_a_cpu_run():
    n = torch.cuda.device_count()
    with pytest.raises(ValueError, match=rf"device 'cuda:{n}': torch sees {n} CUDA device"):
        main(["bench", "learn", "--task", "throughput", "--device", f"cuda:{n}"])


def test_matmul_precision_is_one_torch_knows():
    with pytest.raises(ValueError, match=re.escape("train.matmul_precision 'tf32': highest | high | medium")):
        set_matmul_precision("tf32")
