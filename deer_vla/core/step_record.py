"""The per-step compute record: what the controller decided and what it cost.

Published by the policy node (JSON in a std_msgs/String, since an
ament_python package cannot define new message types), logged by the monitor.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Literal, get_args

# why the controller stopped: the consistency test passed, the budget's exit cap or the deadline was reached,
# a fixed exit was asked for, or the oracle chose (evaluation only)
StopReason = Literal["threshold", "cap", "deadline", "fixed", "oracle"]
STOP_REASONS: tuple[StopReason, ...] = get_args(StopReason)


@dataclass
class StepRecord:
    step: int  # control step within the run
    episode: int
    exit_used: int  # 1-based exit whose action was taken
    max_exit: int  # deepest exit allowed at this step (cap)
    stop_reason: StopReason
    llm_gflops: float  # cumulative LLM cost of the exits that ran
    total_gflops: float  # cumulative whole-pipeline cost
    encode_ms: float = 0.0  # vision + resampler + embeddings wall time
    segment_ms: list[float] = field(default_factory=list)  # wall time per segment that ran
    head_ms: float = 0.0  # total action-head time this step
    total_ms: float = 0.0  # whole step wall time (model side)
    # the criterion's score at each exit it tested and the eta_k in force there (after scaling), from exit
    # distances_from_exit on: 2 (DeeR's consecutive criterion), 1 for the learned one with an exit-1 gate
    distances: list[float] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    distances_from_exit: int = 2
    threshold_scale: float = 1.0  # online tracker multiplier
    running_mean_gflops: float = 0.0  # mean cost so far (budget metric)
    budget_average_gflops: float | None = None
    budget_peak_gflops: float | None = None
    budget_peak_ms: float | None = None
    budget_memory_bytes: int | None = None
    deadline_ms: float | None = None
    stamp_ns: int = 0
    action: list[float] = field(default_factory=list)
    # camera stamp (the oldest camera's) -> action published, node clock; None where no node published it
    obs_age_ms: float | None = None
    # the fidelity guarantee in force (control.risk), None without one: risk <= risk_eps with
    # probability >= 1 - risk_delta, certified on risk_n_calibration steps
    risk_eps: float | None = None
    risk_delta: float | None = None
    risk_metric: str | None = None  # "mean" (action distance clipped at risk_bound) | "exceed" (distance > risk_tau)
    risk_tau: float | None = None
    risk_bound: float | None = None
    risk_n_calibration: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> StepRecord:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("step record JSON must be an object")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"step record has unknown keys {sorted(unknown)}")
        if data.get("stop_reason") not in STOP_REASONS:
            raise ValueError(f"step record stop_reason {data.get('stop_reason')!r} is not one of {STOP_REASONS}")
        return cls(**data)
