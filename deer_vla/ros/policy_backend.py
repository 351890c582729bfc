"""Load what the policy node runs: checkpoint -> PolicyRunner, profile, thresholds, ExitController.

Kept out of the node so the replay tool builds exactly the same stack.
"""
from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deer_vla.core import ActionSpec, CostProfile, ProprioSpec

if TYPE_CHECKING:  # torch-heavy modules are imported lazily at run time
    from deer_vla.control.budgets import BudgetSpec
    from deer_vla.control.controller import ExitController
    from deer_vla.control.online import OnlineBudgetTracker
    from deer_vla.control.thresholds import Thresholds
    from deer_vla.model.runner import PolicyRunner


class ConfigurationError(RuntimeError):
    """The policy cannot be configured; the message says what to fix."""


@dataclass
class PolicyStack:
    runner: PolicyRunner
    controller: ExitController
    profile: CostProfile  # of the loaded exits
    full_profile: CostProfile  # of the whole checkpoint (for "compute saved vs the full model")
    # the whole checkpoint's as configure judged the cap: the gates' bytes held, and the learned criterion's gate
    # evaluations charged (a run-time budget is judged the same way, or a budget configure capped below exit k
    # reads as allowing it)
    cap_profile: CostProfile
    action_spec: ActionSpec
    cameras: tuple[str, ...]
    cap: int
    proprio_dim: int  # values of proprioception the model needs per step (0 = none)
    proprio_spec: ProprioSpec | None = None  # their names, units and limits (None: no proprioception)
    control_rate_hz: float | None = None  # the demonstrations' step rate, if the checkpoint records it
    steps_timed: bool = False  # configure timed whole steps here (a time budget was set): peak_ms, deadlines hold
    # what was loaded (weights file's SHA-256, config digest), read at load: a folder replaced in place since is
    # another model even under the same path
    model_digest: tuple[str, str] = ("", "")


@dataclass(frozen=True)
class TrackerCarry:
    """An online tracker kept over a cleanup, for the next configure. The average budget holds over the
    deployment: a robot cycled through cleanup and configure (a soak's three cycles went 1.1% over) restarted
    its scale at 1 each time and overspent while it settled again. Taken only by a configuration whose scale
    means the same: the same model (its weights' and config's digests as loaded, not the folder's path: one
    replaced in place is another model), thresholds (as applied), budget metric and costs of the loaded exits."""

    model_digest: tuple[str, str]
    thresholds: Thresholds
    metric: str
    costs: tuple[float, ...]
    tracker: OnlineBudgetTracker

    @classmethod
    def of(cls, stack: PolicyStack) -> TrackerCarry | None:
        controller = stack.controller
        if controller.tracker is None or controller.thresholds is None or "" in stack.model_digest:
            return None
        metric = controller.budget.metric
        return cls(stack.model_digest, controller.thresholds, metric, tuple(stack.profile.costs(metric)),
                   controller.tracker)

    def resume(self, stack: PolicyStack) -> bool:
        """Hand this tracker's state to ``stack``'s if its configuration is the same; whether it did."""
        now = TrackerCarry.of(stack)
        if now is None or (now.model_digest, now.thresholds, now.metric, now.costs) != (
                self.model_digest, self.thresholds, self.metric, self.costs):
            return False
        now.tracker.carry_on_from(self.tracker)
        return True


def make_budget(kwargs: dict) -> BudgetSpec:
    from deer_vla.control.budgets import BudgetSpec

    try:
        return BudgetSpec(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"invalid budget {kwargs}: {exc}") from exc


def check_budget(profile: CostProfile, budget: BudgetSpec, fixed_exit: int, first_exit: int = 2) -> int:
    """-> the exit cap (``first_exit``: the first exit the thresholds can stop at); ConfigurationError when the
    budget or fixed exit cannot be met by this model."""
    from deer_vla.control.budgets import InfeasibleBudgetError, budget_report, rounded_up

    try:
        report = budget_report(profile, budget, first_exit)
    except InfeasibleBudgetError as exc:
        raise ConfigurationError(str(exc)) from exc
    if fixed_exit > profile.num_exits:
        raise ConfigurationError(f"fixed_exit {fixed_exit} exceeds the model's {profile.num_exits} exits")
    if fixed_exit:  # every step runs that exit: its cost is the average and the peak (the model was loaded cut to
        # the cap first, and refused the exit as "must be in 1..1" of a model of 12)
        costs = profile.costs(budget.metric)
        average = budget.average_gflops
        if average is not None and costs[fixed_exit - 1] > average:
            raise ConfigurationError(
                f"fixed_exit {fixed_exit} costs {costs[fixed_exit - 1]:g} {budget.metric} every step, over the "
                f"average budget {average:g}: the deepest exit it affords every step is "
                f"{sum(1 for c in costs if c <= average)}; or raise the average budget to "
                f"{rounded_up(costs[fixed_exit - 1])}")
        if fixed_exit > report.cap:
            raise ConfigurationError(f"fixed_exit {fixed_exit} is beyond exit {report.cap}, the deepest "
                                     f"{report.cap_binding} allows: fix an exit <= {report.cap}, or relax it")
    return report.cap


