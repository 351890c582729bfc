"""Training speed of a recipe on this machine: optimizer steps per second of the real Trainer, per batch size.

How long would `deer-vla train --config config/train_mt50.yaml` take here (CPU threads, or a GPU)? The
Trainer runs its own loop (data windows, shift augmentation, the DeeR objective, bf16 autocast on CUDA when
the recipe says `amp`, AdamW, clipping) on a synthetic dataset of the recipe model's shape (cameras, image
size, proprio), one episode per MT50 task, so no simulator or recorded data is needed. Speed does not
depend on the frames' content; the data loader's cost is included, as in a real run. The first `--warmup`
steps (allocation, autotuning) are not counted. With `--num-workers N` the batches are built by N DataLoader
worker processes, whose start-up is timed as it is at every epoch of a real run.

    .venv/bin/python bench/bench_train_speed.py --quick
    .venv/bin/python bench/bench_train_speed.py --config config/train_mt50.yaml --steps 30 --threads 1
    python bench/bench_train_speed.py --config config/train_mt50.yaml --device cuda --batch-sizes 8,64,256
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from common import check_device, machine_description, output_problem, run_bench

from deer_vla.core.writable import path_argument

if TYPE_CHECKING:
    from deer_vla.train.trainer import Trainer


def _int_list(low: int, high: int | None, want: str) -> Callable[[str], list[int]]:
    """An argparse type: comma-separated integers in low..high (no upper bound if None); ``want`` words the
    refusal."""
    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
        if not values or min(values) < low or (high is not None and max(values) > high):
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}")
        return values
    return parse


def _data_ms_per_batch(trainer: Trainer, steps: int) -> float:
    """The trainer's own batch stream alone (windows, augmentation, tokenized instructions, collation), as the
    row's num_workers builds it (0: in the training process): how much of a step the host's data work is."""
    it = trainer.batch_stream(0)
    next(it)
    n = max(2, min(steps, 10))
    t0 = time.perf_counter()
    for _ in range(n):
        next(it)
    return (time.perf_counter() - t0) / n * 1e3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: batch 2, 1 + 3 steps, 12-step episodes")
    p.add_argument("--config", type=path_argument, default=Path("config/train_mt50.yaml"),
                   help="training recipe (YAML)")
    p.add_argument("--init-checkpoint", default="default",
                   help="checkpoint the recipe starts from (a shipped name or a folder; the recipe's own "
                        "init_checkpoint is a run folder of an earlier stage)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch-sizes", type=_int_list(1, None, "integers >= 1"), default=[8],
                   help="comma-separated, e.g. 8,64")
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps per batch size")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    p.add_argument("--episode-length", type=int, default=80, help="steps per synthetic episode (MT50 mean: 81)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--num-workers", type=_int_list(0, 64, "worker counts in 0..64"), default=[0],
                   help="DataLoader worker processes, comma-separated (e.g. 0,4): a row per batch size and count; "
                        "0, every recipe's, builds the batches in the training process")
    p.add_argument("--json", type=path_argument, default=None, help="also write the figures here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.batch_sizes, args.steps, args.warmup, args.episode_length = [2], 3, 1, 12
    # bounded above too: synthetic frames of 50 episodes x 2000 steps are already ~2.5 GB at 64 px
    if not (1 <= args.steps <= 100_000 and 0 <= args.warmup <= 10_000 and 12 <= args.episode_length <= 2000
            and 1 <= args.threads <= 256 and max(args.batch_sizes) <= 4096):
        print("bench_train_speed: want 1 <= --steps <= 100000, 0 <= --warmup <= 10000, 12 <= --episode-length "
              "<= 2000, 1 <= --threads <= 256 and batch sizes <= 4096", file=sys.stderr)
        return 2
    check_device(args.device)
    problem = output_problem(args.json)
    if problem:  # now, not after the training steps
        print(f"bench_train_speed: --json: {problem}", file=sys.stderr)
        return 2
    if not args.config.is_file():
        print(f"bench_train_speed: no recipe at {args.config}", file=sys.stderr)
        return 2
    import torch

    from deer_vla.model.checkpoint_dir import CheckpointDir
    from deer_vla.model.shipped import resolve_checkpoint
    from deer_vla.sim.mt50 import MT50_TASKS
    from deer_vla.train.config import load_config
    from deer_vla.train.synthetic import write_tiny_dataset
    from deer_vla.train.trainer import Trainer

    torch.set_num_threads(args.threads)
    try:
        init = resolve_checkpoint(args.init_checkpoint)
        pcfg = CheckpointDir(init).check()
    except ValueError as exc:  # CheckpointError and UnknownCheckpointError are ValueErrors
        print(f"bench_train_speed: --init-checkpoint: {exc}", file=sys.stderr)
        return 2
    tasks = tuple(MT50_TASKS)
    try:
        recipe = load_config(args.config, [f"init_checkpoint={init}"])
    except ValueError as exc:  # ConfigError: the recipe's file or values
        print(f"bench_train_speed: {exc}", file=sys.stderr)
        return 2
    recipe_steps = int(recipe.joint.steps) + int(recipe.refine.steps)
    rows = []
    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        data = write_tiny_dataset(Path(tmp) / "data", tuple(pcfg.cameras), int(pcfg.image_size),
                                  int(pcfg.proprio_dim), pcfg.action_spec.to_dict(), tasks=tasks,
                                  length=args.episode_length)
        for batch, workers in itertools.product(args.batch_sizes, args.num_workers):
            total = args.warmup + args.steps
            cfg = load_config(args.config, [
                f"init_checkpoint={init}", f"dataset={data}", f"output_dir={Path(tmp) / f'run{batch}_{workers}'}",
                f"batch_size={batch}", f"joint.steps={total}", "joint.warmup_steps=0", "refine.steps=0",
                f"checkpoint_every={total + 1}", "log_every=1", f"device={args.device}",
                f"num_threads={args.threads}", f"num_workers={workers}",
            ])
            trainer = Trainer(cfg, show_progress=False)
            data_ms = _data_ms_per_batch(trainer, args.steps)
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            trainer.train(stop_at=args.warmup)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            trainer.train()  # the loss is read every step (logging), so each step ends synchronised
            seconds = time.perf_counter() - t0
            row = {"batch_size": batch, "num_workers": workers, "window": cfg.window, "steps": args.steps,
                   "seconds": seconds,
                   "steps_per_s": args.steps / seconds, "windows_per_s": args.steps * batch / seconds,
                   "amp_bf16": bool(cfg.amp and args.device.startswith("cuda")), "data_ms_per_batch": data_ms}
            if args.device.startswith("cuda"):
                row["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
            rows.append(row)
            print(f"batch {batch:>4} x window {cfg.window}, {workers} data workers: "
                  f"{row['steps_per_s']:8.2f} steps/s "
                  f"({row['windows_per_s']:9.1f} windows/s)"
                  + (f", peak GPU memory {row['peak_gpu_mib']:.0f} MiB" if "peak_gpu_mib" in row else "")
                  + f"; data windows alone {data_ms:.1f} ms of its {1e3 / row['steps_per_s']:.1f} ms per step"
                  + f"; the recipe's {recipe_steps} steps at this batch: "
                    f"{recipe_steps / row['steps_per_s'] / 60:.1f} min",
                  flush=True)
            del trainer
    print(f"machine: {machine_description(args.device)}; recipe {args.config}, from {args.init_checkpoint}")
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine_description(args.device), "config": str(args.config),
                                         "device": args.device, "threads": args.threads, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
