"""Peak resident memory of the model loaded up to each exit cap vs the full model, in one run.

Each cap k is loaded (PolicyRunner.from_checkpoint(dir, max_exit=k), which
builds only segments 1..k) in a FRESH subprocess, so one load's memory never
hides in another's heap. Each subprocess imports torch and deer_vla, makes
its observations, resets the kernel's peak-RSS mark, then loads and runs a
few steps at exit k; a baseline subprocess does the same without loading.
Printed per cap: the weight bytes resident at that cap (counted on a model
built on the meta device: no load in this parent process), peak RSS over the
baseline process (weights + activations + allocator) and its ratio to the
weight bytes (the cost of loading: about 1.0 when a load holds one copy of the
weights), CUDA max allocated with --device cuda, and the ratios full/cap.

    .venv/bin/python bench/bench_memory.py --quick
    .venv/bin/python bench/bench_memory.py --preset mpt1b --caps 2 12 --repeats 1
    .venv/bin/python bench/bench_memory.py --preset default --device cuda
    .venv/bin/python bench/bench_memory.py --checkpoint deer_vla/assets/default_checkpoint
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import check_device, checkpoint_config, mib, output_problem, ratio, run_bench, synthetic_observations

from deer_vla.core.writable import path_argument
from deer_vla.model.checkpoint_dir import CheckpointDir
from deer_vla.model.shipped import checkpoint_argument, checkpoint_help

RESULT = "RESULT "


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {field}")
    return int(match.group(1))


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child(checkpoint: Path, max_exit: int, device: str, steps: int, threads: int | None) -> dict:
    """One measurement in this (fresh) process; max_exit 0 is the baseline: everything but the model."""
    import psutil
    import torch

    from deer_vla.model.runner import PolicyRunner

    if threads:
        torch.set_num_threads(threads)
    cfg = checkpoint_config(checkpoint)
    proc = psutil.Process()
    # Every process, the baseline too, builds the model on the meta device (no storage) and reads the
    # tokenizer first: the lazily imported decoder code (transformers) then counts in the baseline,
    # not as "model memory".
    from deer_vla.model.checkpoint import read_config
    from deer_vla.model.policy import MultiExitPolicy
    from deer_vla.model.tokenizer import load_tokenizer

    with torch.device("meta"):
        MultiExitPolicy(read_config(checkpoint))
    load_tokenizer(checkpoint)
    reset = _reset_peak_rss()
    rss_before = proc.memory_info().rss
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    out: dict = {"max_exit": max_exit, "peak_reset": reset, "rss_before": rss_before}
    if max_exit > 0:
        runner = PolicyRunner.from_checkpoint(checkpoint, max_exit=max_exit, device=device)
        if runner.num_exits != max_exit:
            raise SystemExit(f"asked for max_exit={max_exit}, the runner loaded {runner.num_exits} exits")
        cameras = tuple(runner.cameras)
        size, proprio = int(cfg["image_size"]), int(cfg.get("proprio_dim") or 0)
        episode = synthetic_observations(cameras, size, proprio, 1, steps, seed=0)[0]
        runner.reset()
        with torch.inference_mode():
            for obs in episode:  # activations of a real step at the deepest loaded exit
                runner.begin_step(obs)
                for _ in range(max_exit):
                    runner.run_next_exit()
                runner.commit(max_exit)
    out["peak_rss"] = _status_kib("VmHWM") * 1024 if reset else None
    out["rss_after"] = proc.memory_info().rss
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        out["cuda_max_allocated"] = int(torch.cuda.max_memory_allocated(device))
    if max_exit > 0:  # what this process really holds, to check against the profile's weight bytes
        tensors = [*runner.model.parameters(), *runner.model.buffers()]
        out["loaded_bytes"] = int(sum(t.numel() * t.element_size() for t in tensors))
    return out


def spawn(checkpoint: Path, max_exit: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(max_exit), "--checkpoint", str(checkpoint),
           "--device", args.device, "--steps", str(args.steps)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.child_timeout, env=os.environ.copy())
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"memory subprocess for max_exit={max_exit} failed (rc {proc.returncode}):\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len(RESULT):])


def peak(m: dict) -> int:
    """Peak RSS; where the peak mark cannot be reset, the RSS after the steps (a lower bound)."""
    return int(m["peak_rss"] if m["peak_rss"] is not None else m["rss_after"])


def resident_profile(checkpoint: Path) -> tuple[list[int], list[int]]:
    """(params, bytes) resident when loaded up to each exit, counted on a model built on the meta device."""
    import torch

    from deer_vla.model.checkpoint import read_config
    from deer_vla.model.policy import MultiExitPolicy
    from deer_vla.model.profiling import resident_per_exit

    with torch.device("meta"):
        return resident_per_exit(MultiExitPolicy(read_config(checkpoint)))


def measure(checkpoint: Path, args: argparse.Namespace) -> list[dict]:
    params, weight_bytes = resident_profile(checkpoint)
    num_exits = len(weight_bytes)
    # the full model is always measured: it is the reference of every full/cap ratio
    caps = sorted({*(args.caps or range(1, num_exits + 1)), num_exits})
    bad = [k for k in caps if k > num_exits]
    if bad:
        raise ValueError(f"--caps {bad} exceed the checkpoint's {num_exits} exits")
    rows: list[dict] = []
    for rep in range(args.repeats):
        # Interleave the baseline with the caps so that drift in the machine's state hits all alike.
        base = spawn(checkpoint, 0, args)
        for k in caps:
            m = spawn(checkpoint, k, args)
            m["rss_over_baseline"] = peak(m) - peak(base)
            if "cuda_max_allocated" in m:
                m["cuda_over_baseline"] = m["cuda_max_allocated"] - base["cuda_max_allocated"]
            m["weight_bytes"] = int(weight_bytes[k - 1])
            m["params"] = int(params[k - 1])
            m["repeat"] = rep
            m["baseline_peak_rss"] = peak(base)
            rows.append(m)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Median over repeats per cap."""
    out = []
    for k in sorted({r["max_exit"] for r in rows}):
        rs = [r for r in rows if r["max_exit"] == k]

        def med(key: str, rs: list[dict] = rs) -> float:
            return float(np.median([r[key] for r in rs]))

        row = {"max_exit": k, "params": rs[0]["params"], "weight_bytes": rs[0]["weight_bytes"],
               "loaded_bytes": rs[0]["loaded_bytes"],
               "peak_rss": med("peak_rss_value"), "rss_over_baseline": med("rss_over_baseline"),
               "baseline_peak_rss": med("baseline_peak_rss"), "peak_reset": all(r["peak_reset"] for r in rs)}
        if "cuda_max_allocated" in rs[0]:
            row["cuda_max_allocated"] = med("cuda_max_allocated")
        out.append(row)
    return out


