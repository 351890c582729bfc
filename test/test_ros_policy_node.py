"""Policy node in-process, with the real tiny checkpoint: I/O, lifecycle + gating, safety, budgets, record/replay."""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures import INSTRUCTIONS, Driver, HeldStep, policy_node, spy_on_log, started_policy_node

pytestmark = pytest.mark.ros


def test_images_and_instruction_in_actions_out(executor, tiny_checkpoint):
    from deer_vla.core import StepRecord

    node = started_policy_node(executor, tiny_checkpoint, enabled=True, frame_id="tool0", rate_hz=20.0)
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: len(drv.twists) >= 3 and len(drv.actions) >= 3 and len(drv.grippers) >= 3)
    spec = node.stack.action_spec
    twist = drv.twists[-1]
    assert twist.header.frame_id == "tool0"
    # REP-103 velocities: at most |limit| * scale / period on each axis
    bound = max(max(abs(lo), abs(hi)) * s for lo, hi, s in zip(spec.low, spec.high, spec.scale)) * 20.0
    lin = [twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z]
    assert all(np.isfinite(lin)) and max(abs(v) for v in lin) <= bound + 1e-9
    action = np.asarray(drv.actions[-1].data)
    assert action.shape == (7,) and np.all(np.abs(action) <= 1.0 + 1e-6)
    assert -1.0 <= drv.grippers[-1].data <= 1.0
    rec = StepRecord.from_json(drv.records[-1].data)
    assert 1 <= rec.exit_used <= node.stack.profile.num_exits
    assert rec.llm_gflops == pytest.approx(node.stack.profile.cost(rec.exit_used))
    assert rec.total_ms > 0 and len(rec.segment_ms) >= rec.exit_used


def test_the_twist_is_stamped_when_it_is_sent_not_with_the_cameras_stamp(executor, tiny_checkpoint):
    """The twist carried its first image's header stamp: 0 from an unstamped camera, and 0.3 s old from a
    slow one, so MoveIt Servo (commands older than 0.1 s are stale) halted on every step."""
    from builtin_interfaces.msg import Time

    node = started_policy_node(executor, tiny_checkpoint, enabled=True)
    drv = Driver(executor)
    drv.instruct()

    def stamp_age(msg) -> float:
        return (node.get_clock().now().nanoseconds - (msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)) * 1e-9

    assert drv.drive_until(lambda: len(drv.twists) >= 3, age_s=0.3)
    assert drv.settle(node)
    n = len(drv.twists)
    assert drv.drive_until(lambda: len(drv.twists) > n, age_s=0.3)
    assert 0 <= stamp_age(drv.twists[-1]) < 0.3  # stamped when sent, not 0.3 s back with its images
    assert drv.twists[-1].header.frame_id == "base_link"  # the checkpoint records no action frame
    unstamped = drv.image()
    unstamped.header.stamp = Time()
    assert drv.settle(node)
    n = len(drv.twists)
    for _ in range(50):
        drv.send_pair(first=unstamped)
        drv.spin(0.05)
        if len(drv.twists) > n:
            break
    assert len(drv.twists) > n and drv.twists[-1].header.stamp.sec > 0


def test_lifecycle_and_gating(executor, tiny_checkpoint, spin_until):
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from std_srvs.srv import SetBool, Trigger

    from deer_vla.core import StepRecord

    node = policy_node(executor, tiny_checkpoint)  # enabled defaults to False (gated)
    drv = Driver(executor)
    drv.instruct()
    drv.drive_until(lambda: False, timeout=0.4)
    assert not drv.records and node.stack is None  # unconfigured: nothing loaded, nothing out
    assert node.trigger_configure() == R.SUCCESS and node.stack is not None
    drv.drive_until(lambda: False, timeout=0.4)
    assert not drv.records and not drv.twists  # inactive
    assert node.trigger_activate() == R.SUCCESS
    assert drv.drive_until(lambda: len(drv.records) >= 3)  # dry run: computes and records ...
    assert not drv.twists and not drv.actions and not drv.grippers  # ... but actuates nothing
    # ... and its records say so (a lock-step simulator pairs actions with records by it)
    assert {StepRecord.from_json(r.data).actuated for r in drv.records} == {False}

    enable = drv.node.create_client(SetBool, "/deer_vla_policy/enable")
    halt = drv.node.create_client(Trigger, "/deer_vla_policy/halt")
    assert enable.wait_for_service(timeout_sec=5.0) and halt.wait_for_service(timeout_sec=5.0)
    future = enable.call_async(SetBool.Request(data=True))
    assert spin_until(executor, future.done) and future.result().success
    assert node.get_parameter("enabled").value is True
    assert drv.drive_until(lambda: len(drv.twists) >= 2 and len(drv.actions) >= 2)
    assert StepRecord.from_json(drv.records[-1].data).actuated is True

    future = halt.call_async(Trigger.Request())
    assert spin_until(executor, future.done) and future.result().success
    drv.spin(0.2)
    last = drv.twists[-1].twist
    assert (last.linear.x, last.linear.y, last.linear.z) == (0.0, 0.0, 0.0)  # halt sends a zero twist
    n_twists, n_records = len(drv.twists), len(drv.records)
    assert drv.drive_until(lambda: len(drv.records) >= n_records + 2)
    assert len(drv.twists) == n_twists  # gated again after halt

    from rclpy.parameter import Parameter

    assert node.set_parameters([Parameter("enabled", value=True)])[0].successful
    assert drv.drive_until(lambda: len(drv.twists) >= n_twists + 2)
    assert node.trigger_deactivate() == R.SUCCESS
    assert node.stack is not None  # deactivate keeps the model loaded
    drv.spin(0.2)
    last = drv.twists[-1].twist
    assert (last.linear.x, last.linear.y, last.linear.z) == (0.0, 0.0, 0.0)  # deactivate ends with a stop
    n_twists, n_records = len(drv.twists), len(drv.records)
    drv.drive_until(lambda: False, timeout=0.4)
    assert (len(drv.twists), len(drv.records)) == (n_twists, n_records)
    assert node.trigger_activate() == R.SUCCESS  # no reload needed
    assert node.get_parameter("enabled").value is False  # deactivate closed the gate, as ~/halt does
    drv.drive_until(lambda: False, timeout=0.4)
    assert len(drv.twists) == n_twists
    assert node.set_parameters([Parameter("enabled", value=True)])[0].successful
    assert drv.drive_until(lambda: len(drv.twists) > n_twists)
    assert node.trigger_deactivate() == R.SUCCESS and node.trigger_cleanup() == R.SUCCESS
    assert node.stack is None


def test_stale_images_produce_no_action(executor, tiny_checkpoint):
    node = started_policy_node(executor, tiny_checkpoint, enabled=True, max_image_age_s=0.5)
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: node.stats.stale >= 3, age_s=5.0)
    assert not drv.twists and not drv.actions and not drv.records
    assert drv.drive_until(lambda: len(drv.actions) >= 1)  # fresh images: actions again
    from rclpy.parameter import Parameter

    # a step handed to the worker with fresh images before the switch may still publish its action (legitimately):
    # let it land before counting (on a loaded machine it can finish after the switch)
    assert drv.settle(node)
    assert node.set_parameters([Parameter("stale_action", value="zero")])[0].successful
    n_actions, n_twists = len(drv.actions), len(drv.twists)
    assert drv.drive_until(lambda: len(drv.twists) >= n_twists + 2, age_s=5.0)
    drv.spin(0.1)
    assert len(drv.actions) == n_actions  # only zero twists, never a computed action
    assert all(t.twist.linear.x == 0.0 and t.twist.angular.z == 0.0 for t in drv.twists[n_twists:])


def test_a_step_that_outlives_its_images_fails_or_hangs_leaves_the_robot_stopped(executor, tiny_checkpoint):
    """Timer mode, stale_action zero. Freshness was checked only when a step was handed over: a 0.8 s step
    published an action on images 0.8-1.3 s old (limit 0.5 s), stamped now. A step that raised or hung sent
    nothing, so a consumer without a command timeout kept the last velocity, stale_action zero or not."""
    import threading
    import time

    node = started_policy_node(executor, tiny_checkpoint, enabled=True, control_mode="timer", stale_action="zero",
                    max_image_age_s=0.5)
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: len(drv.actions) >= 2)
    real = node.stack.controller.step

    def moving(twists) -> list:
        return [t for t in twists if (t.twist.linear.x, t.twist.linear.y, t.twist.linear.z) != (0.0, 0.0, 0.0)]

    def phase(step, seconds: float = 2.5) -> list:
        """The twists sent while the model steps with ``step``, once no earlier step is in flight."""
        node.stack.controller.step = step
        drv.drive_until(lambda: not node.health_snapshot().step_running, timeout=5.0)
        start = len(drv.twists)
        drv.drive_until(lambda: False, timeout=seconds)
        return drv.twists[start:]

    slow = phase(lambda obs, **kw: (time.sleep(0.8), real(obs, **kw))[1])
    assert slow and not moving(slow), "an action on images past max_image_age_s reached the robot"
    assert node.stats.skipped["late_action"] >= 1
    assert "too late" in node.stats.skip_details["late_action"]

    def broken(obs, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access")

    failed = phase(broken)
    assert failed and not moving(failed) and node.stats.model_errors >= 1
    release = threading.Event()
    try:
        hung = phase(lambda obs, **kw: (release.wait(20), real(obs, **kw))[1])
    finally:
        release.set()
    assert hung and not moving(hung), "a hung step left the last velocity standing"
    node.stack.controller.step = real
    assert drv.drive_until(lambda: len(moving(drv.twists[-3:])) >= 1)  # a healthy model moves the robot again


def test_malformed_images_are_rejected_without_crash(executor, tiny_checkpoint):
    node = started_policy_node(executor, tiny_checkpoint, enabled=True)
    drv = Driver(executor)
    drv.instruct()
    bad = []
    m = drv.image()
    m.encoding = "32FC1"
    bad.append(m)
    m = drv.image()
    m.data = bytes(m.data)[:-5]  # truncated
    bad.append(m)
    m = drv.image()
    m.height = m.height + 4  # step*height no longer matches the data
    bad.append(m)
    for msg in bad:
        drv.send_pair(first=msg)
        drv.spin(0.1)
    assert node.stats.rejected_images == len(bad)
    assert not drv.actions
    assert drv.drive_until(lambda: len(drv.actions) >= 1)  # still alive and working
    assert drv.settle(node)  # drive_until's last pairs may still be stepping: count from a quiet node
    n = len(drv.actions)
    for h, w, encoding in ((20, 30, "rgb8"), (33, 17, "bgr8")):
        msg = drv.image(h=h, w=w)  # stamped now: an image made before a wait would be stale
        msg.encoding = encoding
        assert drv.step_once(node, first=msg)
    assert len(drv.actions) == n + 2  # any size and bgr8 are accepted
    assert node.stats.rejected_images == len(bad)


def test_a_left_over_old_frame_does_not_block_the_sets_after_it(executor, tiny_checkpoint, spin_until):
    """Lock-step source (one image set per action, as the simulator sends): a frame of one camera left over from
    before goes stale; the next set's first camera completes a stale set. The set's own frames must still step
    once the stale camera's new frame arrives (they were all consumed, and every later set ended the same way)."""
    from std_msgs.msg import Float32MultiArray

    node = started_policy_node(executor, tiny_checkpoint, enabled=True, max_image_age_s=0.5)
    drv = Driver(executor)
    drv.instruct()
    assert drv.step_once(node)
    static, wrist = drv.image_pubs
    left_over = drv.image()
    wrist.publish(left_over)  # arrives after the step: nothing consumes it
    assert spin_until(executor, lambda: node.frames["wrist"].msg == left_over)
    drv.spin(0.7)  # ... and it goes stale
    def one_set() -> bool:  # one set per "action", the wrist's frame last
        steps = node.stats.steps
        values = [0.1] * drv.proprio_dim
        drv.proprio_pub.publish(Float32MultiArray(data=values))
        assert spin_until(executor, lambda: np.allclose(node.proprio, values))
        first = drv.image()
        static.publish(first)
        assert spin_until(executor, lambda: node.frames["static"].msg == first)
        wrist.publish(drv.image())
        return spin_until(executor, lambda: node.stats.steps > steps, 10.0) and drv.settle(node)

    for _ in range(3):
        assert one_set(), "the fresh set never stepped"
    assert node.stats.stale == 1  # only the first set met the left-over frame


def test_budget_changed_at_runtime_changes_exits(executor, tiny_checkpoint):
    from rclpy.parameter import Parameter

    from deer_vla.core import StepRecord

    node = started_policy_node(executor, tiny_checkpoint)
    n_exits = node.stack.profile.num_exits
    assert n_exits >= 2
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: len(drv.records) >= 3)
    exits = [StepRecord.from_json(r.data).exit_used for r in drv.records]
    assert set(exits) == {n_exits}  # thresholds 0: never stops early
    exit1 = node.stack.profile.cost(1)
    for bad in (-1.0, exit1 / 2):  # negative; below exit 1's cost (infeasible)
        result = node.set_parameters([Parameter("budget.peak_gflops", value=bad)])[0]
        assert not result.successful and "peak" in result.reason
    assert node.get_parameter("budget.peak_gflops").value == 0.0
    assert not node.set_parameters([Parameter("fixed_exit", value=1)])[0].successful  # needs reconfigure
    assert node.set_parameters([Parameter("budget.peak_gflops", value=exit1 * 1.01)])[0].successful
    # records of steps computed before the change can still be in flight: select by the budget they carry
    def capped() -> list:
        recs = [StepRecord.from_json(r.data) for r in drv.records]
        return [r for r in recs if r.budget_peak_gflops == pytest.approx(exit1 * 1.01)]

    assert drv.drive_until(lambda: len(capped()) >= 3)
    after = capped()
    assert {r.exit_used for r in after} == {1} and {r.max_exit for r in after} == {1}


