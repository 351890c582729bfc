"""Read LeRobot v3 datasets from local disk with pyarrow and PyAV (no `lerobot` package).

Layout (LeRobot ``CODEBASE_VERSION = "v3.0"``, ``lerobot/datasets/utils.py``)::

    ROOT/meta/info.json                    fps, features, data_path / video_path templates, chunks_size
    ROOT/meta/tasks.parquet                task strings (the pandas index) -> task_index
    ROOT/meta/episodes/chunk-XXX/file-XXX.parquet
                                           one row per episode: length, tasks, data/chunk_index,
                                           data/file_index, videos/<key>/{chunk_index, file_index,
                                           from_timestamp, to_timestamp}, ...
    ROOT/data/chunk-XXX/file-XXX.parquet   one row per frame, many episodes per file
    ROOT/videos/<key>/chunk-XXX/file-XXX.mp4
                                           many episodes per file, back to back; an episode's
                                           frames sit at from_timestamp + its frame timestamps

Why not the ``lerobot`` package: lerobot 0.4.4 pins torch<2.11, huggingface-hub<0.36,
opencv-python-headless<4.13 and packaging<26, all below our pins (torch 2.13.0, huggingface_hub
2.4.0, opencv 5.0, packaging 26.3). Why PyAV and not OpenCV for video: LeRobot encodes with
libsvtav1 (AV1) by default, and the pinned OpenCV wheel has no software AV1 decoder; PyAV's
wheel decodes AV1 with dav1d (and h264, hevc, mpeg4, vp9).
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deer_vla.core.control_rate import control_rate_problem
from deer_vla.core.instruction_text import clean_instruction
from deer_vla.core.json_text import JsonTextError, parse_json, read_json_file
from deer_vla.data.episodes import DatasetError

INFO_PATH = "meta/info.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
CAMERA_DTYPES = ("video", "image")


class LeRobotFormatError(DatasetError):
    """A directory that is not a readable LeRobot v3 dataset; the message says what is missing or wrong."""


@dataclass(frozen=True)
class LeRobotInfo:
    root: Path
    info: dict[str, Any]

    @classmethod
    def load(cls, root: str | Path) -> LeRobotInfo:
        root = Path(root)
        path = root / INFO_PATH
        if not path.is_file():
            raise LeRobotFormatError(f"{path} not found: {root} is not a LeRobot dataset (expected meta/info.json)")
        try:
            info = read_json_file(path)
        except JsonTextError as e:
            raise LeRobotFormatError(f"{path}: not valid JSON: {e}") from e
        if not isinstance(info, dict):
            raise LeRobotFormatError(f"{path}: expected a JSON object, got {type(info).__name__}")
        version = str(info.get("codebase_version", "?"))
        if not version.startswith("v3"):
            raise LeRobotFormatError(
                f"{path}: codebase_version {version}; this importer reads LeRobot v3 datasets. Convert a v2.x "
                "dataset with LeRobot's `python -m lerobot.datasets.v30.convert_dataset_v21_to_v30`")
        missing = [k for k in ("fps", "features", "data_path") if k not in info]
        if missing:
            raise LeRobotFormatError(f"{path}: missing {missing}")
        _check_info(path, info)
        return cls(root, info)

    @property
    def fps(self) -> float:
        return float(self.info["fps"])

    @property
    def features(self) -> dict[str, dict[str, Any]]:
        return dict(self.info["features"])

    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") in CAMERA_DTYPES]

    def feature(self, key: str) -> dict[str, Any]:
        if key not in self.features:
            raise LeRobotFormatError(f"{self.root}: no feature {key!r}; features: {', '.join(self.features)}")
        return self.features[key]

    def names(self, key: str) -> list[str] | None:
        """A vector feature's element names (a list, or LeRobot v2's {"motors": [...]} form), if recorded."""
        names = self.feature(key).get("names")
        if isinstance(names, dict):  # e.g. {"motors": [...]} or {"axes": [...]}
            lists = [v for v in names.values() if isinstance(v, list)]
            names = lists[0] if len(lists) == 1 else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return None
        return list(names)

    def vector_dim(self, key: str) -> int:
        shape = self.feature(key).get("shape")
        if not isinstance(shape, list | tuple) or len(shape) != 1 or not _is_count(shape[0]):
            raise LeRobotFormatError(f"{self.root / INFO_PATH}: feature {key!r} has shape {shape}; a 1-D vector "
                                     "([N], N >= 1) is needed")
        return int(shape[0])

    def data_file(self, chunk: int, file: int) -> Path:
        return self.root / str(self.info["data_path"]).format(chunk_index=chunk, file_index=file)

    def video_file(self, key: str, chunk: int, file: int) -> Path:
        template = self.info.get("video_path")
        if not template:
            raise LeRobotFormatError(f"{self.root}: feature {key!r} is a video but info.json has no video_path")
        return self.root / str(template).format(video_key=key, chunk_index=chunk, file_index=file)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_info(path: Path, info: dict[str, Any]) -> None:
    """The fields the importer relies on have usable types (a hand-edited or foreign info.json fails here,
    naming the field, not later as a crash deep in the import)."""
    problem = control_rate_problem(info["fps"])  # it becomes the checkpoint's control rate
    if problem is not None:
        raise LeRobotFormatError(f"{path}: fps {problem} (the policy's control rate range)")
    features = info["features"]
    if not isinstance(features, dict):
        raise LeRobotFormatError(f"{path}: features must be an object (name -> {{dtype, shape, names}}), got "
                                 f"{type(features).__name__}")
    bad = [k for k, f in features.items() if not isinstance(f, dict)]
    if bad:
        raise LeRobotFormatError(f"{path}: feature(s) {bad} are not objects with dtype, shape and names")
    templates: dict[str, dict[str, int | str]] = {"data_path": {"chunk_index": 0, "file_index": 0}}
    if info.get("video_path") is not None:
        templates["video_path"] = {"video_key": "key", "chunk_index": 0, "file_index": 0}
    for name, fields in templates.items():
        template = info[name]
        try:
            if not isinstance(template, str):
                raise TypeError(type(template).__name__)
            template.format(**fields)
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise LeRobotFormatError(f"{path}: {name} {template!r} is not a path template with "
                                     f"{', '.join('{' + f + '}' for f in fields)} ({type(e).__name__}: {e})") from e


def read_parquet(path: Path, columns: list[str] | None = None) -> Any:
    """A pyarrow Table of one parquet file; a truncated, empty or foreign file raises LeRobotFormatError naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).read(columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise LeRobotFormatError(f"{path}: not a readable parquet file (truncated or corrupt?): {e}") from e


def read_tasks(root: Path) -> dict[int, str]:
    """task_index -> task string. The strings are the pandas index of tasks.parquet (or a 'task' column)."""
    path = root / TASKS_PATH
    if not path.is_file():
        raise LeRobotFormatError(f"{path} not found (LeRobot v3 keeps the task strings there)")
    table = read_parquet(path)
    columns = table.column_names
    text_col = "task" if "task" in columns else None
    if text_col is None:
        try:
            pandas_meta = parse_json((table.schema.metadata or {}).get(b"pandas", b"{}"))
        except JsonTextError as exc:
            raise LeRobotFormatError(f"{path}: unreadable pandas metadata: {exc}") from exc
        index_cols = [c for c in (pandas_meta.get("index_columns", []) if isinstance(pandas_meta, dict) else [])
                      if isinstance(c, str)]
        text_col = next((c for c in [*index_cols, "__index_level_0__"] if c in columns), None)
    if text_col is None or "task_index" not in columns:
        raise LeRobotFormatError(f"{path}: expected a task_index column and the task strings (index or 'task' "
                                 f"column); columns are {columns}")
    tasks: dict[int, str] = {}
    for i, text in zip(table.column("task_index").to_pylist(), table.column(text_col).to_pylist()):
        if isinstance(i, bool) or not isinstance(i, int):
            raise LeRobotFormatError(f"{path}: task_index {i!r} is not an integer")
        # str(None) was the instruction "None"; zero-width characters alone are no instruction either
        if not isinstance(text, str) or not clean_instruction(text):
            raise LeRobotFormatError(f"{path}: task_index {i} has no task string ({text!r}); every task needs "
                                     "its instruction")
        tasks[int(i)] = text
    return tasks


def read_episodes(root: Path) -> list[dict[str, Any]]:
    """Rows of meta/episodes/*/*.parquet (stats columns left out), ordered by episode_index."""
    files = sorted((root / EPISODES_DIR).glob("chunk-*/file-*.parquet"))
    if not files:
        raise LeRobotFormatError(f"{root / EPISODES_DIR}: no chunk-XXX/file-XXX.parquet files")
    rows: list[dict[str, Any]] = []
    needed = ("episode_index", "length", "data/chunk_index", "data/file_index")
    for path in files:
        table = read_parquet(path)
        keep = [c for c in table.column_names if not c.startswith("stats/")]
        for row in table.select(keep).to_pylist():
            missing = [k for k in needed if k not in row]
            if missing:
                raise LeRobotFormatError(f"{path}: episode rows lack {missing}")
            bad = [k for k in needed if isinstance(row[k], bool) or not isinstance(row[k], int) or row[k] < 0]
            if bad:
                raise LeRobotFormatError(f"{path}: episode {row['episode_index']!r}: {', '.join(bad)} must be "
                                         f"integers >= 0, got {[row[k] for k in bad]}")
            rows.append(row)
    return sorted(rows, key=lambda r: int(r["episode_index"]))


def column_matrix(column: Any, dim: int, where: str) -> np.ndarray:
    """A pyarrow list / fixed-size-list column of vectors -> (N, dim) float32, every value finite.

    ``where`` names the column and its file in the errors."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    is_list = (pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type)
               or pa.types.is_large_list(column.type))
    if not is_list and dim != 1:
        raise LeRobotFormatError(f"{where}: one value per row ({column.type}), info.json says {dim}")
    if is_list and not pa.types.is_fixed_size_list(column.type):  # the total alone let 6- and 8-value rows pass
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        wrong = np.flatnonzero(np.asarray(lengths, dtype=np.float64) != dim)  # a null row's length is NaN here
        if wrong.size:
            first = lengths[wrong[0]]
            has = "no values (null)" if first is None or first != first else f"{int(first)} values"
            raise LeRobotFormatError(f"{where}: row {int(wrong[0])} of {len(column)} has {has}, info.json says "
                                     f"{dim} ({wrong.size} such row(s))")
    try:
        values = (pc.list_flatten(column) if is_list else column).to_numpy(zero_copy_only=False)
        flat = np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError) as e:
        raise LeRobotFormatError(f"{where}: not numbers ({column.type}): {e}") from e
    if flat.size != len(column) * dim:
        raise LeRobotFormatError(f"{where}: {flat.size} values for {len(column)} rows of {dim} "
                                 "(rows of another width, or empty rows)")
    matrix = flat.reshape(len(column), dim)
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        raise LeRobotFormatError(f"{where}: NaN or inf in row {int(np.flatnonzero(~finite)[0])} of {len(column)}")
    return matrix


@dataclass
class EpisodeFrames:
    """One LeRobot episode's per-frame columns (rows in frame order)."""

    episode_index: int
    columns: dict[str, Any]  # column name -> pyarrow array (this episode's rows)
    timestamps: np.ndarray  # (T,) seconds from the episode start
    source: Path  # the data file the rows came from


FRAME_PERIOD_TOLERANCE = 0.1  # of one frame period: recorded timestamps' jitter, far below a frame gone or doubled


def check_frame_timing(path: Path, episode: int, frame_index: Any, timestamps: np.ndarray, fps: float) -> None:
    """LeRobotFormatError unless an episode's frames run 0, 1, 2, ... one period of ``fps`` apart (a frame
    missing, repeated, or an episode at another rate was imported silently as contiguous steps at ``fps``: each
    step the policy learnt from spanned another time than it will run at)."""
    try:
        numbers = np.asarray(frame_index, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        numbers = np.array([np.nan])
    if not (np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers))):  # a null, or a fraction
        raise LeRobotFormatError(f"{path}, episode {episode}: frame_index holds a value that is no frame number")
    index = numbers.astype(np.int64)
    if not np.array_equal(index, np.arange(index.size)):
        at = int(np.flatnonzero(index != np.arange(index.size))[0])
        raise LeRobotFormatError(f"{path}, episode {episode}: frame_index is {int(index[at])} at row {at}, not "
                                 f"{at}: frames missing or repeated")
    gaps = np.diff(timestamps)
    off = np.flatnonzero(np.abs(gaps * fps - 1.0) > FRAME_PERIOD_TOLERANCE)
    if off.size:
        at = int(off[0])
        raise LeRobotFormatError(f"{path}, episode {episode}: frames {at} and {at + 1} are {gaps[at]:.4g} s apart, "
                                 f"not 1/fps = {1 / fps:.4g} s ({off.size} such gap(s)): a frame missing or "
                                 "repeated, or the episode recorded at another rate")


