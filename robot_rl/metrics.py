"""Run metrics: metrics.jsonl (always), TensorBoard events (when installed), learning curve PNG."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path


class MetricsLogger:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.jsonl"
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self.tb = None

    def log(self, kind: str, step: int, **values) -> None:
        row = {"kind": kind, "step": int(step), **{k: _plain(v) for k, v in values.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "step" and math.isfinite(v):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def read(self, kind: str | None = None) -> list[dict]:
        return read_metrics(self.run_dir, kind)

    def truncate_after(self, step: int) -> None:
        """On resume: drop rows logged after the checkpoint so the log matches the state."""
        rows = [r for r in self.read() if r["step"] <= step]
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)

    def plot_curve(self) -> Path | None:
        evals = self.read("eval")
        if not evals:
            return None
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
        ax.plot([r["step"] for r in evals], [r["success_rate"] for r in evals], marker="o")
        ax.set_xlabel("env steps")
        ax.set_ylabel("eval success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.set_title(self.run_dir.name)
        fig.tight_layout()
        out = self.run_dir / "learning_curve.png"
        fig.savefig(out)
        plt.close(fig)
        return out

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(run_dir: Path, kind: str | None = None) -> list[dict]:
    """The rows of a run's metrics.jsonl (those of one `kind`, e.g. "eval"), oldest first."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    text = path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and not text.endswith("\n"):
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:  # the process died mid-write: that row never happened
            lines.pop()
    rows = [json.loads(line) for line in lines]
    return [r for r in rows if kind is None or r["kind"] == kind]


def _plain(v):
    try:
        return float(v) if not isinstance(v, (bool, int, str, type(None), list, dict)) else v
    except (TypeError, ValueError):
        return str(v)
