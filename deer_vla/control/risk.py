"""Risk-controlled thresholds: Learn-then-Test (fixed-sequence) over a scaled threshold family.

Procedure (Angelopoulos, Bates, Candès, Jordan, Lei: "Learn then Test",
2021; the same fixed-sequence scheme as Bates et al.'s RCPS and the
"Fast yet Safe" early-exit calibration):

1. Fix, before looking at the calibration steps, an ordered family of
   thresholds: a base set eta_first..eta_N scaled by lambda on a fixed grid,
   lambda = 0 (run to the cap every step) first, then ascending (looser:
   earlier exits, less compute). The base must not be fitted on the
   calibration steps used here (``deer-vla calibrate --risk`` solves it on a
   disjoint part of the episodes).
2. For each lambda, the loss of a step is its action distance d (RMS over the
   motion axes between the executed action and the full model's) clipped at
   B (metric "mean"), or 1{d > tau} (metric "exceed"). Its empirical risk on
   the n calibration steps gives a p-value for H_lambda: risk(lambda) > eps:
   Hoeffding-Bentkus for losses in [0, B], the exact binomial tail for the
   0/1 exceedance.
3. Test H_lambda in the fixed order at level delta and stop at the first
   that is not rejected; every lambda before it is certified. The family-wise
   error of this sequence is <= delta, so with probability >= 1 - delta every
   certified lambda has risk <= eps. Of them we take the cheapest (least mean
   calibration cost), or report which limit binds.

Assumptions, stated once for the docstrings and docs/budgets.md: calibration and
deployment steps are i.i.d. draws from one distribution (the guarantee is
over the draw of the calibration steps, for the risk on a fresh step). Steps
of one episode are correlated, so the n in force overstates the evidence; a
scene or checkpoint change voids it. The mean metric's distances are clipped
at B (the bound in the guarantee); actions in [-1, 1] have RMS distance <= 2,
so B = 2 clips nothing. The guarantee covers the thresholds exactly as
certified: the online tracker's scaling is switched off while one is in force.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import binom

from deer_vla.control.budgets import BudgetSpec, InfeasibleBudgetError, rounded_up
from deer_vla.control.criterion import Criterion, check_exit_actions, criterion_scores
from deer_vla.control.guarantee import RISK_METRICS, Guarantee, RiskFamilyData, RiskMetric
from deer_vla.control.oracle import exit_errors
from deer_vla.control.thresholds import Thresholds, exits_from_scores

# The family grid: fixed in advance (a grid fitted to the calibration data would void the test).
DEFAULT_SCALES: tuple[float, ...] = (0.0, *np.geomspace(1 / 256, 256, 321).tolist())
PValue = Literal["wsr", "hb"]
P_VALUES: tuple[str, ...] = ("wsr", "hb")
DEFAULT_BOUND = 2.0  # the largest RMS distance between two actions with every axis in [-1, 1]


class InfeasibleRiskError(InfeasibleBudgetError):
    """No certified thresholds meet the request; ``smallest_eps`` / ``smallest_budget`` say what would."""

    def __init__(self, message: str, smallest_eps: float | None = None,
                 smallest_budget: float | None = None, binding: str = "risk") -> None:
        super().__init__(message)
        self.smallest_eps = smallest_eps
        self.smallest_budget = smallest_budget
        self.binding = binding


@dataclass(frozen=True)
class RiskSpec:
    """What a step's loss is: metric "mean" (distance clipped at ``bound``) or "exceed" (distance > ``tau``)."""

    metric: RiskMetric = "mean"
    tau: float | None = None
    bound: float = DEFAULT_BOUND
    test: PValue = "wsr"  # metric "mean": "wsr" (betting, variance-adaptive) or "hb" (Hoeffding-Bentkus)

    def __post_init__(self) -> None:
        if self.test not in P_VALUES:
            raise ValueError(f"risk test must be one of {P_VALUES}, got {self.test!r}")
        if self.metric not in RISK_METRICS:
            raise ValueError(f"risk metric must be one of {RISK_METRICS}, got {self.metric!r}")
        if not (math.isfinite(self.bound) and self.bound > 0):
            raise ValueError(f"risk bound must be finite and > 0, got {self.bound}")
        if self.metric == "exceed" and (self.tau is None or not (math.isfinite(self.tau) and self.tau >= 0)):
            raise ValueError(f"risk metric 'exceed' needs a finite tau >= 0, got {self.tau}")
        if self.metric == "mean" and self.tau is not None:
            raise ValueError("tau applies to risk metric 'exceed' only")

    @property
    def max_loss(self) -> float:
        return self.bound if self.metric == "mean" else 1.0

    def losses(self, distances: np.ndarray) -> np.ndarray:
        d = np.asarray(distances, dtype=np.float64)
        if self.metric == "mean":
            return np.minimum(d, self.bound)
        assert self.tau is not None
        return (d > self.tau).astype(np.float64)

    @property
    def procedure(self) -> str:
        """The name recorded in the guarantee: the multiple test and the p-value."""
        return f"ltt-fixed-sequence/{'binomial|' + self.test if self.metric == 'exceed' else self.test}"

    @classmethod
    def parse(cls, text: str, bound: float = DEFAULT_BOUND, test: str = "wsr") -> RiskSpec:
        """"mean" or "exceed:TAU" (the --risk-metric syntax)."""
        if test not in P_VALUES:
            raise ValueError(f"risk test must be one of {P_VALUES}, got {test!r}")
        if text == "mean":
            return cls("mean", None, bound, test)  # type: ignore[arg-type]
        if text.startswith("exceed:"):
            try:
                tau = float(text.split(":", 1)[1])
            except ValueError:
                raise ValueError(f"risk metric {text!r}: TAU must be a number, e.g. exceed:0.1") from None
            return cls("exceed", tau, bound)
        raise ValueError(f"risk metric must be 'mean' or 'exceed:TAU', got {text!r}")