def apply_risk(thresholds: Thresholds, path: Path, budget: BudgetSpec, cap: int, risk_eps: float,
               risk_delta: float) -> Thresholds:
    """The thresholds to run under the fidelity limit: re-tested for ``risk_eps`` (> 0) and the average
    budget, or the file's own guarantee checked against the budget. ConfigurationError (naming the smallest
    feasible eps / budget / delta) when the limit and the budgets cannot hold together."""
    from deer_vla.control.risk import InfeasibleRiskError, reapply

    g = thresholds.guarantee
    average = budget.average_gflops
    if risk_eps <= 0 and (g is None or g.family is None):
        return thresholds  # nothing asked, or a guarantee that cannot be re-tested: the controller checks its cap
    if g is None or g.family is None:
        raise ConfigurationError(
            f"risk.eps={risk_eps:g} needs thresholds certified by `deer-vla calibrate --risk EPS --delta DELTA`; "
            f"{path} carries no certified family")
    if g.family.cap != cap:
        raise ConfigurationError(
            f"the budget caps the model at exit {cap} but {path} was certified with exits up to {g.family.cap}: "
            "relax the peak/memory budget or recalibrate under it")
    if average is not None and budget.metric != thresholds.metric:
        raise ConfigurationError(f"budget.metric {budget.metric} differs from the thresholds' "
                                 f"{thresholds.metric}")
    eps, delta = (risk_eps, risk_delta) if risk_eps > 0 else (g.eps, g.delta)
    try:
        return reapply(thresholds, eps, delta, average)
    except InfeasibleRiskError as exc:
        raise ConfigurationError(f"risk.eps={eps:g} with budget.average_gflops={average}: {exc}") from exc


def read_thresholds(path: Path, fixed_exit: int = 0) -> Thresholds | None:
    """The thresholds file at ``path``; None when there is none and ``fixed_exit`` runs one exit without it;
    ConfigurationError naming the file otherwise."""
    from deer_vla.control.thresholds import Thresholds

    if path.is_file():
        try:
            return Thresholds.load(path)
        except (ValueError, OSError) as exc:
            raise ConfigurationError(f"cannot load thresholds: {exc}") from exc  # both kinds name the file
    if fixed_exit == 0:
        raise ConfigurationError(
            f"thresholds file not found: {path}; run `deer-vla calibrate` for this checkpoint, "
            "set 'thresholds_file', or set 'fixed_exit' to run one exit"
        )
    return None


