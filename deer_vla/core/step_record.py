"""The per-step compute record: what the controller decided and what it cost.

Published by the policy node (JSON in a std_msgs/String, since an
ament_python package cannot define new message types), logged by the monitor.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from deer_vla.core.json_text import JsonTextError, parse_json

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
    encode_ms: float = 0.0  # wall time to tokens: a node's frame decode, resize, vision, resampler, embeddings
    segment_ms: list[float] = field(default_factory=list)  # wall time per exit that ran: segment + its action head
    head_ms: float = 0.0  # the commit's time (the history's head step where it runs one), after the last exit
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
    # the cost column the GFLOPs budgets above refer to (the policy's budget.metric); None in records written
    # before it was recorded, whose readers assume their own
    budget_metric: str | None = None
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
    # whether this step's action went out to the robot (false: gated, disabled, or overtaken by a halt or a new
    # episode); None: not said (records written before). A lock-step simulator pairs actions with observations
    # by it and stamp_ns
    actuated: bool | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> StepRecord:
        try:
            data = parse_json(text)
        except JsonTextError as exc:  # RecursionError among them, which would escape a caller's ValueError handler
            raise ValueError(f"step record: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError("step record JSON must be an object")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"step record has unknown keys {sorted(unknown)}")
        if data.get("stop_reason") not in STOP_REASONS:
            raise ValueError(f"step record stop_reason {data.get('stop_reason')!r} is not one of {STOP_REASONS}")
        missing = [f.name for f in fields(cls)
                   if f.default is MISSING and f.default_factory is MISSING and f.name not in data]
        if missing:
            raise ValueError(f"step record is missing {missing}")
        problems = _field_problems(data)
        if problems:
            raise ValueError("step record has " + "; ".join(problems))
        return cls(**data)


# Checked at the parse boundary (monitor, recordings): a reader sums and plots these, so one NaN or
# string from a hostile or broken publisher must be refused here, not poison a running mean forever.
MAX_EXIT = 1024  # far more exits than any model has layers
# a cost, time or budget beyond any robot's (1e9 GFLOPs or ms in one step): a finite 1e308 passed, and two of them
# made the running mean inf (and summary.json's "Infinity", which strict JSON readers refuse) for the whole run
MAX_MAGNITUDE = 1e9
_COUNTS = ("step", "episode")
_EXITS = ("exit_used", "max_exit", "distances_from_exit")
_COSTS = ("llm_gflops", "total_gflops", "encode_ms", "head_ms", "total_ms", "running_mean_gflops")
_OPTIONAL_NUMBERS = ("budget_average_gflops", "budget_peak_gflops", "budget_peak_ms", "deadline_ms",
                     "obs_age_ms", "risk_eps", "risk_delta", "risk_tau", "risk_bound")
# lists of numbers, and what each must be: times and actions are finite (a reader sums and plots them, and
# JSON has no NaN or Infinity); scores and eta_k may be +inf (an exit never taken), never NaN
_NUMBER_LISTS: dict[str, tuple[Callable[[float], bool], str]] = {
    "segment_ms": (lambda v: 0 <= v <= MAX_MAGNITUDE, f"a list of numbers in 0..{MAX_MAGNITUDE:g}"),
    "action": (lambda v: abs(v) <= MAX_MAGNITUDE, f"a list of numbers in -{MAX_MAGNITUDE:g}..{MAX_MAGNITUDE:g}"),
    "distances": (lambda v: v >= 0, "a list of numbers >= 0 (inf allowed, not NaN)"),
    "thresholds": (lambda v: not math.isnan(v), "a list of numbers (inf allowed, not NaN)"),
}


MAX_COUNT = 2**63 - 1  # step and episode counters: an int64, as everywhere they are written


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    """A JSON number a reader can take as a float: JSON integers are unbounded, and float(10**400)
    raises OverflowError, which no reader's ValueError handler catches."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        float(v)
    except OverflowError:
        return False
    return True


def _is_finite(v: object) -> bool:
    return _is_number(v) and math.isfinite(v)  # type: ignore[arg-type]


def _is_plausible(v: object) -> bool:
    """A number a reader may sum over a whole run without overflow: finite, and within MAX_MAGNITUDE."""
    return _is_finite(v) and abs(v) <= MAX_MAGNITUDE  # type: ignore[arg-type]


def _field_problems(data: dict[str, Any]) -> list[str]:
    bad: list[str] = []

    def need(ok: bool, name: str, what: str) -> None:
        if not ok:
            text = repr(data.get(name))
            bad.append(f"'{name}' {text[:60] + '...' if len(text) > 60 else text} (must be {what})")

    for name in _COUNTS:
        need(_is_int(data[name]) and 0 <= data[name] <= MAX_COUNT, name, "an integer in 0..2^63-1")
    for name in _EXITS:
        if name in data:
            need(_is_int(data[name]) and 1 <= data[name] <= MAX_EXIT, name, f"an integer in 1..{MAX_EXIT}")
    if not bad and data["exit_used"] > data["max_exit"]:
        bad.append(f"'exit_used' {data['exit_used']} above 'max_exit' {data['max_exit']}")
    for name in _COSTS:
        if name in data:
            need(_is_plausible(data[name]) and data[name] >= 0, name, f"a number in 0..{MAX_MAGNITUDE:g}")
    if "threshold_scale" in data:
        need(_is_plausible(data["threshold_scale"]), "threshold_scale", f"a number within ±{MAX_MAGNITUDE:g}")
    if "stamp_ns" in data:
        need(_is_int(data["stamp_ns"]) and 0 <= data["stamp_ns"] < 2**64, "stamp_ns", "an integer in 0..2^64-1")
    for name in _OPTIONAL_NUMBERS:  # finite: written back as JSON, where NaN and Infinity are not numbers
        if data.get(name) is not None:
            need(_is_plausible(data[name]), name, f"a number within ±{MAX_MAGNITUDE:g}, or null")
    # every field is checked, also one that only matters beside another (a nested list in risk_metric without
    # risk_eps passed, and writing the record back overflowed the stack)
    need(data.get("budget_metric") in (None, "llm_gflops", "total_gflops"), "budget_metric",
         "'llm_gflops', 'total_gflops' or null")
    need(data.get("risk_metric") in (None, "mean", "exceed"), "risk_metric", "'mean', 'exceed' or null")
    need(data.get("actuated") is None or isinstance(data["actuated"], bool), "actuated", "true, false or null")
    for name in ("budget_memory_bytes", "risk_n_calibration"):
        if data.get(name) is not None:
            need(_is_int(data[name]) and data[name] >= 0, name, "an integer >= 0 or null")
    for name, (ok, what) in _NUMBER_LISTS.items():
        if name in data:
            value = data[name]
            need(isinstance(value, list) and all(_is_number(v) and ok(float(v)) for v in value), name, what)
    if data.get("risk_eps") is not None:  # a guarantee in force names all of its terms
        need(_is_finite(data.get("risk_delta")) and 0 <= data["risk_delta"] <= 1, "risk_delta",
             "a number in [0, 1] with risk_eps")
        need(data.get("risk_metric") in ("mean", "exceed"), "risk_metric", "'mean' or 'exceed' with risk_eps")
        if data.get("risk_metric") == "exceed":  # the guarantee is about distances above tau: it needs tau
            need(_is_finite(data.get("risk_tau")), "risk_tau", "a finite number with risk_metric 'exceed'")
    return bad
