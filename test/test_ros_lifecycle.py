"""Policy node against hostile parameter changes and every lifecycle path (real rclpy, tiny checkpoint).

A parameter callback or a transition that raises ends the executor's spin (the process dies); one that
half-applies leaves the node in a state nobody asked for. These tests drive the node the way `ros2 param
set` and `ros2 lifecycle set` do and check what is left afterwards.
"""
from __future__ import annotations

import math
from typing import Any

import pytest
from fixtures import Driver, policy_node

pytestmark = pytest.mark.ros


# 1e-12: as a rate, a timer period beyond rcl's int64 nanoseconds
HOSTILE = [True, -1, 1e-12, 2**62, math.nan, -math.inf, "", "x" * 300, "1.5", ["a"], ["a", "a"], [1, 2], [1.5]]


def test_hostile_parameter_values_are_refused_with_a_reason_and_change_nothing(executor, tiny_checkpoint):
    """`ros2 param set` with wrong types, non-finite, huge or absurd values, unconfigured and active."""
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    from deer_vla.ros.params import POLICY_DEFAULTS

    node = policy_node(executor, tiny_checkpoint)
    for state in ("unconfigured", "active"):
        if state == "active":
            assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
        for name in POLICY_DEFAULTS:
            for value in HOSTILE:
                before = node.get_parameter(name).value
                result = node.set_parameters([Parameter(name, value=value)])[0]  # must not raise
                if result.successful:
                    node.set_parameters([Parameter(name, value=before)])
                    continue
                assert result.reason, (state, name, value)
                after = node.get_parameter(name).value
                assert type(after) is type(before) and (after == before or after != after), (state, name, value)
    assert node.active and node.stack is not None  # still running


def test_a_parameter_check_that_raises_refuses_the_change(executor, tiny_checkpoint, monkeypatch):
    """An unexpected exception in the check is a refusal with its reason, not an exception out of the callback."""
    from rclpy.parameter import Parameter

    import deer_vla.ros.policy_node as policy_module

    node = policy_node(executor, tiny_checkpoint)

    def broken(values):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(policy_module, "parse_params", broken)
    result = node.set_parameters([Parameter("rate_hz", value=20.0)])[0]
    assert not result.successful and "RuntimeError: disk on fire" in result.reason
    assert node.get_parameter("rate_hz").value == 0.0


def test_halt_closes_the_gate_even_while_other_parameters_are_invalid(executor, tiny_checkpoint, spin_until):
    """Launched with enabled:=true and a bad value, configure fails; ~/halt must still leave enabled false, or
    fixing the bad value and configuring again would actuate the robot the operator halted."""
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter
    from std_srvs.srv import Trigger

    node = policy_node(executor, tiny_checkpoint, enabled=True, rate_hz=-1.0)
    assert node.trigger_configure() == R.FAILURE
    drv = Driver(executor)
    halt = drv.node.create_client(Trigger, "/deer_vla_policy/halt")
    assert halt.wait_for_service(timeout_sec=5.0)
    future = halt.call_async(Trigger.Request())
    assert spin_until(executor, future.done) and future.result().success
    assert node.get_parameter("enabled").value is False and not node.enabled
    assert node.set_parameters([Parameter("rate_hz", value=10.0)])[0].successful
    assert node.trigger_configure() == R.SUCCESS and not node.enabled
    # enabling still validates everything
    assert not node.set_parameters([Parameter("enabled", value="yes")])[0].successful


def _held(node) -> dict[str, int]:
    """What the node holds in rclpy besides what every rclpy node has (the parameter-event publisher)."""
    import threading

    return {"timers": len(list(node.timers)), "subscriptions": len(list(node.subscriptions)),
            "publishers": len(list(node.publishers)) - 1,
            "step threads": sum(t.name == f"{node.get_name()}_step" for t in threading.enumerate())}


# what a node without a checkpoint keeps: its /diagnostics status timer and publisher (it reports from start-up),
# and the wall-time watch of a sim clock; after shutdown, nothing else
NOTHING = {"timers": 2, "subscriptions": 0, "publishers": 1, "step threads": 0}
# unconfigured (from start, after a cleanup): the instruction's two subscriptions (a planner's one plain message
# during configure is heard; a new subscription would be replayed a latched text a plain one may have replaced)
CLEANED_UP = {**NOTHING, "subscriptions": 2}


