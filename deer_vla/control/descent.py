"""Thresholds that minimise the action error under an average budget, by exact coordinate descent.

The quantile method fixes the *shape* of the exit distribution and only meets
the budget; it never looks at how wrong an early action is. This solver
chooses eta_first..eta_{cap-1} (first: the criterion's first exit, 2 or 1)
to minimise, on the calibration steps, the mean distance between the action
taken and the deepest exit's (the fidelity the oracle is measured at,
``oracle.exit_errors``) subject to the mean cost meeting the budget:

* Lagrangian: minimise mean(error + mu * cost) for a price ``mu`` on compute;
  ``mu`` is bisected (log scale) for the cheapest-error setting within budget.
* For a fixed ``mu``, each eta_k is optimised exactly with the others held:
  among the steps that reach exit k, stopping those whose score is <= eta_k
  changes the objective by a prefix sum over the steps sorted by score, so the
  best eta_k is one sort and one cumulative sum. Exits are swept from the cap
  down (each exit's "continue" outcome depends on the later thresholds) until
  no threshold moves.

The thresholds keep the run-time rule unchanged (the consecutive criterion of
``ExitController``): only their values differ from the quantile solution.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from deer_vla.control.budgets import BudgetSpec, budget_report
from deer_vla.control.criterion import Criterion, criterion_scores
from deer_vla.control.oracle import exit_errors
from deer_vla.control.thresholds import (
    Thresholds,
    check_reachable,
    check_solver_inputs,
    exits_from_scores,
    solve_thresholds_quantile,
    stop_everything,
)
from deer_vla.core import CostProfile

# internal eta that stops no step (thresholds are >= 0 once saved: see finish())
_NEVER = -1.0


class _Split:
    """The steps that reach exit k under ``etas``, sorted by their score at k, and where each
    would end if it did not stop at k: what every coordinate move needs."""

    def __init__(self, scores: np.ndarray, etas: np.ndarray, cap: int, k: int, first: int) -> None:
        self.exit_of = exits_from_scores(scores, etas, cap, first)
        later = etas.copy()
        later[k] = _NEVER
        cont = exits_from_scores(scores, later, cap, first)
        idx = np.flatnonzero(self.exit_of >= k)
        sk = scores[idx, k - first]
        order = np.argsort(sk, kind="stable")
        self.idx, self.cont = idx[order], cont[idx[order]]
        self.scores = sk[order]
        # a threshold splits only between distinct scores: the last step of each tie group
        self.group_end = np.r_[self.scores[1:] != self.scores[:-1], True]


def _sweep(scores: np.ndarray, cap: int, first: int, etas: np.ndarray,
           best_eta: Callable[[_Split, int], float | None], max_sweeps: int = 20) -> np.ndarray:
    """Coordinate descent: set each eta_k, k = cap-1 down to ``first`` (a step's "continue" outcome
    depends on the later thresholds), to ``best_eta``'s choice until none moves."""
    etas = etas.copy()
    for _ in range(max_sweeps):
        moved = False
        for k in range(cap - 1, first - 1, -1):
            sp = _Split(scores, etas, cap, k, first)
            new = best_eta(sp, k) if sp.idx.size else None
            if new is not None and new != etas[k]:
                etas[k] = new
                moved = True
        if not moved:
            break
    return etas


def _descend(scores: np.ndarray, err: np.ndarray, costs: np.ndarray, cap: int, first: int, mu: float,
             etas: np.ndarray) -> np.ndarray:
    """Exact coordinate descent on mean(err + mu * cost) from ``etas``."""
    value = err + mu * costs[None, :]  # (S, N): objective of leaving step s at exit k

    def best_eta(sp: _Split, k: int) -> float:
        # change of the objective when the steps up to each position stop at k (< 0: better)
        csum = np.cumsum(value[sp.idx, k - 1] - value[sp.idx, sp.cont - 1])
        i = int(np.argmin(np.where(sp.group_end, csum, np.inf)))
        return float(sp.scores[i]) if csum[i] < 0 else _NEVER

    return _sweep(scores, cap, first, etas, best_eta)


def _polish(scores: np.ndarray, err: np.ndarray, costs: np.ndarray, cap: int, first: int, etas: np.ndarray,
            target: float) -> np.ndarray:
    """Coordinate descent on the mean error itself, each move keeping the mean cost <= ``target``.

    Spends what the Lagrangian step leaves of the budget (its solutions jump
    between discrete cost levels). Starts from a feasible ``etas``; never
    increases the error or leaves the budget.
    """
    rows = np.arange(scores.shape[0])
    limit = target * scores.shape[0] * (1 + 1e-12)

    def best_eta(sp: _Split, k: int) -> float | None:
        now_cost = costs[sp.exit_of - 1].sum()
        now_err = err[rows, sp.exit_of - 1].sum()
        cur = sp.exit_of[sp.idx]
        # totals with nobody stopping at k, then the change as each prefix (by score) stops at k
        base_cost = now_cost - costs[cur - 1].sum() + costs[sp.cont - 1].sum()
        base_err = now_err - err[sp.idx, cur - 1].sum() + err[sp.idx, sp.cont - 1].sum()
        d_cost = np.cumsum(costs[k - 1] - costs[sp.cont - 1])
        d_err = np.cumsum(err[sp.idx, k - 1] - err[sp.idx, sp.cont - 1])
        options = [(base_err, base_cost, _NEVER)] if base_cost <= limit else []
        ok = np.flatnonzero(sp.group_end & (base_cost + d_cost <= limit))
        options += [(base_err + d_err[i], base_cost + d_cost[i], float(sp.scores[i])) for i in ok]
        if not options:
            return None
        e_new, _, eta_new = min(options, key=lambda o: (o[0], o[1]))
        return eta_new if e_new < now_err - 1e-12 * max(abs(now_err), 1.0) else None

    return _sweep(scores, cap, first, etas, best_eta)


