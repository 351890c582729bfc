"""Proprioception from sensor_msgs/JointState: the pure mapping by the checkpoint's proprio names, the freshness
and skew rules, the parameters, and the policy node (real rclpy) stepping on /joint_states, refusing bad ones and
skipping steps whose joint state and images were taken at different moments."""
from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest

from deer_vla.core import ProprioError, ProprioSpec
from deer_vla.ros.joint_state import (
    JointStateError,
    JointStateProprio,
    JointValue,
    skew_problem,
    stamp_problem,
    worst_skew,
)
from deer_vla.ros.params import POLICY_DEFAULTS, ParameterError, parse_params

# the names a LeRobot-trained checkpoint carries (".pos") beside a bare joint name and a velocity
NAMES = ("shoulder.pos", "elbow", "wrist.position", "elbow.velocity")
MAP = JointStateProprio.from_spec(ProprioSpec(names=NAMES, low=(-3.2,) * 4, high=(3.2,) * 4))
# an arm driver's message: more joints than the policy uses, in its own order
JOINTS = ["gripper", "wrist", "base", "elbow", "shoulder"]
POSITION = [0.04, 0.3, 1.5, -0.2, 0.1]
VELOCITY = [0.0, 0.01, 0.02, 0.5, 0.03]


def test_names_read_positions_velocities_and_efforts_by_suffix():
    assert JointValue.parse("joint3") == JointValue("joint3", "position")
    assert JointValue.parse("shoulder_pan.pos") == JointValue("shoulder_pan", "position")
    assert JointValue.parse("joint3.vel") == JointValue("joint3", "velocity")
    assert JointValue.parse("joint3.velocity") == JointValue("joint3", "velocity")
    assert JointValue.parse("joint3.effort") == JointValue("joint3", "effort")
    assert JointValue.parse("arm.joint3") == JointValue("arm.joint3", "position")  # unknown suffix: all a name
    assert MAP.fields == ("position", "velocity")


def test_a_message_listing_more_joints_than_a_robot_has_is_refused_before_it_is_read():
    """One JointState of 100 000 names took 40 ms to index (a flood of them delayed ~/halt by 0.65 s): over
    MAX_JOINT_NAMES it is refused at once, naming the count; up to it, read as any other."""
    from deer_vla.ros.joint_state import MAX_JOINT_NAMES

    extra = MAX_JOINT_NAMES - len(JOINTS)
    names = JOINTS + [f"other_{i}" for i in range(extra)]
    values = MAP.extract(names, POSITION + [0.0] * extra, VELOCITY + [0.0] * extra)
    np.testing.assert_array_equal(values, MAP.extract(JOINTS, POSITION, VELOCITY))
    with pytest.raises(JointStateError, match=f"the message lists {MAX_JOINT_NAMES + 1} joints, more than "
                                              f"{MAX_JOINT_NAMES}: not read"):
        MAP.extract([*names, "one_more"], POSITION + [0.0] * (extra + 1), VELOCITY + [0.0] * (extra + 1))


def test_values_come_in_the_specs_order_whatever_the_message_order_and_extra_joints_are_ignored():
    values = MAP.extract(JOINTS, POSITION, VELOCITY, effort=[])
    np.testing.assert_array_equal(values, np.float32([0.1, -0.2, 0.3, 0.5]))
    assert values.dtype == np.float32
    shuffled = [4, 0, 3, 1, 2]
    again = MAP.extract([JOINTS[i] for i in shuffled], [POSITION[i] for i in shuffled],
                        [VELOCITY[i] for i in shuffled])
    np.testing.assert_array_equal(again, values)
    # NaN in a joint the model does not read is not its business
    np.testing.assert_array_equal(MAP.extract(JOINTS, [math.nan, *POSITION[1:]], VELOCITY), values)
    effort_map = JointStateProprio.from_spec(ProprioSpec(names=("base.effort",)))
    np.testing.assert_array_equal(effort_map.extract(JOINTS, POSITION, [], [1, 2, 7.5, 4, 5]), [7.5])