def test_lifecycle_cycles_leave_nothing_behind_and_inactive_keeps_its_diagnostics(executor, tiny_checkpoint):
    """configure -> activate -> deactivate -> cleanup, three times: the same timers, subscriptions, publishers
    and worker thread each time, none after cleanup but the instruction's; deactivate stops the stepping timers
    but not the status."""
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    node = policy_node(executor, tiny_checkpoint, enabled=True, control_mode="timer", hold_rate_hz=5.0)
    drv = Driver(executor)
    drv.instruct()
    assert _held(node) == CLEANED_UP
    held = []
    for _ in range(3):
        assert node.trigger_configure() == R.SUCCESS
        inactive = _held(node)
        assert node.trigger_activate() == R.SUCCESS
        assert node.set_parameters([Parameter("enabled", value=True)])[0].successful  # deactivate closed it
        twists = len(drv.twists)
        assert drv.drive_until(lambda n=twists: len(drv.twists) > n)
        held.append(_held(node))
        assert node.trigger_deactivate() == R.SUCCESS
        assert _held(node) == inactive
        assert node._diagnostics_timer in list(node.timers)  # the status goes on while inactive
        assert node.trigger_cleanup() == R.SUCCESS
        assert _held(node) == CLEANED_UP
    # diagnostics, clock watch, control and hold timers; 2 cameras + instruction (latched and plain) + proprio;
    # 5 outputs (with /diagnostics); one worker
    assert held == [{"timers": 4, "subscriptions": 5, "publishers": 5, "step threads": 1}] * 3


def test_shutdown_from_active_stops_the_robot_and_frees_everything(executor, tiny_checkpoint):
    """`ros2 lifecycle set /deer_vla_policy shutdown` while actuating ends with a zero twist, as deactivate."""
    from lifecycle_msgs.msg import State
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = policy_node(executor, tiny_checkpoint, enabled=True, control_mode="timer", hold_rate_hz=5.0)
    drv = Driver(executor)
    drv.instruct()
    assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    assert drv.drive_until(lambda: len(drv.twists) >= 2)
    moving = drv.twists[-1].twist.linear
    assert (moving.x, moving.y, moving.z) != (0.0, 0.0, 0.0)
    assert node.trigger_shutdown() == R.SUCCESS
    assert node._state_machine.current_state[0] == State.PRIMARY_STATE_FINALIZED
    drv.spin(0.3)
    last = drv.twists[-1].twist.linear
    assert (last.x, last.y, last.z) == (0.0, 0.0, 0.0)
    assert _held(node) == NOTHING and not node.active and node.stack is None


