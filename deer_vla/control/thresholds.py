"""Exit thresholds eta_k (k from the criterion's first exit, 2 or 1, to N) and the quantile solver that
meets an average budget.

Quantile method (DeeR, from a calibration set of recorded per-exit actions):
choose target fractions p_k of steps leaving at each exit (a one-parameter
shape, e.g. geometric p_k ∝ q^k), solve the parameter so the expected cost
meets the average budget (the original leaves q to the user; we solve it by
bisection), then walk the exits in order and set eta_k so that exactly that
fraction of the not-yet-exited calibration steps stops at k.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from scipy.optimize import brentq
from scipy.special import logsumexp

from deer_vla.control.budgets import METRICS, BudgetSpec, InfeasibleBudgetError, budget_report, rounded_up
from deer_vla.control.criterion import Criterion, check_exit_actions, criterion_scores
from deer_vla.control.guarantee import Guarantee
from deer_vla.core import CostMetric, CostProfile
from deer_vla.core.atomic_file import atomic_write_text
from deer_vla.core.json_text import JsonTextError, read_json_file

Shape = Literal["geometric", "gaussian", "gamma"]
SHAPES: tuple[str, ...] = ("geometric", "gaussian", "gamma")


# The largest thresholds file read (whole): one is a few KB
MAX_FILE_BYTES = 16 << 20

@dataclass
class Thresholds:
    """eta_k for exits first..N and how they were obtained; first is the criterion's ``first_exit`` (2, or 1
    for the learned criterion with an exit-1 gate) and ``values[0]`` is eta_first."""

    values: list[float]
    budget: BudgetSpec | None = None  # the budget they were solved for
    metric: CostMetric = "llm_gflops"
    method: str = "manual"  # "quantile" | "bayes" | "manual"
    expected_cost: float | None = None  # mean cost on the calibration set
    exit_distribution: list[float] = field(default_factory=list)  # fraction of steps at exits 1..N
    criterion: Criterion = field(default_factory=Criterion)
    guarantee: Guarantee | None = None  # the fidelity guarantee they were certified for (control.risk)
    # SHA-256 of the checkpoint weights they were solved on (None: not recorded, as in files from before it was):
    # checkpoints of one architecture take each other's files structurally, but thresholds fit one model's
    # exit-to-exit action differences only
    weights_sha256: str | None = None
    # SHA-256 of the exit-gates file they were solved with (learned criterion; None: not recorded): the learned
    # criterion's scores are those gates' predictions, so retrained gates make the thresholds mean something else
    gates_sha256: str | None = None
    # SHA-256 of the checkpoint's config as validated (CheckpointDir.config_digest; None: not recorded): an edited
    # config.json that keeps every tensor's shape (attention heads, norm eps, action scale, camera order, head
    # history) makes the same weights compute another policy
    config_sha256: str | None = None

    def __post_init__(self) -> None:
        try:
            values = [float(v) for v in self.values]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"threshold values must be numbers, got {self.values!r}") from exc
        for k, v in enumerate(values, start=self.first_exit):
            if math.isnan(v):
                raise ValueError(f"threshold eta_{k} is NaN")
            if math.isinf(v):
                raise ValueError(f"threshold eta_{k} is infinite; thresholds must be finite")
            if v < 0:
                raise ValueError(f"threshold eta_{k} must be >= 0, got {v}")
        self.values = values
        if self.metric not in METRICS:
            raise ValueError(f"thresholds metric must be one of {METRICS}, got {self.metric!r}")
        if self.exit_distribution:
            dist = [float(p) for p in self.exit_distribution]
            if len(dist) != self.num_exits:  # either may be the one cut short: name both
                raise ValueError(f"thresholds exit_distribution has {len(dist)} fractions (exits 1..{len(dist)}) but "
                                 f"'values' has {len(values)} thresholds (exits {self.first_exit}.."
                                 f"{self.num_exits}): one of the two was cut or edited")
            if any(not (0 <= p <= 1) for p in dist) or abs(sum(dist) - 1) > 1e-3:
                raise ValueError(
                    f"thresholds exit_distribution must be {self.num_exits} fractions in [0, 1] summing to 1, "
                    f"got {dist}"
                )
            self.exit_distribution = dist
        fam = self.guarantee.family if self.guarantee is not None else None
        if fam is not None and len(fam.base) != len(values):
            raise ValueError(f"thresholds guarantee family has {len(fam.base)} base values, thresholds {len(values)}")
        if fam is not None and self.guarantee is not None:
            scale = self.guarantee.scale
            certified = [b * scale for b in fam.base]
            if not all(math.isclose(v, c, rel_tol=1e-9, abs_tol=1e-12) for v, c in zip(values, certified)):
                # edited by hand: every step record would still claim a guarantee no calibration gave them
                raise ValueError(f"threshold values {values} are not the certified family's base x scale "
                                 f"({scale:g}) = {certified}: the fidelity guarantee does not cover them; "
                                 "recalibrate with `deer-vla calibrate --risk`, or drop the 'guarantee' entry")
        if self.expected_cost is not None and not (math.isfinite(self.expected_cost) and self.expected_cost >= 0):
            raise ValueError(f"thresholds expected_cost must be finite and >= 0, got {self.expected_cost}")
        for name in ("weights_sha256", "gates_sha256", "config_sha256"):
            digest = getattr(self, name)
            if digest is not None and not (isinstance(digest, str) and len(digest) == 64
                                           and all(c in "0123456789abcdef" for c in digest)):
                raise ValueError(f"thresholds {name} must be 64 hex digits (lower case), got {digest!r}")

    @property
    def first_exit(self) -> int:
        """The first exit these thresholds can stop at (their criterion's)."""
        return self.criterion.first_exit

    @property
    def num_exits(self) -> int:
        return len(self.values) + self.first_exit - 1

    def eta(self, exit_index: int) -> float:
        if not self.first_exit <= exit_index <= self.num_exits:
            raise IndexError(f"thresholds cover exits {self.first_exit}..{self.num_exits}, asked for exit "
                             f"{exit_index}")
        return self.values[exit_index - self.first_exit]

    def check_covers(self, num_exits: int) -> None:
        """Raise unless these thresholds cover exits first..num_exits."""
        if self.num_exits < num_exits:
            raise ValueError(
                f"thresholds have {len(self.values)} values (exits {self.first_exit}..{self.num_exits}) but the "
                f"policy may run up to exit {num_exits}: need {num_exits + 1 - self.first_exit} values"
            )

    def check_solved_on(self, weights_digest: Callable[[], str], where: str, checkpoint: str,
                        gates_digest: Callable[[], str | None] | None = None,
                        gates_file_digest: Callable[[], str | None] | None = None,
                        config_digests: Callable[[], Sequence[str]] | None = None) -> None:
        """Raise ValueError if these thresholds (read from ``where``) record other weights than the checkpoint's,
        or other exit gates than its gates file (``gates_digest``: their SHA-256, None without one;
        ``gates_file_digest``: the file's bytes', which older thresholds record), or another config
        (``config_digests``: the ones the checkpoint's config answers to, CheckpointDir.config_digests). Each
        digest is only computed when they record one: hashing costs."""
        if self.weights_sha256 is not None:
            actual = weights_digest()
            if actual != self.weights_sha256:
                raise ValueError(
                    f"{where} was solved on other weights (sha256 {self.weights_sha256[:12]}...) than {checkpoint}'s "
                    f"({actual[:12]}...): thresholds fit only the model they were solved on; use that checkpoint's "
                    "own thresholds, or calibrate this one (`deer-vla calibrate --checkpoint ... --out DIR`)")
        if self.config_sha256 is not None and config_digests is not None:
            accepted = config_digests()
            if self.config_sha256 not in accepted:
                actual = accepted[0]
                raise ValueError(
                    f"{where} was solved on these weights with another config (sha256 {self.config_sha256[:12]}...) "
                    f"than {checkpoint}'s config.json ({actual[:12]}...): an edited config (attention heads, norm "
                    "eps, action scale, cameras, head history) makes the weights compute another policy; undo the "
                    "edit, or calibrate this one (`deer-vla calibrate --checkpoint ... --out DIR`)")
        if self.gates_sha256 is not None and gates_digest is not None:
            gates = gates_digest()  # None: no gates file, which the learned criterion reports itself
            if (gates is not None and gates != self.gates_sha256
                    and (gates_file_digest is None or gates_file_digest() != self.gates_sha256)):
                raise ValueError(
                    f"{where} was solved with other exit gates (sha256 {self.gates_sha256[:12]}...) than "
                    f"{checkpoint}'s gates.safetensors ({gates[:12]}...): the learned criterion's thresholds fit only "
                    "the gates they were solved with; calibrate again after `deer-vla train-gate` "
                    "(`deer-vla calibrate --checkpoint ... --criterion learned --out DIR`)")

    def to_dict(self) -> dict:
        out = {
            "values": list(self.values),
            "budget": self.budget.to_dict() if self.budget else None,
            "metric": self.metric,
            "method": self.method,
            "expected_cost": self.expected_cost,
            "exit_distribution": list(self.exit_distribution),
            "criterion": self.criterion.to_dict(),
        }
        if self.guarantee is not None:  # absent otherwise, so files without one stay as they were
            out["guarantee"] = self.guarantee.to_dict()
        if self.weights_sha256 is not None:  # likewise
            out["weights_sha256"] = self.weights_sha256
        if self.gates_sha256 is not None:  # likewise
            out["gates_sha256"] = self.gates_sha256
        if self.config_sha256 is not None:  # likewise
            out["config_sha256"] = self.config_sha256
        return out

    @classmethod
    def from_dict(cls, data: dict, num_exits: int | None = None) -> Thresholds:
        if not isinstance(data, dict):
            raise ValueError("thresholds JSON must be an object")
        known = {"values", "budget", "metric", "method", "expected_cost", "exit_distribution", "criterion",
                 "guarantee", "weights_sha256", "gates_sha256", "config_sha256"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown thresholds keys {sorted(unknown)}")
        if "values" not in data or not isinstance(data["values"], list):
            raise ValueError("thresholds JSON needs a list 'values' (eta for exits 2..N, or 1..N for the "
                             "learned criterion with first_exit 1)")

        def is_number(v: object) -> bool:  # JSON's numbers: "0.1" or true would pass float() and mean something
            return isinstance(v, (int, float)) and not isinstance(v, bool)
        for key in ("values", "exit_distribution"):
            items = data.get(key, [])
            if not (isinstance(items, list) and all(is_number(v) for v in items)):
                raise ValueError(f"thresholds '{key}' must be a list of numbers, got {str(items)[:80]}")
        if not isinstance(data.get("method", ""), str):
            raise ValueError(f"thresholds 'method' must be a name, got {data['method']!r}")
        if data.get("expected_cost") is not None and not is_number(data["expected_cost"]):
            raise ValueError(f"thresholds 'expected_cost' must be a number, got {data['expected_cost']!r}")
        try:
            out = cls(
                values=data["values"],
                budget=BudgetSpec.from_dict(data["budget"]) if data.get("budget") else None,
                metric=data.get("metric", "llm_gflops"),
                method=data.get("method", "manual"),
                expected_cost=data.get("expected_cost"),
                exit_distribution=data.get("exit_distribution", []),
                criterion=Criterion.from_dict(data.get("criterion") or {}),
                guarantee=Guarantee.from_dict(data["guarantee"]) if data.get("guarantee") is not None else None,
                weights_sha256=data.get("weights_sha256"),
                gates_sha256=data.get("gates_sha256"),
                config_sha256=data.get("config_sha256"),
            )
        except (TypeError, AttributeError, ArithmeticError) as exc:  # "expected_cost": "x", a criterion that is
            # a list, an integer no float holds: a bad file, not a bug
            raise ValueError(f"thresholds JSON has a value of the wrong type: {type(exc).__name__}: {exc}") from exc
        if num_exits is not None and out.num_exits != num_exits:
            first = out.first_exit
            raise ValueError(
                f"thresholds have {len(out.values)} values but a {num_exits}-exit model needs "
                f"{num_exits + 1 - first} (exits {first}..{num_exits})"
            )
        return out

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, allow_nan=False))

    @classmethod
    def load(cls, path: str | Path, num_exits: int | None = None) -> Thresholds:
        path = Path(path)
        if path.is_dir():  # e.g. a calibrate --out directory (its layout is CheckpointDir's): name what it holds
            inside = sorted(p for p in path.glob("*.json") if p.is_file())
            raise FileNotFoundError(f"{path} is a directory, not a thresholds file"
                                    + (f"; the JSON files in it: {', '.join(map(str, inside))}" if inside else ""))
        if not path.is_file():
            raise FileNotFoundError(f"thresholds file not found: {path}")
        try:
            data = read_json_file(path, MAX_FILE_BYTES)  # a few KB; a stray huge file must not fill memory
        except JsonTextError as exc:
            raise ValueError(f"thresholds file {path} is not valid JSON: {exc}") from exc
        try:
            return cls.from_dict(data, num_exits=num_exits)
        except ValueError as exc:
            raise ValueError(f"thresholds file {path}: {exc}") from exc


