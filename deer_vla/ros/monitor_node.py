"""Monitor node: step records in; /diagnostics, JSONL + MCAP logs, summary and plot out."""
from __future__ import annotations

import json
import math
import sys
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float64MultiArray, MultiArrayDimension, String

from deer_vla.core import StepRecord
from deer_vla.core.atomic_file import atomic_write_text
from deer_vla.core.writable import unlinked
from deer_vla.data.mcap_io import (
    DEFAULT_SPLIT_MIB,
    DEFAULT_SPLIT_S,
    McapLog,
    numbered_parts,
    part_path,
    prune_parts,
)
from deer_vla.ros.background_writer import BackgroundWriter
from deer_vla.ros.budget_monitor import ERROR, OK, WARN, BudgetMonitor, BudgetStatus
from deer_vla.ros.diagnostic_names import status_name
from deer_vla.ros.log_health import LogHealth
from deer_vla.ros.node_main import run_node
from deer_vla.ros.node_parameters import declare_parameters, topic_name_problem
from deer_vla.ros.params import (
    MAX_DIAGNOSTICS_PERIOD_S,
    MIN_DIAGNOSTICS_PERIOD_S,
    POLICY_NODE_NAME,
    check_keep_parts,
    check_split_mib,
    check_split_s,
    split_limits,
)
from deer_vla.ros.plot import PlotPoint, plot_points

RECORD_TOPIC_MCAP = "/deer_vla/step_record"
METRICS_TOPIC_MCAP = "/deer_vla/step_metrics"
METRIC_LABELS = ("step", "episode", "exit_used", "max_exit", "llm_gflops", "total_gflops", "total_ms")

MONITOR_DEFAULTS: dict = {
    "record_topic": "step_record",
    "log_dir": "deer_vla_logs",
    "run_name": "",  # "" = run_<UTC time>
    "diagnostics_rate_hz": 1.0,
    "metric": "llm_gflops",
    "window": 0,  # steps in the running statistics; 0 = whole run
    "error_ratio": 1.5,  # ERROR when a budget is exceeded by more than this factor (WARN below)
    "write_plot": True,
    # "" = <this namespace>/deer_vla_policy (the default policy name; set it for a renamed one: bringup and demo
    # do, for a -r remap's, graph.REPORTS_ON)
    "hardware_id": "",
    # WARN when the p95 observation age at action time (camera stamp -> action out) exceeds this; 0 = off
    "obs_age_warn_ms": 250.0,
    # the steps status goes WARN when no step record has come for this long (wall time; 0 = off): a policy that
    # died, or stopped stepping, left it OK with its last count for as long as the monitor ran
    "steps_stale_s": 10.0,
    # steps.mcap goes on in steps_1.mcap, steps_2.mcap, ... past this size or time (0 = no limit of that kind):
    # bounds the writer's memory and each file on a robot that runs for days (mcap_io says why); steps.jsonl
    # goes on in steps_1.jsonl, ... with it, so part n of both holds the same records
    "log_split_mib": DEFAULT_SPLIT_MIB,
    "log_split_s": DEFAULT_SPLIT_S,
    # only the newest N parts of steps.mcap and steps.jsonl stay on disk (0 = all): ~50 MB/h of both at 10 Hz
    "log_keep_parts": 0,
}


MAX_WINDOW = 1_000_000  # steps in the running statistics: about 28 h at 10 Hz, a few hundred MB at most
PLOT_MAX_RECORDS = 20_000  # ~1 h at 5 Hz; older steps are in the logs
MAX_RECORD_CHARS = 64 * 1024  # a real record is ~1 KB; a bigger one is refused unparsed, not written to disk
# records whose key a repeat is checked against: a copy reordered behind later records (QoS, two publishers)
RECENT_RECORDS = 1000
LOG_QUEUE_RECORDS = 1000  # records that may wait for a stalled disk (100 s at 10 Hz) before they are dropped
# how long the records status stays WARN after a record was refused or a step number did not arrive: long
# enough for a 1 Hz reader (or diagnostic_aggregator) to see it, not a run-long WARN for one bad record
RECORD_TROUBLE_S = 30.0
LOG_CLOSE_WAIT_S = 3.0  # how long closing waits for them (ros2 launch sends SIGKILL 5 s after SIGTERM)


