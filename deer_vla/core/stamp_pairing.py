"""Pairing a step's camera images with the proprioception stamped nearest them.

A camera's delivery latency puts the newest joint state ahead of the picture
(150 ms over Wi-Fi), so the policy node pairs each image set with the held
joint state whose header stamp is nearest the images' stamps, and
``deer-vla import-mcap`` pairs a recording's the same way: one rule for the
training data and the robot. A stamp that goes back (a simulator's reset)
forgets the poses held before it.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
JOINT_HISTORY = 1024  # stamped items held for pairing: about 1 s of a 1 kHz driver


class StampedHistory(Generic[T]):
    """The last ``maxlen`` items with their stamps (ns, > 0), oldest first."""

    def __init__(self, maxlen: int = JOINT_HISTORY) -> None:
        self._items: deque[tuple[int, T]] = deque(maxlen=maxlen)

    def add(self, stamp_ns: int, item: T) -> bool:
        """Hold ``item``; True when its stamp went back and the items held before were dropped."""
        went_back = bool(self._items) and stamp_ns < self._items[-1][0]
        if went_back:
            self._items.clear()
        self._items.append((stamp_ns, item))
        return went_back

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def nearest(self, stamps: Sequence[int]) -> tuple[int, T, int] | None:
        """(stamp, item, worst gap in ns to any of ``stamps``) of the item with the smallest worst gap, the
        oldest of equally near ones; None without items or stamps."""
        items = list(self._items)  # one copy: another thread may add meanwhile
        if not items or not stamps:
            return None
        gap, index = min((max(abs(stamp - s) for s in stamps), i) for i, (stamp, _) in enumerate(items))
        stamp, item = items[index]
        return stamp, item, gap
