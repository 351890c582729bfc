"""Compute budgets and the exit cap they imply.

A budget may bound the average cost per action (met by the thresholds), the
peak cost per step in GFLOPs or measured milliseconds, and the resident weight
memory (both met by the cap: the deepest exit allowed, past which segments are
not even loaded), plus a per-step deadline (met at run time by deadline mode).
Costs are cumulative per exit, from a CostProfile, in the chosen metric.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import get_args

import numpy as np

from deer_vla.core import CostMetric, CostProfile

METRICS: tuple[str, ...] = get_args(CostMetric)


def rounded_up(value: float, digits: int = 6) -> str:
    """``value`` to ``digits`` significant digits, never below it: a smallest feasible budget printed with :g
    could round down and the value the error told the user to use was refused again."""
    text = f"{value:.{digits}g}"
    if not math.isfinite(value) or value == 0 or float(text) >= value:
        return text
    step = 10.0 ** (math.floor(math.log10(abs(value))) - digits + 1)
    text = f"{math.ceil(value / step) * step:.{digits}g}"
    return text if float(text) >= value else repr(value)


class InfeasibleBudgetError(ValueError):
    """No exit of this model meets the budget; the message says the smallest feasible value."""


def _check_positive(name: str, value: float | int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"budget {name} must be a number, got {value!r}")
    if math.isnan(value):
        raise ValueError(f"budget {name} is NaN")
    if math.isinf(value):
        raise ValueError(f"budget {name} is infinite; leave it unset (None) for no limit")
    if value <= 0:
        raise ValueError(f"budget {name} must be positive, got {value}")


@dataclass(frozen=True)
class BudgetSpec:
    """What the user allows per action. Unset (None) fields impose no limit."""

    average_gflops: float | None = None  # mean cost per action over a run
    peak_gflops: float | None = None  # worst-case cost of any one step
    peak_ms: float | None = None  # worst-case measured (p99) time of any one step
    memory_bytes: int | None = None  # resident weights of the loaded exits
    deadline_ms: float | None = None  # per-step deadline enforced at run time
    metric: CostMetric = "llm_gflops"  # which cost column the GFLOPs budgets refer to

    def __post_init__(self) -> None:
        for name in ("average_gflops", "peak_gflops", "peak_ms", "memory_bytes", "deadline_ms"):
            value = getattr(self, name)
            # numpy's scalars (a budget computed from a profile's array) as the Python numbers they stand for
            if isinstance(value, np.integer):
                object.__setattr__(self, name, int(value))
            elif isinstance(value, np.floating):
                object.__setattr__(self, name, float(value))
            _check_positive(name, getattr(self, name))
        # an int is whole by definition (float() of 2**63-1 rounds, which must not make it "fractional");
        # a budget larger than any model simply loads every exit
        mem = self.memory_bytes
        if mem is not None and not isinstance(mem, int) and not float(mem).is_integer():
            raise ValueError(f"budget memory_bytes must be a whole number of bytes, got {self.memory_bytes}")
        if self.metric not in METRICS:
            raise ValueError(f"budget metric must be one of {METRICS}, got {self.metric!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BudgetSpec:
        known = {"average_gflops", "peak_gflops", "peak_ms", "memory_bytes", "deadline_ms", "metric"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown budget keys {sorted(unknown)}; known: {sorted(known)}")
        data = dict(data)
        if data.get("memory_bytes") is not None:
            mem = data["memory_bytes"]
            if isinstance(mem, float) and mem.is_integer():
                data["memory_bytes"] = int(mem)
        return cls(**data)


@dataclass(frozen=True)
class BudgetReport:
    """The cap a budget implies and which constraint decides it.

    cap: deepest exit allowed. cap_binding: the constraint that set the cap
    ("peak_gflops", "peak_ms", "memory_bytes", "average_gflops" when the
    average only fits by always stopping at exit 1, or "num_exits" when none
    binds). caps: the cap each constraint alone would allow. average_binding:
    whether the average budget is below the cost of always running the cap
    (so the thresholds must trade fidelity for compute).
    """

    cap: int
    cap_binding: str
    caps: dict[str, int]
    average_binding: bool
    cap_cost: float
    metric: str
    unenforced: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        parts = [f"cap exit {self.cap} (set by {self.cap_binding}; cost {self.cap_cost:g} {self.metric})"]
        parts.append("average budget binds" if self.average_binding else "average budget is slack or unset")
        if self.unenforced:
            parts.append(f"not enforced (profile has no latency): {', '.join(self.unenforced)}")
        return "; ".join(parts)


def step_worst_ms(profile: CostProfile, exit_index: int) -> float:
    """Measured p99 time of a step stopping at exit k: the profile's worst case + the commit head step."""
    head = profile.head_latency.p99_ms if profile.head_latency else 0.0
    return profile.worst_case_ms(exit_index, "p99") + head


