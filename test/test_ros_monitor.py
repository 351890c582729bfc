"""Monitor node with the real policy node: /diagnostics levels, JSONL + MCAP logs, summary and plot."""
from __future__ import annotations

import json

import pytest
from fixtures import Driver

pytestmark = pytest.mark.ros


def _graph(executor, checkpoint, log_dir, **policy_params):
    from rclpy.parameter import Parameter

    from deer_vla.ros.monitor_node import MonitorNode
    from deer_vla.ros.policy_node import PolicyNode

    params = {"checkpoint_dir": str(checkpoint), "control_mode": "event", **policy_params}
    policy = PolicyNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    monitor = MonitorNode(parameter_overrides=[
        Parameter("log_dir", value=str(log_dir)), Parameter("run_name", value="t"),
        Parameter("diagnostics_rate_hz", value=20.0),
    ])
    for node in (policy, monitor):
        executor.add_node(node)
    policy.trigger_configure()
    policy.trigger_activate()
    return policy, monitor


def _levels(diag) -> dict[str, int]:
    return {s.name.removeprefix("deer_vla: budget ").removeprefix("deer_vla: "): s.level[0] for s in diag.status}


def test_diagnostics_warn_when_a_budget_is_exceeded(executor, tiny_checkpoint, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.parameter import Parameter

    policy, monitor = _graph(executor, tiny_checkpoint, tmp_path)
    drv = Driver(executor)
    diags: list[DiagnosticArray] = []  # the monitor's (the policy node publishes its own status there too)
    drv.node.create_subscription(DiagnosticArray, "/diagnostics", lambda arr: diags.extend(
        [arr] if any(s.name.startswith("deer_vla: ") for s in arr.status) else []), 10)
    drv.instruct()
    assert drv.drive_until(lambda: monitor.stats.count >= 3 and len(diags) >= 1)
    drv.spin(0.15)
    levels = _levels(diags[-1])
    assert levels["average_gflops"] == 0 and levels["peak_gflops"] == 0  # no budgets set: OK
    full = policy.stack.profile.cost(policy.stack.profile.num_exits)
    # thresholds 0 -> every step runs the deepest exit; an average budget 20% below that is exceeded
    assert policy.set_parameters([Parameter("budget.average_gflops", value=full / 1.2)])[0].successful
    n = monitor.stats.count
    assert drv.drive_until(lambda: monitor.stats.count >= n + 3)
    diags.clear()
    assert drv.drive_until(lambda: any(_levels(d).get("average_gflops") == 1 for d in diags), timeout=5.0)
    warn = next(s for s in diags[-1].status if s.name == "deer_vla: budget average_gflops")
    assert "over budget" in warn.message and warn.hardware_id
    assert float({kv.key: kv.value for kv in warn.values}["budget"]) == pytest.approx(full / 1.2, rel=1e-3)
    # 2x over the budget is an ERROR (error_ratio 1.5)
    assert policy.set_parameters([Parameter("budget.average_gflops", value=full / 2.0)])[0].successful
    n = monitor.stats.count
    assert drv.drive_until(lambda: monitor.stats.count >= n + 2)
    diags.clear()
    assert drv.drive_until(lambda: any(_levels(d).get("average_gflops") == 2 for d in diags), timeout=5.0)


def test_logs_read_back_with_every_record(executor, tiny_checkpoint, tmp_path):
    from deer_vla.core import StepRecord
    from deer_vla.data.mcap_io import read_messages
    from deer_vla.ros.monitor_node import METRICS_TOPIC_MCAP, RECORD_TOPIC_MCAP

    policy, monitor = _graph(executor, tiny_checkpoint, tmp_path)
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: monitor.stats.count >= 6)
    policy.trigger_deactivate()
    drv.spin(0.3)  # let in-flight records arrive
    count = monitor.stats.count
    assert count == policy.stats.steps == len(drv.records)
    summary = monitor.close()
    assert summary["steps"] == count
    records = [StepRecord.from_json(m.message.data) for m in read_messages(monitor.mcap_path, [RECORD_TOPIC_MCAP])]
    assert len(records) == count
    assert [r.step for r in records] == sorted(r.step for r in records)
    metrics = list(read_messages(monitor.mcap_path, [METRICS_TOPIC_MCAP]))
    assert len(metrics) == count and metrics[0].datatype == "std_msgs/msg/Float64MultiArray"
    lines = monitor.jsonl_path.read_text().splitlines()
    assert [StepRecord.from_json(line) for line in lines] == records
    assert monitor.plot_path.read_bytes()[:4] == b"\x89PNG"
    assert json.loads(monitor.summary_path.read_text())["mcap"] == str(monitor.mcap_path)
    assert summary["mean_exit"] == pytest.approx(sum(r.exit_used for r in records) / count)