# --- p-values for H: risk > eps ------------------------------------------------------------


def _h1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bernoulli KL divergence kl(a || b), for 0 <= a <= b < 1."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0) / b), 0.0)
        t2 = np.where(a < 1, (1 - a) * np.log(np.where(a < 1, 1 - a, 1.0) / (1 - b)), 0.0)
    return np.asarray(t1 + t2)


def _wsr(x: np.ndarray, alpha: np.ndarray, delta: float) -> np.ndarray:
    """Waudby-Smith-Ramdas betting p-value for H: mean > alpha, losses x (n, L) in [0, 1].

    Capital K_t = prod_{i<=t} (1 - nu_i (x_i - alpha)) is a non-negative supermartingale under H
    (nu_i in [0, 1] chosen from x_1..x_{i-1} only), so p = 1 / max_t K_t is valid by Ville's
    inequality (Bates et al. 2021, RCPS, the WSR bound). nu_i grows K fast when the losses vary little.
    """
    n = x.shape[0]
    t = np.arange(1, n + 1, dtype=np.float64)[:, None]
    mu = (0.5 + np.cumsum(x, axis=0)) / (t + 1)
    var = (0.25 + np.cumsum((x - mu) ** 2, axis=0)) / (t + 1)
    var_prev = np.vstack([np.full((1, x.shape[1]), 0.25), var[:-1]])  # predictable: up to step i-1
    nu = np.minimum(1.0, np.sqrt(2 * math.log(1 / delta) / (n * var_prev)))
    with np.errstate(divide="ignore"):
        log_k = np.cumsum(np.log(1 - nu * (x - alpha[None, :])), axis=0)
    return np.minimum(1.0, np.exp(-np.max(log_k, axis=0)))


