"""Write LeRobot v3 datasets (the layout deer_vla.data.lerobot reads), and a small synthetic one.

Used for the tests and the walk-through dataset (scripts/make_demo_lerobot.py),
and usable to export episodes for LeRobot tools. Follows LeRobot's own
writer (``lerobot/datasets/lerobot_dataset.py``, v3.0): several episodes per
data parquet and per mp4 (back to back, each episode's place given by
from/to timestamps in meta/episodes), ``chunk-XXX/file-XXX`` indices that
roll over at ``chunks_size`` files per chunk, task strings as the pandas
index of meta/tasks.parquet, videos in AV1 (libsvtav1, yuv420p, GOP 2,
CRF 30: LeRobot's defaults).

Not written: LeRobot's per-episode ``stats/<feature>/<stat>`` columns of
meta/episodes, statistics of the camera features, and the q01..q99
quantiles; meta/stats.json holds min/max/mean/std/count of
``observation.state`` and ``action`` only. LeRobot's loader reads such a
dataset, but its ``delete_episodes`` rebuilds stats.json from the missing
columns (empty), and QUANTILES normalisation (pi05) needs the quantiles:
recompute stats with LeRobot before training a LeRobot policy on an export.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DEMO_TASKS = ("pick up the red cube", "turn the blue knob")
DEMO_STATE_NAMES = ("shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos", "wrist_roll.pos",
                    "gripper.pos")
DEMO_ACTION_NAMES = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
DEMO_CAMERAS = ("observation.images.front", "observation.images.wrist")


@dataclass
class LeRobotEpisode:
    task: str
    frames: dict[str, np.ndarray]  # camera feature -> (T, H, W, 3) uint8 RGB
    state: np.ndarray  # (T, S) float32
    action: np.ndarray  # (T, A) float32

    @property
    def length(self) -> int:
        return int(len(self.action))


def _next_file(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file == chunks_size - 1 else (chunk, file + 1)


@contextmanager
def scheduling_kept() -> Iterator[None]:
    """The calling thread's scheduling policy and priority as they were before the block. SVT-AV1 (libsvtav1)
    gives the thread that runs an encoder SCHED_FIFO priority 99 when it may (as root, as in many robot
    containers), and leaves it so: the process went on real-time after writing a dataset, and so did every
    process it started (two busy children of one froze a 2-core machine: measured 2026-12-06)."""
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield
    finally:
        if (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) != (policy, param.sched_priority):
            os.sched_setscheduler(0, policy, param)


def _encode_video(path: Path, clips: list[np.ndarray], fps: int, codec: str) -> None:
    with scheduling_kept():
        _encode_video_here(path, clips, fps, codec)


def _encode_video_here(path: Path, clips: list[np.ndarray], fps: int, codec: str) -> None:
    import av

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner per encoder at its default level
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = clips[0].shape[1:3]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        if not isinstance(stream, av.VideoStream):
            raise ValueError(f"codec {codec!r} is not a video codec")
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libsvtav1":
            stream.options = {"g": "2", "crf": "30"}
        for clip in clips:
            for frame in clip:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _png_cell(frame: np.ndarray) -> dict[str, Any]:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(frame[:, :, ::-1]))
    if not ok:
        raise ValueError("PNG encoding failed")
    return {"bytes": buf.tobytes(), "path": None}


def _tasks_table(tasks: list[str]) -> Any:
    """As pandas writes DataFrame({"task_index": ...}, index=tasks): the strings are the index column."""
    import pyarrow as pa

    pandas_meta = {
        "index_columns": ["__index_level_0__"], "column_indexes": [],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
                     "metadata": None},
                    {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode",
                     "numpy_type": "object", "metadata": None}],
        "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.3",
    }
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()),
                      "__index_level_0__": pa.array(tasks, pa.string())})
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def write_lerobot_dataset(root: str | Path, episodes: Sequence[LeRobotEpisode], fps: int,
                          state_names: Sequence[str] | None, action_names: Sequence[str] | None,
                          robot_type: str = "synthetic", codec: str = "libsvtav1", images_as: str = "video",
                          episodes_per_file: int = 1000, chunks_size: int = 1000) -> Path:
    """Write ``episodes`` as a LeRobot v3 dataset under ``root`` (which must not exist yet)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not empty")
    if images_as not in ("video", "image"):
        raise ValueError(f"images_as must be 'video' or 'image', got {images_as!r}")
    if not episodes:
        raise ValueError("no episodes to write")
    cameras = list(episodes[0].frames)
    state_dim, action_dim = episodes[0].state.shape[1], episodes[0].action.shape[1]
    tasks = list(dict.fromkeys(ep.task for ep in episodes))
    features: dict[str, Any] = {}
    for cam in cameras:
        h, w = episodes[0].frames[cam].shape[1:3]
        features[cam] = {"dtype": images_as, "shape": [h, w, 3], "names": ["height", "width", "channels"]}
        if images_as == "video":
            features[cam]["info"] = {"video.height": h, "video.width": w, "video.codec": "av1" if codec == "libsvtav1"
                                     else codec, "video.pix_fmt": "yuv420p", "video.is_depth_map": False,
                                     "video.fps": fps, "video.channels": 3, "has_audio": False}
    features["observation.state"] = {"dtype": "float32", "shape": [state_dim],
                                     "names": list(state_names) if state_names else None}
    features["action"] = {"dtype": "float32", "shape": [action_dim],
                          "names": list(action_names) if action_names else None}
    for name, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                        ("index", "int64"), ("task_index", "int64")):
        features[name] = {"dtype": dtype, "shape": [1], "names": None}

    ep_rows: list[dict[str, Any]] = []
    groups = [list(range(i, min(i + episodes_per_file, len(episodes))))
              for i in range(0, len(episodes), episodes_per_file)]
    chunk = file = 0
    global_index = 0
    for group in groups:
        columns: dict[str, list[Any]] = {k: [] for k in ("observation.state", "action", "timestamp", "frame_index",
                                                          "episode_index", "index", "task_index")}
        for cam in cameras if images_as == "image" else []:
            columns[cam] = []
        video_start = 0
        for e in group:
            ep = episodes[e]
            t = ep.length
            row: dict[str, Any] = {"episode_index": e, "tasks": [ep.task], "length": t,
                                   "data/chunk_index": chunk, "data/file_index": file,
                                   "dataset_from_index": global_index, "dataset_to_index": global_index + t,
                                   "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
            columns["observation.state"].extend(np.asarray(ep.state, np.float32).tolist())
            columns["action"].extend(np.asarray(ep.action, np.float32).tolist())
            columns["timestamp"].extend((np.arange(t) / fps).astype(np.float32).tolist())
            columns["frame_index"].extend(range(t))
            columns["episode_index"].extend([e] * t)
            columns["index"].extend(range(global_index, global_index + t))
            columns["task_index"].extend([tasks.index(ep.task)] * t)
            for cam in cameras:
                if images_as == "image":
                    columns[cam].extend(_png_cell(f) for f in ep.frames[cam])
                else:
                    row.update({f"videos/{cam}/chunk_index": chunk, f"videos/{cam}/file_index": file,
                                f"videos/{cam}/from_timestamp": video_start / fps,
                                f"videos/{cam}/to_timestamp": (video_start + t) / fps})
            video_start += t
            global_index += t
            ep_rows.append(row)
        arrays = {
            "observation.state": pa.array(columns["observation.state"], pa.list_(pa.float32(), state_dim)),
            "action": pa.array(columns["action"], pa.list_(pa.float32())),  # variable-size list: both occur
            "timestamp": pa.array(columns["timestamp"], pa.float32()),
            **{k: pa.array(columns[k], pa.int64()) for k in ("frame_index", "episode_index", "index", "task_index")},
        }
        for cam in cameras if images_as == "image" else []:
            arrays[cam] = pa.array(columns[cam], pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        path = root / DATA_PATH.format(chunk_index=chunk, file_index=file)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(arrays), path)
        if images_as == "video":
            for cam in cameras:
                _encode_video(root / VIDEO_PATH.format(video_key=cam, chunk_index=chunk, file_index=file),
                              [episodes[e].frames[cam] for e in group], fps, codec)
        chunk, file = _next_file(chunk, file, chunks_size)

    meta = root / "meta"
    (root / EPISODES_PATH.format(chunk_index=0, file_index=0)).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(ep_rows), root / EPISODES_PATH.format(chunk_index=0, file_index=0))
    pq.write_table(_tasks_table(tasks), meta / "tasks.parquet")
    info = {
        "codebase_version": CODEBASE_VERSION, "robot_type": robot_type, "total_episodes": len(episodes),
        "total_frames": global_index, "total_tasks": len(tasks), "chunks_size": chunks_size,
        "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": fps,
        "splits": {"train": f"0:{len(episodes)}"}, "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if images_as == "video" else None, "features": features,
    }
    (meta / "info.json").write_text(json.dumps(info, indent=4))
    stats = {}
    for key, values in (("observation.state", np.concatenate([e.state for e in episodes])),
                        ("action", np.concatenate([e.action for e in episodes]))):
        stats[key] = {"min": values.min(0).tolist(), "max": values.max(0).tolist(), "mean": values.mean(0).tolist(),
                      "std": values.std(0).tolist(), "count": [len(values)]}
    (meta / "stats.json").write_text(json.dumps(stats, indent=4))
    return root