def test_monitor_survives_garbage_records(executor, tmp_path):
    import time

    import rclpy
    from rclpy.parameter import Parameter
    from std_msgs.msg import String

    from deer_vla.ros.monitor_node import MonitorNode

    monitor = MonitorNode(parameter_overrides=[Parameter("log_dir", value=str(tmp_path))])
    sender = rclpy.create_node("garbage_sender")
    executor.add_node(monitor)
    executor.add_node(sender)
    pub = sender.create_publisher(String, "step_record", 10)

    def sent() -> bool:
        pub.publish(String(data="{not json"))
        executor.spin_once(timeout_sec=0.05)
        return monitor.bad_records >= 1

    end = time.monotonic() + 5
    while not sent() and time.monotonic() < end:
        pass
    assert monitor.bad_records >= 1 and monitor.stats.count == 0


def test_monitor_keeps_a_bounded_plot_history(ros_context, tmp_path) -> None:
    """A long run must not grow the monitor: the plot keeps the last PLOT_MAX_RECORDS steps, the logs all."""
    from rclpy.parameter import Parameter
    from std_msgs.msg import String

    from deer_vla.core import StepRecord
    from deer_vla.ros import monitor_node
    from deer_vla.ros.monitor_node import MonitorNode

    node = MonitorNode(parameter_overrides=[Parameter("log_dir", value=str(tmp_path)),
                                            Parameter("write_plot", value=False)])
    try:
        assert node.records.maxlen == monitor_node.PLOT_MAX_RECORDS
        record = StepRecord(step=0, episode=0, exit_used=1, max_exit=2, stop_reason="threshold", llm_gflops=0.1,
                            total_gflops=0.2, total_ms=1.0)
        node.records = type(node.records)(maxlen=5)  # the same container with a small bound, to test quickly
        for step in range(12):
            record.step = step  # distinct steps: a repeated record is a duplicate
            node._on_record(String(data=record.to_json()))
            assert node._log_writer.drain(5.0)  # the logs are written on their own thread
        assert len(node.records) == 5
        # the history holds what the plot draws, not whole records (68 MiB for 20 000 records measured)
        assert node.records[-1] == (0, 1, 2, 0.1, None) and not isinstance(node.records[-1], StepRecord)
        node.close()
        lines = (node.log_dir / "steps.jsonl").read_text().splitlines()
        assert len(lines) == 12  # every step is still logged
    finally:
        node.destroy_node()


def _monitor(tmp_path, **values):
    from rclpy.parameter import Parameter

    from deer_vla.ros.monitor_node import MonitorNode

    values = {"log_dir": str(tmp_path), "run_name": "r", "write_plot": False, **values}
    return MonitorNode(parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])


def _record_json(step: int, stamp_ns: int = 0, **fields) -> str:
    from deer_vla.core import StepRecord

    return StepRecord(step=step, episode=0, exit_used=1, max_exit=2, stop_reason="threshold", llm_gflops=0.5,
                      total_gflops=0.7, total_ms=2.0, stamp_ns=stamp_ns, **fields).to_json()


def test_monitor_refuses_hostile_records_and_logs_one_line_per_record(ros_context, tmp_path):
    """NaN, wrong types, oversized or nested JSON and duplicates are counted and dropped; the statistics stay
    finite, the timer's diagnostics still build, and the JSONL keeps one parseable line per accepted record."""
    import math

    from std_msgs.msg import String

    from deer_vla.core import StepRecord
    from deer_vla.data.mcap_io import read_messages
    from deer_vla.ros.monitor_node import RECORD_TOPIC_MCAP

    node = _monitor(tmp_path)
    try:
        hostile = [
            _record_json(9).replace('"llm_gflops":0.5', '"llm_gflops":NaN'),
            _record_json(9).replace('"exit_used":1', '"exit_used":"one"'),
            _record_json(9).replace('"stamp_ns":0', '"stamp_ns":-1'),
            "[" * 50_000,
            _record_json(9, distances=[0.1] * 20_000),  # valid JSON, but 200 KB: refused unparsed
            # 2 KB, parsed: a nested list where only a guarantee's terms are read killed the monitor (RecursionError
            # writing it back) and the demo whose executor it shared
            _record_json(9)[:-1] + ',"risk_metric":' + "[" * 500 + "]" * 500 + "}",
        ]
        sent = [_record_json(0, 1_000), json.dumps(json.loads(_record_json(1, 2_000)), indent=2),
                _record_json(1, 2_000),  # the same step again: not counted twice
                _record_json(2, 1_500)]  # stamped before the previous one: kept, counted
        for text in [sent[0], *hostile, *sent[1:]]:
            node._on_record(String(data=text))
            assert node._log_writer.drain(5.0)  # the logs are written on their own thread
        assert node.bad_records == len(hostile) and node.duplicate_records == 1 and node.out_of_order_records == 1
        assert node.stats.count == 3 and math.isfinite(node.stats.mean_cost()) and math.isfinite(node.stats.latency(95))
        assert node.diagnostics().status  # what the timer publishes still builds
        summary = node.close()
        assert summary["steps"] == 3 and summary["bad_records"] == len(hostile) and summary["duplicate_records"] == 1
        lines = node.jsonl_path.read_text().splitlines()
        assert [StepRecord.from_json(line).step for line in lines] == [0, 1, 2]
        assert len(list(read_messages(node.mcap_path, [RECORD_TOPIC_MCAP]))) == 3
    finally:
        node.destroy_node()