def test_an_average_budget_a_peak_leaves_slack_is_accepted_and_said_not_to_bind(executor, tiny_checkpoint,
                                                                                 monkeypatch):
    """A budget audit's: an average above the cost of the cap a peak sets was accepted in silence; the tracker
    wound its scale to the floor and every step ran to the cap. Accepted (both hold), said at WARN."""
    from rclpy.parameter import Parameter

    node = started_policy_node(executor, tiny_checkpoint)
    warned = spy_on_log(node, "warning", monkeypatch)
    profile = node.stack.profile
    peak, average = profile.cost(1) * 1.01, profile.cost(profile.num_exits)
    assert node.set_parameters([Parameter("budget.peak_gflops", value=peak),
                                Parameter("budget.average_gflops", value=average)])[0].successful
    assert any("is at or above the cost of exit 1 every step" in m and "it does not bind" in m for m, _ in warned)
    warned.clear()
    assert node.set_parameters([Parameter("budget.peak_gflops", value=0.0)])[0].successful  # no cap: nothing said
    assert not [m for m, _ in warned if "does not bind" in m]


def test_new_instruction_resets_episode_and_model_errors_are_survived(executor, tiny_checkpoint, monkeypatch):
    from deer_vla.core import StepRecord

    node = started_policy_node(executor, tiny_checkpoint, enabled=True)
    drv = Driver(executor)
    drv.instruct(INSTRUCTIONS[0])
    assert drv.drive_until(lambda: len(drv.records) >= 1)
    first_episode = StepRecord.from_json(drv.records[-1].data).episode
    drv.instruct(INSTRUCTIONS[1])
    drv.spin(0.2)
    n = len(drv.records)
    assert drv.drive_until(lambda: len(drv.records) > n)
    assert StepRecord.from_json(drv.records[-1].data).episode == first_episode + 1

    calls = {"n": 0}
    real_begin = node.stack.runner.begin_step

    def flaky(obs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated model failure")
        return real_begin(obs)

    monkeypatch.setattr(node.stack.runner, "begin_step", flaky)
    n = len(drv.actions)
    assert drv.drive_until(lambda: len(drv.actions) > n + 1)
    assert node.stats.model_errors == 1

    # a NaN action is never published
    real_step = node.stack.controller.step

    def nan_step(obs, **kwargs):
        action, record = real_step(obs, **kwargs)
        return np.full_like(action, np.nan), record

    assert drv.settle(node)  # a step already on the worker runs the real controller and may publish
    monkeypatch.setattr(node.stack.controller, "step", nan_step)
    n_twists = len(drv.twists)
    assert drv.drive_until(lambda: node.stats.unsafe_actions >= 2)
    assert len(drv.twists) == n_twists


def test_a_system_exit_raised_in_a_step_is_a_model_error_not_the_end_of_the_step_thread(executor, tiny_checkpoint,
                                                                                         monkeypatch):
    """A library's SystemExit (a BaseException) in a step ended the worker thread with a traceback on stderr: the
    node stayed active and never stepped again, its status blaming the cameras (a lifecycle audit). It is a model
    error like any other: a zero twist for that step, and the next steps run."""
    node = started_policy_node(executor, tiny_checkpoint, enabled=True)
    drv = Driver(executor)
    drv.instruct(INSTRUCTIONS[0])
    assert drv.drive_until(lambda: len(drv.actions) >= 1)
    real_step = node.stack.controller.step
    calls = {"n": 0}

    def exiting(obs, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise SystemExit(3)
        return real_step(obs, **kwargs)

    assert drv.settle(node)
    monkeypatch.setattr(node.stack.controller, "step", exiting)
    n = len(drv.actions)
    assert drv.drive_until(lambda: len(drv.actions) > n + 1)
    assert node.stats.model_errors == 1 and node._worker.alive
    assert "SystemExit" in node.stats.skip_details["model_error"]

def test_an_over_long_instruction_is_refused_and_the_steps_go_on_with_the_previous_one(executor, tiny_checkpoint,
                                                                                        monkeypatch):
    """A huge instruction (a buggy or hostile publisher) was tokenized in full by the worker before the model cut it
    to its max_text_len tokens: megabytes stalled the steps for seconds (no action out) and the text went whole to
    /rosout. It is refused at the input (max_instruction_chars, 1024 by default) with a throttled error giving its
    length and the limit, and the node steps on with the previous instruction, in the same episode, undelayed."""
    import time

    from deer_vla.core import StepRecord

    node = started_policy_node(executor, tiny_checkpoint, enabled=True)
    errors = spy_on_log(node, "error", monkeypatch)
    drv = Driver(executor)
    drv.instruct(INSTRUCTIONS[0])
    assert drv.drive_until(lambda: len(drv.records) >= 3)
    episode = StepRecord.from_json(drv.records[-1].data).episode
    huge = ("push the puck to the goal " * (8 * 2**20 // 26 + 1))[: 8 * 2**20]  # 8 MiB of words the model knows
    steps, n_records = node.stats.steps, len(drv.records)
    sent = time.monotonic()
    drv.instruct(huge)
    assert drv.drive_until(lambda: node.stats.steps >= steps + 5, timeout=20.0)
    elapsed = time.monotonic() - sent
    assert elapsed < 2.0  # tokenizing 8 MiB took seconds, with no step finished meanwhile
    assert node.stats.rejected_instructions == 1 and node.instruction == INSTRUCTIONS[0]
    after = [StepRecord.from_json(r.data) for r in drv.records[n_records:]]
    assert len(after) >= 5 and {r.episode for r in after} == {episode}  # no reset: the same episode goes on
    assert max(r.total_ms for r in after) < 1000.0
    refusals = [(m, kw) for m, kw in errors if "instruction" in m]
    assert len(refusals) == 1 and refusals[0][1].get("throttle_duration_sec", 0) > 0
    message = refusals[0][0]
    assert str(len(huge)) in message and "1024" in message and "push" not in message and len(message) < 200

    # the limit is a run-time parameter: at the new limit an instruction passes again, and resets the episode
    from rclpy.parameter import Parameter

    assert not node.set_parameters([Parameter("max_instruction_chars", value=0)])[0].successful
    assert node.set_parameters([Parameter("max_instruction_chars", value=len(INSTRUCTIONS[1]))])[0].successful
    drv.instruct(INSTRUCTIONS[1])
    assert drv.drive_until(lambda: node.instruction == INSTRUCTIONS[1])
    drv.instruct(INSTRUCTIONS[1] + "!")
    assert drv.drive_until(lambda: node.stats.rejected_instructions == 2)
    assert node.instruction == INSTRUCTIONS[1]


def test_a_repeated_instruction_resets_or_carries_on_and_its_text_cannot_forge_log_lines(executor, tiny_checkpoint,
                                                                                          monkeypatch):
    """The same text again is a new episode by default (the simulator's consecutive episodes of one task); a
    planner that re-publishes its goal sets repeated_instruction 'keep' (at run time) and the history goes on.
    The text reaches /rosout as an escaped literal: a newline in it cannot start a forged log line."""
    from rclpy.parameter import Parameter

    from deer_vla.core import StepRecord
    from deer_vla.core.instruction_text import clean_instruction

    node = started_policy_node(executor, tiny_checkpoint, enabled=True)
    infos = spy_on_log(node, "info", monkeypatch)
    drv = Driver(executor)

    def episode_after_instruction(text: str) -> int:
        drv.instruct(text)
        assert drv.drive_until(lambda: node.instruction == clean_instruction(text))
        assert drv.settle(node)
        n = len(drv.records)
        assert drv.drive_until(lambda: len(drv.records) > n)
        return StepRecord.from_json(drv.records[-1].data).episode

    first = episode_after_instruction(INSTRUCTIONS[0])
    assert episode_after_instruction(INSTRUCTIONS[0]) == first + 1  # default "reset": a new episode
    assert node.set_parameters([Parameter("repeated_instruction", value="keep")])[0].successful
    assert not node.set_parameters([Parameter("repeated_instruction", value="sometimes")])[0].successful
    drv.instruct(INSTRUCTIONS[0])
    assert drv.drive_until(lambda: node.stats.repeated_instructions == 1)
    n = len(drv.records)
    assert drv.drive_until(lambda: len(drv.records) > n)
    assert StepRecord.from_json(drv.records[-1].data).episode == first + 1  # "keep": the same episode goes on
    assert {kv.key: kv.value for kv in node.diagnostics().status[0].values}["repeated instructions"] == "1"
    forged = "open the drawer\n[ERROR] [deer_vla_policy]: emergency stop \x1b[31m"
    assert episode_after_instruction(forged) == first + 2  # another text still resets under "keep"
    said = [m for m, _ in infos if m.startswith("instruction")]
    assert len(said) == 3 and all("\n" not in m and "\x1b" not in m for m in said)
    # control characters are spaces in the instruction itself (core.instruction_text), and the log quotes it
    assert "'open the drawer [ERROR] [deer_vla_policy]: emergency stop [31m'" in said[-1]


def test_a_plain_publishers_instruction_is_heard_and_a_latched_one_counts_once(executor, tiny_checkpoint):
    """The node subscribed transient-local only, which DDS never matches with a volatile writer: a planner's
    plain create_publisher(String, "instruction", 10) was never heard. It now also subscribes volatile; a
    latched message reaches both subscriptions and must still start one episode, not two."""
    from std_msgs.msg import String

    from deer_vla.core import StepRecord
    from deer_vla.ros.instruction_input import CopyFilter

    node = started_policy_node(executor, tiny_checkpoint, enabled=True)
    drv = Driver(executor)
    plain = drv.node.create_publisher(String, "instruction", 10)
    assert drv.drive_until(lambda: plain.get_subscription_count() >= 1)
    plain.publish(String(data=INSTRUCTIONS[1]))
    assert drv.drive_until(lambda: node.instruction == INSTRUCTIONS[1])

    def episode() -> int:
        assert drv.settle(node)
        n = len(drv.records)
        assert drv.drive_until(lambda: len(drv.records) > n)
        return StepRecord.from_json(drv.records[-1].data).episode

    first = episode()
    drv.instruct(INSTRUCTIONS[0])  # latched: delivered to both subscriptions
    assert drv.drive_until(lambda: node.instruction == INSTRUCTIONS[0])
    assert episode() == first + 1
    plain.publish(String(data=INSTRUCTIONS[0]))  # the same text again from the plain publisher: a new episode
    assert episode() == first + 2
    # the filter alone: each message's copy on the other route is dropped, interleaved or not, and only then
    clock = [0.0]
    copies = CopyFilter(clock=lambda: clock[0])
    assert [copies.accept("a", 0), copies.accept("a", 1)] == [True, False]
    assert [copies.accept("a", 0), copies.accept("a", 0), copies.accept("a", 1), copies.accept("a", 1)] == [
        True, True, False, False]
    assert [copies.accept("b", 1), copies.accept("b", 1)] == [True, True]  # a plain publisher, twice
    clock[0] = 5.0
    assert copies.accept("a", 1) and copies.accept("b", 0)  # later than the window: new messages


def test_configure_rejects_bad_setup(executor, tiny_checkpoint, tmp_path):
    from rclpy.lifecycle import TransitionCallbackReturn as R

    missing = policy_node(executor, tmp_path / "nowhere")
    assert missing.trigger_configure() == R.FAILURE and missing.stack is None
    executor.remove_node(missing)
    missing.destroy_node()
    one_cam = policy_node(executor, tiny_checkpoint, image_topics=["only/one"])
    assert one_cam.trigger_configure() == R.FAILURE  # the tiny model has two cameras
    executor.remove_node(one_cam)
    one_cam.destroy_node()
    no_thr = policy_node(executor, tiny_checkpoint, thresholds_file=str(tmp_path / "none.json"))
    assert no_thr.trigger_configure() == R.FAILURE
    executor.remove_node(no_thr)
    no_thr.destroy_node()
    no_proprio = policy_node(executor, tiny_checkpoint, proprio_topic="")
    assert no_proprio.trigger_configure() == R.FAILURE  # the tiny model takes 4 proprioception values
    executor.remove_node(no_proprio)
    no_proprio.destroy_node()
    bad_budget = policy_node(executor, tiny_checkpoint, **{"budget.memory_bytes": 1})
    assert bad_budget.trigger_configure() == R.FAILURE
    executor.remove_node(bad_budget)
    bad_budget.destroy_node()
    no_gpu = policy_node(executor, tiny_checkpoint, device="cuda:99")  # no machine here has 100 GPUs
    assert no_gpu.trigger_configure() == R.FAILURE and no_gpu.stack is None
    assert no_gpu._configure_error.startswith("parameter 'device': device 'cuda:99': ")


def test_thresholds_for_more_exits_than_the_model_has_are_refused(tiny_checkpoint, tmp_path):
    """A file with two values too many configured and ran (the extra exits never ran, its budget meant nothing)."""
    from deer_vla.control.thresholds import Thresholds
    from deer_vla.model.checkpoint_dir import CheckpointDir
    from deer_vla.ros.policy_backend import ConfigurationError, load_stack

    exits = CheckpointDir(tiny_checkpoint).read_config().num_exits
    path = tmp_path / "other_model.json"
    Thresholds(values=[0.0] * (exits + 1)).save(path)
    with pytest.raises(ConfigurationError, match=rf"exits 2\.\.{exits + 2} but .* has {exits} exits"):
        load_stack(tiny_checkpoint, path, "cpu", {})
    Thresholds(values=[0.0] * (exits - 1)).save(path)
    assert load_stack(tiny_checkpoint, path, "cpu", {}).full_profile.num_exits == exits


def test_hold_mode_repeats_last_twist_for_bounded_time(executor, tiny_checkpoint):
    node = started_policy_node(executor, tiny_checkpoint, enabled=True, hold_rate_hz=50.0, hold_max_s=0.3)
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: len(drv.twists) >= 1)
    drv.spin(0.8)
    held = node.stats.hold_published
    assert 5 <= held <= 0.3 * 50 + 3  # ~15 repeats within hold_max_s, then silence
    drv.spin(0.3)
    assert node.stats.hold_published == held


@pytest.mark.parametrize("control_mode", ["timer", "event"])
def test_the_hold_ends_when_the_inputs_go_stale_whatever_hold_max_s(executor, tiny_checkpoint, control_mode):
    """hold_max_s 1e300 with stale_action none: after the cameras died the node logged "not stepping" and kept
    re-sending the last twist (64 non-zero twists in 3 s, until hold_max_s was set back). A period without an
    action ends the hold (timer mode's staleness check, event mode's watchdog), though nothing is sent."""
    node = started_policy_node(executor, tiny_checkpoint, enabled=True, hold_rate_hz=50.0, hold_max_s=1e300,
                               control_mode=control_mode, rate_hz=10.0, max_image_age_s=0.3)
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: len(drv.twists) >= 2)
    drv.spin(2.0)  # no inputs: stale after 0.3 s, found within a period
    held = node.stats.hold_published
    assert held >= 3  # it did hold across the first periods
    twists = len(drv.twists)
    drv.spin(1.0)
    assert node.stats.hold_published == held and len(drv.twists) == twists
    assert node._last_command is None


def test_record_and_replay_reproduce_exits(executor, tiny_checkpoint, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from deer_vla.data.recording import read_recording
    from deer_vla.ros.policy_backend import load_stack
    from deer_vla.ros.replay import cli_main, replay

    path = tmp_path / "io.mcap"
    node = started_policy_node(executor, tiny_checkpoint, enabled=True, record_path=str(path))
    drv = Driver(executor)
    drv.instruct(INSTRUCTIONS[0])
    assert drv.drive_until(lambda: node.stats.steps >= 4)
    drv.instruct(INSTRUCTIONS[2])
    drv.spin(0.2)
    assert drv.drive_until(lambda: node.stats.steps >= 8)
    steps = node.stats.steps
    node.trigger_deactivate()
    node.trigger_cleanup()  # closes the recording
    recorded = read_recording(path)
    assert len(recorded) == steps
    assert {s.instruction for s in recorded} == {INSTRUCTIONS[0], INSTRUCTIONS[2]}
    assert set(recorded[0].images) == {"static", "wrist"} and recorded[0].images["static"].shape == (48, 64, 3)

    same = replay(path, load_stack(tiny_checkpoint, tiny_checkpoint / "thresholds.json", "cpu", {}, 0))
    assert same.steps == steps and same.same_exit_fraction == 1.0
    assert same.max_action_diff < 1e-4
    stack = load_stack(tiny_checkpoint, tiny_checkpoint / "thresholds.json", "cpu", {}, 0)
    cheap = replay(path, load_stack(tiny_checkpoint, tiny_checkpoint / "thresholds.json", "cpu",
                                    {"peak_gflops": stack.profile.cost(1) * 1.01}, 0))
    assert set(cheap.replayed_exits) == {1} and cheap.replayed_mean_gflops < cheap.recorded_mean_gflops
    out = tmp_path / "report.json"
    assert cli_main([str(path), "--checkpoint", str(tiny_checkpoint), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    # the CLI reads the frames at the model's size as it goes (32 px here, recorded at 48x64): the same actions
    assert report["same_exit_fraction"] == 1.0 and report["max_action_diff"] < 1e-4
    assert report["recorded_checkpoint"] == str(tiny_checkpoint.resolve()) and report["same_weights"] is True
    # replayed under other weights (same architecture and cameras, as the shipped default and mt50): said so,
    # not passed off as a reproduction that went wrong
    other = tmp_path / "other_ckpt"
    shutil.copytree(tiny_checkpoint, other)
    weights = other / "model.safetensors"
    save_file(load_file(weights), weights, metadata={"note": "other bytes, other digest"})
    capsys.readouterr()
    assert cli_main([str(path), "--checkpoint", str(other), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["same_weights"] is False
    err = capsys.readouterr().err
    assert f"recorded with {tiny_checkpoint.resolve()}" in err and "other weights" in err
    # the same weights under an edited config (the head's history: every tensor keeps its shape) are another
    # model too: the recording records the config's digest
    edited = tmp_path / "edited_ckpt"
    shutil.copytree(tiny_checkpoint, edited)
    config = json.loads((edited / "config.json").read_text())
    config["head"]["history"] = config["head"]["history"] + 1
    (edited / "config.json").write_text(json.dumps(config))
    assert cli_main([str(path), "--checkpoint", str(edited), "--thresholds", str(edited / "thresholds.json"),
                     "--json", str(out)]) == 0
    assert json.loads(out.read_text())["same_weights"] is False
    assert "other weights or config" in capsys.readouterr().err
    assert cli_main([str(tmp_path / "missing.mcap"), "--checkpoint", str(tiny_checkpoint)]) == 2

    # the same recording calibrates thresholds on what the robot saw: one episode per instruction
    from deer_vla.commands.calibrate import cli_main as calibrate
    from deer_vla.control.thresholds import Thresholds
    from deer_vla.data.recording import recorded_episodes

    episodes = recorded_episodes(path, ("static", "wrist"))
    assert [ep[0].instruction for ep in episodes] == [INSTRUCTIONS[0], INSTRUCTIONS[2]]
    assert sum(len(ep) for ep in episodes) == steps
    cal = tmp_path / "cal"
    args = ["--checkpoint", str(tiny_checkpoint), "--average-budget-fraction", "0.6", "--out", str(cal)]
    assert calibrate([*args, "--recording", str(path), "--method", "descent"]) == 0
    th = Thresholds.load(cal / "thresholds.json")
    assert th.budget is not None and th.expected_cost <= th.budget.average_gflops + 1e-9
    assert calibrate([*args, "--recording", str(tmp_path / "missing.mcap")]) == 2
    assert calibrate([*args, "--recording", str(path), "--tasks", "drawer-open"]) == 2


def test_timer_mode_reuses_newest_pair_until_stale(executor, tiny_checkpoint):
    from rclpy.parameter import Parameter

    node = started_policy_node(executor, tiny_checkpoint, enabled=True, control_mode="timer", rate_hz=20.0,
                    max_image_age_s=0.5)
    drv = Driver(executor)
    drv.instruct()
    drv.spin(0.2)
    drv.send_pair()
    drv.spin(1.0)  # one pair, then silence: steps at 20 Hz while the pair is younger than 0.5 s
    steps = node.stats.steps
    assert 3 <= steps <= 12 and node.stats.stale >= 3
    # ints are accepted for float parameters; wrong types are rejected with the parameter's name
    generous = int(node.stack.profile.cost(node.stack.profile.num_exits)) + 1  # an int, above the full cost
    assert node.set_parameters([Parameter("budget.average_gflops", value=generous)])[0].successful
    bad = node.set_parameters([Parameter("max_image_age_s", value="soon")])[0]
    assert not bad.successful and "max_image_age_s" in bad.reason


def test_average_budget_is_tracked_online_by_default(executor, tiny_checkpoint):
    """thresholds.json holds for the budget it was solved for; any other average is held by the tracker."""
    from rclpy.parameter import Parameter

    node = started_policy_node(executor, tiny_checkpoint)
    tracker = node.stack.controller.tracker
    assert tracker is not None and node.get_parameter("budget.track_average").value is True
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: node.stats.steps >= 2)
    assert tracker.scale == 1.0  # no average budget yet: idle
    target = 0.5 * (node.stack.profile.cost(1) + node.stack.profile.cost(node.stack.profile.num_exits))
    assert node.set_parameters([Parameter("budget.average_gflops", value=target)])[0].successful
    n = node.stats.steps
    assert drv.drive_until(lambda: node.stats.steps >= n + 3)
    assert tracker.target_gflops == pytest.approx(target) and tracker.running_mean > 0
    assert not node.set_parameters([Parameter("budget.track_average", value=False)])[0].successful  # configure-time
    node.trigger_deactivate()
    node.trigger_cleanup()
    fixed = started_policy_node(executor, tiny_checkpoint, fixed_exit=1)
    assert fixed.stack.controller.tracker is None  # nothing to steer in fixed-exit mode
    off = started_policy_node(executor, tiny_checkpoint, **{"budget.track_average": False})
    assert off.stack.controller.tracker is None


def test_tracker_holds_the_thresholds_solved_average_without_a_budget_parameter(executor, tiny_checkpoint, tmp_path):
    from deer_vla.control.budgets import BudgetSpec
    from deer_vla.control.thresholds import Thresholds
    from deer_vla.model.runner import PolicyRunner

    plain = Thresholds.load(tiny_checkpoint / "thresholds.json")
    profile = PolicyRunner.from_checkpoint(tiny_checkpoint).cost_profile
    solved_for = 0.5 * (profile.cost(1) + profile.cost(profile.num_exits))
    path = tmp_path / "solved.json"
    Thresholds(values=plain.values, budget=BudgetSpec(average_gflops=solved_for)).save(path)
    node = started_policy_node(executor, tiny_checkpoint, thresholds_file=str(path))
    assert node.get_parameter("budget.average_gflops").value == 0.0  # unset
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: node.stats.steps >= 3)
    tracker = node.stack.controller.tracker
    assert tracker.target_gflops == pytest.approx(solved_for) and tracker.steps >= 3
    assert tracker.scale != 1.0  # thresholds 0 run every exit: far over, so it steers


def _tracker_steered_then_cleaned_up(executor: Any, checkpoint: Path) -> tuple[Any, Any]:
    """A policy node whose tracker steered a few steps to an average between exit 1's cost and the full model's,
    then deactivated and cleaned up; and that tracker."""
    from rclpy.parameter import Parameter

    node = started_policy_node(executor, checkpoint)
    target = 0.5 * (node.stack.profile.cost(1) + node.stack.profile.cost(node.stack.profile.num_exits))
    assert node.set_parameters([Parameter("budget.average_gflops", value=target)])[0].successful
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: node.stats.steps >= 4)
    tracker = node.stack.controller.tracker
    assert tracker.scale != 1.0 and tracker.steps >= 3  # thresholds 0 run every exit: far over, so it steered
    node.trigger_deactivate()
    node.trigger_cleanup()
    return node, tracker


def test_the_tracker_carries_on_over_a_cleanup_when_the_same_configuration_comes_back(executor, tiny_checkpoint,
                                                                                       tmp_path):
    """The average budget holds over the deployment: a cleanup and configure of the same checkpoint and
    thresholds carries on the tracker's scale and mean (a soak's three cycles restarted it at 1 and went 1.1%
    over); other thresholds start afresh, their scale means another thing."""
    from rclpy.parameter import Parameter

    from deer_vla.control.thresholds import Thresholds

    node, before = _tracker_steered_then_cleaned_up(executor, tiny_checkpoint)
    scale, mean, steps = before.scale, before.running_mean, before.steps
    node.trigger_configure()
    after = node.stack.controller.tracker
    assert after is not before
    assert (after.scale, after.running_mean, after.steps) == pytest.approx((scale, mean, steps))
    node.trigger_cleanup()
    other = tmp_path / "other.json"
    plain = Thresholds.load(tiny_checkpoint / "thresholds.json")
    Thresholds(values=[v + 0.01 for v in plain.values]).save(other)
    assert node.set_parameters([Parameter("thresholds_file", value=str(other))])[0].successful
    node.trigger_configure()
    fresh = node.stack.controller.tracker
    assert (fresh.scale, fresh.steps) == (1.0, 0)


def test_a_checkpoint_replaced_in_place_starts_a_fresh_tracker(executor, tiny_checkpoint, tmp_path):
    """The carry is keyed on the model loaded, not the folder's path: new weights copied over the old ones (a
    robot's update script) are another policy, whose confidences the carried scale does not describe."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    node, before = _tracker_steered_then_cleaned_up(executor, folder)
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 0.01  # same shapes, same size on disk: only the digest tells
    save_file(tensors, weights)
    node.trigger_configure()
    fresh = node.stack.controller.tracker
    assert fresh is not before and (fresh.scale, fresh.steps) == (1.0, 0)


def test_recording_reads_back_in_step_order_when_camera_stamps_go_backwards(executor, tiny_checkpoint, tmp_path):
    """Camera stamps that go backwards (a driver's clock reset, an NTP step; fresh enough to step on) must not
    reorder the recording: replay reruns the steps in the order read, and the head's history depends on it.
    A finished file was read sorted by stamp, an unfinished one in write order."""
    from deer_vla.data.recording import read_recording

    path = tmp_path / "io.mcap"
    node = started_policy_node(executor, tiny_checkpoint, enabled=True, record_path=str(path), max_image_age_s=2.0)
    drv = Driver(executor)
    drv.instruct()
    for age_s in (0.1, 0.4, 0.7, 1.0):  # each step's images stamped before the previous step's
        steps = node.stats.steps
        assert drv.drive_until(lambda n=steps: node.stats.steps > n, age_s=age_s)
    node.trigger_deactivate()
    node.trigger_cleanup()  # closes the recording
    recorded = [s.record.step for s in read_recording(path)]
    assert len(recorded) == node.stats.steps and recorded == sorted(recorded)


def test_an_observation_resent_while_its_step_runs_is_answered_once(executor, tiny_checkpoint, monkeypatch):
    """A lock-step simulator re-sends an observation whose action is late (a fresh stamp, the same pixels). The
    node queued the copy and answered both; the second answer reached the simulator while it waited for the
    next state's, so every later action was applied one state late. The copy is not stepped again; the same
    pixels sent once the step has ended are (a still scene never stalls the policy)."""

    from std_msgs.msg import Float32MultiArray

    node = started_policy_node(executor, tiny_checkpoint, enabled=True)
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: len(drv.actions) >= 1) and drv.settle(node)
    held = HeldStep(node, timeout=10.0)
    running, release = held.started, held.release
    monkeypatch.setattr(node.stack.controller, "step", held)
    pixels = [drv.rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8) for _ in drv.image_pubs]
    proprio = Float32MultiArray(data=[0.1, -0.2, 0.3, 0.0])

    def send_observation() -> None:  # the simulator's publishing, each time with a fresh stamp
        from deer_vla.ros.image_conv import rgb_to_image_msg

        stamp = drv.node.get_clock().now().to_msg()
        drv.proprio_pub.publish(proprio)
        for pub, rgb in reversed(list(zip(drv.image_pubs, pixels))):
            pub.publish(rgb_to_image_msg(rgb, stamp))

    n = len(drv.actions)
    send_observation()
    while not running.is_set():
        drv.spin(0.02)
    send_observation()  # the re-send, while the step on the same observation runs
    drv.spin(0.3)
    release.set()
    assert drv.settle(node)
    assert len(drv.actions) == n + 1 and node.stats.repeated_inputs == 1
    assert node.health_snapshot().info["repeated inputs"] == "1"  # in /diagnostics
    send_observation()  # the same pixels after the step ended: a still scene is stepped again
    assert drv.settle(node)
    assert len(drv.actions) == n + 2 and node.stats.repeated_inputs == 1


def test_a_runtime_budget_the_loaded_exits_cannot_honour_is_refused(executor, tiny_checkpoint):
    """Configure loads the exits its budget allows. Relaxing the peak or memory budget at run time was
    accepted and never loaded the deeper exits; lowering the memory budget below the resident weights was
    accepted and freed nothing. Both are refused saying to reconfigure; a tighter peak still applies."""
    from rclpy.parameter import Parameter

    from deer_vla.model.runner import PolicyRunner

    profile = PolicyRunner.from_checkpoint(tiny_checkpoint).cost_profile  # the whole model's
    assert profile.num_exits >= 3
    node = started_policy_node(executor, tiny_checkpoint, **{"budget.peak_gflops": profile.cost(2) * 1.01})
    assert node.stack.profile.num_exits == 2
    roomy = node.set_parameters([Parameter("budget.peak_gflops", value=profile.cost(3) * 1.01)])[0]
    assert not roomy.successful and "configure loaded exits 1..2 only" in roomy.reason
    unset = node.set_parameters([Parameter("budget.peak_gflops", value=0.0)])[0]  # no peak: every exit
    assert not unset.successful and f"allows exit {profile.num_exits}" in unset.reason
    tight_memory = node.set_parameters([Parameter("budget.memory_bytes", value=profile.weight_bytes[0] + 1)])[0]
    assert not tight_memory.successful and "stay resident" in tight_memory.reason
    assert node.get_parameter("budget.peak_gflops").value == pytest.approx(profile.cost(2) * 1.01)
    assert node.set_parameters([Parameter("budget.peak_gflops", value=profile.cost(1) * 1.01)])[0].successful


def test_halt_and_budget_changes_work_after_the_checkpoint_folder_moves(executor, tiny_checkpoint, tmp_path,
                                                                        monkeypatch, spin_until):
    """A node configured on a bare-name folder whose folder is then renamed (a redeploy): every parameter
    change re-checked checkpoint_dir on disk, so ~/halt's parameter update raised out of the service
    callback and ended the executor's spin (the process died, the caller got no answer), and budget
    changes were refused for the checkpoint. The loaded checkpoint is not looked up again."""
    from rclpy.parameter import Parameter
    from std_srvs.srv import Trigger

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_checkpoint, tmp_path / "myckpt")
    node = started_policy_node(executor, tmp_path / "myckpt", enabled=True, checkpoint_dir="myckpt")
    (tmp_path / "myckpt").rename(tmp_path / "myckpt.old")
    budget = node.set_parameters([Parameter("budget.average_gflops", value=node.stack.profile.cost(1) * 2)])[0]
    assert budget.successful, budget.reason
    driver = Driver(executor)
    halt = driver.node.create_client(Trigger, "/deer_vla_policy/halt")
    assert spin_until(executor, halt.service_is_ready, 5.0)
    future = halt.call_async(Trigger.Request())
    assert spin_until(executor, future.done, 10.0) and future.result().success
    assert not node.enabled and node.get_parameter("enabled").value is False
    assert node.set_parameters([Parameter("enabled", value=True)])[0].successful and node.enabled
    assert node.set_parameters([Parameter("enabled", value=False)])[0].successful and not node.enabled
    info = {v.key: v.value for v in node.diagnostics().status[0].values}
    assert info["checkpoint"] == str(tmp_path / "myckpt")  # what was loaded, looked up once at configure
    assert node.get_parameter("checkpoint_dir").value == "myckpt"


def test_a_model_without_proprioception_steps_with_the_default_proprio_topic(executor, tmp_path):
    """The default proprio_topic ('proprio') with a checkpoint that takes none: event mode waited for a
    proprio message on every step, so the node never stepped. It says so and does not wait."""
    from fixtures import build_tiny_checkpoint

    checkpoint = build_tiny_checkpoint(tmp_path / "no_proprio", proprio_dim=0)
    node = started_policy_node(executor, checkpoint)
    assert node.get_parameter("proprio_topic").value == "proprio"
    driver = Driver(executor, proprio_dim=0)
    driver.instruct()
    assert driver.drive_until(lambda: len(driver.records) >= 2, timeout=20.0), node.diagnostics().status[0].message


def test_an_instruction_the_model_reads_alike_is_a_repeat_and_a_cut_one_is_reported(executor, tiny_checkpoint,
                                                                                    monkeypatch):
    """Under repeated_instruction 'keep', "OPEN the drawer" after "open the drawer" (one token sequence to a
    lower-casing tokenizer) reset the episode as a new instruction. And an instruction longer than the model's
    lm.max_text_len tokens lost its end in silence: it is warned about once, and counted in /diagnostics."""
    node = started_policy_node(executor, tiny_checkpoint, repeated_instruction="keep")
    warns = spy_on_log(node, "warn", monkeypatch)
    drv = Driver(executor)
    drv.instruct(INSTRUCTIONS[0])
    assert drv.drive_until(lambda: len(drv.records) >= 1)
    drv.instruct(INSTRUCTIONS[0].upper())
    assert drv.drive_until(lambda: node.stats.repeated_instructions == 1)
    assert node.instruction == INSTRUCTIONS[0]
    max_len = node.stack.runner.model.config.lm.max_text_len
    long = " ".join([INSTRUCTIONS[0]] * max_len)
    drv.instruct(long)
    assert drv.drive_until(lambda: node.instruction == long)
    assert drv.settle(node)
    n = len(drv.records)
    assert drv.drive_until(lambda: len(drv.records) >= n + 3)
    cut = [m for m, _ in warns if "the model reads" in m]
    assert len(cut) == 1 and f"longer than the {max_len} the model reads" in cut[0], warns
    assert {kv.key: kv.value for kv in node.diagnostics().status[0].values}["cut instructions"] == "1"


def test_a_time_budget_set_at_run_time_needs_step_times_measured_here(executor, tiny_checkpoint, tmp_path):
    """budget.peak_ms set by `ros2 param set` was enforced with the profile's step times from the machine the
    checkpoint was made on (configure times the model here only when a time budget is given): exits this
    machine cannot finish in time were let in, and its "smallest feasible" value was another machine's."""
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    from dataclasses import replace

    from deer_vla.model.checkpoint_dir import CheckpointDir
    from deer_vla.model.runner import PolicyRunner

    timed = PolicyRunner.from_checkpoint(ckpt).model_profile  # timed here, then said to be from elsewhere
    CheckpointDir(ckpt).write_profile(replace(timed, machine="the maker's machine"))
    node = policy_node(executor, ckpt)
    assert node.trigger_configure() == R.SUCCESS
    result = node.set_parameters([Parameter("budget.peak_ms", value=1e6)])[0]
    assert not result.successful and "configure did not time them" in result.reason
    # a profile timed on this machine (the model's parts alone, what a checkpoint saves) is no step time either
    assert node.trigger_cleanup() == R.SUCCESS
    CheckpointDir(ckpt).write_profile(timed)
    assert node.trigger_configure() == R.SUCCESS
    result = node.set_parameters([Parameter("budget.peak_ms", value=1e6)])[0]
    assert not result.successful and "configure did not time them" in result.reason
    # one below the profile's times says the same, not a "smallest feasible" value that would be refused too
    for name in ("budget.peak_ms", "budget.deadline_ms"):
        result = node.set_parameters([Parameter(name, value=0.001)])[0]
        assert not result.successful and "configure did not time them" in result.reason, result.reason
        assert "feasible" not in result.reason
    assert node.get_parameter("budget.peak_ms").value == 0.0
    assert node.trigger_cleanup() == R.SUCCESS  # configured with a time budget, it is timed here
    assert node.set_parameters([Parameter("budget.peak_ms", value=1e6)])[0].successful
    assert node.trigger_configure() == R.SUCCESS
    assert node.set_parameters([Parameter("budget.deadline_ms", value=1e6)])[0].successful


def test_diagnostics_show_the_drift_margin_the_time_budgets_plan_with(executor, tiny_checkpoint):
    """With a deadline the guard keeps free the margin by which steps lately run over configure's times, and
    with peak_ms the exit cap follows it; an operator reads both on /diagnostics (neither without a time
    budget: nothing plans with them)."""
    from deer_vla.control.deadline import DriftMargin

    def shown(node, key: str = "time drift margin") -> str | None:
        return {kv.key: kv.value for kv in node.diagnostics().status[0].values}.get(key)

    plain = started_policy_node(executor, tiny_checkpoint)
    assert shown(plain) is None
    executor.remove_node(plain)
    plain.destroy_node()
    node = started_policy_node(executor, tiny_checkpoint, **{"budget.deadline_ms": 1e6})
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: len(drv.records) >= 3)
    drv.settle(node)  # no step running: its measurement would land in the margin swapped in below
    controller = node.stack.controller
    assert controller.drift.steps >= 3  # the node's own steps are measured
    assert shown(node) == "0 ms (configure's times until 100 steps)"
    controller.drift = DriftMargin(window=200, min_steps=10)
    for _ in range(10):
        controller.drift.observe(12.5, 10.0)
    assert shown(node) == "2.5 ms (p99 over the last 10 steps)"
    assert shown(node, "exit cap now") is None  # a deadline alone: the cap is the budget's
    executor.remove_node(node)
    node.destroy_node()
    node = started_policy_node(executor, tiny_checkpoint, **{"budget.peak_ms": 1e6})
    drv.instruct()
    assert drv.drive_until(lambda: len(drv.records) >= 6)
    drv.settle(node)
    cap = node.stack.controller.cap
    assert shown(node) == "0 ms (configure's times until 100 steps)"
    assert shown(node, "exit cap now") == f"{cap} (budget.peak_ms 1e+06 ms with the time drift margin)"
    # a step applying a budget without peak_ms, caught between its budget and its cap: a TypeError out of the
    # diagnostics timer ended the executor's spin (and ~/halt with it); the two are read once now
    controller = node.stack.controller
    controller.budget = dataclasses.replace(controller.budget, peak_ms=None)
    assert shown(node, "exit cap now") is None and shown(node) is not None


def test_the_first_status_after_a_reconfigure_counts_from_the_configure(executor, tiny_checkpoint):
    """The step and skip counters run on across cleanup: the first /diagnostics period after a new configure
    reported the earlier configuration's steps and skips as its own (WARN, "4 of 10 steps skipped")."""
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = started_policy_node(executor, tiny_checkpoint, enabled=True)
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: len(drv.records) >= 3)
    node.stats.skip("stale_image", "old images")  # an earlier configuration's skips
    assert node.trigger_deactivate() == R.SUCCESS and node.trigger_cleanup() == R.SUCCESS
    assert node.trigger_configure() == R.SUCCESS
    values = {kv.key: kv.value for kv in node.diagnostics().status[0].values}
    assert values["steps (last period)"] == "0", values
    assert all(v == "0" for k, v in values.items() if k.startswith("skipped") and "last period" in k), values


def test_another_publisher_on_the_twist_output_is_a_warning(executor, tiny_checkpoint, spin_until, monkeypatch):
    """Two robots' processes with the same remap to a controller's topic sent it 173 twists of two policies while
    both statuses said OK: another publisher on the twist (or gripper) topic, as remapped, is a WARN status
    (``<node>: outputs``) and one WARN log, and OK again once it is gone."""
    from geometry_msgs.msg import TwistStamped

    node = started_policy_node(executor, tiny_checkpoint, twist_topic="servo/delta_twist_cmds")  # relative
    warned = spy_on_log(node, "warn", monkeypatch)

    def outputs():
        return next(s for s in node.diagnostics().status if s.name.endswith(": outputs"))

    first = outputs()
    assert first.level == bytes([0]) and {kv.key: kv.value for kv in first.values} == {
        "publishers on /servo/delta_twist_cmds": "1", f"publishers on {node._pubs['gripper'].topic_name}": "1"}
    drv = Driver(executor)
    other = drv.node.create_publisher(TwistStamped, "/servo/delta_twist_cmds", 10)
    assert spin_until(executor, lambda: outputs().level == bytes([1]))
    status = outputs()
    assert "another node publishes on this node's output (2 on /servo/delta_twist_cmds)" in status.message
    outputs()
    assert [m for m, _ in warned if m.startswith("outputs: ")] == [f"outputs: {status.message}"]  # once
    # a next configuration says it again (the count of shared outputs outlived the cleanup: no second log)
    from rclpy.lifecycle import TransitionCallbackReturn as R

    assert node.trigger_deactivate() == R.SUCCESS and node.trigger_cleanup() == R.SUCCESS
    assert node.trigger_configure() == R.SUCCESS
    assert outputs().level == bytes([1])
    assert len([m for m, _ in warned if m.startswith("outputs: ")]) == 2
    drv.node.destroy_publisher(other)
    assert spin_until(executor, lambda: outputs().level == bytes([0]))


def test_configure_says_instructions_are_not_compared_while_the_check_is_off(executor, monkeypatch):
    """With unfamiliar_instruction off, configure said "instructions compared with the 16 task(s)..." though
    nothing is compared (the matcher is built, as the parameter can be turned on at run time)."""
    from rclpy.lifecycle import TransitionCallbackReturn as R

    shipped = Path(__file__).resolve().parents[1] / "deer_vla" / "assets" / "default_checkpoint"  # with a record
    for mode, off in (("off", True), ("warn", False)):
        node = policy_node(executor, shipped, unfamiliar_instruction=mode)
        said = spy_on_log(node, "info", monkeypatch)
        assert node.trigger_configure() == R.SUCCESS
        compared = [m for m, _ in said if m.startswith("instructions compared with")]
        assert len(compared) == 1 and ("(not while unfamiliar_instruction is off)" in compared[0]) == off, compared
        executor.remove_node(node)
        node.destroy_node()


def test_after_a_refused_instruction_the_node_says_why_none_is_in_force(executor, tiny_checkpoint, spin_until,
                                                                        monkeypatch):
    """A soak: after "stop" was refused (dropping the instruction in force, as designed) the node warned "no
    instruction received yet" every 5 s and its status said it waited for one, as if the publisher were broken.
    It says which text was refused, and forgets it once a new instruction is taken."""
    node = started_policy_node(executor, tiny_checkpoint, enabled=True)
    warned = spy_on_log(node, "warn", monkeypatch)
    drv = Driver(executor)
    drv.instruct()
    assert spin_until(executor, lambda: node.instruction is not None)
    drv.instruct("stop")
    assert spin_until(executor, lambda: node.instruction is None)
    assert node.prepare_step() is None
    said = [m for m, _ in warned if "not stepping" in m]
    assert said == ["no instruction in force ('stop' was refused): waiting for a new one; not stepping"], said
    status = node.diagnostics().status[0].message
    assert "waiting for an instruction on 'instruction' (none in force: 'stop' was refused)" in status, status
    drv.instruct()
    assert spin_until(executor, lambda: node.instruction is not None)
    assert "none in force" not in node.diagnostics().status[0].message


def test_a_finalized_node_does_not_claim_it_can_actuate(executor, tiny_checkpoint, spin_until):
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from std_srvs.srv import SetBool

    node = started_policy_node(executor, tiny_checkpoint)
    assert node.trigger_shutdown() == R.SUCCESS
    drv = Driver(executor)
    enable = drv.node.create_client(SetBool, "/deer_vla_policy/enable")
    assert enable.wait_for_service(timeout_sec=5.0)
    future = enable.call_async(SetBool.Request(data=True))
    assert spin_until(executor, future.done)
    assert not future.result().success and "finalized" in future.result().message
    status = node.unconfigured_diagnostics().status[0]
    assert "restart the node" in status.message and "configure to load" not in status.message


def test_the_control_rate_and_the_cameras_come_from_the_checkpoint(executor, tmp_path):
    """rate_hz defaulted to 10 Hz whatever the checkpoint's demonstrations ran at: a 50 Hz arm's twists came out
    5x too slow, with one warning. And the node refused any checkpoint with more than two cameras."""
    from fixtures import build_tiny_checkpoint
    from rclpy.lifecycle import TransitionCallbackReturn as R

    from deer_vla.ros.actions import to_robot_command

    cams = ("front", "hand", "side")
    ckpt = build_tiny_checkpoint(tmp_path / "ckpt", cameras=cams, control_rate_hz=50.0, proprio_dim=4)
    topics = [f"camera/{c}/image_raw" for c in cams]
    node = policy_node(executor, ckpt, enabled=True, image_topics=topics)
    assert node.trigger_configure() == R.SUCCESS, node._configure_error
    assert node.trigger_activate() == R.SUCCESS
    assert node.params.rate_hz == 50.0 and node.get_parameter("rate_hz").value == 0.0
    drv = Driver(executor, topics=tuple(topics))
    drv.instruct()
    assert drv.drive_until(lambda: len(drv.twists) >= 2 and len(drv.actions) >= 2)
    spec = node.stack.action_spec
    expected = to_robot_command(spec.from_standard7(np.asarray(drv.actions[-1].data, dtype=np.float64)), spec,
                                period_s=1 / 50)
    twist = drv.twists[-1].twist
    np.testing.assert_allclose([twist.linear.x, twist.linear.y, twist.linear.z], expected.linear, rtol=1e-5,
                               atol=1e-9)


def test_replay_reproduces_a_run_with_its_own_thresholds_file_and_a_budget_changed_while_running(
        executor, tiny_checkpoint, tmp_path, capsys):
    """Replay took the checkpoint's own thresholds, not the file the run was configured with, and one budget
    for the whole recording, so a run whose budget was changed with `ros2 param set` could not be reproduced
    by any flags; neither was said. Given no thresholds or budget, replay now takes the recording's."""
    from rclpy.parameter import Parameter

    from deer_vla.control.thresholds import Thresholds
    from deer_vla.model.runner import PolicyRunner
    from deer_vla.ros.replay import cli_main

    full = PolicyRunner.from_checkpoint(tiny_checkpoint).cost_profile.costs()[-1]
    n = PolicyRunner.from_checkpoint(tiny_checkpoint).num_exits
    own = tmp_path / "mine.json"
    Thresholds(values=[0.05] * (n - 1)).save(own)  # the checkpoint's own never stop early (0)
    path = tmp_path / "io.mcap"
    node = started_policy_node(executor, tiny_checkpoint, enabled=True, record_path=str(path), thresholds_file=str(own),
                    **{"budget.average_gflops": 0.9 * full})
    drv = Driver(executor)
    drv.instruct(INSTRUCTIONS[0])
    assert drv.drive_until(lambda: node.stats.steps >= 1)
    for _ in range(8):
        assert drv.step_once(node)
    assert node.set_parameters([Parameter("budget.average_gflops", value=0.45 * full)])[0].successful
    for _ in range(8):
        assert drv.step_once(node)
    node.trigger_deactivate()
    node.trigger_cleanup()
    out = tmp_path / "report.json"
    assert cli_main([str(path), "--checkpoint", str(tiny_checkpoint), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["thresholds"] == str(own.resolve()) and report["recorded_budgets"] == 2
    assert report["same_exit_fraction"] == 1.0 and report["max_action_diff"] < 1e-4, report
    assert len(set(report["recorded_exits"])) > 1  # the thresholds did decide
    assert "with the thresholds the recording names" in capsys.readouterr().err
    # another model runs its own thresholds: the recording's were solved for the recorded one (a calibrated
    # file says so by its weights digest, and was refused: the documented comparison could not run)
    from safetensors.torch import load_file, save_file

    other = tmp_path / "other_ckpt"
    shutil.copytree(tiny_checkpoint, other)
    save_file(load_file(other / "model.safetensors"), other / "model.safetensors", metadata={"note": "other"})
    assert cli_main([str(path), "--checkpoint", str(other), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["same_weights"] is False and report["thresholds"] == str(other / "thresholds.json")


def test_replay_reproduces_a_run_whose_tracker_carried_on_from_the_last_configuration(executor, tiny_checkpoint,
                                                                                         tmp_path, monkeypatch):
    """A configuration again carries on the tracker's scale; its recording starts at step 0 with that scale, so
    replay starts its tracker at the recorded scale, not at 1 (the first steps stopped at other exits)."""
    from rclpy.parameter import Parameter

    from deer_vla.control.thresholds import Thresholds
    from deer_vla.model.runner import PolicyRunner
    from deer_vla.ros.replay import cli_main

    runner = PolicyRunner.from_checkpoint(tiny_checkpoint)
    full, n = runner.cost_profile.costs()[-1], runner.num_exits
    own = tmp_path / "mine.json"
    Thresholds(values=[0.05] * (n - 1)).save(own)
    first, second = tmp_path / "one.mcap", tmp_path / "two.mcap"
    node = started_policy_node(executor, tiny_checkpoint, enabled=True, record_path=str(first),
                               thresholds_file=str(own), **{"budget.average_gflops": 0.7 * full})
    drv = Driver(executor)
    drv.instruct(INSTRUCTIONS[0])
    assert drv.drive_until(lambda: node.stats.steps >= 1)
    for _ in range(10):
        assert drv.step_once(node)
    node.trigger_deactivate()
    node.trigger_cleanup()
    assert node.set_parameters([Parameter("record_path", value=str(second))])[0].successful
    node.trigger_configure()
    node.trigger_activate()
    carried = node.stack.controller.tracker.scale
    assert carried != 1.0
    for _ in range(10):
        assert drv.step_once(node)
    node.trigger_deactivate()
    node.trigger_cleanup()
    out = tmp_path / "report.json"
    assert cli_main([str(second), "--checkpoint", str(tiny_checkpoint), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["same_exit_fraction"] == 1.0 and report["max_action_diff"] < 1e-4, report
    # other thresholds (a what-if): the recorded scale means another thing for them, so the tracker starts at 1
    from deer_vla.control.online import OnlineBudgetTracker

    other = tmp_path / "other.json"
    Thresholds(values=[0.06] * (n - 1)).save(other)
    started: list[float] = []
    real = OnlineBudgetTracker.start_at
    monkeypatch.setattr(OnlineBudgetTracker, "start_at", lambda self, scale: (started.append(scale), real(self, scale)))
    assert cli_main([str(second), "--checkpoint", str(tiny_checkpoint), "--thresholds", str(other)]) == 0
    assert started == []
    assert cli_main([str(second), "--checkpoint", str(tiny_checkpoint), "--thresholds", str(own)]) == 0
    assert started == [pytest.approx(carried)]


def test_a_configure_that_fails_after_the_load_keeps_the_tracker_to_carry_on(executor, tiny_checkpoint, monkeypatch):
    """A configure failing after its load went through on_error's cleanup with a tracker that never ran: it took
    the place of the one to carry on, and the next configure started at scale 1."""
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node, before = _tracker_steered_then_cleaned_up(executor, tiny_checkpoint)
    scale, steps = before.scale, before.steps
    real = node._create_interfaces

    def fail_once(*args):
        monkeypatch.setattr(node, "_create_interfaces", real)
        raise RuntimeError("interfaces failed")

    monkeypatch.setattr(node, "_create_interfaces", fail_once)
    assert node.trigger_configure() != R.SUCCESS
    assert node.trigger_configure() == R.SUCCESS
    after = node.stack.controller.tracker
    assert (after.scale, after.steps) == pytest.approx((scale, steps))


def test_a_slow_step_on_time_by_the_sim_clock_gets_no_zero_twists_between_actions(executor, tiny_checkpoint):
    """use_sim_time at a quarter of real time: a 0.8 s (wall) step is 0.2 s of sim time, on time against
    max_image_age_s 0.5 s, and its action goes out. The hung-step check timed it on the wall clock and sent a zero
    twist before each action: the robot stopped and restarted every step."""
    import time

    import rclpy
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import TwistStamped
    from rclpy.qos import qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float32MultiArray, String

    from deer_vla.ros.image_conv import rgb_to_image_msg
    from deer_vla.ros.policy_node import INSTRUCTION_QOS

    node = policy_node(executor, tiny_checkpoint, use_sim_time=True, enabled=True, control_mode="timer",
                       stale_action="zero", max_image_age_s=0.5, rate_hz=10.0)
    sim = rclpy.create_node("quarter_speed_sim")
    executor.add_node(sim)
    clock = sim.create_publisher(Clock, "/clock", 10)
    now_ns = [1_000_000_000]

    def stamp() -> Time:
        return Time(sec=now_ns[0] // 10**9, nanosec=now_ns[0] % 10**9)

    def tick() -> None:
        now_ns[0] += 2_500_000  # 2.5 ms of sim time per 10 ms of wall time
        clock.publish(Clock(clock=stamp()))

    cameras = [sim.create_publisher(Image, f"camera/{c}/image_raw", qos_profile_sensor_data)
               for c in ("static", "wrist")]
    proprio = sim.create_publisher(Float32MultiArray, "proprio", qos_profile_sensor_data)
    rng = np.random.default_rng(0)

    def send() -> None:
        proprio.publish(Float32MultiArray(data=[0.1, 0.2, 0.3, 0.4]))
        for pub in cameras:
            pub.publish(rgb_to_image_msg(rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8), stamp()))

    timers = [sim.create_timer(0.01, tick), sim.create_timer(0.05, send)]
    twists: list = []
    sim.create_subscription(TwistStamped, "cmd_twist", twists.append, 100)
    sim.create_publisher(String, "instruction", INSTRUCTION_QOS).publish(String(data=INSTRUCTIONS[0]))

    def spin(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.01)

    try:
        spin(0.5)
        from rclpy.lifecycle import TransitionCallbackReturn as R

        assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
        real = node.stack.controller.step
        node.stack.controller.step = lambda obs, **kw: (time.sleep(0.8), real(obs, **kw))[1]
        spin(5.0)
        zero = [t for t in twists if (t.twist.linear.x, t.twist.linear.y, t.twist.linear.z) == (0.0, 0.0, 0.0)]
        assert len(twists) - len(zero) >= 2 and not zero, f"{len(zero)} zero twists among {len(twists)}"
        assert node.stats.skipped["late_action"] == 0
    finally:
        for timer in timers:
            sim.destroy_timer(timer)
        executor.remove_node(sim)
        sim.destroy_node()


def test_a_step_failing_after_deactivate_sends_nothing(executor, tiny_checkpoint):
    """A step that raised after deactivate (or during cleanup) sent one more zero twist from an inactive node,
    cutting into whatever drives the arm by then (deactivate sends its own stop)."""

    node = started_policy_node(executor, tiny_checkpoint, enabled=True, stale_action="zero", max_image_age_s=5.0)
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: len(drv.actions) >= 1) and drv.settle(node)
    held = HeldStep(node, error=RuntimeError("CUDA error: an illegal memory access"), timeout=10.0)
    node.stack.controller.step = held
    assert drv.drive_until(held.started.is_set)
    from rclpy.lifecycle import TransitionCallbackReturn as R

    assert node.trigger_deactivate() == R.SUCCESS
    drv.spin(0.3)
    sent = len(drv.twists)  # deactivate's own stop included
    held.release.set()
    drv.spin(1.0)
    assert node.stats.model_errors >= 1 and len(drv.twists) == sent


def test_a_new_instruction_during_a_hung_step_keeps_the_stops_coming(executor, tiny_checkpoint):
    """stale_action zero, a step hanging past max_image_age_s: each period sends a zero. A new instruction meanwhile
    made the running step 'not current', and the periods after it sent nothing: the old task's last velocity
    stood for as long as the step hung."""

    node = started_policy_node(executor, tiny_checkpoint, enabled=True, control_mode="timer", stale_action="zero",
                    max_image_age_s=0.5)
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: len(drv.actions) >= 2)
    held = HeldStep(node)
    node.stack.controller.step = held
    try:
        assert drv.drive_until(held.started.is_set)
        drv.instruct(INSTRUCTIONS[1])
        drv.drive_until(lambda: False, timeout=0.8)  # the hung step's images age past 0.5 s
        after = len(drv.twists)
        drv.drive_until(lambda: False, timeout=1.0)
        stops = drv.twists[after:]
        assert stops and all(t.twist.linear.x == t.twist.linear.y == t.twist.linear.z == 0.0 for t in stops)
    finally:
        held.release.set()
        node.stack.controller.step = held.real


def test_run_time_budgets_are_judged_as_configure_judged_its_cap(executor) -> None:
    """Configure capped a memory budget just above exit 4's weights at exit 3 (the exit gates' bytes are held
    too), but the run-time check judged budgets without the gates: it read the same budget as allowing exit 4,
    and refused every later budget change (even setting that memory budget again) with 'configure loaded exits
    1..3 only', which configuring again did not mend."""
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    from deer_vla.model.runner import PolicyRunner

    runner = PolicyRunner.from_checkpoint("default")
    between = runner.model_profile.weight_bytes[3] + runner.exit_gate_bytes // 2
    node = policy_node(executor, Path("default"), **{"budget.memory_bytes": between})
    assert node.trigger_configure() == R.SUCCESS
    assert node.stack.profile.num_exits == 3
    for name, value in (("budget.average_gflops", 0.05), ("budget.memory_bytes", between)):
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert result.successful, result.reason


def _with_instruction_record(tiny_checkpoint: Path, out: Path) -> Path:
    shutil.copytree(tiny_checkpoint, out)
    (out / "extra.json").write_text(json.dumps({"training": {"instructions": {
        "reach": [INSTRUCTIONS[0]], "push": [INSTRUCTIONS[1]]}}}))
    return out


def _instruction_status(node) -> tuple[int, str, dict[str, str]]:
    found = [s for s in node.diagnostics().status if s.name == "deer_vla_policy: instruction"]
    assert len(found) == 1
    return found[0].level[0], found[0].message, {kv.key: kv.value for kv in found[0].values}


def test_an_instruction_unlike_every_trained_wording_is_said_or_refused(executor, tiny_checkpoint, tmp_path,
                                                                       monkeypatch):
    """A checkpoint that records its trained wordings (extra.json training.instructions): a new instruction is
    logged with the task it is heard as; one under min_instruction_similarity runs under the default 'warn',
    its line at WARN (every such text, however quickly they come), and under 'refuse' (a run-time change) is kept
    out, the previous instruction staying in force; switching to 'refuse' drops an unfamiliar instruction in
    force, with a zero twist. The '<node>: instruction' status on /diagnostics says the same. Words the tiny
    tokenizer does not know are its unknown token, left out: similarity 0, whatever the random weights."""
    from rclpy.parameter import Parameter

    node = started_policy_node(executor, _with_instruction_record(tiny_checkpoint, tmp_path / "ckpt"), enabled=True,
                               stale_action="zero")
    infos, warns = spy_on_log(node, "info", monkeypatch), spy_on_log(node, "warn", monkeypatch)
    errors = spy_on_log(node, "error", monkeypatch)
    drv = Driver(executor)

    assert _instruction_status(node)[:2] == (0, "no instruction yet")
    drv.instruct(INSTRUCTIONS[1])
    assert drv.drive_until(lambda: node.instruction == INSTRUCTIONS[1])
    assert any("heard as push" in m and "similarity 1.00" in m for m, _ in infos)
    level, message, values = _instruction_status(node)
    assert level == 0 and message.startswith("heard as push") and values["heard as task"] == "push"

    # a floor of 1 leaves only the trained wordings over it: texts of trained words in other orders are unlike
    # every one, whatever the random weights
    assert node.set_parameters([Parameter("min_instruction_similarity", value=1.0)])[0].successful
    for text in ("reach the red puck", "push the red goal"):  # default 'warn': they run, each said at once
        drv.instruct(text)
        assert drv.drive_until(lambda: node.instruction == text)  # noqa: B023 (used within the iteration)
        said = [(m, kw) for m, kw in warns if m.startswith(f"instruction: '{text}'")]
        assert len(said) == 1 and "unlike every instruction" in said[0][0] and not said[0][1]
    level, message, values = _instruction_status(node)
    assert level == 1 and "< min_instruction_similarity 1" in message
    assert values["unfamiliar instructions"] == "2"
    # one that names nothing the checkpoint was trained on is refused even under 'warn' (the nearest task ran),
    # and the instruction in force goes with it, as with a stop ("whoa" carried on with the last task)
    rejected = node.stats.rejected_instructions
    drv.instruct("zebra xylophone")
    assert drv.drive_until(lambda: node.stats.rejected_instructions == rejected + 1)
    assert node.instruction is None
    assert any("'zebra xylophone' refused: it names nothing this checkpoint was trained on" in m
               and "the previous instruction is dropped" in m for m, _ in errors)
    drv.instruct("push the red goal")
    assert drv.drive_until(lambda: node.instruction == "push the red goal")

    assert not node.set_parameters([Parameter("unfamiliar_instruction", value="ignore")])[0].successful
    assert not node.set_parameters([Parameter("min_instruction_similarity", value=1.5)])[0].successful
    twists = len(drv.twists)
    assert node.set_parameters([Parameter("unfamiliar_instruction", value="refuse")])[0].successful
    assert node.instruction is None  # the unfamiliar instruction in force is dropped, and the robot told to stop
    assert any("instruction in force 'push the red goal' dropped" in m for m, _ in errors)
    assert drv.drive_until(lambda: len(drv.twists) > twists)
    assert drv.twists[-1].twist.linear.x == 0.0 and drv.twists[-1].twist.linear.z == 0.0
    drv.instruct(INSTRUCTIONS[0])  # a trained wording passes even a floor of 1 (float32 rounding)
    assert drv.drive_until(lambda: node.instruction == INSTRUCTIONS[0])
    rejected = node.stats.rejected_instructions
    for n, text in enumerate(("reach the red puck", "push the red goal"), 1):  # one after the other (depth-1 QoS)
        drv.instruct(text)
        assert drv.drive_until(lambda: node.stats.rejected_instructions == rejected + n)  # noqa: B023
    assert node.instruction == INSTRUCTIONS[0]  # the previous instruction stays in force
    refusals = [(m, kw) for m, kw in errors
                if "refused (unfamiliar_instruction: refuse); unlike every instruction" in m]
    assert len(refusals) == 2 and all("keeping the previous instruction" in m and not kw for m, kw in refusals)
    assert _instruction_status(node)[0] == 0  # the instruction in force is a trained one

    assert node.set_parameters([Parameter("min_instruction_similarity", value=0.0)])[0].successful
    drv.instruct("push the red goal")  # no floor: even this one is taken
    assert drv.drive_until(lambda: node.instruction == "push the red goal")
    assert node.set_parameters([Parameter("unfamiliar_instruction", value="off")])[0].successful
    assert _instruction_status(node)[1] == "not compared (unfamiliar_instruction: off)"


def test_strict_keeps_out_every_text_warn_runs_at_warn(executor, tiny_checkpoint, tmp_path, monkeypatch):
    """unfamiliar_instruction 'strict': a text 'warn' runs with a WARN (here a word the record never has) is
    refused and the previous instruction kept; a trained wording runs; switching to 'strict' at run
    time drops such a text in force (no steps until a new instruction)."""
    from rclpy.parameter import Parameter

    node = started_policy_node(executor, _with_instruction_record(tiny_checkpoint, tmp_path / "ckpt"), enabled=True,
                               stale_action="zero")
    errors = spy_on_log(node, "error", monkeypatch)
    drv = Driver(executor)
    two = f"{INSTRUCTIONS[0]} and {INSTRUCTIONS[2]}"
    drv.instruct(two)  # 'warn': runs, said at WARN
    assert drv.drive_until(lambda: node.instruction == two)
    assert _instruction_status(node)[0] == 1
    assert node.set_parameters([Parameter("unfamiliar_instruction", value="strict")])[0].successful
    assert node.instruction is None  # dropped: 'strict' would have refused it
    assert any(f"instruction in force '{two}' dropped (unfamiliar_instruction: strict)" in m for m, _ in errors)
    drv.instruct(INSTRUCTIONS[1])
    assert drv.drive_until(lambda: node.instruction == INSTRUCTIONS[1])
    rejected = node.stats.rejected_instructions
    drv.instruct(two)
    assert drv.drive_until(lambda: node.stats.rejected_instructions == rejected + 1)
    assert node.instruction == INSTRUCTIONS[1]  # the previous one kept
    assert any(f"instruction '{two}' refused (unfamiliar_instruction: strict)" in m and "names 'drawer'" in m
               and "keeping the previous instruction" in m for m, _ in errors)


@pytest.mark.parametrize(("text", "why"), [
    ("don\u2019t push the puck to the goal", "asks not to do something (\"don't\")"),
    ("The puck is off, push it on", "says a state ('off') beside a request of the opposite task ('on')"),
])
def test_a_negated_or_self_contradicting_instruction_is_refused_and_stops_the_robot(executor, tiny_checkpoint, tmp_path,
                                                                                    monkeypatch, text, why):
    """"don't push the puck" names the task it forbids, and the policy would do it; "the window is open, please
    close the window" opened it: refused whatever unfamiliar_instruction says, and the instruction in force
    dropped (no steps, a zero twist) rather than kept, which would carry on with what the robot may just have
    been told not to do."""
    node = started_policy_node(executor, _with_instruction_record(tiny_checkpoint, tmp_path / "ckpt"), enabled=True,
                               stale_action="zero", unfamiliar_instruction="off")
    errors = spy_on_log(node, "error", monkeypatch)
    drv = Driver(executor)
    drv.instruct(INSTRUCTIONS[1])
    assert drv.drive_until(lambda: node.instruction == INSTRUCTIONS[1])
    assert drv.drive_until(lambda: len(drv.records) >= 2)
    drv.settle(node)
    rejected, twists = node.stats.rejected_instructions, len(drv.twists)
    drv.instruct(text)
    assert drv.drive_until(lambda: node.stats.rejected_instructions == rejected + 1)
    assert node.instruction is None
    said = [m for m, _ in errors if why in m]
    assert len(said) == 1 and "the previous instruction is dropped" in said[0], errors
    assert drv.drive_until(lambda: len(drv.twists) > twists)  # the robot is told to stop
    assert drv.twists[-1].twist.linear.x == 0.0 and drv.twists[-1].twist.linear.z == 0.0
    drv.settle(node)
    records = len(drv.records)
    assert not drv.drive_until(lambda: len(drv.records) > records, timeout=1.0)  # and nothing steps


def test_an_instruction_two_tasks_are_as_near_to_is_a_warning(executor, tiny_checkpoint, tmp_path, monkeypatch):
    """Two tasks' wordings equally near (the comparison reads no word order: "push the puck" is "the puck push"):
    the log said "heard as push" at INFO as if sure; it is a WARN naming the other task, and /diagnostics says
    WARN too. The text still runs (unfamiliar_instruction judges the floor only)."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    (ckpt / "extra.json").write_text(json.dumps({"training": {"instructions": {
        "push": ["push the puck"], "reach": ["the puck push"]}}}))
    node = started_policy_node(executor, ckpt)
    warns = spy_on_log(node, "warn", monkeypatch)
    drv = Driver(executor)
    drv.instruct("push the puck")
    assert drv.drive_until(lambda: node.instruction == "push the puck")
    said = [m for m, _ in warns if m.startswith("instruction: 'push the puck'")]
    assert len(said) == 1 and "is nearly as near (1.00): the policy may do either" in said[0], warns
    level, message, values = _instruction_status(node)
    assert level == 1 and "nearly as near" in message and values["nearest other task"].startswith("reach")


def test_a_misspelt_instruction_runs_as_the_trained_one_and_says_so(executor, tiny_checkpoint, tmp_path,
                                                                   monkeypatch):
    node = started_policy_node(executor, _with_instruction_record(tiny_checkpoint, tmp_path / "ckpt"))
    infos = spy_on_log(node, "info", monkeypatch)
    drv = Driver(executor)
    drv.instruct("puhs the puck to the goal")
    assert drv.drive_until(lambda: node.instruction == "puhs the puck to the goal")  # kept as sent
    said = [m for m, _ in infos if m.startswith("instruction: 'puhs the puck to the goal'")]
    assert len(said) == 1 and "read 'puhs' as 'push'" in said[0] and "heard as push" in said[0], said
    assert "similarity 1.00" in said[0]  # compared as the model reads it
    assert node._instruction_key == node.stack.runner.instruction_key(INSTRUCTIONS[1])


def test_a_new_checkpoint_that_reads_the_instruction_in_force_otherwise_says_so(executor, tiny_checkpoint, tmp_path,
                                                                                monkeypatch):
    """'puhs the puck to the goal' in force, read as 'push ...' by a checkpoint that records its wordings; after a
    reconfigure with one that records none, the model read it as typed and nothing was said."""
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    node = started_policy_node(executor, _with_instruction_record(tiny_checkpoint, tmp_path / "ckpt"))
    warns = spy_on_log(node, "warn", monkeypatch)
    drv = Driver(executor)
    drv.instruct("puhs the puck to the goal")
    assert drv.drive_until(lambda: node.instruction == "puhs the puck to the goal")
    assert node.trigger_deactivate() == R.SUCCESS and node.trigger_cleanup() == R.SUCCESS
    assert node.set_parameters([Parameter("checkpoint_dir", value=str(tiny_checkpoint))])[0].successful
    assert node.trigger_configure() == R.SUCCESS
    said = [m for m, _ in warns if m.startswith("instruction in force 'puhs the puck to the goal' is read as")]
    assert len(said) == 1 and "'push the puck to the goal' by the last one" in said[0], warns


def test_familiar_and_unfamiliar_instructions_alternate_through_rclpys_own_logger(executor, tiny_checkpoint,
                                                                                  tmp_path):
    """With rclpy's real logger (no spy): a familiar instruction said at INFO, then an unfamiliar one at WARN, from
    one call site, raised 'Logger severity cannot be changed between calls' out of the callback, and the
    policy_node executable exited with status 1 on its second instruction."""
    from rclpy.parameter import Parameter

    node = started_policy_node(executor, _with_instruction_record(tiny_checkpoint, tmp_path / "ckpt"), enabled=True,
                               min_instruction_similarity=1.0)  # only the trained wordings over it
    drv = Driver(executor)
    for text in (INSTRUCTIONS[1], "reach the red puck", INSTRUCTIONS[0], "push the red goal", "push the red goal"):
        drv.instruct(text)
        steps = node.stats.steps
        assert drv.drive_until(lambda: node.instruction == text and node.stats.steps > steps)  # noqa: B023
    assert node.set_parameters([Parameter("repeated_instruction", value="keep")])[0].successful
    drv.instruct("push the red goal")
    assert drv.drive_until(lambda: node.stats.repeated_instructions == 1)


def test_a_halt_answered_while_configure_loads_sticks(executor, tiny_checkpoint, monkeypatch):
    """A multi-threaded executor answers ~/halt beside configure (the lifecycle services are in rclpy's default
    callback group): configure then set the gate from the 'enabled' it had read before loading, and after
    activate the robot moved (40 non-zero twists in an audit) with no ~/enable."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from std_srvs.srv import Trigger

    import deer_vla.ros.policy_node as policy_node_module

    node = policy_node(executor, tiny_checkpoint, enabled=True)
    real_load = policy_node_module.load_stack

    def load_with_a_halt(*args, **kwargs):
        node._srv_halt(Trigger.Request(), Trigger.Response())
        return real_load(*args, **kwargs)

    monkeypatch.setattr(policy_node_module, "load_stack", load_with_a_halt)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert not node.enabled and node.params.enabled is False
    drv = Driver(executor)
    drv.instruct(INSTRUCTIONS[0])
    assert drv.drive_until(lambda: node.stats.steps >= 3)
    assert drv.settle(node)
    assert node.stats.actions_published == 0 and not drv.twists


def test_a_change_to_refuse_while_an_unfamiliar_instruction_is_taken_drops_it(executor, tiny_checkpoint, tmp_path):
    """Judging an instruction and putting it in force is one step: a switch to 'refuse' from another thread (a
    multi-threaded executor) between them re-judged the instruction still in force, and the unfamiliar one then
    taken stayed in force under 'refuse' (6 of 150 trials in an audit)."""
    import threading
    import time

    from rclpy.parameter import Parameter

    node = started_policy_node(executor, _with_instruction_record(tiny_checkpoint, tmp_path / "ckpt"),
                               min_instruction_similarity=1.0)  # only the trained wordings over it
    drv = Driver(executor)
    drv.instruct(INSTRUCTIONS[1])
    assert drv.drive_until(lambda: node.instruction == INSTRUCTIONS[1])
    check = node._instruction_check
    judge = check.judge
    switched: list[threading.Thread] = []

    def judge_then_switch(text, mode, floor, count=True):
        verdict = judge(text, mode, floor, count)
        if text == "reach the red puck" and not switched:  # the switch arrives while this text is being taken
            switched.append(threading.Thread(target=node.set_parameters,
                                             args=([Parameter("unfamiliar_instruction", value="refuse")],)))
            switched[0].start()
            time.sleep(0.3)
        return verdict

    check.judge = judge_then_switch
    drv.instruct("reach the red puck")
    assert drv.drive_until(lambda: bool(switched))
    switched[0].join(10.0)
    assert node.params.unfamiliar_instruction == "refuse" and node.instruction is None


def test_a_new_configuration_judges_the_instruction_in_force_by_its_own_record(executor, tiny_checkpoint,
                                                                              tmp_path, monkeypatch):
    """An instruction heard under a checkpoint without a record stays in force across cleanup + configure; the
    new checkpoint's record judges it: under 'refuse' an unfamiliar one is dropped, not run unjudged. And back
    on a checkpoint without a record nothing of the other's comparison remains."""
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    with_record = _with_instruction_record(tiny_checkpoint, tmp_path / "ckpt")
    node = started_policy_node(executor, tiny_checkpoint, unfamiliar_instruction="refuse")
    errors = spy_on_log(node, "error", monkeypatch)
    drv = Driver(executor)
    drv.instruct("zebra xylophone")
    assert drv.drive_until(lambda: node.instruction == "zebra xylophone")
    assert "records no trained instructions" in _instruction_status(node)[1]
    assert node.trigger_deactivate() == R.SUCCESS and node.trigger_cleanup() == R.SUCCESS
    assert node.set_parameters([Parameter("checkpoint_dir", value=str(with_record))])[0].successful
    assert node.trigger_configure() == R.SUCCESS
    assert node.instruction is None and any("'zebra xylophone' dropped" in m for m, _ in errors)
    assert _instruction_status(node)[:2] == (0, "none in force: 'zebra xylophone' was dropped (it names no task to "
                                                "this checkpoint)")
    drv.instruct(INSTRUCTIONS[1])
    assert drv.drive_until(lambda: node.instruction == INSTRUCTIONS[1])
    assert node.trigger_cleanup() == R.SUCCESS
    assert node.set_parameters([Parameter("checkpoint_dir", value=str(tiny_checkpoint))])[0].successful
    assert node.trigger_configure() == R.SUCCESS
    assert node.instruction == INSTRUCTIONS[1] and "records no trained instructions" in _instruction_status(node)[1]


@pytest.mark.parametrize("hold_rate_hz", [0.0, 50.0])
def test_hold_mode_keeps_the_newest_twist_younger_than_moveit_servos_timeout(executor, tiny_checkpoint,
                                                                             hold_rate_hz):
    """MoveIt Servo halts the arm when the newest TwistStamped is older than incoming_command_timeout (0.1 s by
    default, judged on the header stamp). At 10 Hz a twist is a period old when the next comes: Servo would halt
    every period; hold mode (docs/ros.md, "MoveIt Servo") re-sends the last one, restamped, in between."""
    from geometry_msgs.msg import TwistStamped

    node = started_policy_node(executor, tiny_checkpoint, enabled=True, control_mode="timer", rate_hz=10.0,
                               hold_rate_hz=hold_rate_hz)
    assert node.params.hold_rate_hz == hold_rate_hz
    drv = Driver(executor)
    arrivals: list[tuple[int, int]] = []  # (arrival, header stamp), ns on the node clock
    drv.node.create_subscription(TwistStamped, "cmd_twist", lambda m: arrivals.append(
        (drv.node.get_clock().now().nanoseconds, m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)), 10)
    drv.instruct(INSTRUCTIONS[0])
    drv.node.create_timer(1 / 30, drv.send_pair)  # a 30 Hz camera
    drv.spin(4.0)
    stamps = np.array(arrivals[3:], dtype=np.int64)
    assert len(stamps) > 15
    age = (stamps[1:, 0] - stamps[:-1, 1]) * 1e-9  # how old the newest twist is when the next one arrives
    if hold_rate_hz:
        assert np.percentile(age, 95) < 0.1  # measured: max 30 ms (a loaded CI may delay one)
    else:  # the plain 10 Hz stream: about a period, so Servo's 0.1 s passes in most of them
        assert np.median(age) > 0.09


def test_autostart_leaves_a_node_a_manager_configured_alone_and_unchanged_settings_load(executor, tiny_checkpoint,
                                                                                        spin_until):
    """A parameter file dumped from a node started with autostart holds autostart: true; under the bringup (or a
    launch file) the manager configured and activated the node first, then the 0 s timer configured the active
    node: the transition error left the timer and ended the process. And `ros2 param load` of a node's own dump
    sets every parameter: the configure-time ones, unchanged, were each refused as if changed."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    node = policy_node(executor, tiny_checkpoint, autostart=True)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS  # before the timer's first turn
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert spin_until(executor, lambda: node._autostart_timer is None, timeout=5.0)
    executor.spin_once(timeout_sec=0.2)
    assert node.active and node._state_machine.current_state[1] == "active"

    same = [Parameter(name, value=node.get_parameter(name).value) for name in
            ("action_topic", "image_topics", "record_split_mib", "checkpoint_dir", "max_image_age_s")]
    assert all(r.successful for r in node.set_parameters(same))
    changed = node.set_parameters([Parameter("action_topic", value="elsewhere")])[0]
    assert not changed.successful and "take effect only at configure" in changed.reason
    assert not node.set_parameters([Parameter("record_split_mib", value=256)])[0].successful  # another type


def test_twists_go_out_in_the_frame_the_checkpoints_actions_were_recorded_in(executor, tmp_path, capfd):
    """A model trained on tool-frame teleoperation sent its twists in base_link (the parameter's default) unless
    the user knew to set frame_id: the arm moved along rotated axes. The checkpoint's frame is the default now,
    and a frame_id that contradicts it is warned about (through rclpy's own logger, not a spy)."""
    from fixtures import build_tiny_checkpoint
    from rclpy.lifecycle import TransitionCallbackReturn as R

    from deer_vla.model.presets import preset_config

    action = {**preset_config("tiny").action, "frame": "tool0"}
    tool = build_tiny_checkpoint(tmp_path / "tool", action=action)
    frames = {}
    for name, given in (("default", None), ("contradicts", "base_link"), ("prefixed", "robot1/tool0")):
        node = started_policy_node(executor, tool, enabled=True, rate_hz=20.0,
                                   **({} if given is None else {"frame_id": given}))
        drv = Driver(executor, name=f"driver_{name}")
        drv.instruct()
        assert drv.drive_until(lambda d=drv: len(d.twists) >= 1)
        frames[name] = (drv.twists[-1].header.frame_id, capfd.readouterr().err)
        assert node.trigger_deactivate() == R.SUCCESS and node.trigger_cleanup() == R.SUCCESS
        for done in (node, drv.node):
            executor.remove_node(done)
            done.destroy_node()
    assert frames["default"][0] == "tool0" and "twists in frame 'tool0' (the checkpoint's action frame)" in \
        frames["default"][1]
    assert frames["contradicts"][0] == "base_link"
    assert "frame_id 'base_link' differs from the frame 'tool0' the policy's actions were recorded in" in \
        frames["contradicts"][1]
    assert frames["prefixed"][0] == "robot1/tool0" and "differs from the frame" not in frames["prefixed"][1]
    bad = policy_node(executor, tool, frame_id="base link")
    assert bad.trigger_configure() == R.FAILURE
    assert "frame_id" in bad._configure_error and "no spaces" in bad._configure_error


def test_a_compressed_camera_is_decoded_stepped_on_and_recorded_as_it_came(executor, tiny_checkpoint, tmp_path):
    """Robots send cameras over the network as image_transport's <base>/compressed (JPEG, PNG); import-mcap read
    them but the node took sensor_msgs/Image only, so a model trained on a compressed stream could not be run on
    it. A topic named .../compressed is decoded; the recording keeps the frames compressed (a fraction of raw
    frames' size) and replays to the same exits; a frame that does not decode is refused and counted."""
    import cv2
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage

    from deer_vla.data.mcap_io import read_messages
    from deer_vla.data.recording import image_topic, read_recording
    from deer_vla.ros.policy_backend import load_stack
    from deer_vla.ros.replay import replay

    path = tmp_path / "io.mcap"
    node = started_policy_node(executor, tiny_checkpoint, enabled=True, record_path=str(path), rate_hz=20.0,
                               image_topics=["camera/static/image_raw/compressed", "camera/wrist/image_raw"])
    drv = Driver(executor, topics=("camera/wrist/image_raw",))
    pub = drv.node.create_publisher(CompressedImage, "camera/static/image_raw/compressed", qos_profile_sensor_data)
    sent: list[np.ndarray] = []

    def send(fmt: str = "png", data: bytes | None = None) -> None:
        if data is None:
            rgb = drv.rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
            sent.append(rgb)
            data = cv2.imencode(f".{fmt}", np.ascontiguousarray(rgb[:, :, ::-1]))[1].tobytes()
        msg = CompressedImage(format=fmt, data=data)
        msg.header.stamp = drv.node.get_clock().now().to_msg()
        pub.publish(msg)

    drv.instruct()
    for _ in range(400):
        send()
        drv.send_pair()
        drv.spin(0.03)
        if node.stats.steps >= 5:
            break
    assert node.stats.steps >= 5 and node.stats.rejected_images == 0
    assert any(np.array_equal(node.frames["static"].rgb, s) for s in sent[-3:])  # PNG: the very pixels sent
    # decoded by the step that takes it, in the worker, not on arrival (the executor thread answers ~/halt)
    send()
    drv.spin(0.2)  # event mode: no step without a new wrist frame
    assert not node.frames["static"].decoded
    depth = cv2.imencode(".png", np.full((20, 30), 1500, np.uint16))[1].tobytes()
    for bad, fmt, said in ((b"not an image", "jpeg", "neither JPEG nor PNG"), (b"", "png", "is empty"),
                           (b"\x89PNG....", "16UC1; compressedDepth png", "is a depth image"),
                           (depth, "16UC1; png compressed ", "encoding '16UC1' is not a camera's colours"),
                           (depth, "png", "more than 8 bits per pixel"),  # a bare format: the header says it
                           (cv2.imencode(".tiff", sent[-1])[1].tobytes(), "jpeg", "neither JPEG nor PNG")):
        rejected = node.stats.rejected_images
        send(fmt, bad)
        assert drv.drive_until(lambda r=rejected: node.stats.rejected_images > r, timeout=5.0)
        assert said in node.stats.refusals["static"]
    # a JPEG whose header reads but whose data is cut: refused by the step that tries it, which is skipped
    whole = cv2.imencode(".jpg", drv.rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8))[1].tobytes()
    rejected, skipped = node.stats.rejected_images, node.stats.skipped["bad_image"]
    send("jpeg", whole[: len(whole) // 3])
    assert drv.drive_until(lambda: node.stats.skipped["bad_image"] > skipped, timeout=5.0)
    assert node.stats.rejected_images == rejected + 1 and "does not decode" in node.stats.refusals["static"]
    send("jpeg")  # JPEG: decoded by the next step, its colours near the ones sent
    assert drv.drive_until(lambda: isinstance(node.frames["static"].image, np.ndarray)
                           and node.frames["static"].image.shape == (40, 56, 3)
                           and np.abs(node.frames["static"].image.astype(int) - sent[-1]).mean() < 60)
    steps = node.stats.steps
    node.trigger_deactivate()
    node.trigger_cleanup()  # closes the recording
    types = {m.topic: m.datatype for m in read_messages(path)}
    assert types[image_topic("static")] == "sensor_msgs/msg/CompressedImage"
    assert types[image_topic("wrist")] == "sensor_msgs/msg/Image"
    recorded = read_recording(path)
    assert len(recorded) == steps and recorded[0].images["static"].shape == (40, 56, 3)
    same = replay(path, load_stack(tiny_checkpoint, tiny_checkpoint / "thresholds.json", "cpu", {}, 0))
    assert same.steps == steps and same.same_exit_fraction == 1.0 and same.max_action_diff < 1e-4


def test_the_gripper_goes_out_as_joint_positions_for_a_forward_command_controller(executor, tiny_checkpoint):
    """The gripper went out only as std_msgs/Float64 in [-1, 1], which no ros2_controllers controller takes:
    every robot needed an adapter node. gripper.output positions sends each joint's position between its open
    and closed ones as std_msgs/Float64MultiArray (forward_command_controller's <controller>/commands)."""
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from std_msgs.msg import Float64MultiArray

    from deer_vla.ros.actions import gripper_positions

    assert gripper_positions(-1.0, [0.04, 0.04], [0.0, 0.0]) == [0.04, 0.04]
    assert gripper_positions(1.0, [0.04], [0.0]) == [0.0]
    assert gripper_positions(0.5, [0.8], [0.0]) == pytest.approx([0.2])
    assert gripper_positions(7.0, [0.8], [0.0]) == [0.0]  # clipped, never past closed
    node = started_policy_node(executor, tiny_checkpoint, enabled=True, **{
        "gripper.output": "positions", "gripper.open_positions": [0.04, 0.04],
        "gripper.closed_positions": [0.0, 0.0], "gripper_topic": "gripper_controller/commands"})
    drv = Driver(executor)
    commands: list = []
    drv.node.create_subscription(Float64MultiArray, "gripper_controller/commands", commands.append, 10)
    drv.instruct()
    assert drv.drive_until(lambda: len(commands) >= 2 and len(drv.actions) >= 2)
    assert drv.settle(node)  # every step's outputs have landed: the last of each are one step's
    assert len(commands) == len(drv.actions)
    unit = drv.actions[-1].data[6]  # the same step's normalised gripper
    assert list(commands[-1].data) == pytest.approx(gripper_positions(unit, [0.04, 0.04], [0.0, 0.0]))
    assert all(0.0 <= v <= 0.04 for c in commands for v in c.data)
    for bad, said in (({"gripper.open_positions": [0.04, 0.04], "gripper.closed_positions": [0.0]},
                       "one per joint"),
                      ({"gripper.open_positions": [0.0], "gripper.closed_positions": [0.0]}, "never move"),
                      ({"gripper.output": "effort"}, "gripper.output")):
        refused = policy_node(executor, tiny_checkpoint, **bad)
        assert refused.trigger_configure() == R.FAILURE
        assert said in refused._configure_error
        assert "checkpoint_dir" not in refused._configure_error  # a check across parameters: not every value
        executor.remove_node(refused)
        refused.destroy_node()


def test_configure_says_what_the_gripper_output_sends(executor, tiny_checkpoint, monkeypatch):
    """The model's gripper is -1 open .. +1 closed whatever units the demonstrations recorded (the checkpoint does
    not keep them): an own robot's guide-follower wired cmd_gripper to a finger-width controller and sent it
    -0.67. Configure says the scale and how to send positions instead."""
    from rclpy.lifecycle import TransitionCallbackReturn as R

    for params, said in (({}, "gripper on 'cmd_gripper': std_msgs/Float64, -1 open .. +1 closed (gripper.output: "
                               "unit; a controller that takes joint positions needs gripper.output: positions"),
                         ({"gripper.output": "positions", "gripper.open_positions": [0.04],
                           "gripper.closed_positions": [0.0]},
                          "std_msgs/Float64MultiArray of joint positions, [0.04] open .. [0.0] closed")):
        node = policy_node(executor, tiny_checkpoint, **params)
        infos = spy_on_log(node, "info", monkeypatch)
        assert node.trigger_configure() == R.SUCCESS
        assert any(said in m for m, _ in infos), infos
        executor.remove_node(node)
        node.destroy_node()


def test_gripper_positions_set_through_the_parameter_services_one_list_at_a_time(executor, tiny_checkpoint):
    """`ros2 param set` / `ros2 param load` hand double arrays over as array.array, which the strict lists
    refused ("Input should be a valid list"), and a gripper of one more joint changes both lists, which they set
    one at a time: each set was refused by the other list's length. The lengths are judged at configure."""
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    from deer_vla.ros.params import POLICY_DEFAULTS, ParameterError, parse_params

    def as_sent(name: str, values: list[float]) -> Parameter:  # as the parameter services receive it
        return Parameter.from_parameter_msg(ParameterMsg(name=name, value=ParameterValue(
            type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=values)))

    node = policy_node(executor, tiny_checkpoint, enabled=True, **{"gripper.output": "positions"})
    assert type(as_sent("x", [0.0]).value).__name__ == "array"
    for name, values in (("gripper.open_positions", [0.04, 0.04]), ("gripper.closed_positions", [0.0, 0.0])):
        (result,) = node.set_parameters([as_sent(name, values)])
        assert result.successful, result.reason
    assert node.trigger_configure() == R.SUCCESS and node.params.gripper_open_positions == [0.04, 0.04]
    # a configured node takes its own values back (ros2 param load of its dump)
    (result,) = node.set_parameters([as_sent("gripper.closed_positions", [0.0, 0.0])])
    assert result.successful, result.reason
    with pytest.raises(ParameterError, match=r"parameter 'gripper.open_positions' = \['a'\]: item 0: "):
        parse_params({**POLICY_DEFAULTS, "gripper.open_positions": ["a"]})


def test_ros2_param_describe_says_what_each_parameter_does_its_limits_and_when_it_applies(executor, tiny_checkpoint):
    """`ros2 param describe` showed an empty description for all but two parameters, no limits and nothing about
    which ones change at run time (the rest are refused while configured)."""
    from deer_vla.ros.params import POLICY_DEFAULTS

    node = policy_node(executor, tiny_checkpoint)
    described = dict(zip(POLICY_DEFAULTS, node.describe_parameters(list(POLICY_DEFAULTS))))
    assert all(d.description for d in described.values())
    assert described["rate_hz"].additional_constraints == "0 (the checkpoint's) or 0.01..1000; applied at configure"
    assert described["twist_topic"].additional_constraints == "at least 1 character(s); applied at configure"
    assert described["max_instruction_chars"].additional_constraints == ">= 1; <= 65536; changeable at run time"
    assert described["budget.average_gflops"].additional_constraints == ">= 0; changeable at run time"
    assert described["criterion"].additional_constraints.startswith("one of '', 'consecutive', 'learned'")
    assert described["enabled"].additional_constraints == "changeable at run time"
    assert "compressed" in described["image_topics"].description


def test_a_compressed_frames_decode_is_the_steps_own_time(executor, tiny_checkpoint, monkeypatch):
    """The worker decodes a step's JPEG before the model runs (~60 ms at 4K); that time was outside the step's
    clock, so encode_ms/total_ms (what the monitor judges peak_ms on) and the deadline guard never saw it."""
    import cv2
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage

    from deer_vla.data.image_msg import CompressedFrame

    decode = CompressedFrame.decode

    def slow_decode(frame: CompressedFrame) -> np.ndarray:
        time.sleep(0.08)  # a large frame's decode, made deterministic
        return decode(frame)

    monkeypatch.setattr(CompressedFrame, "decode", slow_decode)
    node = started_policy_node(executor, tiny_checkpoint, enabled=True, rate_hz=20.0,
                               image_topics=["camera/static/image_raw/compressed", "camera/wrist/image_raw"])
    drv = Driver(executor, topics=("camera/wrist/image_raw",))
    pub = drv.node.create_publisher(CompressedImage, "camera/static/image_raw/compressed", qos_profile_sensor_data)
    drv.instruct()
    for _ in range(200):
        rgb = drv.rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
        msg = CompressedImage(format="jpeg", data=cv2.imencode(".jpg", rgb)[1].tobytes())
        msg.header.stamp = drv.node.get_clock().now().to_msg()
        pub.publish(msg)
        drv.send_pair()
        drv.spin(0.03)
        if node.stats.steps >= 2:
            break
    assert node.stats.steps >= 2 and node.last_record is not None
    assert node.last_record.encode_ms >= 80.0 and node.last_record.total_ms >= 80.0


def test_a_step_whose_images_the_clock_went_back_past_publishes_nothing(executor, tiny_checkpoint):
    """use_sim_time, a simulator reset while a step runs: /clock goes from 1000 s back to 10 s. The step's images,
    stamped 1000 s, are 990 s ahead of the clock when it ends, as a new step would refuse them; the late check
    looked at their age only, and the action on the pre-reset scene went out (obs_age_ms -990 000)."""
    from fixtures import HeldStep, SimTimeSource
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from std_msgs.msg import Float32MultiArray

    node = policy_node(executor, tiny_checkpoint, use_sim_time=True, enabled=True, max_image_age_s=5.0)
    sim = SimTimeSource(executor)
    actions: list = []
    sim.node.create_subscription(Float32MultiArray, "action", actions.append, 100)
    try:
        assert sim.run_until(lambda: node.get_clock().now().nanoseconds >= 999 * 10**9, 5.0)
        assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
        assert sim.run_until(lambda: len(actions) >= 1)
        held = HeldStep(node, timeout=20.0)
        node.stack.controller.step = held
        assert sim.run_until(held.started.is_set)
        n_actions, skipped = len(actions), node.stats.skipped["late_action"]
        sim.advance(10.0 - sim.now_ns * 1e-9)  # the reset
        assert sim.run_until(lambda: node.get_clock().now().nanoseconds < 11 * 10**9, 5.0, step_s=0.0, send=False)
        held.release.set()
        assert sim.run_until(lambda: node.stats.skipped["late_action"] > skipped, 10.0, step_s=0.0, send=False)
        sim.run_until(lambda: False, 0.2, step_s=0.0, send=False)
        assert node.stats.skipped["late_action"] == skipped + 1
        assert "ahead of the node clock" in node.stats.skip_details["late_action"]
        assert len(actions) == n_actions
    finally:
        sim.node.destroy_node()


def test_hold_max_s_is_the_clocks_seconds_in_a_fast_simulator(executor, tiny_checkpoint):
    """use_sim_time at 10x real time, hold_rate_hz 50, hold_max_s 0.15: the hold was timed on the monotonic
    clock, so the last twist was re-sent for 1.5 s of sim time (15 control periods, the robot moving on a
    command the policy no longer stood behind). It is timed on the clock that stamps the twists."""
    from fixtures import SimTimeSource
    from geometry_msgs.msg import TwistStamped
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = policy_node(executor, tiny_checkpoint, use_sim_time=True, enabled=True, hold_rate_hz=50.0,
                       hold_max_s=0.15, max_image_age_s=5.0)
    sim = SimTimeSource(executor)
    twists: list = []
    sim.node.create_subscription(TwistStamped, "cmd_twist", twists.append, 1000)
    try:
        assert sim.run_until(lambda: node.get_clock().now().nanoseconds >= 999 * 10**9, 5.0)
        assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
        assert sim.run_until(lambda: node.stats.actions_published >= 1)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:  # no more images: only the hold sends; 0.1 s of sim time per 10 ms
            sim.advance(0.1)
            tick_end = time.monotonic() + 0.01
            while time.monotonic() < tick_end:
                executor.spin_once(timeout_sec=0.005)
        assert node.stats.hold_published >= 1

        def value(t: TwistStamped) -> tuple:
            return (t.twist.linear.x, t.twist.linear.y, t.twist.linear.z, t.twist.angular.x, t.twist.angular.z)

        last = [t for t in twists if value(t) == value(twists[-1])]  # the last action and its re-sent copies
        stamps = [t.header.stamp.sec + t.header.stamp.nanosec * 1e-9 for t in last]
        assert len(last) >= 2 and max(stamps) - min(stamps) <= 0.15 + 0.1 + 1e-6, stamps
    finally:
        sim.node.destroy_node()


def test_a_plain_instruction_publisher_draws_no_false_incompatible_qos_warning(executor, tiny_checkpoint, capfd):
    """The node subscribes to the instruction twice (latched and plain, ros.instruction_input); rclpy warned at
    every configure "New publisher discovered on topic 'instruction', offering incompatible QoS. No messages
    will be received from it" about a plain publisher, whose messages do arrive through the other subscription."""
    from std_msgs.msg import String

    plain = Driver(executor).node.create_publisher(String, "instruction", 10)
    node = started_policy_node(executor, tiny_checkpoint)
    end = time.monotonic() + 5.0
    while plain.get_subscription_count() < 1 and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    plain.publish(String(data=INSTRUCTIONS[1]))
    end = time.monotonic() + 5.0
    while node.instruction != INSTRUCTIONS[1] and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    assert node.instruction == INSTRUCTIONS[1]  # heard
    err = capfd.readouterr().err
    # (the publisher's own warning about the latched subscription stays: docs/ros.md says what it means)
    assert "[deer_vla_policy]: New publisher discovered on topic 'instruction'" not in err, err[-2000:]


def test_an_instruction_in_force_that_would_now_be_refused_is_dropped(executor, monkeypatch):
    """A review's: "open" (one word of three tasks' wordings) or a task heard for what the text sets aside, taken
    while unfamiliar_instruction was off, stayed in force when the mode became 'warn', though arriving then it
    would be refused: the re-judgement dropped only unfamiliar texts and those naming no task."""
    from rclpy.parameter import Parameter

    shipped = Path(__file__).resolve().parents[1] / "deer_vla" / "assets" / "default_checkpoint"
    node = started_policy_node(executor, shipped, unfamiliar_instruction="off")
    errors = spy_on_log(node, "error", monkeypatch)
    drv = Driver(executor)
    for text in ("open", "forget the drawer, open the window"):
        assert node.set_parameters([Parameter("unfamiliar_instruction", value="off")])[0].successful
        drv.instruct(text)
        assert drv.drive_until(lambda: node.instruction == text)  # noqa: B023
        assert node.set_parameters([Parameter("unfamiliar_instruction", value="warn")])[0].successful
        assert node.instruction is None, text
        assert any(f"instruction in force '{text}' dropped:" in m for m, _ in errors), errors


def test_a_correction_heard_as_what_it_takes_back_drops_the_instruction_in_force(executor, monkeypatch):
    """A soak's: "open the drawer" in force, then "open the drawer, I mean the window" was refused and the drawer
    kept opening (508 non-zero twists in 17 s): the previous instruction was kept. Refused now with it dropped."""
    shipped = Path(__file__).resolve().parents[1] / "deer_vla" / "assets" / "default_checkpoint"
    node = started_policy_node(executor, shipped)
    errors = spy_on_log(node, "error", monkeypatch)
    drv = Driver(executor)
    for text in ("open the drawer, I mean the window", "forget the drawer, open the window", "push-wall", "open"):
        drv.instruct("open the drawer")
        assert drv.drive_until(lambda: node.instruction == "open the drawer")
        drv.instruct(text)
        assert drv.drive_until(lambda: node.instruction is None), text
        assert any(m.startswith(f"instruction '{text}' refused: it ") and "the previous instruction is dropped" in m
                   for m, _ in errors), (text, errors[-1:])
