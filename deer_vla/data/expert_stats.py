"""Measure the scripted experts: success rate, episode length, step and render cost per task.

The rollouts are the collector's own (same per-(task, seed) noise and
paraphrase), without cameras, so seed s here has the outcome it has in
`deer-vla collect`; render cost is timed on a few extra episodes with cameras.

    python -m deer_vla.data.expert_stats --tasks all --seeds 100 --action-noise 0.1
    python -m deer_vla.data.expert_stats --tasks shared --seeds 100 --action-noise 0.1   # shared starts
    python -m deer_vla.data.expert_stats --tasks mt50 --seeds 100 --max-steps 500 --render-episodes 0   # MT50
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from deer_vla.core.atomic_file import atomic_write_text
from deer_vla.core.writable import path_argument


def measure_task(task: str, seeds: range, noise: float, render_episodes: int, image_size: int,
                 max_steps: int | None = None) -> dict[str, Any]:
    """``max_steps`` None = the task's own limit; 500 (Meta-World's) measures the expert's whole length tail."""
    from deer_vla.data.collect import rollout_episode
    from deer_vla.sim.metaworld_env import MetaWorldAdapter

    lengths, successes = [], []
    with MetaWorldAdapter(task, cameras=(), max_steps=max_steps) as adapter:
        t0 = time.perf_counter()
        for s in seeds:
            ep = rollout_episode(adapter, s, noise)
            lengths.append(ep.length)
            successes.append(ep.success)
        step_ms = 1000 * (time.perf_counter() - t0) / max(1, sum(lengths))
    render_ms = None
    if render_episodes > 0:
        with MetaWorldAdapter(task, image_size=image_size, max_steps=max_steps) as adapter:
            for s in list(seeds)[:render_episodes]:
                rollout_episode(adapter, s, noise)
            render_ms = adapter.render_ms_per_frame
    ok = [n for n, good in zip(lengths, successes) if good]
    return {
        "task": task,
        "episodes": len(lengths),
        "successes": int(sum(successes)),
        "success_rate": float(np.mean(successes)),
        "failed_seeds": [s for s, good in zip(seeds, successes) if not good],
        "mean_length": float(np.mean(ok)) if ok else None,
        "max_length": int(max(ok)) if ok else None,
        "step_ms_no_render": step_ms,
        "render_ms_per_frame": render_ms,
    }


def render_benchmark(task: str, image_size: int, frames: int) -> dict[str, float]:
    """Median / p95 ms of one frame per camera slot, rendering a fixed scene in a tight loop."""
    from deer_vla.sim.metaworld_env import MetaWorldAdapter

    out: dict[str, float] = {}
    with MetaWorldAdapter(task, image_size=image_size) as adapter:
        adapter.reset(seed=0)
        for cam in adapter.cameras:
            adapter.render(cam)  # warm-up: first frame uploads textures
            times = []
            for _ in range(frames):
                t0 = time.perf_counter()
                adapter.render(cam)
                times.append(1000 * (time.perf_counter() - t0))
            out[f"{cam}_median_ms"] = float(np.median(times))
            out[f"{cam}_p95_ms"] = float(np.percentile(times, 95))
    return out


def cli_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deer_vla.data.expert_stats", description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="all",
                   help="comma list of task names and groups ('all', 'shared', 'all+shared', 'mt50', 'mt50-easy', ...)")
    p.add_argument("--seeds", type=int, default=100, help="episodes per task (seeds --seed ..)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--action-noise", type=float, default=0.1)
    p.add_argument("--render-episodes", type=int, default=2, help="episodes per task timed with both cameras")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--max-steps", type=int, default=None,
                   help="episode limit (default: each task's own; 500 = Meta-World's, to size a new task's limit)")
    p.add_argument("--render-bench", type=int, default=0, metavar="FRAMES",
                   help="only time FRAMES renders per camera of the first task at --image-size")
    p.add_argument("--json", type=path_argument, default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    from deer_vla.sim.tasks import resolve_tasks

    try:
        tasks = resolve_tasks(args.tasks)
        if args.seeds < 1 or args.seed < 0 or not 0 <= args.action_noise <= 1:
            raise ValueError(f"need --seeds >= 1, --seed >= 0, --action-noise in [0, 1]; got {args.seeds}, "
                             f"{args.seed}, {args.action_noise}")
        if args.max_steps is not None and not 1 <= args.max_steps <= 500:
            raise ValueError(f"--max-steps must be in 1..500 (Meta-World's episode limit), got {args.max_steps}")
    except (KeyError, ValueError) as e:
        print(f"expert_stats: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    if args.render_bench > 0:
        bench = render_benchmark(tasks[0].name, args.image_size, args.render_bench)
        print(f"{tasks[0].name} {args.image_size}x{args.image_size}: "
              + ", ".join(f"{k} {v:.2f}" for k, v in bench.items()))
        return 0
    rows = []
    print(f"{'task':26s} success  mean len  max len  step ms  render ms/frame")
    for t in tasks:
        r = measure_task(t.name, range(args.seed, args.seed + args.seeds), args.action_noise, args.render_episodes,
                         args.image_size, args.max_steps)
        rows.append(r)
        render = f"{r['render_ms_per_frame']:.1f}" if r["render_ms_per_frame"] is not None else "-"
        print(f"{t.name:26s} {r['success_rate']:7.0%}  {r['mean_length'] or 0:8.1f}  {r['max_length'] or 0:7d}  "
              f"{r['step_ms_no_render']:7.2f}  {render}", flush=True)
    if args.json:
        try:
            atomic_write_text(args.json, json.dumps(rows, indent=2))
        except OSError as exc:  # the table above is the run's result: say where it could not go
            print(f"expert-stats: cannot write --json {args.json}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
