"""Policy node guards (real tiny checkpoint, real rclpy): the late-action stop, the gate on stale-input stops,
the run-time freshness limits, the event-mode skew recovery, deactivate dropping a running step's action, and the
status window at a slow control rate."""
from __future__ import annotations

import time

import numpy as np
import pytest
from fixtures import INSTRUCTIONS, Driver, HeldStep, policy_node, spy_on_log, started_policy_node

pytestmark = pytest.mark.ros



def _is_zero(twist) -> bool:
    t = twist.twist
    return (t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z) == (0.0,) * 6



def _instructed(executor, node, spin_until) -> Driver:
    drv = Driver(executor)
    drv.instruct()
    assert spin_until(executor, lambda: node.instruction == INSTRUCTIONS[0])
    return drv


def _stamp_ns(age_s: float, node) -> int:
    return node.get_clock().now().nanoseconds - int(age_s * 1e9)


def _image_at(drv: Driver, stamp_ns: int):
    """An image stamped at ``stamp_ns`` (node clock; may lie in the future)."""
    from builtin_interfaces.msg import Time

    from deer_vla.ros.image_conv import rgb_to_image_msg

    rgb = drv.rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    return rgb_to_image_msg(rgb, Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9))


def test_an_event_mode_step_that_ends_too_late_sends_a_zero_twist(executor, tiny_checkpoint, spin_until):
    """Event mode, stale_action zero: a step that outlived max_image_age_s had its action refused, but nothing
    was sent in its place, so a consumer without a command timeout kept the previous velocity (the timer-mode
    hung-step check never runs in event mode, where no new image set comes while the source waits)."""
    node = started_policy_node(executor, tiny_checkpoint, enabled=True, stale_action="zero", max_image_age_s=0.5)
    drv = _instructed(executor, node, spin_until)
    real = node.stack.controller.step
    node.stack.controller.step = lambda obs, **kw: (time.sleep(0.8), real(obs, **kw))[1]
    assert drv.step_once(node)  # one image set; its step ends 0.8 s after the images were taken
    assert node.stats.skipped["late_action"] == 1
    assert not drv.actions and not drv.grippers, "an action on images past max_image_age_s went out"
    assert len(drv.twists) == 1 and _is_zero(drv.twists[0]), "no zero twist for the period without an action"


def test_a_gated_node_sends_no_stale_action_stops(executor, tiny_checkpoint, spin_until):
    """stale_action zero on a gated (dry-run) node: each stale image set sent a zero twist, fighting the teleop or
    planner that drives the arm while the policy only watches. Once enabled, the same stale sets do send them."""
    from rclpy.parameter import Parameter

    node = started_policy_node(executor, tiny_checkpoint, enabled=False, stale_action="zero", max_image_age_s=0.5)
    drv = _instructed(executor, node, spin_until)
    assert drv.drive_until(lambda: node.stats.stale >= 3, age_s=5.0)
    drv.spin(0.2)
    assert not drv.twists and not drv.actions, f"a gated node published {len(drv.twists)} twist(s)"
    assert node.set_parameters([Parameter("enabled", value=True)])[0].successful
    assert drv.drive_until(lambda: len(drv.twists) >= 2, age_s=5.0)  # the setup does make stops once enabled
    assert all(_is_zero(t) for t in drv.twists) and not drv.actions


def _future_images(drv: Driver, node) -> None:
    drv.send_pair(first=_image_at(drv, _stamp_ns(-0.5, node)))  # camera 1 stamped 0.5 s ahead of the clock


def _aged_images(drv: Driver, node) -> None:
    drv.send_pair(age_s=2.0)


def _skewed_images(drv: Driver, node) -> None:
    drv.send_pair(first=drv.image(age_s=0.3))  # camera 1 0.3 s behind camera 2, both fresh


def _send_until(drv: Driver, node, send, predicate, timeout: float = 10.0) -> bool:
    """``send(drv, node)`` an image set (spinning in between) until ``predicate()``."""
    end = time.monotonic() + timeout
    while not predicate() and time.monotonic() < end:
        send(drv, node)
        drv.spin(0.1)
    return bool(predicate())


# parameter, value at configure (the images are refused), value set at run time (the same images step), the
# images, the skip reason at configure's value
FRESHNESS = [
    ("max_image_age_s", 0.5, 5.0, _aged_images, "stale_image"),
    ("max_image_skew_s", 0.1, 0.5, _skewed_images, "image_skew"),
    ("max_image_future_s", 0.1, 1.0, _future_images, "future_image"),
]


@pytest.mark.parametrize(("name", "before", "after", "send", "reason"), FRESHNESS, ids=[f[0] for f in FRESHNESS])
def test_a_freshness_limit_set_at_run_time_decides_the_next_step(executor, tiny_checkpoint, spin_until, name, before,
                                                                 after, send, reason):
    """The freshness limits are documented as changeable at run time (`ros2 param set`, config/policy.yaml): one
    left out of the run-time set was refused on an active node ("take effect only at configure"), so an operator
    could not loosen or tighten it without a cleanup and configure."""
    from rclpy.parameter import Parameter

    node = started_policy_node(executor, tiny_checkpoint, **{name: before})
    drv = _instructed(executor, node, spin_until)
    assert _send_until(drv, node, send, lambda: node.stats.skipped[reason] >= 1)
    assert node.stats.steps == 0
    result = node.set_parameters([Parameter(name, value=after)])[0]
    assert result.successful, result.reason
    assert getattr(node.params, name) == after and node.get_parameter(name).value == after
    assert _send_until(drv, node, send, lambda: node.stats.steps >= 1), \
        f"the same images were still refused under {name} {after}"


