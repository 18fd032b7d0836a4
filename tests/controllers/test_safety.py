import numpy as np
import pytest

from robot_rl.controllers.frames import quat_to_rpy, rpy_to_quat, wrap_angle
from robot_rl.controllers.safety import SafetyBox, UnsafeCommandError

BOX = SafetyBox((0.3, -0.2, 0.0), (0.6, 0.2, 0.4), rpy_low=(3.0, -0.2, -0.5),
                rpy_high=(-3.0, 0.2, 0.5), max_step_pos=0.05, max_step_rot=0.2)
DOWN = np.array([1.0, 0, 0, 0])


def test_position_and_wrapped_orientation_clipped():
    rng = np.random.default_rng(1)
    for _ in range(2000):
        pos = rng.uniform(-2, 2, 3)
        quat = rpy_to_quat(rng.uniform(-np.pi, np.pi, 3))
        p, q = BOX.apply(pos, quat)
        assert BOX.contains(p, q)
    # roll pi is inside the wrap-around interval [3.0, -3.0]; roll 2.5 is clipped to 3.0
    assert BOX.contains(np.array([0.4, 0, 0.2]), rpy_to_quat([np.pi, 0, 0]))
    _, q = BOX.apply([0.4, 0, 0.2], rpy_to_quat([2.5, 0, 0]))
    assert abs(wrap_angle(quat_to_rpy(q)[0] - 3.0)) < 1e-6


def test_step_delta_limited():
    p, q = BOX.apply([0.6, 0.2, 0.4], rpy_to_quat([np.pi, 0.2, 0.5]),
                     ref_pos=np.array([0.4, 0, 0.2]), ref_quat=DOWN)
    assert np.linalg.norm(p - [0.4, 0, 0.2]) <= 0.05 + 1e-9
    from robot_rl.controllers.frames import orientation_error
    assert np.linalg.norm(orientation_error(q, DOWN)) <= 0.2 + 1e-6


@pytest.mark.parametrize("pos,quat,msg", [
    ([np.nan, 0, 0], DOWN, "NaN or inf"),
    ([0.4, 0, np.inf], DOWN, "NaN or inf"),
    ([0.4, 0], DOWN, "shape"),
    ([0.4, 0, 0.2], [0, 0, 0, 2.0], "not unit length"),
])
def test_malformed_rejected(pos, quat, msg):
    with pytest.raises(UnsafeCommandError, match=msg):
        BOX.apply(pos, quat)


@pytest.mark.parametrize("field,value", [
    ("max_step_pos", np.nan), ("max_step_pos", -0.03), ("max_step_pos", 0.0), ("max_step_pos", np.inf),
    ("max_step_rot", np.nan), ("max_step_rot", -0.1), ("max_step_pos", "0.03"),
    ("xyz_low", (0.3, np.nan, 0.0)), ("xyz_high", (0.6, 0.2, np.inf)), ("rpy_low", (np.nan, 0, 0)),
])
def test_bad_safety_parameters_are_refused_by_name(field, value):
    """A NaN step limit used to disable the limit (every comparison with NaN is false), a
    negative one to reverse it."""
    kwargs = dict(xyz_low=(0.3, -0.2, 0.0), xyz_high=(0.6, 0.2, 0.4), max_step_pos=0.03, max_step_rot=0.1)
    with pytest.raises(ValueError, match=field):
        SafetyBox(**{**kwargs, field: value})


def test_no_valid_box_lets_a_step_past_its_limit():
    """Fuzz: any box that constructs limits every step it is given to its max_step_pos."""
    rng = np.random.default_rng(3)
    for _ in range(500):
        lo = rng.uniform(-1, 1, 3)
        box = SafetyBox(tuple(lo), tuple(lo + rng.uniform(0, 1, 3)), max_step_pos=float(rng.uniform(1e-4, 0.1)))
        ref = box.clip_position(rng.uniform(-2, 2, 3))
        p, _ = box.apply(rng.uniform(-3, 3, 3), DOWN, ref_pos=ref, ref_quat=DOWN)
        assert np.linalg.norm(p - ref) <= box.max_step_pos + 1e-9
