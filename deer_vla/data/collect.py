"""`deer-vla collect`: roll out Meta-World's scripted experts and record demonstrations.

Each episode is one (task, seed): the seed fixes the scene, the exploration
noise and the instruction paraphrase, so a re-run records the same episode.
At every step the expert's clean action is the label (``actions``) while
label + N(0, sigma^2) noise, clipped, is what is applied (``actions_executed``):
the noise spreads the visited states, the labels show how to recover
(DART-style). Only successful episodes are stored (meta ``success_only``);
a failed seed is logged in ``failures.jsonl`` and replaced by the next seed.
Re-running with the same arguments resumes: seeds already on disk or logged
as failed are skipped.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import time
import zlib
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from deer_vla.core.atomic_file import atomic_write_text
from deer_vla.core.config_io import MAX_WORKERS
from deer_vla.core.json_text import parse_json
from deer_vla.core.writable import BLANK_PATH, path_argument
from deer_vla.sim.simulator_cache import SimulatorCache
from deer_vla.sim.tasks import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

log = logging.getLogger(__name__)

FAILURES_FILE = "failures.jsonl"
STATS_FILE = "collect_stats.json"
KNOWN_CAMERAS = ("static", "wrist", "topview", "corner", "corner2", "corner3", "corner4", "behindGripper",
                 "gripperPOV")


@dataclass(frozen=True)
class CollectConfig:
    tasks: tuple[str, ...]
    episodes_per_task: int
    out: str
    image_size: int = 64
    cameras: tuple[str, ...] = ("static", "wrist")
    workers: int = 2
    seed: int = 0
    action_noise: float = 0.1
    max_steps: int | None = None  # None: each task's own limit
    max_attempts_factor: float = 3.0  # give up on a task after factor * N + 10 seeds

    def __post_init__(self) -> None:
        from deer_vla.data.episodes import MAX_EPISODE_SEED

        problems = []
        if str(self.out) == "":
            problems.append(f"--out is {BLANK_PATH}")
        if not self.tasks:
            problems.append("no tasks")
        if self.episodes_per_task < 1:
            problems.append(f"--episodes-per-task must be >= 1, got {self.episodes_per_task}")
        if not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            problems.append(f"--image-size must be in {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE}, got {self.image_size}")
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            problems.append(f"--cameras must be a non-empty list without repeats, got {list(self.cameras)}")
        unknown = [c for c in self.cameras if c not in KNOWN_CAMERAS]
        if unknown:
            problems.append(f"unknown camera(s) {unknown}; choose from {', '.join(KNOWN_CAMERAS)}")
        if not 1 <= self.workers <= MAX_WORKERS:
            problems.append(f"--workers must be in 1..{MAX_WORKERS}, got {self.workers}")
        if self.seed < 0:
            problems.append(f"--seed must be >= 0, got {self.seed}")
        if not (math.isfinite(self.action_noise) and 0 <= self.action_noise <= 1):
            problems.append(f"--action-noise must be in [0, 1], got {self.action_noise}")
        if self.max_steps is not None and not 1 <= self.max_steps <= 500:
            problems.append(f"--max-steps must be in 1..500, got {self.max_steps}")
        if not 1 <= self.max_attempts_factor <= 1000:  # inf: an OverflowError counting the attempts
            problems.append(f"--max-attempts-factor must be in [1, 1000], got {self.max_attempts_factor}")
        elif self.seed >= 0 and self.episodes_per_task >= 1 and \
                self.seed + self.max_attempts - 1 > MAX_EPISODE_SEED:
            # seeds no episode file can be named by: 10^9 episodes looked for 3*10^9 files first, for ever
            problems.append(f"--seed {self.seed} with --episodes-per-task {self.episodes_per_task} may try seeds up "
                            f"to {self.seed + self.max_attempts - 1} ({self.max_attempts_factor:g} x the episodes + "
                            f"10), past the {MAX_EPISODE_SEED} an episode file's name holds")
        if problems:
            raise ValueError("invalid collect configuration: " + "; ".join(problems))

    @property
    def max_attempts(self) -> int:
        return int(self.max_attempts_factor * self.episodes_per_task) + 10


@dataclass
class EpisodeOutcome:
    task: str
    seed: int
    success: bool
    length: int
    instruction: str
    render_ms: float  # mean wall time per camera frame in this episode
    wall_s: float
    written: bool


# --- worker side -------------------------------------------------------------------------------

_WRITER: dict[str, Any] = {}
# Simulators a worker keeps (each MuJoCo model + renderer is ~0.2 GB): all ten of the default suite, while
# the 50-task suite no longer grows a worker to ~9 GB (jobs go round-robin over tasks).
MAX_CACHED_SIMULATORS = 10
_SIMULATORS = SimulatorCache(MAX_CACHED_SIMULATORS)  # this worker process's, by task


def _worker_init(out: str, meta_dict: dict[str, Any]) -> None:
    # One core per worker: no BLAS/llvmpipe thread fan-out on a shared machine.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("LP_NUM_THREADS", "1")
    from deer_vla.core.parent_watch import exit_with_parent
    from deer_vla.data.episodes import DatasetMeta, EpisodeWriter

    exit_with_parent()  # a killed collector must not leave its workers (and their simulators) behind
    # Ctrl-C reaches the whole process group: the parent answers it (cancels what has not started) and each
    # worker finishes and writes the episode it is on, instead of dying mid-episode with a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WRITER["w"] = EpisodeWriter(out, DatasetMeta.from_dict(meta_dict))


def episode_rng(task: str, seed: int) -> np.random.Generator:
    """The generator for one episode's noise and paraphrase, fixed by (task, seed)."""
    return np.random.default_rng([int(seed), zlib.crc32(task.encode())])


