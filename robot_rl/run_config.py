"""The run config schema: every key a `config/*.yaml` of `robot-rl train` may set.

`RunConfig` is the whole file; each section is a dataclass below, and `SACConfig` is its
`agent` section. `load_config` reads a YAML plus `key.sub=value` overrides through the loader
in `robot_rl.config`, so a wrong key is an error naming it and the valid ones. Every field
carries its one-line description in `metadata["help"]` (see `setting`), from which the
configuration reference in the docs is generated.

Only the standard library and `robot_rl.config` are imported: reading a config never pulls in
torch or an env.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, List, Mapping, Optional, Tuple

from robot_rl import config as cfgmod


def setting(default: Any = dataclasses.MISSING, help: str = "", factory: Any = dataclasses.MISSING,
            range: str | None = None):
    """A config field with its one-line description (`metadata["help"]`); `factory` for a
    mutable default such as `dict`; `range` the interval its numbers must lie in, e.g.
    "[1, inf)" (checked by the loader, shown in the reference)."""
    meta = {"help": help, **({"range": range} if range else {})}
    return dataclasses.field(default=default, default_factory=factory, metadata=meta)


POSITIVE, COUNT, NONNEGATIVE, FRACTION = "(0, inf)", "[1, inf)", "[0, inf)", "[0, 1]"


def _require(value: str, key: str, examples: str) -> None:
    if not value:
        raise ValueError(f"{key} is required (e.g. {examples})")


def resolve_device(name: str):
    """`auto` -> CUDA when torch sees one, else CPU; an explicit device that is not there is an
    error that says so (not a silent fall-back to CPU)."""
    import torch
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"device {name!r}: {exc} (auto | cpu | cuda | cuda:N | mps)") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count()
        if (dev.index or 0) >= n:
            raise ValueError(f"device {name!r}: torch sees {n} CUDA device(s) (torch "
                             f"{torch.__version__}, CUDA build: {torch.version.cuda})")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r}: MPS is not available in this torch build")
    return dev


def set_matmul_precision(name: str) -> None:
    """torch's float32 matmul precision for the whole process; off (fp32) unless a run asks."""
    import torch
    if name not in ("highest", "high", "medium"):
        raise ValueError(f"train.matmul_precision {name!r}: highest | high | medium")
    torch.set_float32_matmul_precision(name)


