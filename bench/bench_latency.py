"""Per-step latency and energy of the model: full vs each fixed exit vs the dynamic controller, in one run.

Model only (PolicyRunner + ExitController, no ROS; bench_node_latency.py
measures the node on top). Every mode steps through the same observations,
interleaved episode by episode (the order rotates) so that load from other
processes hits all modes alike. The dynamic controller's thresholds are
solved with solve_thresholds_quantile for an average budget on per-exit
actions of the same model on calibration observations disjoint from the
measured ones (synthetic frames, or a recorded dataset with --dataset).
Energy per action (joules) comes from NVML (GPU) / RAPL (CPU) when this
machine exposes them, else the script says it is not available.

It also sets beside each fixed exit's measured steps the worst case a time
budget (peak_ms, a deadline) trusts for that exit, two ways, timed before the
modes run: the model's parts timed alone 10 times (profile_policy; what time
budgets used until 2026-12-06) and 50 whole steps (PolicyRunner.time_steps,
what configure uses now), with the share of this run's steps that took longer.

    .venv/bin/python bench/bench_latency.py --quick
    .venv/bin/python bench/bench_latency.py --checkpoint deer_vla/assets/default_checkpoint --dataset data/demos
    .venv/bin/python bench/bench_latency.py --preset default --device cuda
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    check_device,
    checkpoint_config,
    latency_stats,
    machine_description,
    output_problem,
    ratio,
    recorded_observations,
    run_bench,
    synthetic_observations,
)
from energy import NOT_AVAILABLE, EnergyMeter, detect_meters

from deer_vla.control import BudgetSpec, ExitController, collect_exit_actions, solve_thresholds_quantile
from deer_vla.core import CostProfile, LatencyStats, Observation
from deer_vla.core.writable import path_argument
from deer_vla.model.checkpoint_dir import CheckpointDir
from deer_vla.model.shipped import checkpoint_argument, checkpoint_help


@dataclass
class ModeResult:
    name: str
    latency: LatencyStats
    mean_exit: float
    mean_llm_gflops: float
    mean_total_gflops: float
    joules_per_action: dict[str, float]  # meter name -> J/action (gross)
    joules_per_action_above_idle: dict[str, float]


def average_budget(profile: CostProfile, fraction: float | None, gflops: float | None) -> BudgetSpec:
    """--average-gflops, else exit 2's cost + fraction of the way to the full model's (LLM GFLOPs)."""
    costs = profile.costs("llm_gflops")
    if gflops is not None:
        return BudgetSpec(average_gflops=gflops)
    assert fraction is not None
    low = costs[1] if len(costs) > 1 else costs[0]
    return BudgetSpec(average_gflops=low + fraction * (costs[-1] - low))


def make_controllers(runner, profile: CostProfile, thresholds, budget: BudgetSpec) -> dict[str, ExitController]:
    n = profile.num_exits
    ctls = {"full": ExitController(runner, profile, None, fixed_exit=n)}
    for k in range(1, n):
        ctls[f"exit {k}"] = ExitController(runner, profile, None, fixed_exit=k)
    ctls["dynamic"] = ExitController(runner, profile, thresholds, budget)
    return ctls


def run_episode(ctl: ExitController, episode: list[Observation]) -> list[tuple[float, int, float, float]]:
    """(wall ms, exit used, LLM GFLOPs, total GFLOPs) per step, timed around ExitController.step."""
    ctl.reset_episode()
    out = []
    for obs in episode:
        t0 = time.perf_counter()
        _, rec = ctl.step(obs)
        out.append(((time.perf_counter() - t0) * 1e3, rec.exit_used, rec.llm_gflops, rec.total_gflops))
    return out


def measure_energy(
    ctls: dict[str, ExitController], episodes: list[list[Observation]], meters: list[EnergyMeter], min_seconds: float
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """J/action per mode and meter: each mode runs the episodes back to back for >= min_seconds,
    since energy counters update too coarsely to resolve one step. Also net of the idle power."""
    idle_w: dict[str, float] = {}
    for m in meters:
        m.start()
        time.sleep(min(1.0, min_seconds))
        idle_w[m.name] = m.stop() / min(1.0, min_seconds)
    gross: dict[str, dict[str, float]] = {}
    net: dict[str, dict[str, float]] = {}
    for name, ctl in ctls.items():
        for m in meters:
            m.start()
        t0, steps = time.perf_counter(), 0
        while time.perf_counter() - t0 < min_seconds or steps == 0:
            for ep in episodes:
                steps += len(run_episode(ctl, ep))
        elapsed = time.perf_counter() - t0
        joules = {m.name: m.stop() for m in meters}
        gross[name] = {k: j / steps for k, j in joules.items()}
        net[name] = {k: (j - idle_w[k] * elapsed) / steps for k, j in joules.items()}
    return gross, net


def run(args: argparse.Namespace, checkpoint: Path) -> tuple[list[ModeResult], dict]:
    import torch

    from deer_vla.model.runner import PolicyRunner

    if args.threads:
        torch.set_num_threads(args.threads)
    runner = PolicyRunner.from_checkpoint(checkpoint, device=args.device)
    profile: CostProfile = runner.cost_profile
    cfg = checkpoint_config(checkpoint)
    cameras = tuple(runner.cameras)
    if args.dataset:
        calib = recorded_observations(args.dataset, cameras, args.calib_episodes, args.steps)
        evals = recorded_observations(args.dataset, cameras, args.episodes, args.steps, skip=args.calib_episodes)
    else:
        size, proprio = int(cfg["image_size"]), int(cfg.get("proprio_dim") or 0)
        calib = synthetic_observations(cameras, size, proprio, args.calib_episodes, args.steps, seed=1)
        evals = synthetic_observations(cameras, size, proprio, args.episodes, args.steps, seed=2)
    worst = time_budget_worst_cases(runner)
    exit_actions = collect_exit_actions(runner, calib)
    budget = average_budget(profile, args.budget_fraction, args.average_gflops)
    thresholds = solve_thresholds_quantile(exit_actions, profile, budget)
    ctls = make_controllers(runner, profile, thresholds, budget)
    names = list(ctls)
    for ctl in ctls.values():  # warm-up: allocator, kernels, caches
        for _ in range(args.warmup):
            run_episode(ctl, evals[0][:1])
    rows: dict[str, list[tuple[float, int, float, float]]] = {n: [] for n in names}
    for i, episode in enumerate(evals):
        order = names[i % len(names):] + names[: i % len(names)]
        for name in order:
            rows[name].extend(run_episode(ctls[name], episode))
    meters = detect_meters(args.device)
    gross: dict[str, dict[str, float]] = {n: {} for n in names}
    net: dict[str, dict[str, float]] = {n: {} for n in names}
    if meters:
        gross, net = measure_energy(ctls, evals, meters, args.energy_seconds)
    results = []
    for name in names:
        a = np.asarray(rows[name])
        results.append(ModeResult(
            name=name,
            latency=latency_stats(a[:, 0]),
            mean_exit=float(a[:, 1].mean()),
            mean_llm_gflops=float(a[:, 2].mean()),
            mean_total_gflops=float(a[:, 3].mean()),
            joules_per_action=gross[name],
            joules_per_action_above_idle=net[name],
        ))
    info = {
        "checkpoint": str(checkpoint),
        "device": args.device,
        "machine": machine_description(args.device),
        "exits": profile.num_exits,
        "budget_average_llm_gflops": budget.average_gflops,
        "thresholds": thresholds.values,
        "calibration_expected_llm_gflops": thresholds.expected_cost,
        "calibration_steps": int(exit_actions.shape[0]),
        "observations": "recorded " + str(args.dataset) if args.dataset else "synthetic frames",
        "meters": [m.name for m in meters],
        "time_budget_worst_ms": {name: {"parts_alone": worst["parts"][k - 1], "whole_steps": worst["steps"][k - 1],
                                        "missed_parts_alone": missed(rows[name], worst["parts"][k - 1]),
                                        "missed_whole_steps": missed(rows[name], worst["steps"][k - 1])}
                                 for k, name in fixed_exit_modes(names, profile.num_exits)},
    }
    return results, info


def time_budget_worst_cases(runner) -> dict[str, list[float]]:
    """Each exit's worst-case step time as a time budget would trust it: the parts timed alone, whole steps."""
    from deer_vla.control.budgets import step_worst_ms
    from deer_vla.model.profiling import profile_policy

    parts = profile_policy(runner.model, device=runner.device, warmup=2, iters=10)
    encode, segments, head = runner.time_steps()
    steps = replace(parts, encode_latency=encode, segment_latency=segments, head_latency=head)
    n = runner.num_exits
    return {"parts": [step_worst_ms(parts, k) for k in range(1, n + 1)],
            "steps": [step_worst_ms(steps, k) for k in range(1, n + 1)]}


