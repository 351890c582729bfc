"""Memory of an MCAP recording that runs on: unsplit vs split into parts (record_split_mib / record_split_s).

Each configuration runs in its own subprocess: a ``PolicyRecorder`` (the policy node's ``record_path``
writer) records policy-like steps (two random 64x64 RGB images, instruction, proprio, action, step record) as
fast as it can for ``--seconds``. RSS (``/proc/self/statm``) is sampled after a warm-up and through the run;
the chunk count comes from the finished files' statistics. The writer keeps one index entry per chunk until a
file's footer, so the unsplit RSS grows with the chunks written and the split one starts again with each part.
Random images do not compress: the disk takes ~25 KB per step (the parts are deleted at the end).

    .venv/bin/python bench/bench_mcap_split.py --quick      # ~15 s
    .venv/bin/python bench/bench_mcap_split.py --seconds 60
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python bench/bench_mcap_split.py` from a checkout
    sys.path.insert(0, str(REPO))
from common import output_problem, ratio, run_bench  # noqa: E402  (bench/ is sys.path[0] when run as a script)

from deer_vla.core.writable import path_argument  # noqa: E402

WARMUP_S = 2.0


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def record(path: Path, split_mib: float, split_s: float, seconds: float) -> dict:
    """One configuration, in this process: steps at full speed for ``seconds`` -> figures."""
    import numpy as np
    from mcap.reader import make_reader
    from std_msgs.msg import String

    from deer_vla.core import StepRecord
    from deer_vla.ros.image_conv import rgb_to_image_msg
    from deer_vla.ros.params import split_limits
    from deer_vla.ros.recorder import PolicyRecorder

    rng = np.random.default_rng(0)
    recorder = PolicyRecorder(path, ("static", "wrist"), split_limits(split_mib, split_s))
    start = time.monotonic()
    samples: list[tuple[float, float]] = []
    rss_warm = None
    step = 0
    while (elapsed := time.monotonic() - start) < seconds:
        images = {c: rgb_to_image_msg(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for c in ("static", "wrist")}
        step_record = StepRecord(step=step, episode=step // 200, exit_used=1, max_exit=4, stop_reason="threshold",
                           llm_gflops=1.0, total_gflops=1.2)
        recorder.write_step(images, "reach the red goal", np.zeros(4, np.float32), np.zeros(7),
                            String(data=step_record.to_json()), time.time_ns())
        step += 1
        if rss_warm is None and elapsed >= WARMUP_S:
            rss_warm, steps_warm = rss_mb(), step
        if step % 500 == 0:
            samples.append((round(elapsed, 1), round(rss_mb(), 2)))
    rss_end = rss_mb()
    recorder.close()
    chunks = 0
    for part in recorder.log.parts:
        with part.open("rb") as stream:
            summary = make_reader(stream).get_summary()
            chunks += summary.statistics.chunk_count if summary and summary.statistics else 0
    size = sum(p.stat().st_size for p in recorder.log.parts)
    for part in recorder.log.parts:
        part.unlink()
    assert rss_warm is not None, "the run is shorter than its warm-up"
    return {"split_mib": split_mib, "split_s": split_s, "seconds": round(elapsed, 1), "steps": step,
            "steps_per_s": round(step / elapsed), "parts": len(recorder.log.parts), "chunks": chunks,
            "gib_written": round(size / 2**30, 2), "rss_warm_mb": round(rss_warm, 1), "rss_end_mb": round(rss_end, 1),
            "rss_max_mb": round(max([rss_end] + [r for _, r in samples]), 1),
            "rss_growth_mb": round(rss_end - rss_warm, 1), "steps_after_warmup": step - steps_warm,
            "samples": samples}


def add_growth_ratios(results: list[dict]) -> None:
    """Each split run's ``rss_growth_unsplit_over_split``: the unsplit run's RSS growth over its own (None for the
    unsplit run, or when none ran). inf when a split run did not grow; its growths are beside it."""
    unsplit = next((r for r in results if r["split_mib"] == 0 and r["split_s"] == 0), None)
    for r in results:
        r["rss_growth_unsplit_over_split"] = (
            None if unsplit is None or r is unsplit else ratio(unsplit["rss_growth_mb"], r["rss_growth_mb"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="recording time per configuration")
    parser.add_argument("--configs", default="0:0,256:3600,32:0",
                        help="comma list of SPLIT_MIB:SPLIT_S (0:0 = unsplit; 256:3600 = the nodes' default)")
    parser.add_argument("--quick", action="store_true", help="5 s per configuration")
    parser.add_argument("--out", type=path_argument, default=None, help="also write the figures as JSON")
    parser.add_argument("--child", nargs=4, metavar=("PATH", "MIB", "S", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        path, mib, s, seconds = args.child
        print(json.dumps(record(Path(path), float(mib), float(s), float(seconds))))
        return 0
    seconds = 5.0 if args.quick else args.seconds
    if not WARMUP_S + 1 <= seconds <= 86_400:  # RSS growth is measured from the end of the warm-up on
        parser.error(f"--seconds must be in [{WARMUP_S + 1:g}, 86400] (a {WARMUP_S:g} s warm-up, then at least "
                     f"1 s measured), got {seconds}")
    configs = []  # all parsed and checked before the first one records
    for config in args.configs.split(","):
        try:
            mib_text, s_text = config.split(":")
            mib, split_s = float(mib_text), float(s_text)
            if not (0 <= mib < 2**20 and 0 <= split_s <= 86_400):
                raise ValueError("out of range")
        except ValueError as exc:
            parser.error(f"--configs: {config!r} is not SPLIT_MIB:SPLIT_S, 0 <= MiB < 1048576 and "
                         f"0 <= seconds <= 86400 ({exc})")
        configs.append((f"{mib:g}", f"{split_s:g}"))
    problem = output_problem(args.out)
    if problem:  # now, not after minutes of recording
        parser.error(f"--out: {problem}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_mcap_split_") as tmp:
        for n, (mib, s) in enumerate(configs):
            env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
                p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
            proc = subprocess.run([sys.executable, __file__, "--child", f"{tmp}/run{n}/policy_io.mcap", mib, s,
                                   str(seconds)], env=env, capture_output=True, text=True)
            if proc.returncode != 0:  # the child's own message, not a CalledProcessError that hides it
                tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
                print(f"bench_mcap_split: configuration {mib}:{s} failed (rc {proc.returncode}): {tail}",
                      file=sys.stderr)
                return 1
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"{'split':>14} {'steps':>7} {'steps/s':>7} {'parts':>5} {'chunks':>6} {'GiB':>5} "
          f"{'RSS warm':>8} {'RSS end':>8} {'RSS max':>8} {'growth MB':>9} {'KB/chunk':>8}")
    for r in results:
        label = "unsplit" if r["split_mib"] == 0 and r["split_s"] == 0 else f"{r['split_mib']:g}MiB/{r['split_s']:g}s"
        per_chunk = 1024 * r["rss_growth_mb"] / max(r["chunks"], 1)
        print(f"{label:>14} {r['steps']:>7} {r['steps_per_s']:>7} {r['parts']:>5} {r['chunks']:>6} "
              f"{r['gib_written']:>5} {r['rss_warm_mb']:>8} {r['rss_end_mb']:>8} {r['rss_max_mb']:>8} "
              f"{r['rss_growth_mb']:>9} {per_chunk:>8.2f}")
    add_growth_ratios(results)
    unsplit = next((r for r in results if r["split_mib"] == 0 and r["split_s"] == 0), None)
    for r in results:
        if r["rss_growth_unsplit_over_split"] is not None and unsplit is not None:
            print(f"ratio RSS growth unsplit/split ({r['split_mib']:g} MiB, {r['split_s']:g} s): "
                  f"{r['rss_growth_unsplit_over_split']:.2f}x ({unsplit['rss_growth_mb']:.1f} / "
                  f"{r['rss_growth_mb']:.1f} MB)")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
