"""Per-step overhead of the policy node: image message in -> action message out, minus model time.

Runs the real policy node (lifecycle: configure + activate, enabled) and a
driver node in one rclpy executor; messages travel through the RMW (DDS),
not a function call. Per step the driver publishes the second camera's
image, then the first (which triggers the event-driven step), and times
until the raw action arrives; the model time is the step record's
``total_ms`` (the step's own wall time: a compressed frame's decode, which
the node's step worker does, + encode + segments + head; before 2026-12-06
the decode counted as overhead). Overhead = round trip - model time: raw
image conversion on arrival, observation assembly, safety checks,
publishing and both message hops. Between transports compare the round trip.

``--cpu-load N`` runs every configuration twice, side by side: alone and
beside N busy processes (a robot computer shared with other programs), and
prints the p95 ratio loaded/unloaded. ``--torch-threads 0,1,...`` compares
the node's ``torch_threads`` parameter (0 = torch's default, one per core).
``--halt K`` measures K ``~/halt`` service round trips, each called while a
model step runs in the node's worker thread. ``--transport raw,compressed``
compares sensor_msgs/Image with image_transport's ``<base>/compressed`` JPEG
frames (encoded by the driver before the clock starts, as a camera would;
decoded in the node); frames are smooth, camera-like images, not noise.

    .venv/bin/python bench/bench_node_latency.py --quick
    .venv/bin/python bench/bench_node_latency.py --checkpoint deer_vla/assets/default_checkpoint --steps 300
    .venv/bin/python bench/bench_node_latency.py --checkpoint deer_vla/assets/default_checkpoint --steps 150 \
        --executors events --cpu-load 2 --torch-threads 0,1 --halt 30
    .venv/bin/python bench/bench_node_latency.py --checkpoint default --image-size 480 --transport raw,compressed
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python bench/bench_node_latency.py` from a checkout
    sys.path.insert(0, str(REPO))
from common import output_problem, run_bench, start_cpu_load, stop_cpu_load  # noqa: E402  (bench/ is sys.path[0] when run as a script)

from deer_vla.core.writable import path_argument  # noqa: E402
from deer_vla.model.shipped import checkpoint_argument, checkpoint_help  # noqa: E402
from deer_vla.ros.executors import EXECUTORS  # noqa: E402

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))


def build_tiny_checkpoint(out_dir: Path) -> Path:
    """The "tiny" model preset with random weights; thresholds 0 (every step runs all exits)."""
    from deer_vla.control.thresholds import Thresholds
    from deer_vla.model.checkpoint_dir import CheckpointDir
    from deer_vla.model.presets import save_random_checkpoint

    ckpt = CheckpointDir(save_random_checkpoint(out_dir, "tiny", ["reach the red goal"]))
    Thresholds(values=[0.0] * (ckpt.read_config().num_exits - 1)).save(ckpt.thresholds_path)
    return ckpt.root


def stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    return {"median": float(np.median(a)), "p95": float(np.percentile(a, 95)), "mean": float(a.mean()),
            "min": float(a.min()), "max": float(a.max())}


def measure_halt(executor, policy, driver, publish_pair, trials: int) -> dict:  # type: ignore[no-untyped-def]
    """~/halt round trips (request out -> response in), each sent while a step runs in the worker."""
    from rclpy.parameter import Parameter
    from std_srvs.srv import Trigger

    client = driver.create_client(Trigger, f"/{policy.get_name()}/halt")
    if not client.wait_for_service(timeout_sec=5.0):
        raise SystemExit("halt service not available")
    times, during, missed = [], 0, 0
    for _ in range(trials):
        policy.set_parameters([Parameter("enabled", value=True)])
        publish_pair()
        deadline = time.monotonic() + 5.0
        while not policy._worker.busy.is_set() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.0005)
        if not policy._worker.busy.is_set():
            missed += 1
            continue
        t0 = time.perf_counter_ns()
        future = client.call_async(Trigger.Request())
        while not future.done() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.0005)
        times.append((time.perf_counter_ns() - t0) * 1e-6)
        during += int(policy._worker.busy.is_set())  # the step was still running when halt had answered
        while policy._worker.busy.is_set() and time.monotonic() < deadline + 5.0:
            executor.spin_once(timeout_sec=0.001)
    return {"trials": len(times), "answered_during_step": during, "step_not_caught": missed,
            "halt_ms": stats(times) if times else None}


def camera_frame(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth size x size RGB frame with a little sensor noise: JPEG sizes and decode times like a camera's
    (uniform noise is several times larger and slower to decode than any real scene)."""
    import cv2

    coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    return np.clip(smooth + rng.integers(-6, 7, smooth.shape), 0, 255).astype(np.uint8)


