"""Monitor node settings that must reach its statistics (error_ratio, metric, window, the diagnostics rate, the
record subscription's QoS), the observation-age percentile, and the policy's below-rate rule."""
from __future__ import annotations

from dataclasses import replace

import pytest

pytestmark = pytest.mark.ros


def _monitor(tmp_path, **values):
    from rclpy.parameter import Parameter

    from deer_vla.ros.monitor_node import MonitorNode

    values = {"log_dir": str(tmp_path), "run_name": "r", "write_plot": False, **values}
    return MonitorNode(parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])


def _record(step: int, **fields):
    from std_msgs.msg import String

    from deer_vla.core import StepRecord

    values = {"episode": 0, "exit_used": 1, "max_exit": 2, "stop_reason": "threshold", "llm_gflops": 0.5,
              "total_gflops": 0.7, "total_ms": 2.0, "stamp_ns": 1_000 + step, **fields}
    return String(data=StepRecord(step=step, **values).to_json())


def _statuses(node) -> dict[str, object]:
    return {s.name.removeprefix("deer_vla: budget ").removeprefix("deer_vla: "): s for s in node.diagnostics().status}


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_the_record_subscription_is_reliable_and_deep_enough_for_a_burst(executor, tmp_path, spin_until):
    """The policy publishes its records reliably with depth 100; a best-effort or depth-1 subscription lost
    every record that arrived while the monitor's executor was busy (the JSONL and the budget statistics then
    miss steps). A burst of 100 sent before the monitor spins arrives whole."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    node = _monitor(tmp_path)
    executor.add_node(node)
    (sub,) = [s for s in node.subscriptions if s.topic_name == "/step_record"]
    assert sub.qos_profile.reliability == ReliabilityPolicy.RELIABLE and sub.qos_profile.depth >= 100
    sender = rclpy.create_node("record_burst")
    executor.add_node(sender)
    pub = sender.create_publisher(String, "step_record", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    assert spin_until(executor, lambda: pub.get_subscription_count() == 1)
    for step in range(100):  # no spinning in between: they wait in the subscription's queue
        pub.publish(_record(step))
    assert spin_until(executor, lambda: node.stats.count == 100, timeout=5.0), node.stats.count
    assert node._log_writer.drain(5.0)  # written from the logs' own thread
    assert len(node.jsonl_path.read_text().splitlines()) == 100


def test_error_ratio_decides_between_warn_and_error(ros_context, tmp_path):
    """error_ratio 3: an average twice the budget is over it (WARN), not far over it (ERROR). The parameter was
    read and the monitor judged with its own constant 1.5 anyway."""
    node = _monitor(tmp_path, error_ratio=3.0)
    try:
        node._on_record(_record(0, budget_average_gflops=0.25))  # llm_gflops 0.5: 2x the budget
        assert _statuses(node)["average_gflops"].level == bytes([1])
        node._on_record(_record(1, llm_gflops=2.0, budget_average_gflops=0.25))  # mean 1.25: 5x
        assert _statuses(node)["average_gflops"].level == bytes([2])
    finally:
        node.destroy_node()


def test_the_metric_parameter_chooses_the_cost_reported_and_judged(ros_context, tmp_path):
    """metric total_gflops: the summary and the running statistics showed llm_gflops whatever was set, and a
    budget that names no metric of its own was judged on the wrong cost."""
    node = _monitor(tmp_path, metric="total_gflops")
    try:
        for step in range(3):  # llm 0.5, total 0.7, against an average budget of 0.6 (no budget_metric: ours)
            node._on_record(_record(step, budget_average_gflops=0.6))
        statuses = _statuses(node)
        assert _values(statuses["steps"])["mean_total_gflops"] == "0.7"
        assert statuses["average_gflops"].level == bytes([1]) and "mean total_gflops" in \
            statuses["average_gflops"].message
        summary = node.close()
        assert summary["mean_total_gflops"] == pytest.approx(0.7) and "mean_llm_gflops" not in summary
    finally:
        node.destroy_node()


def test_the_window_parameter_bounds_the_running_statistics(ros_context, tmp_path):
    """window 5: the running mean and the budget verdict are over the last 5 records. Ignored, the whole run
    counted: an early expensive stretch kept the status at ERROR long after the policy settled under budget."""
    node = _monitor(tmp_path, window=5)
    try:
        for step in range(10):  # five at 1.0 GFLOPs, then five at 0.2, all under an average budget of 0.3
            node._on_record(_record(step, llm_gflops=1.0 if step < 5 else 0.2, budget_average_gflops=0.3))
        statuses = _statuses(node)
        assert _values(statuses["steps"])["mean_llm_gflops"] == "0.2"
        assert statuses["average_gflops"].level == bytes([0]), statuses["average_gflops"].message
        assert node.stats.window == 5 and node.stats.mean_cost() == pytest.approx(0.2)
        assert node.close()["mean_llm_gflops"] == pytest.approx(0.6)  # the summary stays the whole run's
    finally:
        node.destroy_node()


def test_with_a_window_the_worst_status_is_judged_on_the_whole_run(ros_context, tmp_path):
    """window 10: 90 steps at twice the average budget, then 10 under it, reported `final_status OK` and
    `worst_status OK` beside a whole-run mean of 1.85 (the window's status had been ERROR for 80 ticks)."""
    node = _monitor(tmp_path, window=10)
    try:
        for step in range(100):
            node._on_record(_record(step, llm_gflops=2.0 if step < 90 else 0.5, budget_average_gflops=1.0,
                                    total_ms=50.0 if step < 90 else 2.0, budget_peak_ms=10.0))
        assert _statuses(node)["average_gflops"].level == bytes([0])  # the live status is the window's
        summary = node.close()
        assert summary["mean_llm_gflops"] == pytest.approx(1.85)
        assert (summary["final_status"], summary["worst_status"]) == ("OK", "ERROR")
    finally:
        node.destroy_node()


def test_the_diagnostics_rate_sets_the_status_timer(executor, tmp_path, spin_until):
    """diagnostics_rate_hz 10: the status went out once a second whatever the rate asked."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray

    node = _monitor(tmp_path, diagnostics_rate_hz=10.0)
    executor.add_node(node)
    assert [t.timer_period_ns for t in node.timers] == [100_000_000]
    listener = rclpy.create_node("diagnostics_listener")
    executor.add_node(listener)
    got: list[DiagnosticArray] = []
    listener.create_subscription(DiagnosticArray, "/diagnostics", lambda arr: got.extend(
        [arr] if any(s.name.startswith("deer_vla: ") for s in arr.status) else []), 10)
    assert spin_until(executor, lambda: len(got) >= 1)
    first = len(got)
    assert spin_until(executor, lambda: len(got) >= first + 5, timeout=2.0), "under 5 statuses in 2 s at 10 Hz"


def test_the_observation_age_warning_is_judged_on_the_95th_percentile():
    """90 actions on 10 ms old images and 10 on 500 ms old ones (a camera that stalls one step in ten): the p95
    age is 500 ms, over the 250 ms warning. Judged on the median (10 ms), it stayed OK."""
    from deer_vla.core import StepRecord
    from deer_vla.ros.budget_monitor import OK, WARN, BudgetMonitor

    monitor = BudgetMonitor(obs_age_warn_ms=250.0)
    for step in range(100):
        monitor.update(StepRecord(step=step, episode=0, exit_used=1, max_exit=2, stop_reason="threshold",
                                  llm_gflops=0.5, total_gflops=0.7, total_ms=2.0,
                                  obs_age_ms=500.0 if step % 10 == 9 else 10.0))
    (age,) = [s for s in monitor.statuses() if s.name == "observation_age"]
    assert age.level == WARN and "500.0 ms above 250 ms" in age.message
    assert age.values["p50_ms"] == "10.00" and age.values["p95_ms"] == "500.00"
    monitor = BudgetMonitor(obs_age_warn_ms=600.0)  # the same ages under a 600 ms warning: OK
    monitor.update(StepRecord(step=0, episode=0, exit_used=1, max_exit=2, stop_reason="threshold", llm_gflops=0.5,
                              total_gflops=0.7, obs_age_ms=500.0))
    assert [s.level for s in monitor.statuses() if s.name == "observation_age"] == [OK]


def test_timer_mode_under_half_the_rate_warns_and_over_half_does_not():
    """BELOW_RATE_FRACTION is half: 4 of 10 expected steps in a period is a WARN (a twist held twice as long
    as the policy meant moves the arm twice as far); 6 of 10 is OK. A quarter let 4 of 10 pass as OK."""
    from deer_vla.ros.budget_monitor import OK, WARN
    from deer_vla.ros.health import HealthSnapshot, InputAge, policy_status

    base = HealthSnapshot(
        active=True, enabled=True, window_s=1.0, instruction_topic="instruction", has_instruction=True,
        steps=0, actions_published=0, skipped={}, skip_details={},
        cameras={"static": InputAge("cam/static", 0.05, 0.04), "wrist": InputAge("cam/wrist", 0.05, 0.04)},
        last_step_age_s=0.05, last_action_age_s=0.05, active_for_s=20.0, expected_period_steps=10.0,
    )
    slow = policy_status(replace(base, steps=4, actions_published=4), base)
    assert slow.level == WARN and "stepping below the control rate: 4 of 10 step(s)" in slow.message
    assert policy_status(replace(base, steps=6, actions_published=6), base).level == OK


def test_the_status_that_waits_for_records_is_the_one_that_reports_them():
    """Before the first record the monitor published a 'records' WARN, then never again: a listener's cache kept
    the WARN for good and diagnostic_aggregator showed it stale. The same 'steps' status turns OK."""
    from deer_vla.core import StepRecord
    from deer_vla.ros.budget_monitor import OK, WARN, BudgetMonitor

    monitor = BudgetMonitor()
    (waiting,) = monitor.statuses()
    assert (waiting.name, waiting.level, waiting.message) == ("steps", WARN, "no step records received yet")
    monitor.update(StepRecord(step=0, episode=0, exit_used=1, max_exit=2, stop_reason="threshold", llm_gflops=0.5,
                              total_gflops=0.7, total_ms=2.0))
    (steps,) = [s for s in monitor.statuses() if s.name == "steps"]
    assert steps.level == OK and steps.values["count"] == "1"


def test_the_status_timer_runs_on_the_steady_clock(ros_context, tmp_path):
    """On the node clock a system clock stepped back 60 s stopped the monitor's statuses, and the steps_stale_s
    warning they carry, for 60 s (an audit); under use_sim_time a simulator that died (no /clock) silenced them
    for good, and a run-time change of use_sim_time left the timer on the clock it started with (a review)."""
    from rclpy.clock import ClockType

    node = _monitor(tmp_path)
    sim = _monitor(tmp_path / "sim", use_sim_time=True)
    try:
        assert [t.clock.clock_type for t in node.timers] == [ClockType.STEADY_TIME]
        assert [t.clock.clock_type for t in sim.timers] == [ClockType.STEADY_TIME]
    finally:
        node.destroy_node()
        sim.destroy_node()