def test_values_the_spec_gives_in_degrees_are_converted_from_the_joint_states_radians():
    spec = ProprioSpec(names=("shoulder.pos", "elbow", "elbow.vel", "base.effort"), units=("deg", "rad", "deg/s", "Nm"),
                       low=(-10.0, -1, -100, -9), high=(10.0, 1, 100, 9))
    degrees = JointStateProprio.from_spec(spec)
    assert degrees.describe() == "shoulder position in deg, elbow position, elbow velocity in deg/s, base effort"
    values = degrees.extract(JOINTS, POSITION, VELOCITY, [0, 0, 2.5, 0, 0])
    np.testing.assert_allclose(values, [math.degrees(0.1), -0.2, math.degrees(0.5), 2.5], rtol=1e-6)
    # the limits are in the spec's units: 0.2 rad is 11.5 deg, beyond shoulder.pos's 10
    with pytest.raises(ProprioError, match=r"shoulder.pos=11.4"):
        degrees.extract(JOINTS, POSITION[:4] + [0.2], VELOCITY, [0] * 5)


@pytest.mark.parametrize("names, position, velocity, reason", [
    (JOINTS[:3] + ["shoulder"], POSITION[:4], VELOCITY[:4], r"no joint elbow in the message \(it has gripper, "),
    (JOINTS, POSITION[:4], VELOCITY, "5 joint names but 4 position values: a malformed JointState"),
    (JOINTS, POSITION, [], "no velocity values"),
    (JOINTS, POSITION[:3] + [math.nan, 0.1], VELOCITY, r"non-finite values elbow position=nan"),
    (JOINTS, POSITION, VELOCITY[:3] + [math.inf, 0.0], r"non-finite values elbow velocity=inf"),
    (JOINTS + ["elbow"], POSITION + [0.0], VELOCITY + [0.0], "joint 'elbow' appears twice"),
    (JOINTS, POSITION[:4] + [4.0], VELOCITY, r"outside the limits: shoulder.pos=4"),  # the spec's own limits
])
def test_a_joint_state_that_cannot_give_the_values_is_refused_saying_why(names, position, velocity, reason):
    with pytest.raises(ProprioError, match=reason):
        MAP.extract(names, position, velocity)


def test_specs_that_name_no_joints_are_refused_when_the_mapping_is_built():
    with pytest.raises(ValueError, match=r"unnamed \(proprio_0..proprio_3\).*proprio.names"):
        JointStateProprio.from_spec(ProprioSpec.unnamed(4))
    with pytest.raises(ValueError, match="'elbow' and 'elbow.pos' both read the elbow position"):
        JointStateProprio.from_spec(ProprioSpec(names=("elbow", "elbow.pos")))
    assert issubclass(JointStateError, ProprioError)  # the node refuses both kinds the same way


def test_stamps_follow_the_image_freshness_rule():
    now = 100_000_000_000
    assert stamp_problem(now - 400_000_000, now, max_age_s=0.5, max_future_s=0.1) is None
    assert stamp_problem(now + 50_000_000, now, max_age_s=0.5, max_future_s=0.1) is None
    assert "stamped 0.600 s ago (limit max_image_age_s 0.5 s)" in stamp_problem(now - 600_000_000, now, 0.5, 0.1)
    assert "0.200 s ahead of the node clock" in stamp_problem(now + 200_000_000, now, 0.5, 0.1)


def test_the_worst_skew_is_the_camera_stamped_furthest_from_the_joint_state():
    joint = 100_000_000_000
    # signed: > 0 when the joint state was taken before the image
    assert worst_skew(joint, {"static": joint + 20_000_000, "wrist": joint - 150_000_000}) == (
        "wrist", pytest.approx(-0.15))
    assert worst_skew(joint, {"static": joint + 300_000_000, "wrist": joint}) == ("static", pytest.approx(0.3))
    assert skew_problem(joint, {"static": joint + 100_000_000, "wrist": joint - 50_000_000}, 0.1) is None
    assert skew_problem(joint, {"static": joint + 300_000_000, "wrist": joint + 250_000_000}, 0.1) == (
        "joint state stamped 300 ms before camera 'static''s image (limit max_joint_state_skew_s 100 ms): the arm "
        "pose and the picture are from different moments")
    assert "150 ms after camera 'wrist''s image" in skew_problem(joint, {"wrist": joint - 150_000_000}, 0.1)
    # cameras further apart than twice the limit: no arm pose can be near both, and the joint states are not
    # what is wrong (an audit's healthy 50 Hz driver was blamed for a camera 250 ms late)
    assert skew_problem(joint, {"static": joint - 140_000_000, "wrist": joint + 140_000_000}, 0.1) == (
        "cameras 'static' and 'wrist' are stamped 280 ms apart, more than twice max_joint_state_skew_s (100 ms): no "
        "joint state is that near both images (bring the cameras' stamps closer, or raise max_joint_state_skew_s "
        "to 0.14 s)")
    with pytest.raises(ValueError, match="no camera frames"):
        worst_skew(joint, {})


