"""Whether a node's log is being written, as a /diagnostics level and message.

A full or failing disk, or the run folder deleted, costs only the logs: the
nodes go on controlling the robot. That must show while it happens (an engineer
watching rqt_robot_monitor), not only in the summary after the run:

- ERROR while records are being lost: some failed since the previous report,
  a write has been blocked for over a second (a stalled disk), or a file
  being written was deleted (the writes still succeed, into a file no one
  can read);
- WARN once writing works again after failures (the logs have a gap);
- OK otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass

from deer_vla.ros.budget_monitor import ERROR, OK, WARN

STALLED_S = 1.0  # a write running longer than this is a stalled disk (they take milliseconds)


@dataclass
class LogHealth:
    """A log's write failures, counted between diagnostics reports."""

    errors: int = 0  # records (or closes) that failed, in all
    last_error: str = ""  # the latest failure, said in the status
    reported: int = 0  # ``errors`` at the previous report

    def failed(self, what: str, count: int = 1) -> None:
        """``count`` records lost to ``what`` (a close that gives up on a stalled disk loses all still waiting)."""
        self.errors += count
        self.last_error = what

    def status(self, where: str, deleted: list[str], stalled_s: float = 0.0) -> tuple[int, str]:
        """(level, message) for the period since the previous call; ``deleted``: the files being written
        that are gone (writable.unlinked); ``stalled_s``: how long the write in progress has been running."""
        errors = self.errors  # read once: the writer's thread may count another meanwhile
        new, self.reported = errors - self.reported, errors
        if stalled_s > STALLED_S:
            return ERROR, f"a write to {where} has been running for {stalled_s:.1f} s (a stalled disk?)"
        if deleted:
            return ERROR, f"log files deleted while being written (records go nowhere): {', '.join(deleted)}"
        if new:
            return ERROR, f"{new} record(s) not written to {where} since the last report: {self.last_error}"
        if errors:
            return WARN, (f"writing to {where} again; {errors} record(s) not written earlier "
                          f"(the last: {self.last_error})")
        return OK, f"writing to {where}"

