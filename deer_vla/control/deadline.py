"""Deadline mode: never start a segment that could not finish before the step's deadline.

Before running exit k (k >= 2) the controller asks the guard whether
elapsed + (segment k + its action head) + (the final commit head step) still
fits the deadline, using worst-case per-segment times: the profile's measured
p99 (or another quantile) or the maximum of a recorded latency trace. Exit 1
always runs (a step must produce an action); budget validation rejects a
deadline below exit 1's worst case. Time comes from an injectable clock so
tests replay a trace exactly.

Those times are a snapshot (configure's): a shared or throttling machine runs
the same step 2x (or, beside busy processes, 6x) slower minutes later
(measured on this project's VM). ``DriftMargin`` follows how much longer the
last steps ran than the guard's worst cases say, and the guard keeps that
margin free before it starts a segment.
"""
from __future__ import annotations

import math
from collections import deque
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

    def allows(self, exit_index: int, elapsed_ms: float, margin_ms: float = 0.0) -> bool:
        """May exit ``exit_index`` start now, ``elapsed_ms`` into the step, keeping ``margin_ms`` free (steps
        lately take up to that much longer than the guard's times: DriftMargin.margin_ms)?"""
        if exit_index > len(self.segment_ms):
            return False
        # Its segment, its candidate-action head step, and the commit head step.
        need = self.segment_ms[exit_index - 1] + 2 * self.head_ms + margin_ms
        # a few ulps of slack: a deadline set to an exit's worst case (step_worst_ms) is summed in another order
        # than here, and the clock's seconds-to-ms conversion rounds; that step ends at the deadline, not past it
        return elapsed_ms + need <= self.deadline_ms * (1 + 1e-12) + 1e-9


DRIFT_WINDOW = 200  # steps: 20 s at 10 Hz; a slowdown leaves the margin that long after it ends
DRIFT_MIN_STEPS = 100  # before them, configure's times (just measured); from 100 a p99 leaves one stall out
DRIFT_WARN = 0.5  # the notice when the margin reaches this share of the steps' planned time, and when it is back
DRIFT_CLEAR = 0.2  # under this share


class DriftMargin:
    """How many ms longer than the deadline guard's worst case the model's steps take now: the p99, over the
    last ``window`` steps, of each whole step's measured time (begin_step to commit, what configure's
    PolicyRunner.time_steps timed) minus the guard's worst case for the exits it ran (``worst_case_ms``, the p99
    of configure's whole steps to that exit); 0 until ``min_steps`` were seen, never below 0. On an unchanged
    machine about 1% of steps pass their p99, so the margin stays 0 (a comparison of single segments with
    their shares of whole-step quantiles read the segments' own spread as a drift of a segment's length).
    Additive, in ms: on a shared CPU a step is slowed mostly by time slices lost to other processes, whatever
    its depth. ``observe``'s notice says when the margin reaches DRIFT_WARN of the steps' planned time and when
    it is back under DRIFT_CLEAR."""

    def __init__(self, window: int = DRIFT_WINDOW, min_steps: int = DRIFT_MIN_STEPS) -> None:
        if not (isinstance(window, int) and isinstance(min_steps, int) and 1 <= min_steps <= window):
            raise ValueError(f"need 1 <= min_steps <= window (integers), got min_steps={min_steps!r}, "
                             f"window={window!r}")
        self._excess: deque[float] = deque(maxlen=window)
        self._planned: deque[float] = deque(maxlen=window)
        self.min_steps = min_steps
        self.margin_ms = 0.0
        self._warned = False

    @property
    def steps(self) -> int:
        """Steps in the window."""
        return len(self._excess)

    @property
    def ready(self) -> bool:
        return len(self._excess) >= self.min_steps

    def observe(self, measured_ms: float, planned_ms: float) -> str | None:
        """One step: its measured time and the guard's worst case for it. -> a notice to log, or None."""
        if not (math.isfinite(measured_ms) and measured_ms >= 0 and math.isfinite(planned_ms) and planned_ms > 0):
            return None  # a clock that went back, or a guard of zero times (a synthetic trace), says nothing
        self._excess.append(measured_ms - planned_ms)
        self._planned.append(planned_ms)
        if not self.ready:
            return None
        self.margin_ms = max(0.0, float(np.percentile(self._excess, 99)))
        typical = float(np.mean(self._planned))
        if not self._warned and self.margin_ms >= DRIFT_WARN * typical:
            self._warned = True
            return (f"steps take up to {self.margin_ms:.3g} ms more than the times measured at configure (p99 of "
                    f"the last {len(self._excess)}; they plan {typical:.3g} ms): a deadline or peak_ms keeps "
                    "that margin, so fewer deep exits fit")
        if self._warned and self.margin_ms < DRIFT_CLEAR * typical:
            self._warned = False
            return f"steps are back within {self.margin_ms:.3g} ms of the times measured at configure"
        return None
