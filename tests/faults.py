"""Faults injected below the code under test (imported by tests in several folders)."""
import gymnasium as gym


class RaisesOnStep(gym.Wrapper):
    """An env whose `n`-th step raises `exc`, once: a robot error, a lost connection, a policy
    server failing."""

    def __init__(self, env, n: int, exc: Exception):
        super().__init__(env)
        self.n, self.exc, self.steps = n, exc, 0

    def step(self, action):
        self.steps += 1
        if self.steps == self.n:
            raise self.exc
        return self.env.step(action)
