"""Whether a node's log is being written, as a /diagnostics level and message.

A full or failing disk, or the run folder deleted, costs only the logs: the
nodes go on controlling the robot. That must show while it happens (an engineer
watching rqt_robot_monitor), not only in the summary after the run:

- ERROR while records are being lost: some failed since the previous report,
  or a file being written was deleted (the writes still succeed, into a file
  no one can read);
- WARN once writing works again after failures (the logs have a gap);
- OK otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass

from deer_vla.ros.budget_monitor import ERROR, OK, WARN


@dataclass
class LogHealth:
    """A log's write failures, counted between diagnostics reports."""

    errors: int = 0  # records (or closes) that failed, in all
    last_error: str = ""  # the latest failure, said in the status
    reported: int = 0  # ``errors`` at the previous report

    def failed(self, what: str) -> None:
        self.errors += 1
        self.last_error = what

    def status(self, where: str, deleted: list[str]) -> tuple[int, str]:
        """(level, message) for the period since the previous call; ``deleted``: the files being written
        that are gone (unlinked_files)."""
        new, self.reported = self.errors - self.reported, self.errors
        if deleted:
            return ERROR, f"log files deleted while being written (records go nowhere): {', '.join(deleted)}"
        if new:
            return ERROR, f"{new} record(s) not written to {where} since the last report: {self.last_error}"
        if self.errors:
            return WARN, (f"writing to {where} again; {self.errors} record(s) not written earlier "
                          f"(the last: {self.last_error})")
        return OK, f"writing to {where}"