# --- target exit distributions --------------------------------------------------------------


def exit_fractions(shape: Shape, param: float, exits: np.ndarray, shape_param: float | None = None) -> np.ndarray:
    """Normalised target fractions over ``exits`` for one value of the free parameter.

    Every shape is monotone in ``param``: larger moves mass to deeper exits.
    geometric: p_k ∝ exp(param * k) (q = e^param). gaussian: p_k ∝
    exp(-(k - param)^2 / 2 sigma^2), sigma = shape_param (default 1). gamma:
    p_k ∝ k^(alpha - 1) exp(param * k), alpha = shape_param (default 2); for
    param < 0 this is a Gamma(alpha, scale=-1/param) shape.
    """
    k = exits.astype(np.float64)
    if shape == "geometric":
        logits = param * k
    elif shape == "gaussian":
        sigma = 1.0 if shape_param is None else shape_param
        logits = -((k - param) ** 2) / (2 * sigma**2)
    elif shape == "gamma":
        alpha = 2.0 if shape_param is None else shape_param
        logits = (alpha - 1) * np.log(k) + param * k
    else:
        raise ValueError(f"unknown exit distribution shape {shape!r}; choose one of {SHAPES}")
    return np.asarray(np.exp(logits - logsumexp(logits)))


def _param_bracket(shape: Shape, lo_exit: int, hi_exit: int, shape_param: float | None) -> tuple[float, float]:
    if shape == "gaussian":
        sigma = 1.0 if shape_param is None else shape_param
        return lo_exit - 40 * sigma, hi_exit + 40 * sigma
    return -60.0, 60.0


