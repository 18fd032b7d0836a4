"""Our MJCF of a Franka-Panda-like arm, built from primitive geoms.

Kinematics are Franka's published DH parameters (d1 0.333, d3 0.316, a4 0.0825, a5 -0.0825,
d5 0.384, a7 0.088, flange 0.107); link masses are Franka's published values; joint limits and
torque limits are the datasheet's. No mesh assets: capsules and boxes only, so the model is
small, fast and ours. A user's own MJCF (e.g. a Menagerie Panda) can replace it: see
`SimWorld(model_path=...)`, which needs the site/joint/actuator names listed in ARM_NAMES.
"""
from __future__ import annotations

import numpy as np

from robot_rl.sim.workcell import fmt as _f, workcell_xml

ARM_JOINTS = [f"joint{i}" for i in range(1, 8)]
ARM_NAMES = {"tcp_site": "tcp", "finger_joint": "finger_left", "gripper_actuator": "gripper",
             "arm_actuators": [f"torque{i}" for i in range(1, 8)]}
HOME_Q = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
JOINT_RANGES = [(-2.8973, 2.8973), (-1.7628, 1.7628), (-2.8973, 2.8973), (-3.0718, -0.0698),
                (-2.8973, 2.8973), (-0.0175, 3.7525), (-2.8973, 2.8973)]
TORQUE_LIMITS = [87, 87, 87, 87, 12, 12, 12]
FINGER_MAX = 0.04  # per finger; gripper opening = 2x

# body name, pos, quat (wxyz), mass, capsule segments (from, to) in the body frame, radius
_LINKS = [
    ("link1", "0 0 0.333", "1 0 0 0", 4.97, [((0, 0, -0.19), (0, 0, -0.03))], 0.06),
    ("link2", "0 0 0", "0.7071068 -0.7071068 0 0", 0.646, [((0, 0, -0.05), (0, 0, 0.05)),
                                                        ((0, 0, 0), (0, -0.18, 0))], 0.06),
    ("link3", "0 -0.316 0", "0.7071068 0.7071068 0 0", 3.228, [((0, 0, -0.13), (0, 0, -0.02)),
                                                           ((0, 0, 0), (0.0825, 0, 0))], 0.055),
    ("link4", "0.0825 0 0", "0.7071068 0.7071068 0 0", 3.587, [((0, 0, -0.05), (0, 0, 0.05)),
                                                           ((0, 0, 0), (-0.0825, 0.1, 0))], 0.055),
    ("link5", "-0.0825 0.384 0", "0.7071068 -0.7071068 0 0", 1.225,
     [((0, 0, -0.22), (0, 0, -0.05)), ((0, 0.04, -0.02), (0, 0.08, -0.02))], 0.05),
    ("link6", "0 0 0", "0.7071068 0.7071068 0 0", 1.666, [((0, 0, -0.03), (0, 0, 0.03)),
                                                       ((0, 0, 0), (0.088, 0, 0))], 0.045),
    ("link7", "0.088 0 0", "0.7071068 0.7071068 0 0", 0.735, [((0, 0, -0.02), (0, 0, 0.08))], 0.045),
]


def _arm_xml(hand_extra: str) -> str:
    """Nested bodies link1..link7, hand, fingers; `hand_extra` is inserted into the hand body."""
    xml, close = "", ""
    for i, (name, pos, quat, mass, caps, r) in enumerate(_LINKS):
        lo, hi = JOINT_RANGES[i]
        geoms = "".join(
            f'<geom class="arm" type="capsule" fromto="{_f(a)} {_f(b)}" size="{r}" '
            f'mass="{mass / len(caps):.4f}"/>' for a, b in caps)
        xml += (f'<body name="{name}" pos="{pos}" quat="{quat}">'
                f'<joint name="joint{i + 1}" range="{lo} {hi}"/>{geoms}')
        close += "</body>"
    finger = ('<geom class="finger" type="box" size="0.009 0.006 0.025" pos="0 {y} 0.025"/>'
              '<geom class="pad" type="box" size="0.008 0.0035 0.012" pos="0 {py} 0.038"/>')
    hand = (
        '<body name="hand" pos="0 0 0.107" quat="0.9238795 0 0 -0.3826834">'
        '<geom class="arm" type="box" size="0.03 0.1 0.03" pos="0 0 0.03" mass="0.73"/>'
        '<site name="tcp" pos="0 0 0.1034" size="0.005" rgba="1 0 0 0"/>'
        f'{hand_extra}'
        '<body name="finger_left" pos="0 0 0.0584">'
        f'<joint name="finger_left" type="slide" axis="0 1 0" range="0 {FINGER_MAX}" damping="2"/>'
        f'{finger.format(y="0.006", py="-0.0035")}</body>'
        '<body name="finger_right" pos="0 0 0.0584">'
        f'<joint name="finger_right" type="slide" axis="0 -1 0" range="0 {FINGER_MAX}" damping="2"/>'
        f'{finger.format(y="-0.006", py="0.0035")}</body>'
        '</body>')
    base = '<geom class="arm" type="cylinder" size="0.07 0.07" pos="0 0 0.07" mass="4"/>'
    return base + xml + hand + close


FRONT_CAMERA_POS = np.array([1.25, 0.0, 0.65])
FRONT_CAMERA_TARGET = np.array([0.42, 0.0, 0.12])


def build_scene(objects: str = "", hand_extra: str = "", timestep: float = 0.002) -> str:
    """The workcell: arm on a table, task `objects` (MJCF body text), a front and a wrist camera."""
    actuators = "".join(
        f'<motor name="torque{i + 1}" joint="joint{i + 1}" ctrlrange="-{t} {t}"/>'
        for i, t in enumerate(TORQUE_LIMITS))
    return workcell_xml(
        "robot_rl_panda", _arm_xml(hand_extra), objects, timestep,
        table_pos=(0.45, 0, -0.02), table_half=(0.55, 0.6, 0.02),
        front_camera=(FRONT_CAMERA_POS, FRONT_CAMERA_TARGET),
        actuators=actuators + f'''
    <position name="gripper" joint="finger_left" kp="400" dampratio="1" ctrlrange="0 {FINGER_MAX}"
        forcerange="-30 30"/>''',
        joint_default='<joint damping="1" armature="0.1"/>')


WRIST_CAMERA = ('<camera name="wrist" pos="0.07 0 0.065" xyaxes="0 1 0 0.954 0 0.3" fovy="75"/>')
