"""`deer-vla instruction-swap`: from a shared start, does each instruction produce its own task?

Each shared-start pair (drawer, window, faucet open/close) starts both tasks
from one state with the same first frame for the same seed, so only the
instruction tells them apart. Every seed is run once per task of the pair
(same seeds for both), until the task's own Meta-World criterion holds or its
step limit; the simulator also judges the pair's *other* task at every step.
Per episode:

- ``success``: its own task's criterion held (the episode ends there);
- ``swapped``: the other task's criterion held at some step, i.e. the policy
  did what the other instruction asks (counted whether or not it recovered).

Per pair and per task it reports own-instruction success and the
swapped-completion rate with Wilson 95% intervals, and the share of seeds on
which both instructions produced their own task. A policy that ignores the
instruction can reach at most about 50% success with a swapped-completion
rate near the rest; one that reads it reaches high success with no swaps.

Policies: a checkpoint's modes (full model, fixed exits, dynamic budgets; the
same options as `deer-vla evaluate`), or the scripted experts as a check of
the bookkeeping itself: ``--expert own`` must give 100% success and no swaps,
``--expert partner`` (each episode driven by the other task's expert) 0%
success and 100% swapped.

    deer-vla instruction-swap --checkpoint CKPT --tasks shared --episodes-per-task 20 --out swap_results
    deer-vla instruction-swap --expert partner --tasks shared --episodes-per-task 5
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from deer_vla.core.atomic_file import atomic_write_text
from deer_vla.core.config_io import worker_count
from deer_vla.core.writable import path_argument, unwritable_dir
from deer_vla.evaluation.stats import wilson_interval
from deer_vla.evaluation.workers import (
    DEFAULT_MAX_SIMULATORS,
    PolicySpec,
    make_adapter,
    model_image_size,
    run_in_processes,
    seed_major_jobs,
)
from deer_vla.model.config import format_validation_error
from deer_vla.model.device import device_arg
from deer_vla.model.instruction_words import refusal
from deer_vla.sim.simulator_cache import SimulatorCache

if TYPE_CHECKING:
    from deer_vla.evaluation.evaluator import EvalConfig

log = logging.getLogger("deer_vla.instruction_swap")

EXPERT_KINDS = ("own", "partner")


@dataclass
class SwapEpisode:
    mode: str
    task: str
    partner: str  # the pair's other task
    pair: str  # the shared start (drawer, window, faucet)
    seed: int
    instruction: str
    success: bool  # own task's criterion held
    swapped: bool  # the other task's criterion held at some step
    steps: int
    first_swap_step: int | None  # step at which the other task's criterion first held

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Actor(Protocol):
    """What drives one episode: a policy's controller or a scripted expert."""

    def reset(self) -> None: ...

    def act(self, adapter: Any, observation: Any) -> np.ndarray: ...


class ExpertActor:
    """Meta-World's scripted expert of the episode's own task, or of the pair's other task (``partner``)."""

    def __init__(self, which: str) -> None:
        if which not in EXPERT_KINDS:
            raise ValueError(f"expert must be one of {EXPERT_KINDS}, got {which!r}")
        self.which = which

    def reset(self) -> None:
        pass

    def act(self, adapter: Any, observation: Any) -> np.ndarray:
        return adapter.expert_action() if self.which == "own" else adapter.partner_expert_action()


class ControllerActor:
    """A checkpoint's exit controller (one evaluation mode)."""

    def __init__(self, controller: Any) -> None:
        self.controller = controller

    def reset(self) -> None:
        self.controller.reset_episode()

    def act(self, adapter: Any, observation: Any) -> np.ndarray:
        action, _record = self.controller.step(observation)
        return np.asarray(action)


