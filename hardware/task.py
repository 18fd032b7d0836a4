"""What a task tells `RobotEnv`: action layout, safety box, episode length, how to reset the
scene, and how to score it. Sim tasks (sim/tasks/) place objects with privileged access;
real tasks reset the arm only and score from the TCP pose or a reward model."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from robot_rl.controllers.safety import SafetyBox

POSE_DOFS = ("x", "y", "z", "roll", "pitch", "yaw")


@dataclass(frozen=True)
class ActionConfig:
    """Normalized action layout: one entry per controlled pose dof, then the gripper."""
    dofs: tuple[str, ...] = ("x", "y", "z")
    gripper: bool = True
    step_pos: float = 0.03   # metres per step at |a| = 1
    step_rot: float = 0.2    # radians per step at |a| = 1
    frame: str = "base"      # "base" or "ee": the frame the deltas are expressed in

    def __post_init__(self):
        bad = [d for d in self.dofs if d not in POSE_DOFS]
        if bad or len(set(self.dofs)) != len(self.dofs):
            raise ValueError(f"action dofs must be distinct names from {POSE_DOFS}, got {self.dofs}")
        if self.frame not in ("base", "ee"):
            raise ValueError(f"action frame must be 'base' or 'ee', got {self.frame!r}")

    @property
    def dim(self) -> int:
        return len(self.dofs) + int(self.gripper)


def log_scaled(error: np.ndarray, scale: float) -> np.ndarray:
    """sign(e) * log(1 + |e| / scale): an error to a goal with each decade of distance from
    `scale` up given the same share of the range. Normalized by its spread over a workspace
    (centimetres), a millimetre at a hole's rim is a few hundredths of a unit that networks
    barely resolve; in this copy it is a whole unit (docs/design.md, "Fine offsets")."""
    e = np.asarray(error, np.float64)
    return np.sign(e) * np.log1p(np.abs(e) / scale)


@dataclass(frozen=True)
class Outcome:
    """How the scene stands after a step, by the task's own measure."""
    reward: float      # dense shaped reward in [0, 1]
    success: bool


class Task(Protocol):
    name: str
    instruction: str               # natural-language task string (stored with demos)
    action: ActionConfig
    safety: SafetyBox
    max_episode_steps: int
    home_quat: np.ndarray          # orientation held on dofs the action does not control

    def reset(self, env, rng: np.random.Generator) -> None: ...
    def env_state(self) -> np.ndarray | None: ...   # privileged object state (sim only) or None
    def outcome(self, env) -> Outcome: ...


@dataclass
class TaskBase:
    """Shared fields; concrete tasks override reset/outcome."""
    name: str = "task"
    instruction: str = ""
    action: ActionConfig = field(default_factory=ActionConfig)
    safety: SafetyBox = field(default_factory=lambda: SafetyBox((0.2, -0.3, 0.0), (0.7, 0.3, 0.5)))
    max_episode_steps: int = 100
    home_quat: np.ndarray = field(default_factory=lambda: np.array([1.0, 0, 0, 0]))

    def env_state(self):
        return None