class DataFiles:
    """Per-episode rows from the data parquet files; a file is read once while its episodes are asked for."""

    def __init__(self, info: LeRobotInfo, columns: list[str]) -> None:
        self.info = info
        self.columns = sorted(set(columns) | {"episode_index", "frame_index", "timestamp"})
        self._key: tuple[int, int] | None = None
        self._table: Any = None

    def episode(self, row: dict[str, Any]) -> EpisodeFrames:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        key = (int(row["data/chunk_index"]), int(row["data/file_index"]))
        path = self.info.data_file(*key)
        if key != self._key:
            if not path.is_file():
                raise LeRobotFormatError(f"{path} not found (episode {row['episode_index']})")
            try:
                names = pq.read_schema(path).names
            except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
                raise LeRobotFormatError(f"{path}: not a readable parquet file (truncated or corrupt?): {e}") from e
            missing = [c for c in self.columns if c not in names]
            if missing:
                raise LeRobotFormatError(f"{path}: no column(s) {missing}; columns are {names}")
            self._table, self._key = read_parquet(path, self.columns), key
        ep = int(row["episode_index"])
        rows = self._table.filter(pc.equal(self._table.column("episode_index"), ep))
        rows = rows.take(pc.sort_indices(rows.column("frame_index")))
        if rows.num_rows != int(row["length"]):
            raise LeRobotFormatError(f"episode {ep}: {rows.num_rows} frames in {path}, "
                                     f"meta/episodes says {row['length']}")
        ts = np.asarray(rows.column("timestamp").to_numpy(zero_copy_only=False), dtype=np.float64).reshape(-1)
        if not (np.all(np.isfinite(ts)) and np.all(np.diff(ts) >= 0)):
            raise LeRobotFormatError(f"{path}: episode {ep}'s timestamps are not finite and increasing")
        check_frame_timing(path, ep, rows.column("frame_index").to_numpy(zero_copy_only=False), ts, self.info.fps)
        return EpisodeFrames(ep, {c: rows.column(c) for c in self.columns}, ts, path)


