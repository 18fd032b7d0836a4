"""The SO-100/SO-101 arm in one place: its kinematics (used by the Cartesian layer and by the
simulated SO-101, sim/so101_model.py), its joint names, and the mapping between LeRobot's joint
readings and ours.

Kinematics: the SO-101's published link lengths, rounded to the millimetre (base to shoulder-pan
0.060 m; pan to shoulder-lift 0.030 m forward, 0.055 m up; upper arm 0.116 m; forearm 0.135 m;
wrist-flex to wrist-roll 0.045 m; roll to the point between the jaw tips 0.055 m). Joint limits
are the servos' usable ranges on the arm; `max_velocity` is 3 rad/s, below the STS3215's no-load
speed (~4.7 rad/s at 7.4 V), so the servo can follow every target the IK sends.

Our joint zero (all joints 0) is the arm upright with the forearm level and the gripper pointing
down at the table: upper arm vertical, forearm along +x, TCP 0.165 m forward, 0.131 m up.
"""
from __future__ import annotations

import numpy as np

from robot_rl.controllers.kinematics import RevoluteJoint, SerialChain

JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
GRIPPER_NAME = "gripper"
MAX_VELOCITY = 3.0  # rad/s
FINGER_MAX = 0.03   # per finger [m]: the simulated jaw opens to 6 cm

SO101_CHAIN = SerialChain(
    joints=(
        RevoluteJoint("shoulder_pan", (0.0, 0.0, 0.060), (0, 0, 1), -1.92, 1.92, MAX_VELOCITY),
        RevoluteJoint("shoulder_lift", (0.030, 0.0, 0.055), (0, 1, 0), -1.75, 1.75, MAX_VELOCITY),
        RevoluteJoint("elbow_flex", (0.0, 0.0, 0.116), (0, 1, 0), -1.69, 1.69, MAX_VELOCITY),
        RevoluteJoint("wrist_flex", (0.135, 0.0, 0.0), (0, 1, 0), -1.66, 1.66, MAX_VELOCITY),
        # the roll frame is turned 180 deg about x, so its z axis points out of the gripper
        RevoluteJoint("wrist_roll", (0.0, 0.0, -0.045), (0, 0, 1), -2.79, 2.79, MAX_VELOCITY,
                      origin_quat=(1.0, 0.0, 0.0, 0.0)),
    ),
    tcp_pos=(0.0, 0.0, 0.055),
)
HOME_Q = np.zeros(5)
