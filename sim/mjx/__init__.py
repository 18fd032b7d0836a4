"""Batched MuJoCo XLA (MJX) versions of the sim tasks (optional: needs the `mjx` extra)."""
