"""`robot_rl.bench.rewards.run` smoke test: tiny settings, the JSON layout the CLI promises."""
from __future__ import annotations

import json

from robot_rl.bench import rewards as bench_rewards


def test_bench_rewards_writes_ms_per_frame(tmp_path):
    res = bench_rewards.run(str(tmp_path / "bench.json"), image_size=64, batch_sizes=(1, 4),
                            repeats=1, min_frames=4, models=("classifier", "perceptual"),
                            progress=False)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["ms_per_frame"] == res["ms_per_frame"]
    for model in ("classifier", "perceptual"):
        assert set(saved["ms_per_frame"][model]) == {"1", "4"}
        assert all(v > 0 for v in saved["ms_per_frame"][model].values())
    assert saved["baseline"]["env_step_ms"] > 0 and "overhead_vs_env_step" in saved