# --- the quantile walk ----------------------------------------------------------------------


def _walk(scores: np.ndarray, cum_counts: np.ndarray, cap: int, first: int) -> tuple[list[float], np.ndarray]:
    """Set eta_first..eta_N so that cum_counts[k] steps have exited by exit k; return (etas, exit per step).

    scores: (S, N + 1 - first), column k - first = score at exit k. cum_counts: index k ->
    number of steps to have stopped by exit k (k = first..cap). Midpoints between
    consecutive sorted scores keep the cut robust to small run-time noise.
    """
    s, m = scores.shape
    n = m + first - 1
    exit_of = np.full(s, cap, dtype=np.int64)
    remaining = np.ones(s, dtype=bool)
    etas: list[float] = []
    for k in range(first, n + 1):
        col = scores[:, k - first]
        finite_all = col[np.isfinite(col)]
        if k > cap or not remaining.any():
            # Unreached under this cap: "everything still running stops here",
            # so a later, larger cap keeps the cost these thresholds were solved for.
            etas.append(float(finite_all.max()) if finite_all.size else 0.0)
            continue
        rem = np.sort(col[remaining])
        finite = rem[np.isfinite(rem)]
        stopped_so_far = s - int(remaining.sum())
        want = int(np.clip(cum_counts[k] - stopped_so_far, 0, rem.size)) if k < cap else rem.size
        if finite.size == 0:
            eta = 0.0
        elif want >= finite.size:
            eta = float(finite[-1])
        elif want == 0:
            eta = float(finite[0]) / 2.0
        else:
            eta = float(finite[want - 1] + finite[want]) / 2.0
        etas.append(eta)
        if k == cap:
            exit_of[remaining] = cap
            remaining[:] = False
            continue
        stop = remaining & (col <= eta)
        exit_of[stop] = k
        remaining &= ~stop
    return etas, exit_of


