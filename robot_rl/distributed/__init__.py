"""Distributed actor/learner runtime on Ray (optional: needs the `ray` extra)."""