# ---------------------------------------------------------------------------- agent
@dataclass
class SACConfig:
    """`agent`: the SAC/RLPD learner (robot_rl/agents/sac.py)."""
    # --- networks
    hidden_dims: Tuple[int, ...] = setting((256, 256), "hidden layer sizes of the critics (and of the actor)",
                                           range=COUNT)
    actor_hidden_dims: Optional[Tuple[int, ...]] = setting(None, "actor hidden layers; None: hidden_dims", range=COUNT)
    activation: str = setting("relu", "activation of every MLP")
    critic_layer_norm: bool = setting(True, "LayerNorm in the critics (RLPD)")
    critic_residual_blocks: int = setting(0, "BRO-style residual blocks (Linear-LN-act-Linear-LN plus "
                                             "the input) after the critics' hidden layers", range=NONNEGATIVE)
    actor_layer_norm: bool = setting(True, "LayerNorm in the actor")
    num_critics: int = setting(2, "critic ensemble size (RLPD uses 10; 2 learns faster per second here)", range=COUNT)
    critic_subsample: Optional[int] = setting(2, "target critics drawn for the min of the TD target; None: all",
                                              range=COUNT)
    value_bins: int = setting(0, "HL-Gauss classification critics over this many values spanning "
                                 "value_range (cross-entropy to a Gaussian around each TD target); "
                                 "0: regression critics (squared error)", range=NONNEGATIVE)
    value_range: Tuple[float, float] = setting((0.0, 1.0), "the values value_bins span, in the critics' "
                                                "(scaled) reward units; TD targets are clipped to it (plus half a bin). "
                                                "(0, 1): a 0/1 success reward that ends the episode")
    log_std_min: float = setting(-5.0, "lower bound of the actor's log std")
    log_std_max: float = setting(2.0, "upper bound of the actor's log std")
    fourier_features: int = setting(0, "sin/cos pairs of random Fourier features of the normalized "
                                       "vector inputs, beside them (fine-scale values); 0: off",
                                    range=NONNEGATIVE)
    fourier_scale: float = setting(3.0, "std of the Fourier frequencies, cycles per input std",
                                   range=POSITIVE)
    # --- image encoder
    image_encoder: str = setting("conv", "conv | pretrained | none (images ignored)")
    image_feature_dim: int = setting(64, "features per image after the encoder head", range=COUNT)
    conv_filters: Tuple[int, ...] = setting((32, 32, 32, 32), "conv encoder: channels per layer", range=COUNT)
    conv_strides: Tuple[int, ...] = setting((2, 2, 2, 1), "conv encoder: stride per layer", range=COUNT)
    conv_pooling: str = setting("flatten", "conv encoder output: flatten | spatial_softmax | avg")
    pretrained_name: str = setting("resnet18", "frozen torchvision trunk of image_encoder: pretrained")
    pretrained_weights: Optional[str] = setting(
        None, "torchvision weights id (DEFAULT) or a local state_dict path; None: random")
    use_target_encoder: bool = setting(
        False, "encode next observations with a Polyak target encoder; False: the online one, no grad (DrQ-v2)")
    drq_pad: int = setting(4, "DrQ random-shift padding in pixels; 0: no augmentation", range=NONNEGATIVE)
    # --- optimisation
    actor_lr: float = setting(3e-4, "actor Adam learning rate", range=POSITIVE)
    critic_lr: float = setting(3e-4, "critic (and encoder) Adam learning rate", range=POSITIVE)
    temp_lr: float = setting(3e-4, "temperature Adam learning rate", range=POSITIVE)
    gamma: float = setting(0.97, "discount", range="(0, 1)")
    reward_scale: float = setting(1.0, "the critics learn from reward_scale * r + reward_bias "
                                       "(match the offline run an `init.from` critic was trained with)", range=POSITIVE)
    reward_bias: float = setting(0.0, "see reward_scale")
    tau: float = setting(0.005, "Polyak rate of the target critics", range="(0, 1]")
    init_temperature: float = setting(0.01, "initial alpha (SERL's; a larger one swamps a 0/1 sparse reward)",
                                      range=POSITIVE)
    target_entropy: Optional[float] = setting(None, "None: target_entropy_per_dim x the continuous action dims")
    target_entropy_per_dim: float = setting(-0.5, "the temperature's entropy target per continuous action "
                                                  "dim (SERL/RLPD: -0.5; SAC: -1, a less noisy policy)")
    backup_entropy: bool = setting(False, "subtract alpha * log-prob in the TD target")
    mc_target_floor: bool = setting(
        False, "floor each TD target at the Monte-Carlo return of the rest of its episode (MCAC): "
               "a demo's or a successful episode's value is never bootstrapped below what was "
               "achieved, which stops the min-of-critics pessimism dragging sparse-reward values down")
    bc_weight: float = setting(0.0, "weight of a Q-filtered behaviour-cloning term in the actor loss "
                                    "(Nair et al. 2018): the actor's mean action is pulled towards each "
                                    "batch action the critics value above the actor's own; 0: off",
                               range=NONNEGATIVE)
    n_step: int = setting(1, "TD targets over up to n_step rewards of the same episode, then "
                             "gamma^k times the bootstrap (n-step returns; uncorrected off-policy)",
                          range=COUNT)
    grad_clip_norm: Optional[float] = setting(None, "clip each network's gradient to this norm; None: off",
                                              range=POSITIVE)
    # --- Cal-QL's online phase (robot_rl/agents/conservative.py); 0: plain SAC/RLPD
    cql_alpha: float = setting(0.0, "weight of the conservative term during online training "
                                    "(Cal-QL fine-tuning: the offline run's cql_alpha); 0: off", range=NONNEGATIVE)
    cql_alpha_end: Optional[float] = setting(None, "anneal cql_alpha linearly to this over "
                                                   "cql_anneal_steps critic updates; None: kept", range=NONNEGATIVE)
    cql_anneal_steps: int = setting(0, "critic updates of the cql_alpha -> cql_alpha_end schedule", range=NONNEGATIVE)
    cql_calibrated: bool = setting(True, "Cal-QL's Monte-Carlo lower bound on policy-action "
                                         "values; false: plain CQL")
    cql_n_actions: int = setting(4, "sampled actions per state and kind (uniform, at s, at s')", range=COUNT)
    cql_temperature: float = setting(1.0, "temperature of the logsumexp", range=POSITIVE)
    cql_importance_sample: bool = setting(True, "weight samples by their proposal densities (CQL(H))")
    reward_min: float = setting(0.0, "lowest raw reward: a time-limited episode's bound assumes "
                                     "it forever after the cut")
    # --- schedule / data (used by the training loop; actor_update_every by the agent)
    utd_ratio: int = setting(4, "critic updates per env step", range=COUNT)
    actor_update_every: Optional[int] = setting(None, "critic steps per actor step; None: utd_ratio", range=COUNT)
    batch_size: int = setting(256, "transitions per update", range=COUNT)
    demo_ratio: float = setting(0.5, "fraction of each batch drawn from the demo buffer (RLPD)", range=FRACTION)
    # --- performance
    compile: bool = setting(False, "each update as one torch.compile graph (robot_rl/agents/compiled_update.py)")
    compile_mode: Optional[str] = setting(None, "torch.compile mode; None: its default")
    fused_adam: bool = setting(True, "fused torch Adam kernels on CPU/CUDA")
    # --- HIL-SERL discrete gripper
    grasp_critic: bool = setting(False, "the last action dim is a gripper command learned by a DQN head (HIL-SERL)")
    grasp_hidden_dims: Optional[Tuple[int, ...]] = setting(None, "grasp critic hidden layers; None: hidden_dims",
                                                           range=COUNT)
    grasp_penalty: float = setting(-0.02, "added to the grasp reward for each open/close command")
    grasp_epsilon: float = setting(0.0, "epsilon-greedy gripper exploration while training", range=FRACTION)

    def __post_init__(self) -> None:
        for f in ("hidden_dims", "actor_hidden_dims", "conv_filters", "conv_strides", "grasp_hidden_dims"):
            v = getattr(self, f)
            if v is not None:
                setattr(self, f, tuple(int(x) for x in v))
        if self.critic_subsample is not None and not 1 <= self.critic_subsample <= self.num_critics:
            raise ValueError("critic_subsample must be in [1, num_critics]")
        if self.image_encoder not in ("conv", "pretrained", "none"):
            raise ValueError(f"unknown image_encoder {self.image_encoder!r}")
        if self.cql_alpha_end is not None and self.cql_anneal_steps < 1:
            raise ValueError("agent.cql_alpha_end needs agent.cql_anneal_steps >= 1")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SACConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown SACConfig fields: {sorted(unknown)}")
        return cls(**dict(d))


