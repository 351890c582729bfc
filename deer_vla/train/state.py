"""Resumable training state without pickle: tensors in safetensors, the rest in JSON.

A checkpoint step directory holds the model (save_checkpoint format) plus
train_state.safetensors (optimizer moments, RNG states) and train_state.json
(step, stage, optimizer param groups, scheduler state, config). Directories
are written under a temporary name and renamed, so a crash never leaves a
half-written "latest" checkpoint.
"""
from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from deer_vla.core.atomic_file import atomic_write_with
from deer_vla.core.json_text import JsonTextError, read_json_file

STATE_TENSORS = "train_state.safetensors"
STATE_JSON = "train_state.json"
STEP_DIR = re.compile(r"^step_(\d{8})$")


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return None  # callables (lr lambdas) are rebuilt from the config, not stored


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into named tensors and a JSON-able remainder."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in sd["state"].items():
        for key, val in pstate.items():
            if isinstance(val, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = val.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = _json_safe(val)
    return tensors, {"param_groups": _json_safe(sd["param_groups"]), "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        if not name.startswith("optim."):
            continue
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = val
    for pid, vals in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(vals)
    groups = meta["param_groups"]
    current = opt.state_dict()["param_groups"]
    if len(groups) != len(current) or any(len(a["params"]) != len(b["params"]) for a, b in zip(groups, current)):
        raise ValueError("saved optimizer state does not match the model's trainable parameters")
    opt.load_state_dict({"state": state, "param_groups": groups})


def rng_tensors() -> dict[str, torch.Tensor]:
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["rng.cuda"] = torch.cuda.get_rng_state()
    return out


def rng_json() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    # numpy's global RNG is not used by training (data randomness is keyed by (seed, epoch, index))
    return {"python": [version, list(internal), gauss]}


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    py = meta.get("python")
    if py:
        random.setstate((py[0], tuple(py[1]), py[2]))


def save_train_state(
    directory: Path, step: int, stage: str, optimizer: torch.optim.Optimizer, scheduler: Any, extra: dict[str, Any]
) -> None:
    tensors, opt_meta = optimizer_to_flat(optimizer)
    tensors.update(rng_tensors())
    atomic_write_with(directory / STATE_TENSORS, lambda tmp: save_file(tensors, str(tmp)))  # not 0600
    meta = {
        "step": step,
        "stage": stage,
        "optimizer": opt_meta,
        "scheduler": _json_safe(scheduler.state_dict()) if scheduler is not None else None,
        "rng": rng_json(),
        **extra,
    }
    (directory / STATE_JSON).write_text(json.dumps(meta, indent=1))


def load_train_state(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tpath, jpath = directory / STATE_TENSORS, directory / STATE_JSON
    for p in (tpath, jpath):
        if not p.is_file():
            raise FileNotFoundError(f"resume state file missing: {p}")
    try:
        meta = read_json_file(jpath)
    except JsonTextError as exc:
        raise ValueError(f"resume state {jpath} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"resume state {jpath} is not a JSON object")
    step = meta.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:  # -5 was a numpy error far from here
        raise ValueError(f"resume state {jpath}: 'step' must be an integer >= 0, got {str(step)[:40]!r}; resume "
                         f"from an earlier checkpoint by removing {directory}")
    try:
        tensors = load_file(str(tpath))
    except SafetensorError as exc:  # empty or truncated (a crash while it was written): name the file
        raise ValueError(f"resume state {tpath} cannot be read as safetensors ({exc}); resume from an earlier "
                         f"checkpoint by removing {directory}") from None
    return tensors, meta


def latest_checkpoint(root: Path) -> Path | None:
    """The highest complete step_XXXXXXXX directory under root/checkpoints, or None."""
    ckdir = root / "checkpoints"
    if not ckdir.is_dir():
        return None
    found = sorted(
        (int(m.group(1)), p)
        for p in ckdir.iterdir()
        if (m := STEP_DIR.match(p.name)) and (p / STATE_JSON).is_file() and (p / STATE_TENSORS).is_file()
    )
    return found[-1][1] if found else None


def step_dir(root: Path, step: int) -> Path:
    return root / "checkpoints" / f"step_{step:08d}"


def commit_dir(tmp: Path, final: Path) -> None:
    """Atomically replace ``final`` by ``tmp`` (same filesystem)."""
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def prune_checkpoints(root: Path, keep: int) -> None:
    ckdir = root / "checkpoints"
    if not ckdir.is_dir():
        return
    steps = sorted(p for p in ckdir.iterdir() if STEP_DIR.match(p.name))
    for p in steps[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