class VideoFrames:
    """Frames of one episode out of a multi-episode mp4, decoded with PyAV (AV1 via dav1d, h264, ...)."""

    def __init__(self, info: LeRobotInfo, tolerance_s: float | None = None) -> None:
        self.info = info
        # LeRobot checks 1e-4 s; a decoder's rounding of pts stays far below a quarter frame
        self.tolerance_s = tolerance_s if tolerance_s is not None else 0.25 / info.fps

    def episode(self, key: str, row: dict[str, Any], timestamps: np.ndarray) -> Iterator[np.ndarray]:
        """RGB frames (H, W, 3) uint8 at from_timestamp + each of ``timestamps``, in order."""
        import av

        prefix = f"videos/{key}/"
        try:
            chunk, file = int(row[prefix + "chunk_index"]), int(row[prefix + "file_index"])
            start = float(row[prefix + "from_timestamp"])
        except KeyError as e:
            raise LeRobotFormatError(f"episode {row['episode_index']}: meta/episodes lacks {e.args[0]!r}") from e
        except (TypeError, ValueError) as e:
            raise LeRobotFormatError(f"episode {row['episode_index']}: meta/episodes {prefix}*: {e}") from e
        if not math.isfinite(start) or start < 0:
            raise LeRobotFormatError(f"episode {row['episode_index']}: meta/episodes {prefix}from_timestamp is {start}")
        path = self.info.video_file(key, chunk, file)
        if not path.is_file():
            raise LeRobotFormatError(f"{path} not found (camera {key}, episode {row['episode_index']})")
        wanted = start + np.asarray(timestamps, dtype=np.float64)
        try:
            yield from self._decode(av.open(str(path)), path, wanted, row)
        # an empty, truncated or foreign file; a corrupt frame; a damaged tag (PyAV decodes tags as UTF-8)
        except (av.error.FFmpegError, UnicodeDecodeError) as e:
            raise LeRobotFormatError(f"{path}: cannot decode the video (truncated or corrupt?): {e} "
                                     f"(camera {key}, episode {row['episode_index']})") from e

    def _decode(self, container: Any, path: Path, wanted: np.ndarray, row: dict[str, Any]) -> Iterator[np.ndarray]:
        with container:
            if not container.streams.video:
                raise LeRobotFormatError(f"{path}: no video stream")
            stream = container.streams.video[0]
            if stream.time_base is None:
                raise LeRobotFormatError(f"{path}: video stream without a time base")
            # seek lands on the key frame at or before the first wanted frame; decode forward from there
            container.seek(max(int(wanted[0] / stream.time_base), 0), stream=stream, backward=True, any_frame=False)
            i = 0
            # the tolerance is below half a frame period, so at most one frame matches a wanted time
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else float("nan")
                if t > wanted[i] + self.tolerance_s:
                    raise LeRobotFormatError(
                        f"{path}: no frame within {self.tolerance_s:.4f} s of {wanted[i]:.4f} s (episode "
                        f"{row['episode_index']}, frame {i}); the next one is at {t:.4f} s")
                if t < wanted[i] - self.tolerance_s:
                    continue  # before the episode (from the key frame on) or between wanted times
                rgb = frame.to_ndarray(format="rgb24")
                while i < len(wanted) and abs(t - wanted[i]) <= self.tolerance_s:
                    yield rgb
                    i += 1
                if i == len(wanted):
                    return
        if i < len(wanted):
            raise LeRobotFormatError(f"{path}: video ends before frame {i} of episode {row['episode_index']} "
                                     f"(wanted {wanted[i]:.4f} s)")


def decode_image_cell(cell: Any, where: str) -> np.ndarray:
    """An ``image`` feature's cell ({"bytes": PNG/JPEG, "path": ...}) -> (H, W, 3) uint8 RGB."""
    import cv2

    data = cell.get("bytes") if isinstance(cell, dict) else None
    if not data:
        raise LeRobotFormatError(f"{where}: image cell without embedded bytes ({cell!r:.80})")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise LeRobotFormatError(f"{where}: image bytes do not decode")
    return np.ascontiguousarray(bgr[:, :, ::-1])

