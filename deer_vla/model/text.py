"""Pretrained instruction front end: subword tokenizer + token-embedding table, read from local files only.

Two sources, one code path:

- ``"wordllama"``: the Llama-2 BPE tokenizer (32 000 tokens, byte fallback, so
  no word is ever unknown) and the 256-d token embeddings distilled from large
  LMs that ship *inside* the pinned ``wordllama`` wheel
  (``wordllama/tokenizers/l2_supercat_tokenizer_config.json``,
  ``wordllama/weights/l2_supercat_256.safetensors``). The package is located
  with ``importlib.util.find_spec`` and never imported.
- a local Hugging Face causal-LM directory (Llama, Qwen2, GPT-2, MPT, ...):
  its tokenizer and its input-embedding matrix, read tensor by tensor from
  its safetensors files (the rest of the LM is never loaded).

Instructions are NFKC-normalised and lower-cased before the source's own
normalisation, so "Open the Drawer" and "open the drawer" are the same
tokens. The table is projected to the decoder width by a trained linear map
(``TokenEmbedder``); it is frozen unless ``TextConfig.trainable``.
"""
from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deer_vla.core.json_text import parse_json
from deer_vla.model.config import TextConfig

WORDLLAMA = "wordllama"
_WORDLLAMA_TOKENIZER = ("tokenizers", "l2_supercat_tokenizer_config.json")
_WORDLLAMA_TABLE = ("weights", "l2_supercat_256.safetensors")
# names of an HF LM's input-embedding tensor, by family (checked in this order)
_EMBED_KEY_SUFFIXES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "tok_embeddings.weight")


