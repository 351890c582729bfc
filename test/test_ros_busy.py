"""Policy node under pressure: inference off the executor, halt during a step, future stamps, parameter types,
run-time hold rate, observation age, torch threads (issue 15: defects 5 and 7, inference off the executor)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from fixtures import Driver, started_policy_node

pytestmark = pytest.mark.ros



def _set(node, name, value) -> bool:
    from rclpy.parameter import Parameter

    return node.set_parameters([Parameter(name, value=value)])[0].successful


def _slow_steps(node, seconds: float) -> threading.Event:
    """Make every model step take ``seconds`` more, spent in Python (holding the GIL as a model's Python does)."""
    real = node.stack.controller.step
    started = threading.Event()

    def step(obs, **kwargs):
        started.set()
        out = real(obs, **kwargs)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            sum(range(200))
        return out

    node.stack.controller.step = step
    return started


# -- inference off the executor ------------------------------------------------------------------------------

def test_halt_answers_while_a_step_runs_and_that_step_publishes_nothing(executor, tiny_checkpoint):
    from std_srvs.srv import Trigger

    node = started_policy_node(executor, tiny_checkpoint, enabled=True)
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: len(drv.actions) >= 1)
    started = _slow_steps(node, 0.8)
    halt = drv.node.create_client(Trigger, "/deer_vla_policy/halt")
    assert halt.wait_for_service(timeout_sec=5.0)
    drv.spin(0.9)  # let any step in flight finish
    started.clear()
    drv.send_pair()
    deadline = time.monotonic() + 5.0
    while not started.is_set() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.005)
    assert started.is_set()
    n_actions, n_twists = len(drv.actions), len(drv.twists)
    t0 = time.perf_counter()
    future = halt.call_async(Trigger.Request())
    while not future.done() and time.perf_counter() - t0 < 5.0:
        executor.spin_once(timeout_sec=0.001)
    response_s = time.perf_counter() - t0
    assert future.done() and future.result().success
    assert node._worker.busy.is_set()  # answered while the step was still running ...
    assert response_s < 0.3  # ... not after it (0.8 s); the bench measures the real figure
    drv.spin(1.2)  # the step finishes
    assert not node._worker.busy.is_set() and node.stats.discarded >= 1
    assert len(drv.actions) == n_actions  # its action was never published
    zero = drv.twists[n_twists:]  # only halt's zero twist went out
    assert len(zero) == 1 and zero[0].twist.linear.x == 0.0 and zero[0].twist.angular.z == 0.0


def test_closing_the_gate_sends_one_zero_twist_as_halt_does(executor, tiny_checkpoint):
    """`~/enable false` / `enabled:=false` at run time used to publish nothing, leaving a controller without a
    command timeout at the last velocity; halt and deactivate sent a zero twist. Closing an open gate sends one,
    closing a closed one sends none, halt always sends one."""
    from std_srvs.srv import SetBool

    node = started_policy_node(executor, tiny_checkpoint, enabled=True)
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: len(drv.twists) >= 1)
    assert drv.settle(node)
    enable = drv.node.create_client(SetBool, "/deer_vla_policy/enable")
    assert enable.wait_for_service(timeout_sec=5.0)
    for closing in (True, False):  # open -> closed: one zero twist; closed -> closed: none
        n = len(drv.twists)
        future = enable.call_async(SetBool.Request(data=False))
        deadline = time.monotonic() + 5.0
        while not future.done() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.01)
        assert future.done() and future.result().success and not node.enabled
        drv.spin(0.3)
        sent = drv.twists[n:]
        assert len(sent) == (1 if closing else 0), (closing, sent)
        if closing:
            assert sent[0].twist.linear.x == sent[0].twist.linear.y == sent[0].twist.angular.z == 0.0
    assert _set(node, "enabled", True)
    n = len(drv.twists)
    assert _set(node, "enabled", False)  # `ros2 param set` takes the same path
    drv.spin(0.3)
    assert len(drv.twists) == n + 1
    node.halt()  # halt: a zero twist even with the gate already closed
    drv.spin(0.3)
    assert len(drv.twists) == n + 2


def test_frames_arriving_during_a_step_keep_only_the_newest(executor, tiny_checkpoint):
    node = started_policy_node(executor, tiny_checkpoint)
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: node.stats.steps >= 1)
    _slow_steps(node, 0.3)
    steps = node.stats.steps
    for _ in range(8):  # 8 image sets within ~0.4 s: one runs, the rest replace each other in the slot
        drv.send_pair()
        drv.spin(0.05)
    drv.spin(1.2)
    assert node.stats.dropped >= 4
    assert node.stats.steps - steps <= 3  # never a backlog of 8 steps