# ---------------------------------------------------------------------------- env
@dataclass
class RewardConfig:
    """`env.reward`: a learned reward model in place of (or added to) the env's reward
    (rewards/base.py: `make_reward_model`, `RewardWrapper`)."""
    name: str = setting("", "clip | classifier | perceptual | vlm_success | a registered name")
    kwargs: dict = setting(help="the model's own settings (e.g. classifier: {path: clf.pt}); "
                                "each model checks its own", factory=dict)
    mode: str = setting("replace", "replace: the model's reward only; add: env reward + model reward")
    terminate_on_success: bool = setting(False, "end the episode when the model says success")
    scale: float = setting(1.0, "multiplies the model's reward")
    success_to_info: bool = setting(False, "report the model's success as info['is_success']")
    on_invalid: str = setting("raise", "a non-finite model reward: raise, or env (fall back to the env's reward)")
    model_ends_episodes: bool = setting(
        False, "the model's success alone ends episodes (the env's own termination is ignored)")

    def __post_init__(self) -> None:
        _require(self.name, "env.reward.name", "classifier")


@dataclass
class TeleopConfig:
    """`env.teleop`: a human can take over during training (HIL-SERL interventions).
    `env.teleop: spacemouse` is short for `env.teleop.kind: spacemouse`."""
    kind: str = setting("", "spacemouse | keyboard | gamepad | so101_leader, or several joined with +")
    kwargs: dict = setting(help="the device's settings (hardware/teleop: make_teleop); with several "
                                "devices one mapping per device name", factory=dict)
    record_interventions: Optional[str] = setting(
        None, "LeRobotDataset directory that records every training episode")

    def __post_init__(self) -> None:
        _require(self.kind, "env.teleop.kind", "spacemouse, keyboard, gamepad or so101_leader")