def test_the_instruction_limit_set_at_run_time_refuses_the_next_instruction(executor, tiny_checkpoint, spin_until):
    """max_instruction_chars is documented as changeable at run time; left out of the run-time set, the change
    was refused on an active node."""
    from rclpy.parameter import Parameter

    node = started_policy_node(executor, tiny_checkpoint)
    result = node.set_parameters([Parameter("max_instruction_chars", value=len(INSTRUCTIONS[0]) - 1)])[0]
    assert result.successful, result.reason
    drv = Driver(executor)
    drv.instruct(INSTRUCTIONS[0])
    assert spin_until(executor, lambda: node.stats.rejected_instructions == 1)
    assert node.instruction is None


def test_every_documented_run_time_parameter_changes_on_an_active_node(executor, tiny_checkpoint):
    """config/policy.yaml and docs/ros.md list the parameters `ros2 param set` changes while configured; each
    must be accepted on an active node and be in force (node.params) at once."""
    from rclpy.parameter import Parameter

    node = started_policy_node(executor, tiny_checkpoint)
    changes = {"enabled": True, "stale_action": "zero", "max_image_age_s": 0.7, "max_image_skew_s": 0.3,
               "max_image_future_s": 0.2, "hold_rate_hz": 5.0, "hold_max_s": 0.4, "max_joint_state_skew_s": 0.05,
               "max_instruction_chars": 100, "repeated_instruction": "keep"}
    for name, value in changes.items():
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert result.successful, f"{name}: {result.reason}"
        assert getattr(node.params, name) == value, name


def test_a_set_refused_for_skew_steps_once_the_lagging_camera_sends_again(executor, tiny_checkpoint, spin_until):
    """Event mode: two fresh frames stamped further apart than max_image_skew_s are refused (image_skew). Only the
    lagging camera's frame may be consumed: consuming both (and the proprioception) left the other camera waiting
    for a frame a lock-step source never sends, and no step ran again."""
    from std_msgs.msg import Float32MultiArray

    node = started_policy_node(executor, tiny_checkpoint, max_image_age_s=2.0, max_image_skew_s=0.5)
    drv = _instructed(executor, node, spin_until)
    static, wrist = drv.image_pubs
    values = [0.1, -0.2, 0.3, 0.0]
    drv.proprio_pub.publish(Float32MultiArray(data=values))
    assert spin_until(executor, lambda: node.proprio is not None and np.allclose(node.proprio, values))
    fresh = drv.image()
    wrist.publish(fresh)
    assert spin_until(executor, lambda: "wrist" in node.frames and node.frames["wrist"].msg == fresh)
    static.publish(drv.image(age_s=1.0))  # fresh (< 2 s) but 1 s behind the wrist's
    assert spin_until(executor, lambda: node.stats.skipped["image_skew"] == 1)
    assert node.stats.steps == 0
    static.publish(drv.image())  # only the lagging camera sends again
    assert spin_until(executor, lambda: node.stats.steps == 1), "the refused set's fresh frames never stepped"


def test_a_step_running_across_deactivate_and_activate_publishes_nothing(executor, tiny_checkpoint, spin_until):
    """Deactivate must void a step that is running: one that outlived a deactivate + activate published its
    action, computed before the deactivate, into the new activation (the operator's stop undone by a stale
    command). It is discarded and counted."""
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = started_policy_node(executor, tiny_checkpoint, enabled=True, max_image_age_s=5.0)
    drv = _instructed(executor, node, spin_until)
    held = HeldStep(node)
    node.stack.controller.step = held
    try:
        drv.send_pair()
        assert spin_until(executor, held.started.is_set)
        assert node.trigger_deactivate() == R.SUCCESS
        assert node.trigger_activate() == R.SUCCESS
        drv.spin(0.2)
        twists = len(drv.twists)  # deactivate's stop
    finally:
        held.release.set()
    assert spin_until(executor, lambda: node.stats.steps == 1)
    assert drv.settle(node)
    assert not drv.actions and not drv.grippers and len(drv.twists) == twists
    assert node.stats.discarded == 1 and node.stats.actions_published == 0


