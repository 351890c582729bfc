"""Checkpoint directory: config.json (PolicyConfig) + model.safetensors + tokenizer files (+ extra.json).

No pickle anywhere. ``load_checkpoint(dir, max_exit=k)`` builds a model with
only the parts up to exit k and reads only their tensors from the file, so
the deeper segments never occupy memory. Every way a checkpoint can be
malformed (missing file, bad/unknown config keys, missing/unexpected
tensors, wrong shapes) raises CheckpointError naming the problem.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from deer_vla.model.config import PolicyConfig, format_validation_error
from deer_vla.model.policy import MultiExitPolicy

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
EXTRA_FILE = "extra.json"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded; the message names the file/key at fault."""


def save_checkpoint(model: MultiExitPolicy, tokenizer: Any, out_dir: str | Path, extra: dict | None = None) -> Path:
    from safetensors.torch import save_file

    out = Path(out_dir)
    if model.num_exits != model.config.num_exits:
        raise CheckpointError(f"refusing to save a partially loaded model ({model.num_exits} of "
                              f"{model.config.num_exits} exits): the checkpoint would be incomplete")
    check_vocab(model, tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    (out / CONFIG_FILE).write_text(model.config.model_dump_json(indent=2))
    tokenizer.save_pretrained(str(out))
    if extra is not None:
        (out / EXTRA_FILE).write_text(json.dumps(extra, indent=2))
    return out


def check_vocab(model: MultiExitPolicy, tokenizer: Any) -> None:
    vocab = model.config.token_vocab_size
    where = "text.vocab_size" if model.config.text is not None else "lm.hf_config.vocab_size"
    if len(tokenizer) > vocab:
        raise CheckpointError(f"tokenizer has {len(tokenizer)} tokens but the token vocabulary ({where}) "
                              f"is {vocab}; raise vocab_size or use a smaller tokenizer")


def read_config(ckpt: str | Path) -> PolicyConfig:
    path = Path(ckpt) / CONFIG_FILE
    if not Path(ckpt).is_dir():
        raise CheckpointError(f"checkpoint directory not found: {ckpt}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {ckpt} has no {CONFIG_FILE}")
    try:
        return PolicyConfig.model_validate_json(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:  # garbage bytes: name the file, not just the codec
        raise CheckpointError(f"invalid {path}: not UTF-8 JSON text ({exc})") from exc
    except ValidationError as exc:
        raise CheckpointError(f"invalid {path}: {format_validation_error(exc)}") from exc


def read_extra(ckpt: str | Path) -> dict | None:
    path = Path(ckpt) / EXTRA_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def load_checkpoint(ckpt: str | Path, max_exit: int | None = None, device: str | torch.device = "cpu"
                    ) -> tuple[MultiExitPolicy, Any]:
    """-> (model in eval mode on ``device``, tokenizer); only exits 1..max_exit are built and read."""
    from safetensors import safe_open

    from deer_vla.model.tokenizer import load_tokenizer

    root = Path(ckpt)
    cfg = read_config(root)
    weights = root / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {root} has no {WEIGHTS_FILE}")
    if not any((root / f).is_file() for f in _TOKENIZER_FILES):
        raise CheckpointError(f"checkpoint {root} has no tokenizer files ({' or '.join(_TOKENIZER_FILES)})")
    if max_exit is not None and not 1 <= max_exit <= cfg.num_exits:
        raise CheckpointError(f"max_exit={max_exit} outside 1..{cfg.num_exits} (exits in {root / CONFIG_FILE})")

    with torch.device("meta"):
        full_shapes = {k: tuple(v.shape) for k, v in MultiExitPolicy(cfg).state_dict().items()}
    from deer_vla.model.lean_load import file_refs, materialize, parameters_on_meta
    from deer_vla.model.text import TextSourceError

    try:
        with parameters_on_meta():  # no storage until the file's tensors are assigned: one copy in memory
            model = MultiExitPolicy(cfg, max_exit=max_exit)
    except TextSourceError as exc:  # frozen token table read from its source: name the incompatibility
        raise CheckpointError(f"{root / CONFIG_FILE} (text front end): {exc}") from exc
    wanted = model.state_dict()
    with safe_open(str(weights), framework="pt", device="cpu") as f:
        keys = set(f.keys())
        missing = sorted(set(full_shapes) - keys)
        unexpected = sorted(keys - set(full_shapes))
        if missing or unexpected:
            raise CheckpointError(f"{weights} does not match {CONFIG_FILE}: missing tensors {missing[:5]}"
                                  f"{'...' if len(missing) > 5 else ''}, unexpected tensors {unexpected[:5]}"
                                  f"{'...' if len(unexpected) > 5 else ''}")
        for key in full_shapes:
            shape = tuple(f.get_slice(key).get_shape())
            if shape != full_shapes[key]:
                raise CheckpointError(f"{weights}: tensor '{key}' has shape {shape}, config expects {full_shapes[key]}")
    materialize(model, file_refs(weights, list(wanted)), device=device)
    tokenizer = load_tokenizer(root)
    check_vocab(model, tokenizer)
    return model.to(device).eval(), tokenizer