def test_hold_rate_changed_at_run_time_takes_effect_now(executor, tiny_checkpoint):
    node = started_policy_node(executor, tiny_checkpoint, enabled=True, hold_max_s=5.0)  # hold off (0 Hz)
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: len(drv.twists) >= 1)
    drv.spin(0.3)
    assert node.stats.hold_published == 0
    assert _set(node, "hold_rate_hz", 50.0)
    drv.spin(0.5)
    assert node.stats.hold_published >= 10  # without deactivate/activate
    assert _set(node, "hold_rate_hz", 0.0)
    drv.spin(0.1)
    held = node.stats.hold_published
    drv.spin(0.3)
    assert node.stats.hold_published == held


# -- defect 5: future stamps ---------------------------------------------------------------------------------

def test_images_stamped_in_the_future_are_not_fresh(executor, tiny_checkpoint):
    from rclpy.duration import Duration

    from deer_vla.ros.image_conv import rgb_to_image_msg

    node = started_policy_node(executor, tiny_checkpoint, enabled=True)
    drv = Driver(executor)
    drv.instruct()
    rng = np.random.default_rng(0)

    def future_image():
        stamp = (drv.node.get_clock().now() + Duration(seconds=3600)).to_msg()
        return rgb_to_image_msg(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), stamp)

    from std_msgs.msg import Float32MultiArray

    for _ in range(6):
        drv.proprio_pub.publish(Float32MultiArray(data=[0.0] * drv.proprio_dim))
        for pub in reversed(drv.image_pubs):
            pub.publish(future_image())
        drv.spin(0.1)
    assert node.stats.future_stamps >= 3 and node.stats.steps == 0 and not drv.actions
    assert drv.drive_until(lambda: len(drv.actions) >= 1)  # correctly stamped images still step


def test_future_tolerance_is_validated(executor, tiny_checkpoint):
    node = started_policy_node(executor, tiny_checkpoint)
    assert not _set(node, "max_image_future_s", -1.0)
    assert not _set(node, "max_image_future_s", 0.0)
    assert not _set(node, "max_image_future_s", "0.2")
    assert _set(node, "max_image_future_s", 0.02) and node.params.max_image_future_s == 0.02


# -- defect 7: parameter types and values --------------------------------------------------------------------

def test_bools_and_numeric_strings_are_not_numbers(executor, tiny_checkpoint):
    from rclpy.parameter import Parameter

    node = started_policy_node(executor, tiny_checkpoint)
    for name, value in [("budget.average_gflops", True), ("budget.average_gflops", "1.5"),
                        ("budget.memory_bytes", "1000000000"), ("rate_hz", "10"), ("enabled", 1),
                        ("enabled", "true"), ("torch_threads", True), ("torch_threads", -1)]:
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful, (name, value)
        assert name in result.reason
    assert node.get_parameter("budget.average_gflops").value == 0.0  # nothing stored
    assert _set(node, "budget.average_gflops", 1)  # an integer is a number: YAML `1`


def test_a_huge_memory_budget_means_no_cap(executor, tiny_checkpoint):
    node = started_policy_node(executor, tiny_checkpoint)
    assert _set(node, "budget.memory_bytes", 2**63 - 1)
    assert node.params.budget_memory_bytes == 2**63 - 1
    from deer_vla.ros.policy_backend import check_budget, make_budget

    budget = make_budget(node.params.budget_kwargs())
    assert check_budget(node.stack.profile, budget, 0) == node.stack.profile.num_exits  # every exit fits


def test_garbage_config_json_names_the_file(tiny_checkpoint, tmp_path, capsys):
    import shutil

    from deer_vla.model.checkpoint import CheckpointError, read_config
    from deer_vla.ros.replay import cli_main

    bad = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, bad)
    (bad / "config.json").write_bytes(b"\xff\xfe\x00\x80 garbage \xc3")
    with pytest.raises(CheckpointError, match=r"ckpt/config\.json"):
        read_config(bad)
    assert cli_main([str(tmp_path / "none.mcap"), "--checkpoint", str(bad)]) == 2
    assert "ckpt/config.json" in capsys.readouterr().err


# -- observation age, torch threads --------------------------------------------------------------------------

