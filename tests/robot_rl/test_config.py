import pytest

from robot_rl.config import ConfigError
from robot_rl.run_config import RunConfig, load_config


def test_shipped_configs_load():
    """Every config in config/ loads with the schema of the command that runs it."""
    from pathlib import Path

    from robot_rl import config as cfgmod
    from robot_rl.offline import BCRunConfig, OfflineRunConfig
    schemas = {"offline_": OfflineRunConfig, "bc_": BCRunConfig}  # robot-rl offline / bc
    configs = sorted(Path(__file__).parents[2].joinpath("config").glob("*.yaml"))
    assert configs
    for path in configs:
        schema = next((c for prefix, c in schemas.items() if path.name.startswith(prefix)), RunConfig)
        assert isinstance(cfgmod.load(schema, str(path)), schema), path.name


def test_wrong_key_names_key_and_valid_ones(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("agent: {num_critic: 4}\n")
    with pytest.raises(ConfigError, match=r"unknown config key agent\.'num_critic'.*num_critics"):
        load_config(str(p))
    with pytest.raises(ConfigError, match=r"unknown config key 'trian'.*train"):
        load_config(None, ["trian.total_env_steps=5"])


def test_wrong_type_and_overrides():
    with pytest.raises(ConfigError, match=r"train\.total_env_steps: expected an integer"):
        load_config(None, ["train.total_env_steps=lots"])
    cfg = load_config(None, ["agent.hidden_dims=[64, 64]", "seed=3", "env.kwargs={reward_type: dense}"])
    assert cfg.agent.hidden_dims == (64, 64) and cfg.seed == 3
    assert cfg.env.kwargs == {"reward_type": "dense"}
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent.yaml")


def test_runtime_kind_shorthand(tmp_path):
    cfg = load_config(None, ["runtime=ray", "runtime.actors=3"])
    assert cfg.runtime.kind == "ray" and cfg.runtime.actors == 3
    cfg = load_config(None, ["runtime.actors=3", "runtime=ray"])  # either order
    assert cfg.runtime.kind == "ray" and cfg.runtime.actors == 3
    assert load_config(None).runtime.kind == "local"
    p = tmp_path / "c.yaml"
    p.write_text("runtime: ray\n")
    assert load_config(str(p)).runtime.kind == "ray"
    with pytest.raises(ConfigError, match=r"runtime.kind must be 'local' or 'ray', got 'rya'"):
        load_config(None, ["runtime=rya"])
    with pytest.raises(ConfigError, match=r"runtime.actors must be >= 1"):
        load_config(None, ["runtime=ray", "runtime.actors=0"])