def p_values(losses: np.ndarray, eps: float | np.ndarray, delta: float, spec: RiskSpec) -> np.ndarray:
    """Valid p-values for H_l: risk(l) > eps, from the losses (n, L) of n i.i.d. calibration steps.

    mean/"wsr": the betting p-value (``_wsr``; ``delta`` only tunes its bets, validity holds for any).
    mean/"hb": Hoeffding-Bentkus on losses scaled to [0, 1] (Bates et al. 2021):
    min(exp(-n kl(min(r, e), e)), e * P(Binom(n, e) <= ceil(n r))).
    exceed: the exact binomial tail P(Binom(n, eps) <= n r).
    """
    x = np.asarray(losses, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"losses must be (n >= 1 steps, family members), got shape {x.shape}")
    n = x.shape[0]
    x = np.clip(x / spec.max_loss, 0.0, 1.0)
    r = x.mean(axis=0)
    e = np.broadcast_to(np.asarray(eps, dtype=np.float64) / spec.max_loss, r.shape).copy()
    out = np.ones_like(r)
    trivial = e >= 1.0  # the risk can never exceed the largest loss
    out[trivial] = 0.0
    live = ~trivial & (e > 0)
    if not live.any():
        return out
    rl, el = r[live], e[live]
    if spec.metric == "exceed" and np.all((x == 0) | (x == 1)):
        out[live] = binom.cdf(np.round(n * rl), n, el)
    elif spec.metric == "exceed":  # per-episode exceedance rates: bounded in [0, 1], not Bernoulli
        out[live] = _wsr(x[:, live], el, delta)
    elif spec.test == "wsr":
        out[live] = _wsr(x[:, live], el, delta)
    else:
        hoeffding = np.exp(-n * _h1(np.minimum(rl, el), el))
        bentkus = math.e * binom.cdf(np.ceil(n * rl - 1e-9), n, el)
        out[live] = np.minimum(np.minimum(hoeffding, bentkus), 1.0)
    return out


def certified_count(losses: np.ndarray, eps: float, delta: float, spec: RiskSpec) -> int:
    """Fixed-sequence testing (member 0 first) at level delta: how many leading members are certified."""
    rejected = p_values(losses, eps, delta, spec) <= delta
    return int(np.argmin(rejected)) if not rejected.all() else int(rejected.size)


def eps_needed(losses: np.ndarray, delta: float, spec: RiskSpec, iters: int = 50) -> np.ndarray:
    """Per member, the least eps at which the fixed sequence at level delta certifies it.

    Each p-value falls as eps grows, so the per-member least eps is bisected; the
    sequence certifies member j iff every member up to j is rejected: the running max.
    At any eps chosen in advance, {j : eps_needed[j] <= eps} is exactly the certified
    prefix (up to the bisection's tolerance, taken on the safe side).
    """
    x = np.asarray(losses, dtype=np.float64)
    lo = np.zeros(x.shape[1])
    hi = np.full(x.shape[1], spec.max_loss)  # p = 0 at the largest loss
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        ok = p_values(x, mid, delta, spec) <= delta
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid)
    return np.maximum.accumulate(hi)


# --- the family ------------------------------------------------------------------------------


