"""Deadline mode: never start a segment that could not finish before the step's deadline.

Before running exit k (k >= 2) the controller asks the guard whether
elapsed + (segment k + its action head) + (the final commit head step) still
fits the deadline, using worst-case per-segment times: the profile's measured
p99 (or another quantile) or the maximum of a recorded latency trace. Exit 1
always runs (a step must produce an action); budget validation rejects a
deadline below exit 1's worst case. Time comes from an injectable clock so
tests replay a trace exactly.

Those times are a snapshot (configure's): a shared or throttling machine runs
the same step up to 2x slower minutes later (measured on this project's VM).
``SlowdownEstimate`` follows how much slower the last steps ran than the
guard's times say, and the guard plans with its times scaled by that.
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

    def planned_ms(self, exits_run: int) -> float:
        """The worst case of a step's model part after begin_step: ``exits_run`` segments with a head step each
        and the commit head step (what SlowdownEstimate compares the measured ones with)."""
        return sum(self.segment_ms[:exits_run]) + (exits_run + 1) * self.head_ms

    def allows(self, exit_index: int, elapsed_ms: float, slowdown: float = 1.0) -> bool:
        """May exit ``exit_index`` start now, ``elapsed_ms`` into the step, with this machine running
        ``slowdown`` times slower than the guard's times (SlowdownEstimate.factor)?"""
        if exit_index > len(self.segment_ms):
            return False
        # Its segment, its candidate-action head step, and the commit head step.
        need = (self.segment_ms[exit_index - 1] + 2 * self.head_ms) * slowdown
        # a few ulps of slack: a deadline set to an exit's worst case (step_worst_ms) is summed in another order
        # than here, and the clock's seconds-to-ms conversion rounds; that step ends at the deadline, not past it
        return elapsed_ms + need <= self.deadline_ms * (1 + 1e-12) + 1e-9


SLOWDOWN_WINDOW = 200  # steps: 20 s at 10 Hz; a slowdown leaves the estimate that long after it ends
SLOWDOWN_MIN_STEPS = 50  # before them, the times just measured at configure are the better estimate
SLOWDOWN_WARN = 1.25  # said once when the factor reaches it, and again when it falls back under SLOWDOWN_CLEAR
SLOWDOWN_CLEAR = 1.1


class SlowdownEstimate:
    """How much slower the model's steps run now than a deadline guard's times: the p99, over the last
    ``window`` steps, of each step's measured model time over the guard's worst case for the exits it ran;
    1.0 until ``min_steps`` were seen, never below 1 (a machine faster than at configure keeps the times it
    was timed with). Its notices (``observe``'s return) say when it reaches SLOWDOWN_WARN and when it is back
    under SLOWDOWN_CLEAR."""

    def __init__(self, window: int = SLOWDOWN_WINDOW, min_steps: int = SLOWDOWN_MIN_STEPS) -> None:
        if not (isinstance(window, int) and isinstance(min_steps, int) and 1 <= min_steps <= window):
            raise ValueError(f"need 1 <= min_steps <= window (integers), got min_steps={min_steps!r}, "
                             f"window={window!r}")
        self._ratios: deque[float] = deque(maxlen=window)
        self.min_steps = min_steps
        self.factor = 1.0
        self._warned = False

    @property
    def steps(self) -> int:
        """Steps in the window."""
        return len(self._ratios)

    def observe(self, measured_ms: float, planned_ms: float) -> str | None:
        """One step: its model time measured, and the guard's worst case for it. -> a notice to log, or None."""
        if not (math.isfinite(measured_ms) and measured_ms >= 0 and math.isfinite(planned_ms) and planned_ms > 0):
            return None  # a guard of zero times (a synthetic trace) or a clock that went back says nothing
        self._ratios.append(measured_ms / planned_ms)
        if len(self._ratios) < self.min_steps:
            return None
        p99 = float(np.percentile(self._ratios, 99))
        # a hair over 1 is rounding (a guard's times summed in another order): a deadline set to an exit's
        # worst case must keep reaching it
        self.factor = p99 if p99 > 1.0 + 1e-6 else 1.0
        if not self._warned and self.factor >= SLOWDOWN_WARN:
            self._warned = True
            return (f"steps run up to {self.factor:.2f}x the times measured at configure (p99 of the last "
                    f"{len(self._ratios)}): the deadline guard plans with that, so fewer deep exits fit")
        if self._warned and self.factor < SLOWDOWN_CLEAR:
            self._warned = False
            return f"steps are back within {self.factor:.2f}x the times measured at configure"
        return None