def test_the_status_window_spans_two_control_periods_at_a_slow_rate(executor, tiny_checkpoint):
    """rate_hz 0.5 (a step every 2 s) and a 1 s diagnostics period: judged over the diagnostics period alone,
    the status said "no step in the last 1 s" (WARN) between every two steps of a healthy node."""
    node = started_policy_node(executor, tiny_checkpoint, rate_hz=0.5, diagnostics_period_s=1.0)
    assert node.health_snapshot().window_s == pytest.approx(4.0)
    drv = Driver(executor)
    drv.instruct()
    assert drv.step_once(node)
    from deer_vla.ros.health import Moment

    two_s_ago = Moment(time.monotonic_ns() - 2 * 10**9, node.get_clock().now().nanoseconds - 2 * 10**9)
    node.stats.last_step = two_s_ago  # the last step 2 s ago: one period at 0.5 Hz
    status = node.diagnostics().status[0]
    assert status.level == bytes([0]), status.message
    assert {kv.key: kv.value for kv in status.values}["period s"] == "4"


def test_timer_mode_waits_for_the_first_proprioception_instead_of_failing_a_step_each_period(
        executor, tiny_checkpoint) -> None:
    """Timer mode stepped every period before the first proprio message: each step failed in the model
    ("the policy needs proprioception") and counted as a model error, logged at ERROR. It is a wait, as for a
    camera's first image: skipped as no_proprio, with stale_action's stop."""
    node = started_policy_node(executor, tiny_checkpoint, enabled=True, control_mode="timer", rate_hz=20.0,
                               stale_action="zero")
    drv = Driver(executor, proprio_dim=0)  # images and the instruction only
    drv.instruct(INSTRUCTIONS[0])
    assert drv.drive_until(lambda: node.stats.skipped["no_proprio"] >= 5, timeout=10.0)
    assert node.stats.model_errors == 0 and node.stats.steps == 0 and not drv.actions
    assert drv.twists and all(_is_zero(t) for t in drv.twists)  # stale_action: zero stops the arm
    assert "no proprioception accepted yet on 'proprio'" in node.stats.skip_details["no_proprio"]
    drv.proprio_dim = 4
    assert drv.drive_until(lambda: len(drv.actions) >= 2)  # the first message ends the wait


def test_event_mode_stops_the_arm_when_an_input_falls_silent(executor, tiny_checkpoint) -> None:
    """Event mode steps when every input has delivered anew: a camera (or the joint states) that stopped never
    reached a staleness check, and the last non-zero twist stood for the whole outage (an audit: 10 s). Once
    the inputs are stale, stale_action: zero sends its stop, once; the next fresh set steps again."""
    node = started_policy_node(executor, tiny_checkpoint, enabled=True, control_mode="event", rate_hz=20.0,
                               stale_action="zero", max_image_age_s=0.3)
    drv = Driver(executor)
    drv.instruct(INSTRUCTIONS[0])
    assert drv.drive_until(lambda: len(drv.actions) >= 3)
    actions, stale = len(drv.actions), node.stats.stale
    drv.twists.clear()
    drv.spin(0.8)  # every input silent
    assert len(drv.actions) == actions and node.stats.stale == stale + 1  # one stop per outage
    assert len(drv.twists) == 1 and _is_zero(drv.twists[0])
    assert "camera" in node.stats.skip_details["stale_image"]
    assert drv.drive_until(lambda: len(drv.actions) >= actions + 2)  # inputs back: steps again


def test_event_modes_watch_sends_no_stop_between_whole_sets_delivered_apart(executor, tiny_checkpoint) -> None:
    """A lock-step source whose two cameras' images of one capture arrive 80 ms apart: between sets one
    camera's new frame sits beside the other's previous one, which a first version of the watch judged as
    cameras apart (image_skew) and stopped the arm between every two actions (a review: 11 stops in 12 steps).
    The watch judges ages only."""
    import time

    from std_msgs.msg import Float32MultiArray

    node = started_policy_node(executor, tiny_checkpoint, enabled=True, control_mode="event", rate_hz=20.0,
                               stale_action="zero", max_image_age_s=1.0, max_image_skew_s=0.1)
    drv = Driver(executor)
    drv.instruct(INSTRUCTIONS[0])
    drv.spin(0.3)
    for _ in range(8):
        steps = node.stats.steps
        drv.proprio_pub.publish(Float32MultiArray(data=[0.1, 0.2, 0.3, 0.4]))
        static, wrist = drv.image(), drv.image()  # one capture: one moment
        drv.image_pubs[1].publish(wrist)
        drv.spin(0.08)  # the static camera's transport is 80 ms slower
        drv.image_pubs[0].publish(static)
        end = time.monotonic() + 5
        while node.stats.steps == steps and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.01)
        drv.spin(0.1)  # the source applies the action, then captures again
    assert node.stats.steps >= 8 and node.stats.stale == 0
    assert drv.twists and not any(_is_zero(t) for t in drv.twists)