def family_matrices(exit_actions: np.ndarray, base: Thresholds, costs: np.ndarray, cap: int, spec: RiskSpec,
                    scales: tuple[float, ...] | np.ndarray = DEFAULT_SCALES,
                    scores: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """-> (losses, step_costs), each (S, L): every step's loss and cost under base * scale_l.

    The distance is from the deepest exit's action (the full model), RMS over the
    motion axes, whatever the run-time criterion is. ``scores``: the steps' exit-gate
    scores when ``base`` is for the learned criterion.
    """
    arr = check_exit_actions(exit_actions)
    s, n, _ = arr.shape
    c = np.asarray(costs, dtype=np.float64)
    if c.shape != (n,):
        raise ValueError(f"costs must have one value per exit ({n}), got shape {c.shape}")
    if not 1 <= cap <= n:
        raise ValueError(f"cap must be an exit in 1..{n}, got {cap}")
    base.check_covers(cap)
    sc = np.asarray(scales, dtype=np.float64)
    if sc.ndim != 1 or sc.size == 0 or np.any(sc < 0) or np.any(np.diff(sc) < 0):
        raise ValueError("scales must be a non-empty ascending sequence of values >= 0")
    scores = criterion_scores(arr, base.criterion, scores)
    dist = exit_errors(arr, Criterion())  # (S, N): RMS over the motion axes, vs exit N
    rows = np.arange(s)
    losses = np.empty((s, sc.size))
    step_costs = np.empty((s, sc.size))
    first = base.first_exit
    etas = np.zeros(n + 1)
    for j, lam in enumerate(sc):
        etas[first:cap] = [base.eta(k) * lam for k in range(first, cap)]
        exit_of = exits_from_scores(scores, etas, cap, first)
        losses[:, j] = spec.losses(dist[rows, exit_of - 1])
        step_costs[:, j] = c[exit_of - 1]
    return losses, step_costs


def select_member(needed: np.ndarray, costs: np.ndarray, eps: float, delta: float, n: int,
                  average_budget: float | None = None, cap_note: str = "", unit: str = "step") -> int:
    """The cheapest member certified at ``eps`` (given each member's ``eps_needed``), within the budget.

    Raises InfeasibleRiskError when nothing is certified (with the smallest feasible eps), or when the
    cheapest certified member costs more than ``average_budget`` (with the smallest feasible budget, and
    the smallest eps that the budget would allow).
    """
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"risk eps must be finite and > 0, got {eps}")
    need = np.asarray(needed, dtype=np.float64)
    c = np.asarray(costs, dtype=np.float64)
    if need.shape != c.shape or need.ndim != 1 or need.size == 0:
        raise ValueError("eps_needed and costs must be equal, non-empty 1-D arrays")
    certified = int(np.sum(need <= eps))  # a prefix: ``need`` is a running max
    if certified == 0:
        raise InfeasibleRiskError(
            f"risk limit eps={eps:g} cannot be certified at delta={delta:g} on {n} calibration {unit}s: even the "
            f"strictest thresholds (every step to the cap{cap_note}) need eps >= {need[0]:.4g}; the smallest "
            f"feasible eps is {rounded_up(need[0], 4)}",
            smallest_eps=float(need[0]), binding="cap" if cap_note else "risk")
    idx = int(np.argmin(c[:certified]))  # costs fall along the family; ties keep the stricter member
    if average_budget is not None and c[idx] > average_budget:
        within = np.flatnonzero(c <= average_budget)
        eps_for_budget = float(need[within[0]]) if within.size else None
        extra = (f"; within the budget the smallest feasible eps is {rounded_up(eps_for_budget, 4)}"
                 if eps_for_budget is not None else "; no member of the family meets the budget")
        raise InfeasibleRiskError(
            f"the risk limit binds: the cheapest thresholds certified for eps={eps:g} at delta={delta:g} cost "
            f"{c[idx]:.6g} per step on the calibration steps, over the average budget {average_budget:.6g} by "
            f"{c[idx] - average_budget:.4g} ({(c[idx] / average_budget - 1) * 100:.1f}%); the smallest feasible "
            f"average budget is {rounded_up(float(c[idx]))}{extra}",
            smallest_eps=eps_for_budget, smallest_budget=float(c[idx]), binding="risk")
    return idx


def episode_means(values: np.ndarray, episode_of: np.ndarray) -> np.ndarray:
    """(S, L) per-step values -> (E, L) per-episode means (episodes in order of first appearance)."""
    ids = np.asarray(episode_of)
    if ids.shape != (values.shape[0],):
        raise ValueError(f"episode_of must give one episode per step ({values.shape[0]}), got shape {ids.shape}")
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    sums = np.zeros((first.size, values.shape[1]))
    np.add.at(sums, inverse, values)
    return (sums / np.bincount(inverse)[:, None])[np.argsort(first)]


