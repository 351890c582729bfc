"""On-disk demonstration episodes: one HDF5 file per episode under a versioned dataset root.

Layout (schema version 1; full description in docs/dataset_format.md)::

    ROOT/meta.json                              dataset metadata (DatasetMeta)
    ROOT/episodes/<task>/<task>__seed<0000042>.h5

Each episode file holds ``images/<camera>`` (T,H,W,3) uint8, ``proprio``
(T,P) float32, ``actions`` (T,A) float32 (the expert's action label at each
step), optionally ``actions_executed`` (T,A) float32 (what was applied, with
exploration noise), and the attributes listed in EPISODE_ATTRS including a
SHA-256 checksum over the arrays and attributes. Files are written to a
temporary name and renamed, so a killed writer never leaves a half episode
under a real name.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from deer_vla.core.action_spec import ActionSpec, same_link
from deer_vla.core.atomic_file import atomic_write_bytes
from deer_vla.core.control_rate import control_rate_problem
from deer_vla.core.instruction_text import clean_instruction
from deer_vla.core.json_text import JsonTextError, parse_json, read_json_file
from deer_vla.core.proprio_spec import ProprioSpec

FORMAT_NAME = "deer_vla.episodes"
SCHEMA_VERSION = 1
META_FILE = "meta.json"
EPISODE_DIR = "episodes"
EPISODE_ATTRS = ("schema_version", "task", "instruction", "seed", "success", "length", "cameras", "checksum")
_NAME_RE = re.compile(r"^(?P<task>[a-z0-9][a-z0-9_-]*)__seed(?P<seed>\d{7})\.h5$")
_TASK_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_CAMERA_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # an HDF5 dataset under images/: no "/", not "." or ""
MIN_IMAGE_SIZE = 8
MAX_IMAGE_SIZE = 4096  # px a side: what a reader accepts (a header could claim any shape)


def check_camera_name(name: object, where: str = "camera") -> None:
    """DatasetError unless ``name`` can name a camera of a data set (an HDF5 dataset ``images/<name>``)."""
    if not (isinstance(name, str) and len(name) <= 64 and _CAMERA_RE.fullmatch(name)):
        raise DatasetError(f"{where} name {name!r}: use letters, digits, '_', '-' and '.' (not first; at most 64, "
                           "e.g. static, wrist)")


def check_image_size(size: object, where: str = "image_size") -> None:
    """DatasetError unless ``size`` is a stored image side the readers accept."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) \
            or not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise DatasetError(f"{where} must be an integer in {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} px, got {size!r}")


class DatasetError(ValueError):
    """A dataset or episode file that is missing, malformed, truncated or of another schema."""


class DatasetWriteError(DatasetError):
    """A dataset could not be written (disk full, no permission): a failure while running, not bad input."""