def test_timer_mode_stops_when_the_float_array_proprioception_stops_or_is_only_refused(
        executor, tiny_checkpoint) -> None:
    """Float-array proprio carries no stamp, and timer mode stepped on the last accepted one for as long as the
    images came: a stopped arm feed, or one sending only NaN, kept the arm moving on its last pose with an OK
    status (an audit: 50 of 50 twists non-zero over 5 s). It goes stale by arrival after max_image_age_s."""
    from std_msgs.msg import Float32MultiArray

    node = started_policy_node(executor, tiny_checkpoint, enabled=True, control_mode="timer", rate_hz=20.0,
                               stale_action="zero", max_image_age_s=0.3)
    drv = Driver(executor)
    drv.instruct(INSTRUCTIONS[0])
    assert drv.drive_until(lambda: len(drv.actions) >= 2)
    drv.proprio_dim = 0  # the arm feed stops; the cameras go on
    assert drv.drive_until(lambda: node.stats.skipped["stale_proprio"] >= 3, timeout=10.0)
    assert "no fresh proprioception: the last accepted on 'proprio' arrived" in node.stats.skip_details[
        "stale_proprio"]
    drv.twists.clear()
    actions = len(drv.actions)
    drv.drive_until(lambda: False, timeout=0.3)
    assert len(drv.actions) == actions and drv.twists and all(_is_zero(t) for t in drv.twists)
    # a feed of refused values only: the same, and the skip says why
    skipped = node.stats.skipped["stale_proprio"]
    nan = Float32MultiArray(data=[float("nan")] * 4)

    def nan_feed() -> bool:
        drv.proprio_pub.publish(nan)
        return node.stats.skipped["stale_proprio"] >= skipped + 3 and node.stats.rejected_proprio > 0

    assert drv.drive_until(nan_feed, timeout=10.0)
    assert len(drv.actions) == actions
    assert "the messages since were refused" in node.stats.skip_details["stale_proprio"]
    drv.proprio_dim = 4  # the feed comes back: steps again
    assert drv.drive_until(lambda: len(drv.actions) >= actions + 2)


def test_the_proprioception_has_its_own_age_limit(executor, tiny_checkpoint) -> None:
    """max_proprio_age_s parts the proprio feed's limit from the cameras': a feed slower than
    1/max_image_age_s was stale between its messages unless the image limit was loosened with it. 0 (the
    default) keeps the one limit, max_image_age_s, for both."""
    from rclpy.parameter import Parameter

    node = started_policy_node(executor, tiny_checkpoint, enabled=True, control_mode="timer", rate_hz=20.0,
                               stale_action="zero", max_image_age_s=0.3, max_proprio_age_s=1.5)
    drv = Driver(executor)
    drv.instruct(INSTRUCTIONS[0])
    assert drv.drive_until(lambda: len(drv.actions) >= 2)
    # the cameras keep their own limit: images 0.6 s old (under the proprio's 1.5 s) are stale
    stale, actions = node.stats.skipped["stale_image"], len(drv.actions)
    assert drv.drive_until(lambda: node.stats.skipped["stale_image"] >= stale + 3, age_s=0.6)
    assert "(limit max_image_age_s 0.3 s)" in node.stats.skip_details["stale_image"]
    assert drv.drive_until(lambda: len(drv.actions) >= actions + 2)  # fresh ones step again
    drv.proprio_dim = 0  # the feed pauses; the cameras go on
    paused = time.monotonic()
    actions = len(drv.actions)
    drv.drive_until(lambda: time.monotonic() - paused > 0.9, timeout=2.0)  # three image limits, under its own
    assert node.stats.skipped["stale_proprio"] == 0 and len(drv.actions) > actions + 3
    assert drv.drive_until(lambda: node.stats.skipped["stale_proprio"] >= 1, timeout=10.0)
    assert time.monotonic() - paused > 1.2  # its own 1.5 s (from its last message, sent just before)
    assert "(limit max_proprio_age_s 1.5 s)" in node.stats.skip_details["stale_proprio"]
    # back to one limit at run time: the images' 0.3 s, and the skip names it
    drv.proprio_dim = 4
    assert drv.drive_until(lambda: len(drv.actions) >= actions + 8)
    assert node.set_parameters([Parameter("max_proprio_age_s", value=0.0)])[0].successful
    drv.proprio_dim = 0
    paused, skipped = time.monotonic(), node.stats.skipped["stale_proprio"]
    assert drv.drive_until(lambda: node.stats.skipped["stale_proprio"] > skipped, timeout=10.0)
    assert time.monotonic() - paused < 1.5
    assert "(limit max_image_age_s 0.3 s)" in node.stats.skip_details["stale_proprio"]
    assert not node.set_parameters([Parameter("max_proprio_age_s", value=-1.0)])[0].successful


def _stepping_on_a_sim_clock(executor, checkpoint, **params):
    """A policy node under use_sim_time, configured, active and past two steps of a simulator (SimTimeSource)
    publishing /clock at sim time 1000 s on: (node, simulator); the caller destroys the simulator's node."""
    from fixtures import SimTimeSource, policy_node
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = policy_node(executor, checkpoint, use_sim_time=True, **params)
    sim = SimTimeSource(executor)
    assert sim.run_until(lambda: node.get_clock().now().nanoseconds >= 999 * 10**9, 5.0)
    assert node.trigger_configure() == R.SUCCESS
    assert sim.run_until(lambda: node.instruction is not None, send=False, step_s=0.005)
    assert node.trigger_activate() == R.SUCCESS
    assert sim.run_until(lambda: node.stats.steps >= 2, step_s=0.005)
    return node, sim