def _deepest(values: list[float], limit: float) -> int:
    """Number of leading exits whose (non-decreasing) value fits ``limit``; 0 if none."""
    return sum(1 for v in values if v <= limit)


def budget_report(profile: CostProfile, budget: BudgetSpec, first_exit: int = 2) -> BudgetReport:
    """Validate ``budget`` against ``profile`` and derive the cap.

    first_exit: the first exit the exit criterion can stop at (``Criterion.first_exit``: 2, or 1 for the
    learned criterion with an exit-1 gate). Raises InfeasibleBudgetError naming the smallest feasible
    value when even exit 1 does not fit a constraint.
    """
    if first_exit not in (1, 2):
        raise ValueError(f"first_exit must be 1 or 2, got {first_exit!r}")
    if not isinstance(budget, BudgetSpec):
        raise TypeError(f"budget must be a BudgetSpec, got {type(budget).__name__}")
    n = profile.num_exits
    costs = profile.costs(budget.metric)
    caps: dict[str, int] = {}
    unenforced: list[str] = []
    if budget.peak_gflops is not None:
        caps["peak_gflops"] = _deepest(costs, budget.peak_gflops)
        if caps["peak_gflops"] == 0:
            raise InfeasibleBudgetError(
                f"peak budget {budget.peak_gflops:g} GFLOPs is below exit 1's cost {costs[0]:g} GFLOPs "
                f"({budget.metric}); the smallest feasible peak budget is {rounded_up(costs[0])}"
            )
    if budget.memory_bytes is not None:
        caps["memory_bytes"] = _deepest([float(b) for b in profile.weight_bytes], float(budget.memory_bytes))
        if caps["memory_bytes"] == 0:
            raise InfeasibleBudgetError(
                f"memory budget {budget.memory_bytes} bytes is below what running exit 1 holds, "
                f"{profile.weight_bytes[0]} bytes (its weights, and the exit gates where the checkpoint has them: "
                f"`deer-vla profile` lists the weights alone); the smallest feasible memory budget is "
                f"{profile.weight_bytes[0]}"
            )
    for name in ("peak_ms", "deadline_ms"):
        limit = getattr(budget, name)
        if limit is None:
            continue
        if not profile.has_latency():
            unenforced.append(name)
            continue
        worst = [step_worst_ms(profile, k) for k in range(1, n + 1)]
        deepest = _deepest(worst, limit)
        if deepest == 0:
            what = "peak time budget" if name == "peak_ms" else "deadline"
            raise InfeasibleBudgetError(
                f"{what} {limit:g} ms is below exit 1's measured p99 time {worst[0]:g} ms on {profile.device}; "
                f"the smallest feasible {name} is {rounded_up(worst[0])}"
            )
        if name == "peak_ms":  # the deadline is enforced per step at run time, not by the cap
            caps[name] = deepest
    if unenforced:
        warnings.warn(
            f"budget {', '.join(unenforced)} cannot be enforced: the cost profile has no measured latency",
            stacklevel=2,
        )
    cap, binding = n, "num_exits"
    for name, value in caps.items():
        if value < cap:
            cap, binding = value, name
    average_binding = False
    if budget.average_gflops is not None:
        if budget.average_gflops < costs[0]:
            raise InfeasibleBudgetError(
                f"average budget {budget.average_gflops:g} GFLOPs is below exit 1's cost {costs[0]:g} GFLOPs "
                f"({budget.metric}); the smallest feasible average budget is {rounded_up(costs[0])}"
            )
        average_binding = budget.average_gflops < costs[cap - 1]
        # A criterion that can first stop at exit 2 meets an average between
        # exit 1's and exit 2's cost only by always stopping at exit 1.
        if first_exit == 2 and cap >= 2 and budget.average_gflops < costs[1]:
            caps["average_gflops"] = 1
            cap, binding = 1, "average_gflops"
    return BudgetReport(
        cap=cap,
        cap_binding=binding,
        caps=caps,
        average_binding=average_binding,
        cap_cost=costs[cap - 1],
        metric=budget.metric,
        unenforced=tuple(unenforced),
    )


def exit_cap(profile: CostProfile, budget: BudgetSpec, first_exit: int = 2) -> int:
    """Deepest exit whose cumulative cost, p99 time and weight memory fit the budget (see budget_report)."""
    return budget_report(profile, budget, first_exit).cap