def run_swap_episode(
    adapter: Any, actor: Actor, mode: str, seed: int, instruction: str | None, max_steps: int | None = None
) -> SwapEpisode:
    """One episode on an adapter built with ``track_partner=True``."""
    from deer_vla.sim.tasks import shared_partner

    if getattr(adapter, "partner_env", None) is None:
        raise ValueError(f"task {adapter.task.name}: the swap evaluation needs MetaWorldAdapter(track_partner=True)")
    obs = adapter.reset(seed=seed, instruction=instruction)
    actor.reset()
    limit = int(max_steps or adapter.max_steps)
    success = False
    first_swap: int | None = None
    steps = 0
    for _ in range(limit):
        result = adapter.step(actor.act(adapter, obs))
        steps += 1
        if first_swap is None and result.info.get("partner_success"):
            first_swap = steps
        if result.success:
            success = True
            break
        if result.done:
            break
        obs = result.observation
    return SwapEpisode(
        mode=mode,
        task=adapter.task.name,
        partner=shared_partner(adapter.task).name,
        pair=str(adapter.task.shared_start),
        seed=int(seed),
        instruction=adapter.instruction,
        success=success,
        swapped=first_swap is not None,
        steps=steps,
        first_swap_step=first_swap,
    )


# --- summary ------------------------------------------------------------------------------------


def _rates(episodes: Sequence[SwapEpisode]) -> dict[str, Any]:
    n = len(episodes)
    wins = sum(e.success for e in episodes)
    swaps = sum(e.swapped for e in episodes)
    return {
        "episodes": n,
        "successes": wins,
        "success_rate": wins / n if n else 0.0,
        "success_ci95": list(wilson_interval(wins, n)),
        "swapped": swaps,
        "swapped_rate": swaps / n if n else 0.0,
        "swapped_ci95": list(wilson_interval(swaps, n)),
    }


def summarize_swap(episodes: Sequence[SwapEpisode]) -> dict[str, dict[str, Any]]:
    """mode -> pair -> {"own": rates over both tasks, "tasks": {task: rates}, "both_own": per-seed figures}."""
    grouped: dict[str, dict[str, list[SwapEpisode]]] = defaultdict(lambda: defaultdict(list))
    for e in episodes:
        grouped[e.mode][e.pair].append(e)
    out: dict[str, dict[str, Any]] = {}
    for mode, pairs in grouped.items():
        out[mode] = {}
        for pair, eps in sorted(pairs.items()):
            by_task: dict[str, list[SwapEpisode]] = defaultdict(list)
            by_seed: dict[int, dict[str, bool]] = defaultdict(dict)
            for e in eps:
                by_task[e.task].append(e)
                by_seed[e.seed][e.task] = e.success
            # seeds run under both instructions: did each produce its own task from the same start?
            full = [s for s in by_seed.values() if len(s) == 2]
            both = sum(all(s.values()) for s in full)
            out[mode][pair] = {
                "own": _rates(eps),
                "tasks": {t: _rates(v) for t, v in sorted(by_task.items())},
                "both_own": {"seeds": len(full), "both_succeeded": both,
                             "rate": both / len(full) if full else 0.0,
                             "ci95": list(wilson_interval(both, len(full)))},
            }
    return out


def print_summary(summary: dict[str, dict[str, Any]]) -> None:
    def pct(r: dict[str, Any], key: str) -> str:
        lo, hi = r[f"{key}_ci95"]
        count = r["successes"] if key == "success" else r["swapped"]
        return f"{100 * r[f'{key}_rate']:5.1f}% ({count}/{r['episodes']}) [{100 * lo:.0f}, {100 * hi:.0f}]"

    print(f"{'mode':14s} {'pair / task':22s} {'own-instruction success [95% CI]':34s} "
          f"{'swapped completion [95% CI]':34s} both own")
    for mode, pairs in summary.items():
        for pair, block in pairs.items():
            b = block["both_own"]
            both = f"{b['both_succeeded']}/{b['seeds']}" if b["seeds"] else "-"
            print(f"{mode:14s} {pair:22s} {pct(block['own'], 'success'):34s} {pct(block['own'], 'swapped'):34s} "
                  f"{both}")
            for task, r in block["tasks"].items():
                print(f"{'':14s}   {task:19s} {pct(r, 'success'):34s} {pct(r, 'swapped'):34s}")


