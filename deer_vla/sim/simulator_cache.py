"""Simulators kept by task, a bounded number of them: the least recently used is closed to make another.

A MuJoCo simulator with its renderer holds about 190 MB. A worker that kept one
per task it had seen grew to 9 GB on MT50's 50 tasks (collection and evaluation
hand tasks out round-robin), so two workers and one more job were killed for
memory on a 24 GB machine. Episodes are seeded at reset, so a simulator made
again plays the same episode as the one it replaces.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class SimulatorCache:
    """Up to ``max_open`` simulators (anything with ``close()``) by key (a task name, or a task and how it is
    set up), least recently used first."""

    def __init__(self, max_open: int) -> None:
        if isinstance(max_open, bool) or not isinstance(max_open, int) or max_open < 1:
            raise ValueError(f"the number of simulators kept open must be an int >= 1, got {max_open!r}")
        self.max_open = max_open
        self._open: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``key``'s simulator: the open one, else ``make()`` after closing the least recently used if full."""
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]
        while len(self._open) >= self.max_open:
            _, oldest = self._open.popitem(last=False)
            oldest.close()
        self._open[key] = make()
        return self._open[key]

    @property
    def keys(self) -> list[Hashable]:
        """The keys with an open simulator, least recently used first."""
        return list(self._open)

    def close(self) -> None:
        """Close every open simulator (the cache stays usable)."""
        while self._open:
            _, sim = self._open.popitem(last=False)
            sim.close()
