"""Reward models and the env wrapper that applies them (see issue: reward modules)."""
