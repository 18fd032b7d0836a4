"""The scene every simulated arm stands in: a table, lights, a front camera, the object defaults
the tasks use, and the finger coupling. sim/panda_model.py and sim/so101_model.py put their arm
(bodies and actuators) into it."""
from __future__ import annotations

import numpy as np


def fmt(v) -> str:
    return " ".join(f"{x:.6g}" for x in v)


def look_at(pos, target) -> str:
    """MuJoCo camera xyaxes for a camera at `pos` looking at `target` (camera looks along -z)."""
    f = np.asarray(target, float) - pos
    f /= np.linalg.norm(f)
    x = np.cross(f, [0, 0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(x, f)
    return fmt(np.concatenate([x, y]))


def workcell_xml(model: str, arm_xml: str, objects: str, timestep: float, table_pos, table_half,
                 front_camera: tuple, actuators: str, joint_default: str) -> str:
    """A complete MJCF: `arm_xml` (bodies, with a "hand" holding "finger_left"/"finger_right"
    slide joints) on a table at `table_pos`, task `objects`, the `actuators`."""
    cam_pos, cam_target = (np.asarray(v, float) for v in front_camera)
    return f"""
<mujoco model="{model}">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep}" integrator="Euler" cone="elliptic" impratio="10"/>
  <visual><global offwidth="640" offheight="480"/><quality shadowsize="0"/>
    <headlight ambient="0.5 0.5 0.5" diffuse="0.4 0.4 0.4" specular="0 0 0"/></visual>
  <default>
    {joint_default}
    <default class="arm"><geom contype="2" conaffinity="1" rgba="0.92 0.92 0.95 1"/></default>
    <default class="finger"><geom contype="2" conaffinity="1" rgba="0.25 0.25 0.28 1" mass="0.015"
        friction="1.5 0.02 0.002" condim="4" solref="0.005 1"/></default>
    <default class="pad"><geom contype="2" conaffinity="1" rgba="0.1 0.1 0.1 1" mass="0.002"
        friction="2 0.02 0.002" condim="4" solref="0.005 1"/></default>
    <default class="object"><geom contype="1" conaffinity="3" condim="4" friction="1 0.02 0.002"/></default>
  </default>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.55 0.45 0.35" rgb2="0.5 0.4 0.3"
        width="64" height="64"/>
    <material name="table" texture="grid" texrepeat="8 8"/>
  </asset>
  <worldbody>
    <light pos="0.5 0 1.5" dir="0 0 -1" castshadow="false"/>
    <body name="base">
      {arm_xml}
    </body>
    <geom name="table" type="box" pos="{fmt(table_pos)}" size="{fmt(table_half)}" material="table"
        contype="1" conaffinity="3"/>
    <camera name="front" pos="{fmt(cam_pos)}" xyaxes="{look_at(cam_pos, cam_target)}" fovy="50"/>
    {objects}
  </worldbody>
  <equality><joint joint1="finger_left" joint2="finger_right" solref="0.005 1"/></equality>
  <actuator>
    {actuators}
  </actuator>
</mujoco>"""