class _Recording:
    """A node's logger that also keeps the messages it logs as errors."""

    def __init__(self, logger: Any, errors: list[str]) -> None:
        self._logger, self._errors = logger, errors

    def error(self, message: str, **kwargs: Any) -> Any:
        self._errors.append(message)
        return self._logger.error(message, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


def test_a_failed_transition_leaves_a_node_that_configures_again_on_fresh_inputs(executor, tiny_checkpoint,
                                                                                  monkeypatch):
    """An exception in activate goes through on_error to 'unconfigured': everything it held is released, and
    the next configuration waits for its own proprioception (the array kind carries no stamp to age it by)."""
    from diagnostic_msgs.msg import DiagnosticStatus
    from lifecycle_msgs.msg import State
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from std_msgs.msg import Float32MultiArray

    node = policy_node(executor, tiny_checkpoint, hold_rate_hz=5.0)
    drv = Driver(executor)
    drv.instruct()
    assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    assert drv.drive_until(lambda: len(drv.records) >= 1)
    drv.proprio_pub.publish(Float32MultiArray(data=[0.5] * drv.proprio_dim))  # arrives, never used by a step
    drv.spin(0.3)
    assert node.trigger_deactivate() == R.SUCCESS

    def broken() -> None:
        raise RuntimeError("no timer for you")

    errors: list[str] = []  # what the node logs as errors, read at the node: /rosout in one test process with
    logger = node.get_logger()  # reused node names was not reliably delivered (failed a full CI run)
    monkeypatch.setattr(node, "get_logger", lambda: _Recording(logger, errors))
    monkeypatch.setattr(node, "_start_hold_timer", broken)
    assert node.trigger_activate() == R.ERROR
    assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
    assert _held(node) == CLEANED_UP and not node.active and node.stack is None
    said = [m for m in errors if "no timer for you" in m]
    assert said and "activate failed (from state 'inactive'): RuntimeError" in said[0]  # rclpy alone says nothing
    # and /diagnostics says it at ERROR, not a never-configured node's WARN (a lifecycle audit)
    status = node.unconfigured_diagnostics().status[0]
    assert status.level == DiagnosticStatus.ERROR, status.message
    assert "activate failed (from state 'inactive'): RuntimeError: no timer for you" in status.message
    assert "error processing left the node unconfigured" in status.message
    monkeypatch.undo()
    assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    assert node._transition_error is None  # a configure that succeeds clears it
    records = len(drv.records)
    for _ in range(5):  # images only: no step on the proprioception from before the error
        for pub in drv.image_pubs:
            pub.publish(drv.image())
        drv.spin(0.1)
    assert len(drv.records) == records
    assert drv.drive_until(lambda: len(drv.records) > records)  # with fresh proprioception it steps


def test_a_misspelt_parameter_in_a_parameter_file_fails_configure_instead_of_being_ignored(ros_context,
                                                                                           tiny_checkpoint, tmp_path):
    """rclpy drops a key the node does not declare without a word: `budget.average_gflop: 0.5` would run with
    no budget at all. rclpy's own names (use_sim_time, qos_overrides.*) and other nodes' sections are fine."""
    from rclpy.lifecycle import TransitionCallbackReturn as R

    from deer_vla.ros.params import unknown_parameters
    from deer_vla.ros.policy_node import PolicyNode

    def configure(budget_key: str) -> R:
        params = tmp_path / "policy.yaml"
        params.write_text(f"/**:\n  ros__parameters:\n    use_sim_time: false\n"
                          f"/**/deer_vla_policy:\n  ros__parameters:\n    checkpoint_dir: '{tiny_checkpoint}'\n"
                          f"    {budget_key}: 0.5\n/**/deer_vla_monitor:\n  ros__parameters:\n    log_dir: logs\n")
        node = PolicyNode(cli_args=["--ros-args", "--params-file", str(params),
                                    "-p", "qos_overrides./parameter_events.publisher.depth:=100"])
        try:
            return node.trigger_configure()
        finally:
            node.destroy_node()

    assert configure("budget.average_gflop") == R.FAILURE
    assert configure("budget.average_gflops") == R.SUCCESS
    message = unknown_parameters(["budget.average_gflop", "rate_hz", "qos_overrides./x.depth", "zzz"],
                                 ["budget.average_gflops", "rate_hz"])
    assert message is not None and "'budget.average_gflop' (did you mean 'budget.average_gflops'?)" in message
    assert "'zzz'" in message and "rate_hz" not in message and "qos_overrides" not in message
    assert unknown_parameters(["rate_hz"], ["rate_hz", "use_sim_time"]) is None


def test_a_rate_too_slow_for_a_timer_fails_configure_not_activate(executor, tiny_checkpoint):
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = policy_node(executor, tiny_checkpoint, control_mode="timer", rate_hz=1e-12)
    assert node.trigger_configure() == R.FAILURE  # was SUCCESS, then activate raised in create_timer


def test_an_invalid_topic_name_fails_configure_naming_the_parameter_and_leaks_nothing(executor, tiny_checkpoint):
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    node = policy_node(executor, tiny_checkpoint)
    # nothing but the instruction's subscriptions, held from the node's start
    for name, bad in [("gripper_topic", "1bad"), ("record_topic", "x//y"), ("image_topics", ["cam/a", "cam b"])]:
        good = node.get_parameter(name).value
        assert node.set_parameters([Parameter(name, value=bad)])[0].successful  # a name rcl refuses, not pydantic
        assert node.trigger_configure() == R.FAILURE, name  # was ERROR, after creating what came before it
        assert _held(node) == CLEANED_UP, name
        assert node.set_parameters([Parameter(name, value=good)])[0].successful
    assert node.trigger_configure() == R.SUCCESS


def test_autostart_configures_and_activates_once_even_if_its_timer_fires_twice(executor, tiny_checkpoint,
                                                                               spin_until):
    """Under the EventsExecutor the 0 s autostart timer could fire a second time before its destruction took
    effect: the second call asked an active node to configure (RCLError, "Transition is not registered"), which
    ended the lone node's process in 3 of 6 starts."""
    node = policy_node(executor, tiny_checkpoint, autostart=True)
    assert spin_until(executor, lambda: node.active, 20.0)
    node._autostart()  # the timer's second firing
    assert node.active and node.stack is not None


def test_a_step_that_outlives_cleanup_never_reaches_the_next_configuration(executor, tiny_checkpoint, tmp_path,
                                                                         monkeypatch):
    """Cleanup gives up on a step still running after worker_stop_timeout_s and says its result is dropped.
    The step ended later under the next configuration: its record went out on the new step_record topic (the
    monitor counted it), into the new recording and the new counters."""
    import threading
    import time

    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    from deer_vla.ros.policy_node import PolicyNode

    monkeypatch.setattr(PolicyNode, "worker_stop_timeout_s", 0.2)
    node = policy_node(executor, tiny_checkpoint, record_path=str(tmp_path / "a.mcap"))
    assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: node.stats.steps >= 1)
    assert drv.settle(node)
    real, release, started = node.stack.controller.step, threading.Event(), threading.Event()

    def held(obs, **kwargs):
        started.set()
        release.wait(10.0)  # the step outlives cleanup
        return real(obs, **kwargs)

    node.stack.controller.step = held
    drv.send_pair()
    deadline = time.monotonic() + 10.0
    while not started.is_set() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.01)
    assert started.is_set()
    assert node.trigger_deactivate() == R.SUCCESS and node.trigger_cleanup() == R.SUCCESS
    assert node.set_parameters([Parameter("record_path", value=str(tmp_path / "b.mcap"))])[0].successful
    assert node.trigger_configure() == R.SUCCESS
    steps, records = node.stats.steps, len(drv.records)
    release.set()
    drv.spin(1.0)  # the old step ends now
    assert len(drv.records) == records and node.stats.steps == steps
    assert node._recorder is not None and node._recorder.recorder.steps == 0
    assert node.trigger_cleanup() == R.SUCCESS