def calibrate_risk(exit_actions: np.ndarray, base: Thresholds, costs: np.ndarray, cap: int, eps: float,
                   delta: float, spec: RiskSpec, average_budget: float | None = None,
                   scales: tuple[float, ...] | np.ndarray = DEFAULT_SCALES, cap_note: str = "",
                   seed: int = 0, episode_of: np.ndarray | None = None,
                   scores: np.ndarray | None = None) -> Thresholds:
    """Thresholds base * lambda-hat certified on these calibration steps (module docstring), carrying the
    guarantee and the family, so another eps or budget (same or larger delta) is re-tested without the data.

    episode_of (one id per step): test per-episode mean losses instead of steps, the unit that is i.i.d.
    when episodes are (steps of one episode are correlated); the risk is then the expected per-episode
    mean, and n counts episodes. The units are put in a fixed random order first (``seed``): the
    betting p-value is order-dependent and recorded episodes come in order. ``scores``: the steps'
    exit-gate scores when ``base`` is for the learned criterion.
    """
    if not (math.isfinite(delta) and 0 < delta < 1):
        raise ValueError(f"risk delta must be in (0, 1), got {delta}")
    losses, step_costs = family_matrices(exit_actions, base, costs, cap, spec, scales, scores)
    unit = "step"
    if episode_of is not None:  # the losses' unit only: a budget is a mean cost per step (per action), whatever
        losses, unit = episode_means(losses, episode_of), "episode"  # the unit (a mean of episode means let
        # the long, costly episodes of a set overspend a budget it accepted)
    losses = losses[np.random.default_rng(seed).permutation(losses.shape[0])]
    family = RiskFamilyData(base=list(base.values), scales=[float(v) for v in scales],
                            costs=[float(v) for v in step_costs.mean(axis=0)],
                            risks=[float(v) for v in losses.mean(axis=0)],
                            eps_needed=[float(v) for v in eps_needed(losses, delta, spec)], delta=delta, cap=cap)
    return apply_family(base, family, losses.shape[0], eps, spec, average_budget, cap_note, unit)


def apply_family(base: Thresholds, family: RiskFamilyData, n: int, eps: float, spec: RiskSpec,
                 average_budget: float | None = None, cap_note: str = "", unit: str = "step") -> Thresholds:
    """The certified thresholds for (eps, average budget) from a stored family, at the family's delta."""
    idx = select_member(np.asarray(family.eps_needed), np.asarray(family.costs), eps, family.delta, n,
                        average_budget, cap_note, unit)
    scale = family.scales[idx]
    guarantee = Guarantee(eps=eps, delta=family.delta, metric=spec.metric, tau=spec.tau, n_calibration=n,
                          bound=spec.bound, scale=scale, procedure=spec.procedure, family=family, unit=unit)
    # the average these thresholds are for: the one asked for, else the certified member's own cost. The base's
    # (the thresholds certified from, solved for another average) made the node hold, the monitor judge and a
    # replay re-test a budget the certified thresholds overspend by design
    held = average_budget if average_budget is not None else family.costs[idx]
    budget = dataclasses.replace(base.budget or BudgetSpec(metric=base.metric), average_gflops=held)
    return Thresholds(values=[v * scale for v in family.base], budget=budget, metric=base.metric,
                      method="risk", expected_cost=family.costs[idx], exit_distribution=[],
                      criterion=base.criterion, guarantee=guarantee)


def reapply(thresholds: Thresholds, eps: float, delta: float, average_budget: float | None = None) -> Thresholds:
    """Re-run the stored test for another eps and average budget (the policy node does this at configure).

    ``delta`` may not be below the calibration's (the stored eps_needed are at that level); a larger one
    keeps the calibration's, a stronger statement. Valid as long as eps is chosen without looking at
    these calibration results.
    """
    g = thresholds.guarantee
    if g is None or g.family is None:
        raise ValueError("these thresholds carry no risk family: run `deer-vla calibrate --risk EPS --delta DELTA`")
    if not (math.isfinite(delta) and 0 < delta < 1):
        raise ValueError(f"risk delta must be in (0, 1), got {delta}")
    if delta < g.family.delta:
        raise InfeasibleRiskError(
            f"risk delta {delta:g} is below the {g.family.delta:g} these thresholds were calibrated at; the "
            f"smallest feasible delta is {g.family.delta:g} (or recalibrate with --delta {delta:g})",
            binding="delta")
    spec = RiskSpec(g.metric, g.tau, g.bound, "hb" if g.procedure.endswith("hb") else "wsr")
    return apply_family(thresholds, g.family, g.n_calibration, eps, spec, average_budget, unit=g.unit)
