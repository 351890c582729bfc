"""`deer-vla calibrate`: solve exit thresholds of a checkpoint for an average compute budget.

Runs the checkpoint's PolicyRunner over demonstration episodes (or over the
policy node's own MCAP recordings, --recording), recording
every exit's action at every step (collect_exit_actions; with --criterion
learned also the checkpoint's exit-gate scores), solves the
thresholds for the budget (quantile method, or --method descent), and writes
them and the cost profile into the checkpoint directory (CheckpointDir). Optionally
refines them with Bayesian optimisation (tune_thresholds) against closed-loop
success on calibration seeds, which are disjoint from the evaluation seeds.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, field_validator, model_validator

from deer_vla.control.budgets import BudgetSpec
from deer_vla.control.calibration import collect_exit_actions, collect_exit_actions_and_scores, learned_criterion
from deer_vla.control.criterion import CRITERION_KINDS, CriterionKind
from deer_vla.control.risk import PValue
from deer_vla.control.solve import THRESHOLD_METHODS, ThresholdMethod, solve_thresholds
from deer_vla.control.thresholds import Thresholds
from deer_vla.core import CostMetric, CostProfile, Observation
from deer_vla.core.config_io import MAX_THREADS, ConfigError, NoBoolNumbers, add_config_arguments, load_layered
from deer_vla.core.log_text import error_text
from deer_vla.core.run_lock import lock_folder
from deer_vla.core.writable import missing_dirs, nonblank_path, remove_empty_dirs, unwritable_dir
from deer_vla.data.observations import dataset_observation_episodes
from deer_vla.model.checkpoint_dir import CheckpointDir
from deer_vla.model.device import check_device
from deer_vla.model.shipped import CHECKPOINT_HELP, resolve_checkpoint, shipped_name_of

log = logging.getLogger("deer_vla.calibrate")


def calibration_steps(runner: Any, episodes: Any, max_steps: int | None,
                      learned: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The calibration set: every exit's action per step and, for the learned criterion, the gate scores."""
    if learned:
        return collect_exit_actions_and_scores(runner, episodes, max_steps=max_steps)
    return collect_exit_actions(runner, episodes, max_steps=max_steps), None


def recorded_observation_episodes(runner: Any, recordings: Sequence[str | Path]) -> list[list[Observation]]:
    """The policy node's MCAP recordings as episodes of Observations (a crashed run's file: its complete part).
    Each is a recording's first file, its directory or a glob: a split recording is read part after part."""
    from deer_vla.data.mcap_io import truncation_warnings_to_stderr
    from deer_vla.data.recording import recorded_episodes

    episodes: list[list[Observation]] = []
    for path in recordings:
        if not (Path(path).exists() or glob.has_magic(str(path))):
            raise FileNotFoundError(f"recording not found: {path}")
        with truncation_warnings_to_stderr("deer-vla calibrate"):
            episodes += recorded_episodes(path, tuple(runner.cameras), runner.image_size)
    return episodes


def budget_from_args(profile: CostProfile, fraction: float | None, gflops: float | None, metric: CostMetric,
                     default_fraction: float | None = None) -> BudgetSpec:
    if fraction is None and gflops is None and default_fraction is not None:
        costs = profile.costs(metric)
        # at least halfway from exit 2 to the full model, so even a shallow model has thresholds to scale
        gflops = max(default_fraction * costs[-1], (costs[min(1, len(costs) - 1)] + costs[-1]) / 2)
    if (fraction is None) == (gflops is None):
        raise ValueError("give exactly one of --average-budget-fraction and --average-gflops")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"--average-budget-fraction must be in (0, 1], got {fraction}")
        gflops = fraction * profile.costs(metric)[-1]
    return BudgetSpec(average_gflops=gflops, metric=metric)


# --risk without an average budget: the base thresholds' shape is solved for this fraction of the full model
# (or halfway from exit 2's cost to the full model's, if more)
RISK_BASE_FRACTION = 0.25