@pytest.mark.parametrize("start", ["unconfigured", "active"])
def test_a_finalized_node_refuses_enabled_true_and_every_other_change(executor, tiny_checkpoint, start):
    """~/enable answers a finalized node with success: false; `ros2 param set enabled true` was accepted and
    left `enabled` true on a node that can never actuate."""
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    node = policy_node(executor, tiny_checkpoint)
    if start == "active":
        assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    assert node.trigger_shutdown() == R.SUCCESS
    result = node.set_parameters([Parameter("enabled", value=True)])[0]
    assert not result.successful and "finalized" in result.reason
    assert node.get_parameter("enabled").value is False and not node.enabled
    assert node.set_parameters([Parameter("enabled", value=False)])[0].successful  # closing stays allowed
    # nor any other change: accepted, none would ever apply (an audit: a budget and a missing checkpoint taken)
    for name, value in (("budget.average_gflops", 1.0), ("checkpoint_dir", "/nonexistent")):
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful and "no parameter takes effect any more" in result.reason
        assert node.get_parameter(name).value != value


def test_configure_refuses_image_topics_that_feed_each_slot_the_other_camera(executor, tiny_checkpoint):
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = policy_node(executor, tiny_checkpoint,
                       image_topics=["camera/wrist/image_raw", "camera/static/image_raw"])
    assert list(node.get_parameter("image_topics").value) == ["camera/wrist/image_raw", "camera/static/image_raw"]
    assert node.trigger_configure() == R.FAILURE and node.stack is None
    assert "'camera/wrist/image_raw' feeds camera slot 'static'" in node._configure_error
    assert "in the model's camera order ['static', 'wrist']" in node._configure_error


