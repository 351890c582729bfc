"""Helpers shared by the benches: checkpoints, observations, demonstration splits, statistics, ratios.

Benchmarks compare configurations measured side by side in one run; they
print ratios next to the absolute figures, which depend on the machine.
"""
from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import traceback
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python bench/x.py` from anywhere
    sys.path.insert(0, str(REPO))

from deer_vla.core import LatencyStats, Observation  # noqa: E402
from deer_vla.model.shipped import checkpoint_argument  # noqa: E402

if TYPE_CHECKING:
    from deer_vla.data.episodes import EpisodeDataset


def run_bench(main: Callable[[], int]) -> int:
    """A bench's entry point. Bad input surfaces as ValueError (pydantic's, the datasets', the checkpoints'
    and the budgets' errors are ValueErrors) or OSError (paths): one line naming the script, rc 2, not a
    traceback (DEER_VLA_TRACEBACK=1 shows it). Ctrl-C: rc 130, one line."""
    name = Path(sys.argv[0]).name
    try:
        return main()
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:
        if os.environ.get("DEER_VLA_TRACEBACK"):
            traceback.print_exc()
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{name}: {text}", file=sys.stderr)
        return 2


def output_problem(path: Path | None, create: bool = False) -> str | None:
    """Why a result file cannot be written at ``path`` (None: it can, or no path), asked before the work.
    ``create``: make its folder now (the benches whose default output is under bench_results/)."""
    if path is None:
        return None
    from deer_vla.core.writable import unwritable_dir

    if path.is_dir():
        return f"{path} is a folder; give a file name"
    if not create and not path.parent.is_dir():
        return f"no folder {path.parent} for {path.name}"
    return unwritable_dir(path.parent, create=create)


def check_output(flag: str, path: Path) -> Path:
    """``path``, its folder made and checked writable before the work: ValueError naming ``flag`` otherwise."""
    problem = output_problem(path, create=True)
    if problem:
        raise ValueError(f"{flag}: {problem}")
    return path


def load_cache(path: Path | None, key: np.ndarray) -> dict[str, np.ndarray] | None:
    """The arrays of an npz cache recorded under ``key``; None (recompute) when absent, for another key, or
    unreadable (a run killed while writing it, a full disk): a warning, never the end of the run."""
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path) as z:  # no pickles: a cache is only ever arrays
            if not np.array_equal(z["key"], key):
                return None
            return {name: z[name] for name in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        print(f"warning: cache {path} is unreadable ({type(exc).__name__}: {exc}); recomputing", file=sys.stderr)
        return None


def save_cache(path: Path | None, **arrays: np.ndarray) -> None:
    """Write an npz cache whole or not at all: a temporary file beside it, renamed over it when complete."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a name without it
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_counts(**limits: tuple[float | None, float, float]) -> None:
    """ValueError unless every ``name=(value, low, high)`` is a finite number in [low, high] (None: unset)."""
    for name, (value, low, high) in limits.items():
        if value is None:
            continue
        if not (math.isfinite(value) and low <= value <= high):
            flag = "--" + name.replace("_", "-")
            bounds = ", ".join(str(int(b)) if float(b).is_integer() else f"{b:g}" for b in (low, high))
            raise ValueError(f"{flag} must be a number in [{bounds}], got {value}")


def instruction_check_of(checkpoint: str) -> tuple[Any, Any] | None:
    """The checkpoint's PolicyRunner and the node's InstructionCheck of it, or None (said on stderr) when the
    checkpoint records no trained instructions to compare with."""
    from deer_vla.model.runner import PolicyRunner
    from deer_vla.ros.instruction_check import InstructionCheck

    runner = PolicyRunner.from_checkpoint(checkpoint)
    check = InstructionCheck.for_runner(runner)
    if check.matcher is None:
        print(f"{checkpoint}: {check.why_not}", file=sys.stderr)
        return None
    return runner, check


def checkpoint_option(value: str) -> str:
    """argparse ``type=`` for a bench's --checkpoint: a directory or a shipped name ("mt50"), as a path string."""
    return str(checkpoint_argument(value))


def instructions() -> list[str]:
    """The task suite's training instructions (tokenizer vocabulary and synthetic prompts)."""
    from deer_vla.sim.tasks import TASK_SUITE

    return [text for task in TASK_SUITE.values() for text in task.train_instructions]


def build_random_checkpoint(preset: str, out_dir: Path, seed: int = 0) -> Path:
    """A checkpoint of ``preset`` with random weights: costs do not depend on the weights' values."""
    from deer_vla.model.presets import save_random_checkpoint

    return save_random_checkpoint(out_dir, preset, instructions(), seed)


def checkpoint_config(checkpoint: Path) -> dict:
    """A checkpoint's config as a dict (clear error when it is not a valid checkpoint directory)."""
    from deer_vla.model.checkpoint_dir import CheckpointDir, CheckpointError

    try:
        return CheckpointDir(checkpoint).read_config().model_dump(mode="json")
    except CheckpointError as exc:
        raise ValueError(f"{checkpoint} is not a usable deer_vla checkpoint: {exc}") from None


def synthetic_observations(
    cameras: tuple[str, ...], image_size: int, proprio_dim: int, episodes: int, steps: int, seed: int
) -> list[list[Observation]]:
    """Random-pixel camera frames with suite instructions: the model's cost does not depend on the content."""
    rng = np.random.default_rng(seed)
    texts = instructions()
    out = []
    for _ in range(episodes):
        text = texts[int(rng.integers(len(texts)))]
        episode = []
        for t in range(steps):
            images = {c: rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8) for c in cameras}
            proprio = rng.uniform(-1, 1, proprio_dim).astype(np.float32) if proprio_dim else None
            episode.append(Observation(images=images, instruction=text, proprio=proprio, stamp_ns=t))
        out.append(episode)
    return out


def recorded_observations(
    dataset: Path, cameras: tuple[str, ...], episodes: int, steps: int, skip: int = 0
) -> list[list[Observation]]:
    """Observations of recorded demonstration episodes ``skip .. skip+episodes-1`` (first ``steps`` steps each)."""
    from deer_vla.data.episodes import DatasetError, EpisodeDataset
    from deer_vla.data.observations import episode_observations

    ds = EpisodeDataset(dataset)
    if len(ds) < skip + episodes:
        raise ValueError(f"dataset {dataset} has {len(ds)} episodes; this run needs {skip + episodes}")
    try:
        return [episode_observations(ds.load(i), cameras, max_steps=steps) for i in range(skip, skip + episodes)]
    except DatasetError as exc:
        raise ValueError(str(exc)) from None


def start_cpu_load(n: int) -> list[subprocess.Popen]:
    """n busy processes (pure Python spin loops), one core's worth each."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_cpu_load(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def latency_stats(samples_ms: list[float] | np.ndarray) -> LatencyStats:
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no latency samples")
    q = np.percentile(a, [50, 95, 99])
    return LatencyStats(median_ms=float(q[0]), p95_ms=float(q[1]), p99_ms=float(q[2]), samples=int(a.size))


def ratio(a: float, b: float) -> float:
    """a / b, inf when b is 0 (printed as such, never hidden)."""
    return float("inf") if b == 0 else a / b


def mib(n_bytes: float) -> float:
    return n_bytes / 2**20


def machine_description(device: str) -> str:
    """One line naming the CPU (and GPU) the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    desc = f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    if device.startswith("cuda") and torch.cuda.is_available():
        desc += f", GPU {torch.cuda.get_device_name(torch.device(device))}"
    return desc


def check_device(device: str) -> str:
    """Validate --device (deer_vla.model.device.check_device: the name, CUDA present, the GPU among this
    machine's); ValueError naming the flag."""
    from deer_vla.model.device import check_device as usable_device

    try:
        return usable_device(device)
    except ValueError as exc:
        raise ValueError(f"--device: {exc}") from None


def split_episodes(dataset: Path, tasks: list[str], calib: int, held: int) -> tuple[list[int], list[int]]:
    """Per task, its first ``calib`` episodes for calibration and the next ``held`` for scoring. ValueError when a
    task is absent (naming the tasks present) or has too few episodes."""
    from deer_vla.data.episodes import EpisodeDataset

    ds = EpisodeDataset(dataset)
    a: list[int] = []
    b: list[int] = []
    for task in tasks:
        idx = task_episodes(ds, task)
        if len(idx) < calib + held:
            raise ValueError(f"task {task!r} has {len(idx)} episodes in {dataset}; this run needs {calib + held}")
        a += idx[:calib]
        b += idx[calib:calib + held]
    return a, b


def task_episodes(ds: EpisodeDataset, task: str) -> list[int]:
    """``ds.episodes_for_task(task)``; its KeyError (naming the tasks present) as the ValueError of bad input."""
    try:
        return ds.episodes_for_task(task)
    except KeyError as exc:
        raise ValueError(exc.args[0] if exc.args else f"task {task!r} is not in {ds.root}") from None