def test_a_repeat_of_a_record_counted_before_the_previous_one_is_not_counted_twice(ros_context, tmp_path):
    """Steps 0-9, 11, then 10 and a copy of 11 (reordered behind 10), then 12 twice: 13 records, not 14 (the copy of
    11 was counted and logged twice, pushing the mean over its budget)."""
    from std_msgs.msg import String

    node = _monitor(tmp_path)
    try:
        order = [*range(10), 11, 10, 11, 12, 12]
        for step in order:
            node._on_record(String(data=_record_json(step, 1_000 * (step + 1))))
        assert node._log_writer.drain(5.0)
        assert node.stats.count == 13 and node.duplicate_records == 2 and node.out_of_order_records == 1
        assert len(node.jsonl_path.read_text().splitlines()) == 13
        # the keys held are bounded: past RECENT_RECORDS the oldest goes, and its repeat counts again
        from deer_vla.ros.monitor_node import RECENT_RECORDS

        for step in range(13, RECENT_RECORDS + 20):
            node._on_record(String(data=_record_json(step, 1_000 * (step + 1))))
        assert len(node._recent_keys) == RECENT_RECORDS
        node._on_record(String(data=_record_json(0, 1_000)))  # evicted long ago: a new record to the monitor
        assert node.duplicate_records == 2 and node.stats.count == RECENT_RECORDS + 21
        assert node._log_writer.drain(5.0)
    finally:
        node.destroy_node()


def test_monitor_outlives_records_that_overflow_and_a_fault_in_its_statuses(ros_context, tmp_path, monkeypatch):
    """One record with a 400-digit integer (OverflowError, not a ValueError) ended the monitor process; a
    fault while computing the statuses ended it from its timer and cost the summary at shutdown."""
    from std_msgs.msg import String

    node = _monitor(tmp_path)
    try:
        node._on_record(String(data=_record_json(0, 1_000)))
        assert node._log_writer.drain(5.0)  # the logs are written on their own thread
        for hostile in (_record_json(1, 2_000).replace('"step":1', '"step":' + "9" * 400),
                        _record_json(1, 2_000).replace('"total_ms":2.0', '"total_ms":' + "9" * 400),
                        _record_json(1, 2_000, risk_eps=0.1, risk_delta=0.1, risk_metric="exceed")):
            node._on_record(String(data=hostile))  # must not raise
            assert node._log_writer.drain(5.0)  # the logs are written on their own thread
        assert node.bad_records == 3 and node.stats.count == 1
        assert len(node.jsonl_path.read_text().splitlines()) == 1  # nothing half-applied

        def broken() -> list:
            raise TypeError("unsupported format string passed to NoneType.__format__")

        monkeypatch.setattr(node.stats, "statuses", broken)
        statuses = node.diagnostics().status  # what the timer publishes: one ERROR status instead of a crash
        assert [(s.name, s.level) for s in statuses] == [("deer_vla: monitor", bytes([2])),
                                                          ("deer_vla: records", bytes([1])),  # the 3 refused
                                                          ("deer_vla: logging", bytes([0]))]
        summary = node.close()
        assert summary["steps"] == 1 and summary["worst_status"] == "ERROR" and summary["status_errors"] == 2
        assert json.loads(node.summary_path.read_text())["steps"] == 1
    finally:
        node.destroy_node()


@pytest.mark.parametrize(("override", "match"), [
    ({"diagnostics_rate_hz": float("inf")}, "'diagnostics_rate_hz' must be in"),
    ({"diagnostics_rate_hz": 1e6}, "'diagnostics_rate_hz' must be in"),
    ({"diagnostics_rate_hz": float("nan")}, "'diagnostics_rate_hz' must be in"),
    ({"diagnostics_rate_hz": 1e-12}, "'diagnostics_rate_hz' must be in"),
    ({"window": 2**62}, "'window' must be in 0..1000000"),
    ({"window": -1}, "'window' must be in"),
    ({"error_ratio": float("inf")}, "parameter 'error_ratio' must be a number > 1, got inf"),  # no ERROR, ever
    ({"metric": "gflops"}, "parameter 'metric' must be 'llm_gflops' or 'total_gflops'"),
    ({"run_name": "../escape"}, "'run_name' must be one folder name"),
    ({"run_name": "/tmp/elsewhere"}, "'run_name' must be one folder name"),
    ({"run_name": ".."}, "'run_name' must be one folder name"),
    # "" (bringup --set monitor.log_dir=) is wherever the node was started: the logs landed there unsaid
    ({"log_dir": ""}, "parameter 'log_dir' is empty: give a folder"),
    # a topic name ROS refuses: refused before the run folder exists (it left an orphan folder, open logs)
    ({"record_topic": "~/bad name"}, "'record_topic' = '~/bad name' is not a valid topic name"),
])
def test_monitor_refuses_parameters_that_would_spin_a_core_grow_or_write_elsewhere(ros_context, tmp_path,
                                                                                    override, match):
    with pytest.raises(ValueError, match=match):
        _monitor(tmp_path, **override)
    assert not any(tmp_path.parent.glob("escape")) and not any(tmp_path.iterdir())  # no folder made anywhere