def test_remapped_camera_topics_are_checked_and_named_as_subscribed(executor, tiny_checkpoint):
    """The crossed-camera check read the parameter, not the name subscribed: `-r camera/static/image_raw:=
    /robot1/camera/wrist/image_raw` (and the converse) fed each slot the other camera and configured. Logs and
    /diagnostics named the unremapped topic, sending the operator to one nobody listens on. A namespace's own
    words are not taken for camera names."""
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    from deer_vla.ros.policy_node import PolicyNode

    def node(name: str, namespace: str = "", remaps: tuple[str, ...] = (), **params) -> PolicyNode:
        overrides = {"checkpoint_dir": str(tiny_checkpoint), "torch_threads": 1, **params}
        made = PolicyNode(name, namespace=namespace, parameter_overrides=[Parameter(k, value=v) for k, v in
                                                                          overrides.items()],
                          cli_args=["--ros-args", *(a for r in remaps for a in ("-r", r))])
        executor.add_node(made)
        return made

    crossed = node("crossed", remaps=("camera/static/image_raw:=/robot1/camera/wrist/image_raw",
                                      "camera/wrist/image_raw:=/robot1/camera/static/image_raw"))
    assert crossed.trigger_configure() == R.FAILURE and crossed.stack is None
    assert "'/robot1/camera/wrist/image_raw' feeds camera slot 'static'" in crossed._configure_error
    moved = node("moved", remaps=("camera/static/image_raw:=/robot1/cam0/image",))
    assert moved.trigger_configure() == R.SUCCESS
    spaced = node("spaced", namespace="robot1")  # two robots' policy statuses must not share a name
    assert [s.name for s in spaced.unconfigured_diagnostics().status] == ["robot1/spaced: policy"]
    assert [s.name for s in moved.diagnostics().status][0] == "moved: policy"
    cameras = moved.health_snapshot().cameras
    assert cameras["static"].topic == "/robot1/cam0/image" and cameras["wrist"].topic == "camera/wrist/image_raw"
    # in namespace 'wrist', slot static's 'cam0' is '/wrist/cam0': the namespace names no camera
    plain = node("plain", namespace="wrist", image_topics=["cam0", "cam1"])
    assert plain.trigger_configure() == R.SUCCESS
    for made in (crossed, moved, plain):
        executor.remove_node(made)
        made.destroy_node()


def test_deactivate_closes_the_gate_so_activate_moves_nothing_until_enable(executor, tiny_checkpoint):
    """docs/ros.md: ~/halt gates actuation until ~/enable, "deactivating the node does the same". Deactivate sent
    its zero twist but left `enabled` true: the next activate (an operator's, or a lifecycle manager restarting
    the graph) moved the arm at once, and after cleanup and configure the node said ENABLED."""
    from fixtures import started_policy_node
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from std_srvs.srv import SetBool

    node = started_policy_node(executor, tiny_checkpoint, enabled=True, max_image_age_s=5.0)
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: len(drv.actions) >= 1) and drv.settle(node)
    assert node.trigger_deactivate() == R.SUCCESS
    assert node.get_parameter("enabled").value is False and not node.enabled
    for again in ("activate", "cleanup, configure, activate"):
        if again != "activate":
            assert node.trigger_deactivate() == R.SUCCESS and node.trigger_cleanup() == R.SUCCESS
            assert node.trigger_configure() == R.SUCCESS
        assert node.trigger_activate() == R.SUCCESS
        n_actions, n_twists = len(drv.actions), len(drv.twists)
        steps = node.stats.steps
        assert drv.drive_until(lambda s=steps: node.stats.steps >= s + 3)  # it steps (dry run), gated
        moving = [t for t in drv.twists[n_twists:] if t.twist.linear.x or t.twist.linear.y or t.twist.linear.z]
        assert len(drv.actions) == n_actions and not moving, again  # (deactivate's own zero twist may land here)
    client = drv.node.create_client(SetBool, "/deer_vla_policy/enable")
    assert client.wait_for_service(timeout_sec=5.0)
    future = client.call_async(SetBool.Request(data=True))
    assert drv.drive_until(future.done) and future.result().success
    n_actions = len(drv.actions)
    assert drv.drive_until(lambda: len(drv.actions) > n_actions)