def run(checkpoint: Path, steps: int, warmup: int, size: int, executor_kind: str = "events",
        torch_threads: int = 1, cpu_load: int = 0, halt_trials: int = 0, transport: str = "raw") -> dict:
    import cv2
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Float32MultiArray, String

    from deer_vla.core import StepRecord
    from deer_vla.ros.executors import make_executor
    from deer_vla.ros.image_conv import rgb_to_image_msg
    from deer_vla.ros.policy_node import INSTRUCTION_QOS, PolicyNode

    load = start_cpu_load(cpu_load)
    rclpy.init()
    executor = make_executor(executor_kind)
    policy = PolicyNode(parameter_overrides=[Parameter("checkpoint_dir", value=str(checkpoint)),
                                             Parameter("enabled", value=True),
                                             # a step per image pair: the latency measured is the node's own
                                             Parameter("control_mode", value="event"),
                                             Parameter("torch_threads", value=torch_threads)])
    compressed = transport == "compressed"
    if compressed:  # image_transport's naming: the node reads <base>/compressed as CompressedImage
        topics = [f"{t}/compressed" for t in policy.get_parameter("image_topics").value]
        policy.set_parameters([Parameter("image_topics", value=topics)])
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
        pubs = [driver.create_publisher(CompressedImage if compressed else Image, t, qos_profile_sensor_data)
                for t in policy.params.image_topics]
        jpeg_bytes: list[int] = []
        proprio_pub = driver.create_publisher(Float32MultiArray, policy.params.proprio_topic or "proprio",
                                              qos_profile_sensor_data)
        rng = np.random.default_rng(0)
        round_trip, model, lost = [], [], 0
        while policy.instruction is None:
            executor.spin_once(timeout_sec=0.05)

        def frame_msg() -> Any:
            rgb = camera_frame(rng, size)
            if not compressed:
                return rgb_to_image_msg(rgb)
            data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
            jpeg_bytes.append(int(data.size))
            return CompressedImage(format="jpeg", data=data.tobytes())

        def publish_pair() -> int:
            frames = [frame_msg() for _ in pubs]
            stamp = driver.get_clock().now().to_msg()
            for f in frames:
                f.header.stamp = stamp
            if policy.stack.proprio_dim:  # the step waits for proprioception too: send it first
                proprio_pub.publish(Float32MultiArray(data=[0.0] * policy.stack.proprio_dim))
            t0 = 0
            for pub, frame in reversed(list(zip(pubs, frames))):
                if pub is pubs[0]:
                    t0 = time.perf_counter_ns()
                pub.publish(frame)
            return t0

        for i in range(warmup + steps):
            arrived.clear()
            n_records = len(records)
            t0 = publish_pair()
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
        halt = measure_halt(executor, policy, driver, publish_pair, halt_trials) if halt_trials else None
        return {
            "executor": executor_kind,
            "transport": transport,
            "jpeg_kib_median": float(np.median(jpeg_bytes)) / 1024 if jpeg_bytes else None,
            "torch_threads": torch_threads,
            "cpu_load": cpu_load,
            "halt": halt,
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
        stop_cpu_load(load)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 steps (a few seconds)")
    parser.add_argument("--checkpoint", type=checkpoint_argument, default=None,
                        help=checkpoint_help(default="a tiny random checkpoint in a tmp dir"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=64, help="square camera images, pixels per side")
    parser.add_argument("--executors", default="events,single",
                        help="rclpy executors to compare, one run each: 'events' (rclpy.experimental."
                             "EventsExecutor, the node executables' default) and/or 'single' (SingleThreadedExecutor)")
    parser.add_argument("--cpu-load", type=int, default=0, metavar="N",
                        help="also run each configuration beside N busy processes and compare (0 = no loaded run)")
    parser.add_argument("--torch-threads", default="1",
                        help="comma-separated values of the node's torch_threads parameter to compare (0 = torch's "
                             "default)")
    parser.add_argument("--halt", type=int, default=0, metavar="K",
                        help="after the steps, K ~/halt calls each made while a model step runs")
    parser.add_argument("--transport", default="raw",
                        help="comma-separated: raw (sensor_msgs/Image), compressed (<base>/compressed JPEG q90)")
    parser.add_argument("--json", type=path_argument, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    steps = 60 if args.quick else args.steps
    kinds = [k.strip() for k in args.executors.split(",") if k.strip()]
    if not kinds or any(k not in EXECUTORS for k in kinds):
        parser.error(f"--executors: a comma-separated list of {', '.join(EXECUTORS)}, got {args.executors!r}")
    try:
        threads = [int(t) for t in args.torch_threads.split(",") if t.strip()]
    except ValueError:
        parser.error(f"--torch-threads: comma-separated integers, got {args.torch_threads!r}")
    if not threads:
        parser.error("--torch-threads: at least one value")
    transports = [t.strip() for t in args.transport.split(",") if t.strip()]
    if not transports or any(t not in ("raw", "compressed") for t in transports):
        parser.error(f"--transport: a comma-separated list of raw, compressed, got {args.transport!r}")
    if args.cpu_load < 0 or args.halt < 0 or any(t < 0 for t in threads):
        parser.error("--cpu-load, --halt and --torch-threads must be >= 0")
    if not (1 <= steps <= 1_000_000 and 0 <= args.warmup <= 100_000):
        parser.error(f"--steps must be in 1..1000000 and --warmup in 0..100000, got {steps}, {args.warmup}")
    if not 8 <= args.image_size <= 1024:  # the node refuses images under 8 px and would time out every step
        parser.error(f"--image-size must be in 8..1024 pixels, got {args.image_size}")
    problem = output_problem(args.json)
    if problem:  # now, not after the runs
        parser.error(f"--json: {problem}")
    loads = [0, args.cpu_load] if args.cpu_load else [0]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or build_tiny_checkpoint(Path(tmp))
        for kind in kinds:
            for n_threads in threads:
                for load in loads:
                    for transport in transports:
                        result = run(checkpoint, steps, args.warmup, args.image_size, kind, n_threads, load,
                                     args.halt, transport)
                        results.append(result)
                        jpeg = f", JPEG median {result['jpeg_kib_median']:.0f} KiB" if result["jpeg_kib_median"] \
                            else ""
                        print(f"policy node latency, {kind} executor, torch_threads {n_threads}, cpu load {load}, "
                              f"{transport} images, over {result['steps']} steps ({result['cameras']} cameras "
                              f"{args.image_size}x{args.image_size}{jpeg}, {result['exits_loaded']} exits, lost "
                              f"{result['lost']}):")
                        for key in ("round_trip_ms", "model_ms", "overhead_ms", "overhead_inside_node_ms"):
                            s = result[key]
                            print(f"  {key:<25} median {s['median']:7.3f}  p95 {s['p95']:7.3f}  max {s['max']:7.3f}")
                        if result["halt"] and result["halt"]["halt_ms"]:
                            h = result["halt"]
                            print(f"  {'halt_response_ms':<25} median {h['halt_ms']['median']:7.3f}  p95 "
                                  f"{h['halt_ms']['p95']:7.3f}  max {h['halt_ms']['max']:7.3f}  ({h['trials']} calls, "
                                  f"{h['answered_during_step']} answered while the step still ran)")
    if len(transports) > 1:
        base_runs = [r for r in results if r["cpu_load"] == 0 and r["torch_threads"] == threads[0]
                     and r["executor"] == kinds[0]]
        by_transport = {r["transport"]: r["overhead_inside_node_ms"]["median"] for r in base_runs}
        for transport in transports[1:]:
            print(f"ratio overhead inside the node, median {transport}/{transports[0]}: "
                  f"{by_transport[transport] / max(by_transport[transports[0]], 1e-9):.2f}x")
    results_by_first = [r for r in results if r["transport"] == transports[0]]
    if len(kinds) > 1:
        by_kind = {r["executor"]: r for r in results_by_first
                   if r["cpu_load"] == 0 and r["torch_threads"] == threads[0]}
        base = by_kind[kinds[-1]]["overhead_ms"]["median"]
        for kind in kinds[:-1]:
            print(f"ratio overhead median {kinds[-1]}/{kind}: "
                  f"{base / max(by_kind[kind]['overhead_ms']['median'], 1e-9):.2f}x")
    if args.cpu_load:
        print(f"side by side, {args.cpu_load} busy process(es) vs none (p95 round trip, model):")
        for kind in kinds:
            for n_threads in threads:
                pair = [r for r in results_by_first if r["executor"] == kind and r["torch_threads"] == n_threads]
                alone, loaded = pair[0]["round_trip_ms"], pair[1]["round_trip_ms"]
                print(f"  {kind:<6} torch_threads {n_threads}: round trip p95 {alone['p95']:8.2f} -> "
                      f"{loaded['p95']:8.2f} ms, ratio loaded/unloaded p95 "
                      f"{loaded['p95'] / max(alone['p95'], 1e-9):.2f}x "
                      f"(median {loaded['median'] / max(alone['median'], 1e-9):.2f}x)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
