"""Exit controller and compute budgets (numpy/scipy/optuna only: no torch, ROS or simulator).

Driven through deer_vla.core.SegmentedPolicy, so the model runner and the
synthetic streams in ``synthetic`` are interchangeable.
"""
from deer_vla.control.bayes import fidelity_objective, tune_thresholds
from deer_vla.control.budgets import BudgetReport, BudgetSpec, InfeasibleBudgetError, budget_report, exit_cap
from deer_vla.control.calibration import collect_exit_actions, collect_exit_actions_and_scores, learned_criterion
from deer_vla.control.controller import ExitController
from deer_vla.control.criterion import Criterion, consistency_scores, criterion_scores
from deer_vla.control.deadline import DeadlineGuard, LatencyTrace, ManualClock
from deer_vla.control.descent import solve_thresholds_descent
from deer_vla.control.guarantee import Guarantee
from deer_vla.control.online import OnlineBudgetTracker
from deer_vla.control.oracle import exit_errors, oracle_cost_at_error, oracle_exit, oracle_exits
from deer_vla.control.risk import InfeasibleRiskError, RiskSpec, calibrate_risk
from deer_vla.control.solve import THRESHOLD_METHODS, ThresholdMethod, solve_thresholds
from deer_vla.control.thresholds import Thresholds, simulate_exits, solve_thresholds_quantile

__all__ = [
    "THRESHOLD_METHODS",
    "BudgetReport",
    "BudgetSpec",
    "Criterion",
    "DeadlineGuard",
    "ExitController",
    "Guarantee",
    "InfeasibleBudgetError",
    "InfeasibleRiskError",
    "LatencyTrace",
    "ManualClock",
    "OnlineBudgetTracker",
    "RiskSpec",
    "ThresholdMethod",
    "Thresholds",
    "budget_report",
    "calibrate_risk",
    "collect_exit_actions",
    "collect_exit_actions_and_scores",
    "consistency_scores",
    "criterion_scores",
    "exit_cap",
    "fidelity_objective",
    "exit_errors",
    "learned_criterion",
    "oracle_cost_at_error",
    "oracle_exit",
    "oracle_exits",
    "simulate_exits",
    "solve_thresholds",
    "solve_thresholds_descent",
    "solve_thresholds_quantile",
    "tune_thresholds",
]