def demo_episodes(n_episodes: int = 6, steps: int = 16, seed: int = 0, height: int = 96,
                  width: int = 128) -> list[LeRobotEpisode]:
    """A 7-D end-effector arm: two tasks, a static and a wrist camera, a 6-D joint state in degrees.

    The front camera sees a coloured target (red cube or blue knob) and the hand (white); the wrist camera
    a view centred on the hand. Actions are per-step deltas: x, y, z in metres, roll, pitch, yaw in radians
    (the knob task turns the wrist: yaw dominates), gripper 0 = open .. 1 = closed (closes once the hand
    is at the target).
    """
    rng = np.random.default_rng(seed)
    out: list[LeRobotEpisode] = []
    for e in range(n_episodes):
        task = DEMO_TASKS[e % len(DEMO_TASKS)]
        color = (220, 30, 30) if "red" in task else (30, 60, 220)
        target = rng.uniform([0.2, 0.2], [0.8, 0.8])
        hand = rng.uniform([0.1, 0.1], [0.9, 0.9])
        z = 0.15
        joints = rng.uniform(-30, 30, 5)
        front, wrist, states, actions = [], [], [], []
        for _ in range(steps):
            img = np.full((height, width, 3), 90, np.uint8)
            ty, tx = int(target[1] * (height - 1)), int(target[0] * (width - 1))
            img[max(ty - 6, 0):ty + 6, max(tx - 6, 0):tx + 6] = color
            hy, hx = int(hand[1] * (height - 1)), int(hand[0] * (width - 1))
            img[max(hy - 3, 0):hy + 3, max(hx - 3, 0):hx + 3] = 255
            pad = np.pad(img, ((height // 2, height // 2), (width // 2, width // 2), (0, 0)), constant_values=40)
            view = pad[hy:hy + height, hx:hx + width]
            front.append(img)
            wrist.append(np.ascontiguousarray(view))
            delta = target - hand
            near = bool(np.linalg.norm(delta) < 0.05)
            step_xy = np.clip(0.3 * delta, -0.06, 0.06)
            dz = -0.01 if z > 0.05 else 0.0
            yaw = (0.15 if "knob" in task else 0.02) * (1.0 if near else 0.3)
            rot = np.array([rng.normal(0, 0.01), rng.normal(0, 0.01), yaw])
            gripper = 1.0 if near else 0.0
            action = np.array([0.1 * step_xy[0], 0.1 * step_xy[1], dz, *rot, gripper], np.float32)
            states.append(np.array([*joints, 100.0 * gripper], np.float32))
            actions.append(action)
            hand = hand + step_xy
            z += dz
            joints = joints + np.degrees(np.array([step_xy[0], step_xy[1], dz, rot[1], rot[2]])) * 2.0
        out.append(LeRobotEpisode(task, {DEMO_CAMERAS[0]: np.stack(front), DEMO_CAMERAS[1]: np.stack(wrist)},
                                  np.stack(states), np.stack(actions)))
    return out


def write_demo_dataset(root: str | Path, n_episodes: int = 6, steps: int = 16, seed: int = 0, fps: int = 10,
                       **kwargs: Any) -> Path:
    """The walk-through's (and the tests') LeRobot dataset: ``demo_episodes`` written in the v3 layout."""
    return write_lerobot_dataset(root, demo_episodes(n_episodes, steps, seed), fps, DEMO_STATE_NAMES,
                                 DEMO_ACTION_NAMES, robot_type="demo_7dof_arm", **kwargs)
