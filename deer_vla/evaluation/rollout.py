"""Closed-loop episodes: the simulator, the policy and the exit controller in one loop."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

if TYPE_CHECKING:
    from deer_vla.control.controller import ExitController
    from deer_vla.core import CostProfile, SegmentedPolicy

ModeKind = Literal["fixed", "dynamic", "oracle"]
MODE_KINDS: tuple[ModeKind, ...] = get_args(ModeKind)


@dataclass(frozen=True)
class ModeSpec:
    """How the controller runs in one evaluation mode.

    kind: "fixed" (always exit ``exit``; the full model is fixed at the last
    exit), "dynamic" (thresholds for an average budget), "oracle" (all exits,
    commit the earliest within ``oracle_tolerance`` of the deepest).
    """

    name: str
    kind: ModeKind
    exit: int | None = None
    thresholds: dict[str, Any] | None = None  # Thresholds.to_dict()
    budget_gflops: float | None = None
    budget_fraction: float | None = None
    oracle_tolerance: float | None = None
    track_budget: bool = False  # dynamic: online tracker scales the thresholds to hold the average budget

    def __post_init__(self) -> None:
        if self.kind not in MODE_KINDS:
            raise ValueError(f"unknown evaluation mode kind {self.kind!r}; choose one of {MODE_KINDS}")
        if self.kind == "fixed" and self.exit is None:
            raise ValueError(f"mode {self.name}: a fixed mode needs an exit")
        if self.kind == "dynamic" and self.thresholds is None:
            raise ValueError(f"mode {self.name}: a dynamic mode needs thresholds")
        if self.kind == "oracle" and self.oracle_tolerance is None:
            raise ValueError(f"mode {self.name}: the oracle needs a tolerance")


@dataclass
class EpisodeResult:
    mode: str
    task: str
    seed: int
    instruction: str
    success: bool
    steps: int
    llm_gflops: float  # summed over steps
    total_gflops: float
    exit_counts: list[int] = field(default_factory=list)  # steps that committed exit k (index k-1)
    model_ms: float = 0.0  # summed model wall time

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> EpisodeResult:
        """A record written by ``to_dict`` (an evaluation journal's line) back; ValueError naming every field
        that is missing, unknown or of the wrong type (a summary would otherwise add "yes" to a count, or -1
        steps to a mean)."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        problems = [f"missing {k!r}" for k in required if k not in data]
        problems += [f"unknown key {k!r}" for k in sorted(set(data) - known)]
        for key, value in data.items():
            check = _RESULT_FIELDS.get(key)
            if check is not None and not check[0](value):
                problems.append(f"{key}={value!r} is not {check[1]}")
        if not problems and sum(data["exit_counts"]) != data["steps"]:  # one exit per step: a damaged line
            # passed, and the report read steps=10**30 as 0 GFLOPs per step
            problems.append(f"exit_counts {str(data['exit_counts'])[:60]} add up to {sum(data['exit_counts'])}, not "
                            f"the {data['steps']} steps")
        if problems:
            raise ValueError("; ".join(problems))
        return cls(**data)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _amount(v: Any) -> bool:
    if not isinstance(v, int | float) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v) and v >= 0
    except OverflowError:  # a JSON integer too large for a float
        return False


_RESULT_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "mode": (lambda v: isinstance(v, str) and bool(v), "a mode name"),
    "task": (lambda v: isinstance(v, str) and bool(v), "a task name"),
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "instruction": (lambda v: isinstance(v, str), "a string"),
    "success": (lambda v: isinstance(v, bool), "true or false"),
    "steps": (_count, "an integer >= 0"),
    "llm_gflops": (_amount, "a finite number >= 0"),
    "total_gflops": (_amount, "a finite number >= 0"),
    "exit_counts": (lambda v: isinstance(v, list) and all(_count(c) for c in v), "a list of integers >= 0"),
    "model_ms": (_amount, "a finite number >= 0"),
}


def make_controller(runner: SegmentedPolicy, profile: CostProfile, mode: ModeSpec) -> ExitController:
    """The controller for ``mode``. A tracking mode's online tracker restarts at every episode (scale 1, an
    empty running mean): an episode then plays the same whichever worker runs it, after whichever episodes,
    and after a resume. (The policy node's tracker runs on across episodes: it holds the budget over the
    deployment; here each episode must hold it alone.)"""
    from deer_vla.control.budgets import BudgetSpec
    from deer_vla.control.controller import ExitController
    from deer_vla.control.online import OnlineBudgetTracker
    from deer_vla.control.thresholds import Thresholds

    if mode.kind == "fixed":
        return ExitController(runner, profile, None, fixed_exit=mode.exit)
    if mode.kind == "oracle":
        return ExitController(runner, profile, None, oracle_tolerance=mode.oracle_tolerance)
    assert mode.thresholds is not None
    thresholds = Thresholds.from_dict(mode.thresholds)
    budget = thresholds.budget or BudgetSpec(average_gflops=mode.budget_gflops)
    tracker = None
    if mode.track_budget:
        if budget.average_gflops is None:
            raise ValueError(f"mode {mode.name}: budget tracking needs an average budget")
        tracker = OnlineBudgetTracker(budget.average_gflops, reset_per_episode=True)
    return ExitController(runner, profile, thresholds, budget, tracker=tracker)


def run_episode(
    adapter: Any, controller: ExitController, mode: str, task: str, seed: int, instruction: str | None, max_steps: int
) -> EpisodeResult:
    """One episode; success as soon as the simulator reports it (Meta-World's success flag)."""
    obs = adapter.reset(seed=seed, instruction=instruction)
    controller.reset_episode()
    counts = np.zeros(controller.num_exits, dtype=np.int64)
    llm = total = ms = 0.0
    success = False
    steps = 0
    for _ in range(max_steps):
        action, rec = controller.step(obs)
        counts[rec.exit_used - 1] += 1
        llm += rec.llm_gflops
        total += rec.total_gflops
        ms += rec.total_ms
        result = adapter.step(action)
        steps += 1
        if result.success:
            success = True
            break
        if result.done:
            break
        obs = result.observation
    return EpisodeResult(
        mode=mode,
        task=task,
        seed=seed,
        instruction=adapter.instruction,
        success=success,
        steps=steps,
        llm_gflops=llm,
        total_gflops=total,
        exit_counts=[int(c) for c in counts],
        model_ms=ms,
    )