@dataclass
class EnvConfig:
    """`env`: any gymnasium env (robot_rl/envs.py adapts it to the learner)."""
    id: str = setting("robot_rl/PandaPickCube-v0", "gymnasium id, or 'module:EnvId' (imports module first)")
    kwargs: dict = setting(help="passed to gymnasium.make as is: any env's own keyword arguments, "
                                "so not checked here", factory=dict)
    wrappers: list = setting(help="'module:callable' called with the env, or {'module:callable': {kwargs}}",
                             factory=list)
    max_episode_steps: Optional[int] = setting(None, "adds a TimeLimit (an env without one never ends)", range=COUNT)
    success_key: Optional[str] = setting(
        None, "info key of success; None: is_success, success, else a positive reward on a terminating step")
    fps: Optional[int] = setting(None, "datasets' fps; None: metadata['render_fps']", range=COUNT)
    robot_type: Optional[str] = setting(None, "datasets' robot_type; None: from the env")
    instruction: Optional[str] = setting(None, "datasets' task text; None: the task's, else the id")
    teleop: Optional[TeleopConfig] = setting(None, "human interventions; None: none")
    reward: Optional[RewardConfig] = setting(None, "learned reward model; None: the env's reward")


# ---------------------------------------------------------------------------- run
@dataclass
class DemoConfig:
    """`demos`: the demonstrations that fill the demo buffer (RLPD)."""
    dataset: Optional[str] = setting(None, "LeRobotDataset path; None: record scripted demos")
    scripted_episodes: int = setting(20, "successful scripted episodes to record (0: no demos)", range=NONNEGATIVE)
    scripted_noise: float = setting(0.0, "action noise of the scripted expert", range=NONNEGATIVE)
    policy: Optional[str] = setting(
        None, "'module:callable' scripted policy for any env (obs -> action in the env's units, "
              "or a factory taking the env); None: our sim task's expert")
    key_map: dict = setting(help="dataset feature -> observation key", factory=dict)