# --- jobs ----------------------------------------------------------------------------------------


class SwapWorker:
    """Runs swap jobs: ``mode`` "expert-own"/"expert-partner" (scripted experts, no policy needed) or an
    evaluator ModeSpec on ``runner``. A simulator per task and camera set (at most
    ``DEFAULT_MAX_SIMULATORS`` open), tracking the pair's other task."""

    def __init__(self, runner: Any = None, profile: Any = None, image_size: int | None = None) -> None:
        self.runner = runner
        self.profile = profile
        self.image_size = image_size or model_image_size(runner)
        self.simulators = SimulatorCache(DEFAULT_MAX_SIMULATORS)

    @classmethod
    def from_spec(cls, spec: PolicySpec) -> SwapWorker:
        runner, profile = spec.load()
        return cls(runner, profile, spec.image_size)

    def adapter(self, task: str, rendered: bool, max_steps: int | None) -> Any:
        """``task``'s simulator, made on first use; experts read the state, so theirs renders no camera (and is
        another simulator than the policy's of the same task)."""
        cameras = tuple(self.runner.cameras) if rendered else ()
        return self.simulators.get((task, rendered), lambda: make_adapter(task, cameras, self.image_size, max_steps,
                                                                          track_partner=True))

    def run_job(self, job: tuple[Any, str, list[tuple[int, str | None]], int | None]) -> list[SwapEpisode]:
        """One (mode, task) chunk."""
        mode, task, plan, max_steps = job
        actor: Actor
        if isinstance(mode, str):
            actor = ExpertActor(mode.removeprefix("expert-"))
            adapter = self.adapter(task, False, max_steps)
            name = mode
        else:
            from deer_vla.evaluation.rollout import make_controller

            if self.runner is None:
                raise ValueError(f"mode {mode.name} needs a policy; this worker drives scripted experts only")
            adapter = self.adapter(task, True, max_steps)
            actor = ControllerActor(make_controller(self.runner, self.profile, mode))
            name = mode.name
        return [run_swap_episode(adapter, actor, name, seed, instr, max_steps) for seed, instr in plan]

    def close(self) -> None:
        self.simulators.close()


def check_shared(tasks: Sequence[str]) -> None:
    from deer_vla.sim.tasks import SHARED_TASKS

    other = [t for t in tasks if t not in SHARED_TASKS]
    if other:
        raise ValueError(f"the swap evaluation runs shared-start tasks only, not {other}; use --tasks shared or "
                         f"some of: {', '.join(SHARED_TASKS)}")