def test_the_joint_state_skew_limit_is_positive_and_finite():
    assert parse_params(POLICY_DEFAULTS).max_joint_state_skew_s == 0.1
    for bad in (0.0, -0.1):
        with pytest.raises(ParameterError, match=r"'max_joint_state_skew_s' = .*must be > 0 s.*to turn the check off"):
            parse_params({**POLICY_DEFAULTS, "max_joint_state_skew_s": bad})
    with pytest.raises(ParameterError, match=r"'max_joint_state_skew_s' = inf: .*must be finite"):
        parse_params({**POLICY_DEFAULTS, "max_joint_state_skew_s": math.inf})


def test_proprio_source_parameters():
    params = parse_params(POLICY_DEFAULTS)
    assert params.proprio_source == "array" and params.proprio_input_topic == "proprio"
    params = parse_params({**POLICY_DEFAULTS, "proprio.source": "joint_state"})
    assert params.proprio_input_topic == "joint_states"
    with pytest.raises(ParameterError, match=r"'proprio.source' = 'joints'"):
        parse_params({**POLICY_DEFAULTS, "proprio.source": "joints"})
    with pytest.raises(ParameterError, match=r"'proprio.joint_state_topic' = ''"):
        parse_params({**POLICY_DEFAULTS, "proprio.source": "joint_state", "proprio.joint_state_topic": ""})


def _named_checkpoint(tiny_checkpoint, tmp_path):
    """A copy of the tiny checkpoint whose proprio names joints (NAMES), so that a JointState can feed it."""
    ckpt = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    config = json.loads((ckpt / "config.json").read_text())
    config["proprio"] = {"names": list(NAMES), "low": [-3.2] * 4, "high": [3.2] * 4}
    (ckpt / "config.json").write_text(json.dumps(config))
    return ckpt