MONITOR_NODE_NAME = "deer_vla_monitor"


class MonitorNode(Node):
    def __init__(self, name: str = MONITOR_NODE_NAME, **kwargs) -> None:
        super().__init__(name, **kwargs)
        p = declare_parameters(self, MONITOR_DEFAULTS)  # "-p rate_hz:=20" is a number, not a type error
        rate = p["diagnostics_rate_hz"]
        # the policy node's bounds on its diagnostics period: inf or 1e6 Hz would be a 0 ns timer (a busy core
        # and a flooded /diagnostics), NaN an rclpy error that names nothing
        if not 1.0 / MAX_DIAGNOSTICS_PERIOD_S <= rate <= 1.0 / MIN_DIAGNOSTICS_PERIOD_S:
            raise ValueError(f"parameter 'diagnostics_rate_hz' must be in [{1.0 / MAX_DIAGNOSTICS_PERIOD_S:g}, "
                             f"{1.0 / MIN_DIAGNOSTICS_PERIOD_S:g}] Hz, got {rate}")
        if not 0 <= p["window"] <= MAX_WINDOW:
            raise ValueError(f"parameter 'window' must be in 0..{MAX_WINDOW} steps (0 = whole run), got {p['window']}")
        if not str(p["log_dir"]):  # Path("") is wherever the node was started: the logs would land there unsaid
            raise ValueError("parameter 'log_dir' is empty: give a folder ('.' for the current directory)")
        run_name = p["run_name"]
        if run_name and (run_name in (".", "..") or any(c in run_name for c in "/\\\0")):
            # a run name is one folder inside log_dir: "../x" or "/tmp/x" would write the logs elsewhere
            raise ValueError(f"parameter 'run_name' must be one folder name (no '/', not '.' or '..'), "
                             f"got {run_name!r}")
        if not (isinstance(p["obs_age_warn_ms"], (int, float)) and not isinstance(p["obs_age_warn_ms"], bool)
                and p["obs_age_warn_ms"] >= 0):
            raise ValueError(f"parameter 'obs_age_warn_ms' must be a number >= 0, got {p['obs_age_warn_ms']!r}")
        stale_s = p["steps_stale_s"]
        if not (isinstance(stale_s, (int, float)) and not isinstance(stale_s, bool) and 0 <= stale_s < math.inf):
            raise ValueError(f"parameter 'steps_stale_s' must be a number of seconds >= 0 (0 = off), got {stale_s!r}")
        self._steps_stale_s = float(stale_s)
        self._last_record_at: float | None = None  # time.monotonic() of the last record taken
        for name, check in (("log_split_mib", check_split_mib), ("log_split_s", check_split_s),
                            ("log_keep_parts", check_keep_parts)):
            try:
                check(p[name])
            except ValueError as exc:
                raise ValueError(f"parameter '{name}' {exc}") from None
        # before the run folder and its logs exist: a refused name left an orphan folder and open logs
        problem = topic_name_problem(self, "record_topic", p["record_topic"])
        if problem:
            raise ValueError(problem)
        self.stats = BudgetMonitor(metric=p["metric"], window=int(p["window"]), error_ratio=p["error_ratio"],
                                   obs_age_warn_ms=float(p["obs_age_warn_ms"]))
        run = run_name or time.strftime("run_%Y%m%d_%H%M%S", time.gmtime())
        # absolute: the default 'deer_vla_logs' is relative to wherever the node was started (a launch from /,
        # a systemd unit), and the folder the node names must be one the reader can find
        log_dir = Path(p["log_dir"]).expanduser().absolute()
        try:
            self.log_dir, self._jsonl = _claim_run_dir(log_dir, run)
        except OSError as exc:
            raise ValueError(f"parameter 'log_dir' ({log_dir}): cannot create the run folder: "
                             f"{exc.strerror or exc}") from exc
        self.jsonl_path = self.log_dir / "steps.jsonl"
        self.mcap_path = self.log_dir / "steps.mcap"
        self.plot_path = self.log_dir / "steps.png"
        self.summary_path = self.log_dir / "summary.json"
        self.jsonl_parts = [self.jsonl_path]
        self._jsonl_part = 0  # the MCAP part the JSONL file being written goes with
        self._mcap = McapLog(self.mcap_path, split=split_limits(p["log_split_mib"], p["log_split_s"],
                                                                 p["log_keep_parts"]))
        self._jsonl_deleted = 0  # JSONL parts deleted by log_keep_parts, oldest first
        self._write_plot = bool(p["write_plot"])
        # "": the default policy name in this namespace, as the policy node's own status gives it, so that two
        # robots' statuses on the shared /diagnostics are told apart
        self._hardware_id = p["hardware_id"] or f"{self.get_namespace().rstrip('/')}/{POLICY_NODE_NAME}"
        # "deer_vla: ..." for the monitor of that name; a second monitor in one namespace (another policy's, its
        # own node name) says its own: diagnostic_aggregator keys statuses by name
        self._status_owner = "deer_vla" if self.get_name() == MONITOR_NODE_NAME else self.get_name()
        # what the plot draws of each step, bounded, so a long run does not grow (JSONL + MCAP keep every step)
        self.records: deque[PlotPoint] = deque(maxlen=PLOT_MAX_RECORDS)
        self.bad_records = 0
        self.duplicate_records = 0  # a step already counted (one of the last RECENT_RECORDS) again: not counted twice
        # (episode, step, stamp_ns) of the last records, oldest first (a dict keeps insertion order)
        self._recent_keys: dict[tuple[int, int, int], None] = {}
        self.out_of_order_records = 0  # stamped before the previous record: kept, but said
        # step numbers that never arrived between two records (the policy numbers its steps one by one): lost on
        # the way (a reader's queue overflowed: 8777 of a burst of 10000 went uncounted) or never published
        self.skipped_steps = 0
        self._missing_steps: dict[int, None] = {}  # the newest skipped step numbers, oldest first (bounded)
        self._sequence: tuple[int, int] | None = None  # (step, stamp_ns) of the last record that was not a late one
        self.max_publishers = 0  # of the record topic, as seen at each diagnostics tick
        self._record_trouble_at: float | None = None  # time.monotonic() of the last refused or skipped record
        self._log_health = LogHealth()  # records that could not be written (disk full, ...): still in the statistics
        # the logs are written from a thread of their own: a disk that blocks a write for seconds neither pauses
        # /diagnostics nor lets the subscription's queue overflow (records lost uncounted); a full queue drops
        # records from the logs only, counted (they stay in the statistics)
        self._log_writer: BackgroundWriter[StepRecord] = BackgroundWriter(
            "monitor_logs", self._write_logs, self._log_failed, LOG_QUEUE_RECORDS)
        self.status_errors = 0  # diagnostics ticks whose statuses could not be computed (_statuses)
        self.closed = False
        self._summary: dict | None = None
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self._record_topic = self.create_subscription(String, p["record_topic"], self._on_record, qos).topic_name
        # on the steady clock, with or without use_sim_time: on the node clock a system clock stepped back stopped
        # this timer (and the steps_stale_s warning it gives) for the length of the step, and a simulator that died
        # (no /clock) silenced it for good; the statuses judge step records, on wall time
        self.create_timer(1.0 / rate, self.publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f"monitor logging to {self.log_dir}")

    def _on_record(self, msg: String) -> None:
        if len(msg.data) > MAX_RECORD_CHARS:
            self.bad_records += 1
            self._record_trouble_at = time.monotonic()
            self.get_logger().error(f"step record of {len(msg.data)} characters refused (at most "
                                    f"{MAX_RECORD_CHARS})", throttle_duration_sec=5.0)
            return
        try:
            record = StepRecord.from_json(msg.data)
        except Exception as exc:  # whatever a hostile publisher finds: raised here it would end the spin
            self.bad_records += 1
            self._record_trouble_at = time.monotonic()
            self.get_logger().error(f"unreadable step record: {exc}", throttle_duration_sec=5.0)
            return
        if self.closed:
            return
        last = self.stats.last
        key = (record.episode, record.step, record.stamp_ns)
        if key in self._recent_keys:  # not only the previous one: a reordered copy came back after its successor
            self.duplicate_records += 1
            self.get_logger().warn(f"duplicate step record ignored (episode {record.episode} step {record.step}): "
                                   "is a second publisher on the topic?", throttle_duration_sec=5.0)
            return
        if last is not None and 0 < record.stamp_ns < last.stamp_ns:
            self.out_of_order_records += 1
            self.get_logger().warn(f"step record stamped {(last.stamp_ns - record.stamp_ns) * 1e-6:.1f} ms before "
                                   f"the previous one (episode {record.episode} step {record.step}); logged as "
                                   "received", throttle_duration_sec=5.0)
        self._count_skipped_steps(record)
        self._recent_keys[key] = None
        if len(self._recent_keys) > RECENT_RECORDS:
            del self._recent_keys[next(iter(self._recent_keys))]
        self.stats.update(record)
        self._last_record_at = time.monotonic()
        self.records.append(PlotPoint.of(record, self.stats.metric))
        self._log_writer.put(record)

    def _count_skipped_steps(self, record: StepRecord) -> None:
        """Step numbers between the last record in sequence and ``record`` that have not come (the policy numbers
        its records one by one; a restarted one counts from 0 again); one that comes late, reordered, is taken
        off again (and is not the sequence's last)."""
        previous = self._sequence
        if (previous is not None and record.step != previous[0] + 1 and record.step not in self._missing_steps
                and self._several_publishers()):
            # two policies on one record topic: their numbers interleave, and each jump counted ~1000 "skipped"
            # (99 900 for 200 records); no count of one sequence, the records status says the publishers
            self._sequence = None
            self._missing_steps.clear()
            return
        if previous is not None and record.step <= previous[0] and record.stamp_ns > previous[1] > 0:
            # back to an earlier step number, stamped later: a restarted policy, not a late record; the run
            # before keeps its count, and its missing numbers are not this run's
            self._missing_steps.clear()
        elif record.step in self._missing_steps:
            del self._missing_steps[record.step]
            self.skipped_steps -= 1
            return
        self._sequence = (record.step, record.stamp_ns)
        last = previous[0] if previous is not None else None
        if last is None or record.step <= last + 1:
            return
        self.skipped_steps += record.step - last - 1
        for step in range(max(last + 1, record.step - RECENT_RECORDS), record.step):  # bounded
            self._missing_steps[step] = None
        while len(self._missing_steps) > RECENT_RECORDS:
            del self._missing_steps[next(iter(self._missing_steps))]
        self._record_trouble_at = time.monotonic()
        self.get_logger().warn(f"step records {last + 1}..{record.step - 1} have not arrived (lost on the way, or "
                               "not published by the policy)", throttle_duration_sec=5.0)

    def _several_publishers(self) -> bool:
        """More than one publisher on the record topic now (asked only at a break in the step numbers); a graph
        query that fails counts as one (the records status says that failure)."""
        try:
            return self.count_publishers(self._record_topic) > 1
        except Exception:  # a failing graph query must not cost the record
            return False

    def _log_failed(self, what: str) -> None:
        """A record the logs could not take (disk full, unwritable folder, a stalled disk's full queue): it
        stays in the statistics; counted and said (the logging status)."""
        self._log_health.failed(what)
        self.get_logger().error(f"step record not written to {self.log_dir}: {what}", throttle_duration_sec=5.0)

    def _write_logs(self, record: StepRecord) -> None:
        """One record to both logs. Each is tried, so a record that one of them cannot take (disk full) still
        reaches the other; the first error is raised after both were tried."""
        text = record.to_json()  # re-serialised: one line per record whatever whitespace the sender used
        errors: list[Exception] = []
        try:
            self._write_mcap(record, text)
        except Exception as exc:
            errors.append(exc)
        try:
            self._follow_mcap_part()
            self._jsonl.write(text + "\n")
            self._jsonl.flush()  # a killed monitor keeps every record it received
        except Exception as exc:
            errors.append(exc)
        if errors:
            raise errors[0]

    def _write_mcap(self, record: StepRecord, text: str) -> None:
        stamp = record.stamp_ns or self.get_clock().now().nanoseconds
        self._mcap.write(RECORD_TOPIC_MCAP, "std_msgs/msg/String", String(data=text), stamp)
        values = [record.step, record.episode, record.exit_used, record.max_exit, record.llm_gflops,
                  record.total_gflops, record.total_ms]
        metrics = Float64MultiArray(data=[float(v) for v in values])
        metrics.layout.dim = [MultiArrayDimension(label=",".join(METRIC_LABELS), size=len(values), stride=len(values))]
        self._mcap.write(METRICS_TOPIC_MCAP, "std_msgs/msg/Float64MultiArray", metrics, stamp, may_split=False)

    def _follow_mcap_part(self) -> None:
        """Go on in steps_<n>.jsonl once steps.mcap went on in steps_<n>.mcap: the JSONL log is bounded by the
        same size and time (a soak at 10 Hz writes ~40 MB/h of it) and its parts line up with the MCAP's."""
        # the MCAP may move on by more than one part between records (a disk that filled up twice): the JSONL
        # follows it to the same number
        part = len(self._mcap.parts) - 1
        if part == self._jsonl_part:
            return
        path = part_path(self.jsonl_path, part)
        new_file = path.open("x")  # never another log's file: the run folder was fresh, its parts ours alone
        old_file, self._jsonl = self._jsonl, new_file
        self.jsonl_parts.append(path)
        self._jsonl_part = part
        old_file.close()  # flushed per record: nothing is left in its buffer to lose
        self._jsonl_deleted = prune_parts(self.jsonl_parts, self._mcap.split.keep_parts, self._jsonl_deleted)

    def _statuses(self) -> list[BudgetStatus]:
        """The budget statuses; a fault in computing them is one ERROR status and a log line, never an
        exception: it would end the node from its timer and cost the summary at shutdown."""
        try:
            return self.stats.statuses()
        except Exception as exc:  # any fault, whatever it is, must not stop the monitor
            self.status_errors += 1
            self.get_logger().error(f"budget statuses not computed: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=5.0)
            return [BudgetStatus("monitor", ERROR, f"statuses not computed: {type(exc).__name__}: {exc}")]

    @property
    def log_errors(self) -> int:
        """Records (and closes) the logs could not take: still counted in the statistics."""
        return self._log_health.errors

    def _logging_status(self) -> BudgetStatus:
        """Whether the step logs are being written (log_health): said on /diagnostics while it happens."""
        values = {"folder": str(self.log_dir), "log_errors": str(self.log_errors)}
        try:
            deleted = self._deleted_logs()
        except Exception as exc:  # as _statuses: a fault here must not end the node from its timer
            return BudgetStatus("logging", ERROR, f"log files not checked: {type(exc).__name__}: {exc}", values)
        level, message = self._log_health.status(str(self.log_dir), deleted, self._log_writer.stalled_s)
        return BudgetStatus("logging", level, message, values)

    def _deleted_logs(self) -> list[str]:
        """The names of the log parts being written that were deleted (or their folder) meanwhile. (The logs'
        thread may move on to the next part meanwhile, closing this one: not a deleted file.)"""
        deleted = [self.jsonl_parts[-1].name] if unlinked(self._jsonl) else []
        if self._mcap.unlinked():
            deleted.append(self._mcap.parts[-1].name)
        return deleted

    def _stale_steps(self, statuses: list[BudgetStatus]) -> list[BudgetStatus]:
        """``statuses`` with the steps status WARN when no record has come for steps_stale_s (live only: the
        summary's final status is the run's, and a policy stopped before its monitor is the normal end)."""
        since = None if self._last_record_at is None else time.monotonic() - self._last_record_at
        if not self._steps_stale_s or since is None or since <= self._steps_stale_s:
            return statuses
        return [BudgetStatus(s.name, max(s.level, WARN), f"no step record for {since:.0f} s (limit steps_stale_s "
                             f"{self._steps_stale_s:g} s): the policy stopped stepping or is gone; before: {s.message}",
                             {**s.values, "since_last_record_s": f"{since:.1f}"}) if s.name == "steps" else s
                for s in statuses]

    def _records_status(self) -> BudgetStatus:
        """What reached the monitor of the record topic: records refused or step numbers that never came (WARN
        for RECORD_TROUBLE_S after the last), or a second publisher (WARN while it is there: the statistics and
        the budget statuses would mix two policies' steps)."""
        try:
            publishers = self.count_publishers(self._record_topic)
        except Exception as exc:  # as _statuses: a fault here must not end the node from its timer
            return BudgetStatus("records", ERROR, f"record topic not checked: {type(exc).__name__}: {exc}")
        self.max_publishers = max(self.max_publishers, publishers)
        values = {"accepted": str(self.stats.count), "refused": str(self.bad_records),
                  "duplicates": str(self.duplicate_records), "out_of_order": str(self.out_of_order_records),
                  "skipped_steps": str(self.skipped_steps), "publishers": str(publishers)}
        recent = (self._record_trouble_at is not None
                  and time.monotonic() - self._record_trouble_at <= RECORD_TROUBLE_S)
        said = f"{self.stats.count} accepted, {self.bad_records} refused, {self.skipped_steps} step number(s) skipped"
        if publishers > 1:
            return BudgetStatus("records", WARN, f"{publishers} publishers on {self._record_topic}: the figures mix "
                                "their steps (give each policy its own namespace or record_topic); " + said, values)
        if recent:
            return BudgetStatus("records", WARN, f"records refused or lost in the last {RECORD_TROUBLE_S:g} s: {said}",
                                values)
        return BudgetStatus("records", OK, said, values)

    def diagnostics(self) -> DiagnosticArray:
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        not_budgets = ("steps", "observation_age", "fidelity_guarantee", "monitor", "logging", "records")
        statuses = self._statuses()
        if self.stats.last is None and self.bad_records:  # received, but none taken: not "none received"
            statuses = [replace(s, message=f"no step record accepted yet: {self.bad_records} received, all refused")
                        if s.name == "steps" else s for s in statuses]
        if not self.closed:
            statuses = self._stale_steps(statuses)
            statuses.append(self._records_status())
            statuses.append(self._logging_status())
        for status in statuses:
            arr.status.append(
                DiagnosticStatus(
                    level=bytes([status.level]),
                    name=status_name(self.get_namespace(), self._status_owner,
                                     f"{'' if status.name in not_budgets else 'budget '}{status.name}"),
                    message=status.message,
                    hardware_id=self._hardware_id,
                    values=[KeyValue(key=k, value=v) for k, v in status.values.items()],
                )
            )
        return arr

    def publish_diagnostics(self) -> None:
        self._diag_pub.publish(self.diagnostics())

    def summary(self) -> dict:
        return {
            **self.stats.summary(self._statuses()),
            "status_errors": self.status_errors,
            "bad_records": self.bad_records,
            "duplicate_records": self.duplicate_records,
            "out_of_order_records": self.out_of_order_records,
            "skipped_steps": self.skipped_steps,
            "max_publishers": self.max_publishers,
            "log_errors": self.log_errors,
            "node": self.get_fully_qualified_name(),  # which robot's run this is, with several on one graph
            "record_topic": self._record_topic,
            "jsonl": str(self.jsonl_path),
            "jsonl_parts": len(self.jsonl_parts),  # steps.jsonl, steps_1.jsonl, ...: part n matches steps_<n>.mcap
            "mcap": str(self.mcap_path),
            "mcap_parts": len(self._mcap.parts),  # steps.mcap, steps_1.mcap, ... (split by log_split_mib/_s)
            "deleted_parts": self._mcap.deleted_parts,  # the oldest of each log's, by log_keep_parts
            "plot": str(self.plot_path) if self._write_plot and self.records else None,
        }

    def close(self) -> dict:
        """Flush the logs, write and print the summary, render the plot (idempotent)."""
        if self._summary is not None:
            return self._summary
        self.closed = True
        # a log deleted during the run (its folder removed, perhaps made again) takes writes no one can read: the
        # summary must not name it as the run's log
        deleted = self._deleted_logs()
        for name in deleted:
            self._log_health.failed(f"{name} was deleted during the run (its records so far are lost)")
            self.get_logger().error(f"{name} in {self.log_dir} was deleted during the run: its records are lost")
        if self._log_writer.close(LOG_CLOSE_WAIT_S):
            for name, log_file in (("steps.jsonl", self._jsonl), ("steps.mcap", self._mcap)):
                try:
                    log_file.close()
                except OSError as exc:  # disk full at the end: the records are counted, the summary still comes
                    self._log_health.failed(f"{name} not closed: {exc}")
                    self.get_logger().error(f"{name} not closed cleanly in {self.log_dir}: {exc}")
        else:  # a stalled disk: closing would wait on it too; the files read back up to their last whole part
            waiting = self._log_writer.waiting
            self._log_health.failed(f"{waiting} record(s) still waiting for the disk after {LOG_CLOSE_WAIT_S:g} s "
                                    "(a stalled disk?): the logs are left unfinished", count=max(waiting, 1))
            self.get_logger().error(f"logs in {self.log_dir}: {self._log_health.last_error}")
        summary = self._summary = {**self.summary(), "deleted_logs": deleted}
        if summary["plot"] is not None and (deleted or not self.log_dir.is_dir()):  # deleted during the run: a
            # folder holding a plot alone would pass for a run whose logs went missing
            self.get_logger().error(f"run folder {self.log_dir} or its logs were deleted during the run: no plot "
                                    "written")
            summary["plot"] = None
        # the summary before the plot: a plot takes seconds, and ros2 launch sends SIGKILL if shutdown drags on
        try:
            atomic_write_text(self.summary_path, json.dumps(summary, indent=2))  # never a torn or empty file
        except OSError as exc:  # disk full at the end: the line below still says what the run did
            self._log_health.failed(f"{self.summary_path.name} not written: {exc}")
            self.get_logger().error(f"{self.summary_path.name} not written in {self.log_dir}: {exc}")
        worst, final = summary["worst_status"], summary["final_status"]
        status = final if final == worst else f"{final} (worst during the run: {worst})"
        print(
            f"[deer_vla monitor] {summary['steps']} steps, mean exit {summary['mean_exit']:.2f}, "
            f"mean {self.stats.metric} {summary[f'mean_{self.stats.metric}']:.4g}, p95 {summary['p95_ms']:.1f} ms, "
            f"observation age at action p50 {summary['obs_age_p50_ms']:.1f} / p95 {summary['obs_age_p95_ms']:.1f} ms, "
            f"budget status {status}; log {self.jsonl_path}, mcap {self.mcap_path}"
            + (f"; {self.log_errors} log write(s) FAILED, the last: {self._log_health.last_error}"
               if self.log_errors else ""),
            file=sys.stderr,
        )
        if summary["plot"] is not None:
            try:
                plot_points(self.records, self.plot_path, metric=self.stats.metric)
            except Exception as exc:  # whatever matplotlib raises, a failed plot must not cost the summary
                self.get_logger().error(f"plot not written: {type(exc).__name__}: {exc}")
                summary["plot"] = None
                try:
                    atomic_write_text(self.summary_path, json.dumps(summary, indent=2))
                except OSError as write_exc:
                    self.get_logger().error(f"{self.summary_path.name} not rewritten in {self.log_dir}: {write_exc}")
        return summary

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


def _claim_run_dir(log_dir: Path, run: str) -> tuple[Path, TextIO]:
    """``log_dir/run``, or ``run.1``, ``run.2``, ... if it already holds logs, and its steps.jsonl opened: a
    restarted monitor with the same run_name must not truncate the logs of the run that crashed. The folder is
    claimed by creating steps.jsonl exclusively, so two monitors started in the same second (two robots of one
    launch) cannot both pick the same free folder and write over each other's logs."""
    for n in range(10_000):
        candidate = log_dir / (run if n == 0 else f"{run}.{n}")
        names = ("steps.jsonl", "steps.mcap")
        if any((candidate / name).exists() or numbered_parts(candidate / name) for name in names):
            continue  # (numbered parts alone: a split log whose first part was deleted)
        candidate.mkdir(parents=True, exist_ok=True)  # an empty folder made for it (the demo's) is taken
        try:
            return candidate, (candidate / "steps.jsonl").open("x", encoding="utf-8")
        except FileExistsError:  # another monitor claimed it in between
            continue
    raise ValueError(f"{log_dir} already holds 10000 runs named '{run}'")


def main(argv: list[str] | None = None) -> int:
    return run_node(MonitorNode, argv)


if __name__ == "__main__":
    sys.exit(main())
