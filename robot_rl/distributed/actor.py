"""An env actor: one process that steps its own env with a CPU copy of the policy and hands
the learner batches of transitions when asked (`collect`).

The class is plain Python; the learner wraps it with `ray.remote` (robot_rl.distributed.fleet),
so this module imports nothing of Ray. Each actor instance gets a *stream* number, unique in
the run and never reused after a restart: its episodes are seeded `episode_seed(seed, stream,
k)`, and its transitions are numbered 0, 1, 2, ... in the order it sends them, which is what
the learner's end-to-end counting checks.
"""
from __future__ import annotations

import os

import numpy as np

STREAM_SEED_SPACING = 1_000_000_000


def episode_seed(run_seed: int, stream: int, k: int) -> int:
    """Seed of the k-th episode of actor stream `stream`. Streams are 10^9 episodes apart and
    start above 10^9, so no two actors (nor a restarted one) replay a seed, and none meets the
    single-process training seeds or the evaluation seeds (both below 10^9)."""
    return run_seed * 100_003 + (stream + 1) * STREAM_SEED_SPACING + k


POLICY_MODULES = ("encoder", "actor", "grasp")  # what acting needs; the critics stay home


def policy_state(agent) -> dict:
    """The modules `SACAgent.act` uses (including the frozen input normalization, which lives in
    the encoder's buffers), as CPU tensors: what the learner broadcasts."""
    out = {}
    for name in POLICY_MODULES:
        module = getattr(agent, name)
        if module is not None:
            out[name] = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    return out


def load_policy_state(agent, state: dict) -> None:
    for name, sd in state.items():
        getattr(agent, name).load_state_dict(sd)


def _slim_info(info: dict) -> dict:
    """The info entries the learner uses (success, intervention flags, executed action,
    replay extras such as grasp_penalty): numbers, bools and small arrays; no strings, no
    images."""
    out = {}
    for k, v in info.items():
        if isinstance(v, (bool, int, float, np.bool_, np.number)):
            out[k] = v
        elif isinstance(v, np.ndarray) and v.size <= 64:
            out[k] = v
    return out


class EnvActor:
    """Steps `make_env(cfg)` with the latest broadcast policy; `collect(n)` returns the next n
    transitions (an episode continues across calls). Counters: `stepped` env steps taken,
    `sent` transitions returned to the learner; the difference is the batch in progress."""

    def __init__(self, cfg, stream: int):
        import torch

        from robot_rl.agents.sac import SACAgent
        from robot_rl.train import make_env
        torch.set_num_threads(1)  # one core per actor; the learner owns the big matmuls
        self.cfg, self.stream = cfg, stream
        self.env = make_env(cfg)
        # seed=cfg.seed builds the same frozen image trunk as the learner's (it is not
        # broadcast); the exploration noise gets a stream-specific seed
        self.agent = SACAgent(self.env.observation_space, self.env.action_space.shape[0],
                              cfg.agent, seed=cfg.seed)
        self.agent.act_generator.manual_seed(episode_seed(cfg.seed, stream, 0))
        self.rng = np.random.default_rng([cfg.seed, stream])
        self.version = -1      # policy version loaded
        self.obs = None        # None: the next step starts an episode
        self.episodes = 0      # episodes started
        self.t = 0             # step within the current episode
        self.seed = None
        self.stepped = 0
        self.sent = 0

    def ready(self) -> dict:
        """Where this actor runs (logged by the learner: which machine steps the env)."""
        import ray
        return {"pid": os.getpid(), "node_ip": ray.util.get_node_ip_address()}

    def stats(self) -> dict:
        """Counters; callable while `collect` runs (the learner gives it its own thread)."""
        return {"stream": self.stream, "pid": os.getpid(), "stepped": self.stepped,
                "sent": self.sent, "episodes": self.episodes, "policy_version": self.version}

    def collect(self, n: int, weights_box: list, version: int, random_actions: bool) -> dict:
        """Take n env steps and return them as one batch. `weights_box` is `[ObjectRef]`
        (boxed so Ray does not fetch it on every call); it is fetched only when `version`
        is newer than the loaded policy."""
        if version != self.version:
            import ray
            load_policy_state(self.agent, ray.get(weights_box[0]))
            self.version = version
        rows = []
        for _ in range(n):
            if self.obs is None:
                self.seed = episode_seed(self.cfg.seed, self.stream, self.episodes)
                self.obs, _ = self.env.reset(seed=self.seed)
                self.episodes += 1
                self.t = 0
            if random_actions:
                action = self.rng.uniform(-1, 1, self.env.action_space.shape).astype(np.float32)
            else:
                action = self.agent.act(self.obs)
            next_obs, reward, term, trunc, info = self.env.step(action)
            rows.append((self.obs, action, float(reward), next_obs, bool(term), bool(trunc),
                         _slim_info(info), self.seed, self.t))
            self.stepped += 1
            self.t += 1
            self.obs = None if (term or trunc) else next_obs
        first = self.sent
        self.sent += n
        obs, action, reward, next_obs, term, trunc, infos, seeds, ts = zip(*rows)
        keys = list(obs[0])
        return {"stream": self.stream, "first_seq": first, "sent": self.sent, "n": n,
                "policy_version": self.version,
                "obs": {k: np.stack([o[k] for o in obs]) for k in keys},
                "next_obs": {k: np.stack([o[k] for o in next_obs]) for k in keys},
                "action": np.stack(action).astype(np.float32), "reward": np.array(reward),
                "terminated": np.array(term), "truncated": np.array(trunc), "info": list(infos),
                "episode_seed": np.array(seeds, dtype=np.int64), "t": np.array(ts)}

    def close(self) -> None:
        self.env.close()


def unpack(batch: dict):
    """Yield a batch's transitions as (obs, action, reward, next_obs, terminated, truncated,
    info, episode_seed, t) in the order they were stepped."""
    obs, nxt = batch["obs"], batch["next_obs"]
    for i in range(batch["n"]):
        yield ({k: v[i] for k, v in obs.items()}, batch["action"][i], float(batch["reward"][i]),
               {k: v[i] for k, v in nxt.items()}, bool(batch["terminated"][i]),
               bool(batch["truncated"][i]), batch["info"][i], int(batch["episode_seed"][i]),
               int(batch["t"][i]))