def test_a_sim_clock_that_stops_is_said_on_wall_time_and_stops_the_arm(executor, tiny_checkpoint):
    """Under use_sim_time the status and control timers run on /clock: a simulator that stopped publishing it
    silenced /diagnostics for the whole stall (11 s in an audit) and left the last twist standing. Watched on
    wall time: a WARN status '<node>: clock' and stale_action's stop, once; steps again when it moves."""
    import time

    from deer_vla.ros.policy_node import CLOCK_FROZEN_S

    node, sim = _stepping_on_a_sim_clock(executor, tiny_checkpoint, enabled=True, stale_action="zero",
                                         max_image_age_s=5.0)
    sent: list = []
    publish = node._diagnostics_pub.publish
    node._diagnostics_pub.publish = lambda arr: (sent.append(arr), publish(arr))[1]
    try:
        assert node._last_command is not None  # an action stands
        sent.clear()
        end = time.monotonic() + CLOCK_FROZEN_S + 2.5
        while time.monotonic() < end:  # /clock stops: nothing moves the node clock
            executor.spin_once(timeout_sec=0.05)
        clock = [s for arr in sent for s in arr.status if s.name.endswith(": clock")]
        assert clock and clock[-1].level == bytes([1]) and "the node clock has not moved for" in clock[-1].message
        assert node.stats.skipped["stale_clock"] == 1 and node._last_command is None  # stopped, once
        steps = node.stats.steps
        sent.clear()
        assert sim.run_until(lambda: node.stats.steps > steps + 1, step_s=0.005)  # it moves again: steps again
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        # said OK again under the same name: per-name consumers kept the last WARN
        clock = [s for arr in sent for s in arr.status if s.name.endswith(": clock")]
        assert clock and clock[-1].level == bytes([0]) and any("moves again" in s.message for s in clock)
        # and every period after that, as the other statuses (said only on a change, it went stale in
        # diagnostic_aggregator while all was well: an interfaces audit)
        sent.clear()
        assert sim.run_until(lambda: len([s for arr in sent for s in arr.status if s.name.endswith(": clock")]) >= 2,
                             5.0, step_s=0.005)
        clock = [s for arr in sent for s in arr.status if s.name.endswith(": clock")]
        assert all(s.level == bytes([0]) and s.message == "use_sim_time: the node clock moves" for s in clock)
    finally:
        sim.node.destroy_node()


def test_a_clock_watch_held_up_by_the_executor_does_not_say_the_clock_stood(executor, tiny_checkpoint, monkeypatch):
    """A configure loading the model blocks the executor for seconds: the watch ran late, found the clock where
    it had left it (its /clock messages still queued behind) and said `has not moved for 4 s (no /clock?)` with
    /clock at 20 Hz throughout; a stop would have gone out the same way. A clock that went back is said."""
    node, sim = _stepping_on_a_sim_clock(executor, tiny_checkpoint, enabled=True, stale_action="zero",
                                         max_image_age_s=5.0)
    warnings: list[str] = []
    monkeypatch.setattr(node.get_logger(), "warn", lambda m, said=warnings, **_: said.append(m))
    try:
        node._on_clock_watch()  # nothing spins from here: the node clock stands where the simulator left it
        assert node._last_command is not None and node._clock_moved is not None
        five_s = 5 * 10**9
        node._clock_watched_at -= five_s  # the watch's last run 5 s ago, the clock last seen moving then too
        node._clock_moved = (node._clock_moved[0], node._clock_moved[1] - five_s)
        node._on_clock_watch()
        assert not node._clock_frozen and node.stats.skipped["stale_clock"] == 0 and not warnings
        node._clock_moved = (node._clock_moved[0], node._clock_moved[1] - five_s)  # the watch on time: it stood
        node._on_clock_watch()
        assert node._clock_frozen  # (no stop: a step ran since the clock was last seen moving)
        # (the held-up run counted one period of the 5 s it waited: 1 s, then these 5)
        assert warnings[-1].startswith("use_sim_time: the node clock has not moved for 6 s")
        node._clock_moved = (node._clock_moved[0] + 3600 * 10**9, node._clock_moved[1])  # a simulator reset
        node._on_clock_watch()
        assert warnings[-1].startswith("use_sim_time: the node clock went back 3600.000 s (a simulator reset?)")
    finally:
        sim.node.destroy_node()