def rollout_episode(adapter: Any, seed: int, noise: float) -> Any:
    """One expert episode on ``adapter`` -> Episode (success recorded, not filtered)."""
    from deer_vla.data.episodes import Episode

    task = adapter.task
    rng = episode_rng(task.name, seed)
    instruction = str(rng.choice(list(task.train_instructions)))
    obs = adapter.reset(seed=seed, instruction=instruction)
    frames: dict[str, list[np.ndarray]] = {c: [] for c in adapter.cameras}
    proprio, labels, executed = [], [], []
    while True:
        label = adapter.expert_action()
        applied = np.clip(label + rng.normal(0.0, noise, size=label.shape), -1.0, 1.0) if noise > 0 else label
        for c in adapter.cameras:
            frames[c].append(obs.images[c])
        proprio.append(obs.proprio)
        labels.append(label)
        executed.append(applied)
        result = adapter.step(applied)
        obs = result.observation
        if result.done:
            break
    return Episode(
        task=task.name,
        instruction=instruction,
        seed=int(seed),
        success=bool(result.success),
        images={c: np.stack(v) for c, v in frames.items()},
        proprio=np.stack(proprio).astype(np.float32),
        actions=np.stack(labels).astype(np.float32),
        actions_executed=np.stack(executed).astype(np.float32),
    )


def _cached_adapter(task: str, image_size: int, cameras: tuple[str, ...], max_steps: int | None) -> Any:
    """This worker's simulator for ``task``; the least recently used one is closed beyond the cache size."""
    from deer_vla.sim.metaworld_env import MetaWorldAdapter

    return _SIMULATORS.get(task, lambda: MetaWorldAdapter(task, image_size=image_size, cameras=cameras,
                                                          max_steps=max_steps))


def _collect_one(job: tuple[str, int, float, int, tuple[str, ...], int | None]) -> EpisodeOutcome:
    task, seed, noise, image_size, cameras, max_steps = job
    t0 = time.perf_counter()
    adapter = _cached_adapter(task, image_size, cameras, max_steps)
    r_s, r_n = adapter.render_counters
    ep = rollout_episode(adapter, seed, noise)
    r_s2, r_n2 = adapter.render_counters
    render_ms = 1000.0 * (r_s2 - r_s) / max(1, r_n2 - r_n)
    written = False
    if ep.success:  # success-only dataset; failures are logged by the main process
        _WRITER["w"].write(ep)
        written = True
    return EpisodeOutcome(task, seed, ep.success, ep.length, ep.instruction, render_ms, time.perf_counter() - t0,
                          written)


# --- main side ---------------------------------------------------------------------------------


# Ctrl-C: how long the workers may take to finish the episode they are on (and write it) before they are stopped
STOP_GRACE_S = 30.0


