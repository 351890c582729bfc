"""Lean loading: build a model without parameter storage, then fill it straight from safetensors files.

Building a model eagerly and then copying a checkpoint into it holds two
copies of the weights at once (the random init and the file's tensors). Here
the model is built inside ``parameters_on_meta()`` (parameters on the meta
device, no storage) and ``materialize`` assigns the file's tensors to it
(``load_state_dict(..., assign=True)``), so a load holds one copy:

- CPU: tensors are read with ``pread`` into memory the process owns (no file
  mapping stays behind, so rewriting the checkpoint file later cannot touch a
  running model, and writes to the weights never copy-on-write a mapping);
- CUDA and other devices: ``safe_open(device=...)`` puts each tensor straight
  on the device, with no full CPU copy of the model.

Buffers are still built normally, so buffers that are computed rather than
stored (rotary ``inv_freq``, CLIP's ``position_ids``, image mean/std, a frozen
token table read from its source) are exactly what an eager build computes.
Tied parameters stay tied: one tensor is read and every name points to it.
"""
from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Modules built in this thread inside the block get their parameters on the meta device.

    Buffers are created as usual (they are small and some are computed, not stored).
    Like accelerate's ``init_empty_weights(include_buffers=False)``, through torch's
    public parameter-registration hook; other threads are not affected.
    """
    owner = threading.get_ident()

    def to_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> nn.Parameter | None:
        if param is None or threading.get_ident() != owner or param.is_meta or type(param) is not nn.Parameter:
            return None  # already meta (a tied weight registered again keeps its identity), or not ours to move
        return nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    # torch annotates the hook as returning None, but its documented contract (and implementation) use a
    # returned Parameter as the replacement: that is how the weights land on meta
    handle = nn.modules.module.register_module_parameter_registration_hook(cast(Callable[..., None], to_meta))
    try:
        yield
    finally:
        handle.remove()


@dataclass(frozen=True)
class TensorRef:
    """Where one tensor of a module lives: a safetensors file and the tensor's name in it."""

    file: Path
    key: str