def test_every_step_record_has_its_observation_age_and_the_monitor_warns(executor, tiny_checkpoint, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.parameter import Parameter

    from deer_vla.core import StepRecord
    from deer_vla.ros.monitor_node import MonitorNode

    started_policy_node(executor, tiny_checkpoint, enabled=True)
    monitor = MonitorNode(parameter_overrides=[
        Parameter("log_dir", value=str(tmp_path)), Parameter("run_name", value="t"),
        Parameter("diagnostics_rate_hz", value=20.0), Parameter("obs_age_warn_ms", value=200.0),
        Parameter("write_plot", value=False),
    ])
    executor.add_node(monitor)
    drv = Driver(executor)
    diags: list[DiagnosticArray] = []
    drv.node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    drv.instruct()
    assert drv.drive_until(lambda: monitor.stats.count >= 3, age_s=0.3)  # frames 300 ms old, still fresh
    ages = [StepRecord.from_json(r.data).obs_age_ms for r in drv.records]
    assert all(a is not None and 300.0 <= a < 2000.0 for a in ages), ages
    diags.clear()
    assert drv.drive_until(lambda: any(
        s.name == "deer_vla: observation_age" and s.level[0] == 1 for d in diags for s in d.status), timeout=5.0)
    summary = monitor.close()
    assert 300.0 <= summary["obs_age_p50_ms"] <= summary["obs_age_p95_ms"] < 2000.0


def test_torch_threads_is_applied_at_configure(executor, tiny_checkpoint):
    import torch
    from rclpy.lifecycle import TransitionCallbackReturn as R

    before = torch.get_num_threads()
    try:
        node = started_policy_node(executor, tiny_checkpoint, torch_threads=2)
        assert torch.get_num_threads() == 2
        # 0 is torch's default (the count the process had), also after a configuration that set another
        assert node.trigger_deactivate() == R.SUCCESS and node.trigger_cleanup() == R.SUCCESS
        assert _set(node, "torch_threads", 0) and node.trigger_configure() == R.SUCCESS
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


def test_a_time_budget_is_timed_with_the_thread_count_the_steps_run_with(executor, tiny_checkpoint, monkeypatch):
    """Configure timed the steps of a time budget (peak_ms: 50 whole steps) before it applied torch_threads: with
    the count the previous configure left (an audit: 8 threads timed for a node set to 1; after torch_threads
    1024, a 383 s configure). A failed configure leaves the count it found."""
    import torch
    from rclpy.lifecycle import TransitionCallbackReturn as R

    from deer_vla.model.runner import PolicyRunner

    timed_with: list[int] = []
    real = PolicyRunner.time_here

    def recording(self, *args, **kwargs):
        timed_with.append(torch.get_num_threads())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PolicyRunner, "time_here", recording)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        node = started_policy_node(executor, tiny_checkpoint, torch_threads=2, **{"budget.peak_ms": 10_000.0})
        assert timed_with == [2] and torch.get_num_threads() == 2
        assert node.trigger_deactivate() == R.SUCCESS and node.trigger_cleanup() == R.SUCCESS
        assert _set(node, "torch_threads", 1) and _set(node, "checkpoint_dir", "/nonexistent/checkpoint")
        assert node.trigger_configure() == R.FAILURE and torch.get_num_threads() == 2  # as it found it
        assert _set(node, "checkpoint_dir", str(tiny_checkpoint)) and node.trigger_configure() == R.SUCCESS
        assert timed_with == [2, 1] and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_by_default_a_free_running_camera_is_stepped_at_the_policys_rate(executor, tiny_checkpoint):
    """Event mode, the default until 2026-12-05, stepped on every complete image set: on 40 Hz cameras a 10 Hz
    policy ran ~40 steps a second. The default (timer mode) steps at rate_hz whatever the cameras' rate; the sim
    graph, a lock-step source, asks for event mode itself."""
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    from deer_vla.ros.graph import load_graph
    from deer_vla.ros.policy_node import PolicyNode

    node = PolicyNode(parameter_overrides=[Parameter("checkpoint_dir", value=str(tiny_checkpoint)),
                                           Parameter("rate_hz", value=10.0)])
    executor.add_node(node)
    assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: node.stats.steps >= 1)
    steps, t0 = node.stats.steps, time.monotonic()
    while time.monotonic() - t0 < 2.0:  # image pairs at ~40 Hz for 2 s
        drv.send_pair()
        drv.spin(0.025)
    ran = node.stats.steps - steps
    assert 12 <= ran <= 24, ran  # ~20 at 10 Hz; event mode ran ~80
    assert load_graph("sim").node("policy").file_parameters()["control_mode"] == "event"
    assert load_graph("robot").node("policy").file_parameters()["control_mode"] == "timer"
