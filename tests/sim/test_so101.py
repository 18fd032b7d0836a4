"""The simulated SO-101 and its Cartesian layer (`CartesianPositionArm` over MuJoCo position
servos): the kinematics the IK assumes are the simulated ones, targets are tracked, contact
force is bounded by the lead clip, and no command path makes a joint jump."""
import numpy as np
import pytest

from robot_rl.controllers.diff_ik import DifferentialIK
from robot_rl.controllers.frames import quat_to_mat
from robot_rl.controllers.kinematics import RevoluteJoint, SerialChain
from robot_rl.controllers.safety import SafetyBox, UnsafeCommandError
from robot_rl.hardware.hal import Arm
from robot_rl.hardware.position_arm import CartesianPositionArm, JointServos
from robot_rl.hardware.safety import SafeArm
from robot_rl.hardware.so101 import FINGER_MAX, HOME_Q, SO101_CHAIN as CHAIN
from robot_rl.sim import panda_model, so101_model
from robot_rl.sim.envs import make_sim_env
from robot_rl.sim.world import ServoWorld, SimServos, SimWorld

DOWN = np.array([1.0, 0.0, 0.0, 0.0])


def servo_world():
    return ServoWorld(so101_model.build_scene(hand_extra=so101_model.WRIST_CAMERA), CHAIN,
                      so101_model.ARM_NAMES, FINGER_MAX, HOME_Q)


def ticking_arm(world, **kwargs):
    """The Cartesian layer on the world's servos, recording every joint command it sends."""
    arm = CartesianPositionArm(SimServos(world), CHAIN, servo_hz=world.servo_hz, **kwargs)
    sent = []

    def tick():
        sent.append(arm.tick())
    world.on_servo_tick.append(tick)
    return arm, sent


def assert_no_jumps(sent, start):
    q = np.vstack([start, *sent])
    step = np.abs(np.diff(q, axis=0)).max(axis=0)
    assert np.all(step <= CHAIN.max_velocity / 50.0 + 1e-12), step
    assert np.all(q >= CHAIN.lower) and np.all(q <= CHAIN.upper)


def test_the_chain_is_the_simulated_arm():
    w = servo_world()
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(CHAIN.lower, CHAIN.upper)
        w.set_joints(q)
        pos, quat = CHAIN.fk(q)
        np.testing.assert_allclose(w.tcp_pose()[:3], pos, atol=1e-12)
        np.testing.assert_allclose(quat_to_mat(w.tcp_pose()[3:]), quat_to_mat(quat), atol=1e-12)
    assert isinstance(SimServos(w), JointServos)
    assert isinstance(CartesianPositionArm(SimServos(w), CHAIN), Arm)


def panda_chain() -> SerialChain:
    """Franka's kinematics as a `SerialChain`, from the same table our Panda MJCF is built from."""
    joints = []
    for i, (name, pos, quat, *_) in enumerate(panda_model._LINKS):
        w, x, y, z = map(float, quat.split())
        lo, hi = panda_model.JOINT_RANGES[i]
        joints.append(RevoluteJoint(name, tuple(map(float, pos.split())), (0, 0, 1), lo, hi, 2.0,
                                    origin_quat=(x, y, z, w)))
    # flange 0.107 then the hand turned -45 deg about z; TCP 0.1034 further along z
    return SerialChain(tuple(joints), tcp_pos=(0, 0, 0.107 + 0.1034),
                       tcp_quat=(0, 0, -0.3826834, 0.9238795))


def test_a_seven_joint_arm_uses_its_null_space_without_moving_the_tcp():
    """On the Panda's kinematics (checked against our Panda MJCF), the posture term moves the
    redundant joint toward the posture while the TCP holds its pose."""
    chain = panda_chain()
    sim = SimWorld(xml=panda_model.build_scene())
    sim.set_joints(panda_model.HOME_Q)
    pos, quat = chain.fk(panda_model.HOME_Q)
    np.testing.assert_allclose(sim.tcp_pose()[:3], pos, atol=1e-6)
    np.testing.assert_allclose(quat_to_mat(sim.tcp_pose()[3:]), quat_to_mat(quat), atol=1e-6)
    posture = panda_model.HOME_Q + [0.6, 0, -0.6, 0, 0.6, 0, 0]
    ik = DifferentialIK(chain, q_posture=posture)

    def off_posture(q):  # the part of the posture error the null space can remove
        null = np.linalg.svd(chain.jacobian(q))[2][6:].T
        return np.linalg.norm(null.T @ (posture - q))
    q = panda_model.HOME_Q.copy()
    start = off_posture(q)
    for _ in range(400):
        q = ik.step(q, pos, quat, 0.02)
        assert np.linalg.norm(chain.fk(q)[0] - pos) < 1e-3
    assert np.linalg.norm(ik.error(q, pos, quat)) < 1e-4
    assert start > 0.5 and off_posture(q) < 0.05 * start, (start, off_posture(q))