class TextSourceError(ValueError):
    """A text source that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class TextSource:
    """Where a tokenizer and its token-embedding table live on disk."""

    name: str  # "wordllama" or the HF directory as given
    tokenizer_file: Path | None  # a `tokenizers` JSON (wordllama); None: an HF tokenizer directory
    tokenizer_dir: Path | None
    table_files: tuple[Path, ...]  # safetensors file(s) holding the table
    table_key: str | None  # tensor name; None: find it by suffix


def _wordllama_root() -> Path:
    spec = importlib.util.find_spec(WORDLLAMA)
    if spec is None or not spec.submodule_search_locations:
        raise TextSourceError("text source 'wordllama' needs the wordllama package (pinned in "
                              "requirements/base.txt); it is not installed in this environment")
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_source(source: str) -> TextSource:
    """'wordllama' or a local HF LM directory -> its files (checked to exist)."""
    if not isinstance(source, str) or not source.strip():
        raise TextSourceError(f"text source must be 'wordllama' or a local Hugging Face LM directory, got {source!r}")
    if source == WORDLLAMA:
        root = _wordllama_root()
        tok, table = root.joinpath(*_WORDLLAMA_TOKENIZER), root.joinpath(*_WORDLLAMA_TABLE)
        for f in (tok, table):
            if not f.is_file():
                raise TextSourceError(f"wordllama is installed at {root} but lacks {f.relative_to(root)}; "
                                      "reinstall the pinned version (requirements/base.txt)")
        return TextSource(WORDLLAMA, tok, None, (table,), "embedding.weight")
    root = Path(source)
    if not root.is_dir():
        raise TextSourceError(f"text source {source!r} is neither 'wordllama' nor an existing directory")
    files = tuple(sorted(root.glob("*.safetensors")))
    if not files:
        raise TextSourceError(f"text source {root} has no *.safetensors weights (only safetensors are read)")
    if not any((root / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise TextSourceError(f"text source {root} has no tokenizer.json / tokenizer_config.json")
    # absolute: the checkpoint's config keeps this name, and a robot loads it from wherever the node starts
    return TextSource(str(root.resolve()), None, root, files, None)


def _read_table(src: TextSource) -> tuple[np.ndarray, str]:
    """The source's token-embedding table as float32, and the SHA-256 of its bytes as stored (read through
    torch: numpy has no bfloat16, the dtype most language models ship)."""
    from safetensors import safe_open

    for path in src.table_files:
        try:
            with safe_open(str(path), framework="pt") as f:
                keys = list(f.keys())
                key = src.table_key if src.table_key in keys else next(
                    (k for suffix in _EMBED_KEY_SUFFIXES for k in keys if k.endswith(suffix)), None)
                if key is not None:
                    table = f.get_tensor(key)
                    break
        except Exception as exc:  # safetensors raises its own SafetensorError(Exception)
            raise TextSourceError(f"cannot read token embeddings from {path}: {exc}") from exc
    else:
        raise TextSourceError(f"no token-embedding tensor (*{' / *'.join(_EMBED_KEY_SUFFIXES)}) in "
                              f"{', '.join(str(p) for p in src.table_files)}")
    if table.ndim != 2 or min(table.shape) < 1 or not table.is_floating_point():
        raise TextSourceError(f"token embeddings in {src.name} must be a 2-D float matrix, got "
                              f"{tuple(table.shape)} {table.dtype}")
    stored = table.contiguous().view(torch.uint8).numpy()  # the bytes as stored: the hash of a float32 table is
    digest = hashlib.sha256(stored.tobytes()).hexdigest()  # what numpy's tobytes() gave before
    return table.float().numpy(), digest


def text_config(source: str, trainable: bool = False) -> TextConfig:
    """Resolve ``source`` into a TextConfig (vocabulary size, width and hash of its table)."""
    src = resolve_source(source)
    table, digest = _read_table(src)
    tokenizer = source_tokenizer(source)
    if len(tokenizer) > table.shape[0]:
        raise TextSourceError(f"text source {source}: tokenizer has {len(tokenizer)} tokens but the embedding "
                              f"table only {table.shape[0]} rows")
    return TextConfig(source=src.name, vocab_size=int(table.shape[0]), embed_dim=int(table.shape[1]),
                      sha256=digest, trainable=trainable)


def load_table(cfg: TextConfig) -> torch.Tensor:
    """The frozen table of ``cfg`` from its source, as float32, checked against the config."""
    try:
        src = resolve_source(cfg.source)
    except TextSourceError as exc:
        raise TextSourceError(f"this checkpoint's frozen token embeddings come from {cfg.source!r}: {exc}") from exc
    table, digest = _read_table(src)
    if tuple(table.shape) != (cfg.vocab_size, cfg.embed_dim) or digest != cfg.sha256:
        raise TextSourceError(
            f"token embeddings of {cfg.source!r} ({table.shape[0]}x{table.shape[1]}, sha256 {digest[:12]}) "
            f"differ from the ones this checkpoint was trained with ({cfg.vocab_size}x{cfg.embed_dim}, "
            f"sha256 {cfg.sha256[:12]}): install the pinned source or use the checkpoint's own")
    return torch.from_numpy(table)


def source_tokenizer(source: str) -> Any:
    """The source's tokenizer as a PreTrainedTokenizerFast: lower-casing, right padding, pad = eos."""
    from tokenizers import Tokenizer, normalizers
    from transformers import PreTrainedTokenizerFast

    from deer_vla.model.tokenizer import load_tokenizer

    src = resolve_source(source)
    if src.tokenizer_file is not None:
        try:
            tok = Tokenizer.from_file(str(src.tokenizer_file))
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise TextSourceError(f"cannot read tokenizer {src.tokenizer_file}: {exc}") from exc
        specials = parse_json(src.tokenizer_file.read_bytes()).get("added_tokens", [])
        names = {t["content"] for t in specials}
        if not {"<unk>", "<s>", "</s>"} <= names:
            raise TextSourceError(f"tokenizer {src.tokenizer_file} lacks the <unk>/<s>/</s> tokens it should have")
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                       pad_token="</s>", padding_side="right")
    else:
        assert src.tokenizer_dir is not None
        fast = load_tokenizer(src.tokenizer_dir)
    backend = fast.backend_tokenizer
    case_fold = [normalizers.NFKC(), normalizers.Lowercase()]
    backend.normalizer = normalizers.Sequence([*case_fold, backend.normalizer] if backend.normalizer else case_fold)
    return fast


class TokenEmbedder(nn.Module):
    """Token ids -> pretrained table rows -> linear projection to the decoder width."""

    def __init__(self, cfg: TextConfig, hidden: int) -> None:
        super().__init__()
        self.vocab_size = cfg.vocab_size
        self.trainable = cfg.trainable
        on_meta = torch.empty(0).device.type == "meta"  # shape-only builds must not read files
        if on_meta:
            table = torch.empty(cfg.vocab_size, cfg.embed_dim)
        elif cfg.trainable:
            table = torch.zeros(cfg.vocab_size, cfg.embed_dim)  # overwritten by the checkpoint or init_from_source
        else:
            table = load_table(cfg)
        if cfg.trainable:
            self.table = nn.Parameter(table)
        else:
            # not in state_dict: the checkpoint stays small and the source's hash guards it
            self.register_buffer("table", table, persistent=False)
        # rows have norm ~1-2; scale the projection so token states start at the decoder's usual magnitude
        self.proj = nn.Linear(cfg.embed_dim, hidden)
        nn.init.normal_(self.proj.weight, std=cfg.embed_dim ** -0.5)
        nn.init.zeros_(self.proj.bias)

    def init_from_source(self, cfg: TextConfig) -> None:
        """Fill a trainable table with the source's rows (fresh training runs)."""
        with torch.no_grad():
            self.table.copy_(load_table(cfg))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        table = self.table.to(self.proj.weight.dtype)
        return self.proj(nn.functional.embedding(input_ids, table))
