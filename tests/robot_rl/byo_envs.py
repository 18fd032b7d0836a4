"""Small gymnasium envs written the way users write theirs (nothing of robot_rl imported), for
the bring-your-own-env tests. Importing this module registers `byo_envs:ByoReach-v0`."""
import gymnasium as gym
import numpy as np


class ByoReach(gym.Env):
    """A 2-D point reaching a goal: a goal-dict observation (`observation`/`desired_goal`/
    `achieved_goal`) plus a channel-first 3x16x16 camera nested under `pixels`; actions in
    the env's own units, velocity in [-0.1, 0.1]^2 and a `gain` in [0, 2] that scales it;
    success under `info["success"]` (no `is_success`), reward 1 on success."""
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    robot_type = "point2d"

    def __init__(self, render_mode=None, tol=0.1):
        self.render_mode, self.tol = render_mode, tol
        box = lambda n: gym.spaces.Box(-2.0, 2.0, (n,), np.float64)  # noqa: E731
        self.observation_space = gym.spaces.Dict({
            "observation": box(4), "desired_goal": box(2), "achieved_goal": box(2),
            "pixels": gym.spaces.Dict({"top": gym.spaces.Box(0, 255, (3, 16, 16), np.uint8)})})
        self.action_space = gym.spaces.Box(np.array([-0.1, -0.1, 0.0]),
                                           np.array([0.1, 0.1, 2.0]), dtype=np.float64)
        self.received = []  # every action the env was given, for the tests

    def _obs(self):
        img = np.zeros((3, 16, 16), np.uint8)
        r, c = (np.clip((self.pos + 1) * 8, 0, 15)).astype(int)
        img[0, r, c] = 255
        gr, gc = (np.clip((self.goal + 1) * 8, 0, 15)).astype(int)
        img[1, gr, gc] = 255
        return {"observation": np.concatenate([self.pos, self.goal - self.pos]),
                "desired_goal": self.goal.copy(), "achieved_goal": self.pos.copy(),
                "pixels": {"top": img}}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-0.8, 0.8, 2)
        self.goal = self.np_random.uniform(-0.8, 0.8, 2)
        return self._obs(), {}

    def step(self, action):
        action = np.asarray(action, np.float64)
        self.received.append(action.copy())
        self.pos = np.clip(self.pos + action[:2] * action[2], -1, 1)
        success = bool(np.linalg.norm(self.pos - self.goal) < self.tol)
        return self._obs(), float(success), success, False, {"success": success}

    def render(self):
        return np.repeat(np.repeat(np.moveaxis(self._obs()["pixels"]["top"], 0, -1), 4, 0), 4, 1)


def reach_policy(obs):
    """A user's scripted policy: raw observation -> action in the env's own units."""
    delta = obs["desired_goal"] - obs["achieved_goal"]
    return np.concatenate([np.clip(delta, -0.1, 0.1), [1.0]])


class ReachExpert:
    """The factory form of a policy hook: built with the env, then called per observation."""

    def __init__(self, env):
        self.env, self.calls = env, 0

    def __call__(self, obs):
        self.calls += 1
        return reach_policy(obs)


class BoxToDict(gym.ObservationWrapper):
    """The natural wrapper a user writes: their Box observation becomes a Dict."""

    def __init__(self, env):
        super().__init__(env)
        self.observation_space = gym.spaces.Dict({"state": env.observation_space})

    def observation(self, obs):
        return {"state": obs}


class SeedlessReach(ByoReach):
    """Ignores `reset(seed=...)`: draws from the global numpy RNG, as some envs do."""

    def reset(self, *, seed=None, options=None):
        self.pos, self.goal = np.random.uniform(-0.8, 0.8, 2), np.random.uniform(-0.8, 0.8, 2)
        return self._obs(), {}


class FailingEvalReach(ByoReach):
    """Breaks on the evaluation seeds (>= 1_000_000), as a flaky renderer or driver would."""

    def reset(self, *, seed=None, options=None):
        if seed is not None and seed >= 1_000_000:
            raise RuntimeError("evaluation broke")
        return super().reset(seed=seed, options=options)


class DiscreteActions(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(3)


class TextObservations(gym.Env):
    observation_space = gym.spaces.Dict({"state": gym.spaces.Box(-1, 1, (2,), np.float32),
                                         "instruction": gym.spaces.Text(20)})
    action_space = gym.spaces.Box(-1, 1, (2,), np.float32)


class UnboundedActions(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)


for _name, _limit in [("ByoReach", 40), ("SeedlessReach", 40), ("FailingEvalReach", 40),
                      ("DiscreteActions", 10), ("TextObservations", 10),
                      ("UnboundedActions", 10)]:
    if f"{_name}-v0" not in gym.registry:
        gym.register(f"{_name}-v0", entry_point=f"byo_envs:{_name}", max_episode_steps=_limit)
if "ByoReachNoLimit-v0" not in gym.registry:
    gym.register("ByoReachNoLimit-v0", entry_point="byo_envs:ByoReach")


def pendulum_still_policy(obs):
    """No torque at all (a policy whose recorded actions show exactly what was added to it)."""
    return np.zeros(1)


def pendulum_swing_policy(obs):
    """Bang-bang swing-up for Pendulum under BoxToDict; asks for more torque than the env's
    bound of 2 (the recorder clips to the bounds)."""
    return np.array([5.0 if obs["state"][2] >= 0 else -5.0])