def _stop_pool(pool: ProcessPoolExecutor, grace_s: float) -> None:
    """Stop ``pool`` without waiting on its management thread: a KeyboardInterrupt that lands inside
    concurrent.futures (in wait() or submit()) can leave it waiting for workers that wait for jobs, and the
    with-statement's shutdown(wait=True) then hung the parent for good (1 Ctrl-C in 6). The workers ignore
    SIGINT and finish their episode within ``grace_s``; any still alive then is terminated."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + grace_s
    for proc in processes:
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5.0)


def _read_failures(root: Path, max_steps: int | None) -> set[tuple[str, int]]:
    """(task, seed) of the seeds whose expert failed under this step limit: a seed cut short by a smaller
    ``--max-steps`` may succeed under a larger one (a record from before limits were written counts)."""
    path = root / FAILURES_FILE
    out: set[tuple[str, int]] = set()
    if not path.is_file():
        return out
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = parse_json(line)
            if "max_steps" in rec and rec["max_steps"] != max_steps:
                continue
            out.add((str(rec["task"]), int(rec["seed"])))
        except (KeyError, TypeError, ValueError):  # JsonTextError is a ValueError (RecursionError within it)
            log.warning("%s line %d is malformed; ignored", path, n)  # a killed run may cut the last line
    return out


def collect(cfg: CollectConfig, progress: bool = True) -> dict[str, Any]:
    """Collect until every task has ``episodes_per_task`` successful episodes on disk; return statistics."""
    from tqdm import tqdm

    from deer_vla.data.episodes import DatasetMeta, EpisodeDataset, EpisodeWriter, remove_stale_tmp
    from deer_vla.sim.metaworld_env import ACTION_SPEC, CAMERA_ALIASES, PROPRIO_DIM, PROPRIO_SPEC
    from deer_vla.sim.tasks import get_task

    tasks = [get_task(t) for t in cfg.tasks]
    root = Path(cfg.out)
    import metaworld

    meta = DatasetMeta(
        cameras=cfg.cameras,
        image_size=cfg.image_size,
        action_spec=ACTION_SPEC.to_dict(),
        proprio_dim=PROPRIO_DIM,
        proprio_spec=PROPRIO_SPEC.to_dict(),
        tasks=[t.name for t in tasks],
        success_only=True,
        collection={
            "simulator": f"metaworld {getattr(metaworld, '__version__', '?')} (v3, goal-observable)",
            "expert": "metaworld.policies scripted experts",
            "camera_map": {c: CAMERA_ALIASES.get(c, c) for c in cfg.cameras},
            "action_noise": cfg.action_noise,
            "seed": cfg.seed,
            "labels": "actions = expert action at the recorded state; actions_executed = label + noise, clipped",
        },
    )
    writer = EpisodeWriter(root, meta)
    for p in remove_stale_tmp(root):
        log.info("removed a stale temporary file from a killed run: %s", p)
    failed = _read_failures(root, cfg.max_steps)
    # Per task: seeds to try in order, skipping those on disk (done) or logged as failed.
    have = {t.name: 0 for t in tasks}
    queues: dict[str, list[int]] = {}
    attempts_left: dict[str, int] = {}
    for t in tasks:
        seeds = range(cfg.seed, cfg.seed + cfg.max_attempts)
        have[t.name] = sum(writer.exists(t.name, s) for s in seeds)
        prior_fail = sum((t.name, s) in failed for s in seeds)
        queues[t.name] = [s for s in seeds if not writer.exists(t.name, s) and (t.name, s) not in failed]
        attempts_left[t.name] = cfg.max_attempts - have[t.name] - prior_fail
    target = cfg.episodes_per_task
    stats: dict[str, dict[str, Any]] = {
        t.name: {"attempts": 0, "successes": 0, "lengths": [], "render_ms": [], "wall_s": 0.0} for t in tasks
    }
    total = target * len(tasks)
    already = sum(min(h, target) for h in have.values())
    t_start = time.perf_counter()
    ctx = get_context("spawn")
    bar = tqdm(total=total, initial=already, desc="collect", unit="ep", disable=not progress, dynamic_ncols=True)
    job_args = (cfg.action_noise, cfg.image_size, cfg.cameras, cfg.max_steps)
    pending: dict[Future, str] = {}
    in_flight = {t.name: 0 for t in tasks}
    pool = ProcessPoolExecutor(cfg.workers, mp_context=ctx, initializer=_worker_init,
                               initargs=(str(root), writer.meta.to_dict()))

    def top_up() -> None:
        # Round-robin over tasks so a stopped run leaves a balanced dataset.
        progressed = True
        while progressed and len(pending) < 4 * cfg.workers:
            progressed = False
            for t in tasks:
                name = t.name
                if have[name] + in_flight[name] < target and queues[name] and attempts_left[name] > 0:
                    seed = queues[name].pop(0)
                    attempts_left[name] -= 1
                    in_flight[name] += 1
                    pending[pool.submit(_collect_one, (name, seed, *job_args))] = name
                    progressed = True

    try:
        top_up()
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                name = pending.pop(fut)
                in_flight[name] -= 1
                res: EpisodeOutcome = fut.result()
                s = stats[name]
                s["attempts"] += 1
                s["lengths"].append(res.length)
                s["render_ms"].append(res.render_ms)
                s["wall_s"] += res.wall_s
                if res.success:
                    s["successes"] += 1
                    have[name] += 1
                    bar.update(1)
                else:
                    with open(root / FAILURES_FILE, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps({"task": name, "seed": res.seed, "length": res.length,
                                             "max_steps": cfg.max_steps}) + "\n")
                bar.set_postfix(fail=sum(v["attempts"] - v["successes"] for v in stats.values()))
            top_up()
    except BaseException:
        for fut in pending:
            fut.cancel()
        _stop_pool(pool, STOP_GRACE_S)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        bar.close()
    wall = time.perf_counter() - t_start
    short = {n: h for n, h in have.items() if h < target}
    summary = EpisodeDataset(root).verify()
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    report = {
        "config": {**asdict(cfg), "tasks": list(cfg.tasks), "cameras": list(cfg.cameras)},
        "wall_s": wall,
        "dataset_bytes": size,
        "verify": summary,
        "short_tasks": short,
        "per_task": {
            n: {
                "attempts": s["attempts"],
                "successes": s["successes"],
                "success_rate": s["successes"] / s["attempts"] if s["attempts"] else None,
                "mean_length": float(np.mean(s["lengths"])) if s["lengths"] else None,
                "render_ms_per_frame": float(np.mean(s["render_ms"])) if s["render_ms"] else None,
                "episode_wall_s": s["wall_s"] / s["attempts"] if s["attempts"] else None,
            }
            for n, s in stats.items()
        },
    }
    atomic_write_text(root / STATS_FILE, json.dumps(report, indent=2) + "\n")
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deer-vla collect", description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default=None,
                   help="comma list of task names and groups: 'all' (the ten suite tasks, the default), 'shared' "
                        "(the six shared-start tasks), 'all+shared', 'mt50', 'mt50-easy', ...")
    p.add_argument("--suite", default=None, help="a named suite instead of --tasks: 'default' or 'mt50'")
    p.add_argument("--episodes-per-task", type=int, default=40, help="successful episodes to record per task")
    p.add_argument("--out", type=path_argument, required=True,
                   help="dataset root directory (created; resumed if it exists)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--cameras", default="static,wrist", help="comma list of camera slots")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--seed", type=int, default=0, help="first episode seed of every task")
    p.add_argument("--action-noise", type=float, default=0.1, help="std of Gaussian noise on applied actions")
    p.add_argument("--max-steps", type=int, default=None, help="episode limit (default: per task)")
    p.add_argument("--max-attempts-factor", type=float, default=3.0,
                   help="give up on a task after factor * N + 10 seeds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def cli_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from deer_vla.sim.tasks import resolve_tasks, tasks_arg

    try:
        tasks = resolve_tasks(tasks_arg(args.suite, args.tasks))
        cfg = CollectConfig(
            tasks=tuple(t.name for t in tasks),
            episodes_per_task=args.episodes_per_task,
            out=str(args.out),
            image_size=args.image_size,
            cameras=tuple(c.strip() for c in args.cameras.split(",") if c.strip()),
            workers=args.workers,
            seed=args.seed,
            action_noise=args.action_noise,
            max_steps=args.max_steps,
            max_attempts_factor=args.max_attempts_factor,
        )
    except (KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"deer-vla collect: {msg}", file=sys.stderr)
        return 2
    from deer_vla.data.episodes import DatasetError, DatasetWriteError

    try:
        report = collect(cfg, progress=not args.no_progress)
    except DatasetWriteError as e:  # disk full mid-run: every episode written before is whole
        print(f"deer-vla collect: {e}; the episodes written before it are kept: the same command goes on "
              "from them", file=sys.stderr)
        return 1
    except DatasetError as e:  # an existing --out of another setup, or a bad file found by verify()
        print(f"deer-vla collect: {e}", file=sys.stderr)
        return 2
    v = report["verify"]
    print(f"collected into {cfg.out}: {v['episodes']} episodes, {v['steps']} steps, "
          f"{report['dataset_bytes'] / 2**20:.1f} MiB, {report['wall_s']:.0f} s (verified)")
    for name, s in report["per_task"].items():
        if s["attempts"]:
            print(f"  {name:26s} success {s['successes']}/{s['attempts']}  mean length {s['mean_length']:.0f}  "
                  f"render {s['render_ms_per_frame']:.1f} ms/frame")
    if report["short_tasks"]:
        print(f"deer-vla collect: too many failed seeds, short of {cfg.episodes_per_task} episodes for "
              f"{report['short_tasks']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