def _realised(
    scores: np.ndarray, costs: np.ndarray, cap: int, fractions: np.ndarray, exits: np.ndarray
) -> tuple[float, list[float], np.ndarray]:
    s = scores.shape[0]
    cum = np.zeros(cap + 1, dtype=np.int64)
    cum[exits] = np.rint(np.cumsum(fractions) * s).astype(np.int64)
    etas, exit_of = _walk(scores, cum, cap, int(exits[0]))
    return float(costs[exit_of - 1].mean()), etas, exit_of


def simulate_exits(
    exit_actions: np.ndarray, thresholds: Thresholds, cap: int | None = None, scale: float = 1.0,
    scores: np.ndarray | None = None,
) -> np.ndarray:
    """Exit each calibration step would take under ``thresholds`` (1-based), shape (S,).

    scores: the steps' exit-gate scores (``criterion_scores``), needed when the thresholds are for the learned
    criterion."""
    arr = check_exit_actions(exit_actions)
    n = arr.shape[1]
    cap = n if cap is None else min(cap, n)
    thresholds.check_covers(cap)
    first = thresholds.first_exit
    etas = np.zeros(n + 1)  # indexed by exit number; only first..cap-1 are read
    etas[first:cap] = [thresholds.eta(k) * scale for k in range(first, cap)]
    return exits_from_scores(criterion_scores(arr, thresholds.criterion, scores), etas, cap, first)


