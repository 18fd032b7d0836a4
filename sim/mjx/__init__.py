"""Batched MuJoCo XLA (MJX) versions of the sim tasks (optional: needs the `mjx` extra).

Importing this package sets one XLA flag for the CPU backend (before JAX creates it):
XLA's newer CPU fusion emitters turn MJX's unrolled per-body scalar code into kernels that run
40-140x slower than the classic emitters on this machine (measured: MJX forward kinematics of
the Panda 14 ms vs 0.1 ms of CPU time per call). A user's own `XLA_FLAGS` setting of the same
flag wins. The flag only concerns the CPU backend; GPU and TPU are unaffected.
"""
import os
import sys
import warnings

_CPU_FLAG = "--xla_cpu_use_fusion_emitters=false"
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _CPU_FLAG).strip()
    if "jax" in sys.modules:  # too late if JAX already made its backends
        try:
            from jax._src.xla_bridge import backends_are_initialized
            _late = backends_are_initialized()
        except (ImportError, AttributeError):
            _late = False
        if _late:
            warnings.warn(f"JAX started before robot_rl.sim.mjx was imported, without {_CPU_FLAG}: "
                          "MJX will run far slower on CPU. Import robot_rl.sim.mjx first or set "
                          f"XLA_FLAGS={_CPU_FLAG}", stacklevel=2)