@pytest.mark.ros
def test_policy_node_steps_on_joint_states_and_refuses_bad_ones(executor, tiny_checkpoint, tmp_path, spin_until):
    from builtin_interfaces.msg import Time
    from fixtures import Driver
    from rclpy.duration import Duration
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Header

    from deer_vla.ros.policy_node import PROPRIO_INPUT, PolicyNode

    def policy(checkpoint):
        # skew check off (>= age + future limits): this test sends images 0.05 s+ after each joint state, and
        # is about refusals and staleness (the skew test is below)
        node = PolicyNode(parameter_overrides=[Parameter(k, value=v) for k, v in {
            "checkpoint_dir": str(checkpoint), "enabled": True, "proprio.source": "joint_state",
            "max_joint_state_skew_s": 1.0, "control_mode": "event"}.items()])
        executor.add_node(node)
        return node

    unnamed = policy(tiny_checkpoint)  # the tiny preset's proprio has no names: nothing to match joints with
    assert unnamed.trigger_configure() == R.FAILURE and unnamed.stack is None
    executor.remove_node(unnamed)
    unnamed.destroy_node()

    node = policy(_named_checkpoint(tiny_checkpoint, tmp_path))
    assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS

    drv = Driver(executor, proprio_dim=0)  # images only: proprioception comes as JointState
    joint_pub = drv.node.create_publisher(JointState, "joint_states", 10)

    def joint_state(position=POSITION, velocity=VELOCITY, names=JOINTS, age_s=0.0):
        stamp = drv.node.get_clock().now() - Duration(nanoseconds=int(age_s * 1e9))
        return JointState(header=Header(stamp=stamp.to_msg()), name=names, position=position, velocity=velocity)

    def step(msg, settle=0.0):
        """One JointState, then (after ``settle`` s) one image per camera: an event-mode step if it was taken."""
        joint_pub.publish(msg)
        drv.spin(0.05 + settle)
        drv.send_pair()
        drv.spin(0.05)

    drv.instruct()
    for _ in range(100):  # until discovery is done and the first action comes out
        step(joint_state())
        if drv.actions:
            break
    assert drv.actions, "no action out of JointState proprioception"
    np.testing.assert_array_equal(node.proprio, np.float32([0.1, -0.2, 0.3, 0.5]))
    # one more step, waited for, so that no earlier one is still running and every image has been used
    drv.spin(0.3)
    steps = node.stats.steps
    step(joint_state())
    assert spin_until(executor, lambda: node.stats.steps > steps and len(drv.actions) == node.stats.steps)
    steps = node.stats.steps

    # accepted when it came (0.35 s old), stale by the time the images complete the observation
    stale = node.stats.stale
    step(joint_state(age_s=0.35), settle=0.3)
    assert spin_until(executor, lambda: node.stats.stale > stale) and node.stats.steps == steps

    rejected = node.stats.rejected_proprio
    bad = [
        joint_state(names=JOINTS[:3] + ["shoulder"], position=POSITION[:4], velocity=VELOCITY[:4]),  # no elbow
        joint_state(position=POSITION[:4]),  # 5 names, 4 positions
        joint_state(position=POSITION[:3] + [math.nan, 0.1]),
        joint_state(age_s=2.0),  # older than max_image_age_s
        joint_state(age_s=-1.0),  # from a clock 1 s ahead
    ]
    for msg in bad:
        step(msg)
    assert spin_until(executor, lambda: node.stats.rejected_proprio == rejected + len(bad))
    assert node.stats.steps == steps  # event mode waits for an accepted joint state: none was stepped on
    np.testing.assert_array_equal(node.proprio, np.float32([0.1, -0.2, 0.3, 0.5]))  # the last good one kept
    # once the last good one is old, the skip names the refusals since it, not only its age (a renamed joint
    # read as a dead driver)
    drv.spin(0.6)
    drv.send_pair()  # fresh images: only the joint state is old
    drv.spin(0.05)
    why = node._why_stale(dict(node.frames), None, node.params, node.stack)
    assert why is not None and why[0] == "stale_joint_state", why
    assert "the joint states since were refused, the latest: joint state stamped" in why[1], why

    # unstamped (drivers that leave the header empty) is taken as received, like an unstamped image
    unstamped = joint_state(position=[0.0, 0.0, 0.0, 0.7, -0.6])
    unstamped.header.stamp = Time()
    step(unstamped)
    assert spin_until(executor, lambda: node.stats.steps > steps)
    np.testing.assert_array_equal(node.proprio, np.float32([-0.6, 0.7, 0.0, 0.5]))

    # the joint state's own age limit (a slow arm driver): a 2 s old one is accepted under max_proprio_age_s
    # 3 s while images keep theirs (its step is then skipped as joint_state_skew: 2 s from the images), and
    # refused again, naming the limit, under 1 s
    assert node.set_parameters([Parameter("max_proprio_age_s", value=3.0)])[0].successful
    rejected = node.stats.rejected_proprio
    step(joint_state(position=[0.0, 0.0, 0.0, 0.2, -0.1], age_s=2.0))
    assert spin_until(executor, lambda: np.array_equal(node.proprio, np.float32([-0.1, 0.2, 0.0, 0.5])))
    assert node.stats.rejected_proprio == rejected
    assert node.set_parameters([Parameter("max_proprio_age_s", value=1.0)])[0].successful
    step(joint_state(age_s=2.0))
    assert spin_until(executor, lambda: node.stats.rejected_proprio == rejected + 1)
    assert "(limit max_proprio_age_s 1 s)" in node.stats.refusals[PROPRIO_INPUT]