def run_swap(
    tasks: Sequence[str],
    episodes_per_task: int,
    out_dir: str | Path,
    expert: str | None = None,
    eval_cfg: EvalConfig | None = None,
    seed_offset: int | None = None,
    heldout: bool = False,
    max_steps: int | None = None,
    workers: int = 1,
    show_progress: bool = True,
    wordings: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the swap evaluation with the scripted ``expert`` ("own"/"partner") or ``eval_cfg``'s checkpoint modes;
    write swap_results.json to ``out_dir`` and return its payload. ``wordings``: task -> the instruction its
    episodes get instead (a user's own wording, a typo), the pair's other task keeping its own."""
    from tqdm import tqdm

    from deer_vla.evaluation.evaluator import EVAL_SEED_OFFSET, build_modes, episode_plan

    check_shared(tasks)
    wordings = dict(wordings or {})
    for task, text in wordings.items():
        if task not in tasks:
            raise ValueError(f"a wording for {task}, which is not among the tasks run ({', '.join(tasks)})")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"the wording for {task} is empty")
    if episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be >= 1, got {episodes_per_task}")
    if (expert is None) == (eval_cfg is None):
        raise ValueError("give exactly one of a scripted expert or a checkpoint configuration")
    offset = EVAL_SEED_OFFSET if seed_offset is None else seed_offset
    modes: list[Any]
    skipped: dict[str, str] = {}
    spec: PolicySpec | None = None
    if expert is not None:
        ExpertActor(expert)  # validates the name
        modes = [f"expert-{expert}"]
        worker = SwapWorker()
    else:
        assert eval_cfg is not None
        threads = eval_cfg.threads or max(1, (os.cpu_count() or 1) // workers)
        spec = PolicySpec(eval_cfg.checkpoint, eval_cfg.device, threads, eval_cfg.image_size)
        worker = SwapWorker.from_spec(spec)
    for task, text in wordings.items():
        # the runner would refuse it at the first step, after the workers started (and the thresholds were
        # solved): judged now as it will be, with the checkpoint's trained words and reading ("the window is
        # open, please cloes it" reads "close")
        if worker.runner is None:  # scripted experts do not read it: only what no policy would do as meant
            refused = refusal(text)
            if refused is not None:
                raise ValueError(f"the wording for {task} {refused.why}")
            continue
        try:
            worker.runner.check_instruction(text)  # also a text over the limit, or none once cleaned
        except ValueError as exc:
            why = getattr(exc, "why", None)
            raise ValueError(f"the wording for {task} {why}" if why else f"the wording for {task}: {exc}") from exc
    if eval_cfg is not None:
        modes, skipped = build_modes(eval_cfg, worker.runner)
    # the same seeds for both tasks of a pair
    def plan(task: str) -> list[tuple[int, str | None]]:
        seeds = episode_plan(task, episodes_per_task, offset, heldout)
        return [(seed, wordings[task]) for seed, _ in seeds] if task in wordings else seeds

    jobs = seed_major_jobs([(mode, task, plan(task)) for task in tasks for mode in modes], max_steps)
    t0 = time.perf_counter()
    episodes: list[SwapEpisode] = []
    bar = tqdm(total=sum(len(j[2]) for j in jobs), desc="swap episodes", unit="ep", disable=not show_progress,
               dynamic_ncols=True)
    try:
        if spec is None or workers == 1:
            outputs: Iterable[list[SwapEpisode]] = (worker.run_job(job) for job in jobs)
        else:
            outputs = run_in_processes(partial(SwapWorker.from_spec, spec.with_profile(worker.profile)), jobs,
                                       workers)
        for out in outputs:
            episodes.extend(out)
            bar.update(len(out))
    finally:
        worker.close()
    bar.close()
    episodes.sort(key=lambda e: (e.mode, e.task, e.seed))
    summary = summarize_swap(episodes)
    payload = {
        "checkpoint": None if eval_cfg is None else str(eval_cfg.checkpoint),
        "policy": f"scripted expert ({expert})" if expert else "checkpoint",
        "tasks": list(tasks),
        "episodes_per_task": episodes_per_task,
        "seed_offset": offset,
        "heldout_instructions": heldout,
        "wordings": wordings,
        "criteria": "each task: its own Meta-World v3 env's evaluate_state success; swapped: the pair's other "
                    "task's, judged every step",
        "skipped": skipped,
        "summary": summary,
        "wall_s": time.perf_counter() - t0,
        "episodes": [e.to_dict() for e in episodes],
    }
    out_path = Path(out_dir)
    out_path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_path / "swap_results.json", json.dumps(payload, indent=2, allow_nan=False) + "\n")
    return payload


# --- CLI ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from deer_vla.evaluation.evaluator import EVAL_SEED_OFFSET, _floats
    from deer_vla.model.shipped import checkpoint_argument, checkpoint_help

    p = argparse.ArgumentParser(prog="deer-vla instruction-swap", description=__doc__.splitlines()[0])
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--checkpoint", type=checkpoint_argument, help=checkpoint_help(default=None))
    who.add_argument("--expert", choices=EXPERT_KINDS,
                     help="drive episodes with Meta-World's scripted experts instead (a check of the bookkeeping)")
    p.add_argument("--tasks", default="shared", help="shared-start tasks: 'shared' or a comma list of *-shared")
    p.add_argument("--episodes-per-task", type=int, default=20, help="seeds per task (the same for both of a pair)")
    p.add_argument("--exits", default="all", help="fixed exits besides the full model, e.g. 1,2,all")
    p.add_argument("--budgets", type=_floats, default=[],
                   help="dynamic modes at these fractions of the full LLM GFLOPs (need --calibration-dataset)")
    p.add_argument("--calibration-dataset", default=None)
    p.add_argument("--calibration-episodes", type=int, default=30)
    p.add_argument("--instructions", choices=("canonical", "heldout"), default="canonical",
                   help="each task's canonical instruction, or its never-trained held-out paraphrases (cycled)")
    p.add_argument("--heldout-instructions", action="store_const", const="heldout", dest="instructions",
                   help="same as --instructions heldout")
    p.add_argument("--wording", action="append", default=[], metavar="TASK=TEXT",
                   help="the instruction TASK's episodes get instead of its own (repeatable), e.g. "
                        "'window-close-shared=cloes the window'")
    p.add_argument("--seed-offset", type=int, default=EVAL_SEED_OFFSET)
    p.add_argument("--max-steps", type=int, default=None, help="episode step limit (default: the task's)")
    p.add_argument("--workers", type=worker_count, default=1, help="worker processes (each loads the model)")
    p.add_argument("--device", default="cpu", type=device_arg, help="cpu, cuda or cuda:N")
    p.add_argument("--out", type=path_argument, default="swap_results")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run's swap_results.json in --out")
    p.add_argument("--no-progress", action="store_true")
    return p


def cli_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from deer_vla.evaluation.evaluator import EvalConfig, parse_exits, resolve_tasks

    # before the episodes: an --out that is a file failed only after all of them, an earlier run's results
    # were replaced without a word
    earlier = Path(args.out) / "swap_results.json"
    problem = unwritable_dir(Path(args.out), create=False) or (
        f"{earlier} holds an earlier run's results: --overwrite replaces them, or choose another --out"
        if earlier.is_file() and not args.overwrite else None)
    if problem:
        print(f"deer-vla instruction-swap: {problem}", file=sys.stderr)
        return 2

    try:
        tasks = resolve_tasks(args.tasks)
        check_shared(tasks)
        wordings: dict[str, str] = {}
        for item in args.wording:
            task, sep, text = item.partition("=")
            if not sep or not task.strip():
                raise ValueError(f"--wording takes TASK=TEXT, got {item!r}")
            if task.strip() in wordings:  # the last one was kept without a word
                raise ValueError(f"--wording gives {task.strip()} two wordings ({wordings[task.strip()]!r}, "
                                 f"{text!r}): one run tests one wording per task")
            wordings[task.strip()] = text
        cfg = None
        if args.checkpoint and args.budgets and not args.calibration_dataset:  # not the checkpoint's own, quietly
            raise ValueError("--budgets needs --calibration-dataset (demonstrations to solve thresholds on)")
        if args.checkpoint:
            from deer_vla.model.checkpoint_dir import CheckpointDir

            cfg = EvalConfig(
                checkpoint=str(args.checkpoint),
                tasks=tasks,
                episodes_per_task=args.episodes_per_task,
                budgets=args.budgets,
                exits=parse_exits(args.exits, CheckpointDir(args.checkpoint).read_config().num_exits),
                calibration_dataset=args.calibration_dataset,
                calibration_episodes=args.calibration_episodes,
                seed_offset=args.seed_offset,
                max_steps=args.max_steps,
                workers=args.workers,
                device=args.device,
            )
        payload = run_swap(tasks, args.episodes_per_task, args.out, expert=args.expert, eval_cfg=cfg,
                           seed_offset=args.seed_offset, heldout=args.instructions == "heldout",
                           max_steps=args.max_steps, workers=args.workers, show_progress=not args.no_progress,
                           wordings=wordings)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else format_validation_error(exc)
        print(f"deer-vla instruction-swap: {msg}", file=sys.stderr)
        return 2
    print_summary(payload["summary"])
    for name, why in payload["skipped"].items():
        print(f"skipped {name}: {why}")
    where = Path(args.out) / "swap_results.json"
    print(f"{len(payload['episodes'])} episodes in {payload['wall_s']:.0f} s; results in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