def test_a_reconfigure_does_not_bring_back_a_superseded_latched_instruction(executor, tiny_checkpoint):
    """A latched publisher said A, a plain one B since: B was in force. Each configure subscribed anew, DDS
    replayed the latched A to the new subscription, and A came back into force with no one sending it. The
    subscriptions now outlive cleanup; a text sent while the node is unconfigured is taken at configure."""
    from fixtures import INSTRUCTIONS, started_policy_node
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from std_msgs.msg import String

    node = started_policy_node(executor, tiny_checkpoint, max_image_age_s=5.0)
    drv = Driver(executor)
    plain = drv.node.create_publisher(String, "instruction", 10)
    drv.instruct(INSTRUCTIONS[0])  # latched
    assert drv.drive_until(lambda: node.instruction == INSTRUCTIONS[0])
    assert drv.drive_until(lambda: plain.get_subscription_count() >= 1)
    plain.publish(String(data=INSTRUCTIONS[1]))
    assert drv.drive_until(lambda: node.instruction == INSTRUCTIONS[1])
    for _ in range(2):
        assert node.trigger_deactivate() == R.SUCCESS and node.trigger_cleanup() == R.SUCCESS
        assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
        drv.spin(1.0)  # a replay to a new subscription arrives within this
        assert node.instruction == INSTRUCTIONS[1]
    # sent while unconfigured: taken by the next configure, judged by it
    assert node.trigger_deactivate() == R.SUCCESS and node.trigger_cleanup() == R.SUCCESS
    plain.publish(String(data=INSTRUCTIONS[2]))
    drv.spin(0.5)
    assert node.instruction == INSTRUCTIONS[1]  # nothing judges it before configure
    assert node.trigger_configure() == R.SUCCESS
    assert node.instruction == INSTRUCTIONS[2]
    assert node.trigger_activate() == R.SUCCESS
    drv.spin(1.0)
    assert node.instruction == INSTRUCTIONS[2]


def test_an_executive_can_tell_what_closed_the_gate_and_whether_enable_will_act(executor, tiny_checkpoint):
    """From outside: ~/halt on a node that is not active answered "zero twist sent" (none was); ~/enable true on
    an inactive node answered "enabled" (nothing moves until activate); and /diagnostics said "gated (dry run)"
    alike after a ~/halt, a deactivate and for a node never enabled."""
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from std_srvs.srv import SetBool, Trigger

    from deer_vla.ros.health import policy_status

    node = policy_node(executor, tiny_checkpoint)
    drv = Driver(executor)
    halt = drv.node.create_client(Trigger, "/deer_vla_policy/halt")
    enable = drv.node.create_client(SetBool, "/deer_vla_policy/enable")
    assert halt.wait_for_service(timeout_sec=5.0) and enable.wait_for_service(timeout_sec=5.0)

    def call(client: Any, request: Any) -> Any:
        future = client.call_async(request)
        assert drv.drive_until(future.done, timeout=10.0)
        return future.result()

    def actuation() -> str:
        return dict(policy_status(node.health_snapshot(), None).values)["actuation"]

    said = call(halt, Trigger.Request()).message
    assert "zero twist sent" not in said and "unconfigured" in said and "no twist sent" in said
    said = call(enable, SetBool.Request(data=True)).message
    assert said.startswith("enabled") and "unconfigured: it acts once configured and active" in said
    assert node.trigger_configure() == R.SUCCESS
    assert actuation() == "enabled"
    assert "inactive" in call(enable, SetBool.Request(data=True)).message
    assert node.trigger_activate() == R.SUCCESS
    assert call(enable, SetBool.Request(data=True)).message == "enabled"
    assert call(halt, Trigger.Request()).message == "halted: zero twist sent, actuation gated until ~/enable"
    assert actuation() == "gated (dry run, by ~/halt)"
    call(enable, SetBool.Request(data=True))
    assert node.trigger_deactivate() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    assert actuation() == "gated (dry run, by deactivate)"
    call(enable, SetBool.Request(data=True))
    call(enable, SetBool.Request(data=False))
    assert actuation() == "gated (dry run, by ~/enable false)"


