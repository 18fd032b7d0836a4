"""Our MJCF of an SO-101-class arm, built from the same `SerialChain` the Cartesian layer uses
(hardware/so101.py), so the simulated kinematics are the ones the IK assumes.

5 revolute joints with position actuators like the arm's STS3215 hobby servos (a stiff P loop
with damping, torque-saturated at the servo's ~2.9 Nm stall torque, rotor inertia as armature;
no backlash in this first version) and a parallel two-finger gripper on a position actuator
(the real SO-101 has one moving jaw; parallel fingers keep the grasp centred on the TCP, as on
the Panda). Capsules and boxes only, link masses from the arm's parts (servo ~55 g each).
"""
from __future__ import annotations

import numpy as np

from robot_rl.controllers.kinematics import SerialChain
from robot_rl.hardware.so101 import FINGER_MAX, SO101_CHAIN
from robot_rl.sim.workcell import fmt, workcell_xml

ARM_NAMES = {"tcp_site": "tcp", "finger_joint": "finger_left", "gripper_actuator": "gripper",
             "arm_actuators": [f"servo_{n}" for n in SO101_CHAIN.names]}
SERVO_KP = 30.0         # [Nm/rad]: full stall torque at ~0.1 rad of error
SERVO_TORQUE = 2.9      # [Nm]
SERVO_ARMATURE = 0.02   # reflected rotor inertia [kg m^2]
LINK_MASSES = (0.12, 0.11, 0.10, 0.07, 0.06)  # the body each joint moves (motor included)
LINK_RADIUS = 0.018
FRONT_CAMERA = ((0.45, 0.0, 0.30), (0.17, 0.0, 0.05))
WRIST_CAMERA = '<camera name="wrist" pos="0.03 0 0.005" xyaxes="0 1 0 0.985 0 -0.17" fovy="75"/>'


def _wxyz(q) -> str:
    x, y, z, w = q
    return fmt((w, x, y, z))


def _arm_xml(chain: SerialChain, hand_extra: str) -> str:
    """Nested bodies, one per joint, a capsule from each joint to the next; the last body is the
    hand with the TCP site and the two fingers."""
    xml, close = "", ""
    n = chain.n
    for i, j in enumerate(chain.joints):
        name = "hand" if i == n - 1 else f"link_{j.name}"
        nxt = chain.joints[i + 1].origin if i + 1 < n else None
        # the next joint's origin is given in this body's frame: the capsule runs to it
        seg = (f'<geom class="arm" type="capsule" fromto="0 0 0 {fmt(nxt)}" size="{LINK_RADIUS}" '
               f'mass="{LINK_MASSES[i]}"/>' if nxt is not None and np.linalg.norm(nxt) > 1e-9
               else "")
        xml += (f'<body name="{name}" pos="{fmt(j.origin)}" quat="{_wxyz(j.origin_quat)}">'
                f'<joint name="{j.name}" axis="{fmt(j.axis)}" range="{j.lower} {j.upper}"/>{seg}')
        close += "</body>"
    tcp = np.asarray(chain.tcp_pos, float)
    finger = ('<geom class="finger" type="box" size="0.008 0.004 0.02" pos="0 {y} 0.02"/>'
              '<geom class="pad" type="box" size="0.007 0.003 0.01" pos="0 {py} 0.03"/>')
    base_z = tcp[2] - 0.035  # finger bodies: their pads end 5 mm beyond the TCP
    hand = (
        f'<geom class="arm" type="box" size="0.02 0.035 0.012" pos="0 0 {base_z - 0.012:.4f}" '
        f'mass="{LINK_MASSES[-1]}"/>'
        f'<site name="tcp" pos="{fmt(tcp)}" quat="{_wxyz(chain.tcp_quat)}" size="0.004" '
        f'rgba="1 0 0 0"/>{hand_extra}'
        f'<body name="finger_left" pos="0 0 {base_z:.4f}">'
        f'<joint name="finger_left" type="slide" axis="0 1 0" range="0 {FINGER_MAX}" damping="1"/>'
        f'{finger.format(y="0.004", py="-0.003")}</body>'
        f'<body name="finger_right" pos="0 0 {base_z:.4f}">'
        f'<joint name="finger_right" type="slide" axis="0 -1 0" range="0 {FINGER_MAX}" damping="1"/>'
        f'{finger.format(y="-0.004", py="0.003")}</body>')
    base = '<geom class="arm" type="cylinder" size="0.035 0.03" pos="0 0 0.03" mass="0.3"/>'
    return base + xml + hand + close


def build_scene(objects: str = "", hand_extra: str = "", timestep: float = 0.002,
                chain: SerialChain = SO101_CHAIN) -> str:
    """The SO-101 on a table, task `objects`, a front camera (and a wrist camera via
    `hand_extra=WRIST_CAMERA`)."""
    servos = "".join(
        f'<position name="servo_{j.name}" joint="{j.name}" kp="{SERVO_KP}" dampratio="1" '
        f'ctrlrange="{j.lower} {j.upper}" forcerange="-{SERVO_TORQUE} {SERVO_TORQUE}"/>'
        for j in chain.joints)
    gripper = (f'<position name="gripper" joint="finger_left" kp="200" dampratio="1" '
               f'ctrlrange="0 {FINGER_MAX}" forcerange="-12 12"/>')
    return workcell_xml(
        "robot_rl_so101", _arm_xml(chain, hand_extra), objects, timestep,
        table_pos=(0.2, 0, -0.02), table_half=(0.3, 0.35, 0.02), front_camera=FRONT_CAMERA,
        actuators=servos + gripper,
        joint_default=f'<joint damping="0.1" armature="{SERVO_ARMATURE}"/>')

