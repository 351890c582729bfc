"""Per-exit cost of a multi-exit policy: what the budgets are checked against.

Indices are 1-based exits as in the paper: exit k means segments 1..k ran.
FLOPs follow torch's FlopCounterMode convention (one multiply-add = 2 FLOPs).
The original DeeR paper counts one multiply-add as one FLOP; divide by 2 to
compare. "llm" covers the decoder segments + gated cross-attention (the
paper's convention); "total" adds vision, resampler and action head. With
the learned exit criterion both also charge the exit gates, one evaluation
at every exit from the criterion's first one on (``with_exit_gates``; exit 1
with an exit-1 gate, else 2): compute spent on the exit decision is compute,
whichever metric the budget is in.
"""
from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from deer_vla.core.atomic_file import atomic_write_text
from deer_vla.core.json_text import JsonTextError, read_json_file

CostMetric = Literal["llm_gflops", "total_gflops"]


@dataclass
class LatencyStats:
    median_ms: float
    p95_ms: float
    p99_ms: float
    samples: int


@dataclass
class CostProfile:
    llm_gflops: list[float]  # cumulative up to exit k
    total_gflops: list[float]  # cumulative, whole pipeline up to exit k
    params: list[int]  # parameters resident when loaded up to exit k
    weight_bytes: list[int]  # bytes of those parameters (+ buffers)
    # Measured on `device`; per segment k (not cumulative). Optional: FLOPs-only
    # profiles (analytic, no timing) leave them empty.
    segment_latency: list[LatencyStats] = field(default_factory=list)
    encode_latency: LatencyStats | None = None  # vision + resampler + embeddings
    head_latency: LatencyStats | None = None  # one action-head step
    device: str = "cpu"
    dtype: str = "float32"
    # GFLOPs of one exit-gate evaluation already included in the costs above (0: no gates charged),
    # one at each exit from gate_first_exit on
    gate_gflops: float = 0.0
    gate_first_exit: int = 2
    # the machine the latencies were measured on (model.profiling.machine_id(); "" in profiles written before
    # it was recorded): a shipped checkpoint's timings are another machine's, no base for a time budget here
    machine: str = ""

    def __post_init__(self) -> None:
        n = len(self.llm_gflops)
        if n == 0:
            raise ValueError("CostProfile needs at least one exit")
        if not (isinstance(self.gate_gflops, (int, float)) and 0 <= self.gate_gflops < float("inf")):
            raise ValueError(f"CostProfile.gate_gflops must be finite and >= 0, got {self.gate_gflops!r}")
        if self.gate_first_exit not in (1, 2) or isinstance(self.gate_first_exit, bool):
            raise ValueError(f"CostProfile.gate_first_exit must be 1 or 2, got {self.gate_first_exit!r}")
        for name in ("total_gflops", "params", "weight_bytes"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"CostProfile.{name} has {len(getattr(self, name))} entries, llm_gflops has {n}")
        if self.segment_latency and len(self.segment_latency) != n:
            raise ValueError(f"CostProfile.segment_latency has {len(self.segment_latency)} entries for {n} exits")
        for name in ("llm_gflops", "total_gflops", "params", "weight_bytes"):
            values = getattr(self, name)
            # read from profile.json: a string, NaN or a negative cost would surface later as a budget or tracker
            # error naming no file
            if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 <= float(v) < float("inf")
                       for v in values):
                raise ValueError(f"CostProfile.{name} must be finite numbers >= 0, got {values}")
            if any(b < a for a, b in zip(values, values[1:])):
                raise ValueError(f"CostProfile.{name} must be non-decreasing over exits, got {values}")

    @property
    def num_exits(self) -> int:
        return len(self.llm_gflops)

    def cost(self, exit_index: int, metric: CostMetric = "llm_gflops") -> float:
        """Cumulative cost of stopping at 1-based ``exit_index``."""
        if not 1 <= exit_index <= self.num_exits:
            raise IndexError(f"exit {exit_index} outside 1..{self.num_exits}")
        return float(getattr(self, metric)[exit_index - 1])

    def costs(self, metric: CostMetric = "llm_gflops") -> list[float]:
        return [float(v) for v in getattr(self, metric)]

    def has_latency(self) -> bool:
        return bool(self.segment_latency)

    def worst_case_ms(self, exit_index: int, quantile: Literal["median", "p95", "p99"] = "p99") -> float:
        """Measured time to reach exit k: encode + segments 1..k + one head step per exit tried."""
        if not self.has_latency():
            raise ValueError("this cost profile has no measured latency; profile the model on the device first")
        key = f"{quantile}_ms"
        total = getattr(self.encode_latency, key) if self.encode_latency else 0.0
        head = getattr(self.head_latency, key) if self.head_latency else 0.0
        for seg in self.segment_latency[:exit_index]:
            total += getattr(seg, key) + head
        return float(total)

    def describes(self, num_exits: int, device: str, dtype: str) -> bool:
        """Whether this profile is of a model with ``num_exits`` exits in ``dtype`` on ``device`` (a type,
        "cpu"/"cuda"): a bfloat16 model's profile holds half a float32 model's bytes, and its times."""
        return self.num_exits == num_exits and self.device == device and self.dtype == dtype

    def with_resident_bytes(self, extra: int) -> CostProfile:
        """This profile with ``extra`` bytes held beside every exit's weights (e.g. the exit gates, loaded
        whole whatever the cap): what a memory budget is checked against."""
        if isinstance(extra, bool) or not isinstance(extra, int) or extra < 0:
            raise ValueError(f"extra resident bytes must be an int >= 0, got {extra!r}")
        return replace(self, weight_bytes=[b + extra for b in self.weight_bytes]) if extra else self

    def with_exit_gates(self, gflops: float, first_exit: int) -> CostProfile:
        """This profile with the learned criterion's gates charged: exit k adds (k + 1 - first_exit) * ``gflops``
        (one gate evaluation at each of exits first_exit..k; first_exit 1 with an exit-1 gate, else 2) to both
        metrics. Raises if gates are charged already."""
        if self.gate_gflops:
            raise ValueError(f"this cost profile already charges exit gates ({self.gate_gflops:g} GFLOPs each)")
        if not (0 < gflops < float("inf")):
            raise ValueError(f"exit gate GFLOPs must be finite and > 0, got {gflops!r}")
        if first_exit not in (1, 2):
            raise ValueError(f"first_exit must be 1 or 2, got {first_exit!r}")
        extra = [max(k + 1 - first_exit, 0) * gflops for k in range(1, self.num_exits + 1)]
        return replace(self, llm_gflops=[c + e for c, e in zip(self.llm_gflops, extra)],
                       total_gflops=[c + e for c, e in zip(self.total_gflops, extra)], gate_gflops=float(gflops),
                       gate_first_exit=first_exit)

    def truncated(self, max_exit: int) -> CostProfile:
        """The profile of the same model loaded only up to ``max_exit``."""
        if not 1 <= max_exit <= self.num_exits:
            raise IndexError(f"max_exit {max_exit} outside 1..{self.num_exits}")
        return CostProfile(
            llm_gflops=self.llm_gflops[:max_exit],
            total_gflops=self.total_gflops[:max_exit],
            params=self.params[:max_exit],
            weight_bytes=self.weight_bytes[:max_exit],
            segment_latency=self.segment_latency[:max_exit],
            encode_latency=self.encode_latency,
            head_latency=self.head_latency,
            device=self.device,
            dtype=self.dtype,
            gate_gflops=self.gate_gflops,
            gate_first_exit=self.gate_first_exit,
            machine=self.machine,
        )

    def to_dict(self) -> dict:
        out = asdict(self)
        if not self.gate_gflops:  # absent when no gates are charged, so profiles written before keep their bytes
            del out["gate_gflops"]
            del out["gate_first_exit"]
        if not self.machine:
            del out["machine"]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> CostProfile:
        if not isinstance(data, dict):
            raise ValueError(f"a cost profile is a JSON object, got {type(data).__name__}")
        data = dict(data)
        lat = lambda d: LatencyStats(**d) if d else None
        data["segment_latency"] = [LatencyStats(**d) for d in data.get("segment_latency", [])]
        data["encode_latency"] = lat(data.get("encode_latency"))
        data["head_latency"] = lat(data.get("head_latency"))
        return cls(**data)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))  # a crash mid-write keeps the old profile

    @classmethod
    def load(cls, path: str | Path) -> CostProfile:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"cost profile file not found: {path}")
        try:
            return cls.from_dict(read_json_file(path))
        except JsonTextError as exc:
            raise ValueError(f"cost profile {path}: {exc}") from exc