def test_a_stop_that_fails_in_deactivate_still_closes_the_gate(executor, tiny_checkpoint, monkeypatch):
    """An error in a transition stops actuation "as deactivate does (zero twist, gate closed)". The gate was
    closed last, after the stop: a stop that raised (on_error's own case: "the stop may be what failed") left
    `enabled` true, and the next configure + activate moved the robot at once."""
    from fixtures import started_policy_node
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = started_policy_node(executor, tiny_checkpoint, enabled=True)

    def broken(stack: Any) -> None:
        raise RuntimeError("publisher gone")

    monkeypatch.setattr(node, "_publish_stop", broken)
    assert node.trigger_deactivate() == R.ERROR  # -> on_error -> unconfigured
    monkeypatch.undo()
    assert not node.enabled and node.get_parameter("enabled").value is False
    assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    assert not node.enabled


def test_the_gates_cause_is_the_closing_threads_own(executor, tiny_checkpoint, monkeypatch):
    """A multi-threaded executor runs deactivate (default group) beside ~/halt (control group): the cause being
    applied was one attribute of the node, so one closing read the other's, or none."""
    import threading

    from fixtures import started_policy_node
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from std_srvs.srv import Trigger

    node = started_policy_node(executor, tiny_checkpoint, enabled=True)
    real_set = node.set_parameters
    in_set, go = threading.Event(), threading.Event()

    def slow_set(params: Any) -> Any:
        if threading.current_thread().name == "deactivating":
            in_set.set()
            go.wait(5)
        return real_set(params)

    monkeypatch.setattr(node, "set_parameters", slow_set)
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(node.trigger_deactivate()), name="deactivating")
    thread.start()
    assert in_set.wait(5)  # deactivate is about to set the parameter, its cause in hand
    node._srv_halt(Trigger.Request(), Trigger.Response())  # a ~/halt answered meanwhile, on this thread
    assert node._gated_by == "~/halt"
    go.set()
    thread.join(5)
    assert result == [R.SUCCESS] and node._gated_by == "deactivate"


def test_an_instruction_arriving_during_cleanup_is_taken_at_the_next_configure(executor, tiny_checkpoint,
                                                                                monkeypatch):
    """Input group and lifecycle apart (a multi-threaded executor): a text whose callback read the parameters
    before cleanup cleared them was dropped, neither taken nor kept; the old instruction stayed in force."""
    import threading

    from fixtures import INSTRUCTIONS, started_policy_node
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from std_msgs.msg import String

    node = started_policy_node(executor, tiny_checkpoint)
    node._on_instruction(String(data=INSTRUCTIONS[0]))
    assert node.instruction == INSTRUCTIONS[0]
    real = node._checked_instruction
    inside, go = threading.Event(), threading.Event()

    def held(data: str, params: Any) -> Any:
        inside.set()
        go.wait(5)
        return real(data, params)

    monkeypatch.setattr(node, "_checked_instruction", held)
    thread = threading.Thread(target=node._on_instruction, args=(String(data=INSTRUCTIONS[1]),))
    thread.start()
    assert inside.wait(5)
    assert node.trigger_deactivate() == R.SUCCESS and node.trigger_cleanup() == R.SUCCESS
    go.set()
    thread.join(5)
    monkeypatch.undo()
    assert node.trigger_configure() == R.SUCCESS
    assert node.instruction == INSTRUCTIONS[1]


def _racing(target: Any, hook_owner: Any, hook: str, when: Any = None) -> tuple[Any, Any, list]:
    """Run ``target`` on its own thread, held inside ``hook_owner.hook`` until released: before the hooked call,
    or after it when ``when(*args, result)`` says so. What a multi-threaded executor does when two callback
    groups run at once. -> (thread, release, errors)."""
    import threading

    real = getattr(hook_owner, hook)
    inside, go = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def held(*args: Any) -> Any:
        if when is None and not go.is_set():
            inside.set()
            go.wait(10)
        out = real(*args)
        if when is not None and when(*args, out) and not go.is_set():
            inside.set()
            go.wait(10)
        return out

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # what would have ended the executor's spin
            errors.append(exc)

    setattr(hook_owner, hook, held)
    thread = threading.Thread(target=run)
    thread.start()
    assert inside.wait(10), f"{target} never reached {hook}"
    return thread, go, errors


