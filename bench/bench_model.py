"""Per-exit cost of a model preset: counted GFLOPs, params, weight MB, measured segment latency; fp32 vs int8.

    .venv/bin/python bench/bench_model.py --preset default [--quick] [--device cpu|cuda] [--dtype bfloat16]

Weights are random (cost does not depend on their values). The int8 section
applies dynamic quantization to every nn.Linear (CPU only) and reports the
latency change and the largest action difference over all exits.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from common import check_device, run_bench

from deer_vla.model.policy import MultiExitPolicy
from deer_vla.model.presets import PRESETS, preset_config
from deer_vla.model.profiling import analytic_llm_flops, example_inputs, profile_policy, quantize_int8


def _actions(model: MultiExitPolicy, inp: dict) -> np.ndarray:
    with torch.inference_mode():
        feats = model.exit_features(inp["images"], inp["input_ids"], inp["attention_mask"])
        out = model.head(feats.transpose(0, 1), None)  # every exit as a length-1 history
        return torch.cat([out.motion, torch.tanh(out.gripper_logit / 2).unsqueeze(-1)], -1).float().cpu().numpy()


def _full_ms(model: MultiExitPolicy, inp: dict, iters: int) -> float:
    times = []
    with torch.inference_mode():
        for i in range(iters + 2):
            t0 = time.perf_counter()
            model.exit_features(inp["images"], inp["input_ids"], inp["attention_mask"])
            if i >= 2:
                times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--quick", action="store_true", help="few timing iterations (smoke run)")
    args = p.parse_args(argv)
    check_device(args.device)
    if args.dtype != "float32" and args.device == "cpu":
        print("half precision is benchmarked on CUDA only", file=sys.stderr)
        return 2
    if not 1 <= args.threads <= 256:
        p.error(f"--threads must be in 1..256, got {args.threads}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = preset_config(args.preset)
    model = MultiExitPolicy(cfg).eval().to(args.device, getattr(torch, args.dtype))
    warmup, iters = (1, 5) if args.quick else (5, 50)
    prof = profile_policy(model, warmup=warmup, iters=iters)
    analytic = analytic_llm_flops(cfg)
    print(f"preset={args.preset} device={args.device} dtype={args.dtype} threads={args.threads} "
          f"text_len={cfg.lm.max_text_len} iters={iters}")
    assert prof.encode_latency is not None and prof.head_latency is not None
    print(f"encode (vision+resampler+embed): p50 {prof.encode_latency.median_ms:.3f} ms  "
          f"p95 {prof.encode_latency.p95_ms:.3f} ms;  head step p50 {prof.head_latency.median_ms:.3f} ms")
    print(f"{'exit':>4} {'LLM GFLOPs':>11} {'analytic':>9} {'total GFLOPs':>12} {'params':>11} {'weight MB':>9} "
          f"{'seg p50 ms':>10} {'seg p95 ms':>10}")
    for k in range(prof.num_exits):
        s = prof.segment_latency[k]
        print(f"{k + 1:>4} {prof.llm_gflops[k]:>11.5f} {analytic[k] / 1e9:>9.5f} {prof.total_gflops[k]:>12.5f} "
              f"{prof.params[k]:>11,d} {prof.weight_bytes[k] / 2**20:>9.2f} {s.median_ms:>10.3f} {s.p95_ms:>10.3f}")
    print(f"ratio full/exit-1: LLM GFLOPs {prof.llm_gflops[-1] / prof.llm_gflops[0]:.2f}x, "
          f"total GFLOPs {prof.total_gflops[-1] / prof.total_gflops[0]:.2f}x, "
          f"params {prof.params[-1] / prof.params[0]:.2f}x, "
          f"p50 time to exit (encode+segments+heads) "
          f"{prof.worst_case_ms(prof.num_exits, 'median') / prof.worst_case_ms(1, 'median'):.2f}x")
    if args.device == "cpu" and args.dtype == "float32":
        inp = example_inputs(model, torch.device("cpu"), batch=1)
        q = quantize_int8(model)
        a32, a8 = _actions(model, inp), _actions(q, inp)
        n = max(3, iters // 2)
        t32, t8 = _full_ms(model, inp, n), _full_ms(q, inp, n)
        print(f"int8 dynamic (Linear) vs fp32, full depth one-shot: {t32:.3f} ms -> {t8:.3f} ms "
              f"({t32 / t8:.2f}x); max |action diff| over all exits {float(np.abs(a32 - a8).max()):.4f} "
              f"(actions in [-1, 1])")
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
