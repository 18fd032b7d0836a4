"""Hardware abstraction layer: protocols, the one gymnasium env over them, real drivers."""
from robot_rl.hardware.hal import (Arm, ArmState, Camera, Clock, Frame, Gripper, GripperState,
                                   Teleop, TeleopCommand, WallClock)

__all__ = ["Arm", "ArmState", "Camera", "Clock", "Frame", "Gripper", "GripperState", "Teleop",
           "TeleopCommand", "WallClock"]