def test_an_enable_already_read_does_not_reopen_a_gate_halt_closed_meanwhile(executor, tiny_checkpoint):
    """`enabled: true` set on the parameter service while ~/halt ran on the control group: the parameter callback
    had read true, ~/halt closed the gate and answered, then the callback opened it again: actions went out
    after the halt's answer while `ros2 param get enabled` said false."""
    from fixtures import started_policy_node
    from rclpy.parameter import Parameter
    from std_srvs.srv import Trigger

    node = started_policy_node(executor, tiny_checkpoint)
    thread, release, errors = _racing(lambda: node.set_parameters([Parameter("enabled", value=True)]), node,
                                      "_params_with", lambda changes, params: changes == [] and params.enabled)
    node._srv_halt(Trigger.Request(), Trigger.Response())  # answered: the gate is closed
    release.set()
    thread.join(10)
    assert not errors and not node.enabled and node.get_parameter("enabled").value is False
    assert node._gated_by == "~/halt"


def test_status_and_step_timers_racing_cleanup_do_not_end_the_executor(executor, tiny_checkpoint):
    """The /diagnostics timer (control group) and the control timer (input group) checked that the node was
    configured, then read its configuration again: a cleanup in between (lifecycle, default group) made them
    raise AssertionError out of the executor's spin, which ends it and ~/halt with it."""
    from fixtures import started_policy_node
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = started_policy_node(executor, tiny_checkpoint, control_mode="timer")
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: node.stats.steps >= 1)
    for target, hook in ((node.publish_diagnostics, "_health_info"), (node.control_step, "_paired_joint_state")):
        drv.send_pair()
        drv.spin(0.05)
        thread, release, errors = _racing(target, node, hook)
        assert node.trigger_deactivate() == R.SUCCESS and node.trigger_cleanup() == R.SUCCESS
        release.set()
        thread.join(10)
        assert not errors, f"{hook}: {errors!r}"
        assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS


def test_a_gate_closed_without_its_parameter_stays_closed_through_configure(executor, tiny_checkpoint, monkeypatch):
    """The stop and the parameter's own setting both failed in a transition: on_error closed the gate "whatever
    the parameter says", and the next configure read the parameter (true) and opened it again. It stays closed
    until an explicit enable."""
    from fixtures import started_policy_node
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    node = started_policy_node(executor, tiny_checkpoint, enabled=True)

    def broken_stop(stack: Any) -> None:
        raise RuntimeError("publisher gone")

    real_set = node.set_parameters

    def broken_set(params: Any) -> Any:
        if any(p.name == "enabled" and p.value is False for p in params):
            raise RuntimeError("parameter event publisher gone")
        return real_set(params)

    monkeypatch.setattr(node, "_publish_stop", broken_stop)
    monkeypatch.setattr(node, "set_parameters", broken_set)
    assert node.trigger_deactivate() == R.ERROR  # -> on_error
    monkeypatch.undo()
    assert not node.enabled and node.get_parameter("enabled").value is True
    assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    assert not node.enabled
    assert node.set_parameters([Parameter("enabled", value=True)])[0].successful and node.enabled  # explicit


def test_a_plain_instruction_sent_before_the_first_configure_is_taken_by_it(executor, tiny_checkpoint):
    """A planner says the task once, on a plain (volatile) publisher, while the policy node is still loading its
    model: the subscriptions existed from the first configure on, so the text was lost and the robot waited for
    an instruction that had been given. They exist from the node's start."""
    from fixtures import INSTRUCTIONS
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from std_msgs.msg import String

    node = policy_node(executor, tiny_checkpoint)
    drv = Driver(executor)
    plain = drv.node.create_publisher(String, "instruction", 10)
    assert drv.drive_until(lambda: plain.get_subscription_count() >= 1, timeout=10.0)
    plain.publish(String(data=INSTRUCTIONS[2]))
    drv.spin(0.5)
    assert node.instruction is None  # nothing judges it before a configure
    assert node.trigger_configure() == R.SUCCESS
    assert node.instruction == INSTRUCTIONS[2]