@dataclass
class TrainConfig:
    """`train`: the training loop."""
    total_env_steps: int = setting(10_000, "env steps of the run", range=COUNT)
    warmup_steps: int = setting(100, "env steps before the first update", range=NONNEGATIVE)
    random_steps: int = setting(0, "uniform random actions at the start", range=NONNEGATIVE)
    replay_capacity: int = setting(200_000, "transitions per replay buffer (online and demo)", range=COUNT)
    eval_every: int = setting(1_000, "env steps between evaluations", range=COUNT)
    eval_episodes: int = setting(20, "episodes per evaluation", range=COUNT)
    eval_seed: int = setting(1_000_000, "held-out evaluation seeds: eval_seed + i", range=NONNEGATIVE)
    checkpoint_every: int = setting(1_000, "env steps between checkpoints", range=COUNT)
    video: bool = setting(True, "mp4 of the first episode of every evaluation")
    stop_at_success: Optional[float] = setting(None, "end early once evaluation success >= this", range=FRACTION)
    normalize_obs: bool = setting(True, "freeze input normalization from demos + warm-up data")
    device: str = setting("auto", "where the learner computes: auto (CUDA when present, else CPU) | "
                                  "cpu | cuda | cuda:N | mps; env actors always act on CPU")
    matmul_precision: str = setting("highest", "float32 matmuls: highest (fp32) | high (TF32 "
                                               "on CUDA GPUs that have it) | medium (bf16 inputs)")
    replay_on_device: Optional[bool] = setting(None, "replay frames kept on the learner's device: "
                                                     "true | false | null (auto: on a GPU when they "
                                                     "take <= half its free memory)")
    torch_threads: int = setting(2, "torch CPU threads", range=COUNT)


@dataclass
class RuntimeConfig:
    """`runtime`: where the run executes. `local`: this process steps the env and learns.
    `ray`: `actors` env processes and one learner as Ray actors (robot_rl/distributed);
    `runtime=ray` on the command line is short for `runtime.kind=ray`."""
    kind: str = setting("local", "local | ray")
    address: Optional[str] = setting(None, "existing Ray cluster (auto, HOST:PORT); None: start one")
    num_cpus: Optional[int] = setting(None, "CPUs of a locally started Ray; None: this machine's", range=COUNT)
    actors: int = setting(2, "env actor processes", range=COUNT)
    weight_sync_every: int = setting(50, "learner updates between policy broadcasts to the actors", range=COUNT)
    transitions_per_message: int = setting(
        64, "env steps per batch an actor sends (fewer, larger messages leave the cores to the envs)", range=COUNT)
    max_inflight: int = setting(2, "requested, unreceived batches per actor (backpressure)", range=COUNT)
    actor_timeout_s: float = setting(300.0, "a batch later than this: the actor is killed and replaced", range=POSITIVE)
    max_actor_restarts: int = setting(100, "replacements of dead actors before the run fails", range=NONNEGATIVE)
    max_learner_restarts: int = setting(3, "learner process restarts (each resumes its checkpoint)", range=NONNEGATIVE)
    actor_cpus: float = setting(1.0, "Ray CPUs reserved per env actor", range=POSITIVE)
    actor_resources: dict = setting(help="Ray custom resources each env actor needs, e.g. {robot: 1}: "
                                         "actors run only on nodes started with them (`ray start "
                                         "--resources`), such as the robot PC", factory=dict)
    learner_cpus: float = setting(
        0.0, "Ray CPUs reserved for the learner (it runs on the driver's node, where the run directory is)",
        range=NONNEGATIVE)

    def __post_init__(self) -> None:
        if self.kind not in ("local", "ray"):
            raise ValueError(f"runtime.kind must be 'local' or 'ray', got {self.kind!r}")


@dataclass
class ResetFreeConfig:
    """`reset_free`: a forward and a backward learner share one env without resets between
    episodes (robot_rl/reset_free.py); the env's task must have both directions
    (e.g. robot_rl/PandaRelocate-v0)."""
    enabled: bool = setting(False, "train reset-free with one learner per direction")
    directions: Tuple[str, ...] = setting(("forward", "backward"), "the task's two directions, forward first")
    full_reset_every: int = setting(0, "episodes between scheduled real resets (0: never)", range=NONNEGATIVE)
    stuck_after: int = setting(10, "failed episodes in a row of one direction that count as stuck (0: never)",
                               range=NONNEGATIVE)
    on_stuck: str = setting("scripted", "scripted: reset the env (sim); human: wait for the operator (real arm)")
    home_arm: bool = setting(True, "the arm returns to its start pose between episodes, the scene "
                                   "stays (SERL); false: nothing moves")

    def __post_init__(self) -> None:
        self.directions = tuple(self.directions)
        if len(self.directions) != 2:
            raise ValueError(f"reset_free.directions needs two directions, got {self.directions}")
        if self.on_stuck not in ("scripted", "human"):
            raise ValueError(f"reset_free.on_stuck must be scripted or human, got {self.on_stuck!r}")