def split_base_episodes(episodes: Sequence[Any], fraction: float) -> tuple[list[Any], list[Any]]:
    """Every episode to one side, evenly interleaved: ``fraction`` of them (>= 1) solve the base thresholds,
    the rest (>= 1) certify them. Whole episodes, so the certifying steps are not the base's."""
    if not 0 < fraction < 1:
        raise ValueError(f"--risk-base-fraction must be in (0, 1), got {fraction}")
    if len(episodes) < 2:
        raise ValueError(f"--risk needs >= 2 calibration episodes (base + certification), got {len(episodes)}")
    base = [j for j in range(len(episodes)) if int((j + 1) * fraction) > int(j * fraction)] or [0]
    if len(base) == len(episodes):
        base = base[:-1]
    chosen = set(base)
    return [episodes[j] for j in base], [e for j, e in enumerate(episodes) if j not in chosen]


def solve_risk(runner: Any, episodes: Sequence[Any], profile: Any, budget: Any, args: CalibrateSettings,
               criterion: Any, explicit_budget: bool) -> tuple[Any, int, int]:
    """Base thresholds (``args.method``) on part of the episodes, certified by LTT on the rest.

    -> (thresholds carrying the guarantee, base steps, certification steps). Raises ValueError
    (InfeasibleRiskError: which limit binds, and the smallest feasible values) when it cannot.
    """
    from deer_vla.control.budgets import budget_report
    from deer_vla.control.risk import RiskSpec, calibrate_risk

    if args.risk is None:
        raise ValueError("solve_risk needs a risk limit (risk, --risk EPS)")
    spec = RiskSpec.parse(args.risk_metric, args.risk_bound, args.risk_test)
    base_eps, cert_eps = split_base_episodes(list(episodes), args.risk_base_fraction)
    learned = bool(criterion.learned)
    base_actions, base_scores = calibration_steps(runner, base_eps, args.max_steps, learned)
    parts = [calibration_steps(runner, [ep], None, learned) for ep in cert_eps if len(ep)]
    cert_actions = np.concatenate([a for a, _ in parts])[: args.max_steps]
    cert_scores = np.concatenate([s for _, s in parts])[: args.max_steps] if learned else None
    episode_of = np.concatenate([np.full(len(a), j) for j, (a, _) in enumerate(parts)])[: args.max_steps]
    base = solve_thresholds(args.method, base_actions, profile, budget, criterion, base_scores)
    report = budget_report(profile, budget, first_exit=criterion.first_exit)
    costs = profile.costs(budget.metric)
    note = f" {report.cap}, set by {report.cap_binding}" if report.cap < profile.num_exits else ""
    th = calibrate_risk(cert_actions, base, costs, report.cap, args.risk, args.delta, spec,
                        average_budget=budget.average_gflops if explicit_budget else None, cap_note=note,
                        episode_of=episode_of if args.risk_unit == "episode" else None, scores=cert_scores)
    return th, len(base_actions), len(cert_actions)


