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
    with pytest.raises(ConfigError, match=r"runtime.actors=0 is out of range: it must be in \[1, inf\)"):
        load_config(None, ["runtime=ray", "runtime.actors=0"])


@pytest.mark.parametrize("override,message", [
    ("train.checkpoint_every=0", r"train.checkpoint_every=0 is out of range: it must be in \[1, inf\)"),
    ("train.eval_every=-5", r"train.eval_every=-5 is out of range"),
    ("agent.gamma=1.0", r"agent.gamma=1.0 is out of range: it must be in \(0, 1\)"),
    ("agent.gamma=.nan", "agent.gamma: expected a finite number"),
    ("agent.actor_lr=.inf", "agent.actor_lr: expected a finite number"),
    ("agent.hidden_dims=[64, 0]", r"agent.hidden_dims=0 is out of range"),
    ("agent.demo_ratio=1.5", r"agent.demo_ratio=1.5 is out of range: it must be in \[0, 1\]"),
    ("runtime.actors=0", r"runtime.actors=0 is out of range"),
    ("reset_free.stuck_after=-1", r"reset_free.stuck_after=-1 is out of range"),
])
def test_numbers_out_of_range_are_named_with_the_range(override, message):
    """`train.checkpoint_every=0` used to crash with ZeroDivisionError after the first step."""
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_numbers_in_exponent_notation_are_numbers():
    """YAML 1.1 reads `1e-3` (no dot) as a string; `agent.actor_lr=1e-3` used to be refused."""
    cfg = load_config(None, ["agent.actor_lr=1e-3", "agent.critic_lr=3E-4"])
    assert cfg.agent.actor_lr == 1e-3 and cfg.agent.critic_lr == 3e-4
    with pytest.raises(ConfigError, match="agent.actor_lr: expected a number, got 'fast'"):
        load_config(None, ["agent.actor_lr=fast"])
    with pytest.raises(ConfigError, match="agent.actor_lr: expected a finite number"):
        load_config(None, ["agent.actor_lr=nan"])


def _numeric_fields(cls, prefix=""):
    import dataclasses
    import typing
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        args = typing.get_args(tp)
        inner = [a for a in args if a is not type(None) and a is not Ellipsis] or [tp]
        if dataclasses.is_dataclass(inner[0]):
            yield from _numeric_fields(inner[0], f"{prefix}{f.name}.")
        elif any(a in (int, float) or (typing.get_origin(a) in (tuple, list) and
                                       set(typing.get_args(a)) & {int, float}) for a in inner):
            yield f"{prefix}{f.name}", f


# numbers every real value of which is meaningful, so they have no range (only finiteness)
UNBOUNDED = {"agent.log_std_min", "agent.log_std_max", "agent.reward_bias", "agent.reward_min",
             "agent.target_entropy", "agent.target_entropy_per_dim", "agent.grasp_penalty", "env.reward.scale",
             "init.policy_low", "init.policy_high", "agent.value_range"}


def test_every_numeric_config_field_has_a_range():
    from robot_rl.run_config import BCRunConfig, OfflineRunConfig
    missing = [name for cls in (RunConfig, OfflineRunConfig, BCRunConfig) for name, f in _numeric_fields(cls)
               if "range" not in f.metadata and name not in UNBOUNDED]
    assert not missing, missing