@dataclass
class InitConfig:
    """`init`: start the learner from an earlier run or a pretrained policy instead of from
    scratch (offline-to-online fine-tuning). `init.from=SOURCE` on the command line."""
    from_: Optional[str] = setting(
        None, "a `robot-rl offline` run directory (Cal-QL / CQL / IQL: its critic.pt, or the file); "
              "or a policy: a `robot-rl bc` run (its policy.pt) or an http(s):// policy server, "
              "run in the env and distilled into the actor")
    critic: bool = setting(True, "take the critic ensemble (and its target) from an offline run")
    actor: bool = setting(True, "take the actor and temperature (Cal-QL / CQL runs)")
    rollouts: int = setting(20, "a policy source: episodes it runs in the env before RL (stored in "
                                "the replay, counted as env steps)", range=COUNT)
    distill_steps: int = setting(2000, "a policy source: behaviour-cloning steps fitting the actor "
                                       "to its rollouts' actions", range=NONNEGATIVE)
    instruction: Optional[str] = setting(None, "a policy server: the language instruction sent with every request")
    timeout: float = setting(10.0, "a policy server: seconds to wait for each reply", range=POSITIVE)
    policy_low: Optional[List[float]] = setting(
        None, "a policy whose actions are not in the env's units: its action box (low), mapped "
              "onto the learner's [-1, 1]")
    policy_high: Optional[List[float]] = setting(None, "... and its high end")



@dataclass
class RunConfig:
    """A `robot-rl train` config file."""
    name: str = setting("run", "run directory name under runs_dir")
    seed: int = setting(0, "seeds networks, episodes and demos", range=NONNEGATIVE)
    runs_dir: str = setting("runs", "where run directories go")
    env: EnvConfig = setting(help="the env", factory=EnvConfig)
    agent: SACConfig = setting(help="the SAC/RLPD learner", factory=SACConfig)
    demos: DemoConfig = setting(help="demonstrations", factory=DemoConfig)
    train: TrainConfig = setting(help="the training loop", factory=TrainConfig)
    runtime: RuntimeConfig = setting(help="local or distributed (Ray)", factory=RuntimeConfig)
    init: InitConfig = setting(help="start from an earlier run", factory=InitConfig)
    reset_free: ResetFreeConfig = setting(help="reset-free training, forward and backward", factory=ResetFreeConfig)


def load_config(path: str | None, overrides: list[str] = ()) -> RunConfig:
    """`path` (None: the defaults) with `key.sub=value` overrides applied."""
    return cfgmod.load(RunConfig, path, overrides)


# ---------------------------------------------------------------------------- offline runs
# `robot-rl offline` and `robot-rl bc` (robot_rl/offline.py) on a LeRobotDataset.

@dataclass
class BCConfig:
    hidden_dims: Tuple[int, ...] = setting((256, 256), range=COUNT)
    activation: str = "relu"
    layer_norm: bool = True
    lr: float = setting(3e-4, range=POSITIVE)
    batch_size: int = setting(256, range=COUNT)
    steps: int = setting(5000, range=NONNEGATIVE)
    log_std_min: float = -5.0
    log_std_max: float = 1.0

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError(f"steps must be >= 0 and batch_size >= 1, got {self.steps}, {self.batch_size}")
        if not self.log_std_min < self.log_std_max:
            raise ValueError("log_std_min must be < log_std_max")