@pytest.mark.parametrize("control_mode", ["timer", "event"])
def test_without_a_simulator_the_timers_run_on_the_steady_clock(executor, tiny_checkpoint, monkeypatch,
                                                                control_mode):
    """The control, hold, event-watchdog and status timers ran on the node clock, which is the system clock without
    use_sim_time: stepped back 60 s (NTP, chrony at boot) they all stopped for 60 s (no step in timer mode, no
    stale stop, no /diagnostics; an audit with an LD_PRELOAD clock shim), and once the clock caught up the hold
    re-sent a twist computed a minute before. Under use_sim_time they stay on /clock."""
    from rclpy.clock import ClockType

    node = started_policy_node(executor, tiny_checkpoint, enabled=True, control_mode=control_mode,
                               hold_rate_hz=50.0, hold_max_s=0.3)
    timers = [*node._control_timers, node._hold_timer, node._diagnostics_timer, node._clock_watch]
    assert len(timers) == 4 and all(t.clock.clock_type == ClockType.STEADY_TIME for t in timers)
    warnings: list[str] = []
    monkeypatch.setattr(node.get_logger(), "warn", lambda m, said=warnings, **_: said.append(m))
    node._watch_system_clock(1_000 * 10**9, 5 * 10**9)
    node._watch_system_clock(941 * 10**9, 6 * 10**9)  # one second on the steady clock, 59 s back on the system's
    assert warnings == ["the system clock stepped back 60.0 s (NTP?): inputs stamped before the step are refused "
                        "as ahead of the clock until new ones come; control goes on on the steady clock"]
    node._watch_system_clock(942 * 10**9, 7 * 10**9)
    assert len(warnings) == 1  # once per step
    # a twist sent 5 s ago on the steady clock, however young the stepped node clock makes it, is not held
    from deer_vla.ros.policy_node import Moment

    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: node._last_command is not None)
    held = node.stats.hold_published
    node._last_command_at = Moment(time.monotonic_ns() - 5 * 10**9, node.get_clock().now().nanoseconds)
    node._on_hold_timer()
    assert node.stats.hold_published == held
    node._last_command_at = Moment(time.monotonic_ns(), node.get_clock().now().nanoseconds)
    node._on_hold_timer()
    assert node.stats.hold_published == held + 1


def test_under_a_simulators_clock_the_timers_stay_on_it(executor, tiny_checkpoint):
    from rclpy.clock import ClockType

    node, sim = _stepping_on_a_sim_clock(executor, tiny_checkpoint, enabled=True, control_mode="timer")
    try:
        assert all(t.clock.clock_type == ClockType.ROS_TIME for t in node._control_timers)
        assert node._diagnostics_timer.clock.clock_type == ClockType.ROS_TIME
    finally:
        sim.node.destroy_node()


def test_a_watch_late_on_every_run_still_finds_a_frozen_clock(executor, tiny_checkpoint, monkeypatch):
    """A first version forgave every late run of the watch: with an executor so busy that each run came 2.5 s
    after the last, 50 s of a frozen /clock were never said and the standing twist never stopped (a review)."""
    node, sim = _stepping_on_a_sim_clock(executor, tiny_checkpoint, enabled=True, stale_action="zero",
                                         max_image_age_s=5.0)
    monkeypatch.setattr(node.get_logger(), "warn", lambda *a, **k: None)
    try:
        node._on_clock_watch()
        late = int(2.5e9)
        for _ in range(5):  # 12.5 s of wall time, /clock standing
            node._clock_watched_at -= late
            node._clock_moved = (node._clock_moved[0], node._clock_moved[1] - late)
            node.stats.last_step = None  # nothing stepped since (the stop's other condition)
            node._on_clock_watch()
        assert node._clock_frozen and node.stats.skipped["stale_clock"] == 1 and node._last_command is None
    finally:
        sim.node.destroy_node()


def test_the_clock_watch_leaves_a_step_in_flight_alone(executor, tiny_checkpoint):
    """A lock-step simulator holds /clock while it waits for the action: a step taking 6 s of wall time met
    a first version of the clock watch, which stopped the arm at 3 s and let the step's action out after it
    (a review). No stop while a step runs or after one finished during the freeze."""
    import threading
    import time

    from fixtures import HeldStep

    node, sim = _stepping_on_a_sim_clock(executor, tiny_checkpoint, enabled=True, stale_action="zero",
                                         max_image_age_s=5.0)
    obs = Driver(executor, name="clock_watch_obs")
    try:
        assert sim.run_until(lambda: not node.health_snapshot().step_running, send=False, step_s=0.005)
        held = HeldStep(node)
        node.stack.controller.step = held
        obs.twists.clear()
        sim.send()  # one observation; the simulator waits for its action: /clock stands
        threading.Timer(5.0, held.release.set).start()
        end = time.monotonic() + 6.5
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.02)
        assert obs.twists and not any(_is_zero(t) for t in obs.twists)  # the action, no stop
        assert node.stats.skipped["stale_clock"] == 0
    finally:
        sim.node.destroy_node()


def test_the_status_reads_step_ages_on_the_sim_clock_of_a_slow_simulator(executor, tiny_checkpoint):
    """use_sim_time with a simulator at a tenth of real time: its windows are sim seconds (timers on the node
    clock) but the ages of the last step and the inputs were wall seconds, so a node stepping at its rate read
    "no step for 5 s" (ERROR). Ages are on the sim clock under use_sim_time; a clock that went back reads the
    wall age."""

    from deer_vla.ros.health import Moment

    node, sim = _stepping_on_a_sim_clock(executor, tiny_checkpoint, max_image_age_s=5.0, diagnostics_period_s=1.0)
    try:
        steps = node.stats.steps
        node.diagnostics()  # the period judged next starts here
        sim.run_until(lambda: False, 3.0, step_s=0.005, send=False)  # 3 s of wall time, 0.3 s of sim time
        snap = node.health_snapshot()
        assert node.stats.steps == steps and snap.last_step_age_s < 0.5 and snap.active_for_s < 1.0
        status = node.diagnostics().status[0]
        assert status.level == bytes([0]) and "no step" not in status.message, status.message
    finally:
        sim.node.destroy_node()
    then = Moment(mono_ns=10**9, clock_ns=1000 * 10**9)
    assert then.age_s(Moment(2 * 10**9, 1000 * 10**9 + 10**8), sim_time=True) == pytest.approx(0.1)
    assert then.age_s(Moment(2 * 10**9, 1000 * 10**9 + 10**8), sim_time=False) == pytest.approx(1.0)
    assert then.age_s(Moment(2 * 10**9, 10 * 10**9), sim_time=True) == pytest.approx(1.0)  # the clock went back


