"""The fidelity guarantee a set of thresholds carries (see ``risk`` for how it is obtained).

Kept apart from ``risk`` so ``thresholds`` can hold one without importing the
statistics. The statement: with probability >= 1 - delta over the draw of the
``n_calibration`` calibration steps, the risk of these thresholds on a fresh
step from the same distribution is <= eps, where the risk is

* ``metric="mean"``: the mean distance (RMS over the motion axes, gripper
  ignored) between the executed action and the full model's, each step's
  distance clipped at ``bound``;
* ``metric="exceed"``: the rate of steps whose distance exceeds ``tau``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

RiskMetric = Literal["mean", "exceed"]
RISK_METRICS: tuple[str, ...] = ("mean", "exceed")


def _finite(name: str, value: Any, low: float, high: float, closed_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"guarantee {name} must be a finite number, got {value!r}")
    ok = (value >= low if closed_low else value > low) and value <= high
    if not ok:
        raise ValueError(f"guarantee {name} must be in {'[' if closed_low else '('}{low:g}, {high:g}], got {value}")
    return float(value)


@dataclass(frozen=True)
class RiskFamilyData:
    """The ordered threshold family the guarantee was tested over, and what each member did on the
    calibration steps: enough to re-run the test for another (eps, delta) without the data."""

    base: list[float]  # eta_first..eta_N at scale 1 (first: the criterion's first exit)
    scales: list[float]  # ascending: strict (scale 0 runs to the cap) -> loose
    costs: list[float]  # mean cost per scale on the calibration steps (the thresholds' metric)
    risks: list[float]  # empirical risk per scale on the calibration steps
    eps_needed: list[float]  # least eps certifying each member at ``delta`` (non-decreasing)
    delta: float  # the level the family was tested at
    cap: int  # the exit cap the family was evaluated under

    def __post_init__(self) -> None:
        m = len(self.scales)
        if m == 0 or not len(self.costs) == len(self.risks) == len(self.eps_needed) == m:
            raise ValueError(f"guarantee family needs equal, non-empty scales/costs/risks/eps_needed, got "
                             f"{m}/{len(self.costs)}/{len(self.risks)}/{len(self.eps_needed)}")
        if any(b < a for a, b in zip(self.eps_needed, self.eps_needed[1:])):
            raise ValueError("guarantee family eps_needed must be non-decreasing (a fixed-sequence test)")
        _finite("family delta", self.delta, 0.0, 1.0)
        if any(b < a for a, b in zip(self.scales, self.scales[1:])) or self.scales[0] < 0:
            raise ValueError("guarantee family scales must be >= 0 and ascending (strict -> loose)")
        for name in ("base", "scales", "costs", "risks", "eps_needed"):
            vals = getattr(self, name)
            if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in vals):
                raise ValueError(f"guarantee family {name} must be finite numbers >= 0")
        if isinstance(self.cap, bool) or not isinstance(self.cap, int) or self.cap < 1:
            raise ValueError(f"guarantee family cap must be an exit >= 1, got {self.cap!r}")

    def to_dict(self) -> dict:
        return {"base": list(self.base), "scales": list(self.scales), "costs": list(self.costs),
                "risks": list(self.risks), "eps_needed": list(self.eps_needed), "delta": self.delta,
                "cap": self.cap}

    @classmethod
    def from_dict(cls, data: dict) -> RiskFamilyData:
        if not isinstance(data, dict):
            raise ValueError("guarantee family must be an object")
        unknown = set(data) - {"base", "scales", "costs", "risks", "eps_needed", "delta", "cap"}
        if unknown:
            raise ValueError(f"unknown guarantee family keys {sorted(unknown)}")
        try:
            return cls(base=[float(v) for v in data["base"]], scales=[float(v) for v in data["scales"]],
                       costs=[float(v) for v in data["costs"]], risks=[float(v) for v in data["risks"]],
                       eps_needed=[float(v) for v in data["eps_needed"]], delta=data["delta"], cap=data["cap"])
        except KeyError as exc:
            raise ValueError(f"guarantee family lacks {exc.args[0]!r}") from None


@dataclass(frozen=True)
class Guarantee:
    """The guarantee in force: risk <= eps with probability >= 1 - delta (module docstring)."""

    eps: float
    delta: float
    metric: RiskMetric
    n_calibration: int
    bound: float  # per-step distance clip (metric "mean"); distances of actions in [-1, 1] are <= 2
    tau: float | None = None  # distance limit (metric "exceed")
    scale: float = 1.0  # the certified family member (thresholds = base * scale)
    procedure: str = "ltt-fixed-sequence"
    family: RiskFamilyData | None = field(default=None, compare=False)
    unit: str = "step"  # what n_calibration counts and the risk averages over: "step" or "episode"

    def __post_init__(self) -> None:
        if self.metric not in RISK_METRICS:
            raise ValueError(f"guarantee metric must be one of {RISK_METRICS}, got {self.metric!r}")
        _finite("delta", self.delta, 0.0, 1.0)
        if self.delta >= 1:
            raise ValueError(f"guarantee delta must be < 1, got {self.delta}")
        _finite("bound", self.bound, 0.0, math.inf)
        _finite("eps", self.eps, 0.0, self.bound if self.metric == "mean" else 1.0)
        if self.metric == "exceed":
            if self.tau is None:
                raise ValueError("guarantee metric 'exceed' needs tau (the distance limit)")
            _finite("tau", self.tau, 0.0, math.inf, closed_low=True)
        elif self.tau is not None:
            raise ValueError("guarantee tau applies to metric 'exceed' only")
        if isinstance(self.n_calibration, bool) or not isinstance(self.n_calibration, int) or self.n_calibration < 1:
            raise ValueError(f"guarantee n_calibration must be an int >= 1, got {self.n_calibration!r}")
        _finite("scale", self.scale, 0.0, math.inf, closed_low=True)
        if self.unit not in ("step", "episode"):
            raise ValueError(f"guarantee unit must be 'step' or 'episode', got {self.unit!r}")

    def describe(self) -> str:
        what = (f"mean action distance (clipped at {self.bound:g})" if self.metric == "mean"
                else f"rate of steps with action distance > {self.tau:g}")
        return (f"{what} <= {self.eps:g} with probability >= {1 - self.delta:g} "
                f"({self.procedure}, {self.n_calibration} calibration {self.unit}s)")

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"eps": self.eps, "delta": self.delta, "metric": self.metric, "tau": self.tau,
                               "n_calibration": self.n_calibration, "bound": self.bound, "scale": self.scale,
                               "procedure": self.procedure, "unit": self.unit}
        if self.family is not None:
            out["family"] = self.family.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Guarantee:
        if not isinstance(data, dict):
            raise ValueError("thresholds guarantee must be an object")
        known = {"eps", "delta", "metric", "tau", "n_calibration", "bound", "scale", "procedure", "family", "unit"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown guarantee keys {sorted(unknown)}")
        missing = {"eps", "delta", "metric", "n_calibration", "bound"} - set(data)
        if missing:
            raise ValueError(f"thresholds guarantee lacks {sorted(missing)}")
        family = RiskFamilyData.from_dict(data["family"]) if data.get("family") is not None else None
        return cls(eps=data["eps"], delta=data["delta"], metric=data["metric"], tau=data.get("tau"),
                   n_calibration=data["n_calibration"], bound=data["bound"], scale=data.get("scale", 1.0),
                   procedure=data.get("procedure", "ltt-fixed-sequence"), family=family,
                   unit=data.get("unit", "step"))
