"""`deer-vla evaluate`: closed-loop success vs compute of a checkpoint in the simulator.

Modes: the full model (last exit), fixed exits, the dynamic controller at
several average budgets (thresholds solved on demonstrations for each
budget), and the oracle. Episodes use held-out seeds (EVAL_SEED_OFFSET + i,
disjoint from demonstration and tuning seeds) and optionally held-out
instruction paraphrases. Jobs (mode x task) run in --workers processes, each
holding one policy and one simulator per task (``workers.EvalWorker``).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import ConfigDict, Field, field_validator, model_validator

from deer_vla.control.criterion import Criterion, CriterionKind
from deer_vla.control.solve import THRESHOLD_METHODS, ThresholdMethod, check_threshold_method
from deer_vla.control.thresholds import Thresholds
from deer_vla.core import NonFiniteActionError
from deer_vla.core.config_io import (
    MAX_THREADS,
    MAX_WORKERS,
    ConfigError,
    NoBoolNumbers,
    add_config_arguments,
    load_layered,
)
from deer_vla.core.run_lock import FolderInUseError, lock_folder
from deer_vla.core.writable import fresh_start_problem, nonblank_path, unwritable_dir
from deer_vla.evaluation.journal import (
    JOURNAL_NAME,
    MAX_EPISODES_PER_TASK,
    EpisodeJournal,
    JournalError,
    held_episodes,
    mode_digests,
    run_fingerprint,
)
from deer_vla.evaluation.report import (
    HELDOUT_SUFFIX,
    generalisation,
    group_report,
    paired_with,
    plot_tradeoff,
    print_generalisation,
    print_groups,
    print_paired,
    print_table,
    summarize,
    write_csv,
    write_json,
)
from deer_vla.evaluation.rollout import EpisodeResult, ModeSpec, make_controller
from deer_vla.evaluation.workers import (
    DEFAULT_MAX_SIMULATORS,
    EvalWorker,
    Job,
    PolicySpec,
    WorkerProcessError,
    run_in_processes,
    seed_major_jobs,
)
from deer_vla.model.checkpoint_dir import CheckpointDir
from deer_vla.model.config import format_validation_error
from deer_vla.model.device import check_device
from deer_vla.model.shipped import CHECKPOINT_HELP, resolve_checkpoint
from deer_vla.sim.tasks import EVAL_SEED_OFFSET

log = logging.getLogger("deer_vla.evaluate")

InstructionSet = Literal["canonical", "heldout", "both"]
INSTRUCTION_SETS: tuple[InstructionSet, ...] = get_args(InstructionSet)


class EvalConfig(NoBoolNumbers):
    """What `evaluate` runs: checkpoint, tasks, modes and episodes (validated; errors name the field)."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str = Field(description="checkpoint directory")
    tasks: list[str] = Field(min_length=1, description="simulator task names to evaluate")
    episodes_per_task: int = Field(20, ge=1, le=MAX_EPISODES_PER_TASK, description="held-out seeds per (mode, task)")
    budgets: list[float] = Field([0.1, 0.2, 0.3],
                                 description="average budgets as fractions of the full model's LLM GFLOPs, in (0, 1]")
    exits: list[int] = Field([], description="fixed exits to run besides the full model")
    skip_full: bool = Field(False, description="do not play the full model: for runs pooled (`eval-report`) with "
                            "one that played it on the same seeds, which then supplies the ratios and pairing")
    oracle_tolerance: float | None = Field(None, ge=0, description="also run the oracle at this criterion distance")
    calibration_dataset: str | None = Field(None, description="demonstrations the per-budget thresholds are solved on")
    calibration_episodes: int = Field(30, ge=1, description="demonstration episodes to solve thresholds on")
    calibration_tasks: list[str] | None = Field(None, description="solve on these tasks' demos only (None: all)")
    threshold_method: ThresholdMethod = Field("quantile", description="per-budget threshold solver")
    criterion_smooth: int = Field(1, ge=1, description="Criterion.smooth of the thresholds solved per budget")
    criterion: CriterionKind = Field("consecutive",
                                     description="exit criterion; 'learned' solves on the checkpoint's gate scores")
    instructions: InstructionSet = Field(
        "canonical", description="'canonical': each task's first training instruction; 'heldout': its never-trained "
        "paraphrases (cycled over the episodes); 'both': every seed twice (modes '<mode> [heldout]')")
    seed_offset: int = Field(EVAL_SEED_OFFSET, ge=0, description="first evaluation seed (disjoint from demos)")
    max_steps: int | None = Field(None, ge=1, description="episode step limit (None: the adapter's)")
    workers: int = Field(1, ge=1, le=MAX_WORKERS, description="episode worker processes")
    max_simulators: int = Field(DEFAULT_MAX_SIMULATORS, ge=1, description="simulators a worker keeps open (least "
                                "recently used closed first; each holds about 190 MB)")
    threads: int | None = Field(None, ge=1, le=MAX_THREADS,
                                description="torch threads per worker (None: CPU cores // workers)")
    device: str = Field("cpu", description="torch device of the policy")
    image_size: int | None = Field(None, ge=1, description="rendered image size (None: the checkpoint's)")
    track_budget: bool = Field(False, description="also run each budget and each thresholds file with the online "
                               "tracker ('dyn<f>+track', 'th-<stem>+track')")
    tracked_only: bool = Field(False, description="with track_budget: run only the tracked modes, not the thresholds "
                               "as solved beside them (certified thresholds, never scaled by the tracker, still run)")
    resume: bool = Field(False, description="keep the finished episodes of the same run in the output "
                         "directory's episodes.jsonl and play only the rest")
    thresholds_files: list[str] = Field([], description="thresholds files run as they are, one dynamic mode each "
                                        "(e.g. risk-certified ones from `deer-vla calibrate --risk`)")

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, v: list[float]) -> list[float]:
        bad = [b for b in v if not 0 < b <= 1]
        if bad:
            raise ValueError(f"budgets are fractions of the full model's LLM GFLOPs in (0, 1], got {bad}")
        unique = list(dict.fromkeys(v))  # a budget given twice is one mode, as a repeated exit is
        by_name: dict[str, float] = {}
        for b in unique:  # modes are named 'dyn<b:g>': two budgets of one name would pool into one mode
            if f"{b:g}" in by_name:
                raise ValueError(f"budgets {by_name[f'{b:g}']!r} and {b!r} would both be mode 'dyn{b:g}': give "
                                 "budgets that differ in their first 6 significant digits")
            by_name[f"{b:g}"] = b
        return unique

    @field_validator("threshold_method", mode="before")
    @classmethod
    def _method(cls, v: Any) -> Any:
        return check_threshold_method(v) if isinstance(v, str) else v

    @field_validator("instructions", mode="before")
    @classmethod
    def _instructions(cls, v: Any) -> Any:
        if v not in INSTRUCTION_SETS:
            raise ValueError(f"instructions must be one of {INSTRUCTION_SETS}, got {v!r}")
        return v

    @model_validator(mode="after")
    def _something_to_play(self) -> EvalConfig:
        if self.tracked_only and not self.track_budget:
            raise ValueError("tracked_only needs track_budget (it keeps only the tracked modes)")
        if self.skip_full and not (self.exits or self.budgets or self.thresholds_files
                                   or self.oracle_tolerance is not None):
            raise ValueError("nothing to evaluate: skip_full leaves no mode (add exits, budgets or thresholds files)")
        return self

    def threads_per_worker(self) -> int:
        """Torch threads of each worker: as set, else the cores shared out (oversubscribing costs ~3x)."""
        return self.threads if self.threads is not None else max(1, (os.cpu_count() or 1) // self.workers)

    def instruction_conditions(self) -> list[str]:
        """The instruction sets every (mode, task) runs: 'canonical' and/or 'heldout'."""
        return ["canonical", "heldout"] if self.instructions == "both" else [self.instructions]


def resolve_tasks(spec: str) -> list[str]:
    """'all' or a comma list; unknown names raise KeyError listing the known tasks."""
    from deer_vla.sim.tasks import resolve_tasks as suite_tasks

    return [t.name for t in suite_tasks(spec)]


def episode_plan(task: str, n: int, seed_offset: int, heldout: bool) -> list[tuple[int, str | None]]:
    """(seed, instruction) per episode; instruction None = the task's default one."""
    instructions: list[str | None] = [None]
    if heldout:
        from deer_vla.sim.tasks import get_task

        held = list(get_task(task).heldout_instructions)
        if not held:
            raise ValueError(f"task {task} has no held-out instructions")
        instructions = list(held)
    return [(seed_offset + i, instructions[i % len(instructions)]) for i in range(n)]


# --- main side ---------------------------------------------------------------------------------


def build_modes(cfg: EvalConfig, runner: Any) -> tuple[list[ModeSpec], dict[str, str]]:
    """The modes to run and, for budgets that could not be met, why they were skipped."""
    from deer_vla.control.budgets import BudgetSpec, InfeasibleBudgetError
    from deer_vla.control.calibration import (
        collect_exit_actions,
        collect_exit_actions_and_scores,
        learned_criterion,
    )
    from deer_vla.control.solve import solve_thresholds
    from deer_vla.data.observations import dataset_observation_episodes

    profile = runner.cost_profile
    n = int(runner.num_exits)
    modes = [] if cfg.skip_full else [ModeSpec(name="full", kind="fixed", exit=n)]
    for k in sorted(set(cfg.exits)):
        if not 1 <= k <= n:
            raise ValueError(f"fixed exit {k} outside this checkpoint's exits 1..{n}")
        if k != n:
            modes.append(ModeSpec(name=f"exit{k}", kind="fixed", exit=k))
        elif cfg.skip_full:
            raise ValueError(f"exit {n} is the full model, which --skip-full leaves out")
    skipped: dict[str, str] = {}
    if cfg.budgets:
        full = profile.costs("llm_gflops")[-1]
        if cfg.calibration_dataset:
            t0 = time.perf_counter()
            demos = dataset_observation_episodes(cfg.calibration_dataset, runner.cameras, cfg.calibration_episodes,
                                                 cfg.calibration_tasks)
            solve_profile = runner.cost_profile_for(cfg.criterion)  # learned: charges the gates (or says none)
            scores = None
            # one thread: the solved thresholds (and so the modes' digests) must not depend on --threads or
            # --workers, or a --resume with other ones was refused and two such runs would not pool
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                if cfg.criterion == "learned":
                    actions, scores = collect_exit_actions_and_scores(runner, demos)
                else:
                    actions = collect_exit_actions(runner, demos)
            finally:
                torch.set_num_threads(threads)
            log.info("calibration set: %d steps in %.1f s", len(actions), time.perf_counter() - t0)
            first = learned_criterion(runner).first_exit if cfg.criterion == "learned" else 0  # the gates' own
            criterion = Criterion(smooth=cfg.criterion_smooth, kind=cfg.criterion, first_exit=first)
            for frac in cfg.budgets:
                name = dynamic_mode_name(frac, criterion)
                try:
                    budget = BudgetSpec(average_gflops=frac * full)
                    th = solve_thresholds(cfg.threshold_method, actions, solve_profile, budget, criterion, scores)
                except InfeasibleBudgetError as exc:
                    skipped[name] = str(exc)
                    log.warning("budget %g of full skipped: %s", frac, exc)
                    continue
                modes.append(
                    ModeSpec(name=name, kind="dynamic", thresholds=th.to_dict(), budget_gflops=frac * full,
                             budget_fraction=frac)
                )
                if cfg.track_budget:
                    modes.append(
                        ModeSpec(name=f"{name}+track", kind="dynamic", thresholds=th.to_dict(),
                                 budget_gflops=frac * full, budget_fraction=frac, track_budget=True)
                    )
        else:
            own = checkpoint_thresholds(cfg.checkpoint, n)
            log.warning("no --calibration-dataset: evaluating the checkpoint's own %s only",
                        CheckpointDir.THRESHOLDS)
            modes.append(thresholds_mode("dyn_ckpt", own, profile.costs))
    from_files = file_modes(cfg.thresholds_files, n, profile.costs, cfg.checkpoint, cfg.track_budget, skipped)
    untracked = [m for m in from_files if not m.track_budget]  # one per file, in the files' order
    for mode, path in zip(untracked, cfg.thresholds_files):
        try:  # the workers' own controller checks (budget with the gates' cost, gates present), before any episode
            make_controller(runner, profile, mode)
        except ValueError as exc:
            raise UnplayableModeError(f"thresholds file {path}: {exc}") from None
    modes.extend(from_files)
    if cfg.oracle_tolerance is not None:
        modes.append(ModeSpec(name=f"oracle{cfg.oracle_tolerance:g}", kind="oracle",
                              oracle_tolerance=cfg.oracle_tolerance))
    if cfg.tracked_only:  # the policy node's way only: drop each mode that has a tracked twin
        tracked = {m.name for m in modes if m.track_budget}
        modes = [m for m in modes if f"{m.name}+track" not in tracked]
    return modes, skipped


class UnplayableModeError(ValueError):
    """A mode this checkpoint cannot play (e.g. a thresholds file's budget below exit 1's cost here, or learned
    thresholds without exit gates): refused before any episode, naming the file."""


def dynamic_mode_name(fraction: float, criterion: Criterion) -> str:
    """'dyn0.2' for DeeR's criterion; other criteria are other modes, named so runs of each can be pooled apart:
    'dyn0.2-learned', 'dyn0.2-smooth3'."""
    name = f"dyn{fraction:g}"
    if criterion.kind != "consecutive":
        name += f"-{criterion.kind}"
    if criterion.smooth > 1:
        name += f"-smooth{criterion.smooth}"
    return name


def checkpoint_thresholds(checkpoint: str | Path, num_exits: int) -> Thresholds:
    """The checkpoint's own thresholds.json, the dynamic mode without a calibration set; ValueError when it has
    none, or one that does not fit it (``load_thresholds_for``)."""
    path = CheckpointDir(checkpoint).thresholds_path
    if not path.is_file():
        raise ValueError(f"dynamic budgets need --calibration-dataset (demonstrations to solve thresholds on) or a "
                         f"{path}; pass --budgets '' to skip the dynamic modes")
    return load_thresholds_for(path, num_exits, checkpoint)


def load_thresholds_for(path: str | Path, num_exits: int, checkpoint: str | Path) -> Thresholds:
    """A thresholds file, refused (ValueError naming it) unless it fits ``checkpoint``: its exits and, when it
    records them, the weights it was solved on and the exit gates it was solved with."""
    th = Thresholds.load(Path(path), num_exits=num_exits)  # names the file and the problem
    ckpt = CheckpointDir(checkpoint)
    th.check_solved_on(ckpt.weights_digest, str(path), str(checkpoint), ckpt.gates_digest, ckpt.gates_file_digest,
                       ckpt.config_digests)
    return th


def file_modes(paths: list[str], num_exits: int, costs: Callable[[str], list[float]] | None,
               checkpoint: str | Path, track: bool = False, skipped: dict[str, str] | None = None) -> list[ModeSpec]:
    """One dynamic mode per thresholds file, named after it ('th-<file stem>'), thresholds used as written;
    ``track``: each also with the online budget tracker holding the file's average budget ('th-<stem>+track'),
    as the policy node runs it; not a certified file, whose thresholds the tracker leaves as they are.

    A file certified for a fidelity guarantee (`calibrate --risk`) is run as certified, so closed-loop success
    under the guarantee can be set beside the full model's on the same seeds; its tracked mode is not run, and
    said in ``skipped`` (mode name -> why)."""
    modes: list[ModeSpec] = []
    for path in paths:
        name = f"th-{Path(path).stem}"
        if any(m.name == name for m in modes):
            raise ValueError(f"two thresholds files give the mode name {name!r}; rename one ({path})")
        th = load_thresholds_for(path, num_exits, checkpoint)
        mode = thresholds_mode(name, th, costs)
        modes.append(mode)
        if track and th.guarantee is not None:  # the tracker never scales certified thresholds: a repeat
            why = f"certified thresholds (calibrate --risk): the tracker never scales them, it would repeat {name}"
            log.warning("%s+track skipped: %s", name, why)
            if skipped is not None:
                skipped[f"{name}+track"] = why
        elif track:
            if mode.budget_gflops is None:
                raise ValueError(f"thresholds file {path} records no average budget for the tracker to hold; "
                                 "solve it with `deer-vla calibrate --average-budget-fraction F`")
            modes.append(replace(mode, name=f"{name}+track", track_budget=True))
    return modes


def thresholds_mode(name: str, th: Thresholds, costs: Callable[[str], list[float]] | None) -> ModeSpec:
    """A dynamic mode running ``th`` as written, with the budget it was solved for, if any; ``costs``: the cost
    profile's per-exit costs of a metric (``CostProfile.costs``; None: no fraction), for the budget's fraction of
    the full model in the thresholds' own metric (a total_gflops budget over the LLM cost was reported before)."""
    b = th.budget.average_gflops if th.budget and th.budget.average_gflops else None
    full_gflops = costs(th.metric)[-1] if costs is not None else None
    # the weights' and gates' digests say where the file came from, not what the mode plays: kept out of the
    # mode, so a run with a file from before a digest was recorded pools with one from after (journal.mode_digests)
    played = replace(th, weights_sha256=None, gates_sha256=None, config_sha256=None)
    return ModeSpec(name=name, kind="dynamic", thresholds=played.to_dict(), budget_gflops=b,
                    budget_fraction=b / full_gflops if b and full_gflops else None)


def run_jobs(cfg: EvalConfig, jobs: list[Job], worker: EvalWorker, spec: PolicySpec,
             show_progress: bool = True,
             on_output: Callable[[list[EpisodeResult]], None] | None = None) -> list[EpisodeResult]:
    """Every job's episodes: on ``worker`` here (``cfg.workers`` == 1) or in ``cfg.workers`` processes that
    each load ``spec``'s policy (with ``worker``'s cost profile, measured once). ``on_output`` gets each job's
    episodes as soon as they finish (the journal)."""
    from tqdm import tqdm

    results: list[EpisodeResult] = []
    bar = tqdm(total=sum(len(j[2]) for j in jobs), desc="episodes", unit="ep", disable=not show_progress,
               dynamic_ncols=True)
    if cfg.workers == 1:
        outputs: Iterable[list[EpisodeResult]] = (worker.run_job(job) for job in jobs)
    else:
        factory = partial(EvalWorker.from_spec, spec.with_profile(worker.profile), cfg.max_simulators)
        outputs = run_in_processes(factory, jobs, min(cfg.workers, len(jobs))) if jobs else iter(())
    for out in outputs:
        results.extend(out)
        if on_output is not None:
            on_output(out)
        bar.update(len(out))
    bar.close()
    return results


def evaluate(
    cfg: EvalConfig, out_dir: str | Path, show_progress: bool = True, verbose: bool = True
) -> dict[str, Any]:
    """Run every mode on every task and write results.json, results.csv and tradeoff.png to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = PolicySpec(cfg.checkpoint, cfg.device, cfg.threads_per_worker(), cfg.image_size)
    worker = EvalWorker.from_spec(spec, cfg.max_simulators)
    try:
        return _evaluate(cfg, out, worker, spec, show_progress, verbose)
    finally:
        worker.close()


def _evaluate(cfg: EvalConfig, out: Path, worker: EvalWorker, spec: PolicySpec, show_progress: bool,
              verbose: bool) -> dict[str, Any]:
    modes, skipped = build_modes(cfg, worker.runner)
    conditions = cfg.instruction_conditions()
    if conditions != ["canonical"]:  # same seeds, other instructions: modes get a suffix per condition
        modes = [m if c == "canonical" else replace(m, name=m.name + HELDOUT_SUFFIX)
                 for c in conditions for m in modes]
    run_plan = {"modes": [m.name for m in modes], "mode_digests": mode_digests(modes), "tasks": list(cfg.tasks),
                "episodes_per_task": cfg.episodes_per_task, "checkpoint": str(cfg.checkpoint)}
    ckpt = CheckpointDir(cfg.checkpoint)
    config_digests = ckpt.config_digests()
    journal = EpisodeJournal(out, run_fingerprint(ckpt.weights_digest(), modes, cfg.seed_offset, cfg.max_steps,
                                                  cfg.image_size, config_digests[0]), run_plan, config_digests)
    done = journal.start(cfg.resume)
    if not done:  # a fresh journal: an earlier run's results beside it would describe another run
        for name in ("results.json", "results.csv", "tradeoff.png"):
            (out / name).unlink(missing_ok=True)
    results: list[EpisodeResult] = []  # this run's episodes found in the journal, then the new ones
    plans_left: list[tuple[ModeSpec, str, list[tuple[int, str | None]]]] = []
    for task in cfg.tasks:
        plans = {c: episode_plan(task, cfg.episodes_per_task, cfg.seed_offset, c == "heldout") for c in conditions}
        for mode in modes:
            plan = plans["heldout" if mode.name.endswith(HELDOUT_SUFFIX) else "canonical"]
            results.extend(done[(mode.name, task, s)] for s, _ in plan if (mode.name, task, s) in done)
            plans_left.append((mode, task, [(s, instr) for s, instr in plan if (mode.name, task, s) not in done]))
    jobs: list[Job] = seed_major_jobs(plans_left, cfg.max_steps)
    if results:
        log.info("resumed %d finished episodes; %d to play", len(results), sum(len(j[2]) for j in jobs))
    t0 = time.perf_counter()
    results += run_jobs(cfg, jobs, worker, spec, show_progress, on_output=journal.append)
    wall = time.perf_counter() - t0
    order = [m.name for m in modes]
    # in plan order (task, mode, seed), not the order workers finished them: the same run twice writes the same
    # results.json, its means summed in the same order
    task_rank = {t: i for i, t in reversed(list(enumerate(cfg.tasks)))}
    results.sort(key=lambda r: (task_rank.get(r.task, len(task_rank)), order.index(r.mode), r.seed))
    summary = summarize(results, order)
    groups = group_report(results, order, cfg.tasks)  # MT50 difficulty groups, where the tasks span more than one
    mode_meta = {
        m.name: {"kind": m.kind, "exit": m.exit, "budget_gflops": m.budget_gflops,
                 "budget_fraction": m.budget_fraction, "oracle_tolerance": m.oracle_tolerance,
                 "track_budget": m.track_budget, "thresholds": m.thresholds}
        for m in modes
    }
    profile = worker.profile
    payload: dict[str, Any] = {
        "checkpoint": str(cfg.checkpoint),
        "config": cfg.model_dump(),
        "flops_convention": "torch FlopCounterMode: one multiply-add = 2 FLOPs; LLM = decoder + cross-attention",
        "profile": {"llm_gflops": profile.llm_gflops, "total_gflops": profile.total_gflops},
        "modes": mode_meta,
        "skipped": skipped,
        "summary": summary,
        "groups": groups,
        "generalisation": generalisation(results, order) if cfg.instructions == "both" else None,
        "paired": paired_with(results, order),
        "wall_s": wall,
        "episodes": [r.to_dict() for r in results],
    }
    write_json(out / "results.json", payload)
    write_csv(out / "results.csv", summary, mode_meta)
    plot_tradeoff(out / "tradeoff.png", summary, mode_meta,
                  f"{len(cfg.tasks)} tasks x {cfg.episodes_per_task} episodes, held-out seeds")
    if verbose:
        print_table(summary, mode_meta, None if cfg.skip_full else "full")
        if groups:
            print_groups(groups["summary"], summary)
        if payload["generalisation"]:
            print_generalisation(payload["generalisation"])
        print_paired(payload["paired"])
        for name, why in skipped.items():
            print(f"skipped {name}: {why}")
        print(f"{len(results)} episodes in {wall:.0f} s; results in {out}")
    return payload


# --- CLI ---------------------------------------------------------------------------------------


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of numbers, got {text!r}") from None


def parse_exits(text: str, num_exits: int | None = None) -> list[int]:
    """'1,2,4,all' -> fixed exits; 'all' / 'full' = the last exit (the full model, always run), 'every' = each."""
    out: list[int] = []
    for tok in (t.strip().lower() for t in text.split(",") if t.strip()):
        if tok in ("all", "full"):
            continue  # the full model is always evaluated
        if tok == "every":
            if num_exits is None:
                raise ValueError("'every' needs the number of exits")
            out.extend(range(1, num_exits + 1))
            continue
        try:
            out.append(int(tok))
        except ValueError:
            raise ValueError(f"--exits: expected exit numbers, 'all' or 'every', got {tok!r}") from None
        if num_exits is not None and not 1 <= out[-1] <= num_exits:  # here, not after the workers have started
            raise ValueError(f"--exits: exit {out[-1]} outside this checkpoint's exits 1..{num_exits}")
    return out


class EvaluateSettings(NoBoolNumbers):
    """`deer-vla evaluate`'s settings: --config YAML keys, --set keys and flags share these names."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str = Field(description=CHECKPOINT_HELP)
    tasks: str | None = Field(None, description="task names and groups ('all' = the ten-task suite, 'mt50', "
                              "'mt50-hard', ...), comma list")
    suite: str | None = Field(None, description="a named suite instead of tasks: 'default' (ten tasks) or 'mt50' "
                              "(success also per difficulty group)")
    episodes_per_task: int = Field(20, ge=1, le=MAX_EPISODES_PER_TASK, description="held-out seeds per (mode, task)")
    budgets: list[float] = Field([0.2], description="average budgets as fractions of the full model's LLM GFLOPs, "
                                 "e.g. 0.1,0.2,0.3 ('' = no dynamic modes; 0.2 keeps the default run near 20 min "
                                 "on 2 cores). Solved on --calibration-dataset; without one, the default (left "
                                 "out, or the default's value in a --config file) runs the checkpoint's own "
                                 "thresholds as mode dyn_ckpt; any other budget, or the default given on the "
                                 "command line, is refused")
    exits: str | list[int] = Field("all", description="fixed exits to evaluate, e.g. 1,2,4,all ('every' = each exit)")
    skip_full: bool = Field(False, description="do not play the full model (always played otherwise): for a run "
                            "pooled by `deer-vla eval-report` with one that played it on the same seeds (on CPU "
                            "the full model replays its episodes exactly)")
    oracle: float | None = Field(None, ge=0, description="also run the oracle with this tolerance (criterion distance)")
    calibration_dataset: str | None = Field(None, description="demonstrations to solve per-budget thresholds on "
                                            "(default: data/demos if present)")
    calibration_episodes: int = Field(30, ge=1, description="demonstration episodes to solve thresholds on")
    calibration_tasks: str | None = Field(None, description="solve thresholds on these tasks' demonstrations only, "
                                          "e.g. to measure budget adherence under a task shift ('all' or a comma "
                                          "list; default: every task)")
    threshold_method: ThresholdMethod = Field("quantile", description="how per-budget thresholds are solved on the "
                                              "calibration demonstrations")
    criterion_smooth: int = Field(1, ge=1, description="solve thresholds for the criterion averaging the last K "
                                  "consecutive-exit distances")
    criterion: CriterionKind = Field("consecutive", description="exit criterion of the dynamic modes: DeeR's "
                                     "consecutive distance, or the checkpoint's learned exit gates "
                                     "(`deer-vla train-gate`)")
    instructions: InstructionSet = Field("canonical", description="canonical instruction, the never-trained held-out "
                                         "paraphrases, or both on the same seeds (then a canonical vs held-out table "
                                         "per task)")
    track_budget: bool = Field(False, description="also run every budget and thresholds file with the online budget "
                               "tracker (modes 'dyn<f>+track', 'th-<stem>+track'), restarted at every episode "
                               "(the policy node's runs on across episodes)")
    tracked_only: bool = Field(False, description="run every budget and thresholds file with the online budget "
                               "tracker only (implies track_budget; restarted at every episode), without the "
                               "thresholds as solved beside it")
    seed_offset: int = Field(EVAL_SEED_OFFSET, ge=0, description="first evaluation seed")
    max_steps: int | None = Field(None, ge=1, description="episode step limit (default: the adapter's)")
    workers: int = Field(2, ge=1, le=MAX_WORKERS, description="episode worker processes (one policy + simulator each)")
    max_simulators: int = Field(DEFAULT_MAX_SIMULATORS, ge=1, description="simulators each worker keeps open, the "
                                "least recently used closed first (about 190 MB each: all 50 of MT50 took 9 GB a "
                                "worker)")
    threads: int | None = Field(None, ge=1, le=MAX_THREADS, description="torch threads per worker (default: CPU cores "
                                "// workers; "
                                "1 where other jobs share the cores)")
    device: str = Field("cpu", description="torch device of the policy: cpu, cuda or cuda:N")
    resume: bool = Field(False, description="resume an interrupted run: keep the episodes already in "
                         "OUT/episodes.jsonl (same checkpoint, modes and seeds; refused otherwise), play the rest")
    overwrite: bool = Field(False, description="start afresh in an OUT that already holds an evaluation, whose "
                            "episodes are then lost (without it, and without --resume, such an OUT is refused)")
    thresholds: list[str] = Field([], description="thresholds files to run as they are, one dynamic mode "
                                  "'th-<file stem>' each, e.g. risk-certified ones from `deer-vla calibrate "
                                  "--risk` (comma list; independent of --budgets)")
    out: str = Field("eval_results", description="directory for results.json, results.csv and tradeoff.png")
    no_progress: bool = Field(False, description="no progress bar")

    @field_validator("out")
    @classmethod
    def _out_not_blank(cls, value: str) -> str:
        nonblank_path(value, "out")
        return value

    @field_validator("budgets", mode="before")
    @classmethod
    def _budget_list(cls, v: Any) -> Any:
        try:
            return _floats(v) if isinstance(v, str) else v  # YAML may give the flag's comma form
        except argparse.ArgumentTypeError as exc:  # not a ValueError: pydantic would let it out as a traceback
            raise ValueError(str(exc)) from None

    @field_validator("thresholds", mode="before")
    @classmethod
    def _path_list(cls, v: Any) -> Any:
        return [x.strip() for x in v.split(",") if x.strip()] if isinstance(v, str) else v

    @field_validator("device")
    @classmethod
    def _usable_device(cls, v: str) -> str:
        return check_device(v)  # here, not as a traceback from the first worker


def _help(name: str) -> str:
    return EvaluateSettings.model_fields[name].description or ""


def build_parser() -> argparse.ArgumentParser:
    """Flags without defaults (argparse.SUPPRESS): only the flags given override --config / --set; the defaults
    live in EvaluateSettings."""
    p = argparse.ArgumentParser(prog="deer-vla evaluate", description=__doc__.splitlines()[0],
                                argument_default=argparse.SUPPRESS)
    add_config_arguments(p, "the evaluation settings")
    p.add_argument("--checkpoint", help=_help("checkpoint"))
    p.add_argument("--tasks", help=_help("tasks"))
    p.add_argument("--suite", help=_help("suite"))
    p.add_argument("--episodes-per-task", type=int, help=_help("episodes_per_task"))
    p.add_argument("--budgets", type=_floats, help=_help("budgets"))
    p.add_argument("--exits", help=_help("exits"))
    p.add_argument("--skip-full", action="store_true", help=_help("skip_full"))
    p.add_argument("--oracle", type=float, metavar="TOL", help=_help("oracle"))
    p.add_argument("--calibration-dataset", help=_help("calibration_dataset"))
    p.add_argument("--calibration-episodes", type=int, help=_help("calibration_episodes"))
    p.add_argument("--calibration-tasks", help=_help("calibration_tasks"))
    p.add_argument("--threshold-method", choices=THRESHOLD_METHODS, help=_help("threshold_method"))
    p.add_argument("--criterion-smooth", type=int, metavar="K", help=_help("criterion_smooth"))
    p.add_argument("--criterion", choices=("consecutive", "learned"), help=_help("criterion"))
    p.add_argument("--instructions", choices=INSTRUCTION_SETS, help=_help("instructions"))
    p.add_argument("--heldout-instructions", action="store_const", const="heldout", dest="instructions",
                   help="same as --instructions heldout")
    p.add_argument("--track-budget", action="store_true", help=_help("track_budget"))
    p.add_argument("--tracked-only", action="store_true", help=_help("tracked_only"))
    p.add_argument("--thresholds", metavar="FILE[,FILE]", help=_help("thresholds"))
    p.add_argument("--resume", action="store_true", help=_help("resume"))
    p.add_argument("--overwrite", action="store_true", help=_help("overwrite"))
    p.add_argument("--seed-offset", type=int, help=_help("seed_offset"))
    p.add_argument("--max-steps", type=int, help=_help("max_steps"))
    p.add_argument("--workers", type=int, help=_help("workers"))
    p.add_argument("--max-simulators", type=int, metavar="N", help=_help("max_simulators"))
    p.add_argument("--threads", type=int, help=_help("threads"))
    p.add_argument("--device", help=_help("device"))
    p.add_argument("--out", help=_help("out"))
    p.add_argument("--no-progress", action="store_true", help=_help("no_progress"))
    return p


def load_settings(argv: list[str] | None = None) -> EvaluateSettings:
    """Defaults < --config < --set < flags; ConfigError (naming the key) when they do not validate."""
    return _settings_and_flags(argv)[0]


def _settings_and_flags(argv: list[str] | None) -> tuple[EvaluateSettings, argparse.Namespace]:
    """The settings and the flags they were read from (what the command line gave, for ``_budgets_asked``)."""
    given = build_parser().parse_args(argv)
    return load_layered(EvaluateSettings, given, "evaluate settings"), given


def warn_if_calibration_misses(dataset: str, tasks: list[str]) -> None:
    """Warn when the implicit calibration set (data/demos: the default checkpoint's tasks) holds no
    demonstrations of some evaluated tasks, e.g. `--checkpoint mt50 --suite mt50`: the dynamic modes'
    thresholds would be solved on other tasks' steps. (A checkpoint trained on a superset of it, as the
    default on data/demos_plus, is fine: its tasks are all there.)"""
    from deer_vla.data.episodes import EpisodeDataset

    try:
        present = set(EpisodeDataset(dataset).tasks)
    except (OSError, ValueError):  # unreadable: the solver reports it when it opens the dataset
        return
    missing = sorted(set(tasks) - present)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        log.warning("the dynamic modes' thresholds are solved on %s (the default --calibration-dataset), which has "
                    "no demonstrations of %s: pass --calibration-dataset with the evaluated tasks' own", dataset,
                    shown)


def warn_about_instruction_record(checkpoint: CheckpointDir, tasks: list[str]) -> None:
    """Warn when the checkpoint's record of its training instructions (extra.json, written by `deer-vla train`)
    disagrees with the suite being evaluated: held-out wording it was trained on, a canonical instruction it
    never saw; other training wording of the suite it never saw (not evaluated) is an INFO line."""
    from deer_vla.sim.tasks import get_task, instruction_record_problems, untrained_suite_wordings

    try:
        trained = checkpoint.read_training().get("instructions")
    except (OSError, ValueError):  # no usable record: nothing to compare
        return
    if not isinstance(trained, dict):
        return
    record = {str(k): [t for t in v if isinstance(t, str)] for k, v in trained.items() if isinstance(v, list)}
    specs = [get_task(t) for t in tasks]
    problems = instruction_record_problems(record, specs)
    if problems:
        log.warning("%s was trained on other instructions than this suite lists (its extra.json): %s; the "
                    "figures of those instructions then do not measure what they are named for", checkpoint.root,
                    "; ".join(problems))
    unseen = untrained_suite_wordings(record, specs)
    if unseen:  # not evaluated (canonical and held-out are): said once, briefly
        task, texts = next(iter(unseen.items()))
        log.info("%s never trained on %d of this suite's other training wordings of %d task(s) (e.g. %s: %r; the "
                 "suite gained them after it was trained, or training ran an older install): the evaluated "
                 "canonical and held-out wordings are as named", checkpoint.root, sum(map(len, unseen.values())),
                 len(unseen), task, texts[0])


def _budgets_asked(args: EvaluateSettings, given: argparse.Namespace) -> bool:
    """Whether the budgets are a request rather than the default: another value from any layer, or the default's
    value on the command line (``--budgets 0.2``, any abbreviation argparse accepts, ``--set budgets=[0.2]``; a
    --config file listing the defaults, as config/evaluate_default.yaml does, means the defaults). ``given``: the
    parsed flags, whose defaults are SUPPRESS: a flag given is an attribute."""
    if args.budgets != EvaluateSettings.model_fields["budgets"].default:
        return True
    sets = getattr(given, "overrides", None) or ()
    return hasattr(given, "budgets") or any(str(s).split("=", 1)[0].strip() == "budgets" for s in sets)


def cli_main(argv: list[str] | None = None) -> int:
    try:
        args, given = _settings_and_flags(argv)
    except ConfigError as exc:
        print(f"deer-vla evaluate: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("OpenGL").setLevel(logging.WARNING)  # its INFO "No OpenGL_accelerate module loaded" on every run
    calib = args.calibration_dataset
    if calib is None and args.budgets and Path("data/demos").is_dir():
        calib = "data/demos"
    try:
        from deer_vla.sim.tasks import tasks_arg

        checkpoint = str(resolve_checkpoint(args.checkpoint))  # a shipped name -> its folder
        num_exits = CheckpointDir(checkpoint).read_config().num_exits
        exits = args.exits if isinstance(args.exits, list) else parse_exits(args.exits, num_exits)
        if args.skip_full:  # 'every' (or the last exit named) is the full model, which --skip-full leaves out
            exits = [k for k in exits if k != num_exits]
        cfg = EvalConfig(
            checkpoint=checkpoint,
            tasks=resolve_tasks(tasks_arg(args.suite, args.tasks)),
            episodes_per_task=args.episodes_per_task,
            budgets=args.budgets,
            exits=exits,
            skip_full=args.skip_full,
            oracle_tolerance=args.oracle,
            calibration_dataset=calib,
            calibration_episodes=args.calibration_episodes,
            calibration_tasks=resolve_tasks(args.calibration_tasks) if args.calibration_tasks else None,
            threshold_method=args.threshold_method,
            criterion_smooth=args.criterion_smooth,
            criterion=args.criterion,
            instructions=args.instructions,
            track_budget=args.track_budget or args.tracked_only,
            tracked_only=args.tracked_only,
            thresholds_files=args.thresholds,
            resume=args.resume,
            seed_offset=args.seed_offset,
            max_steps=args.max_steps,
            workers=args.workers,
            max_simulators=args.max_simulators,
            threads=args.threads,
            device=args.device,
        )
        if calib is None and cfg.budgets and _budgets_asked(args, given):
            # the default budget falls back to the checkpoint's own thresholds (said in a warning); budgets asked
            # for by value must not quietly become one mode of whatever budget those were solved for
            raise ValueError(f"--budgets {','.join(f'{b:g}' for b in cfg.budgets)} needs demonstrations to solve "
                             "thresholds on (--calibration-dataset DIR; there is no data/demos); or run thresholds "
                             "files as they are: --budgets '' --thresholds "
                             f"{Path(cfg.checkpoint) / 'thresholds.json'}, or leave --budgets out to run the "
                             "checkpoint's own")
        warn_about_instruction_record(CheckpointDir(cfg.checkpoint), cfg.tasks)
        if cfg.budgets and cfg.calibration_dataset and not Path(cfg.calibration_dataset).is_dir():
            raise FileNotFoundError(f"--calibration-dataset {cfg.calibration_dataset}: no such directory")
        if calib is not None and args.calibration_dataset is None and cfg.calibration_tasks is None:
            warn_if_calibration_misses(calib, cfg.tasks)
        # unreadable or mismatched files (other exits, other weights) fail here, not mid-run
        file_modes(cfg.thresholds_files, num_exits, None, cfg.checkpoint, cfg.track_budget)
        if cfg.budgets and not cfg.calibration_dataset:  # the checkpoint's own thresholds play the dynamic mode
            checkpoint_thresholds(cfg.checkpoint, num_exits)  # none, other weights, NaN: refused before the lock
        if cfg.criterion == "learned" and cfg.budgets and cfg.calibration_dataset:
            gates = CheckpointDir(cfg.checkpoint).gates_path
            if not gates.is_file():
                raise ValueError(f"--criterion learned needs exit gates, and {cfg.checkpoint} has none "
                                 f"({gates.name}): train them with `deer-vla train-gate CHECKPOINT --data DIR`")
    except (ValueError, KeyError, FileNotFoundError) as exc:  # a ValidationError in one line, without its URL
        print(f"deer-vla evaluate: {format_validation_error(exc)}", file=sys.stderr)
        return 2
    problem = fresh_start_problem(args.resume, args.overwrite, lambda: held_episodes(Path(args.out) / JOURNAL_NAME),
                                  args.out, "--out")
    # before the policy loads and the calibration runs: a read-only --out failed only after them, naming a temp file
    problem = problem or unwritable_dir(Path(args.out), create=True)
    if problem:
        print(f"deer-vla evaluate: {problem}", file=sys.stderr)
        return 2
    try:  # one evaluation per --out: two resuming into one journal would play its episodes twice
        lock = lock_folder(Path(args.out), "evaluation")
    except (FolderInUseError, OSError) as exc:
        print(f"deer-vla evaluate: {exc}", file=sys.stderr)
        return 2
    try:
        evaluate(cfg, args.out, show_progress=not args.no_progress)
    except (JournalError, UnplayableModeError) as exc:  # --resume on another run's output; a file's thresholds
        print(f"deer-vla evaluate: {exc}", file=sys.stderr)
        return 2
    except NonFiniteActionError as exc:  # in-process episodes (workers report theirs as WorkerProcessError)
        print(f"deer-vla evaluate: {exc}; the episodes finished before it are kept in "
              f"{Path(args.out) / JOURNAL_NAME}", file=sys.stderr)
        return 1
    except WorkerProcessError as exc:  # what finished is in the journal: say how to continue from it
        memory = (" (a worker holds its policy and up to --max-simulators simulators of about 190 MB each: fewer "
                  "--workers or a lower --max-simulators need less memory)")
        print(f"deer-vla evaluate: {exc}\nthe episodes finished so far are kept in "
              f"{Path(args.out) / JOURNAL_NAME}: the same command with --resume plays only the rest"
              + (memory if "out-of-memory" in str(exc) else ""), file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: say what is kept and how to go on
        print(f"deer-vla evaluate: interrupted; the episodes finished so far are kept in "
              f"{Path(args.out) / JOURNAL_NAME}: the same command with --resume plays only the rest", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk mid-run: the journal holds what was written before it
        print(f"deer-vla evaluate: {exc}; the episodes finished before it are kept in "
              f"{Path(args.out) / JOURNAL_NAME} (--resume continues once there is room)", file=sys.stderr)
        return 1
    finally:
        lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