def test_activated_before_the_simulators_first_clock_is_active_for_as_long_as_it_was(executor, tiny_checkpoint):
    """A launch file activates at start, the simulator publishes /clock later: the activation moment read sim
    time 0, and once /clock said 1000 s the status said "active for 1000 s" (and would judge a missing step as
    if it had been missing that long). A moment before the sim clock started is aged on the wall clock."""
    from fixtures import SimTimeSource, policy_node
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = policy_node(executor, tiny_checkpoint, use_sim_time=True, max_image_age_s=5.0, diagnostics_period_s=1.0)
    assert node.get_clock().now().nanoseconds == 0  # no /clock yet
    assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    sim = SimTimeSource(executor)  # /clock from 1000 s; no images
    try:
        assert sim.run_until(lambda: node.get_clock().now().nanoseconds >= 1000 * 10**9, 5.0, send=False)
        assert node.health_snapshot().active_for_s < 10.0
    finally:
        sim.node.destroy_node()


def test_two_bad_start_up_values_can_be_mended_one_at_a_time(executor, tiny_checkpoint):
    """Started with device 'CPU' and fixed_exit -1, an unconfigured node refused `ros2 param set device cpu`
    naming fixed_exit, and `fixed_exit 0` naming device (and any other change, and a non-atomic load of both):
    only an atomic set of both mended it. A change is refused only for a problem it brings; configure still
    judges them all."""
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    node = policy_node(executor, tiny_checkpoint, device="CPU", fixed_exit=-1)
    assert node.trigger_configure() == R.FAILURE
    result = node.set_parameters([Parameter("device", value="cpu")])[0]
    assert result.successful, result.reason
    assert node.get_parameter("device").value == "cpu"
    bad = node.set_parameters([Parameter("rate_hz", value=-5.0)])[0]  # a problem of its own: refused, named
    assert not bad.successful and "rate_hz" in bad.reason and "fixed_exit" not in bad.reason
    assert node.get_parameter("rate_hz").value != -5.0
    assert node.set_parameters([Parameter("enabled", value=True)])[0].successful and node.enabled
    assert node.trigger_configure() == R.FAILURE  # fixed_exit still -1
    assert node.set_parameters([Parameter("fixed_exit", value=0)])[0].successful
    assert node.trigger_configure() == R.SUCCESS
    # a check across parameters runs only once each value is valid alone: mending the last one shows it, and
    # it is not the mended parameter's to answer for; a change that brings one is refused
    node.trigger_cleanup()
    masked = policy_node(executor, tiny_checkpoint, device="CPU", fixed_exit=1, **{"risk.eps": 0.1})
    mended = masked.set_parameters([Parameter("device", value="cpu")])[0]
    assert mended.successful, mended.reason
    assert masked.trigger_configure() == R.FAILURE  # "risk.eps certifies dynamic exits ..."
    brings = policy_node(executor, tiny_checkpoint, device="CPU", fixed_exit=1)
    refused = brings.set_parameters([Parameter("risk.eps", value=0.1)])[0]
    assert not refused.successful and "risk.eps certifies dynamic exits" in refused.reason
    assert node.trigger_configure() == R.SUCCESS
    # configured: the parameters are whole again, and a bad value is refused as before
    bad = node.set_parameters([Parameter("max_image_age_s", value=-1.0)])[0]
    assert not bad.successful and "max_image_age_s" in bad.reason
    # rclpy's use_sim_time is not applied at configure: it switches the clock, and the refusal says so
    clock = node.set_parameters([Parameter("use_sim_time", value=True)])[0]
    assert not clock.successful and clock.reason.startswith("use_sim_time switches the node's clock")
    assert "read at start-up" in node.describe_parameter("autostart").additional_constraints  # not at configure


