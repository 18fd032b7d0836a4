"""Policy adapters over real agents (SAC, BC), the LeRobot adapter without lerobot, and the
dependency direction (importing policies/ loads neither the learner nor torch)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from robot_rl.agents.bc import BCAgent, BCConfig
from robot_rl.agents.sac import SACAgent, SACConfig
from robot_rl.policies.base import AgentPolicy, batch_obs
from robot_rl.policies.bc import BCPolicy
from robot_rl.policies.lerobot import LeRobotPolicy, to_lerobot_batch
from robot_rl.policies.sac import SACPolicy

SPEC = {"state": (14,), "env_state": (6,)}


def obs():
    rng = np.random.default_rng(0)
    return {"state": rng.normal(size=14).astype(np.float32), "env_state": rng.normal(size=6).astype(np.float32)}


def test_sac_policy_acts_like_the_agent_and_samples_its_distribution():
    agent = SACAgent(SPEC, 4, SACConfig(hidden_dims=(32, 32), num_critics=2), seed=0)
    pol = SACPolicy(agent)
    np.testing.assert_allclose(pol.act(obs()), agent.act(obs(), deterministic=True), rtol=1e-6)
    samples = pol.sample(obs(), 8)
    assert samples.shape == (8, 4) and np.all(np.abs(samples) <= 1.0)
    assert np.unique(samples[:, 0]).size == 8  # independent draws, not copies


def test_bc_policy_act_is_one_sample_and_deterministic_is_the_mean():
    twins = [BCAgent(SPEC, 4, BCConfig(hidden_dims=(32,)), seed=5) for _ in range(2)]
    np.testing.assert_array_equal(BCPolicy(twins[0]).act(obs()), BCPolicy(twins[1]).sample(obs(), 1)[0])
    mean = twins[0].act(obs(), deterministic=True)
    np.testing.assert_array_equal(BCPolicy(twins[0], deterministic=True).act(obs()), mean)
    np.testing.assert_array_equal(BCPolicy(twins[0], deterministic=True).act(obs()), mean)


def test_agent_policy_rejects_objects_without_act_batch():
    with pytest.raises(TypeError, match="act_batch"):
        AgentPolicy(object())
    with pytest.raises(ValueError, match="n must be >= 1"):
        BCPolicy(BCAgent(SPEC, 4, BCConfig(hidden_dims=(8,)))).sample(obs(), 0)
    b = batch_obs(obs(), 3)
    assert b["state"].shape == (3, 14) and b["state"].flags.writeable


def test_lerobot_adapter_says_how_to_install_lerobot(monkeypatch):
    """lerobot is not installed here; a None entry in sys.modules makes the import fail the
    same way on machines where it is."""
    monkeypatch.setitem(sys.modules, "lerobot", None)
    with pytest.raises(ImportError, match="pip install lerobot"):
        LeRobotPolicy("lerobot/act_aloha_sim_transfer_cube_human")


def test_observations_map_to_lerobot_names():
    o = {"state": np.arange(14, dtype=np.float32), "env_state": np.zeros(6, np.float32),
         "front": np.full((8, 10, 3), 255, np.uint8)}
    b = to_lerobot_batch(o, n=3, instruction="pick up the red cube")
    assert b["observation.state"].shape == (3, 14) and b["observation.environment_state"].shape == (3, 6)
    img = b["observation.images.front"]
    assert img.shape == (3, 3, 8, 10) and img.dtype == torch.float32 and float(img.max()) == 1.0
    assert b["task"] == ["pick up the red cube"] * 3


def test_importing_policies_loads_neither_the_learner_nor_torch():
    code = ("import sys\n"
            "import robot_rl.policies.base, robot_rl.policies.vgps, robot_rl.policies.http\n"
            "import robot_rl.policies.sac, robot_rl.policies.bc, robot_rl.policies.lerobot\n"
            "bad = [m for m in sys.modules if m.startswith(('robot_rl.agents', 'robot_rl.train', 'torch'))]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