def fixed_exit_modes(names: list[str], num_exits: int) -> list[tuple[int, str]]:
    return [(int(name.split()[1]), name) for name in names if name.startswith("exit ")] + [(num_exits, "full")]


def missed(rows: list[tuple[float, int, float, float]], worst_ms: float) -> float:
    """The share of steps that took longer than ``worst_ms``."""
    return float(np.mean([r[0] > worst_ms for r in rows])) if rows else 0.0


def report(results: list[ModeResult], info: dict) -> None:
    by = {r.name: r for r in results}
    full, dyn = by["full"], by["dynamic"]
    print(f"machine: {info['machine']}")
    print(f"checkpoint: {info['checkpoint']} ({info['exits']} exits, device {info['device']}, "
          f"observations: {info['observations']})")
    print(f"dynamic: average budget {info['budget_average_llm_gflops']:.4g} LLM GFLOPs, thresholds solved on "
          f"{info['calibration_steps']} calibration steps (expected {info['calibration_expected_llm_gflops']:.4g})")
    print(f"\n== per-step latency, model only (PolicyRunner + ExitController), {full.latency.samples} steps per mode")
    print(f"{'mode':<9} {'mean exit':>9} {'LLM GFLOPs':>10} {'total GFLOPs':>12} {'median ms':>9} {'p95 ms':>8} "
          f"{'p99 ms':>8} | {'full/mode ms':>12} {'full/mode LLM':>13}")
    for r in results:
        s = r.latency
        print(f"{r.name:<9} {r.mean_exit:9.2f} {r.mean_llm_gflops:10.4g} {r.mean_total_gflops:12.4g} "
              f"{s.median_ms:9.3f} {s.p95_ms:8.3f} {s.p99_ms:8.3f} | "
              f"{ratio(full.latency.median_ms, s.median_ms):11.2f}x "
              f"{ratio(full.mean_llm_gflops, r.mean_llm_gflops):12.2f}x")
    print(f"\nratio full/dynamic: latency median {ratio(full.latency.median_ms, dyn.latency.median_ms):.2f}x, "
          f"p95 {ratio(full.latency.p95_ms, dyn.latency.p95_ms):.2f}x, "
          f"p99 {ratio(full.latency.p99_ms, dyn.latency.p99_ms):.2f}x; "
          f"LLM GFLOPs {ratio(full.mean_llm_gflops, dyn.mean_llm_gflops):.2f}x; "
          f"total GFLOPs {ratio(full.mean_total_gflops, dyn.mean_total_gflops):.2f}x")
    fixed = [r for r in results if r.name.startswith("exit ")]
    print("ratio full/exit-k (median latency): "
          + ", ".join(f"{r.name} {ratio(full.latency.median_ms, r.latency.median_ms):.2f}x" for r in fixed))
    print("\n== the worst case a time budget (peak_ms, deadline) trusts per exit, against this run's steps")
    print(f"{'mode':<9} {'parts alone ms':>14} {'whole steps ms':>14} {'p99 here ms':>11} | steps over: "
          f"{'parts':>6} {'whole':>6}")
    by_name = {r.name: r for r in results}
    for name, w in info["time_budget_worst_ms"].items():
        print(f"{name:<9} {w['parts_alone']:14.3f} {w['whole_steps']:14.3f} {by_name[name].latency.p99_ms:11.3f} | "
              f"{'':11}{w['missed_parts_alone']:6.1%} {w['missed_whole_steps']:6.1%}")
    if not info["meters"]:
        print(NOT_AVAILABLE)
        return
    for meter in info["meters"]:
        f, d = full.joules_per_action[meter], dyn.joules_per_action[meter]
        fn, dn = full.joules_per_action_above_idle[meter], dyn.joules_per_action_above_idle[meter]
        print(f"energy ({meter}): full {f:.4g} J/action, dynamic {d:.4g} J/action, ratio full/dynamic "
              f"{ratio(f, d):.2f}x; above idle: full {fn:.4g}, dynamic {dn:.4g} J/action, ratio {ratio(fn, dn):.2f}x")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="tiny preset, 3 calibration + 4 measured episodes of 8 steps, 0.5 s energy runs")
    p.add_argument("--preset", default=None, choices=("tiny", "default", "1b", "mpt1b"),
                   help='model preset for the random checkpoint ("tiny", "default", "1b", "mpt1b")')
    p.add_argument("--checkpoint", type=checkpoint_argument, default=None,
                   help=checkpoint_help("a real checkpoint instead of random weights", default=None))
    p.add_argument("--dataset", type=path_argument, default=None,
                   help="recorded episodes for calibration and measurement")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--episodes", type=int, default=None, help="measured episodes (default 20, quick 4)")
    p.add_argument("--calib-episodes", type=int, default=None, help="calibration episodes (default 10, quick 3)")
    p.add_argument("--steps", type=int, default=None, help="steps per episode (default 25, quick 8)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up steps per mode")
    p.add_argument("--budget-fraction", type=float, default=0.3,
                   help="average budget between exit 2's cost (0) and the full model's (1)")
    p.add_argument("--average-gflops", type=float, default=None, help="average LLM GFLOPs budget (overrides fraction)")
    p.add_argument("--energy-seconds", type=float, default=None, help="minimum run per mode for energy (default 5)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: stable figures on a shared CPU; 0 = torch's default)")
    p.add_argument("--json", type=path_argument, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    q = args.quick
    args.preset = args.preset or ("tiny" if q else "default")
    # None = the default; an explicit 0 is refused below, not turned into the default
    args.episodes = (4 if q else 20) if args.episodes is None else args.episodes
    args.calib_episodes = (3 if q else 10) if args.calib_episodes is None else args.calib_episodes
    args.steps = (8 if q else 25) if args.steps is None else args.steps
    args.energy_seconds = (0.5 if q else 5.0) if args.energy_seconds is None else args.energy_seconds
    # the observations are made up front: bounded so that a typo cannot fill the memory (1000 x 1000 frames
    # of two 64 px cameras are ~25 GB)
    for name in ("episodes", "calib_episodes", "steps"):
        if not 1 <= getattr(args, name) <= 1000:
            p.error(f"--{name.replace('_', '-')} must be in 1..1000, got {getattr(args, name)}")
    if (args.episodes + args.calib_episodes) * args.steps > 100_000:
        p.error(f"(--episodes + --calib-episodes) x --steps must be at most 100000 observations, got "
                f"{(args.episodes + args.calib_episodes) * args.steps}")
    if not 0 <= args.threads <= 1024:  # torch takes a C int (10**30 was an overflow traceback)
        p.error(f"--threads must be in 0..1024 (0: torch's default), got {args.threads}")
    if args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    if not 0.0 <= args.budget_fraction <= 1.0:
        p.error(f"--budget-fraction must be in [0, 1], got {args.budget_fraction}")
    if args.average_gflops is not None and not 0 < args.average_gflops < math.inf:
        p.error(f"--average-gflops must be a number > 0, got {args.average_gflops}")
    if not 0 < args.energy_seconds <= 3600:
        p.error(f"--energy-seconds must be in (0, 3600], got {args.energy_seconds}")
    problem = output_problem(args.json)
    if problem:  # now, not after the measurement
        p.error(f"--json: {problem}")
    if args.checkpoint is not None and not CheckpointDir(args.checkpoint).exists():
        p.error(f"--checkpoint {args.checkpoint} is not a checkpoint directory (no {CheckpointDir.CONFIG})")
    check_device(args.device)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.checkpoint is None:
            from common import build_random_checkpoint

            checkpoint = build_random_checkpoint(args.preset, Path(tmp) / args.preset)
        else:
            checkpoint = args.checkpoint
        results, info = run(args, checkpoint)
    report(results, info)
    print(f"wall time {time.perf_counter() - t0:.1f} s")
    if args.json:
        args.json.write_text(json.dumps({"info": info, "modes": [asdict(r) for r in results]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