def test_monitor_with_a_reused_run_name_keeps_the_previous_logs(ros_context, tmp_path):
    """A monitor restarted after a crash with the same run_name writes beside the old logs, not over them."""
    old = tmp_path / "r"
    old.mkdir()
    (old / "steps.jsonl").write_text("crashed run\n")
    node = _monitor(tmp_path)
    try:
        assert node.log_dir == tmp_path / "r.1"
        assert (old / "steps.jsonl").read_text() == "crashed run\n"
    finally:
        node.destroy_node()


def test_monitor_keeps_counting_when_its_logs_cannot_be_written(ros_context, tmp_path, monkeypatch):
    """Disk full: the record is still in the statistics, the callback does not raise, and neither a log that
    cannot be closed nor a failing plot costs the summary."""
    import errno

    from std_msgs.msg import String

    from deer_vla.ros import monitor_node

    node = _monitor(tmp_path, write_plot=True)
    try:
        class FullDisk:
            def write(self, text: str) -> int:
                raise OSError(errno.ENOSPC, "No space left on device")

            def flush(self) -> None: ...

            def close(self) -> None: ...

        real, node._jsonl = node._jsonl, FullDisk()
        node._on_record(String(data=_record_json(0)))
        assert node._log_writer.drain(5.0)  # the logs are written on their own thread
        assert node.stats.count == 1 and node.log_errors == 1
        node._jsonl = real
        assert node._mcap.count == 2  # the MCAP log still took the record (and its metrics) the JSONL could not

        def mcap_full(*args: object, **kwargs: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        real_write, node._mcap.write = node._mcap.write, mcap_full
        node._on_record(String(data=_record_json(1)))
        assert node._log_writer.drain(5.0)  # the logs are written on their own thread
        node._mcap.write = real_write
        assert node.stats.count == 2 and node.log_errors == 2
        assert [json.loads(line)["step"] for line in node.jsonl_path.read_text().splitlines()] == [1]  # and back

        def broken_plot(*args: object, **kwargs: object) -> None:
            raise RuntimeError("no display")

        monkeypatch.setattr(monitor_node, "plot_points", broken_plot)
        real_close = node._mcap.close

        def no_footer() -> None:  # the disk fills before the MCAP footer: the file is released, the error raised
            real_close()
            raise OSError(errno.ENOSPC, "No space left on device")

        node._mcap.close = no_footer
        summary = node.close()
        assert summary["log_errors"] == 3 and summary["plot"] is None
        assert json.loads(node.summary_path.read_text())["steps"] == 2
        assert node.close() == summary  # idempotent
    finally:
        node.destroy_node()


def test_a_summary_that_cannot_be_written_still_closes_the_monitor(ros_context, tmp_path, monkeypatch, capsys):
    """Disk full at the very end: writing summary.json raised out of close(), so the summary line was never
    printed and the one-process bringup's stop ended before the policy node was stopped."""
    import errno

    from deer_vla.ros import monitor_node

    node = _monitor(tmp_path)
    try:
        def full(path: object, text: str) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(monitor_node, "atomic_write_text", full)
        summary = node.close()
        monkeypatch.undo()
        assert summary["steps"] == 0 and node.log_errors == 1
        assert "[deer_vla monitor] 0 steps" in capsys.readouterr().err
        assert not node.summary_path.exists()  # no empty or torn summary.json: it is written whole or not at all
    finally:
        node.destroy_node()


def test_monitor_and_sim_take_integers_for_float_parameters_and_name_bad_ones(ros_context, tmp_path):
    """`-p diagnostics_rate_hz:=2` (an integer) raised InvalidParameterTypeException from rclpy; a misspelt
    name was dropped without a word. Both read their parameters once: a later `ros2 param set` is refused, not
    accepted and ignored."""
    from rclpy.parameter import Parameter

    from deer_vla.ros.node_parameters import unknown_overrides
    from deer_vla.ros.sim_node import SimNode

    node = _monitor(tmp_path, diagnostics_rate_hz=2, obs_age_warn_ms=300, lgo_dir="x")
    try:
        assert node.stats.obs_age_warn_ms == 300.0 and isinstance(node.stats.obs_age_warn_ms, float)
        assert unknown_overrides(node) == ["unknown parameter 'lgo_dir' ignored (did you mean 'log_dir'?)"]
        refused = node.set_parameters([Parameter("obs_age_warn_ms", value=50.0)])[0]
        assert not refused.successful and "read-only" in refused.reason
        assert node.get_parameter("obs_age_warn_ms").value == 300
    finally:
        node.destroy_node()
    with pytest.raises(ValueError, match=r"parameter 'window' = 'abc': expected an integer"):
        _monitor(tmp_path, window="abc")
    sim = SimNode(parameter_overrides=[Parameter("rate_hz", value=50), Parameter("action_timeout_s", value=5)])
    try:
        assert sim.p["rate_hz"] == 50.0 and sim.p["action_timeout_s"] == 5.0 and unknown_overrides(sim) == []
        assert not sim.set_parameters([Parameter("rate_hz", value=5.0)])[0].successful
    finally:
        sim.destroy_node()
    with pytest.raises(ValueError, match=r"parameter 'cameras' = 3: expected a list of strings"):
        SimNode(parameter_overrides=[Parameter("cameras", value=3)])
    with pytest.raises(ValueError, match=r"'cameras' is empty"):  # "-p cameras:=[]" arrives as None
        SimNode(parameter_overrides=[Parameter("cameras", value=None)])


def test_monitor_writes_its_summary_before_the_slow_plot(ros_context, tmp_path, monkeypatch):
    """ros2 launch escalates to SIGKILL when shutdown takes too long: the plot (seconds for a long run) must come
    after summary.json, so a kill during it keeps the summary."""
    from std_msgs.msg import String

    from deer_vla.ros import monitor_node

    node = _monitor(tmp_path, write_plot=True)
    seen: list[dict] = []
    monkeypatch.setattr(monitor_node, "plot_points",
                        lambda *a, **k: seen.append(json.loads(node.summary_path.read_text())))
    try:
        node._on_record(String(data=_record_json(0)))
        assert node._log_writer.drain(5.0)  # the logs are written on their own thread
        node._on_record(String(data=_record_json(1)))
        assert node._log_writer.drain(5.0)  # the logs are written on their own thread
        node.close()
        assert [s["steps"] for s in seen] == [2]
    finally:
        node.destroy_node()


def test_plot_of_many_short_episodes_draws_the_boundaries_as_one_collection(tmp_path, monkeypatch):
    """One axvline per episode start took 12 s for 20 000 steps of 3-step episodes (past launch's SIGKILL)."""
    import matplotlib.axes

    from deer_vla.core import StepRecord
    from deer_vla.ros.plot import plot_records

    calls = {"axvline": 0, "vlines": 0}
    for name in calls:
        real = getattr(matplotlib.axes.Axes, name)
        monkeypatch.setattr(matplotlib.axes.Axes, name,
                            lambda self, *a, _real=real, _name=name, **k: (calls.__setitem__(_name, calls[_name] + 1),
                                                                          _real(self, *a, **k))[1])
    records = [StepRecord(step=i, episode=i // 3, exit_used=1, max_exit=2, stop_reason="threshold", llm_gflops=1.0,
                          total_gflops=1.0) for i in range(300)]
    assert plot_records(records, tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert calls == {"axvline": 0, "vlines": 2}


def test_two_robots_monitors_are_told_apart_and_never_share_a_run_folder(ros_context, tmp_path, monkeypatch):
    """Two robots' monitors (namespaces robot1, robot2) both reported hardware_id 'deer_vla_policy' on the shared
    /diagnostics, under the same status names (an aggregator kept one robot's), and their run folders and
    summaries did not say whose they were. Two started in the same second
    could pick the same free folder (checked, then opened with "w": one truncated the other's logs)."""
    from pathlib import Path

    from rclpy.parameter import Parameter

    from deer_vla.ros.monitor_node import MonitorNode

    made = []
    try:
        for namespace in ("robot1", ""):
            node = MonitorNode(namespace=namespace, parameter_overrides=[
                Parameter("log_dir", value=str(tmp_path / namespace)), Parameter("write_plot", value=False)])
            made.append(node)
            expected = f"/{namespace}/deer_vla_policy" if namespace else "/deer_vla_policy"
            assert {s.hardware_id for s in node.diagnostics().status} == {expected}
            # diagnostic_aggregator and rqt_robot_monitor key statuses by name: robot1's are its own
            prefix = f"{namespace}/deer_vla: " if namespace else "deer_vla: "
            assert all(s.name.startswith(prefix) for s in node.diagnostics().status)
            summary = node.close()
            assert summary["node"] == (f"/{namespace}/deer_vla_monitor" if namespace else "/deer_vla_monitor")
            assert summary["record_topic"] == (f"/{namespace}/step_record" if namespace else "/step_record")
        # a second policy's monitor in the same namespace, under its own name, says its own name
        second = MonitorNode("arm2_monitor", namespace="robot1", parameter_overrides=[
            Parameter("log_dir", value=str(tmp_path / "arm2")), Parameter("write_plot", value=False),
            Parameter("hardware_id", value="/robot1/arm2_policy")])
        made.append(second)
        assert all(s.name.startswith("robot1/arm2_monitor: ") for s in second.diagnostics().status)
        second.close()
        # a rival monitor creates the free folder's steps.jsonl between this one's check and its open
        real_mkdir = Path.mkdir

        def mkdir_and_rival(self, *args, **kwargs):
            real_mkdir(self, *args, **kwargs)
            if self.name == "r":
                (self / "steps.jsonl").write_text("the rival's record\n")

        monkeypatch.setattr(Path, "mkdir", mkdir_and_rival)
        node = _monitor(tmp_path / "race")
        made.append(node)
        assert node.log_dir.name == "r.1"
        assert (tmp_path / "race" / "r" / "steps.jsonl").read_text() == "the rival's record\n"
    finally:
        for node in made:
            node.destroy_node()


def test_a_log_dir_it_cannot_create_names_the_parameter_and_a_relative_one_is_made_absolute(
        ros_context, tmp_path, monkeypatch) -> None:
    """From a read-only cwd (a launch from /, a systemd unit) the default relative 'deer_vla_logs' failed with
    '[Errno 13] Permission denied: deer_vla_logs', naming neither the parameter nor the folder; the node then
    said where it logged with a path relative to a cwd the reader does not know."""
    from rclpy.parameter import Parameter

    from deer_vla.ros.monitor_node import MonitorNode

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=rf"parameter 'log_dir' \({blocker}/logs\): cannot create the run folder"):
        MonitorNode(parameter_overrides=[Parameter("log_dir", value=str(blocker / "logs"))])
    monkeypatch.chdir(tmp_path)
    node = MonitorNode(parameter_overrides=[Parameter("log_dir", value="logs"), Parameter("run_name", value="r"),
                                            Parameter("write_plot", value=False)])
    try:
        assert node.log_dir == tmp_path / "logs" / "r"
    finally:
        node.close()
        node.destroy_node()


def test_the_logging_status_says_lost_records_deleted_files_and_recovery(ros_context, tmp_path):
    """Logging failures cost only the logs, and /diagnostics says so while they happen: ERROR while records are
    lost or the files being written were deleted, WARN once writing works again. A run folder deleted during
    the run is not brought back holding a plot alone."""
    import errno
    import shutil

    from std_msgs.msg import String

    node = _monitor(tmp_path, write_plot=True)
    try:
        def logging_status():
            return next(s for s in node.diagnostics().status if s.name == "deer_vla: logging")

        status = logging_status()
        assert status.level[0] == 0 and str(node.log_dir) in status.message

        class FullDisk:
            def __init__(self, real) -> None:
                self.fileno = real.fileno

            def write(self, text: str) -> int:
                raise OSError(errno.ENOSPC, "No space left on device")

            def flush(self) -> None: ...

        real, node._jsonl = node._jsonl, FullDisk(node._jsonl)
        node._on_record(String(data=_record_json(0)))
        assert node._log_writer.drain(5.0)  # the logs are written on their own thread
        status = logging_status()
        assert status.level[0] == 2 and "No space left on device" in status.message
        assert {kv.key: kv.value for kv in status.values}["log_errors"] == "1"
        node._jsonl = real
        node._on_record(String(data=_record_json(1)))
        assert node._log_writer.drain(5.0)  # the logs are written on their own thread
        status = logging_status()
        assert status.level[0] == 1 and "again" in status.message and "No space left" in status.message

        shutil.rmtree(node.log_dir)
        node._on_record(String(data=_record_json(2)))  # written without an error, into files no one can read
        assert node._log_writer.drain(5.0)  # the logs are written on their own thread
        status = logging_status()
        assert status.level[0] == 2 and "deleted" in status.message
        assert "steps.jsonl" in status.message and "steps.mcap" in status.message
        # the folder made again (a cleanup script, or the policy's recording into the same folder): the summary
        # said log_errors 0 and named the logs as the run's, with a plot beside them
        node.log_dir.mkdir()
        errors = node.log_errors
        summary = node.close()
        assert summary["steps"] == 3 and summary["plot"] is None and not node.plot_path.exists()
        assert summary["deleted_logs"] == ["steps.jsonl", "steps.mcap"] and summary["log_errors"] == errors + 2
        saved = json.loads(node.summary_path.read_text())
        assert saved["deleted_logs"] == ["steps.jsonl", "steps.mcap"] and saved["plot"] is None
        assert not node.jsonl_path.exists()
        assert all(s.name != "deer_vla: logging" for s in node.diagnostics().status)  # closed: nothing to say
    finally:
        node.destroy_node()


def test_a_stalled_log_disk_pauses_neither_the_statistics_nor_the_diagnostics(ros_context, tmp_path, monkeypatch):
    """A disk that blocks a write for seconds: the monitor wrote on its executor, so its /diagnostics paused and
    records past the subscription's queue were lost uncounted. Now the logs wait on their own thread: every
    record is counted at once, the logging status says the write is stalled, and the logs catch up after."""
    import time

    from fixtures import StallingDisk
    from std_msgs.msg import String

    from deer_vla.data.mcap_io import McapLog

    disk = StallingDisk()
    monkeypatch.setattr(McapLog, "_open", lambda self, path: disk.open(path))
    node = _monitor(tmp_path)
    try:
        disk.stalled.set()  # the MCAP's flusher blocks in its next write, holding the log; the next record waits
        slowest = 0.0
        for step in range(50):  # 2.5 s of records at 20 Hz
            started = time.monotonic()
            node._on_record(String(data=_record_json(step)))
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.05)
        assert slowest < 0.1 and node.stats.count == 50  # counted at once, never waiting for the disk
        status = next(s for s in node.diagnostics().status if s.name == "deer_vla: logging")
        assert status.level[0] == 2 and "running for" in status.message, status.message
        disk.stalled.clear()
        disk.release.set()
        assert node._log_writer.drain(5.0)
        assert [json.loads(line)["step"] for line in node.jsonl_path.read_text().splitlines()] == list(range(50))
        summary = node.close()
        assert summary["steps"] == 50 and summary["log_errors"] == 0
    finally:
        disk.release.set()
        node.destroy_node()