def solve_thresholds_descent(
    exit_actions: np.ndarray,
    profile: CostProfile,
    budget: BudgetSpec,
    criterion: Criterion | None = None,
    error: Criterion | None = None,
    iterations: int = 40,
    scores: np.ndarray | None = None,
) -> Thresholds:
    """Thresholds of least mean action error (by ``error``, default RMS) with mean cost <= the average budget.

    exit_actions: (S, N, A) per-exit actions of the calibration steps (as for
    ``solve_thresholds_quantile``). ``criterion`` is the run-time consistency
    score the thresholds apply to (``scores``: the steps' exit-gate scores, for the
    learned criterion; they may begin at exit 1, ``criterion.first_exit``). Where there is nothing
    to choose (a cap at the criterion's first exit or before, or a budget that does not bind) the
    quantile solution is returned. Raises InfeasibleBudgetError when even the earliest exits miss
    the budget on these steps.
    """
    arr, target = check_solver_inputs(exit_actions, profile, budget, "solve_thresholds_descent")
    s, n, _ = arr.shape
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    crit = criterion or Criterion()
    first = crit.first_exit
    report = budget_report(profile, budget, first_exit=first)
    cap = report.cap
    costs = np.asarray(profile.costs(budget.metric), dtype=np.float64)
    scores = criterion_scores(arr, crit, scores)
    err = exit_errors(arr, error)

    quantile = solve_thresholds_quantile(arr, profile, budget, criterion=crit, scores=scores if crit.learned else None)
    finite = scores[np.isfinite(scores)]
    stop_all = float(finite.max()) + 1.0 if finite.size else 1.0  # a finite eta that stops every step

    def finish(etas: np.ndarray) -> Thresholds:
        # Saved thresholds are finite and >= 0: eta 0 also stops exact agreements, which the internal
        # "never" did not (common where exits agree exactly, e.g. discrete actions), so the cost and exit mix
        # reported are those of the values saved (never above the search's: stopping earlier costs less).
        # Past the cap they keep the quantile values, so a cap raised at run time still has thresholds worth
        # scaling.
        saved = etas.copy()
        saved[first:cap] = np.clip(etas[first:cap], 0.0, stop_all)
        exit_of = exits_from_scores(scores, saved, cap, first)
        dist = np.bincount(exit_of, minlength=n + 1)[1:] / s
        values = [float(saved[k]) if k < cap else quantile.values[k - first] for k in range(first, n + 1)]
        return Thresholds(values=values, budget=budget, metric=budget.metric, method="descent",
                          expected_cost=float(costs[exit_of - 1].mean()),
                          exit_distribution=[float(p) for p in dist], criterion=crit)

    if cap <= first or not report.average_binding:
        # Nothing to choose (the cap is at the criterion's first exit, or the budget is slack): the quantile
        # solution, whose values past the cap still give the online tracker something to scale.
        return quantile
    never = np.full(n + 1, _NEVER)  # etas[k] for k = 0..N
    # finite, as saved thresholds are: an infinite eta also stopped infinite scores (gripper flips), so the
    # feasibility check passed and the saved, finite thresholds spent more than the expected_cost reported
    always = stop_everything(scores, n)
    check_reachable(scores, costs, cap, first, target)

    rows = np.arange(s)

    def cost_error(etas: np.ndarray) -> tuple[float, float]:
        exit_of = exits_from_scores(scores, etas, cap, first)
        return float(costs[exit_of - 1].mean()), float(err[rows, exit_of - 1].mean())

    # mu prices compute in error units: search between "compute is free" and "compute is all that matters"
    spread = float(np.ptp(err)) or 1.0
    lo, hi = math.log(spread / costs[-1] * 1e-6), math.log(spread / max(costs[1] - costs[0], 1e-12) * 1e6)
    # Start from the quantile solution: coordinate descent only finds a local optimum, and
    # from there the result is never worse than the quantile method on these steps.
    start = never.copy()
    start[first:cap] = quantile.values[: cap - first]
    best, best_err = always, cost_error(always)[1]  # feasible (checked above), the fallback
    cost, error_mean = cost_error(start)
    if cost <= target and error_mean < best_err:
        best, best_err = start, error_mean
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        # no eta above the largest finite score: an infinite one would stop infinite scores, which no saved
        # (finite) threshold does, and the cost measured here would not be the cost of what is saved
        etas = np.minimum(_descend(scores, err, costs, cap, first, math.exp(mid), start), always)
        cost, error_mean = cost_error(etas)
        if cost <= target:
            hi = mid  # feasible: try a lower price on compute, for less error
            if error_mean < best_err:
                best, best_err = etas, error_mean
        else:
            lo = mid
    polished = np.minimum(_polish(scores, err, costs, cap, first, best, target), always)
    polished_cost, polished_err = cost_error(polished)
    return finish(polished if polished_cost <= target and polished_err < best_err else best)
