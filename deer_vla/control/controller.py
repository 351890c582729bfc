"""The exit controller: per step, run exits one at a time and stop as early as the budget allows.

Drives any deer_vla.core.SegmentedPolicy (the model runner or a synthetic
stream). Per step: begin_step (shared prefix), then exits 1, 2, ... until
  - the distance between exit k's and exit k-1's actions (or, with the learned
    criterion, the policy's exit-gate score of exit k, from exit 1 on when the
    gates have an exit-1 gate) is <= scale * eta_k ("threshold"), or
  - the cap from the peak/memory budget is reached ("cap"; with ``peak_ms`` set, lowered while steps run
    longer than configure timed them: the drift margin), or
  - deadline mode forbids starting the next segment ("deadline");
then commit the chosen exit (advancing the recurrent head) and return its
action with a StepRecord. ``fixed_exit`` always runs exactly exit k (static
baselines); ``oracle_tolerance`` runs every exit up to the cap and commits
the oracle exit (the compute floor at that fidelity).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable

import numpy as np

from deer_vla.control.budgets import BudgetReport, BudgetSpec, budget_report, rounded_up, step_worst_ms
from deer_vla.control.criterion import Criterion
from deer_vla.control.deadline import DeadlineGuard, DriftMargin, LatencyTrace
from deer_vla.control.guarantee import Guarantee
from deer_vla.control.online import OnlineBudgetTracker
from deer_vla.control.oracle import oracle_exit
from deer_vla.control.thresholds import Thresholds
from deer_vla.core import CostProfile, Observation, SegmentedPolicy, StepRecord, StopReason, has_exit_gates
from deer_vla.core.instruction_text import MAX_INSTRUCTION_CHARS

log = logging.getLogger("deer_vla.controller")


class ExitController:
    def __init__(
        self,
        policy: SegmentedPolicy,
        profile: CostProfile,
        thresholds: Thresholds | None,
        budget: BudgetSpec | None = None,
        criterion: Criterion | None = None,
        tracker: OnlineBudgetTracker | None = None,
        clock: Callable[[], float] = time.perf_counter,
        fixed_exit: int | None = None,
        oracle_tolerance: float | None = None,
        latency_trace: LatencyTrace | None = None,
    ) -> None:
        """criterion defaults to the one the thresholds were solved with. latency_trace,
        if given, replaces the profile's p99 as the deadline guard's worst case. With the learned
        criterion the policy must have exit gates (core.ScoredPolicy), and the profile is charged for
        them (``CostProfile.with_exit_gates``) unless it already is."""
        self.policy = policy
        self.num_exits = int(policy.num_exits)
        if profile.num_exits < self.num_exits:
            raise ValueError(
                f"cost profile covers {profile.num_exits} exits but the policy has {self.num_exits} loaded"
            )
        self.profile = profile.truncated(self.num_exits)
        if fixed_exit is not None and oracle_tolerance is not None:
            raise ValueError("fixed_exit and oracle_tolerance are exclusive modes")
        if fixed_exit is not None and not (isinstance(fixed_exit, int) and 1 <= fixed_exit <= self.num_exits):
            raise ValueError(f"fixed_exit must be an exit in 1..{self.num_exits}, got {fixed_exit!r}")
        if oracle_tolerance is not None and not (oracle_tolerance >= 0 and np.isfinite(oracle_tolerance)):
            raise ValueError(f"oracle_tolerance must be finite and >= 0, got {oracle_tolerance}")
        if thresholds is None and fixed_exit is None and oracle_tolerance is None and self.num_exits > 1:
            raise ValueError("thresholds are required unless fixed_exit or oracle_tolerance is set")
        if criterion is not None and thresholds is not None and criterion.kind != thresholds.criterion.kind:
            raise ValueError(f"thresholds solved for the {thresholds.criterion.kind} criterion cannot run the "
                             f"{criterion.kind} one (their scores are on other scales): re-solve them")
        if (criterion is not None and thresholds is not None
                and criterion.first_exit != thresholds.criterion.first_exit):
            raise ValueError(f"thresholds from exit {thresholds.criterion.first_exit} cannot run a criterion that "
                             f"first stops at exit {criterion.first_exit}: re-solve them")
        self._check_solved_on(thresholds)
        self.thresholds = thresholds
        self._criterion = criterion
        self.fixed_exit = fixed_exit
        self.oracle_tolerance = oracle_tolerance
        if self.learned:
            self.profile = self._gated_profile(self.profile)
        self.tracker = tracker
        self.clock = clock
        self.latency_trace = latency_trace
        # the machine's, not the budget's: kept across budget changes (each builds a new guard)
        self.drift = DriftMargin()
        self.time_cap: int | None = None  # the exit cap peak_ms allows at the current drift (None: no peak_ms)
        self._lock = threading.Lock()
        self._pending: BudgetSpec | None = None
        self._apply_budget(budget or BudgetSpec(metric=thresholds.metric if thresholds else "llm_gflops"))
        self._check_trackable(self.budget, self.report)  # as set_budget does: at configure it overspent for good
        self._warn_unheld(self.budget)
        self._step = 0
        self._episode = 0
        self._episode_steps = 0
        self._episode_instruction: str | None = None  # as the policy reads it (its instruction_key)
        self._cost_sum = 0.0
        self._cost_steps = 0

    # --- budget ---------------------------------------------------------------------------

    def _validate(self, budget: BudgetSpec) -> tuple[BudgetReport, DeadlineGuard | None]:
        report = budget_report(self.profile, self._cap_budget(budget, self.thresholds), first_exit=self.first_exit)
        if self.fixed_exit is not None and self.fixed_exit > report.cap:
            raise ValueError(f"fixed_exit {self.fixed_exit} is past the budget's cap exit {report.cap}")
        if self.thresholds is not None and self.fixed_exit is None and self.oracle_tolerance is None:
            self.thresholds.check_covers(report.cap)
        guard = None
        if budget.deadline_ms is not None:
            if self.latency_trace is not None:
                guard = DeadlineGuard.from_trace(self.latency_trace, budget.deadline_ms)
            elif self.profile.has_latency():
                guard = DeadlineGuard.from_profile(self.profile, budget.deadline_ms)
        return report, guard

    def _cap_budget(self, budget: BudgetSpec, thresholds: Thresholds | None) -> BudgetSpec:
        """The budget the exit cap is derived from: with no average of its own, the average ``thresholds`` were
        solved for (the one the tracker holds, see _average_target). Thresholds solved for an average below
        exit 2's cost plan "always exit 1", which only the cap can do: without it every step ran to exit 2 and
        overspent the average they were solved for, for good."""
        if (budget.average_gflops is not None or thresholds is None or self.fixed_exit is not None
                or self.oracle_tolerance is not None or thresholds.metric != budget.metric):
            return budget
        solved = thresholds.budget
        if solved is None or solved.average_gflops is None:
            return budget
        return dataclasses.replace(budget, average_gflops=solved.average_gflops)

    def _apply_budget(self, budget: BudgetSpec) -> None:
        self.report, self.guard = self._validate(budget)
        self.budget = budget
        # peak_ms's cap is the deepest exit whose configure-time p99 fits it; these follow the machine (_time_cap)
        self._peak_worst = ([step_worst_ms(self.profile, k) for k in range(1, self.report.cap + 1)]
                            if budget.peak_ms is not None and self.profile.has_latency() else None)

    def _time_cap(self) -> int | None:
        """The deepest exit the peak time budget allows now: its worst case at configure plus the drift margin
        (how much longer the last steps ran than that) must fit ``peak_ms``; exit 1 always runs. The budget's cap
        on an unchanged machine (margin 0); None without peak_ms."""
        if self._peak_worst is None or self.budget.peak_ms is None:
            return None
        margin = self.drift.margin_ms
        fits = sum(1 for worst in self._peak_worst if worst + margin <= self.budget.peak_ms * (1 + 1e-12) + 1e-9)
        return max(1, min(fits, self.report.cap))

    def _planned_ms(self, ran: int) -> float:
        """The worst case a step that ran ``ran`` exits was planned with: the deadline guard's, else the profile's
        p99 of whole steps to that exit (what the peak time budget's cap is judged on)."""
        if self.guard is not None:
            return self.guard.worst_case_ms(ran)
        return step_worst_ms(self.profile, ran)

    def set_budget(self, budget: BudgetSpec) -> None:
        """Validate now (raises on a bad budget); it takes effect at the next step.

        While a fidelity guarantee is in force, a budget that would void it is refused: one whose cap
        differs from the certified one, an average below the certified thresholds' calibration cost, or a
        per-step deadline (it stops steps before the certified thresholds decide).
        """
        report, _ = self._validate(budget)
        g = self._certified()  # not suspended by a slow machine's time cap: a budget that voids it is still refused
        if g is not None and budget.deadline_ms is not None:
            raise ValueError(f"a deadline ({budget.deadline_ms:g} ms) stops steps before the thresholds certified "
                             f"for eps={g.eps:g} decide, so the fidelity guarantee would not hold; run without the "
                             "deadline or without the guarantee")
        if g is not None and g.family is not None and report.cap != g.family.cap:
            raise ValueError(f"budget caps at exit {report.cap} (set by {report.cap_binding}) but the fidelity "
                             f"guarantee in force was certified with exits up to {g.family.cap}; recalibrate")
        cost = self.thresholds.expected_cost if self.thresholds is not None else None
        if (g is not None and cost is not None and budget.average_gflops is not None
                and budget.metric == self.thresholds.metric and budget.average_gflops < cost):  # type: ignore[union-attr]
            raise ValueError(f"average budget {budget.average_gflops:g} is below the {cost:.6g} the thresholds "
                             f"certified for eps={g.eps:g} spend; the smallest feasible average budget is "
                             f"{rounded_up(cost)}")
        self._check_trackable(budget, report)
        self._warn_unheld(budget)
        with self._lock:
            self._pending = budget

    def _check_trackable(self, budget: BudgetSpec, report: BudgetReport) -> None:
        """ValueError for an average the thresholds cannot be scaled to: thresholds solved for a budget that never
        stops a step early hold values below every score (they stop nothing), and the online tracker, which
        scales them by at most its max_scale, then stays over the new average for good without a word."""
        th = self.thresholds
        if (th is None or self.fixed_exit is not None or self.oracle_tolerance is not None or th.expected_cost is None
                or budget.average_gflops is None):
            return
        # where they stop is the same whatever the metric a budget counts in: the cap's cost is the budget's
        # (a budget switched to total GFLOPs with such thresholds was taken, and never held)
        cap_cost = float(self.profile.costs(budget.metric)[report.cap - 1])
        if th.exit_distribution:
            # where they stopped under their own cap: a step stopped before this budget's cap stops there still
            # (their expected cost counts the exits past a lower new cap, and refused budgets they can hold)
            stops_early = sum(th.exit_distribution[:report.cap - 1]) > 1e-12
        else:  # a file without its distribution: their cost under their own cap, in their own metric
            stops_early = th.expected_cost < float(self.profile.costs(th.metric)[report.cap - 1]) * (1 - 1e-9)
        if not stops_early and budget.average_gflops < cap_cost * (1 - 1e-9):
            raise ValueError(
                f"these thresholds stop no step before exit {report.cap} (solved for a budget that does not bind: "
                f"expected cost {th.expected_cost:.6g} {th.metric}), so no scaling brings them to an average of "
                f"{budget.average_gflops:g}; re-solve them for it (`deer-vla calibrate --average-gflops "
                f"{budget.average_gflops:g}`) and configure with them")

    def _check_solved_on(self, thresholds: Thresholds | None) -> None:
        """ValueError for thresholds that record other weights or exit gates than the policy's checkpoint (a
        runner from PolicyRunner.from_checkpoint knows its folder): load_stack and evaluate refused another
        checkpoint's file, a controller built directly ran it."""
        ckpt = getattr(self.policy, "checkpoint_dir", None)
        if thresholds is not None and ckpt is not None:
            thresholds.check_solved_on(ckpt.weights_digest, "this set of thresholds", str(ckpt.root), ckpt.gates_digest,
                                       ckpt.gates_file_digest, ckpt.config_digests)

    def _warn_unheld(self, budget: BudgetSpec) -> None:
        """Say so when the library path accepts a budget it will not hold: an average the thresholds spend more
        than, with no tracker to scale them (the report still calls it binding; 2x over it was measured), and a
        time budget judged with step times of an unknown machine (a shipped checkpoint's profile.json)."""
        th = self.thresholds
        if (self.tracker is None and th is not None and self.fixed_exit is None and self.oracle_tolerance is None
                and budget.average_gflops is not None and th.expected_cost is not None
                and th.metric == budget.metric and th.expected_cost > budget.average_gflops * 1.01):
            log.warning("average budget %g is not held: these thresholds spend %.6g per step and no online tracker "
                        "scales them (pass tracker=OnlineBudgetTracker(...), as load_stack's track_average does, or "
                        "re-solve the thresholds for it)", budget.average_gflops, th.expected_cost)
        if (budget.peak_ms is not None or budget.deadline_ms is not None) and not self.profile.machine:
            log.warning("a time budget is judged with step times measured on an unknown machine (this profile "
                        "records none): time the model here first (PolicyRunner.time_here(), as load_stack does)")

    def set_thresholds(self, thresholds: Thresholds) -> None:
        """Swap thresholds (e.g. re-solved for a new budget); checked now, used from the next step."""
        self._check_solved_on(thresholds)
        if self.fixed_exit is not None or self.oracle_tolerance is not None:
            raise ValueError("thresholds are not used in fixed-exit or oracle mode")
        if (thresholds.criterion.kind, thresholds.first_exit) != (
                self.criterion.kind, self.criterion.first_exit):
            raise ValueError(f"these thresholds are for the {thresholds.criterion.kind} criterion from exit "
                             f"{thresholds.first_exit}, the controller runs the {self.criterion.kind} one from exit "
                             f"{self.criterion.first_exit} (its cost accounting differs): build a new controller to "
                             "switch")
        with self._lock:
            pending = self._pending
        for budget in (self.budget, *([pending] if pending is not None else [])):
            thresholds.check_covers(
                budget_report(self.profile, self._cap_budget(budget, thresholds), first_exit=self.first_exit).cap)
        with self._lock:
            self.thresholds = thresholds
            if self._pending is None:  # the cap may follow the new thresholds' own average: derived at the next step
                self._pending = self.budget

    @property
    def criterion(self) -> Criterion:
        """The one given, else the one the thresholds were solved with, else the default (RMS)."""
        if self._criterion is not None:
            return self._criterion
        return self.thresholds.criterion if self.thresholds is not None else Criterion()

    @property
    def learned(self) -> bool:
        """Dynamic exits on the learned criterion (the exit gates' scores)."""
        return self.criterion.learned and self.fixed_exit is None and self.oracle_tolerance is None

    @property
    def first_exit(self) -> int:
        """The first exit the dynamic mode can stop at: the criterion's (2, or 1 for the learned one with an
        exit-1 gate); 2 in fixed-exit and oracle modes, which stop by other rules."""
        return self.criterion.first_exit if self.learned else 2

    def _gated_profile(self, profile: CostProfile) -> CostProfile:
        if not has_exit_gates(self.policy):
            raise ValueError("the learned exit criterion needs exit gates, and this policy has none: train them "
                             "with `deer-vla train-gate CHECKPOINT --data DIR`, or use the consecutive criterion")
        first = self.criterion.first_exit
        gated_from = int(self.policy.first_gated_exit)  # type: ignore[attr-defined]
        if first < gated_from:
            raise ValueError(f"these learned thresholds can stop at exit {first} on that exit's gate, and the "
                             f"policy's exit gates begin at exit {gated_from} (trained without an exit-1 gate): "
                             "retrain them with "
                             "`deer-vla train-gate CHECKPOINT --data DIR` (or re-solve the thresholds for these "
                             "gates with `deer-vla calibrate --criterion learned`)")
        if profile.gate_gflops:
            if profile.gate_first_exit != first:
                raise ValueError(f"the cost profile charges exit gates from exit {profile.gate_first_exit}, the "
                                 f"criterion scores exits from {first}: pass the uncharged profile")
            return profile
        return profile.with_exit_gates(float(self.policy.exit_gate_gflops), first)  # type: ignore[attr-defined]

    @property
    def cap(self) -> int:
        return self.report.cap

    def average_unbound(self, budget: BudgetSpec | None = None) -> str | None:
        """Why the average of ``budget`` (default: the one in force; a new one takes effect at the next step) binds
        nothing, when a cap (peak or memory) makes every step cheaper than it ("average budget 0.1 is at or
        above ..."), else None. The tracker then winds its scale to the floor and every step runs to the cap:
        true, but a robot's engineer set an average expecting it to decide."""
        report = self.report if budget is None else self._validate(budget)[0]
        budget = self.budget if budget is None else budget
        if (budget.average_gflops is None or report.average_binding or report.cap_binding == "num_exits"
                or self.fixed_exit is not None or self.oracle_tolerance is not None):
            return None
        return (f"average budget {budget.average_gflops:g} is at or above the cost of exit {report.cap} every step "
                f"({report.cap_cost:g} {report.metric}), the cap {report.cap_binding} sets: it does not bind, and "
                f"steps may all run to exit {report.cap}")

    @property
    def plans_with_time(self) -> bool:
        """Whether a time budget plans with the machine's step times (a deadline, or peak_ms on a timed
        profile). Steps are measured into ``drift`` whenever the profile has latencies, with or without one: a
        time budget set later starts from how the machine runs now, not from before it was unset."""
        return self.guard is not None or self._peak_worst is not None

    @property
    def guarantee(self) -> Guarantee | None:
        """The thresholds' fidelity guarantee, while it holds: dynamic mode, the thresholds' own criterion,
        the cap it was certified under (a different cap or criterion takes other exits), no per-step deadline
        (which stops steps before the thresholds decide), and no peak_ms cap a slow machine lowered below it."""
        g = self._certified()
        if g is not None and self.time_cap is not None and self.time_cap < self.report.cap:
            return None  # a machine slower than configure's: peak_ms stops steps before the thresholds decide
        return g

    def _certified(self) -> Guarantee | None:
        """The thresholds' guarantee if the budget, mode and criterion keep it (``guarantee`` without the time
        cap's suspension)."""
        th = self.thresholds
        if th is None or th.guarantee is None or self.fixed_exit is not None or self.oracle_tolerance is not None:
            return None
        if self.budget.deadline_ms is not None:
            return None
        family = th.guarantee.family
        if family is not None and family.cap != self.report.cap:
            return None
        if self._criterion is not None and self._criterion != th.criterion:
            return None
        return th.guarantee

    def _average_target(self) -> float | None:
        """The average the tracker holds: the budget's, else the one the thresholds were solved for.

        Without the fallback, a node started with no average budget would run the thresholds
        open loop and drift off their own design point whenever scenes differ from calibration.
        """
        if self.budget.average_gflops is not None:
            return self.budget.average_gflops
        if self.fixed_exit is not None or self.oracle_tolerance is not None or self.thresholds is None:
            return None
        solved = self.thresholds.budget
        if solved is None or solved.average_gflops is None or self.thresholds.metric != self.budget.metric:
            return None
        return solved.average_gflops

    def _active_tracker(self) -> OnlineBudgetTracker | None:
        """The tracker aimed at the current average (see _average_target); None while there is none.

        The target is synced here rather than when budgets or thresholds change, so a swap of
        either (from another thread, applied at the next step) cannot leave it stale.
        """
        target = self._average_target()
        if self.tracker is None or target is None or self._certified() is not None:
            # scaling certified thresholds would void their guarantee (also while a slow machine suspends it)
            return None
        if self.tracker.target_gflops != target:
            self.tracker.set_target(target)
        return self.tracker

    @property
    def running_mean(self) -> float:
        tracker = self._active_tracker()
        if tracker is not None:
            return tracker.running_mean
        return self._cost_sum / self._cost_steps if self._cost_steps else 0.0

    def reset_episode(self) -> None:
        """New episode/instruction: clear the policy's head history; the tracker resets if configured."""
        self.policy.reset()
        if self.tracker is not None:
            self.tracker.reset_episode()
        if self._episode_steps:  # the first reset before any step opens episode 0
            self._episode += 1
        self._episode_steps = 0

    # --- one control step -----------------------------------------------------------------

    @staticmethod
    def _checked(action: np.ndarray, k: int, previous: list[np.ndarray]) -> np.ndarray:
        out = np.asarray(action, dtype=np.float64)
        if out.ndim != 1 or (previous and out.shape != previous[0].shape):
            want = previous[0].shape if previous else "(A,)"
            raise ValueError(f"policy returned an action of shape {out.shape} at exit {k}, expected {want}")
        if not np.all(np.isfinite(out)):
            raise ValueError(f"policy returned a NaN or inf action at exit {k}: {out}")
        return out

    def _learned_score(self, k: int) -> float:
        score = float(self.policy.exit_score())  # type: ignore[attr-defined]
        if not (np.isfinite(score) and score >= 0):
            raise ValueError(f"policy returned exit score {score} at exit {k}; expected a finite distance >= 0")
        return score

    def _eta(self, k: int, scale: float) -> float:
        assert self.thresholds is not None
        return self.thresholds.eta(k) * scale

    def _new_instruction_starts_episode(self, observation: Observation) -> None:
        """A step whose instruction the policy reads differently from the episode's starts a new episode, as the
        ROS node does on a changed instruction: the head's history of the old task steered the new one (the
        library path kept it, and an x command changed sign)."""
        instruction = observation.instruction
        if not isinstance(instruction, str) or len(instruction) > MAX_INSTRUCTION_CHARS:
            return  # begin_step refuses it, naming the type or the length (no normalizing of megabytes first)
        key_of = getattr(self.policy, "instruction_key", None)
        key = key_of(instruction) if key_of is not None else instruction
        if self._episode_steps and key != self._episode_instruction:
            check = getattr(self.policy, "check_observation", None)
            if check is not None:
                check(observation)  # a step refused must leave the running episode as it was
            self.reset_episode()
        self._episode_instruction = key

    def step(self, observation: Observation, started_at: float | None = None) -> tuple[np.ndarray, StepRecord]:
        """One control step. ``started_at``: this controller's ``clock()`` when the step's work began, if before
        this call (a robot's compressed frames decoded first): the deadline, ``encode_ms`` and ``total_ms`` then
        count from it, so work done for the step before the model runs is not left out of its time."""
        if started_at is not None and not (math.isfinite(started_at) and started_at <= self.clock()):
            raise ValueError(f"started_at must be a past reading of the controller's clock, got {started_at!r}")
        self._new_instruction_starts_episode(observation)
        with self._lock:
            if self._pending is not None:
                if self._pending.metric != self.budget.metric:
                    # the running mean is of the budget's metric: one of LLM and total GFLOPs mixed is neither
                    self._cost_sum, self._cost_steps = 0.0, 0
                    if self.tracker is not None:
                        self.tracker.restart_mean()
                self._apply_budget(self._pending)
                self._pending = None
        cap = self.report.cap
        self.time_cap = self._time_cap()
        time_cap = cap if self.time_cap is None else self.time_cap
        tracker = self._active_tracker()  # scale 1 and no updates while it idles
        scale = tracker.scale if tracker is not None else 1.0
        t_begin = self.clock()
        t0 = t_begin if started_at is None else started_at
        self.policy.begin_step(observation)
        t_enc = self.clock()
        actions: list[np.ndarray] = []
        segment_ms: list[float] = []
        raw: list[float] = []  # consecutive distances
        distances: list[float] = []  # the scores compared with eta_k (raw ones, smoothed if configured, or learned)
        learned = self.learned
        first = self.first_exit
        reason: StopReason = "cap"
        last = min(self.fixed_exit if self.fixed_exit is not None else cap, time_cap)
        guard = self.guard
        margin = self.drift.margin_ms
        for k in range(1, last + 1):
            if k > 1 and guard is not None and not guard.allows(k, (self.clock() - t0) * 1e3, margin):
                reason = "deadline"
                break
            ts = self.clock()
            actions.append(self._checked(self.policy.run_next_exit(), k, actions))
            segment_ms.append((self.clock() - ts) * 1e3)
            if self.fixed_exit is not None:
                reason = "fixed"
                continue
            if self.oracle_tolerance is not None or k < first:
                continue
            if learned:
                distances.append(self._learned_score(k))
            else:
                raw.append(self.criterion(actions[-1], actions[-2]))
                distances.append(self.criterion.score(raw))
            if distances[-1] <= self._eta(k, scale):
                reason = "threshold"
                break
        ran = len(actions)
        if ran == time_cap < (self.fixed_exit or cap) and reason in ("cap", "fixed"):
            reason = "cap"  # the peak time budget's cap on this machine now, below the budget's (or the fixed) exit
        chosen = ran
        if self.oracle_tolerance is not None and reason != "deadline":
            chosen = oracle_exit(np.stack(actions), self.oracle_tolerance, self.criterion)
            reason = "oracle"
        tc = self.clock()
        action = np.asarray(self.policy.commit(chosen), dtype=np.float64)
        t_end = self.clock()
        if self.guard is not None or self.profile.has_latency():
            # the model's whole step, as configure timed it (not a compressed frame's decode before it)
            notice = self.drift.observe((t_end - t_begin) * 1e3, self._planned_ms(ran))
            if notice is not None and self.plans_with_time:  # nothing to say while nothing plans with it
                log.warning(notice)
        # Compute spent = every exit that ran; the oracle reports its floor instead.
        charged = chosen if reason == "oracle" else ran
        llm = self.profile.cost(charged, "llm_gflops")
        total = self.profile.cost(charged, "total_gflops")
        cost = llm if self.budget.metric == "llm_gflops" else total
        self._cost_sum += cost
        self._cost_steps += 1
        if tracker is not None:
            tracker.update(cost)
        etas = (
            [self._eta(k, scale) for k in range(first, cap + 1)]
            if self.thresholds is not None and self.fixed_exit is None and self.oracle_tolerance is None
            else []
        )
        g = self.guarantee
        record = StepRecord(
            step=self._step,
            episode=self._episode,
            exit_used=chosen,
            max_exit=time_cap,
            stop_reason=reason,
            llm_gflops=llm,
            total_gflops=total,
            encode_ms=(t_enc - t0) * 1e3,
            segment_ms=segment_ms,
            head_ms=(t_end - tc) * 1e3,
            total_ms=(t_end - t0) * 1e3,
            distances=distances,
            thresholds=etas,
            distances_from_exit=first,
            threshold_scale=scale,
            running_mean_gflops=self.running_mean,
            budget_average_gflops=self._average_target(),  # the one in force, set or solved-for
            budget_peak_gflops=self.budget.peak_gflops,
            budget_peak_ms=self.budget.peak_ms,
            budget_memory_bytes=self.budget.memory_bytes,
            deadline_ms=self.budget.deadline_ms,
            budget_metric=self.budget.metric,
            stamp_ns=observation.stamp_ns,
            action=[float(v) for v in action],
            risk_eps=g.eps if g else None,
            risk_delta=g.delta if g else None,
            risk_metric=g.metric if g else None,
            risk_tau=g.tau if g else None,
            risk_bound=g.bound if g else None,
            risk_n_calibration=g.n_calibration if g else None,
        )
        self._step += 1
        self._episode_steps += 1
        return action, record