def test_a_close_that_gives_up_on_a_stalled_disk_counts_every_record_it_leaves_out(ros_context, tmp_path,
                                                                                    monkeypatch):
    """The summary said one failed write while 26 records were missing from the logs."""
    import time

    from fixtures import StallingDisk
    from std_msgs.msg import String

    from deer_vla.data.mcap_io import McapLog

    disk = StallingDisk()
    monkeypatch.setattr(McapLog, "_open", lambda self, path: disk.open(path))
    node = _monitor(tmp_path)
    try:
        disk.stalled.set()
        for step in range(50):
            node._on_record(String(data=_record_json(step)))
            time.sleep(0.02)
        summary = node.close()  # gives up after LOG_CLOSE_WAIT_S: the logs' thread still waits for the disk
        lines = len(node.jsonl_path.read_text().splitlines())
        assert summary["steps"] == 50 and lines < 50
        assert summary["log_errors"] == 50 - lines, (summary["log_errors"], lines)
    finally:
        disk.release.set()
        node.destroy_node()


def test_a_log_file_closed_meanwhile_is_not_a_deleted_one(tmp_path):
    """The logging status reads the file another thread may have just closed (a log moving on to its next
    part): only a file deleted while open is reported, never one closed."""
    from deer_vla.core.writable import unlinked

    log = (tmp_path / "steps.jsonl").open("w")
    assert not unlinked(log)
    (tmp_path / "steps.jsonl").unlink()
    assert unlinked(log)
    log.close()
    assert not unlinked(log)