@pytest.mark.ros
def test_policy_node_skips_steps_whose_joint_state_and_images_are_stamped_apart(executor, tiny_checkpoint, tmp_path,
                                                                                 spin_until):
    from fixtures import Driver
    from rclpy.duration import Duration
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Header

    from deer_vla.ros.image_conv import rgb_to_image_msg
    from deer_vla.ros.policy_node import PolicyNode

    # max_joint_state_skew_s at its default (0.1 s); a generous age limit, so that only the skew can refuse a step
    node = PolicyNode(parameter_overrides=[Parameter(k, value=v) for k, v in {
        "checkpoint_dir": str(_named_checkpoint(tiny_checkpoint, tmp_path)), "enabled": True,
        "proprio.source": "joint_state", "max_image_age_s": 1.0, "control_mode": "event"}.items()])
    executor.add_node(node)
    assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    drv = Driver(executor, proprio_dim=0)
    joint_pub = drv.node.create_publisher(JointState, "joint_states", 10)

    def step(joint_behind_s):
        """A joint state stamped ``joint_behind_s`` before the images, then one image per camera."""
        now = drv.node.get_clock().now()
        joint_stamp = now - Duration(nanoseconds=int(joint_behind_s * 1e9))
        joint_pub.publish(JointState(header=Header(stamp=joint_stamp.to_msg()), name=JOINTS, position=POSITION,
                                     velocity=VELOCITY))
        drv.spin(0.05)
        for pub in drv.image_pubs:
            pub.publish(rgb_to_image_msg(drv.rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8), now.to_msg()))
        drv.spin(0.05)

    def settled():
        """Every step sent has finished (the worker is idle): the counters below are final."""
        drv.spin(0.3)
        return node.stats.actions_published

    drv.instruct()
    for _ in range(100):  # matching stamps: actions, once discovery is done
        step(0.0)
        if drv.actions:
            break
    assert drv.actions, "no action out of joint states and images stamped alike"
    published, skipped = settled(), node.stats.joint_state_skew

    for _ in range(3):  # joint state 0.3 s behind the images: each fresh by itself, but not one moment
        step(0.3)
    assert spin_until(executor, lambda: node.stats.joint_state_skew >= skipped + 3)
    assert settled() == published and node.stats.stale >= 3
    # counted by reason in the node's /diagnostics status, beside the joint state's age
    values = {kv.key: kv.value for kv in node.diagnostics().status[0].values}
    assert int(values["skipped joint_state_skew"]) == node.stats.joint_state_skew >= skipped + 3
    assert 0.0 <= float(values["joint state age s"]) < 1.0
    # the sentence the node logs ("not stepping: ...") and shows on /diagnostics names the camera, the gap and the
    # limit (read from the node: /rosout of a node name reused within one test process is not reliably delivered)
    assert re.fullmatch(r"joint state stamped 30\d ms before camera '\w+''s image \(limit max_joint_state_skew_s "
                        r"100 ms\): the arm pose and the picture are from different moments",
                        node.stats.skip_details["joint_state_skew"]), node.stats.skip_details

    step(0.0)  # matching stamps again: stepping resumes
    assert spin_until(executor, lambda: node.stats.actions_published > published)

    # a run-time change: 0 is refused saying how to turn the check off; a limit above the gap lets it through
    refused = node.set_parameters([Parameter("max_joint_state_skew_s", value=0.0)])[0]
    assert not refused.successful and "to turn the check off" in refused.reason
    assert node.set_parameters([Parameter("max_joint_state_skew_s", value=0.5)])[0].successful
    published, skipped = settled(), node.stats.joint_state_skew
    step(0.3)
    assert spin_until(executor, lambda: node.stats.actions_published > published)
    assert node.stats.joint_state_skew == skipped


