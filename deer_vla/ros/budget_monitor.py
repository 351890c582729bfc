"""Running statistics of step records and their status against each budget.

Pure (no rclpy) so the rules are tested directly; the monitor node turns
the result into diagnostic_msgs. A budget is OK while met, WARN once
exceeded, ERROR once exceeded by more than ``error_ratio`` times. Each
budget is judged on the steps run since it took its current value (a budget
changed at run time is not broken by steps run under the old one), in the
cost metric it refers to (the record's ``budget_metric``, the policy's).
"""
from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from deer_vla.core import StepRecord

OK, WARN, ERROR = 0, 1, 2
# window 0 (whole run): means, maxima and the histogram are running totals; the percentiles are over the
# last this many steps, so a day-long run neither grows nor takes seconds per diagnostics tick
QUANTILE_SAMPLES = 20_000
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR"}
# the average budget is held by the policy's online tracker, whose running mean settles on the budget from either
# side: a mean this close above it (0.09% over 19 000 steps of a 100-episode demo) is the budget held, not broken
AVERAGE_TOLERANCE = 0.01
# once over it, the live status is back to OK only under this (a soak's mean settled at +0.9 to +1.0%, and the
# status changed level 50 times in 35 min, 4 times in 10 s): a diagnostics consumer's alerts follow its changes
AVERAGE_BACK_UNDER = AVERAGE_TOLERANCE / 2


# budget name -> the StepRecord field holding its value
BUDGET_FIELDS = {"average_gflops": "budget_average_gflops", "peak_gflops": "budget_peak_gflops",
                 "peak_ms": "budget_peak_ms", "deadline_ms": "deadline_ms"}


@dataclass
class _SinceChange:
    """The steps run under one value of one budget (it is judged on these alone: a budget tightened at run time
    is not broken by steps that ran under the old one). Costs in the budget's own metric."""

    limit: float | None
    metric: str
    steps: int = 0
    total_cost: float = 0.0
    max_cost: float = 0.0
    max_ms: float = 0.0


@dataclass
class BudgetStatus:
    name: str  # e.g. "average_gflops"
    level: int
    message: str
    values: dict[str, str] = field(default_factory=dict)