def test_the_steps_status_warns_when_the_records_stop(ros_context, tmp_path, monkeypatch):
    """The steps status stayed OK with its last count for 41 s after the policy was killed (an audit): on a
    robot graph nothing else on /diagnostics said the records had stopped. Live only: the summary's final
    status is the run's (a policy stopped before its monitor is the normal end of a run)."""
    from std_msgs.msg import String

    from deer_vla.ros import monitor_node as monitor_module

    node = _monitor(tmp_path, steps_stale_s=2.0)
    now = [1000.0]
    monkeypatch.setattr(monitor_module.time, "monotonic", lambda: now[0])
    try:
        def steps():
            return next(s for s in node.diagnostics().status if s.name == "deer_vla: steps")

        assert steps().level[0] == 1 and "no step records received yet" in steps().message
        node._on_record(String(data=_record_json(0)))
        now[0] += 1.5
        assert steps().level[0] == 0
        now[0] += 1.0  # 2.5 s since the record
        stale = steps()
        assert stale.level[0] == 1 and stale.message.startswith("no step record for 2 s (limit steps_stale_s 2 s)")
        assert "before: 1 steps" in stale.message
        assert {kv.key: kv.value for kv in stale.values}["since_last_record_s"] == "2.5"
        node._on_record(String(data=_record_json(1)))
        assert steps().level[0] == 0  # records again
        now[0] += 60
        assert node.close()["final_status"] == "OK"  # the summary is the run's, not the wait after it
    finally:
        node.destroy_node()
    with pytest.raises(ValueError, match="steps_stale_s' must be a number of seconds >= 0"):
        _monitor(tmp_path / "bad", steps_stale_s=-1.0)
    off = _monitor(tmp_path / "off", steps_stale_s=0.0)
    try:
        off._on_record(String(data=_record_json(0)))
        now[0] += 3600
        assert next(s for s in off.diagnostics().status if s.name == "deer_vla: steps").level[0] == 0
    finally:
        off.destroy_node()


