"""Cost profile of a MultiExitPolicy: per-exit FLOPs, resident params/bytes, measured latency.

FLOPs are counted with torch's FlopCounterMode on one real forward (batch 1,
an instruction of ``lm.max_text_len`` tokens, the worst case the runner
allows) and can be checked against ``analytic_llm_flops``. FlopCounterMode
does not see inside nn.LSTM, so the head's recurrent matmuls are added
analytically (2 FLOPs per multiply-add, like the counter).
"""
from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from deer_vla.core import CostProfile, LatencyStats
from deer_vla.core.atomic_file import atomic_write_text
from deer_vla.core.config_io import positive_int, repeat_count, thread_count, warmup_count
from deer_vla.core.writable import clobbers_input, path_argument
from deer_vla.model.config import PolicyConfig
from deer_vla.model.device import device_arg
from deer_vla.model.policy import MultiExitPolicy
from deer_vla.model.shipped import CHECKPOINT_HELP, checkpoint_argument

_PER_LAYER = re.compile(r"^(?:lm\.layers|xattn)\.(\d+)\.")
_PER_EXIT = re.compile(r"^(?:exit_norms|aux_heads)\.(\d+)\.")


# --- FLOPs ------------------------------------------------------------------------------------


def analytic_llm_flops(cfg: PolicyConfig, text_len: int | None = None, num_exits: int | None = None) -> list[float]:
    """Cumulative LLM FLOPs (decoder layers + gated cross-attention) per exit, batch 1, by formula."""
    lm = cfg.lm
    hf = lm.hf_config
    n = text_len or lm.max_text_len
    h = lm.hidden_size
    v = len(cfg.cameras) * cfg.resampler.num_latents * (cfg.past_frames + 1)  # the frames cross-attention reads
    if lm.family in ("gpt2", "mpt"):  # fused qkv projection, out projection, 2-matrix MLP
        # transformers' MptMLP is 4h wide whatever the config's expansion_ratio says
        inner = (hf.get("n_inner") or 4 * h) if lm.family == "gpt2" else 4 * h
        layer = 2 * n * h * 3 * h + 2 * n * h * h + 4 * n * n * h + 2 * 2 * n * h * inner
    else:
        heads = int(hf["num_attention_heads"])
        kv = int(hf.get("num_key_value_heads") or heads) * (h // heads)
        inter = int(hf["intermediate_size"])
        layer = 2 * n * h * h * 2 + 2 * 2 * n * h * kv + 4 * n * n * h + 2 * 3 * n * h * inter
    m = lm.cross_attn_ff_mult
    xattn = 2 * n * h * h * 2 + 2 * v * h * 2 * h + 4 * n * v * h + 2 * 2 * n * h * m * h
    xlayers = set(cfg.cross_attn_layers())
    ends = cfg.segment_ends()[: num_exits or None]
    out, total = [], 0.0
    for i in range(ends[-1]):
        total += layer + (xattn if i in xlayers else 0)
        if i + 1 in ends:
            out.append(float(total))
    return out


def _lstm_flops(lstm: torch.nn.LSTM) -> float:
    total = 0.0
    for layer in range(lstm.num_layers):
        inp = lstm.input_size if layer == 0 else lstm.hidden_size
        total += 2 * 4 * lstm.hidden_size * (inp + lstm.hidden_size)
    return total


def _count(fn: Callable[[], Any]) -> tuple[float, Any]:
    with FlopCounterMode(display=False) as counter:
        out = fn()
    return float(counter.get_total_flops()), out


def example_inputs(model: MultiExitPolicy, device: torch.device, text_len: int | None = None, batch: int = 1,
                   seed: int = 0) -> dict[str, Any]:
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    n = text_len or cfg.lm.max_text_len
    s = cfg.image_size
    ids = torch.randint(2, cfg.lm.vocab_size, (batch, n), generator=g)
    proprio = torch.rand(batch, cfg.proprio_dim, generator=g) * 2 - 1 if cfg.proprio_dim else None
    return {
        "images": {c: torch.rand(batch, 3, s, s, generator=g).to(device) for c in cfg.cameras},
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "proprio": None if proprio is None else proprio.to(device),
    }


def count_flops(model: MultiExitPolicy, text_len: int | None = None) -> dict[str, Any]:
    """Counted FLOPs: encode, each segment (not cumulative) and one head step."""
    device = next(model.parameters()).device
    inp = example_inputs(model, device, text_len)
    # grad mode on: FlopCounterMode's module tracker hooks into autograd and fails under no_grad/inference_mode
    with torch.enable_grad():
        enc, state = _count(lambda: model.encode(**inp))
        segs = []
        for _ in range(model.num_exits):
            f, state = _count(functools.partial(model.run_segment, state))
            segs.append(f)
        proprio = None if inp["proprio"] is None else inp["proprio"].unsqueeze(1)
        feats = state.feature.unsqueeze(1)
        head, _ = _count(lambda: model.head(feats, proprio))  # one step per exit tried
        past = model.config.head.past_steps  # history mode: once per step, counted with encode
        if past:
            hist, _ = _count(lambda: model.head.history_state(
                feats.expand(-1, past, -1), None if proprio is None else proprio.expand(-1, past, -1)))
            enc += hist + past * _lstm_flops(model.head.lstm)
        head += _lstm_flops(model.head.lstm)
        enc += model.config.head.commit_head_steps * head  # the step's commit (PolicyRunner.commit)
    return {"encode": enc, "segments": segs, "head": head}


# --- memory -----------------------------------------------------------------------------------


def first_exit_needing(name: str, segment_ends: list[int]) -> int:
    """The 1-based exit from which a parameter/buffer is resident (1 = shared prefix and head)."""
    m = _PER_LAYER.match(name)
    if m:
        layer = int(m.group(1))
        return next(k + 1 for k, end in enumerate(segment_ends) if layer < end)
    m = _PER_EXIT.match(name)
    return int(m.group(1)) + 1 if m else 1


def resident_per_exit(model: MultiExitPolicy) -> tuple[list[int], list[int]]:
    """(params, bytes) resident when loaded up to each exit k, params + buffers counted for bytes."""
    n = model.num_exits
    params, nbytes = [0] * n, [0] * n
    tensors: list[tuple[str, torch.Tensor, bool]] = [(name, t, True) for name, t in model.named_parameters()]
    tensors += [(name, t, False) for name, t in model.named_buffers()]
    for name, t, is_param in tensors:
        k = first_exit_needing(name, model.segment_ends)
        for j in range(k - 1, n):
            if is_param:
                params[j] += t.numel()
            nbytes[j] += t.numel() * t.element_size()
    return params, nbytes


# --- latency ----------------------------------------------------------------------------------


def _stats(samples: list[float]) -> LatencyStats:
    arr = np.asarray(samples) * 1e3
    return LatencyStats(float(np.median(arr)), float(np.percentile(arr, 95)), float(np.percentile(arr, 99)), len(arr))


def measure_latency(model: MultiExitPolicy, warmup: int = 3, iters: int = 20
                    ) -> tuple[LatencyStats, list[LatencyStats], LatencyStats]:
    device = next(model.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    inp = example_inputs(model, device)
    proprio = None if inp["proprio"] is None else inp["proprio"].unsqueeze(1).to(model.camera_embed.dtype)
    enc_t: list[float] = []
    seg_t: list[list[float]] = [[] for _ in range(model.num_exits)]
    head_t: list[float] = []
    past = model.config.head.past_steps
    past_feats = torch.zeros(1, past, model.head.inputs.feature_dim, device=device, dtype=model.camera_embed.dtype)
    past_proprio = None if proprio is None else proprio.expand(-1, past, -1)
    commit_steps = model.config.head.commit_head_steps
    commit_feats = torch.zeros(1, 1, model.head.inputs.feature_dim, device=device, dtype=model.camera_embed.dtype)
    with torch.inference_mode():
        for it in range(warmup + iters):
            keep = it >= warmup
            t0 = time.perf_counter()
            state = model.encode(**inp)
            if past:  # history mode: the past window's head state, once per step (PolicyRunner.begin_step)
                model.head.history_state(past_feats, past_proprio)
            for _ in range(commit_steps):  # the commit's head step (PolicyRunner.commit), charged to encode
                model.head(commit_feats, proprio)
            sync()
            t1 = time.perf_counter()
            if keep:
                enc_t.append(t1 - t0)
            for k in range(model.num_exits):
                t0 = time.perf_counter()
                state = model.run_segment(state)
                sync()
                if keep:
                    seg_t[k].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert state.feature is not None  # run_segment always sets it
            model.head(state.feature.unsqueeze(1), proprio)
            sync()
            if keep:
                head_t.append(time.perf_counter() - t0)
    return _stats(enc_t), [_stats(s) for s in seg_t], _stats(head_t)


# --- the profile ------------------------------------------------------------------------------


def machine_id() -> str:
    """This machine as measured latencies depend on it: host, processor, torch's CPU threads."""
    import platform

    return f"{platform.node()}; {platform.processor() or platform.machine()}; {torch.get_num_threads()} threads"


def profile_policy(model: MultiExitPolicy, device: str | torch.device | None = None, warmup: int = 3,
                   iters: int = 20, text_len: int | None = None, latency: bool = True) -> CostProfile:
    """Per-exit cumulative FLOPs, resident params/bytes and (if ``latency``) measured timings on ``device``."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"profile_policy needs iters >= 1 and warmup >= 0, got iters={iters} warmup={warmup}")
    if device is not None:
        model.to(device)
    model.eval()
    dev = next(model.parameters()).device
    flops = count_flops(model, text_len)
    llm = np.cumsum(flops["segments"])
    exits = np.arange(1, model.num_exits + 1)
    total = flops["encode"] + llm + exits * flops["head"]  # one head step per exit tried
    params, nbytes = resident_per_exit(model)
    enc = seg = head = None
    if latency:
        enc, seg, head = measure_latency(model, warmup, iters)
    return CostProfile(
        llm_gflops=[float(x) / 1e9 for x in llm],
        total_gflops=[float(x) / 1e9 for x in total],
        params=params,
        weight_bytes=nbytes,
        segment_latency=seg or [],
        encode_latency=enc,
        head_latency=head,
        device=dev.type,
        dtype=model.weights_dtype,
        machine=machine_id() if latency else "",
    )


def quantize_int8(model: MultiExitPolicy) -> MultiExitPolicy:
    """Dynamic int8 quantization of every nn.Linear (CPU inference only); returns a new module."""
    import copy

    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(copy.deepcopy(model).cpu().eval(), {torch.nn.Linear}, dtype=torch.qint8)


# --- CLI --------------------------------------------------------------------------------------


def cli_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="deer-vla profile", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=checkpoint_argument, required=True, help=CHECKPOINT_HELP)
    p.add_argument("--device", default="cpu", type=device_arg, help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--max-exit", type=positive_int, default=None)
    p.add_argument("--warmup", type=warmup_count, default=3)
    p.add_argument("--iters", type=repeat_count, default=20)
    p.add_argument("--threads", type=thread_count, default=1,
                   help="torch CPU threads (default 1: on a shared CPU more threads oversubscribe and time noise)")
    p.add_argument("--json", type=path_argument, default=None,
                   help="write the CostProfile to this file (deer-vla calibrate saves one into the checkpoint)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from deer_vla.model.checkpoint import CheckpointError, load_checkpoint

    if args.device == "cuda" and not torch.cuda.is_available():
        print("deer-vla profile: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    if args.dtype != "float32" and args.device == "cpu":
        print("deer-vla profile: bfloat16/float16 are profiled on CUDA only", file=sys.stderr)
        return 2
    problem = clobbers_input(Path(args.json), [args.checkpoint], allowed=[args.checkpoint / "profile.json"]) \
        if args.json else None
    if problem:
        print(f"deer-vla profile: --json {problem}", file=sys.stderr)
        return 2
    try:
        model, _ = load_checkpoint(args.checkpoint, max_exit=args.max_exit, device=args.device)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:  # ValueError: a tokenizer that does not load
        print(f"deer-vla profile: {exc}", file=sys.stderr)
        return 2
    model.to(getattr(torch, args.dtype))
    prof = profile_policy(model, warmup=args.warmup, iters=args.iters)
    print(f"{'exit':>4} {'LLM GFLOPs':>11} {'total GFLOPs':>12} {'params':>10} {'MB':>8} {'seg ms p50':>10} "
          f"{'seg ms p95':>10}")
    for k in range(prof.num_exits):
        s = prof.segment_latency[k]
        print(f"{k + 1:>4} {prof.llm_gflops[k]:>11.4f} {prof.total_gflops[k]:>12.4f} {prof.params[k]:>10d} "
              f"{prof.weight_bytes[k] / 1e6:>8.2f} {s.median_ms:>10.3f} {s.p95_ms:>10.3f}")
    if args.json:
        try:
            atomic_write_text(Path(args.json), json.dumps(prof.to_dict(), indent=2))
        except OSError as exc:
            print(f"deer-vla profile: --json {args.json} not written: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