class BudgetMonitor:
    def __init__(self, metric: str = "llm_gflops", window: int = 0, error_ratio: float = 1.5,
                 obs_age_warn_ms: float = 0.0) -> None:
        # named as the monitor's parameters of these names, which they are
        if metric not in ("llm_gflops", "total_gflops"):
            raise ValueError(f"parameter 'metric' must be 'llm_gflops' or 'total_gflops', got '{metric}'")
        if window < 0:
            raise ValueError(f"parameter 'window' must be >= 0 (0 = whole run), got {window}")
        if not 1.0 < error_ratio < math.inf:  # inf: no budget could ever reach ERROR
            raise ValueError(f"parameter 'error_ratio' must be a number > 1, got {error_ratio}")
        if not obs_age_warn_ms >= 0:
            raise ValueError(f"parameter 'obs_age_warn_ms' must be >= 0 (0 = off), got {obs_age_warn_ms}")
        self.metric = metric
        self.error_ratio = error_ratio
        self.obs_age_warn_ms = obs_age_warn_ms
        self.window = window
        maxlen = window or QUANTILE_SAMPLES
        self._age: deque[float] = deque(maxlen=maxlen)  # observation age at action time, ms
        self._cost: deque[float] = deque(maxlen=maxlen)
        self._ms: deque[float] = deque(maxlen=maxlen)
        self._exit: deque[int] = deque(maxlen=maxlen)
        self.count = 0
        self.total_cost = 0.0
        self.total_exit = 0
        self.peak_cost = 0.0  # whole run
        self.peak_ms = 0.0
        self.exit_histogram: dict[int, int] = {}  # whole run
        self.last: StepRecord | None = None
        # the worst level a budget value was left at when it changed (its steps are judged no more after): the
        # run's worst beside the final statuses, without the running mean's passing excursions within a value
        self.worst_level = OK
        self._budget_cost: deque[float] = deque(maxlen=maxlen)  # in each record's budget metric
        self._since: dict[str, _SinceChange] = {}
        # the average budget's value (its _SinceChange) the live status last said was over
        self._average_over: _SinceChange | None = None
        # the summary's percentiles are the whole run's (its last QUANTILE_SAMPLES steps), whatever the window
        self._run_ms = self._ms if not window else deque(maxlen=QUANTILE_SAMPLES)
        self._run_age = self._age if not window else deque(maxlen=QUANTILE_SAMPLES)

    def update(self, record: StepRecord) -> None:
        metric = record.budget_metric or self.metric  # the policy's budget.metric (older records: ours)
        budget_cost = float(getattr(record, metric))
        for name, field_name in BUDGET_FIELDS.items():
            limit = getattr(record, field_name)
            since = self._since.get(name)
            if since is None or since.limit != limit or since.metric != metric:
                if since is not None:  # the value ends here: judged on its own steps (before this one is added)
                    self.worst_level = max(self.worst_level, self._judgement(name, since.limit, whole=True)[0])
                since = self._since[name] = _SinceChange(limit, metric)
            since.steps += 1
            since.total_cost += budget_cost
            since.max_cost = max(since.max_cost, budget_cost)
            since.max_ms = max(since.max_ms, float(record.total_ms))
        cost = float(getattr(record, self.metric))
        self._cost.append(cost)
        self._ms.append(float(record.total_ms))
        self._exit.append(int(record.exit_used))
        if record.obs_age_ms is not None and math.isfinite(record.obs_age_ms):
            self._age.append(float(record.obs_age_ms))
        if self.window:
            self._run_ms.append(float(record.total_ms))
            if record.obs_age_ms is not None and math.isfinite(record.obs_age_ms):
                self._run_age.append(float(record.obs_age_ms))
        self.count += 1
        self.total_cost += cost
        self.total_exit += int(record.exit_used)
        self.peak_cost = max(self.peak_cost, cost)
        self.peak_ms = max(self.peak_ms, float(record.total_ms))
        self.exit_histogram[record.exit_used] = self.exit_histogram.get(record.exit_used, 0) + 1
        self.last = record
        self._budget_cost.append(budget_cost)

    def _judged(self, name: str, whole: bool = False) -> tuple[float, str]:
        """(value, what it is) that budget ``name`` is judged on: over the steps since it took its current value
        (within the window, if one is set, unless ``whole``), in the metric the budget refers to."""
        since = self._since[name]
        windowed = bool(self.window) and not whole
        if name == "peak_ms":  # the budget is a worst case, capped by the profile's measured p99: judged so
            ms = self._ms if windowed else self._run_ms
            return float(np.percentile(list(ms)[-min(since.steps, len(ms)):], 99)), "p99 step ms"
        if not windowed:  # the running totals since the value: no copy of the recent steps
            if name == "average_gflops":
                return since.total_cost / since.steps, f"mean {since.metric}"
            if name == "peak_gflops":
                return since.max_cost, f"max {since.metric}"
            return since.max_ms, "max step ms"
        n = min(since.steps, len(self._ms))
        if name == "average_gflops":
            return float(np.mean(list(self._budget_cost)[-n:])), f"mean {since.metric}"
        if name == "peak_gflops":
            return max(list(self._budget_cost)[-n:]), f"max {since.metric}"
        return max(list(self._ms)[-n:]), "max step ms"

    # -- statistics over the window -------------------------------------------------
    def mean_cost(self) -> float:
        if not self.window:
            return self.total_cost / self.count if self.count else 0.0
        return float(np.mean(self._cost)) if self._cost else 0.0

    def max_cost(self) -> float:
        if not self.window:
            return self.peak_cost
        return float(max(self._cost)) if self._cost else 0.0

    def latency(self, q: float) -> float:
        return float(np.percentile(self._ms, q)) if self._ms else 0.0

    def max_latency(self) -> float:
        if not self.window:
            return self.peak_ms
        return float(max(self._ms)) if self._ms else 0.0

    def obs_age(self, q: float) -> float:
        return float(np.percentile(self._age, q)) if self._age else 0.0

    def mean_exit(self) -> float:
        if not self.window:
            return self.total_exit / self.count if self.count else 0.0
        return float(np.mean(self._exit)) if self._exit else 0.0

    # -- status ----------------------------------------------------------------------
    def _level(self, value: float, limit: float) -> int:
        if value <= limit:
            return OK
        return ERROR if value > limit * self.error_ratio else WARN

    def _judgement(self, name: str, limit: float | None, whole: bool = False,
                   was_over: bool = False) -> tuple[int, str, dict[str, str]]:
        """(level, message, values) of budget ``name`` at ``limit`` over the steps since it took its value
        (``whole``: all of them, whatever the window). ``was_over``: the live status said this average budget
        was over last time, so it is back within only under AVERAGE_BACK_UNDER."""
        value, what = self._judged(name, whole)
        values = {"value": f"{value:.6g}", "measure": what}
        if limit is None or not math.isfinite(limit) or limit <= 0:
            return OK, "no budget set", values
        tolerance = AVERAGE_TOLERANCE if name == "average_gflops" else 0.0
        allowed = AVERAGE_BACK_UNDER if was_over and tolerance else tolerance
        level = OK if value <= float(limit) * (1 + allowed) else self._level(value, float(limit))
        values["budget"] = f"{float(limit):.6g}"
        verdict = "within budget" if level == OK else "over budget"
        if value > float(limit) and tolerance:
            verdict += f" (+{100 * (value / float(limit) - 1):.3g}%, tolerance {100 * allowed:g}%)"
        return level, f"{what} {value:.4g} {verdict} {float(limit):.4g}", values

    def statuses(self) -> list[BudgetStatus]:
        """One status per budget in force (taken from the latest record), plus latency."""
        out: list[BudgetStatus] = []
        rec = self.last
        if rec is None:
            # the "steps" status, as once records come: a status that is published once and never again
            # stays WARN in a listener's cache and goes stale in diagnostic_aggregator
            return [BudgetStatus("steps", WARN, "no step records received yet", {"count": "0"})]
        for name, field_name in BUDGET_FIELDS.items():
            limit = getattr(rec, field_name)
            since = self._since.get(name)  # the value in force since it last changed: a value set again is new
            was_over = name == "average_gflops" and since is not None and self._average_over is since
            level, message, values = self._judgement(name, limit, was_over=was_over)
            if name == "average_gflops":
                self._average_over = since if level != OK else None
            out.append(BudgetStatus(name, level, message, values))
        age_values = {"p50_ms": f"{self.obs_age(50):.2f}", "p95_ms": f"{self.obs_age(95):.2f}",
                      "warn_ms": f"{self.obs_age_warn_ms:.6g}"}
        if not self._age:
            out.append(BudgetStatus("observation_age", OK, "no observation ages recorded", age_values))
        elif self.obs_age_warn_ms and self.obs_age(95) > self.obs_age_warn_ms:
            out.append(BudgetStatus("observation_age", WARN, f"p95 observation age at action time "
                                    f"{self.obs_age(95):.1f} ms above {self.obs_age_warn_ms:.4g} ms", age_values))
        else:
            out.append(BudgetStatus("observation_age", OK, f"p95 observation age at action time "
                                    f"{self.obs_age(95):.1f} ms", age_values))
        if rec.risk_eps is None:
            out.append(BudgetStatus("fidelity_guarantee", OK, "none in force", {}))
        else:
            what = ("mean action distance" if rec.risk_metric == "mean"
                    else f"rate of action distance > {rec.risk_tau:g}")
            out.append(BudgetStatus(
                "fidelity_guarantee", OK,
                f"{what} <= {rec.risk_eps:g} with probability >= {1 - (rec.risk_delta or 0):g} "
                f"({rec.risk_n_calibration} calibration steps)",
                {"eps": f"{rec.risk_eps:.6g}", "delta": f"{rec.risk_delta:.6g}", "metric": str(rec.risk_metric),
                 "tau": "" if rec.risk_tau is None else f"{rec.risk_tau:.6g}",
                 "bound": "" if rec.risk_bound is None else f"{rec.risk_bound:.6g}",
                 "n_calibration": str(rec.risk_n_calibration)}))
        mem = rec.budget_memory_bytes
        out.append(
            BudgetStatus(
                "memory_bytes",
                OK,
                "enforced at load (exits beyond the budget are not loaded)" if mem else "no budget set",
                {"budget": str(mem or 0), "max_exit": str(rec.max_exit)},
            )
        )
        # with a window, every figure of this status is the window's (the histogram too), and it says so
        histogram = self.exit_histogram if not self.window else dict(Counter(self._exit))
        over = f" (the last {len(self._exit)} in these figures)" if self.window else ""
        steps_values = {
            "count": str(self.count),
            "mean_exit": f"{self.mean_exit():.3f}",
            f"mean_{self.metric}": f"{self.mean_cost():.6g}",
            "p95_ms": f"{self.latency(95):.2f}",
            "max_ms": f"{self.max_latency():.2f}",
            "exit_histogram": str(dict(sorted(histogram.items()))),
        }
        if self.window:
            steps_values["window_steps"] = str(len(self._exit))
        out.append(BudgetStatus("steps", OK, f"{self.count} steps{over}, mean exit {self.mean_exit():.2f}",
                                steps_values))
        return out

    def summary(self, statuses: list[BudgetStatus] | None = None) -> dict:
        """Whole-run figures (not windowed; percentiles over the last QUANTILE_SAMPLES steps); ``final_status``
        over ``statuses`` (default: ``statuses()``), ``worst_status`` the worst of it and of each budget value
        the run left (judged on its own steps when it changed): a run over its average budget for most of its
        time, then within a raised one, ends OK but was not."""
        final = max((s.level for s in (self.statuses() if statuses is None else statuses)), default=OK)
        # the budgets in force judged on all their steps: with a window, the final status is the last N steps'
        # alone (a run over its budget for 90 of 100 steps ended OK, its worst too)
        whole = max((self._judgement(name, since.limit, whole=True)[0] for name, since in self._since.items()),
                    default=OK)
        def pct(samples: deque[float], q: float) -> float:
            return float(np.percentile(samples, q)) if samples else 0.0

        return {
            "steps": self.count,
            "mean_exit": self.total_exit / self.count if self.count else 0.0,
            f"mean_{self.metric}": self.total_cost / self.count if self.count else 0.0,
            "p95_ms": pct(self._run_ms, 95),
            "max_ms": self.peak_ms,
            "obs_age_p50_ms": pct(self._run_age, 50),
            "obs_age_p95_ms": pct(self._run_age, 95),
            "exit_histogram": dict(sorted(self.exit_histogram.items())),
            "final_status": LEVEL_NAMES[final],
            "worst_status": LEVEL_NAMES[max(final, whole, self.worst_level)],
        }
