"""The MuJoCo HAL: tracking under the impedance law, C kernel == numpy law, HAL protocols."""
import numpy as np
import pytest

from robot_rl.controllers.impedance import ImpedanceParams
from robot_rl.hardware.hal import Arm, Camera, Clock, Gripper
from robot_rl.sim.panda_model import HOME_Q, WRIST_CAMERA, build_scene
from robot_rl.sim.world import SimArm, SimCamera, SimClock, SimGripper, SimWorld


@pytest.fixture(params=["c", "numpy"])
def world(request):
    w = SimWorld(xml=build_scene(hand_extra=WRIST_CAMERA), controller=request.param)
    w.set_joints(HOME_Q)
    yield w
    w.close()


def test_hal_protocols():
    w = SimWorld(xml=build_scene(hand_extra=WRIST_CAMERA))
    assert isinstance(SimArm(w), Arm)
    assert isinstance(SimGripper(w), Gripper)
    assert isinstance(SimCamera(w, "front"), Camera)
    assert isinstance(SimClock(w), Clock)
    assert w.controller == "c", "the C kernel should be built by the install"


def test_five_cm_step_tracked_within_2mm_without_overshooting_past_clip(world):
    arm = SimArm(world)
    start = arm.state().tcp_pose
    target = start[:3] + [0.05, 0.0, 0.0]
    arm.set_target_pose(target, start[3:])
    xs = []
    for _ in range(100):  # 2 s at 500 Hz, sampled every 10 ms
        world.step(5)
        xs.append(arm.state().tcp_pose[:3])
    xs = np.array(xs)
    assert np.linalg.norm(xs[-1] - target) < 0.002
    clip = world.impedance.params.clip_high[0]
    assert xs[:, 0].max() - target[0] < clip
    assert np.abs(xs[:, 1:] - start[1:3]).max() < clip  # no big excursion off-axis


def test_hold_still_under_gravity(world):
    q0 = world.data.qpos[:7].copy()
    world.advance(1.0)
    assert np.abs(world.data.qpos[:7] - q0).max() < 1e-3


def test_c_kernel_equals_numpy_law_on_random_states():
    w = SimWorld(xml=build_scene(hand_extra=WRIST_CAMERA), controller="c")
    rng = np.random.default_rng(0)
    for _ in range(50):
        w.set_joints(HOME_Q + rng.normal(scale=0.3, size=7))
        w.data.qvel[:7] = rng.normal(scale=0.5, size=7)
        w.target_pos = w.tcp_pose()[:3] + rng.normal(scale=0.05, size=3)
        w.q_null = HOME_Q + rng.normal(scale=0.2, size=7)
        w.set_impedance(ImpedanceParams(stiffness=rng.uniform(100, 3000, 6),
                                        max_torque_rate=rng.uniform(0.5, 5)))
        np.testing.assert_allclose(w.torque_now("c"), w.torque_now("numpy"), rtol=1e-7, atol=1e-8)


def test_contact_force_bounded_by_clip_when_pushing_into_table():
    w = SimWorld(xml=build_scene(hand_extra=WRIST_CAMERA))
    w.set_joints(HOME_Q)
    arm = SimArm(w)
    pose = arm.state().tcp_pose
    arm.set_target_pose(pose[:3] - [0, 0, 1.0], pose[3:])  # a metre below the table top
    w.advance(3.0)
    fz = arm.state().wrench[2]
    p = w.impedance.params
    assert fz > 5.0, "fingers should be pressing on the table"
    assert fz <= p.K[2] * abs(p.clip_low[2]) * 1.1  # K * clip (+ the small damping transient)


def test_user_model_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="MJCF file not found"):
        SimWorld(model_path=str(tmp_path / "missing.xml"))
    bad = tmp_path / "bad.xml"
    bad.write_text("<mujoco><worldbody><body><joint/><geom size='.1'/></body></worldbody></mujoco>")
    with pytest.raises(ValueError, match="lacks a name robot_rl needs"):
        SimWorld(model_path=str(bad))
