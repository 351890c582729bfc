"""Deadline mode: never start a segment that could not finish before the step's deadline.

Before running exit k (k >= 2) the controller asks the guard whether
elapsed + (segment k + its action head) + (the final commit head step) still
fits the deadline, using worst-case per-segment times: the profile's measured
p99 (or another quantile) or the maximum of a recorded latency trace. Exit 1
always runs (a step must produce an action); budget validation rejects a
deadline below exit 1's worst case. Time comes from an injectable clock so
tests replay a trace exactly.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from deer_vla.core import CostProfile


class ManualClock:
    """A clock (seconds, like time.perf_counter) that moves only when told to."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._now = float(start_s)

    def __call__(self) -> float:
        return self._now

    def advance_ms(self, ms: float) -> None:
        if not (math.isfinite(ms) and ms >= 0):
            raise ValueError(f"clock can only advance by a finite, non-negative time, got {ms}")
        self._now += ms / 1000.0


@dataclass
class LatencyTrace:
    """Recorded wall times of T steps: encode (T,), each segment (T, N), one head step (T,)."""

    encode_ms: np.ndarray
    segment_ms: np.ndarray
    head_ms: np.ndarray

    def __post_init__(self) -> None:
        self.segment_ms = np.asarray(self.segment_ms, dtype=np.float64)
        if self.segment_ms.ndim != 2 or self.segment_ms.size == 0:
            raise ValueError(f"trace segment_ms must be (steps, segments), got shape {self.segment_ms.shape}")
        t = self.segment_ms.shape[0]
        self.encode_ms = np.broadcast_to(np.asarray(self.encode_ms, dtype=np.float64), (t,)).copy()
        self.head_ms = np.broadcast_to(np.asarray(self.head_ms, dtype=np.float64), (t,)).copy()
        for name in ("encode_ms", "segment_ms", "head_ms"):
            arr = getattr(self, name)
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise ValueError(f"trace {name} must be finite and >= 0")

    @property
    def num_steps(self) -> int:
        return int(self.segment_ms.shape[0])

    @property
    def num_segments(self) -> int:
        return int(self.segment_ms.shape[1])

    def step(self, t: int) -> tuple[float, np.ndarray, float]:
        """(encode, per-segment, head) ms of step ``t`` (wraps around)."""
        i = t % self.num_steps
        return float(self.encode_ms[i]), self.segment_ms[i], float(self.head_ms[i])


class DeadlineGuard:
    """Decides whether the next segment may start; estimates are worst-case ms per segment."""

    def __init__(self, deadline_ms: float, segment_ms: Sequence[float], head_ms: float, encode_ms: float = 0.0):
        if not (isinstance(deadline_ms, (int, float)) and math.isfinite(deadline_ms) and deadline_ms > 0):
            raise ValueError(f"deadline_ms must be positive and finite, got {deadline_ms!r}")
        seg = [float(v) for v in segment_ms]
        if not seg or any(not (math.isfinite(v) and v >= 0) for v in seg + [head_ms, encode_ms]):
            raise ValueError(f"deadline guard needs finite, non-negative latencies, got {seg}, head {head_ms}")
        self.deadline_ms = float(deadline_ms)
        self.segment_ms = seg
        self.head_ms = float(head_ms)
        self.encode_ms = float(encode_ms)

    @classmethod
    def from_profile(
        cls, profile: CostProfile, deadline_ms: float, quantile: Literal["median", "p95", "p99"] = "p99"
    ) -> DeadlineGuard:
        if not profile.has_latency():
            raise ValueError("deadline mode needs a cost profile with measured per-segment latency")
        key = f"{quantile}_ms"
        head = getattr(profile.head_latency, key) if profile.head_latency else 0.0
        enc = getattr(profile.encode_latency, key) if profile.encode_latency else 0.0
        return cls(deadline_ms, [getattr(s, key) for s in profile.segment_latency], head, enc)

    @classmethod
    def from_trace(cls, trace: LatencyTrace, deadline_ms: float) -> DeadlineGuard:
        """Worst case = the maximum the trace ever recorded per segment."""
        return cls(
            deadline_ms,
            trace.segment_ms.max(axis=0).tolist(),
            float(trace.head_ms.max()),
            float(trace.encode_ms.max()),
        )

    def worst_case_ms(self, exit_index: int) -> float:
        """Encode + segments 1..k with a head step each + the commit head step."""
        return self.encode_ms + sum(self.segment_ms[:exit_index]) + (exit_index + 1) * self.head_ms

    def allows(self, exit_index: int, elapsed_ms: float) -> bool:
        """May exit ``exit_index`` start now, ``elapsed_ms`` into the step?"""
        if exit_index > len(self.segment_ms):
            return False
        # Its segment, its candidate-action head step, and the commit head step.
        need = self.segment_ms[exit_index - 1] + 2 * self.head_ms
        # a few ulps of slack: a deadline set to an exit's worst case (step_worst_ms) is summed in another order
        # than here, and the clock's seconds-to-ms conversion rounds; that step ends at the deadline, not past it
        return elapsed_ms + need <= self.deadline_ms * (1 + 1e-12) + 1e-9