def test_the_records_status_says_refused_records_and_step_numbers_that_never_came(ros_context, tmp_path,
                                                                                   monkeypatch):
    """A burst the reader's queue could not hold lost 8777 of 10 000 records with the summary at `bad_records 0`
    and every status OK; 50 refused records (a newer policy's extra field) left the steps status at "no step
    records received yet". Step numbers that never came are counted (one that comes late, reordered, is not)."""
    from std_msgs.msg import String

    from deer_vla.ros import monitor_node as monitor_module

    node = _monitor(tmp_path)
    now = [1000.0]
    monkeypatch.setattr(monitor_module.time, "monotonic", lambda: now[0])
    try:
        def status(name):
            found = next(s for s in node.diagnostics().status if s.name == f"deer_vla: {name}")
            return found.level[0], found.message, {kv.key: kv.value for kv in found.values}

        for _ in range(3):
            node._on_record(String(data=_record_json(0)[:-1] + ',"new_field":1}'))
        level, message, _ = status("steps")
        assert level == 1 and message == "no step record accepted yet: 3 received, all refused"
        level, message, values = status("records")
        assert level == 1 and "refused or lost in the last 30 s" in message and values["refused"] == "3"
        now[0] += 31
        assert status("records")[0] == 0  # said for a while, not for the rest of the run
        for step in (0, 1, 2, 5, 3, 9):  # 3, 4, 6, 7, 8 skipped; 3 then comes late
            node._on_record(String(data=_record_json(step, 1_000 * (step + 1))))
        level, message, values = status("records")
        assert node.skipped_steps == 4 and values["skipped_steps"] == "4" and level == 1
        assert message.endswith("6 accepted, 3 refused, 4 step number(s) skipped")
        node._on_record(String(data=_record_json(0, 10**9)))  # a restarted policy counts from 0: nothing skipped
        assert node.skipped_steps == 4
        for step in (1, 2, 4, 7):  # its own 3, 5, 6 go missing; its 4 and 7 were no late records of the run before,
            node._on_record(String(data=_record_json(step, 10**9 + step)))  # which missed 4, 6, 7, 8 (a review)
        assert node.skipped_steps == 7
        summary = node.close()
        assert summary["skipped_steps"] == 7 and summary["bad_records"] == 3 and summary["max_publishers"] == 0
    finally:
        node.destroy_node()


