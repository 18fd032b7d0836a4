"""Batched MuJoCo XLA (MJX) versions of the sim tasks (optional: needs the `mjx` extra).

Importing this package sets two XLA flags for the CPU backend (before JAX creates it); a
user's own `XLA_FLAGS` setting of either flag wins. Neither concerns GPU or TPU backends.

- `--xla_cpu_use_fusion_emitters=false`: XLA's newer CPU fusion emitters turn MJX's unrolled
  per-body scalar code into kernels far slower than the classic emitters (docs/results.md).
- `--xla_cpu_multi_thread_eigen=false`: with it on, a 1024-env step hung here with every XLA
  worker idle and the caller waiting forever in block_until_ready (the same wedge of the
  Eigen pool on vmapped graphs as PyAutoLabs/PyAutoFit#1530, fixed there by this flag).
"""
import os
import sys
import warnings

_CPU_FLAGS = {"xla_cpu_use_fusion_emitters": "false", "xla_cpu_multi_thread_eigen": "false"}

_missing = [f"--{k}={v}" for k, v in _CPU_FLAGS.items() if k not in os.environ.get("XLA_FLAGS", "")]
if _missing:
    os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *_missing]).strip()
    if "jax" in sys.modules:  # too late if JAX already made its backends
        try:
            from jax._src.xla_bridge import backends_are_initialized
            _late = backends_are_initialized()
        except (ImportError, AttributeError):
            _late = False
        if _late:
            warnings.warn(f"JAX started before robot_rl.sim.mjx was imported, without "
                          f"{' '.join(_missing)}: MJX will run far slower (or hang) on CPU. "
                          f"Import robot_rl.sim.mjx first or set XLA_FLAGS accordingly.",
                          stacklevel=2)
