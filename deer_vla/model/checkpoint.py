"""Save a MultiExitPolicy + tokenizer to a checkpoint directory and load it back (layout: ``checkpoint_dir``).

No pickle anywhere. ``load_checkpoint(dir, max_exit=k)`` builds a model with
only the parts up to exit k and reads only their tensors from the file, so
the deeper segments never occupy memory. Every way a checkpoint can be
malformed (missing file, bad/unknown config keys, missing/unexpected
tensors, wrong shapes) raises CheckpointError naming the problem.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from deer_vla.core.atomic_file import atomic_write_with
from deer_vla.model.checkpoint_dir import CheckpointDir, CheckpointError
from deer_vla.model.config import PolicyConfig
from deer_vla.model.policy import MultiExitPolicy

__all__ = ["CheckpointDir", "CheckpointError", "check_vocab", "load_checkpoint", "read_config", "read_extra",
           "save_checkpoint", "transfer_weights"]


def save_checkpoint(model: MultiExitPolicy, tokenizer: Any, out_dir: str | Path, extra: dict | None = None) -> Path:
    from safetensors.torch import save_file

    out = CheckpointDir(out_dir)
    if model.num_exits != model.config.num_exits:
        raise CheckpointError(f"refusing to save a partially loaded model ({model.num_exits} of "
                              f"{model.config.num_exits} exits): the checkpoint would be incomplete")
    check_vocab(model, tokenizer)
    out.root.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    # written whole or not at all, with the mode a new file in the folder gets (save_file alone makes it 0600)
    atomic_write_with(out.weights_path, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    out.write_config(model.config)
    try:
        tokenizer.save_pretrained(str(out.root))
    except OSError:
        raise
    except Exception as exc:  # the tokenizers library's own error for a full disk: a plain Exception
        raise OSError(f"writing the tokenizer in {out.root} failed: {exc}") from exc
    if extra is not None:
        out.write_extra(extra)
    return out.root


def check_vocab(model: MultiExitPolicy, tokenizer: Any) -> None:
    vocab = model.config.token_vocab_size
    where = "text.vocab_size" if model.config.text is not None else "lm.hf_config.vocab_size"
    if len(tokenizer) > vocab:
        raise CheckpointError(f"tokenizer has {len(tokenizer)} tokens but the token vocabulary ({where}) "
                              f"is {vocab}; raise vocab_size or use a smaller tokenizer")


def read_config(ckpt: str | Path) -> PolicyConfig:
    return CheckpointDir(ckpt).read_config()


def read_extra(ckpt: str | Path) -> dict | None:
    return CheckpointDir(ckpt).read_extra()


def load_checkpoint(ckpt: str | Path, max_exit: int | None = None, device: str | torch.device = "cpu"
                    ) -> tuple[MultiExitPolicy, Any]:
    """-> (model in eval mode on ``device``, tokenizer); only exits 1..max_exit are built and read."""
    from safetensors import SafetensorError, safe_open

    from deer_vla.model.tokenizer import load_tokenizer

    ckpt_dir = CheckpointDir(ckpt)
    cfg = ckpt_dir.check()
    root, weights, config_file = ckpt_dir.root, ckpt_dir.weights_path, ckpt_dir.config_path
    if max_exit is not None and not 1 <= max_exit <= cfg.num_exits:
        raise CheckpointError(f"max_exit={max_exit} outside 1..{cfg.num_exits} (exits in {config_file})")

    from deer_vla.model.lean_load import file_refs, materialize, parameters_on_meta
    from deer_vla.model.text import TextSourceError

    try:
        with torch.device("meta"):
            full_shapes = {k: tuple(v.shape) for k, v in MultiExitPolicy(cfg).state_dict().items()}
    except TextSourceError as exc:  # frozen token table read from its source: name the incompatibility
        raise CheckpointError(f"{config_file} (text front end): {exc}") from exc
    except (RuntimeError, TypeError, ValueError, ArithmeticError) as exc:  # sizes no model can be built with
        raise CheckpointError(f"{config_file}: no model can be built from it: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    try:
        # the file's tensors against the config's shapes first: the build below still allocates each parameter
        # before moving it to meta, so a config that asks for a huge one must be refused before it is built
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            keys = set(f.keys())
            missing = sorted(set(full_shapes) - keys)
            unexpected = sorted(keys - set(full_shapes))
            if missing or unexpected:
                raise CheckpointError(f"{weights} does not match {config_file.name}: missing tensors "
                                      f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected tensors "
                                      f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
            for key in full_shapes:
                shape = tuple(f.get_slice(key).get_shape())
                if shape != full_shapes[key]:
                    raise CheckpointError(f"{weights}: tensor '{key}' has shape {shape}, config expects "
                                          f"{full_shapes[key]}")
        try:
            with parameters_on_meta():  # no storage until the file's tensors are assigned: one copy in memory
                model = MultiExitPolicy(cfg, max_exit=max_exit)
        except TextSourceError as exc:
            raise CheckpointError(f"{config_file} (text front end): {exc}") from exc
        materialize(model, file_refs(weights, list(model.state_dict())), device=device)
    except (KeyError, ValueError) as exc:  # lean_load's: a tensor of the wrong type, or not finite
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(str(exc.args[0]) if exc.args else str(exc)) from exc
    except SafetensorError as exc:  # empty, truncated or not a safetensors file: the library names no file
        raise CheckpointError(f"{weights} cannot be read as safetensors ({exc}): a truncated copy or another "
                              "file; copy the checkpoint again") from exc
    tokenizer = load_tokenizer(root)
    check_vocab(model, tokenizer)
    return model.to(device).eval(), tokenizer


def transfer_weights(source: MultiExitPolicy, target: MultiExitPolicy, generator: torch.Generator | None = None
                     ) -> dict[str, list[str]]:
    """Start ``target`` (a changed architecture) from ``source``'s trained weights, in place.

    Tensors of equal shape are copied. The resampler's positional table over the vision tower's patch grid
    is resized to a new grid (a new image size, or a CNN with another number of stride-2 stages) by
    interpolation over the grid (as ViTs do for a new resolution), so every position keeps the embedding
    of the place it covers (never grown row by row, which would put positions in the wrong places). A
    tensor that only grows along its first axis (more resampler latents, more camera embeddings) keeps its
    trained rows, and its new rows start as copies of trained ones plus a little noise so they can diverge.
    Tensors new to ``target`` keep their fresh init; tensors ``target`` lacks (e.g. fewer exits) are
    dropped. Any other shape change cannot carry weights over and raises CheckpointError naming the
    tensors. Returns {"copied", "resized", "grown", "new", "dropped"} key lists.
    """
    src, dst = source.state_dict(), target.state_dict()
    report: dict[str, list[str]] = {"copied": [], "resized": [], "grown": [], "new": [],
                                    "dropped": sorted(set(src) - set(dst))}
    bad = []
    out = {}
    for key, fresh in dst.items():
        old = src.get(key)
        if old is None:
            report["new"].append(key)
            continue
        if old.shape == fresh.shape:
            out[key] = old.detach().clone()
            report["copied"].append(key)
        elif key == PATCH_POSITIONS and _square_side(old.shape[0]) and _square_side(fresh.shape[0]) \
                and old.shape[1:] == fresh.shape[1:]:
            out[key] = resize_patch_grid(old.detach(), _square_side(fresh.shape[0]))
            report["resized"].append(key)
        elif old.dim() == fresh.dim() >= 1 and old.shape[1:] == fresh.shape[1:] and fresh.shape[0] > old.shape[0]:
            n_old, n_new = old.shape[0], fresh.shape[0]
            picks = torch.arange(n_new - n_old) % n_old
            noise = torch.randn((n_new - n_old, *old.shape[1:]), generator=generator, dtype=torch.float32)
            extra = old[picks] + noise.to(old.dtype) * 0.1 * old.float().std().clamp_min(1e-6).to(old.dtype)
            out[key] = torch.cat([old.detach(), extra.detach()])
            report["grown"].append(key)
        else:
            bad.append(f"{key}: {tuple(old.shape)} -> {tuple(fresh.shape)}")
    if bad:
        raise CheckpointError(f"cannot carry weights into the changed architecture ({len(bad)} tensors change shape "
                              f"other than growing their first axis): {bad[:5]}{'...' if len(bad) > 5 else ''}")
    target.load_state_dict(out, strict=False)
    return report


# the resampler's learned position of each patch of the vision tower's square grid (row-major)
PATCH_POSITIONS = "resampler.pos"


def _square_side(n: int) -> int:
    """The side of an n-patch square grid, 0 when n is not a square (a tower with a class token)."""
    side = int(round(n ** 0.5))
    return side if side * side == n and side > 0 else 0


def resize_patch_grid(table: torch.Tensor, side: int) -> torch.Tensor:
    """(g*g, D) per-patch embeddings of a g x g grid -> (side*side, D): bilinear interpolation over the grid
    to a finer one, the mean over each new patch's area to a coarser one."""
    old_side = _square_side(table.shape[0])
    if not old_side:
        raise ValueError(f"{table.shape[0]} positions are not a square grid")
    grid = table.float().T.reshape(1, table.shape[1], old_side, old_side)
    if side >= old_side:
        resized = torch.nn.functional.interpolate(grid, size=(side, side), mode="bilinear", align_corners=False)
    else:
        resized = torch.nn.functional.interpolate(grid, size=(side, side), mode="area")
    return resized.reshape(table.shape[1], side * side).T.contiguous().to(table.dtype)