def report(summary: list[dict], device: str, repeats: int) -> None:
    full = summary[-1]  # the highest cap: measure() always adds the full model's
    cuda = "cuda_max_allocated" in full
    how = "peak RSS (VmHWM reset after imports)" if full["peak_reset"] else "RSS after the steps (no peak reset)"
    print(f"== resident memory per exit cap, fresh process each, median of {repeats}; {how}; "
          f"baseline process (torch + deer_vla imported, no model) peak {mib(full['baseline_peak_rss']):.1f} MiB")
    head = (f"{'cap':>4} {'params':>11} {'weights MiB':>11} {'loaded MiB':>10} {'RSS over base MiB':>17}"
            + f" {'RSS/weights':>11}" + (f" {'CUDA max MiB':>12}" if cuda else "")
            + f" | {'full/cap weights':>16} {'full/cap RSS':>12}" + (f" {'full/cap CUDA':>13}" if cuda else ""))
    print(head)
    for r in summary:
        line = (f"{r['max_exit']:>4} {r['params']:>11,} {mib(r['weight_bytes']):11.2f} {mib(r['loaded_bytes']):10.2f} "
                f"{mib(r['rss_over_baseline']):17.2f} {ratio(r['rss_over_baseline'], r['weight_bytes']):10.3f}x")
        if cuda:
            line += f" {mib(r['cuda_max_allocated']):12.2f}"
        line += (f" | {ratio(full['weight_bytes'], r['weight_bytes']):15.2f}x "
                 f"{ratio(full['rss_over_baseline'], r['rss_over_baseline']):11.2f}x")
        if cuda:
            line += f" {ratio(full['cuda_max_allocated'], r['cuda_max_allocated']):12.2f}x"
        print(line)
    first = summary[0]
    print("peak RSS over baseline / weights: " + ", ".join(
        f"cap {r['max_exit']} {ratio(r['rss_over_baseline'], r['weight_bytes']):.3f}x" for r in summary))
    print(f"ratio full/cap-{first['max_exit']}: weights {ratio(full['weight_bytes'], first['weight_bytes']):.2f}x, "
          f"peak RSS over baseline {ratio(full['rss_over_baseline'], first['rss_over_baseline']):.2f}x"
          + (f", CUDA max allocated {ratio(full['cuda_max_allocated'], first['cuda_max_allocated']):.2f}x"
             if cuda else ""))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny preset, 1 repeat, 2 steps per load")
    p.add_argument("--preset", default=None, choices=("tiny", "default", "1b", "mpt1b"),
                   help='model preset for the random checkpoint ("tiny", "default", "1b", "mpt1b")')
    p.add_argument("--checkpoint", type=checkpoint_argument, default=None,
                   help=checkpoint_help("a real checkpoint instead of random weights", default=None))
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--caps", type=int, nargs="+", default=None,
                   help="exit caps to load (default: every exit; the full model, the reference of the full/cap "
                        "ratios, is always loaded too)")
    p.add_argument("--repeats", type=int, default=None, help="fresh processes per cap (default 3, quick 1)")
    p.add_argument("--steps", type=int, default=None, help="steps run after loading (default 5, quick 2)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads in the subprocesses (0: torch default)")
    p.add_argument("--child-timeout", type=float, default=300.0, help="seconds per subprocess")
    p.add_argument("--json", type=path_argument, default=None, help="also write the figures here")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    q = args.quick
    args.preset = args.preset or ("tiny" if q else "default")
    # None = the default; an explicit 0 is refused, not turned into the default
    args.repeats = (1 if q else 3) if args.repeats is None else args.repeats
    args.steps = (2 if q else 5) if args.steps is None else args.steps
    if not (1 <= args.repeats <= 100 and 1 <= args.steps <= 10_000):
        p.error(f"--repeats must be in 1..100 and --steps in 1..10000, got {args.repeats}, {args.steps}")
    if not 0 <= args.threads <= 256:
        p.error(f"--threads must be in 0..256 (0: torch's default), got {args.threads}")
    if not 0 < args.child_timeout <= 86_400:
        p.error(f"--child-timeout must be seconds in (0, 86400], got {args.child_timeout}")
    problem = output_problem(args.json)
    if problem:  # now, not after minutes of subprocesses
        p.error(f"--json: {problem}")
    if args.caps is not None and any(k < 1 for k in args.caps):
        p.error(f"--caps must be exits >= 1, got {args.caps}")
    if args.checkpoint is not None and not CheckpointDir(args.checkpoint).exists():
        p.error(f"--checkpoint {args.checkpoint} is not a checkpoint directory (no {CheckpointDir.CONFIG})")
    check_device(args.device)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        print(RESULT + json.dumps(child(args.checkpoint, args.child, args.device, args.steps, args.threads)))
        return 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.checkpoint is None:
            from common import build_random_checkpoint

            checkpoint = build_random_checkpoint(args.preset, Path(tmp) / args.preset)
        else:
            checkpoint = args.checkpoint
        rows = measure(checkpoint, args)
    for r in rows:
        r["peak_rss_value"] = peak(r)
    summary = summarize(rows)
    print(f"checkpoint: {args.checkpoint or 'random weights, preset ' + args.preset}, device {args.device}")
    report(summary, args.device, args.repeats)
    print(f"wall time {time.perf_counter() - t0:.1f} s")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
