"""Control laws in numpy. Imports nothing else of ours."""
from robot_rl.controllers.impedance import CartesianImpedance, ImpedanceParams
from robot_rl.controllers.safety import SafetyBox, UnsafeCommandError

__all__ = ["CartesianImpedance", "ImpedanceParams", "SafetyBox", "UnsafeCommandError"]