@pytest.mark.ros
def test_a_step_pairs_its_images_with_the_joint_state_stamped_nearest_them(executor, tiny_checkpoint, tmp_path,
                                                                           spin_until):
    """A camera's latency puts the newest joint state ahead of the picture: the step uses the joint state
    stamped nearest its images (message_filters' ApproximateTime), so the arm pose and the picture agree."""
    from fixtures import Driver
    from rclpy.duration import Duration
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Header

    from deer_vla.ros.image_conv import rgb_to_image_msg
    from deer_vla.ros.policy_node import PolicyNode

    # timer mode at a slow rate: this test prepares the steps itself
    node = PolicyNode(parameter_overrides=[Parameter(k, value=v) for k, v in {
        "checkpoint_dir": str(_named_checkpoint(tiny_checkpoint, tmp_path)), "proprio.source": "joint_state",
        "control_mode": "timer", "rate_hz": 0.05}.items()])
    executor.add_node(node)
    assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    drv = Driver(executor, proprio_dim=0)
    joint_pub = drv.node.create_publisher(JointState, "joint_states", 10)
    drv.instruct()
    assert spin_until(executor, lambda: node.instruction is not None)
    now = drv.node.get_clock().now()
    picture = now - Duration(nanoseconds=150_000_000)  # when the cameras took the images
    poses = {  # stamp offset from the picture (s) -> joint positions
        -0.06: [0.0, 0.1, 0.0, 0.1, 0.1],
        0.01: [0.0, 0.2, 0.0, -0.3, 0.4],  # the pose at the picture
        0.09: [0.0, 0.3, 0.0, 0.2, -0.5],  # the newest: the arm has moved on since
    }
    for offset, position in poses.items():
        stamp = picture + Duration(nanoseconds=int(offset * 1e9))
        joint_pub.publish(JointState(header=Header(stamp=stamp.to_msg()), name=JOINTS, position=position,
                                     velocity=VELOCITY))
    assert spin_until(executor, lambda: len(node._joint_history) == 3)
    for pub in drv.image_pubs:
        pub.publish(rgb_to_image_msg(np.zeros((48, 64, 3), dtype=np.uint8), picture.to_msg()))
    assert spin_until(executor, lambda: len(node.frames) == 2)

    def expected(offset: float) -> np.ndarray:
        return node._joint_map.extract(JOINTS, poses[offset], VELOCITY, [])

    np.testing.assert_array_equal(node.proprio, expected(0.09))  # the newest arrived last ...
    job = node.prepare_step()
    assert job is not None
    np.testing.assert_array_equal(job.proprio, expected(0.01))  # ... the step takes the one of the picture
    # images of a later picture pair with the newest
    for pub in drv.image_pubs:
        later = picture + Duration(nanoseconds=80_000_000)
        pub.publish(rgb_to_image_msg(np.zeros((48, 64, 3), dtype=np.uint8), later.to_msg()))
    assert spin_until(executor, lambda: all(f.stamp_ns == later.nanoseconds for f in node.frames.values()))
    job = node.prepare_step()
    assert job is not None
    np.testing.assert_array_equal(job.proprio, expected(0.09))
    # the clock goes back (a simulator reset under use_sim_time): the new episode's stamps repeat the old ones,
    # and the pose held from before the reset must not be paired with the new pictures
    reset_pose = [0.0, -0.4, 0.0, 0.3, 0.2]
    again = picture + Duration(nanoseconds=10_000_000)  # the stamp of an old pose (offset 0.01)
    joint_pub.publish(JointState(header=Header(stamp=again.to_msg()), name=JOINTS, position=reset_pose,
                                 velocity=VELOCITY))
    assert spin_until(executor, lambda: node._proprio_stamp_ns == again.nanoseconds)
    for pub in drv.image_pubs:
        pub.publish(rgb_to_image_msg(np.zeros((48, 64, 3), dtype=np.uint8), again.to_msg()))
    assert spin_until(executor, lambda: all(f.stamp_ns == again.nanoseconds for f in node.frames.values()))
    job = node.prepare_step()
    assert job is not None
    np.testing.assert_array_equal(job.proprio, node._joint_map.extract(JOINTS, reset_pose, VELOCITY, []))
    # cleanup forgets the pairs: the next configuration waits for its own joint states
    assert node.trigger_deactivate() == R.SUCCESS and node.trigger_cleanup() == R.SUCCESS
    assert not node._joint_history


def test_a_repeated_hostile_joint_name_is_quoted_and_cut_in_the_error() -> None:
    """A joint name repeated in one message is named in the refusal, which is logged: raw, a name holding
    newlines or ANSI escapes forged log lines, and a 100 kB name flooded the log every 2 s."""
    name = "x\n[ERROR] [0.0] [deer_vla_policy]: forged\x1b[31m" + "y" * 100_000
    with pytest.raises(JointStateError) as err:
        MAP.extract([name, name], [0.0, 0.0])
    text = str(err.value)
    assert "\n" not in text and "\x1b" not in text and len(text) < 300, text[:300]
    assert f"{len(name)} characters" in text and "appears twice" in text
