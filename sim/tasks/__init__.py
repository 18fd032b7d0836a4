"""The simulated tasks, one file each: `reach.py`, `pick_cube.py`, `peg_insert.py`, `tight_insert.py`,
`relocate.py`; `so101.py` puts Reach and PickCube
on the simulated SO-101.

A task file holds everything that defines its task: the MuJoCo scene (`mjcf`), the reset
distribution (`reset`), reward and success (`score`, array maths shared with the MJX env;
`outcome` applies it to the live scene), the episode length (`max_episode_steps`, also the
gymnasium time limit) and the scripted expert that produces its demos. `base.py` holds what
they share. Tasks draw from the env's seeded generator (never global np.random) and read
privileged state through the small `World` interface, so any physics backend can run them:
sim/envs.py builds the MuJoCo env, sim/pybullet_backend.py the PyBullet one (Reach and
PickCube). Nothing here imports mujoco or jax."""
from __future__ import annotations

from robot_rl.sim.tasks.base import DOWN, TABLE_Z, ScriptedExpert, SimTask, World
from robot_rl.sim.tasks.peg_insert import PandaPegInsert, PegInsertExpert
from robot_rl.sim.tasks.pick_cube import PandaPickCube, PickCubeExpert
from robot_rl.sim.tasks.reach import PandaReach, ReachExpert
from robot_rl.sim.tasks.relocate import PandaRelocate, RelocateExpert
from robot_rl.sim.tasks.so101 import SO101PickCube, SO101Reach
from robot_rl.sim.tasks.tight_insert import PandaTightInsert, TightInsertExpert

__all__ = ["DOWN", "TABLE_Z", "World", "SimTask", "ScriptedExpert", "TASKS", "EXPERTS",
           "PandaReach", "PandaPickCube", "PandaPegInsert", "PandaRelocate", "PandaTightInsert",
           "SO101Reach", "SO101PickCube", "TightInsertExpert",
           "ReachExpert", "PickCubeExpert", "PegInsertExpert", "RelocateExpert", "make_expert", "rollout"]

TASKS: dict[str, type[SimTask]] = {"PandaReach": PandaReach, "PandaPickCube": PandaPickCube,
                                   "PandaPegInsert": PandaPegInsert, "PandaRelocate": PandaRelocate,
                                   "PandaTightInsert": PandaTightInsert,
                                   "SO101Reach": SO101Reach, "SO101PickCube": SO101PickCube}
EXPERTS: dict[str, type[ScriptedExpert]] = {"PandaReach": ReachExpert,
                                            "PandaPickCube": PickCubeExpert,
                                            "PandaPegInsert": PegInsertExpert,
                                            "PandaRelocate": RelocateExpert,
                                            "PandaTightInsert": TightInsertExpert,
                                            "SO101Reach": ReachExpert,
                                            "SO101PickCube": PickCubeExpert}


def make_expert(env, **kwargs) -> ScriptedExpert:
    """The scripted expert of `env`'s task."""
    name = env.unwrapped.task.name
    if name not in EXPERTS:
        raise ValueError(f"no scripted expert for task {name!r}; have {sorted(EXPERTS)}")
    return EXPERTS[name](env, **kwargs)


def rollout(env, expert: ScriptedExpert, seed: int):
    """One expert episode: (observations, actions, rewards, infos, success)."""
    obs, info = env.reset(seed=seed)
    expert.reset()
    observations, actions, rewards, infos = [obs], [], [], []
    done = False
    while not done:
        a = expert.act(obs)
        obs, r, term, trunc, info = env.step(a)
        observations.append(obs)
        actions.append(a)
        rewards.append(r)
        infos.append(info)
        done = term or trunc
    return observations, actions, rewards, infos, bool(info["is_success"])
