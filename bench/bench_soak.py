"""Memory over time: the policy node alone, fed N control steps, must stay flat after warm-up.

Builds the real policy node (configure + activate, enabled, optionally
recording to MCAP) and feeds it through its own step path: each step puts a
new camera set into the node (as its image callbacks do), lets the executor
thread's check build the step (``prepare_step``) and runs it as the worker
thread does (``run_step``) -- no DDS, so the figure is the node's own memory.
The instruction changes every ``--episode-steps`` (a new episode, as at task
changes). RSS (``/proc/self/statm``) is sampled after warm-up and at the end.

    .venv/bin/python bench/bench_soak.py --quick
    .venv/bin/python bench/bench_soak.py --steps 10000 --record
    .venv/bin/python bench/bench_soak.py --steps 10000 --record --compressed  # JPEG cameras, decoded by the step
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python bench/bench_soak.py` from a checkout
    sys.path.insert(0, str(REPO))
from common import output_problem, run_bench  # noqa: E402  (bench/ is sys.path[0] when run as a script)

from deer_vla.core.writable import path_argument  # noqa: E402
from deer_vla.model.shipped import checkpoint_argument, checkpoint_help  # noqa: E402

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))

INSTRUCTIONS = ["reach the red goal", "push the puck to the goal", "open the drawer"]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def soak(checkpoint: Path, steps: int, warmup: int, episode_steps: int, record: Path | None,
         samples: int = 10, compressed: bool = False) -> dict:
    import cv2
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CompressedImage

    from deer_vla.data.image_msg import check_compressed
    from deer_vla.ros.image_conv import rgb_to_image_msg
    from deer_vla.ros.policy_node import CameraFrame, PolicyNode

    rclpy.init()
    params = [Parameter("checkpoint_dir", value=str(checkpoint)), Parameter("enabled", value=True),
              Parameter("control_mode", value="event")]  # a step per published image set
    if record is not None:
        params.append(Parameter("record_path", value=str(record)))
    node = PolicyNode(parameter_overrides=params)
    try:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise SystemExit(f"policy node failed to configure with checkpoint {checkpoint}")
        node.trigger_activate()
        assert node.stack is not None
        size = int(getattr(getattr(node.stack.runner, "model", None), "config", None).image_size)  # type: ignore
        rng = np.random.default_rng(0)
        trace: list[tuple[int, float]] = []
        every = max(1, steps // samples)
        t0 = time.perf_counter()
        for i in range(warmup + steps):
            if i % episode_steps == 0:
                node.instruction = INSTRUCTIONS[(i // episode_steps) % len(INSTRUCTIONS)]
                node.reset_episode()
            stamp_ns = node.get_clock().now().nanoseconds
            for cam in node.stack.cameras:
                rgb = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                if compressed:  # as the node keeps a <base>/compressed frame: header checked, decoded by the step
                    data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]))[1].tobytes()
                    msg = CompressedImage(format="jpeg", data=data)
                    image = check_compressed("jpeg", data)
                else:
                    msg, image = rgb_to_image_msg(rgb), rgb
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
                node.frames[cam] = CameraFrame(image, stamp_ns, msg, time.perf_counter_ns(), node._moment())
            if node.stack.proprio_dim:
                node.proprio = rng.uniform(-1, 1, node.stack.proprio_dim).astype(np.float32)
            job = node.prepare_step()
            if job is None:
                raise SystemExit(f"step {i}: the node found no fresh observation")
            node.run_step(job)
            done = i + 1 - warmup
            if done == 0 or (done > 0 and done % every == 0):
                gc.collect()
                trace.append((done, rss_mb()))
        wall = time.perf_counter() - t0
        start, end = trace[0][1], trace[-1][1]
        return {
            "checkpoint": str(checkpoint),
            "steps": steps,
            "warmup": warmup,
            "episode_steps": episode_steps,
            "record": record is not None,
            "compressed": compressed,
            "steps_run": node.stats.steps,
            "rss_after_warmup_mb": start,
            "rss_end_mb": end,
            "rss_growth_mb": end - start,
            "rss_max_mb": max(r for _, r in trace),
            "trace": trace,
            "wall_s": wall,
        }
    finally:
        node.destroy_node()
        rclpy.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="300 steps after 100 warm-up (seconds)")
    parser.add_argument("--checkpoint", type=checkpoint_argument, default="", help=checkpoint_help())
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--episode-steps", type=int, default=200, help="a new instruction (episode) every N steps")
    parser.add_argument("--record", action="store_true", help="also record inputs/outputs to MCAP (a tmp file)")
    parser.add_argument("--compressed", action="store_true",
                        help="JPEG camera frames (a <base>/compressed topic's), decoded by each step")
    parser.add_argument("--limit-mb", type=float, default=20.0, help="growth after warm-up that counts as a leak")
    parser.add_argument("--json", type=path_argument, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup = 300, 100
    if args.steps < 1 or args.warmup < 1 or args.episode_steps < 1:
        parser.error("--steps, --warmup and --episode-steps must be >= 1")
    if args.steps + args.warmup > 100_000_000:  # ~2 weeks at the shipped model's speed: a typo, not a soak
        parser.error(f"--steps + --warmup must be at most 100000000, got {args.steps + args.warmup}")
    if not 0 < args.limit_mb < math.inf:
        parser.error(f"--limit-mb must be a number of MB > 0, got {args.limit_mb}")
    problem = output_problem(args.json)
    if problem:  # now, not after the soak
        parser.error(f"--json: {problem}")
    checkpoint = args.checkpoint
    with tempfile.TemporaryDirectory() as tmp:
        result = soak(checkpoint, args.steps, args.warmup, args.episode_steps,
                      Path(tmp) / "soak.mcap" if args.record else None, compressed=args.compressed)
    print(f"policy node soak: {result['steps_run']} steps ({args.warmup} warm-up), new episode every "
          f"{args.episode_steps}, recording {'on' if args.record else 'off'}, "
          f"{'JPEG' if args.compressed else 'raw'} cameras, {result['wall_s']:.0f} s")
    print("  steps after warm-up -> RSS MB: " + ", ".join(f"{n}: {r:.1f}" for n, r in result["trace"]))
    verdict = "flat" if result["rss_growth_mb"] <= args.limit_mb else "GROWING"
    print(f"RSS growth after warm-up: {result['rss_growth_mb']:+.1f} MB over {args.steps} steps "
          f"({result['rss_after_warmup_mb']:.1f} -> {result['rss_end_mb']:.1f} MB; limit {args.limit_mb:.0f} MB: "
          f"{verdict})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["rss_growth_mb"] <= args.limit_mb else 1


if __name__ == "__main__":
    sys.exit(run_bench(main))
