"""A command's standard output when its reader goes away (`deer-vla demo | head`, a closed ssh pipe).

Python raises BrokenPipeError at the next print: the demo lost its summary after a finished run, the robot
graph's bringup ended at once with status 1 (with PYTHONUNBUFFERED set, as containers often have it), and at
exit Python's own flush printed "Exception ignored ... BrokenPipeError" with status 120. A reader that went away
costs the output, never the run.
"""
from __future__ import annotations

import os
import sys
from typing import Any, TextIO


class DropOnBrokenPipe:
    """``stream`` that drops what it is given once its reader has gone (the file descriptor then points at
    /dev/null, so the interpreter's last flush is quiet too)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        self.gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError):  # no file descriptor (a captured stream): dropping is enough
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def stdout_may_close() -> None:
    """From now on this process's stdout drops its output once its reader has gone, instead of raising."""
    if sys.stdout is not None and not isinstance(sys.stdout, DropOnBrokenPipe):
        sys.stdout = DropOnBrokenPipe(sys.stdout)