def exits_from_scores(scores: np.ndarray, etas: np.ndarray, cap: int, first: int = 2) -> np.ndarray:
    """The run-time rule on (S, N + 1 - first) scores (column k - first is exit k): the first exit k in
    first..cap-1 with score <= etas[k] (``etas`` indexed by exit number), else the cap. 1-based, shape (S,)."""
    exit_of = np.full(scores.shape[0], cap, dtype=np.int64)
    remaining = np.ones(scores.shape[0], dtype=bool)
    for k in range(first, cap):
        stop = remaining & (scores[:, k - first] <= etas[k])
        exit_of[stop] = k
        remaining &= ~stop
    return exit_of



def stop_everything(scores: np.ndarray, n: int) -> np.ndarray:
    """Finite etas (indexed by exit number 0..n) that stop every step at the first exit whose score is finite: the
    cheapest any saved thresholds can do (they are finite, so a step whose score is infinite, a gripper flip under
    ``gripper_flip_infinite``, never stops at that exit)."""
    finite = scores[np.isfinite(scores)]
    return np.full(n + 1, float(finite.max()) if finite.size else 0.0)


def check_reachable(scores: np.ndarray, costs: np.ndarray, cap: int, first: int, target: float) -> None:
    """InfeasibleBudgetError, naming the smallest feasible average, when even stopping every step as early as
    its scores allow costs more than ``target`` on these steps."""
    n = first - 1 + scores.shape[1]
    cheapest = float(costs[exits_from_scores(scores, stop_everything(scores, n), cap, first) - 1].mean())
    if cheapest > target * (1 + 1e-9):
        raise InfeasibleBudgetError(
            f"average budget {target:g} is below the cheapest the criterion can reach on these steps: every step "
            f"stopping at the first exit its score allows costs {cheapest:.6g} (a step whose score is infinite, "
            f"e.g. a gripper flip, cannot stop there); the smallest feasible average budget is {rounded_up(cheapest)}")


def check_solver_inputs(
    exit_actions: np.ndarray, profile: CostProfile, budget: BudgetSpec, solver: str
) -> tuple[np.ndarray, float]:
    """-> the (S, N, A) calibration actions, checked against the profile's exits, and the average budget."""
    arr = check_exit_actions(exit_actions)
    if arr.shape[1] != profile.num_exits:
        raise ValueError(f"exit actions have {arr.shape[1]} exits but the cost profile has {profile.num_exits}")
    if budget.average_gflops is None:
        raise ValueError(f"{solver} needs a budget with average_gflops set")
    return arr, float(budget.average_gflops)