class CalibrateSettings(NoBoolNumbers):
    """`deer-vla calibrate`'s settings: --config YAML keys, --set keys and flags share these names."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str = Field(description=CHECKPOINT_HELP + " (the thresholds are written here)")
    dataset: str | None = Field(None, description="demonstration dataset directory (calibration set)")
    recording: list[str] | None = Field(None, description="the policy node's own recordings (record_path: a split "
                                        "recording's first file, folder or a quoted glob; repeat the flag for "
                                        "several): thresholds solved on what the robot actually saw")
    average_budget_fraction: float | None = Field(None, gt=0, le=1, description="average budget as a fraction of the "
                                                  "full model")
    average_gflops: float | None = Field(None, gt=0, description="average budget in GFLOPs per action")
    metric: CostMetric = Field("llm_gflops", description="the cost the budget is in")
    episodes: int = Field(30, ge=1, description="demonstration episodes to calibrate on")
    tasks: str | None = Field(None, description="calibrate on these tasks' demonstrations only (comma list; default: "
                              "every task)")
    max_steps: int | None = Field(None, ge=1, description="cap on calibration steps")
    method: ThresholdMethod = Field("quantile", description="quantile: DeeR's exit-distribution method; descent: least "
                                    "action error within the budget")
    smooth: int = Field(1, ge=1, description="criterion: mean of the last K consecutive-exit distances (1 = the "
                        "original criterion)")
    criterion: CriterionKind = Field("consecutive", description="consecutive: DeeR's distance between consecutive "
                                     "exits' actions; learned: the checkpoint's exit gates' predicted distance from "
                                     "the full model (train them with `deer-vla train-gate`)")
    bayes: int = Field(0, ge=0, description="refine with N Bayesian-optimisation trials against closed-loop success "
                       "(0 = off)")
    bayes_tasks: str = Field("all", description="tasks for --bayes rollouts (comma list or 'all')")
    bayes_episodes: int = Field(3, ge=1, description="episodes per task per --bayes trial")
    risk: float | None = Field(None, gt=0, description="risk limit EPS (off when not given)")
    delta: float = Field(0.1, gt=0, lt=1, description="allowed probability that the guarantee fails")
    risk_metric: str = Field("mean", description="mean: mean action distance from the full model (RMS over the motion "
                             "axes); exceed:TAU: rate of steps whose distance exceeds TAU")
    risk_bound: float = Field(2.0, gt=0, description="metric mean: each step's distance is clipped at B (2 clips "
                              "nothing for actions in [-1, 1]; a smaller B certifies more but bounds the clipped mean)")
    risk_test: PValue = Field("wsr", description="metric mean: p-value (wsr: Waudby-Smith-Ramdas betting; hb: "
                              "Hoeffding-Bentkus)")
    risk_unit: Literal["step", "episode"] = Field(
        "step", description="step: steps are taken as i.i.d. (they are correlated within an episode); episode: each "
        "episode's mean loss is one i.i.d. sample (valid for i.i.d. episodes, needs more of them)")
    risk_base_fraction: float = Field(0.3, gt=0, lt=1, description="share of the calibration episodes that solve the "
                                      "base thresholds (the rest certify them)")
    device: str = Field("cpu", description="torch device of the policy: cpu, cuda or cuda:N")
    threads: int = Field(1, ge=1, le=MAX_THREADS, description="torch CPU threads (1: more oversubscribe a CPU shared "
                         "with other jobs)")
    out: str | None = Field(None, description="directory to write thresholds.json (and profile.json) into "
                                            "instead of the checkpoint directory")

    @field_validator("out")
    @classmethod
    def _out_not_blank(cls, value: str | None) -> str | None:
        # '' passed the shipped-checkpoint guard as given and was then taken as not given: the package's own
        # thresholds were overwritten
        return nonblank_path(value, "out")

    @model_validator(mode="after")
    def _sources(self) -> CalibrateSettings:
        if (self.dataset is None) == (not self.recording):
            raise ValueError("set exactly one of dataset (--dataset) and recording (--recording)")
        if self.average_budget_fraction is not None and self.average_gflops is not None:
            raise ValueError("set at most one of average_budget_fraction and average_gflops")
        if self.risk is None and self.average_budget_fraction is None and self.average_gflops is None:
            raise ValueError("one of average_budget_fraction (--average-budget-fraction) / average_gflops "
                             "(--average-gflops) is required (optional with --risk)")
        return self

    @property
    def dataset_dir(self) -> str:
        """The demonstration dataset (only when no recording is given: the validator holds exactly one source)."""
        if self.dataset is None:
            raise ValueError("no dataset set (the calibration source is the recordings)")
        return self.dataset

    @field_validator("device")
    @classmethod
    def _usable_device(cls, v: str) -> str:
        return check_device(v)  # here, not as a traceback from the first worker


def _help(name: str) -> str:
    return CalibrateSettings.model_fields[name].description or ""


def build_parser() -> argparse.ArgumentParser:
    """Flags without defaults (argparse.SUPPRESS): only the flags given override --config / --set; the defaults
    live in CalibrateSettings."""
    p = argparse.ArgumentParser(prog="deer-vla calibrate", description=__doc__.splitlines()[0],
                                argument_default=argparse.SUPPRESS)
    add_config_arguments(p, "the calibration settings")
    p.add_argument("--checkpoint", help=_help("checkpoint"))
    src = p.add_mutually_exclusive_group()  # one of them, from the flags or the --config file
    src.add_argument("--dataset", help=_help("dataset"))
    src.add_argument("--recording", action="append", metavar="MCAP", help=_help("recording"))
    b = p.add_mutually_exclusive_group()  # required unless --risk
    b.add_argument("--average-budget-fraction", type=float, help=_help("average_budget_fraction"))
    b.add_argument("--average-gflops", type=float, help=_help("average_gflops"))
    p.add_argument("--metric", choices=("llm_gflops", "total_gflops"), help=_help("metric"))
    p.add_argument("--episodes", type=int, help=_help("episodes"))
    p.add_argument("--tasks", help=_help("tasks"))
    p.add_argument("--max-steps", type=int, help=_help("max_steps"))
    p.add_argument("--method", choices=THRESHOLD_METHODS, help=_help("method"))
    p.add_argument("--smooth", type=int, metavar="K", help=_help("smooth"))
    p.add_argument("--criterion", choices=CRITERION_KINDS, help=_help("criterion"))
    p.add_argument("--bayes", type=int, metavar="N", help=_help("bayes"))
    p.add_argument("--bayes-tasks", help=_help("bayes_tasks"))
    p.add_argument("--bayes-episodes", type=int, help=_help("bayes_episodes"))
    r = p.add_argument_group(
        "risk control", "certify thresholds so that, with probability >= 1-DELTA over the calibration steps, the "
        "risk on a fresh step from the same distribution is <= EPS (Learn-then-Test, fixed-sequence testing over "
        "the base thresholds scaled from strict to loose; steps assumed i.i.d.: see docs/budgets.md, "
        "'Fidelity guarantee')")
    r.add_argument("--risk", type=float, metavar="EPS", help=_help("risk"))
    r.add_argument("--delta", type=float, help=_help("delta"))
    r.add_argument("--risk-metric", metavar="mean|exceed:TAU", help=_help("risk_metric"))
    r.add_argument("--risk-bound", type=float, metavar="B", help=_help("risk_bound"))
    r.add_argument("--risk-test", choices=("wsr", "hb"), help=_help("risk_test"))
    r.add_argument("--risk-unit", choices=("step", "episode"), help=_help("risk_unit"))
    r.add_argument("--risk-base-fraction", type=float, help=_help("risk_base_fraction"))
    p.add_argument("--device", help=_help("device"))
    p.add_argument("--threads", type=int, help=_help("threads"))
    p.add_argument("--out", help=_help("out"))
    return p


# one of each: the file's dataset gives way to a --recording flag, its budget fraction to --average-gflops
CALIBRATE_ALTERNATIVES = (("dataset", "recording"), ("average_budget_fraction", "average_gflops"))


def load_settings(argv: list[str] | None = None) -> CalibrateSettings:
    """Defaults < --config < --set < flags; ConfigError (naming the key) when they do not validate."""
    return load_layered(CalibrateSettings, build_parser().parse_args(argv), "calibrate settings",
                        alternatives=CALIBRATE_ALTERNATIVES)


def save_thresholds(out: CheckpointDir, profile: CostProfile, thresholds: Thresholds, solved_on: CheckpointDir) -> None:
    """The thresholds, stamped with the weights they were solved on (another checkpoint then refuses them) and,
    for the learned criterion, the gates they were solved with (retrained gates then refuse them), and the cost
    profile they were solved with."""
    # one calibration at a time writes the folder: two at once each found no file to keep beside, or the same
    # one, and one run's thresholds were lost (an audit: 2 of 8 concurrent runs)
    with contextlib.closing(lock_folder(out.root, "calibration", wait=True)):
        _save_thresholds(out, profile, thresholds, solved_on)


def _save_thresholds(out: CheckpointDir, profile: CostProfile, thresholds: Thresholds,
                     solved_on: CheckpointDir) -> None:
    out.write_profile(profile)
    gates = solved_on.gates_digest() if thresholds.criterion.kind == "learned" else None
    path = out.thresholds_path
    if path.is_file():  # solved for another budget, perhaps over hours: kept beside, not lost
        stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime())
        kept = path.with_name(f"{path.stem}.replaced-{stamp}{path.suffix}")
        for n in range(1, 1000):  # two in one second: neither lost
            if not kept.exists():
                break
            kept = path.with_name(f"{path.stem}.replaced-{stamp}.{n}{path.suffix}")
        # a copy, not a move: if the new file cannot be written (disk full), the old one is still in force
        shutil.copy2(path, kept)
        log.info("the thresholds this replaces are kept as %s", kept)
    replace(thresholds, weights_sha256=solved_on.weights_digest(), gates_sha256=gates,
            config_sha256=solved_on.config_digest()).save(path)


def dataset_fits(checkpoint: str | Path, dataset: str) -> None:
    """SpaceMismatchError (a ValueError) naming each difference when ``dataset`` records another robot's spaces
    than the checkpoint was trained for (train.spaces: the check training makes)."""
    from deer_vla.train.spaces import spaces_from_dataset

    spaces_from_dataset(CheckpointDir(checkpoint).read_config(), dataset, set(), fixed=True,
                        remedy="calibrate on demonstrations of the robot this checkpoint was trained for")


def cli_main(argv: list[str] | None = None) -> int:
    try:
        args = load_settings(argv)
    except ConfigError as exc:
        print(f"deer-vla calibrate: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        ckpt = resolve_checkpoint(args.checkpoint)  # a shipped name -> its folder
    except ValueError as exc:
        print(f"deer-vla calibrate: {exc}", file=sys.stderr)
        return 2
    shipped = shipped_name_of(ckpt) if args.out is None else None
    if shipped:  # its thresholds.json and profile.json are the package's: replaced only when --out says so
        print(f"deer-vla calibrate: {ckpt} is the shipped checkpoint '{shipped}', whose {CheckpointDir.THRESHOLDS} "
              f"and {CheckpointDir.PROFILE} are part of the package: write yours with --out DIR and run them as "
              "the thresholds file (policy node 'thresholds_file', --thresholds), or give that folder as --out "
              "to replace them", file=sys.stderr)
        return 2
    out = CheckpointDir(args.out or ckpt)  # the thresholds and the profile they were solved with
    fresh = missing_dirs(out.root)  # what the check below creates
    problem = unwritable_dir(out.root, create=args.out is not None)
    if problem:  # found now, not after minutes of calibration that would then be lost
        hint = "" if args.out else "; write the thresholds elsewhere with --out DIR"
        print(f"deer-vla calibrate: {problem}{hint}", file=sys.stderr)
        remove_empty_dirs(fresh)  # parents the check made before the last one failed
        return 2
    rc = 1
    try:
        rc = _calibrate(args, ckpt, out)
    finally:
        if rc != 0:  # a run that failed (an unreadable dataset, a bad tokenizer) leaves no empty --out behind
            remove_empty_dirs(fresh)
    return rc


def _calibrate(args: CalibrateSettings, ckpt: Path, out: CheckpointDir) -> int:
    """Solve and write the thresholds (cli_main has checked the settings and that ``out`` can be written)."""
    from deer_vla.control.criterion import Criterion
    from deer_vla.model.runner import PolicyRunner

    try:
        criterion = Criterion(smooth=args.smooth, kind=args.criterion)
    except ValueError as exc:
        print(f"deer-vla calibrate: {exc}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    try:
        runner = PolicyRunner.from_checkpoint(ckpt, device=args.device)
    except (FileNotFoundError, ValueError) as exc:  # CheckpointError names the file at fault
        print(f"deer-vla calibrate: {exc}", file=sys.stderr)
        return 2
    # saved with the thresholds as the checkpoint's profile.json: the model's own (the runner adds the gates' bytes
    # when it loads it); the full model's cost sets budget fractions
    profile = runner.model_profile
    try:  # the learned criterion's thresholds are solved on costs that charge its gates
        solve_profile = runner.cost_profile_for(criterion.kind)
        if criterion.learned:  # from exit 1 when the gates have an exit-1 gate
            criterion = learned_criterion(runner)
    except ValueError as exc:
        print(f"deer-vla calibrate: {ckpt}: {exc}", file=sys.stderr)
        return 2
    explicit_budget = args.average_budget_fraction is not None or args.average_gflops is not None
    try:
        budget = budget_from_args(profile, args.average_budget_fraction, args.average_gflops, args.metric,
                                  RISK_BASE_FRACTION if args.risk is not None else None)
    except ValueError as exc:
        print(f"deer-vla calibrate: {exc}", file=sys.stderr)
        return 2
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    if not args.recording:
        try:  # another robot's demonstrations (cameras, action axes, proprio, rate) gave thresholds without a word
            dataset_fits(ckpt, args.dataset_dir)
        except (FileNotFoundError, ValueError) as exc:
            print(f"deer-vla calibrate: {error_text(exc)}", file=sys.stderr)
            return 2
    if args.risk is not None:
        if args.bayes > 0:
            print("deer-vla calibrate: --bayes tunes thresholds after the fact, which would void --risk's "
                  "guarantee; use one or the other", file=sys.stderr)
            return 2
        try:
            if args.recording:
                if tasks:
                    raise ValueError("--tasks selects demonstrations of a --dataset; recordings are used whole")
                episodes = recorded_observation_episodes(runner, args.recording)
            else:
                episodes = list(dataset_observation_episodes(args.dataset_dir, runner.cameras, args.episodes, tasks))
            thresholds, n_base, n_cert = solve_risk(runner, episodes, solve_profile, budget, args, criterion,
                                                    explicit_budget)
        except (KeyError, FileNotFoundError, ValueError) as exc:  # InfeasibleRiskError names the binding limit
            print(f"deer-vla calibrate: {error_text(exc)}", file=sys.stderr)
            return 2
        g = thresholds.guarantee
        log.info("risk-certified thresholds (scale %.4g of the %s base): %s; expected %.4g %s per action",
                 g.scale, args.method, g.describe(), thresholds.expected_cost, budget.metric)
        save_thresholds(out, profile, thresholds, CheckpointDir(ckpt))
        print(json.dumps({
            # saved with the thresholds: the average asked for, else the certified thresholds' own expected cost
            "budget": thresholds.budget.to_dict() if thresholds.budget else None, "base_method": args.method,
            "base_steps": n_base, "calibration_steps": n_cert, "guarantee": g.describe(),
            "eps": g.eps, "delta": g.delta, "metric": g.metric, "tau": g.tau, "bound": g.bound, "scale": g.scale,
            "values": thresholds.values, "expected_cost": thresholds.expected_cost,
            "budget_slack": (budget.average_gflops - thresholds.expected_cost) if explicit_budget else None,
        }, indent=2))
        return 0
    try:
        if args.recording:
            if tasks:
                raise ValueError("--tasks selects demonstrations of a --dataset; recordings are used whole")
            demos: Any = recorded_observation_episodes(runner, args.recording)
        else:
            demos = dataset_observation_episodes(args.dataset_dir, runner.cameras, args.episodes, tasks)
        actions, scores = calibration_steps(runner, demos, args.max_steps, criterion.learned)
    except (KeyError, FileNotFoundError, ValueError) as exc:
        print(f"deer-vla calibrate: {error_text(exc)}", file=sys.stderr)
        return 2
    try:
        thresholds = solve_thresholds(args.method, actions, solve_profile, budget, criterion, scores)
    except ValueError as exc:  # e.g. InfeasibleBudgetError on these calibration steps
        print(f"deer-vla calibrate: {exc}", file=sys.stderr)
        return 2
    log.info(
        "%s thresholds %s: expected %.4g %s per action on %d calibration steps (budget %.4g)",
        args.method, [round(v, 4) for v in thresholds.values], thresholds.expected_cost, budget.metric, len(actions),
        budget.average_gflops,
    )
    if args.bayes > 0:
        from deer_vla.control.bayes import tune_thresholds
        from deer_vla.evaluation.evaluator import resolve_tasks
        from deer_vla.evaluation.objective import ClosedLoopObjective
        from deer_vla.evaluation.workers import EvalWorker

        worker = EvalWorker(runner, solve_profile)
        try:
            objective = ClosedLoopObjective(worker, resolve_tasks(args.bayes_tasks), args.bayes_episodes)
            thresholds = tune_thresholds(objective, solve_profile, budget, thresholds, n_trials=args.bayes, seed=0)
        except (KeyError, ValueError) as exc:  # an unknown --bayes-tasks name, a bad --bayes-episodes
            print(f"deer-vla calibrate: {error_text(exc)}", file=sys.stderr)
            return 2
        finally:
            worker.close()
        log.info("BO thresholds %s: mean cost %.4g", [round(v, 4) for v in thresholds.values], thresholds.expected_cost)
    try:
        save_thresholds(out, profile, thresholds, CheckpointDir(ckpt))
    except OSError as exc:  # disk full: each file is written whole or not at all, the old ones stay in force
        print(f"deer-vla calibrate: cannot write the thresholds and their profile into {out.root}: "
              f"{exc.strerror or exc}; the thresholds in force there are unchanged", file=sys.stderr)
        return 1
    report = {
        "budget": budget.to_dict(),
        "calibration_steps": int(len(actions)),
        "method": thresholds.method,
        "criterion": criterion.kind,
        "values": thresholds.values,
        "expected_cost": thresholds.expected_cost,
        "exit_distribution": thresholds.exit_distribution,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