def load_stack(
    checkpoint: Path | str,
    thresholds_path: Path,
    device: str,
    budget_kwargs: dict,
    fixed_exit: int = 0,
    track_average: bool = True,
    risk_eps: float = 0.0,
    risk_delta: float = 0.1,
    criterion: str = "",
) -> PolicyStack:
    """``checkpoint``: a folder or a shipped checkpoint's name. track_average (default, as the node's
    ``budget.track_average``): thresholds are scaled online so the running mean cost holds the average budget
    (or, with none set, the average the thresholds were solved for; idle if they record none; never while
    a fidelity guarantee is in force); without it an average budget other than the thresholds' own is not
    held. risk_eps > 0: the thresholds file's certified family is re-tested for (risk_eps, risk_delta) and the
    average budget (``apply_risk``). criterion: the exit criterion the
    thresholds file must be for ("" = whichever it was solved for; "learned" also needs the checkpoint's exit
    gates)."""
    from deer_vla.control.controller import ExitController
    from deer_vla.control.online import OnlineBudgetTracker
    from deer_vla.model.checkpoint_dir import CheckpointDir
    from deer_vla.model.runner import PolicyRunner
    from deer_vla.model.shipped import UnknownCheckpointError, resolve_checkpoint

    try:  # a shipped name ("default", "mt50") as everywhere else
        checkpoint = resolve_checkpoint(checkpoint)
    except UnknownCheckpointError as exc:
        raise ConfigurationError(str(exc)) from exc
    if not checkpoint.is_dir():
        raise ConfigurationError(
            f"checkpoint directory not found: {checkpoint} (parameter 'checkpoint_dir': -p checkpoint_dir:=DIR on the "
            "node, checkpoint:=DIR to ros2 launch and deer-vla bringup; or a shipped name: default, mt50)"
        )
    budget = make_budget(budget_kwargs)
    thresholds = read_thresholds(thresholds_path, fixed_exit)
    # The whole model is read once for its cost profile, which sets the cap; the weights first, so a damaged
    # weights file is named as such, not as "thresholds solved on other weights". A time budget needs every
    # exit timed on the device itself; otherwise the whole model is read on the CPU, so the device never holds
    # the exits past a memory budget's cap (FLOPs and bytes are the same on any device).
    timed_budget = budget.peak_ms is not None or budget.deadline_ms is not None
    probe_device = device if timed_budget else "cpu"
    full = PolicyRunner.from_checkpoint(checkpoint, max_exit=None, device=probe_device)
    ckpt = CheckpointDir(checkpoint)
    try:  # the digest is remembered for the file as it is (path, size, mtime): read once per file
        model_digest = (ckpt.weights_digest(), ckpt.config_digest())
    except (ValueError, OSError) as exc:  # replaced or removed while it loaded
        raise ConfigurationError(f"cannot read the checkpoint just loaded: {exc}") from exc
    if thresholds is not None:
        try:  # another checkpoint's (of the same architecture) would load and run the wrong exits
            thresholds.check_solved_on(ckpt.weights_digest, str(thresholds_path), str(checkpoint), ckpt.gates_digest,
                                        ckpt.gates_file_digest, ckpt.config_digests)
        except (ValueError, OSError) as exc:
            raise ConfigurationError(str(exc)) from exc
    if timed_budget:
        full.time_here()  # time budgets are enforced with this machine's latencies, not the checkpoint's maker's
    # read on the CPU for the cap (another device): the checkpoint's own profile, made on whatever device, gives
    # the same FLOPs and bytes without timing the whole model on the CPU first
    saved = CheckpointDir(checkpoint).read_profile() if probe_device != device else None
    full_profile = saved if saved is not None and saved.describes(full.num_exits, saved.device,
                                                                  full.model.weights_dtype) else full.model_profile
    if thresholds is not None and thresholds.num_exits > full_profile.num_exits:  # (fewer: solved under a cap)
        raise ConfigurationError(
            f"{thresholds_path} holds thresholds for exits {thresholds.first_exit}..{thresholds.num_exits} but "
            f"{checkpoint} has {full_profile.num_exits} exits: thresholds of another model")
    # thresholds that can stop at exit 1 (learned, exit-1 gate) meet averages below exit 2's cost by mixing exits
    first_exit = thresholds.first_exit if thresholds is not None and not fixed_exit else 2
    # charged for the exit gates the learned criterion runs, as the controller charges them: the smallest
    # feasible budget named here was refused by the controller a moment later (the gates' cost on top)
    cap_profile = full_profile.with_resident_bytes(full.exit_gate_bytes)  # the gates stay loaded, all of them
    if thresholds is not None and not fixed_exit and thresholds.criterion.kind == "learned" and full.has_exit_gates:
        cap_profile = cap_profile.with_exit_gates(full.exit_gate_gflops, first_exit)
    cap = check_budget(cap_profile, budget, fixed_exit, first_exit)
    # Exits past the cap never run: do not keep their weights resident (memory budget). The whole model is let
    # go first, so the two are never held together. (A profile read on the CPU is measured again on another
    # device by the runner, for the loaded exits only.)
    if cap < full_profile.num_exits or probe_device != device:
        del full
        gc.collect()
        runner = PolicyRunner.from_checkpoint(checkpoint, max_exit=cap if cap < full_profile.num_exits else None,
                                              device=device, full_profile=full_profile)
    else:
        runner = full
    profile = runner.cost_profile
    if thresholds is not None and not fixed_exit:
        kind = thresholds.criterion.kind
        if criterion and kind != criterion:
            raise ConfigurationError(
                f"{thresholds_path} holds thresholds for the {kind} exit criterion but parameter 'criterion' is "
                f"'{criterion}': set criterion: {kind}, or recalibrate with "
                f"`deer-vla calibrate --criterion {criterion}`")
        if kind == "learned" and not runner.has_exit_gates:
            raise ConfigurationError(
                f"criterion 'learned' needs exit gates and {checkpoint} has none: train them with "
                "`deer-vla train-gate CHECKPOINT --data DIR`, or use the consecutive criterion")
        thresholds = apply_risk(thresholds, thresholds_path, budget, cap, risk_eps, risk_delta)
    tracker = None
    if track_average and thresholds is not None and not fixed_exit:
        # it holds budget.average_gflops when set, else the average the thresholds were solved for
        tracker = OnlineBudgetTracker(budget.average_gflops or profile.costs(budget.metric)[-1])
    try:
        controller = ExitController(runner, profile, thresholds, budget, fixed_exit=fixed_exit or None,
                                    tracker=tracker)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"cannot build the exit controller: {exc}") from exc
    config = getattr(getattr(runner, "model", None), "config", None)
    proprio_dim = int(getattr(config, "proprio_dim", 0) or 0)
    proprio_spec = config.proprio_spec if proprio_dim and config is not None else None
    return PolicyStack(runner, controller, profile, full_profile, cap_profile, runner.action_spec,
                       tuple(runner.cameras), cap, proprio_dim, proprio_spec, getattr(config, "control_rate_hz", None),
                       steps_timed=timed_budget, model_digest=model_digest)