def test_parameter_changes_applied_at_once_from_two_callback_groups_leave_the_last_values_in_force(executor,
                                                                                                  tiny_checkpoint):
    """rclpy stores a value, then calls the node back, unlocked; a multi-threaded executor runs a parameter set
    (rclpy's group) beside ~/enable (the node's): an apply that read the values before another's store assigned
    that older snapshot last (max_image_age_s 0.45 stored, 0.5 in force), and a closing whose apply ran after an
    enable had stored true shut the gate under `enabled` true (an audit, with a delay in the window)."""
    import threading

    from rclpy.parameter import Parameter

    node = started_policy_node(executor, tiny_checkpoint, enabled=True, max_image_age_s=0.5)
    node._apply_parameter_change([Parameter("enabled", value=False)])  # a closing applied after the enable stored
    assert node.enabled is True and node.get_parameter("enabled").value is True and node.params.enabled is True

    real, raced = node._params_with, []

    def snapshot_then_race(changes):
        values = real(changes)
        if not changes and not raced:  # the apply's own read: another set stores and applies meanwhile
            raced.append(threading.Thread(target=node.set_parameters,
                                          args=([Parameter("max_image_age_s", value=0.45)],)))
            raced[0].start()
            raced[0].join(0.5)
        return values

    node._params_with = snapshot_then_race
    node.set_parameters([Parameter("hold_max_s", value=0.4)])
    raced[0].join(10.0)
    assert node.get_parameter("max_image_age_s").value == 0.45
    assert node.params.max_image_age_s == 0.45 and node.params.hold_max_s == 0.4


def test_an_enable_applied_during_configure_does_not_put_an_unconfigured_snapshot_in_force(executor,
                                                                                          tiny_checkpoint,
                                                                                          monkeypatch):
    """~/enable runs in the node's callback group, beside configure: its apply read the parameters while the
    node was unconfigured (rate_hz 0, "the checkpoint's") and assigned them after configure had resolved them,
    so the node held a rate of 0. Configure's assignment and an apply take the same lock."""
    import threading
    import time

    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    import deer_vla.ros.policy_node as policy_node_module

    node = policy_node(executor, tiny_checkpoint, enabled=False, rate_hz=0.0)
    real_params_with, real_load = node._params_with, policy_node_module.load_stack
    snapshots: list[bool] = []

    def slow_snapshot(changes):
        values = real_params_with(changes)
        if not changes and node.stack is None and not snapshots:  # the apply's read, taken unconfigured
            snapshots.append(True)
            end = time.monotonic() + 1.5
            while node.stack is None and time.monotonic() < end:  # configure would assign meanwhile
                time.sleep(0.01)
        return values

    enabling: list[threading.Thread] = []

    def load_with_an_enable(*args, **kwargs):
        enabling.append(threading.Thread(target=node.set_parameters, args=([Parameter("enabled", value=True)],)))
        enabling[0].start()
        time.sleep(0.3)  # the enable's apply is waiting in its read
        return real_load(*args, **kwargs)

    monkeypatch.setattr(node, "_params_with", slow_snapshot)
    monkeypatch.setattr(policy_node_module, "load_stack", load_with_an_enable)
    assert node.trigger_configure() == R.SUCCESS
    enabling[0].join(10.0)
    assert snapshots and node.params.rate_hz > 0  # resolved by configure (10 Hz for a checkpoint recording none)
    assert node.params.enabled is True and node.enabled is True


def test_an_empty_or_blank_instruction_is_counted_as_refused_and_says_what_stays(executor, tiny_checkpoint,
                                                                               spin_until, monkeypatch):
    """An empty or zero-width-only instruction was refused ("empty instruction ignored") but not counted in
    `rejected instructions`, as an over-long one is, and the line did not say what stays in force."""
    node = started_policy_node(executor, tiny_checkpoint)
    errors = spy_on_log(node, "error", monkeypatch)
    drv = Driver(executor)
    drv.instruct(INSTRUCTIONS[0])
    assert spin_until(executor, lambda: node.instruction == INSTRUCTIONS[0])
    for n, text in enumerate(("", "\u200b\u200b", "   "), 1):
        drv.instruct(text)
        assert spin_until(executor, lambda: node.stats.rejected_instructions == n)  # noqa: B023
    assert node.instruction == INSTRUCTIONS[0]
    assert errors and all(m == "empty instruction ignored; keeping the previous instruction" for m, _ in errors)


def test_a_halt_during_configure_is_answered_while_the_instruction_record_is_built(executor, tiny_checkpoint,
                                                                                  monkeypatch):
    """Configure builds the instruction check (seconds for a record of 100 000 wordings); built under the apply
    lock, a ~/halt's reply (its parameter change is applied under that lock) waited for all of it."""
    import threading
    import time

    from rclpy.lifecycle import TransitionCallbackReturn as R
    from std_srvs.srv import Trigger

    import deer_vla.ros.policy_node as policy_node_module

    node = policy_node(executor, tiny_checkpoint, enabled=True)
    real_for_runner = policy_node_module.InstructionCheck.for_runner
    building = threading.Event()

    def slow_for_runner(runner):
        building.set()
        time.sleep(2.0)
        return real_for_runner(runner)

    monkeypatch.setattr(policy_node_module.InstructionCheck, "for_runner", staticmethod(slow_for_runner))
    answered: list[float] = []

    def halt_while_building():
        building.wait(20.0)
        time.sleep(0.2)
        started = time.monotonic()
        node._srv_halt(Trigger.Request(), Trigger.Response())
        answered.append(time.monotonic() - started)

    halting = threading.Thread(target=halt_while_building)
    halting.start()
    assert node.trigger_configure() == R.SUCCESS
    halting.join(20.0)
    assert answered and answered[0] < 1.0, answered  # not the record's build time
    assert node.enabled is False and node.get_parameter("enabled").value is False
