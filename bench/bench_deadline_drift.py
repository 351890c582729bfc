"""A time budget on a machine that gets busy after configure timed it: the real model, side by side.

Configure times whole steps (PolicyRunner.time_here) and the time budgets plan with those times: a per-step
deadline (``--budget deadline``: the guard stops a step before a segment that would not finish in time) or a
peak time budget (``--budget peak_ms``: a cap on the exits, judged at the p99 step time). This bench runs two
controllers on the same checkpoint, stepping in turn through the same observations: one planning with
configure's times alone ("blind"), one that keeps free the margin by which its last steps ran over them (the
controller's own DriftMargin, "following"). First ``--quiet-steps`` steps each as timed, then ``--cpu-load``
busy processes start (a robot computer whose other programs wake up) for ``--loaded-steps``. Printed per phase:
the share of steps over the budget's time (95% Wilson interval), step time p50/p99, mean exit, and the drift
margin at the end. Only the time budget stops steps (thresholds that never stop one), so it alone decides the
depth.

    .venv/bin/python bench/bench_deadline_drift.py --quick
    .venv/bin/python bench/bench_deadline_drift.py --checkpoint default --cpu-load 2
    .venv/bin/python bench/bench_deadline_drift.py --checkpoint default --cpu-load 2 --budget peak_ms
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from common import check_output, run_bench, start_cpu_load, stop_cpu_load, synthetic_observations

from deer_vla.control import BudgetSpec, ExitController, Thresholds
from deer_vla.control.budgets import step_worst_ms
from deer_vla.control.deadline import DriftMargin
from deer_vla.core import Observation, StepRecord
from deer_vla.core.config_io import repeat_count, thread_count
from deer_vla.core.writable import path_argument
from deer_vla.evaluation.stats import wilson_interval
from deer_vla.model.shipped import checkpoint_argument, checkpoint_help

MODES = ("blind", "following")
BUDGETS = ("deadline", "peak_ms")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=checkpoint_argument, default=checkpoint_argument("default"),
                   help=checkpoint_help())
    p.add_argument("--quick", action="store_true", help="60 quiet and 120 loaded steps per mode (CI's smoke test)")
    p.add_argument("--quiet-steps", type=repeat_count, default=300, help="steps per mode before the load")
    p.add_argument("--loaded-steps", type=repeat_count, default=600, help="steps per mode beside the load")
    p.add_argument("--cpu-load", type=int, default=2, choices=range(0, 17), metavar="N",
                   help="busy processes started after the quiet steps (default 2: this machine's cores)")
    p.add_argument("--budget", choices=BUDGETS, default="deadline",
                   help="the time budget: a per-step deadline (default) or a peak time budget (peak_ms)")
    p.add_argument("--deadline-multiple", type=float, default=1.0,
                   help="the budget's time as a multiple of the full model's worst case timed at configure (0.2-5)")
    p.add_argument("--threads", type=thread_count, default=1, help="torch threads (1: see the README)")
    p.add_argument("--json", type=path_argument, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if not 0.2 <= args.deadline_multiple <= 5.0:
        p.error(f"--deadline-multiple must be in [0.2, 5], got {args.deadline_multiple}")
    if args.quick:
        args.quiet_steps, args.loaded_steps = 60, 120
    if args.json is not None:
        check_output("--json", args.json)
    return args


def time_budget(kind: str, ms: float | None) -> BudgetSpec:
    return BudgetSpec(deadline_ms=ms) if kind == "deadline" else BudgetSpec(peak_ms=ms)


def controller(checkpoint: Path, budget: BudgetSpec, profile=None) -> ExitController:  # type: ignore[no-untyped-def]
    """A controller on its own runner (its own head history), timed here unless ``profile`` is given."""
    from deer_vla.model.runner import PolicyRunner

    runner = PolicyRunner.from_checkpoint(checkpoint)
    if profile is None:
        runner.time_here()
        profile = runner.cost_profile
    n = runner.num_exits
    return ExitController(runner, profile, Thresholds(values=[0.0] * (n - 1)), budget)  # no criterion stops


def phase_figures(records: list[StepRecord], limit_ms: float) -> dict:
    total = np.array([r.total_ms for r in records])
    over = int((total > limit_ms).sum())
    low, high = wilson_interval(over, len(records))
    return {"steps": len(records), "over": over, "over_share": over / len(records), "over_ci": [low, high],
            "p50_ms": float(np.percentile(total, 50)), "p99_ms": float(np.percentile(total, 99)),
            "mean_exit": float(np.mean([r.exit_used for r in records]))}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    logging.getLogger("deer_vla.controller").setLevel(logging.ERROR)  # the table says what its notices would
    t0 = time.perf_counter()
    following = controller(args.checkpoint, BudgetSpec())
    profile = following.profile
    n = following.num_exits
    deadline = step_worst_ms(profile, n) * args.deadline_multiple
    following.set_budget(time_budget(args.budget, deadline))
    blind = controller(args.checkpoint, time_budget(args.budget, deadline), profile)  # the same configure times
    blind.drift = DriftMargin(window=10**9, min_steps=10**9)  # never ready: configure's times alone
    runner = following.policy
    steps = args.quiet_steps + args.loaded_steps
    episodes = synthetic_observations(runner.cameras, runner.image_size, runner.model.config.proprio_dim,
                                      -(-steps // 50), 50, seed=0)
    observations: list[Observation] = [o for episode in episodes for o in episode][:steps]
    print(f"checkpoint {args.checkpoint}, {n} exits, torch threads {args.threads}; {args.budget} {deadline:.2f} ms "
          f"= {args.deadline_multiple:g} x the full model's worst case timed at configure "
          f"({step_worst_ms(profile, 1):.2f} ms at exit 1)")
    records: dict[str, dict[str, list[StepRecord]]] = {m: {"quiet": [], "loaded": []} for m in MODES}
    load: list = []
    try:
        for t, observation in enumerate(observations):
            phase = "quiet" if t < args.quiet_steps else "loaded"
            if t == args.quiet_steps and args.cpu_load:
                load = start_cpu_load(args.cpu_load)
                time.sleep(0.5)  # the busy processes are running before the next step
            if t % 50 == 0:
                blind.reset_episode()
                following.reset_episode()
            order = (blind, following) if t % 2 == 0 else (following, blind)  # load hits both alike
            for ctl in order:
                mode = "blind" if ctl is blind else "following"
                records[mode][phase].append(ctl.step(observation)[1])
    finally:
        stop_cpu_load(load)
    result = {"checkpoint": str(args.checkpoint), "budget": args.budget, "deadline_ms": deadline,
              "cpu_load": args.cpu_load,
              "margin_ms": following.drift.margin_ms, "phases": {}}
    print(f"\n{'phase':<26} {'mode':<10} | {'steps over ' + args.budget:>31} | {'p50 ms':>7} {'p99 ms':>7} | "
          f"{'mean exit':>9}")
    for phase, label in (("quiet", "as timed"), ("loaded", f"beside {args.cpu_load} busy process(es)")):
        for mode in MODES:
            f = phase_figures(records[mode][phase], deadline)
            result["phases"].setdefault(phase, {})[mode] = f
            low, high = f["over_ci"]
            print(f"{label:<26} {mode:<10} | {f['over']:4d}/{f['steps']:<4d} {f['over_share']:6.1%} "
                  f"[{low:5.1%}, {high:5.1%}] | {f['p50_ms']:7.2f} {f['p99_ms']:7.2f} | {f['mean_exit']:9.2f}")
    print(f"\ndrift margin the following controller keeps at the end: {following.drift.margin_ms:.2f} ms (p99 over "
          f"its last {following.drift.steps} steps); {time.perf_counter() - t0:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
