"""CheckpointDir: the one owner of a checkpoint directory's layout, format version and validation.

    config.json          PolicyConfig, plus "format_version" (FORMAT_VERSION; absent = 1)
    model.safetensors    the weights (safetensors only: no pickle anywhere)
    tokenizer.json / tokenizer_config.json (+ vocabulary files)   Hugging Face ``save_pretrained``
    extra.json           optional: training metadata (step, stage, train config)
    profile.json         optional: the CostProfile measured on a device (``deer-vla calibrate``/``profile``)
    thresholds.json      optional: exit thresholds (``deer-vla calibrate``), read by the controller
    gates.safetensors    optional: the learned exit criterion's gates (``deer-vla train-gate``, model.gate)

Everything that needs one of these files asks this class for its path or
contents; every problem raises CheckpointError naming the file and what is
wrong with it. Building and filling the model from the files is
``model.checkpoint`` (and ``model.lean_load``).
"""
from __future__ import annotations

import functools
import hashlib
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from deer_vla.core import CostProfile
from deer_vla.core.atomic_file import atomic_write_text
from deer_vla.core.json_text import JsonTextError, read_json_file
from deer_vla.model.config import PolicyConfig, format_validation_error

# 1: the layout above. A reader refuses a newer version instead of misreading it.
FORMAT_VERSION = 1
FORMAT_KEY = "format_version"
# The largest JSON file of a checkpoint it reads whole (config, profile, training record): theirs are a few KB
MAX_JSON_BYTES = 16 << 20


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded; the message names the file/key at fault."""


class CheckpointDir:
    """A checkpoint directory (it need not exist yet: ``write_*`` create it)."""

    CONFIG = "config.json"
    WEIGHTS = "model.safetensors"
    TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
    EXTRA = "extra.json"
    PROFILE = "profile.json"
    THRESHOLDS = "thresholds.json"
    GATES = "gates.safetensors"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"CheckpointDir({str(self.root)!r})"

    # -- paths
    @property
    def config_path(self) -> Path:
        return self.root / self.CONFIG

    @property
    def weights_path(self) -> Path:
        return self.root / self.WEIGHTS

    @property
    def extra_path(self) -> Path:
        return self.root / self.EXTRA

    @property
    def profile_path(self) -> Path:
        return self.root / self.PROFILE

    @property
    def thresholds_path(self) -> Path:
        return self.root / self.THRESHOLDS

    @property
    def gates_path(self) -> Path:
        return self.root / self.GATES

    def weights_digest(self) -> str:
        """SHA-256 of the weights file: what the exit gates were trained on (they fit those weights only).
        One configure asks up to three times (gates, thresholds, recording) and a robot's model can be GBs: the
        hash is remembered for the file as it is (path, size, modification time), so it is read once."""
        return _digest(self.weights_path)

    def config_digest(self) -> str:
        """SHA-256 of what config.json says the model is: its validated fields (defaults filled in), but the
        informational paths the backbones were first read from, and of the proprio spec only what the model
        computes with (ProprioSpec.model_input). With the weights' digest, what thresholds,
        recordings and evaluation journals record of the model: an edit that keeps every tensor's shape
        (attention heads, norm eps, action scale, camera order, head history) makes the weights compute another
        policy, which the weights' digest alone did not tell."""
        return self.config_digests()[0]

    def config_digests(self) -> tuple[str, ...]:
        """The digests this config answers to: ``config_digest``'s, and where the config has a proprio spec, the
        first scheme's (2026-12-07, over the whole spec), which files stamped then record."""
        config = self.read_config()
        data = config.model_dump(mode="json")
        for part in ("vision", "lm"):
            if isinstance(data.get(part), dict):
                data[part].pop("path", None)
        digests = []
        if data.get("proprio") is not None:  # its names, units and limits are the node's reading of the robot,
            # edited by hand on a trained checkpoint as docs/own_robot.md says: thresholds stay valid across them
            digests.append({**data, "proprio": config.proprio_spec.model_input()})
        digests.append(data)
        return tuple(hashlib.sha256(json.dumps(_same_numbers(d), sort_keys=True, separators=(",", ":")).encode())
                     .hexdigest() for d in digests)

    def gates_digest(self) -> str | None:
        """SHA-256 of the exit gates (None without a gates file): what learned-criterion thresholds are solved
        with. It covers the tensors and the metadata but the training summary, not the file's bytes: safetensors
        writes its metadata in a hash map's order and train-gate records its timings, so the same gates trained
        twice (same seed, bit-identical tensors) made two files and the thresholds solved on one were refused."""
        if not self.gates_path.is_file():
            return None
        st = self.gates_path.stat()
        return _gates_sha256(str(self.gates_path.resolve()), st.st_size, st.st_mtime_ns)

    def gates_file_digest(self) -> str | None:
        """SHA-256 of the gates file's bytes (None without one): what thresholds calibrated before 2026-12-06
        record (the shipped checkpoints' among them); accepted beside ``gates_digest``."""
        return _digest(self.gates_path) if self.gates_path.is_file() else None

    def exists(self) -> bool:
        """Whether this looks like a checkpoint (a directory with a config); ``check`` says what else is wrong."""
        return self.config_path.is_file()

    def _missing(self, path: Path) -> str:
        """Why a file the load needs is not one: out of reach, absent, a folder, a link to nothing (or to itself),
        or no regular file (a named pipe: "has no model.safetensors" sent the operator looking for a missing
        file)."""
        try:
            mode: int | None = path.stat().st_mode
        except PermissionError as exc:
            return f"checkpoint {self.root}: {path.name} cannot be reached: {exc.strerror} (its folder is not readable)"
        except OSError:
            mode = None
        if path.is_dir():
            return f"checkpoint {self.root}: {path.name} is a folder, not a file"
        if path.is_symlink():
            return f"checkpoint {self.root}: {path.name} is a symbolic link to no file (broken, or a loop)"
        if mode is not None and not stat.S_ISREG(mode):
            return f"checkpoint {self.root}: {path.name} is not a regular file (a pipe, socket or device)"
        return f"checkpoint {self.root} has no {path.name}"

    def _readable(self, path: Path) -> None:
        """CheckpointError unless ``path`` opens for reading (safetensors said "No such file or directory" of a
        weights file there but unreadable)."""
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise CheckpointError(f"checkpoint {self.root}: {path.name} cannot be read: "
                                  f"{exc.strerror or exc}") from exc

    # -- validation
    def check(self) -> PolicyConfig:
        """The config, after checking that every file a load needs is there (CheckpointError otherwise)."""
        cfg = self.read_config()
        if not self.weights_path.is_file():
            raise CheckpointError(self._missing(self.weights_path))
        self._readable(self.weights_path)
        if not any((self.root / f).is_file() for f in self.TOKENIZER_FILES):
            raise CheckpointError(f"checkpoint {self.root} has no tokenizer files "
                                  f"({' or '.join(self.TOKENIZER_FILES)})")
        return cfg

    def read_config(self) -> PolicyConfig:
        if not self.root.is_dir():
            raise CheckpointError(f"checkpoint directory not found: {self.root}")
        path = self.config_path
        if not path.is_file():
            raise CheckpointError(self._missing(path))
        data = self._read_json(path)
        if not isinstance(data, dict):
            raise CheckpointError(f"invalid {path}: expected a JSON object, got {type(data).__name__}")
        version = data.pop(FORMAT_KEY, 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise CheckpointError(f"invalid {path}: {FORMAT_KEY} must be a positive integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise CheckpointError(f"{path}: checkpoint format {version} is newer than this deer_vla reads "
                                  f"({FORMAT_VERSION}); upgrade deer_vla to load it")
        try:
            config = PolicyConfig.model_validate(data)
            # and strictly, as JSON: "32" is no size and "yes" no boolean (both were taken, coerced, without a
            # word); a whole number written 24.0 is still one
            PolicyConfig.model_validate_json(json.dumps(_whole_numbers(data)), strict=True)
        except ValidationError as exc:
            raise CheckpointError(f"invalid {path}: {format_validation_error(exc)}") from exc
        return config

    # -- the optional files
    def read_extra(self) -> dict[str, Any] | None:
        return self._read_json(self.extra_path) if self.extra_path.is_file() else None

    def read_training(self) -> dict[str, Any]:
        """extra.json's ``training`` record (step, stage, config, instructions: written by `deer-vla train`);
        {} when there is none or it is not an object. Invalid JSON raises CheckpointError."""
        extra = self.read_extra()
        training = extra.get("training") if isinstance(extra, dict) else None
        return training if isinstance(training, dict) else {}

    def read_profile(self) -> CostProfile | None:
        """The saved cost profile, or None when there is none."""
        path = self.profile_path
        if not path.is_file():
            return None
        data = self._read_json(path)  # (its CheckpointError names the file already)
        try:
            return CostProfile.from_dict(data)
        except (TypeError, ValueError, ArithmeticError) as exc:  # ArithmeticError: an integer no float holds
            raise CheckpointError(f"invalid {path}: {exc}") from exc

    # -- writing
    def write_config(self, config: PolicyConfig) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        data = {FORMAT_KEY: FORMAT_VERSION, **config.model_dump(mode="json")}
        atomic_write_text(self.config_path, json.dumps(data, indent=2))
        return self.config_path

    def write_extra(self, extra: dict[str, Any]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.extra_path, json.dumps(extra, indent=2))
        return self.extra_path

    def write_profile(self, profile: CostProfile) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        profile.save(self.profile_path)
        return self.profile_path

    @staticmethod
    def _read_json(path: Path) -> Any:
        """A checkpoint's JSON file (config, profile, training record); CheckpointError naming it otherwise."""
        try:
            return read_json_file(path, MAX_JSON_BYTES)
        except JsonTextError as exc:
            raise CheckpointError(f"invalid {path}: {exc}") from exc


def _leaves_mapped(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """``value`` (parsed JSON) with ``leaf`` applied to every value that is no object or array."""
    if isinstance(value, dict):
        return {k: _leaves_mapped(v, leaf) for k, v in value.items()}
    if isinstance(value, list):
        return [_leaves_mapped(v, leaf) for v in value]
    return leaf(value)


def _whole_numbers(value: Any) -> Any:
    """``value`` with every float that is a whole number as an int (24.0 -> 24)."""
    return _leaves_mapped(value, lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)


def _same_numbers(value: Any) -> Any:
    """``value`` with every number as a float: the backbones' HF configs are dicts as written (10000.0 in one
    file, 10000 in the same file rewritten by jq), and a digest must not tell them apart."""
    return _leaves_mapped(value, lambda v: float(v) if isinstance(v, int) and not isinstance(v, bool)
                          and abs(v) < 2 ** 53 else v)  # (exact as a float)


def _digest(path: Path) -> str:
    """SHA-256 of ``path``, hashed once per file as it is (path, size, modification time): ``_file_sha256``."""
    st = path.stat()
    return _file_sha256(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _gates_sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a safetensors file's tensors (sorted by name: name, dtype, shape, bytes) and its metadata but
    ``training``, in sorted order (see CheckpointDir.gates_digest). A file whose header does not parse is hashed
    whole: its loader says what is wrong with it."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        length = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + length])
        meta = {k: v for k, v in (header.pop("__metadata__", None) or {}).items() if k != "training"}
        start = 8 + length
        h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
        for name in sorted(header):
            entry = header[name]
            begin, end = entry["data_offsets"]
            h.update(json.dumps([name, entry["dtype"], entry["shape"]]).encode())
            h.update(data[start + begin:start + end])
        return h.hexdigest()
    except (ValueError, KeyError, TypeError, AttributeError):
        return hashlib.sha256(data).hexdigest()


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file; size and modification time are part of the key, so a rewritten file is hashed again."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
