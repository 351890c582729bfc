"""The policy node's own /diagnostics status: the pure level rules (deer_vla/ros/health.py) and the node (real
rclpy) going OK -> WARN -> ERROR when a camera stops, naming the camera and counting skipped steps by reason."""
from __future__ import annotations

from dataclasses import replace

import pytest

from deer_vla.ros.budget_monitor import ERROR, OK, WARN
from deer_vla.ros.health import SKIP_REASONS, HealthSnapshot, InputAge, image_problem, policy_status
from deer_vla.ros.params import POLICY_DEFAULTS, ParameterError, parse_params

S = 1_000_000_000  # ns per second


def test_image_problem_names_the_camera_and_the_rule():
    now = 100 * S
    limits = {"max_age_s": 0.5, "max_skew_s": 0.2, "max_future_s": 0.1}
    assert image_problem({"static": now - S // 10, "wrist": now}, now, **limits) is None
    reason, why = image_problem({"static": now, "wrist": None}, now, **limits)
    assert reason == "no_image" and "camera 'wrist'" in why
    reason, why = image_problem({"static": now, "wrist": now + S}, now, **limits)
    assert reason == "future_image" and "camera 'wrist'" in why and "1.000 s ahead" in why
    reason, why = image_problem({"static": now - 3 * S, "wrist": now}, now, **limits)
    assert reason == "stale_image" and "camera 'static'" in why and "3.000 s ago" in why
    reason, why = image_problem({"static": now - 3 * S // 10, "wrist": now}, now, **limits)
    assert reason == "image_skew" and "0.300 s apart" in why and "max_image_skew_s" in why


def _snap(**changes) -> HealthSnapshot:
    """An active node stepping normally: a step 0.05 s ago, both cameras fresh, nothing skipped."""
    base = HealthSnapshot(
        active=True, enabled=True, window_s=1.0, instruction_topic="instruction", has_instruction=True,
        steps=10, actions_published=10, skipped={}, skip_details={},
        cameras={"static": InputAge("cam/static", 0.05, 0.04), "wrist": InputAge("cam/wrist", 0.05, 0.04)},
        proprio_kind="joint state", proprio=InputAge("joint_states", 0.03, 0.03),
        last_step_age_s=0.05, last_action_age_s=0.05, active_for_s=20.0, info={"checkpoint": "/ckpt"},
    )
    return replace(base, **changes)


def _values(status) -> dict[str, str]:
    return dict(status.values)


def test_timer_mode_stepping_under_half_its_rate_is_a_warning():
    """A 0.9 s model step at rate_hz 10 gave one step a second, and /diagnostics said OK ("stepping: 1 step(s)"):
    each twist is a per-step delta over the nominal 0.1 s period, so a consumer holding it moved ten times as
    far per step. Under half the rate's steps in a period is WARN; event mode (no rate) and a short period are
    not judged, nor the period in which the node was activated."""
    before = _snap(steps=0, actions_published=0)
    slow = policy_status(_snap(steps=1, expected_period_steps=10.0), before)
    assert slow.level == WARN and "stepping below the control rate: 1 of 10 step(s)" in slow.message
    assert policy_status(_snap(steps=5, expected_period_steps=10.0), before).level == OK  # half: fine
    assert policy_status(_snap(steps=1, expected_period_steps=None), before).level == OK  # event mode
    assert policy_status(_snap(steps=1, expected_period_steps=2.0), before).level == OK  # too short to tell
    assert policy_status(_snap(steps=1, expected_period_steps=10.0), None).level == OK  # no period yet
    just_active = _snap(steps=1, expected_period_steps=10.0, active_for_s=1.5)
    assert policy_status(just_active, replace(before, active=False)).level == OK


def test_policy_status_level_rules():
    before = _snap(steps=0, actions_published=0)
    ok = policy_status(_snap(), before)
    assert ok.level == OK and "10 step(s) in the last 1 s" in ok.message
    values = _values(ok)
    assert values["steps"] == "10" and values["steps (last period)"] == "10" and values["checkpoint"] == "/ckpt"
    assert values["joint state age s"] == "0.030" and values["camera static: image age s"] == "0.050"
    assert all(values[f"skipped {r}"] == "0" for r in SKIP_REASONS)

    # skipped steps in the last period: WARN naming the most frequent reason and its latest sentence
    skipped = _snap(steps=14, skipped={"stale_image": 3, "image_skew": 1},
                    skip_details={"stale_image": "camera 'static''s newest image is stamped 0.7 s ago"})
    warn = policy_status(skipped, _snap())
    assert warn.level == WARN
    assert "4 of 8 steps skipped" in warn.message and "mostly stale_image: camera 'static''s" in warn.message
    assert _values(warn)["skipped stale_image"] == "3" and _values(warn)["skipped stale_image (last period)"] == "3"
    # ... counted per period: skips before it (cumulative only) leave the status OK
    later = policy_status(replace(skipped, steps=20), skipped)
    assert later.level == OK and _values(later)["skipped stale_image (last period)"] == "0"
    assert _values(later)["skipped stale_image"] == "3"

    # camera 'static' silent: WARN for the first windows, then ERROR, both naming it
    dead = {"static": InputAge("cam/static", 1.6, 1.6), "wrist": InputAge("cam/wrist", 0.05, 0.04)}
    short = policy_status(_snap(cameras=dead, last_step_age_s=1.6), _snap())
    assert short.level == WARN and "no image from camera 'static' on 'cam/static' for 1.6 s" in short.message
    dead = {"static": InputAge("cam/static", 3.2, 3.2), "wrist": InputAge("cam/wrist", 0.05, 0.04)}
    error = policy_status(_snap(cameras=dead, last_step_age_s=3.2), _snap())
    assert error.level == ERROR
    assert error.message == "no step for 3.2 s: no image from camera 'static' on 'cam/static' for 3.2 s"

    # images arrive but are skipped (stale stamps): the most frequent reason of the period is named
    stale = _snap(last_step_age_s=5.0, skipped={"stale_image": 40},
                  skip_details={"stale_image": "camera 'wrist''s newest image is stamped 5.000 s ago"})
    error = policy_status(stale, _snap())
    assert error.level == ERROR and "stale_image: camera 'wrist''s newest image" in error.message
    # the joint state stops (event mode waits for it): named
    joint = policy_status(_snap(last_step_age_s=4.0, proprio=InputAge("joint_states", 4.0, 4.0)), _snap())
    assert joint.level == ERROR and "no joint state on 'joint_states' for 4.0 s" in joint.message
    # inputs fresh but a step hangs in the model
    hung = policy_status(_snap(last_step_age_s=4.0, step_running=True), _snap())
    assert hung.level == ERROR and "still running" in hung.message

    # inactive, no instruction, waiting for the first image: WARN however long it lasts
    assert policy_status(_snap(active=False, active_for_s=None), None).level == WARN
    no_instruction = policy_status(_snap(has_instruction=False, last_step_age_s=None), None)
    assert no_instruction.level == WARN and "waiting for an instruction on 'instruction'" in no_instruction.message
    first = policy_status(_snap(cameras={"static": InputAge("cam/static"), "wrist": InputAge("cam/wrist", 0.1, 0.1)},
                                last_step_age_s=None, active_for_s=60.0), None)
    assert first.level == WARN and "waiting for the first image from camera 'static'" in first.message
    assert _values(first)["camera static: image age s"] == "never"
    # ... and one whose images arrive and are all refused says so, with the reason, not "waiting"
    refused = policy_status(_snap(cameras={"static": InputAge("cam/static", refused=40,
                                                              refusal="unsupported image encoding 'yuv422'"),
                                           "wrist": InputAge("cam/wrist", 0.1, 0.1)},
                                  last_step_age_s=None, active_for_s=5.0), None)
    assert refused.level == WARN and "waiting" not in refused.message
    assert "every image from camera 'static' on 'cam/static' refused (40 so far), the latest: unsupported image " \
           "encoding 'yuv422'" in refused.message and _values(refused)["camera static: refused"] == "40"
    joint = policy_status(_snap(proprio=InputAge("joint_states", refused=3, refusal="joint state: no joint "
                                                 "gripper in the message"), last_step_age_s=None,
                                active_for_s=5.0), None)
    assert "every joint state on 'joint_states' refused (3 so far), the latest: joint state: no joint gripper" \
           in joint.message
    # ... and one that sent good images, then only refused ones (a driver restarted with another encoding):
    # refused, not silent
    before = _snap(cameras={"static": InputAge("cam/static", 0.1, 0.1, refused=2),
                            "wrist": InputAge("cam/wrist", 0.1, 0.1)})
    switched = policy_status(_snap(cameras={"static": InputAge("cam/static", 2.5, 2.5, refused=27,
                                                               refusal="image encoding '8UC3' does not say ..."),
                                            "wrist": InputAge("cam/wrist", 0.05, 0.04)}, last_step_age_s=2.5), before)
    assert "every image from camera 'static' on 'cam/static' refused for 2.5 s (25 in the last period), the " \
           "latest: image encoding '8UC3'" in switched.message, switched.message
    quiet = policy_status(_snap(cameras={"static": InputAge("cam/static", 2.5, 2.5, refused=2),
                                         "wrist": InputAge("cam/wrist", 0.05, 0.04)}, last_step_age_s=2.5), before)
    assert "no image from camera 'static' on 'cam/static' for 2.5 s" in quiet.message  # none refused lately
    # ... but a camera that stopped after the node stepped is an ERROR (steps before a re-activation count not)
    restarted = policy_status(_snap(last_step_age_s=30.0, active_for_s=5.0,
                                    cameras={"static": InputAge("cam/static", 30.0, 30.0),
                                             "wrist": InputAge("cam/wrist", 0.05, 0.04)}), None)
    assert restarted.level == ERROR and "no step for 5.0 s" in restarted.message


def test_an_unconfigured_status_names_a_failed_transition_and_a_finalized_node_says_so_first():
    """A transition that raised left the node unconfigured with a never-configured node's WARN; a node shut down
    after a failed configure still said 'configure failed' at ERROR, never that it was finalized (an audit)."""
    from deer_vla.ros.health import unconfigured_status

    raised = unconfigured_status("unconfigured", "ck", None, "activate failed (from state 'inactive'): OSError: x")
    assert raised.level == ERROR and raised.message.startswith("activate failed") and "unconfigured" in raised.message
    failed = unconfigured_status("unconfigured", "ck", "checkpoint directory not found: ck")
    assert failed.level == ERROR and failed.message == "configure failed: checkpoint directory not found: ck"
    final = unconfigured_status("finalized", "ck", "checkpoint directory not found: ck")
    assert final.level == WARN and final.message.startswith("finalized: shut down")
    assert "before it, configure failed: checkpoint directory not found" in final.message
    assert unconfigured_status("unconfigured", "ck", None).level == WARN


def test_diagnostics_period_is_validated():
    assert parse_params({**POLICY_DEFAULTS, "diagnostics_period_s": 0.2}).diagnostics_period_s == 0.2
    for bad in (0.0, -1.0, float("inf"), float("nan"), 120.0, "1"):
        with pytest.raises(ParameterError, match="diagnostics_period_s"):
            parse_params({**POLICY_DEFAULTS, "diagnostics_period_s": bad})


@pytest.mark.ros
def test_policy_node_status_goes_ok_warn_error_when_a_camera_stops(executor, tiny_checkpoint):
    from diagnostic_msgs.msg import DiagnosticArray
    from fixtures import Driver
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter
    from std_msgs.msg import Float32MultiArray

    from deer_vla.ros.policy_node import PolicyNode

    # window max(0.2 s, 2 control periods at 10 Hz) = 0.2 s: ERROR after 0.6 s without a step
    node = PolicyNode(parameter_overrides=[Parameter(k, value=v) for k, v in {
        "checkpoint_dir": str(tiny_checkpoint), "diagnostics_period_s": 0.2, "control_mode": "event"}.items()])
    executor.add_node(node)
    assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    drv = Driver(executor)
    statuses: list = []  # (level, message, values) of this node's status, in arrival order
    drv.node.create_subscription(DiagnosticArray, "/diagnostics", lambda arr: statuses.extend(
        (s.level[0], s.message, {kv.key: kv.value for kv in s.values})
        for s in arr.status if s.name == "deer_vla_policy: policy" and s.hardware_id == "/deer_vla_policy"), 10)

    assert drv.drive_until(lambda: bool(statuses), timeout=5.0)
    assert statuses[-1][0] == WARN and "waiting for an instruction" in statuses[-1][1]
    drv.instruct()
    assert drv.drive_until(lambda: statuses[-1][0] == OK, timeout=5.0), statuses[-1]
    level, message, values = statuses[-1]
    assert int(values["steps"]) > 0 and int(values["steps (last period)"]) > 0
    assert "gated (dry run, by enabled: false at start)" in message
    assert values["checkpoint"] == str(tiny_checkpoint) and values["fidelity guarantee"] == "none in force"
    assert float(values["camera static: image age s"]) < 0.5 and values["exit mode"].startswith("dynamic")

    # camera 'static' stops; 'wrist' and proprio go on (event mode: no step is even tried, nothing is skipped)
    seen = len(statuses)
    for _ in range(60):
        drv.proprio_pub.publish(Float32MultiArray(data=[0.0] * drv.proprio_dim))
        drv.image_pubs[1].publish(drv.image())
        drv.spin(0.05)
        if statuses[-1][0] == ERROR:
            break
    after = [s[0] for s in statuses[seen:]]
    assert ERROR in after and WARN in after[:after.index(ERROR)], after
    assert "no step for" in statuses[-1][1] and "camera 'static'" in statuses[-1][1], statuses[-1][1]

    # both cameras again, stamped 5 s ago: each step is skipped as stale_image and counted
    assert drv.drive_until(lambda: statuses[-1][0] == ERROR and "stale_image" in statuses[-1][1], age_s=5.0)
    level, message, values = statuses[-1]
    assert "max_image_age_s" in message and int(values["skipped stale_image"]) > 0
    assert node.stats.skipped["stale_image"] == node.stats.stale > 0

    assert drv.drive_until(lambda: statuses[-1][0] == OK, timeout=5.0)  # fresh images: stepping again
    assert node.trigger_deactivate() == R.SUCCESS
    seen = len(statuses)
    drv.spin(0.5)
    assert statuses[seen:] and all(s[0] == WARN and "inactive" in s[1] for s in statuses[seen:])


@pytest.mark.ros
def test_policy_node_reports_before_configure_and_why_configure_failed(executor, tiny_checkpoint, tmp_path):
    """/diagnostics from construction on: WARN while unconfigured, ERROR naming the reason once a configure
    fails (a launch whose configure failed is not silent on the robot's monitor), the normal status once
    configured, and WARN again after cleanup."""
    from diagnostic_msgs.msg import DiagnosticArray
    from fixtures import Driver
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    from deer_vla.ros.policy_node import PolicyNode

    missing = tmp_path / "no_such_checkpoint"
    node = PolicyNode(parameter_overrides=[Parameter(k, value=v) for k, v in {
        "checkpoint_dir": str(missing), "diagnostics_period_s": 0.1}.items()])
    executor.add_node(node)
    drv = Driver(executor)
    statuses: list = []
    drv.node.create_subscription(DiagnosticArray, "/diagnostics", lambda arr: statuses.extend(
        (s.level[0], s.message, {kv.key: kv.value for kv in s.values})
        for s in arr.status if s.name == "deer_vla_policy: policy"), 10)
    assert drv.drive_until(lambda: bool(statuses), timeout=5.0)
    level, message, values = statuses[-1]
    assert level == WARN and "unconfigured: no checkpoint loaded" in message
    assert values["state"] == "unconfigured" and values["checkpoint"] == str(missing)

    assert node.trigger_configure() == R.FAILURE
    assert drv.drive_until(lambda: statuses[-1][0] == ERROR, timeout=5.0)
    assert "configure failed" in statuses[-1][1] and str(missing) in statuses[-1][1]
    seen = len(statuses)
    drv.spin(0.35)  # it keeps saying so, period after period
    assert len(statuses) - seen >= 2 and all(s[0] == ERROR for s in statuses[seen:])

    node.set_parameters([Parameter("checkpoint_dir", value=str(tiny_checkpoint))])
    assert node.trigger_configure() == R.SUCCESS
    assert drv.drive_until(lambda: "inactive" in statuses[-1][1] and "checkpoint" in statuses[-1][2]
                           and statuses[-1][2]["checkpoint"] == str(tiny_checkpoint), timeout=5.0)
    assert node.trigger_cleanup() == R.SUCCESS
    assert drv.drive_until(lambda: "unconfigured: no checkpoint loaded" in statuses[-1][1], timeout=5.0)
    assert statuses[-1][0] == WARN  # the failure was cleared by the successful configure


@pytest.mark.ros
def test_an_unwritable_record_path_fails_configure_naming_it(executor, tiny_checkpoint, tmp_path):
    """record_path where no file can be made: configure fails cleanly (FAILURE, nothing left created) with the
    parameter named in the log and on /diagnostics; a writable path then configures."""
    from fixtures import policy_node
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    (tmp_path / "a_file").write_text("not a folder")
    bad = tmp_path / "a_file" / "io.mcap"
    node = policy_node(executor, tiny_checkpoint, record_path=str(bad))
    assert node.trigger_configure() == R.FAILURE
    # nothing left created but the instruction's subscriptions, held from the node's start
    assert node.stack is None and node._recorder is None
    assert list(node.subscriptions) == node._instruction_subs and len(node._instruction_subs) == 2
    status = node.unconfigured_diagnostics().status[0]
    assert status.level[0] == ERROR and f"parameter 'record_path' = '{bad}'" in status.message
    node.set_parameters([Parameter("record_path", value=str(tmp_path / "io.mcap"))])
    assert node.trigger_configure() == R.SUCCESS and node._recorder is not None
    assert node.trigger_cleanup() == R.SUCCESS


@pytest.mark.ros
def test_a_ros_clock_that_jumps_back_does_not_make_a_silent_node_look_stepping(executor, tiny_checkpoint, monkeypatch):
    """A simulator reset or `ros2 bag play --loop` sends /clock back. The last step's age was read on the ROS
    clock, went negative and passed "within the window": a node with no step for seconds reported OK
    "stepping". Step and action ages are read on the monotonic clock, as input arrivals are."""
    from fixtures import Driver
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter
    from rclpy.time import Time

    from deer_vla.ros.policy_node import PolicyNode

    node = PolicyNode(parameter_overrides=[Parameter(k, value=v) for k, v in {
        "checkpoint_dir": str(tiny_checkpoint), "diagnostics_period_s": 0.2, "control_mode": "event"}.items()])
    executor.add_node(node)
    assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: node.stats.steps >= 2) and drv.settle(node)
    before = node.health_snapshot()
    clock = node.get_clock()
    back = Time(nanoseconds=clock.now().nanoseconds - 60_000_000_000, clock_type=clock.clock_type)

    class JumpedBack:  # the node's clock, 60 s behind from now on
        clock_type = clock.clock_type

        def now(self):
            return back

    monkeypatch.setattr(node, "get_clock", lambda: JumpedBack())
    drv.spin(1.0)  # no images: no step for 1 s, five windows
    snap = node.health_snapshot()
    assert snap.last_step_age_s is not None and snap.last_step_age_s >= 0.9
    status = policy_status(snap, before)
    assert status.level != OK and "no step" in status.message, status.message


@pytest.mark.ros
def test_a_camera_whose_every_image_is_refused_is_reported_as_refused_not_as_silent(executor, tiny_checkpoint):
    """A driver publishing an encoding the node refuses (v4l2_camera's yuv422_yuy2) read on /diagnostics as
    "waiting for the first image from camera 'static'", which sends the operator to the topic or the driver."""
    from fixtures import Driver, policy_node
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = policy_node(executor, tiny_checkpoint)
    assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    drv = Driver(executor)
    drv.instruct()
    for _ in range(40):
        msg = drv.image()
        msg.encoding = "yuv422_yuy2"
        drv.send_pair(first=msg)
        drv.spin(0.05)
        if node.stats.refused["static"] >= 3 and node.instruction is not None:
            break
    status = node.diagnostics().status[0]
    assert "every image from camera 'static' on 'camera/static/image_raw' refused" in status.message, status.message
    assert "unsupported image encoding 'yuv422_yuy2'" in status.message
    assert {kv.key: kv.value for kv in status.values}["camera static: refused"] == str(node.stats.refused["static"])


@pytest.mark.ros
def test_a_silent_camera_says_who_publishes_its_topic_and_as_what(executor, tiny_checkpoint):
    """A raw camera on a topic the node reads as compressed (or the other way round) never connects, and DDS
    says nothing: /diagnostics read "waiting for the first image", which sends the operator to the driver. The
    status now says what the graph publishes there, and when nobody does."""
    import subprocess
    import sys
    import time

    from fixtures import Driver, policy_node
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = policy_node(executor, tiny_checkpoint, image_topics=["camera/static/image_raw/compressed",
                                                                "camera/wrist/image_raw"])
    assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    Driver(executor, topics=()).instruct()  # no camera of its own
    # another process (DDS refuses two types on one topic within a process), as a raw camera driver would be
    camera = subprocess.Popen([sys.executable, "-c", (
        "import rclpy, time\n"
        "from sensor_msgs.msg import Image\n"
        "rclpy.init(); n = rclpy.create_node('raw_camera')\n"
        "pub = n.create_publisher(Image, 'camera/static/image_raw/compressed', 10)\n"
        "end = time.monotonic() + 30\n"
        "while time.monotonic() < end: pub.publish(Image(height=8, width=8, encoding='rgb8', step=24, "
        "data=bytes(192))); time.sleep(0.1)\n")])
    try:
        deadline, message = time.monotonic() + 20.0, ""
        while time.monotonic() < deadline and "published as" not in message:
            executor.spin_once(timeout_sec=0.1)
            message = node.diagnostics().status[0].message
    finally:
        camera.kill()
        camera.wait()
    assert ("waiting for the first image from camera 'static' on 'camera/static/image_raw/compressed' (published "
            "as sensor_msgs/msg/Image, read here as sensor_msgs/msg/CompressedImage: a topic whose last name is "
            "'compressed' is read as CompressedImage") in message, message
    assert node.health_snapshot().cameras["wrist"].publishers == "no publisher on the ROS graph"


@pytest.mark.ros
def test_the_publisher_note_names_the_topic_asked_about_and_the_proprio_setting(executor, tiny_checkpoint):
    """A namespaced node said "no publisher" about 'camera/...' while `ros2 topic info camera/...` showed one
    (the driver ran outside the namespace): the note names the topic it asked about. A proprio topic of the
    other type did not say which setting decides the type."""
    import time

    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float32MultiArray

    from deer_vla.ros.policy_node import PolicyNode

    spaced = PolicyNode(namespace="robot1", parameter_overrides=[
        Parameter("checkpoint_dir", value=str(tiny_checkpoint))])
    executor.add_node(spaced)
    assert spaced._publishers_note("camera/wrist/image_raw", Image) == (
        "no publisher on the ROS graph for '/robot1/camera/wrist/image_raw'")
    spaced.create_publisher(JointState, "arm_state", 10)  # the node's own graph sees it at once or soon
    deadline, note = time.monotonic() + 5.0, ""
    while time.monotonic() < deadline and "published as" not in note:
        executor.spin_once(timeout_sec=0.05)
        note = spaced._publishers_note("arm_state", Float32MultiArray)
    assert note == ("published as sensor_msgs/msg/JointState, read here as std_msgs/msg/Float32MultiArray: "
                    "proprio.source joint_state reads JointState on proprio.joint_state_topic, array reads "
                    "Float32MultiArray on proprio_topic")


def test_joint_states_refused_after_good_ones_are_named_before_the_stale_skips_they_cause():
    """A driver that renamed a joint: its joint states arrive and are refused, so every step is skipped as a
    stale joint state; /diagnostics said "stale_joint_state: no fresh joint state", which sends an operator to
    a dead driver. The refusal and its reason come first."""
    before = _snap(proprio=InputAge("joint_states", 0.03, 0.03, refused=0))
    reason = "joint state: no joint finger_joint in the message (it has joint_1, ...)"
    now = _snap(proprio=InputAge("joint_states", 10.4, 10.4, refused=150, refusal=reason),
                skipped={"stale_joint_state": 100},
                skip_details={"stale_joint_state": "no fresh joint state: the newest accepted was stamped 10.4 s ago"},
                last_step_age_s=10.4)
    status = policy_status(now, before)
    assert "every joint state on 'joint_states' refused for 10.4 s (150 in the last period), the latest: " \
           f"{reason}" in status.message, status.message
    quiet = policy_status(replace(now, proprio=InputAge("joint_states", 10.4, 10.4, refused=0)), before)
    assert "stale_joint_state: no fresh joint state" in quiet.message  # none refused: the skips say it
