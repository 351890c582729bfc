"""Closed-loop objective for Bayesian threshold tuning (``control.bayes.tune_thresholds``).

``calibrate --bayes`` refines solved thresholds against closed-loop success:
each trial runs the thresholds' dynamic mode on a few episodes per task in the
simulator, on tuning seeds (from TUNE_SEED_OFFSET), which are disjoint from
the demonstrations' and from the evaluation seeds (EVAL_SEED_OFFSET).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from deer_vla.evaluation.evaluator import episode_plan
from deer_vla.evaluation.rollout import EpisodeResult, ModeSpec
from deer_vla.evaluation.workers import EvalWorker

if TYPE_CHECKING:
    from deer_vla.control.thresholds import Thresholds

# seeds: demonstrations below EVAL_SEED_OFFSET (100_000) <= evaluation < tuning
TUNE_SEED_OFFSET = 200_000


class ClosedLoopObjective:
    """thresholds -> (success rate, mean cost per step in the thresholds' metric) over closed-loop rollouts
    of ``episodes_per_task`` episodes of each task, run by ``worker`` (its simulators are kept over trials)."""

    def __init__(self, worker: EvalWorker, tasks: Sequence[str], episodes_per_task: int,
                 seed_offset: int = TUNE_SEED_OFFSET) -> None:
        if not tasks:
            raise ValueError("the closed-loop objective needs at least one task")
        if episodes_per_task < 1:
            raise ValueError(f"episodes_per_task must be >= 1, got {episodes_per_task}")
        self.worker = worker
        self.plans = {task: episode_plan(task, episodes_per_task, seed_offset, heldout=False) for task in tasks}

    def __call__(self, thresholds: Thresholds) -> tuple[float, float]:
        budget = thresholds.budget.average_gflops if thresholds.budget else None
        mode = ModeSpec(name="bo", kind="dynamic", thresholds=thresholds.to_dict(), budget_gflops=budget)
        results: list[EpisodeResult] = []
        for task, plan in self.plans.items():
            results.extend(self.worker.run_job((mode, task, plan, None)))
        steps = sum(r.steps for r in results)
        llm = thresholds.metric == "llm_gflops"
        cost = sum(r.llm_gflops if llm else r.total_gflops for r in results) / max(steps, 1)
        return sum(r.success for r in results) / len(results), cost