def test_a_second_publisher_of_the_records_is_said(executor, tmp_path, spin_until):
    """Two policies on one record topic (steps 0-19 each, interleaved, one at 0.9 and one at 1.6 GFLOPs under a
    budget of 1.0) were pooled to a mean of 1.25 and one WARN, with nothing said of the second policy."""
    import rclpy
    from std_msgs.msg import String

    node = _monitor(tmp_path)
    executor.add_node(node)
    senders = [rclpy.create_node(f"policy_{i}") for i in range(2)]
    try:
        pubs = [s.create_publisher(String, "step_record", 10) for s in senders]
        assert spin_until(executor, lambda: node.count_publishers("/step_record") == 2)
        records = next(s for s in node.diagnostics().status if s.name == "deer_vla: records")
        assert records.level[0] == 1 and records.message.startswith("2 publishers on /step_record: the figures mix")
        # their step numbers interleave: no count of steps that never came (one jump counted ~1000, 99 900 in all
        # for 200 records in a soak's repro)
        for step in range(20):
            for pub, offset in zip(pubs, (0, 1000)):
                pub.publish(String(data=_record_json(step + offset, 10**6 * (step + 1))))
        assert spin_until(executor, lambda: node.stats.count == 40)
        assert node.skipped_steps == 0
        pubs[1].destroy()
        assert spin_until(executor, lambda: node.count_publishers("/step_record") == 1)
        assert next(s for s in node.diagnostics().status if s.name == "deer_vla: records").level[0] == 0
        assert node.close()["max_publishers"] == 2

        def broken(topic):
            raise RuntimeError("graph query failed")

        node.closed = False  # (the status is live only) a failing graph query is an ERROR status, not a crash
        node.count_publishers = broken
        records = next(s for s in node.diagnostics().status if s.name == "deer_vla: records")
        assert records.level[0] == 2 and "record topic not checked: RuntimeError" in records.message
    finally:
        for sender in senders:
            sender.destroy_node()
        node.destroy_node()


def test_the_exit_axis_of_the_plot_has_a_dozen_ticks_whatever_max_exit_says(tmp_path, monkeypatch):
    """One record with max_exit 1024 drew 1024 ticks: 8 s at shutdown, past the 5 s before launch's SIGKILL."""
    import matplotlib.figure

    from deer_vla.ros import plot as plot_module
    from deer_vla.ros.plot import PlotPoint

    figures = []
    monkeypatch.setattr(plot_module, "save_figure", lambda fig, path, dpi: figures.append(fig))
    monkeypatch.setattr(matplotlib.figure.Figure, "tight_layout", lambda self: None)  # drawn ticks, not layout
    points = [PlotPoint(0, 1, 4, 0.5, None)] * 10 + [PlotPoint(0, 7, 1024, 0.5, None)]
    plot_module.plot_points(points, tmp_path / "p.png")
    ticks = figures[0].axes[0].get_yticks()
    assert 2 <= len(ticks) <= 14 and all(t == int(t) for t in ticks)