@dataclass
class OfflineConfig:
    algo: str = "calql"                      # calql | cql | iql
    hidden_dims: Tuple[int, ...] = setting((256, 256), range=COUNT)
    actor_hidden_dims: Tuple[int, ...] = setting((256, 256), range=COUNT)
    activation: str = "relu"
    num_critics: int = setting(2, range=COUNT)
    gamma: float = setting(0.98, range="[0, 1)")  # V-GPS's Cal-QL value
    tau: float = setting(0.005, range="(0, 1]")  # target-network Polyak rate
    batch_size: int = setting(256, range=COUNT)
    steps: int = setting(10_000, range=NONNEGATIVE)
    # Rewards seen by the learner: reward_scale * r + reward_bias. Defaults: Cal-QL's setting for
    # sparse 0/1 success rewards (ours). With raw 0/1 rewards the CQL push-up of dataset
    # actions (alpha / 2 per step) swamps the value differences and V-GPS re-ranks on noise
    # (docs/results.md, "Numbers formerly in code comments").
    # reward_min: a lower bound of the raw rewards, the reward assumed after a time limit when
    # bounding a truncated episode's return (0 for our sparse and dense tasks).
    reward_scale: float = setting(10.0, range=POSITIVE)
    reward_bias: float = -5.0
    reward_min: float = 0.0
    critic_lr: float = setting(3e-4, range=POSITIVE)
    actor_lr: float = setting(1e-4, range=POSITIVE)
    temp_lr: float = setting(3e-4, range=POSITIVE)
    # --- Cal-QL / CQL
    init_temperature: float = setting(0.1, range=POSITIVE)
    target_entropy: Optional[float] = None   # None -> -A
    cql_alpha: float = setting(5.0, range=NONNEGATIVE)  # V-GPS's value
    cql_n_actions: int = setting(10, range=COUNT)
    cql_temperature: float = setting(1.0, range=POSITIVE)
    cql_importance_sample: bool = True
    # --- IQL
    expectile: float = setting(0.7, range="(0, 1)")
    awr_temperature: float = setting(3.0, range=POSITIVE)  # beta in exp(beta * advantage)
    awr_max_weight: float = setting(100.0, range=POSITIVE)

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        self.actor_hidden_dims = tuple(int(h) for h in self.actor_hidden_dims)
        if self.algo not in ("calql", "cql", "iql"):
            raise ValueError(f"algo must be calql, cql or iql, got {self.algo!r}")
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"expectile must be in (0, 1), got {self.expectile}")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {self.gamma}")
        if self.num_critics < 1 or self.cql_n_actions < 1:
            raise ValueError("num_critics and cql_n_actions must be >= 1")


@dataclass
class OfflineDataConfig:
    """`data`: the dataset an offline run learns from."""
    dataset: str = setting("", "LeRobotDataset directory (required)")
    obs_keys: Optional[List[str]] = setting(None, "observation keys; None: every vector observation")
    task_embedding: Optional[str] = setting(None, "onehot | minilm | sentence-transformers:<model>")


@dataclass
class DatasetRunConfig:
    """What `robot-rl offline` and `robot-rl bc` configs share."""
    name: str = setting("run", "run directory name under runs_dir")
    seed: int = setting(0, "seeds networks and minibatches", range=NONNEGATIVE)
    runs_dir: str = setting("runs", "where run directories go")
    torch_threads: int = setting(1, "torch CPU threads", range=COUNT)
    device: str = setting("auto", "where the learner computes: auto (CUDA when present, else CPU) | "
                                  "cpu | cuda | cuda:N | mps")
    data: OfflineDataConfig = setting(help="the dataset", factory=OfflineDataConfig)


@dataclass
class OfflineRunConfig(DatasetRunConfig):
    """A `robot-rl offline` config file."""
    name: str = setting("offline", "run directory name under runs_dir")
    agent: OfflineConfig = setting(help="the offline learner", factory=OfflineConfig)


@dataclass
class BCRunConfig(DatasetRunConfig):
    """A `robot-rl bc` config file."""
    name: str = setting("bc", "run directory name under runs_dir")
    agent: BCConfig = setting(help="the BC policy", factory=BCConfig)