@dataclass
class DatasetMeta:
    cameras: tuple[str, ...]
    image_size: int
    action_spec: dict[str, Any]  # ActionSpec.to_dict()
    proprio_dim: int
    tasks: list[str] = field(default_factory=list)
    success_only: bool = True  # the collector stores successful episodes only
    collection: dict[str, Any] = field(default_factory=dict)  # how it was collected (noise, seed, simulator)
    schema_version: int = SCHEMA_VERSION
    proprio_spec: dict[str, Any] | None = None  # ProprioSpec.to_dict(); None: values unnamed (older datasets)
    control_rate_hz: float | None = None  # steps per second (imported recordings); None: not recorded

    def __post_init__(self) -> None:
        self.cameras = tuple(self.cameras)
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise DatasetError(f"meta: cameras must be non-empty without repeats, got {list(self.cameras)}")
        for camera in self.cameras:
            check_camera_name(camera, "meta: camera")
        check_image_size(self.image_size, "meta: image_size")
        if int(self.proprio_dim) < 0:
            raise DatasetError(f"meta: proprio_dim must be >= 0, got {self.proprio_dim}")
        try:
            ActionSpec.from_dict(self.action_spec)
        except (ValueError, TypeError) as e:
            raise DatasetError(f"meta: invalid action_spec {self.action_spec}: {e}") from e
        if self.proprio_spec is not None:
            try:
                names = ProprioSpec.from_dict(self.proprio_spec).names
            except (ValueError, TypeError) as e:
                raise DatasetError(f"meta: invalid proprio_spec {self.proprio_spec}: {e}") from e
            if len(names) != int(self.proprio_dim):
                raise DatasetError(f"meta: proprio_spec names {len(names)} values, proprio_dim is {self.proprio_dim}")
        if self.control_rate_hz is not None and not float(self.control_rate_hz) > 0:
            raise DatasetError(f"meta: control_rate_hz must be > 0, got {self.control_rate_hz}")
        bad = [t for t in self.tasks if not _TASK_RE.match(t)]
        if bad:
            raise DatasetError(f"meta: invalid task names {bad} (lowercase letters, digits, '-' and '_')")

    @property
    def action_dim(self) -> int:
        return ActionSpec.from_dict(self.action_spec).dim

    @property
    def action(self) -> ActionSpec:
        """The action spec; for a recording imported before specs kept their frame, the twists' frame its
        import noted beside it (collection.topics.twist_frame)."""
        spec = ActionSpec.from_dict(self.action_spec)
        topics = self.collection.get("topics") if isinstance(self.collection, dict) else None
        noted = topics.get("twist_frame") if isinstance(topics, dict) else None
        if spec.frame or not isinstance(noted, str) or not noted:
            return spec
        try:  # without ROS 1's leading '/', as the import now takes it
            return replace(spec, frame=noted[1:] if noted.startswith("/") else noted)
        except ValueError:  # a frame id the spec refuses: left unsaid rather than the dataset unreadable
            return spec

    def to_dict(self) -> dict[str, Any]:
        optional = {"proprio_spec": self.proprio_spec, "control_rate_hz": self.control_rate_hz}
        return {
            "format": FORMAT_NAME,
            "schema_version": self.schema_version,
            "cameras": list(self.cameras),
            "image_size": int(self.image_size),
            "action_spec": self.action_spec,
            "action_dim": self.action_dim,
            "proprio_dim": int(self.proprio_dim),
            "tasks": list(self.tasks),
            "success_only": bool(self.success_only),
            "collection": self.collection,
            **{k: v for k, v in optional.items() if v is not None},
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = META_FILE) -> DatasetMeta:
        if not isinstance(data, dict):
            raise DatasetError(f"{source}: expected a JSON object")
        if data.get("format") != FORMAT_NAME:
            raise DatasetError(f"{source}: not a deer_vla episode dataset (format={data.get('format')!r})")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise DatasetError(
                f"{source}: schema version {version!r}, this deer_vla reads version {SCHEMA_VERSION}; "
                "re-record the dataset with `deer-vla collect`"
            )
        # exact types: int(32.7) cut an image size to 32 and bool("no") was True, without a word
        problems = []
        cameras = data.get("cameras")
        if not (isinstance(cameras, list) and cameras and all(isinstance(c, str) and c for c in cameras)):
            problems.append(f"cameras must be a list of names, got {str(cameras)[:60]}")
        for key in ("image_size", "proprio_dim"):
            value = data.get(key)
            if key in data and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                problems.append(f"{key} must be an integer >= 0, got {str(value)[:40]!r}")
        if not isinstance(data.get("success_only", True), bool):
            problems.append(f"success_only must be true or false, got {str(data.get('success_only'))[:40]!r}")
        tasks = data.get("tasks", [])
        if not (isinstance(tasks, list) and all(isinstance(t, str) for t in tasks)):
            problems.append(f"tasks must be a list of names, got {str(tasks)[:60]}")
        rate = data.get("control_rate_hz")  # the checkpoint's control rate to be
        rate_problem = control_rate_problem(rate) if rate is not None else None
        if rate_problem is not None:
            problems.append(f"control_rate_hz {rate_problem}")
        if problems:
            raise DatasetError(f"{source}: malformed metadata: {'; '.join(problems)}")
        try:
            return cls(
                cameras=tuple(data["cameras"]),
                image_size=int(data["image_size"]),
                action_spec=dict(data["action_spec"]),
                proprio_dim=int(data["proprio_dim"]),
                tasks=list(data.get("tasks", [])),
                success_only=bool(data.get("success_only", True)),
                collection=dict(data.get("collection", {})),
                proprio_spec=None if data.get("proprio_spec") is None else dict(data["proprio_spec"]),
                control_rate_hz=None if data.get("control_rate_hz") is None else float(data["control_rate_hz"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, DatasetError):
                raise
            raise DatasetError(f"{source}: malformed metadata ({type(e).__name__}: {e})") from e

    def save(self, root: Path) -> None:
        atomic_write_bytes(root / META_FILE, (json.dumps(self.to_dict(), indent=2) + "\n").encode())

    @classmethod
    def load(cls, root: Path) -> DatasetMeta:
        path = root / META_FILE
        if not path.is_file():
            raise DatasetError(f"{path}: missing; {root} is not an episode dataset "
                               "(record one with `deer-vla collect`)")
        try:
            data = read_json_file(path)
        except JsonTextError as e:
            raise DatasetError(f"{path}: not valid JSON: {e}") from e
        return cls.from_dict(data, source=str(path))

    def compatible_with(self, other: DatasetMeta) -> list[str]:
        """What differs between two metas in ways that matter for mixing episodes (empty = compatible)."""
        diffs = []
        for name in ("cameras", "image_size", "proprio_dim", "success_only"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                diffs.append(f"{name}: {a} != {b}")
        # compared as specs: a dict written before a field existed equals one with its default; a frame unrecorded
        # on one side contradicts nothing, two frames do (tool-frame and base-frame twists in one set)
        mine, theirs = self.action, other.action
        if not (mine.frame and theirs.frame) or same_link(mine.frame, theirs.frame):
            mine, theirs = replace(mine, frame=""), replace(theirs, frame="")
        if mine != theirs:
            diffs.append(f"action_spec: {self.action_spec} != {other.action_spec}")
        for name in ("proprio_spec", "control_rate_hz"):  # unrecorded on one side: nothing to contradict
            a, b = getattr(self, name), getattr(other, name)
            if a is not None and b is not None and a != b:
                diffs.append(f"{name}: {a} != {b}")
        # how the episodes were made (recorded by `collect`; importers have none): two noise levels, simulator
        # versions, camera mappings or experts in one set, with meta.json naming one, would mislead every reader
        for key in ("action_noise", "simulator", "camera_map", "expert", "labels"):
            a, b = (self.collection or {}).get(key), (other.collection or {}).get(key)
            if a is not None and b is not None and a != b:
                diffs.append(f"collection.{key}: {a} != {b}")
        return diffs


@dataclass
class Episode:
    task: str
    instruction: str
    seed: int
    success: bool
    images: dict[str, np.ndarray]  # camera -> (T, H, W, 3) uint8
    proprio: np.ndarray | None  # (T, P) float32
    actions: np.ndarray  # (T, A) float32: the expert's action label per step
    actions_executed: np.ndarray | None = None  # (T, A) float32: applied action (label + noise, clipped)
    path: Path | None = None

    @property
    def length(self) -> int:
        return int(len(self.actions))

    def validate(self, meta: DatasetMeta | None = None, where: str = "episode") -> None:
        if not _TASK_RE.match(self.task):
            raise DatasetError(f"{where}: invalid task name {self.task!r}")
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise DatasetError(f"{where}: empty instruction")
        if "\x00" in self.instruction:  # HDF5 strings end at a NUL
            raise DatasetError(f"{where}: the instruction holds a NUL character: {self.instruction[:80]!r}")
        try:  # a non-UTF-8 shell argument, decoded as surrogates: the tokenizer's own check
            cleaned = clean_instruction(self.instruction)
        except ValueError as exc:
            raise DatasetError(f"{where}: {exc}: {self.instruction[:80]!r}") from exc
        if not cleaned:  # zero-width characters alone: the model would train on no instruction at all
            raise DatasetError(f"{where}: the instruction holds no text: {self.instruction[:80]!r}")
        if self.seed < 0:
            raise DatasetError(f"{where}: seed must be >= 0, got {self.seed}")
        a = self.actions
        if a.ndim != 2 or a.shape[0] < 1 or a.dtype != np.float32:
            raise DatasetError(f"{where}: actions must be (T>=1, A) float32, got {a.shape} {a.dtype}")
        t = a.shape[0]
        if not self.images:
            raise DatasetError(f"{where}: no camera images")
        for cam, img in self.images.items():
            if img.dtype != np.uint8 or img.ndim != 4 or img.shape[0] != t or img.shape[3] != 3:
                raise DatasetError(f"{where}: images/{cam} must be ({t}, H, W, 3) uint8, got {img.shape} {img.dtype}")
        if self.proprio is not None and (self.proprio.ndim != 2 or self.proprio.shape[0] != t
                                         or self.proprio.dtype != np.float32):
            raise DatasetError(f"{where}: proprio must be ({t}, P) float32, got {self.proprio.shape} "
                               f"{self.proprio.dtype}")
        if self.actions_executed is not None and self.actions_executed.shape != a.shape:
            raise DatasetError(f"{where}: actions_executed shape {self.actions_executed.shape} != actions {a.shape}")
        for name, arr in (("actions", a), ("proprio", self.proprio), ("actions_executed", self.actions_executed)):
            if arr is not None and not np.all(np.isfinite(arr)):
                raise DatasetError(f"{where}: {name} contains NaN or inf")
        for name, arr in (("actions", a), ("actions_executed", self.actions_executed)):
            # normalised actions (docs/dataset_format.md); 50.0 trained to a loss of 73 without a word
            if arr is not None and float(np.abs(arr).max()) > 1.0 + 1e-6:
                raise DatasetError(f"{where}: {name} reach {float(np.abs(arr).max()):.4g}; actions are normalised "
                                   "to [-1, 1] (an importer scales and clips them: data/importing.py)")
        if meta is None:
            return
        if tuple(sorted(self.images)) != tuple(sorted(meta.cameras)):
            raise DatasetError(f"{where}: cameras {sorted(self.images)} != dataset cameras {sorted(meta.cameras)}")
        for cam, img in self.images.items():
            if img.shape[1:3] != (meta.image_size, meta.image_size):
                raise DatasetError(f"{where}: images/{cam} are {img.shape[1]}x{img.shape[2]}, dataset is "
                                   f"{meta.image_size}x{meta.image_size}")
        if a.shape[1] != meta.action_dim:
            raise DatasetError(f"{where}: actions have {a.shape[1]} values, dataset action_dim is {meta.action_dim}")
        p = 0 if self.proprio is None else self.proprio.shape[1]
        if p != meta.proprio_dim:
            raise DatasetError(f"{where}: proprio has {p} values, dataset proprio_dim is {meta.proprio_dim}")


MAX_EPISODE_SEED = 10**7 - 1  # the seven digits of an episode file's name


def episode_filename(task: str, seed: int) -> str:
    if not _TASK_RE.match(task):
        raise DatasetError(f"invalid task name {task!r} (lowercase letters, digits, '-' and '_')")
    if not 0 <= int(seed) <= MAX_EPISODE_SEED:
        raise DatasetError(f"seed must be in 0..{MAX_EPISODE_SEED} for the episode file name, got {seed}")
    return f"{task}__seed{int(seed):07d}.h5"


def episode_checksum(ep: Episode) -> str:
    """SHA-256 over the arrays (name, dtype, shape, bytes) and the identifying attributes."""
    h = hashlib.sha256()
    header = {"task": ep.task, "instruction": ep.instruction, "seed": int(ep.seed), "success": bool(ep.success),
              "length": ep.length}
    h.update(json.dumps(header, sort_keys=True).encode())
    arrays: list[tuple[str, np.ndarray | None]] = [(f"images/{c}", ep.images[c]) for c in sorted(ep.images)]
    arrays += [("proprio", ep.proprio), ("actions", ep.actions), ("actions_executed", ep.actions_executed)]
    for name, arr in arrays:
        if arr is None:
            continue
        arr = np.ascontiguousarray(arr)
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


class EpisodeWriter:
    """Writes episodes into a dataset root, creating or checking its meta.json.

    Several processes may write into one root (distinct episodes): each file
    goes to a private temporary name and is renamed into place when complete.
    """

    def __init__(self, root: str | Path, meta: DatasetMeta, compression: str = "gzip", compression_level: int = 4):
        if compression not in ("gzip", "lzf"):
            raise ValueError(f"compression must be 'gzip' or 'lzf', got {compression!r}")
        self.root = Path(root)
        self.meta = meta
        self.compression = compression
        self.compression_opts = compression_level if compression == "gzip" else None
        self.root.mkdir(parents=True, exist_ok=True)
        if (self.root / META_FILE).exists():
            existing = DatasetMeta.load(self.root)
            diffs = existing.compatible_with(meta)
            if diffs:
                raise DatasetError(f"{self.root}: existing dataset was recorded differently ({'; '.join(diffs)}); "
                                   "use a new --out directory")
            new_tasks = [t for t in meta.tasks if t not in existing.tasks]
            if new_tasks:
                existing.tasks = existing.tasks + new_tasks
                existing.save(self.root)
            self.meta = existing
        else:
            meta.save(self.root)

    def path_for(self, task: str, seed: int) -> Path:
        return self.root / EPISODE_DIR / task / episode_filename(task, seed)

    def exists(self, task: str, seed: int) -> bool:
        return self.path_for(task, seed).is_file()

    def write(self, ep: Episode) -> Path:
        """Write ``ep`` whole or not at all. The HDF5 file is built in memory, then written as plain bytes
        (atomic_write_bytes): on a full disk h5py raised RuntimeErrors from its close and printed a traceback per
        open object; a plain write fails once, said as a DatasetWriteError naming the file."""
        path = self.path_for(ep.task, ep.seed)
        ep.validate(self.meta, where=str(path))
        kw: dict[str, Any] = {"compression": self.compression, "compression_opts": self.compression_opts}
        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as f:
            for cam in sorted(ep.images):
                img = ep.images[cam]
                chunk = (min(16, img.shape[0]),) + img.shape[1:]
                f.create_dataset(f"images/{cam}", data=img, chunks=chunk, **kw)
            if ep.proprio is not None:
                f.create_dataset("proprio", data=ep.proprio, **kw)
            f.create_dataset("actions", data=ep.actions, **kw)
            if ep.actions_executed is not None:
                f.create_dataset("actions_executed", data=ep.actions_executed, **kw)
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["task"] = ep.task
            f.attrs["instruction"] = ep.instruction
            f.attrs["seed"] = int(ep.seed)
            f.attrs["success"] = bool(ep.success)
            f.attrs["length"] = ep.length
            f.attrs["cameras"] = json.dumps(sorted(ep.images))
            f.attrs["checksum"] = episode_checksum(ep)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, buffer.getvalue())
        except OSError as exc:  # disk full, no permission: the episodes written before stay whole
            raise DatasetWriteError(f"cannot write {path}: {exc.strerror or exc}") from exc
        return path


def remove_stale_tmp(root: str | Path) -> list[Path]:
    """Delete temporary files left by killed writers (call while no writer runs)."""
    removed = []
    for p in Path(root).rglob(".*.tmp"):
        p.unlink()
        removed.append(p)
    return removed


# The longest episode read: an hour and a half at 20 Hz; a header claiming more is damaged or not ours
MAX_EPISODE_STEPS = 100_000


def _check_declared_shapes(path: Path, f: Any, cameras: list[str], meta: DatasetMeta | None) -> None:
    """DatasetError when an episode's datasets declare shapes other than its length and the data set's
    images say, before any is read (a 105 KB file declaring 10^9 frames asked numpy for 2.8 TiB)."""
    length = int(f.attrs["length"])
    if not 1 <= length <= MAX_EPISODE_STEPS:
        raise DatasetError(f"{path}: malformed episode, length {length} outside 1..{MAX_EPISODE_STEPS}")
    names = ["actions", *(f"images/{c}" for c in cameras), *(n for n in ("proprio", "actions_executed") if n in f)]
    not_data = [n for n in names if not isinstance(f[n], h5py.Dataset)]  # a group there has no shape to read
    if not_data:
        raise DatasetError(f"{path}: malformed episode, {', '.join(not_data)} must be arrays, not groups")
    declared = {name: f[name].shape for name in names}
    for name, shape in declared.items():
        if not shape or shape[0] != length:
            raise DatasetError(f"{path}: malformed episode, {name} has shape {shape} for {length} steps")
    for c in cameras:
        shape = declared[f"images/{c}"]
        side = meta.image_size if meta is not None else None
        if len(shape) != 4 or shape[3] != 3 or (side is not None and shape[1:3] != (side, side)) \
                or shape[1] > MAX_IMAGE_SIZE or shape[2] > MAX_IMAGE_SIZE:
            raise DatasetError(f"{path}: malformed episode, images/{c} has shape {shape}"
                               + (f", the data set's images are {side}x{side}" if side is not None else ""))


def read_episode(path: str | Path, meta: DatasetMeta | None = None, check: bool = True) -> Episode:
    """Read one episode file; malformed/truncated/corrupt files raise DatasetError naming the file."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(f"{path}: cannot be opened as HDF5, the file is truncated or corrupt ({e}); "
                           "delete it and re-run `deer-vla collect` to record it again") from e
    try:
        with f:
            missing = [a for a in EPISODE_ATTRS if a not in f.attrs]
            if missing:
                raise DatasetError(f"{path}: malformed episode, missing attributes {missing}")
            version = int(f.attrs["schema_version"])
            if version != SCHEMA_VERSION:
                raise DatasetError(f"{path}: schema version {version}, this deer_vla reads {SCHEMA_VERSION}")
            if "actions" not in f or "images" not in f:
                raise DatasetError(f"{path}: malformed episode, needs datasets 'actions' and 'images/<camera>'")
            cameras = parse_json(str(f.attrs["cameras"]))  # a ValueError, whatever is wrong with it
            absent = [c for c in cameras if c not in f["images"]]
            if absent:
                raise DatasetError(f"{path}: malformed episode, images {absent} listed but absent")
            _check_declared_shapes(path, f, cameras, meta)  # before reading: a header can claim terabytes
            ep = Episode(
                task=str(f.attrs["task"]),
                instruction=str(f.attrs["instruction"]),
                seed=int(f.attrs["seed"]),
                success=bool(f.attrs["success"]),
                images={c: f["images"][c][()] for c in cameras},
                proprio=f["proprio"][()] if "proprio" in f else None,
                actions=f["actions"][()],
                actions_executed=f["actions_executed"][()] if "actions_executed" in f else None,
                path=path,
            )
            length, checksum = int(f.attrs["length"]), str(f.attrs["checksum"])
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as e:
        # h5py raises OSError/ValueError on corrupt chunks (failed decompression, bad addresses).
        raise DatasetError(f"{path}: corrupt episode file ({type(e).__name__}: {e})") from e
    ep.validate(meta, where=str(path))
    if ep.length != length:
        raise DatasetError(f"{path}: length attribute {length} != {ep.length} recorded steps")
    if check and episode_checksum(ep) != checksum:
        raise DatasetError(f"{path}: checksum mismatch, the episode data is corrupt")
    m = _NAME_RE.match(path.name)
    if m and (m["task"] != ep.task or int(m["seed"]) != ep.seed):
        raise DatasetError(f"{path}: file name says {m['task']} seed {int(m['seed'])}, "
                           f"contents say {ep.task} seed {ep.seed}")
    return ep


class EpisodeDataset:
    """Read access to a dataset root: episodes ordered by task (meta order) then seed."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"dataset directory not found: {self.root}")
        self.meta = DatasetMeta.load(self.root)
        self.paths = self._scan()

    def _scan(self) -> list[Path]:
        order = {t: i for i, t in enumerate(self.meta.tasks)}
        found: list[tuple[int, str, int, Path]] = []
        ep_dir = self.root / EPISODE_DIR
        for p in ep_dir.glob("*/*.h5") if ep_dir.is_dir() else []:
            m = _NAME_RE.match(p.name)
            if m is None or p.parent.name != m["task"]:
                raise DatasetError(f"{p}: unexpected file in the dataset (expected "
                                   f"{EPISODE_DIR}/<task>/<task>__seed<7 digits>.h5)")
            found.append((order.get(m["task"], len(order)), m["task"], int(m["seed"]), p))
        return [p for *_, p in sorted(found)]

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self.load(i)

    @property
    def tasks(self) -> list[str]:
        """Tasks that have at least one episode, in dataset order."""
        seen: list[str] = []
        for p in self.paths:
            if p.parent.name not in seen:
                seen.append(p.parent.name)
        return seen

    def task_of(self, i: int) -> str:
        return self.paths[i].parent.name

    def episodes_for_task(self, task: str) -> list[int]:
        """Indices of ``task``'s episodes; a task absent from the dataset raises, listing those present."""
        idx = [i for i, p in enumerate(self.paths) if p.parent.name == task]
        if not idx:
            raise KeyError(f"task {task!r} has no episodes in {self.root}; present: {', '.join(self.tasks) or 'none'}")
        return idx

    def load(self, i: int, check: bool = True) -> Episode:
        if not -len(self) <= i < len(self):
            raise IndexError(f"episode index {i} outside 0..{len(self) - 1} of {self.root}")
        return read_episode(self.paths[i], self.meta, check=check)

    def verify(self, indices: Iterable[int] | None = None) -> dict[str, Any]:
        """Read every episode (checksums included); raise DatasetError listing every bad file.

        Returns a summary: episodes, steps, per-task episode counts, success count.
        """
        problems: list[str] = []
        counts: dict[str, int] = {}
        steps = successes = 0
        for i in range(len(self)) if indices is None else indices:
            try:
                ep = self.load(i)
            except DatasetError as e:
                problems.append(str(e))
                continue
            counts[ep.task] = counts.get(ep.task, 0) + 1
            steps += ep.length
            successes += int(ep.success)
            if self.meta.success_only and not ep.success:
                problems.append(f"{ep.path}: failed episode in a success-only dataset")
        stale = sorted(self.root.rglob(".*.tmp"))
        if problems:
            head = "\n  ".join(problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise DatasetError(f"{self.root}: {len(problems)} bad episode file(s):\n  {head}{more}")
        return {"episodes": sum(counts.values()), "steps": steps, "successes": successes, "per_task": counts,
                "stale_tmp_files": [str(p) for p in stale]}
