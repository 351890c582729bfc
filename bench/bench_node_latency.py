"""Per-step overhead of the policy node: image message in -> action message out, minus model time.

Runs the real policy node (lifecycle: configure + activate, enabled) and a
driver node in one rclpy executor; messages travel through the RMW (DDS),
not a function call. Per step the driver publishes the second camera's
image, then the first (which triggers the event-driven step), and times
until the raw action arrives; the model time is the step record's
``total_ms`` (the exit controller's wall time: encode + segments + head).
Overhead = round trip - model time: image conversion, observation assembly,
safety checks, publishing and both message hops.

    .venv/bin/python bench/bench_node_latency.py --quick
    .venv/bin/python bench/bench_node_latency.py --checkpoint deer_vla/assets/default_checkpoint --steps 300
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python bench/bench_node_latency.py` from a checkout
    sys.path.insert(0, str(REPO))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))


def build_tiny_checkpoint(out_dir: Path) -> Path:
    """The "tiny" model preset with random weights; thresholds 0 (every step runs all exits)."""
    import torch

    from deer_vla.control.thresholds import Thresholds
    from deer_vla.model.checkpoint import save_checkpoint
    from deer_vla.model.policy import MultiExitPolicy
    from deer_vla.model.presets import preset_config
    from deer_vla.model.tokenizer import build_word_tokenizer

    torch.manual_seed(0)
    model = MultiExitPolicy(preset_config("tiny")).eval()
    save_checkpoint(model, build_word_tokenizer(["reach the red goal"]), out_dir)
    Thresholds(values=[0.0] * (model.num_exits - 1)).save(out_dir / "thresholds.json")
    return out_dir


def stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    return {"median": float(np.median(a)), "p95": float(np.percentile(a, 95)), "mean": float(a.mean()),
            "min": float(a.min()), "max": float(a.max())}


def run(checkpoint: Path, steps: int, warmup: int, size: int, executor_kind: str = "events") -> dict:
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float32MultiArray, String

    from deer_vla.core import StepRecord
    from deer_vla.ros.executors import make_executor
    from deer_vla.ros.image_conv import rgb_to_image_msg
    from deer_vla.ros.policy_node import INSTRUCTION_QOS, PolicyNode

    rclpy.init()
    executor = make_executor(executor_kind)
    policy = PolicyNode(parameter_overrides=[Parameter("checkpoint_dir", value=str(checkpoint)),
                                             Parameter("enabled", value=True)])
    driver = rclpy.create_node("latency_driver")
    executor.add_node(policy)
    executor.add_node(driver)
    try:
        if policy.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise SystemExit(f"policy node failed to configure with checkpoint {checkpoint}")
        policy.trigger_activate()
        arrived: dict[str, int] = {}
        records: list[StepRecord] = []
        on_action = lambda m: arrived.setdefault("t", time.perf_counter_ns())
        driver.create_subscription(Float32MultiArray, "action", on_action, 10)
        driver.create_subscription(String, "step_record", lambda m: records.append(StepRecord.from_json(m.data)), 100)
        driver.create_publisher(String, "instruction", INSTRUCTION_QOS).publish(String(data="reach the red goal"))
        pubs = [driver.create_publisher(Image, t, qos_profile_sensor_data) for t in policy.params.image_topics]
        proprio_pub = driver.create_publisher(Float32MultiArray, policy.params.proprio_topic or "proprio",
                                              qos_profile_sensor_data)
        rng = np.random.default_rng(0)
        round_trip, model, lost = [], [], 0
        while policy.instruction is None:
            executor.spin_once(timeout_sec=0.05)
        for i in range(warmup + steps):
            frames = [rgb_to_image_msg(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in pubs]
            stamp = driver.get_clock().now().to_msg()
            for f in frames:
                f.header.stamp = stamp
            arrived.clear()
            n_records = len(records)
            if policy.stack.proprio_dim:  # the step waits for proprioception too: send it first
                proprio_pub.publish(Float32MultiArray(data=[0.0] * policy.stack.proprio_dim))
            for pub, frame in reversed(list(zip(pubs, frames))):
                if pub is pubs[0]:
                    t0 = time.perf_counter_ns()
                pub.publish(frame)
            deadline = time.monotonic() + 5.0
            while ("t" not in arrived or len(records) <= n_records) and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.01)
            if "t" not in arrived or len(records) <= n_records:
                lost += 1
                continue
            if i >= warmup:
                round_trip.append((arrived["t"] - t0) * 1e-6)
                model.append(records[-1].total_ms)
        node_internal = [a - b for a, b in list(policy.stats.latency_ms)[-len(round_trip):]]
        overhead = [r - m for r, m in zip(round_trip, model)]
        return {
            "executor": executor_kind,
            "checkpoint": str(checkpoint),
            "exits_loaded": policy.stack.profile.num_exits,
            "image_size": size,
            "cameras": len(pubs),
            "steps": len(round_trip),
            "lost": lost,
            "round_trip_ms": stats(round_trip),
            "model_ms": stats(model),
            "overhead_ms": stats(overhead),
            "overhead_inside_node_ms": stats(node_internal),
        }
    finally:
        executor.remove_node(policy)
        executor.remove_node(driver)
        policy.destroy_node()
        driver.destroy_node()
        rclpy.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 steps (a few seconds)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: a tiny random checkpoint in a tmp dir")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=64, help="square camera images, pixels per side")
    parser.add_argument("--executors", default="events,single",
                        help="rclpy executors to compare, one run each: 'events' (rclpy.experimental."
                             "EventsExecutor, the node executables' default) and/or 'single' (SingleThreadedExecutor)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    steps = 60 if args.quick else args.steps
    kinds = [k.strip() for k in args.executors.split(",") if k.strip()]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or build_tiny_checkpoint(Path(tmp))
        for kind in kinds:
            result = run(checkpoint, steps, args.warmup, args.image_size, kind)
            results.append(result)
            print(f"policy node latency, {kind} executor, over {result['steps']} steps ({result['cameras']} cameras "
                  f"{args.image_size}x{args.image_size}, {result['exits_loaded']} exits, lost {result['lost']}):")
            for key in ("round_trip_ms", "model_ms", "overhead_ms", "overhead_inside_node_ms"):
                s = result[key]
                print(f"  {key:<25} median {s['median']:7.3f}  p95 {s['p95']:7.3f}  max {s['max']:7.3f}")
    if len(results) > 1:
        base = results[-1]["overhead_ms"]["median"]
        for r in results[:-1]:
            print(f"ratio overhead median {results[-1]['executor']}/{r['executor']}: "
                  f"{base / max(r['overhead_ms']['median'], 1e-9):.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