def test_servoed_arm_tracks_pose_steps_within_the_servo_sag():
    """3-6 cm steps: the joint targets reach them (IK on the commanded joints), the measured
    TCP within 8 mm (a P servo under gravity sags: the residual is that, not the IK)."""
    w = servo_world()
    arm, sent = ticking_arm(w)
    arm.move_to_joints(w.ik(np.array([0.2, 0.0, 0.1]), DOWN, HOME_Q))
    start = arm.q_cmd.copy()
    for target in ([0.23, 0.05, 0.06], [0.16, -0.06, 0.12], [0.25, 0.0, 0.03]):
        arm.set_target_pose(np.array(target), DOWN)
        w.advance(1.0)
        assert np.linalg.norm(CHAIN.fk(arm.q_cmd)[0] - target) < 1e-3
        assert np.linalg.norm(w.tcp_position() - target) < 0.008, w.tcp_position() - target
    assert_no_jumps(sent, start)


def test_pressing_into_the_table_is_bounded_by_the_lead_clip():
    """A target 5 cm under the table top: the joint targets never lead the measured joints by
    more than max_lead, so how hard the arm presses is set by the lead (up to the servos'
    stall torque), not by how far the target is."""
    def press(lead):
        w = servo_world()
        arm, _ = ticking_arm(w, max_lead=lead)
        arm.move_to_joints(w.ik(np.array([0.2, 0.0, 0.03]), DOWN, HOME_Q))
        arm.set_target_pose(np.array([0.2, 0.0, -0.05]), DOWN)
        forces = []
        for _ in range(50):
            w.advance(0.02)
            q, _, _ = SimServos(w).read()
            assert np.all(np.abs(arm.q_cmd - q) <= lead + CHAIN.max_velocity / 50 + 1e-9)
            forces.append(w.tcp_wrench()[2])  # the table pushing the gripper up
        return float(np.median(forces[-20:]))
    soft, stiff = press(0.03), press(0.15)
    assert 0.0 < soft < 0.5 * stiff, (soft, stiff)  # measured: 14.5 N vs 37.5 N
    assert stiff < 45.0  # 2.9 Nm servos cannot push harder than this at ~0.2 m


def test_safe_arm_over_the_cartesian_layer_fuzzed():
    """The path a real SO-101 uses: SafeArm (box, per-step limit, NaN refusal) over the
    Cartesian layer. Random, far, extreme and malformed targets: every servo command is inside
    the joint limits and no joint moves more than its speed limit per period."""
    w = servo_world()
    arm, sent = ticking_arm(w)
    arm.move_to_joints(w.ik(np.array([0.2, 0.0, 0.1]), DOWN, HOME_Q))
    start = arm.q_cmd.copy()
    box = SafetyBox((0.10, -0.15, 0.01), (0.28, 0.15, 0.2))
    safe = SafeArm(arm, box, watchdog_s=None)
    rng = np.random.default_rng(0)
    refused = 0
    for i in range(300):
        pos = rng.uniform(-2, 2, 3) if i % 3 else rng.uniform(0.1, 0.28, 3)
        quat = rng.normal(size=4)
        quat /= np.linalg.norm(quat)
        if i % 17 == 0:
            pos = np.array([np.nan, 0.2, 0.1])
        try:
            safe.set_target_pose(pos, quat)
        except UnsafeCommandError:
            refused += 1
        w.advance(0.1)
        assert box.contains(arm.target_pos, arm.target_quat)
    assert refused == len(range(0, 300, 17))
    for bad in ([np.nan, 0, 0.1], [0.2, 0, 0.1]):  # also straight to the Cartesian layer
        with pytest.raises(UnsafeCommandError):
            arm.set_target_pose(np.array(bad), np.zeros(4) if bad[0] == 0.2 else DOWN)
    w.advance(0.1)
    assert np.all(np.isfinite(arm.q_cmd))
    assert_no_jumps(sent, start)


def test_env_actions_fuzzed_never_jump():
    """SO101PickCube through RobotEnv: random and saturated actions for 600 steps, resets
    included; every servo command of every period obeys the limits."""
    env = make_sim_env("SO101PickCube")
    rng = np.random.default_rng(1)
    env.reset(seed=0)
    sent, episodes = [], 0
    env.world.on_servo_tick.append(lambda: sent.append(env.arm.q_cmd.copy()))
    for i in range(600):
        a = rng.choice([-1.0, 1.0], 4) if i % 2 else rng.uniform(-1, 1, 4)
        _, _, term, trunc, _ = env.step(a * rng.uniform(1, 50))
        if term or trunc:
            assert_no_jumps(sent[1:], sent[0])
            episodes += 1
            env.reset(seed=i)
            sent.clear()
    assert episodes == 12  # 50-step episodes (the arm cannot lift the cube by chance)