def tied_names(module: nn.Module) -> dict[str, str]:
    """alias -> first name, for parameters registered under more than one name (tied weights)."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        if id(p) in first:
            aliases[name] = first[id(p)]
        else:
            first[id(p)] = name
    return aliases


def _tensor(module: nn.Module, name: str) -> torch.Tensor:
    owner, _, attr = name.rpartition(".")
    sub = module.get_submodule(owner) if owner else module
    value = getattr(sub, attr, None)
    if not isinstance(value, torch.Tensor):
        raise KeyError(f"{type(module).__name__} has no parameter or buffer '{name}'")
    return value


def materialize(module: nn.Module, refs: Mapping[str, TensorRef], device: str | torch.device = "cpu") -> None:
    """Assign the tensors ``refs`` names (module name -> file + key) to ``module``, read on ``device``.

    Each tensor takes the dtype of the module's (meta or real) tensor it replaces,
    and keeps its ``requires_grad``. Module tensors not named in ``refs`` are left
    as they are; afterwards no parameter or buffer may still be on the meta device.
    """
    dev = torch.device(device)
    aliases = tied_names(module)
    by_file: dict[Path, dict[str, str]] = {}  # file -> {module name (canonical): key in file}
    for name, ref in refs.items():
        by_file.setdefault(Path(ref.file), {}).setdefault(aliases.get(name, name), ref.key)
    state: dict[str, torch.Tensor] = {}
    # pread on CPU: owned memory, nothing stays mapped; elsewhere the device's own fast path
    backend = "pread" if dev.type == "cpu" else "mmap"
    for file, names in by_file.items():
        with open_safetensors(file, device=str(dev), backend=backend) as f:
            available = set(f.keys())
            absent = sorted(key for key in names.values() if key not in available)
            if absent:
                raise KeyError(f"{file} lacks tensor(s) {absent[:5]}{'...' if len(absent) > 5 else ''}")
            for name, key in names.items():
                target = _tensor(module, name)
                tensor = f.get_tensor(key)
                if tuple(tensor.shape) != tuple(target.shape):
                    raise ValueError(f"{file}: tensor '{key}' has shape {tuple(tensor.shape)}, "
                                     f"the model's '{name}' is {tuple(target.shape)}")
                if target.is_floating_point() and not tensor.is_floating_point():
                    raise ValueError(f"{file}: tensor '{key}' is {tensor.dtype}, the model's '{name}' holds floats")
                # an infinite weight passes the runner's finite-action check (tanh(inf) = 1) and drives every
                # action to full scale, and so does a huge finite one (1e30): refused here, as NaN is
                problem = magnitude_problem(tensor) if tensor.is_floating_point() else None
                if problem is not None:
                    raise ValueError(f"{file}: tensor '{key}' {problem}")
                state[name] = tensor.to(target.dtype)  # no copy when the dtypes already agree
    result = module.load_state_dict(state, strict=False, assign=True)
    if result.unexpected_keys:  # every name came from the module itself, so this is a bug, not a bad file
        raise KeyError(f"not tensors of {type(module).__name__}: {result.unexpected_keys[:5]}")
    for alias, canonical in aliases.items():  # assign gave the canonical name a new Parameter: re-tie
        if canonical in state:
            owner, _, attr = alias.rpartition(".")
            setattr(module.get_submodule(owner) if owner else module, attr, _tensor(module, canonical))
    empty = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if empty:
        raise ValueError(f"{len(empty)} tensor(s) of {type(module).__name__} were not loaded and have no "
                         f"values: {empty[:5]}{'...' if len(empty) > 5 else ''}")


@contextmanager
def open_safetensors(file: str | Path, **kwargs: str) -> Iterator[Any]:
    """``safe_open(file, framework="pt", **kwargs)``; a file it cannot read is a ValueError naming it (safetensors'
    own error names no file: a git-lfs pointer left in place of the weights gave "header too large")."""
    from safetensors import safe_open

    if Path(file).is_file() and not os.access(file, os.R_OK):  # safetensors says "No such file" for EACCES
        raise ValueError(f"{file}: permission denied (mode {Path(file).stat().st_mode & 0o777:o}, owner uid "
                         f"{Path(file).stat().st_uid}): make it readable to this user, e.g. chmod a+r")
    try:
        handle = safe_open(str(file), framework="pt", **kwargs)
    except Exception as exc:  # SafetensorError is an Exception of its own, not an OSError or ValueError
        if isinstance(exc, FileNotFoundError):
            raise
        hint = (" (a git-lfs pointer, not the weights: git lfs pull)"
                if Path(file).is_file() and Path(file).stat().st_size < 1024 else "")
        raise ValueError(f"{file}: not a readable safetensors file: {exc}{hint}") from exc
    with handle as f:
        yield f


# no trained weight comes near this (the shipped checkpoints' largest magnitude is 7.6; pretrained transformers'
# outliers are in the tens to hundreds): beyond it a file is damaged or its training diverged
MAX_WEIGHT_MAGNITUDE = 1e4


def magnitude_problem(tensor: torch.Tensor) -> str | None:
    """Why a float tensor cannot be a trained weight (NaN, infinity, a magnitude over MAX_WEIGHT_MAGNITUDE),
    as the end of a sentence about it, or None. Its extremes, not torch.isfinite: a reduction adds no
    tensor-sized temporary to a load's peak memory (min and max propagate NaN, and are infinite at an inf)."""
    if tensor.numel() == 0:
        return None
    lo, hi = (float(v) for v in torch.aminmax(tensor.detach().reshape(-1)))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "holds NaN or infinite values: a damaged or diverged file"
    largest = max(-lo, hi)
    if largest > MAX_WEIGHT_MAGNITUDE:
        return (f"holds a value of magnitude {largest:.3g}, over the {MAX_WEIGHT_MAGNITUDE:g} no trained weight "
                "reaches: a damaged or diverged file (such a weight saturates every action)")
    return None


def file_refs(file: str | Path, names: Mapping[str, str] | list[str]) -> dict[str, TensorRef]:
    """Refs into one safetensors file: a list of names stored under the same name, or {module name: key}."""
    mapping = names if isinstance(names, Mapping) else {n: n for n in names}
    return {name: TensorRef(Path(file), key) for name, key in mapping.items()}