def solve_thresholds_quantile(
    exit_actions: np.ndarray,
    profile: CostProfile,
    budget: BudgetSpec,
    shape: Shape = "geometric",
    shape_param: float | None = None,
    criterion: Criterion | None = None,
    tolerance: float = 0.005,
    scores: np.ndarray | None = None,
) -> Thresholds:
    """Thresholds whose mean cost on the calibration set meets ``budget.average_gflops``.

    exit_actions: (S steps, N exits, A) actions of every exit at every
    calibration step; N must equal ``profile.num_exits``. The realised mean
    cost is at most the budget and, when the budget binds, within
    ``tolerance`` (relative) of it unless the calibration set is too small or
    too tied to resolve it, or the shape cannot (the achieved cost is reported in expected_cost).
    scores: the steps' exit-gate scores, for the learned criterion
    (``criterion.criterion_scores``); the method is the same on either score,
    from the criterion's first exit (exit 1 for the learned one with an exit-1 gate).
    """
    arr, target = check_solver_inputs(exit_actions, profile, budget, "solve_thresholds_quantile")
    s, n, _ = arr.shape
    if shape not in SHAPES:
        raise ValueError(f"unknown exit distribution shape {shape!r}; choose one of {SHAPES}")
    if shape_param is not None and not (math.isfinite(shape_param) and shape_param > 0):
        raise ValueError(f"shape_param must be positive and finite, got {shape_param}")
    crit = criterion or Criterion()
    first = crit.first_exit
    report = budget_report(profile, budget, first_exit=first)
    cap = report.cap
    costs = np.asarray(profile.costs(budget.metric))
    scores = criterion_scores(arr, crit, scores)

    def finish(etas: list[float], exit_of: np.ndarray) -> Thresholds:
        dist = np.bincount(exit_of, minlength=n + 1)[1:] / s
        return Thresholds(
            values=etas,
            budget=budget,
            metric=budget.metric,
            method="quantile",
            expected_cost=float(costs[exit_of - 1].mean()),
            exit_distribution=[float(p) for p in dist],
            criterion=crit,
        )

    if cap == 1 or not report.average_binding:
        # Exit 1 only, or the budget is slack: run to the cap every step.
        etas, exit_of = _walk(scores, np.zeros(cap + 1, dtype=np.int64), cap, first)
        return finish(etas, exit_of)

    check_reachable(scores, costs, cap, first, target)  # else the cheapest setting, over budget, came back
    exits = np.arange(first, cap + 1)  # the exits the criterion can stop at
    lo, hi = _param_bracket(shape, first, cap, shape_param)

    def expected(param: float) -> float:
        return float(exit_fractions(shape, param, exits, shape_param) @ costs[exits - 1]) - target

    if expected(lo) >= 0:
        param = lo
    elif expected(hi) <= 0:
        param = hi
    else:
        param = float(brentq(expected, lo, hi, xtol=1e-10))
    cost, etas, exit_of = _realised(scores, costs, cap, exit_fractions(shape, param, exits, shape_param), exits)
    if cost > target or abs(cost - target) > tolerance * target:
        # Rounding and tied scores make the realised cost a step function of
        # the parameter: bisect on it for the deepest setting within budget.
        a, b = (lo, param) if cost > target else (param, hi)
        best = None if cost > target else (cost, etas, exit_of)
        for _ in range(60):
            mid = 0.5 * (a + b)
            c, e, x = _realised(scores, costs, cap, exit_fractions(shape, mid, exits, shape_param), exits)
            if c <= target:
                a = mid
                if best is None or c > best[0]:
                    best = (c, e, x)
                if target - c <= tolerance * target:
                    break
            else:
                b = mid
        if best is None:
            # even the bracket's shallowest setting is over budget (a narrow shape, e.g. a gaussian of large
            # sigma, never puts all its mass on the first exit): stop every step as early as its scores allow,
            # which check_reachable has shown to be within budget
            etas, exit_of = _walk(scores, np.full(cap + 1, s, dtype=np.int64), cap, first)
            best = (float(costs[exit_of - 1].mean()), etas, exit_of)
        cost, etas, exit_of = best
    return finish(etas, exit_of)
