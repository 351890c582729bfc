"""`deer-vla import-lerobot`: a LeRobot v3 dataset on local disk -> a deer_vla episode dataset.

Camera features are mapped to the policy's camera slots, ``observation.state``
becomes proprioception (named after the feature's ``names``), ``action``
becomes the normalised action (axes from the names or ``--action-axes``; see
deer_vla.data.importing for the scaling and the gripper rule), each frame's
``task`` string the instruction. Episode boundaries and fps are kept; an
episode whose frames change task is split where the task changes. Reading
is done with pyarrow and PyAV (see deer_vla.data.lerobot for why not the
``lerobot`` package).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deer_vla.core.writable import path_argument
from deer_vla.data.episodes import DatasetError, DatasetWriteError, check_camera_name, check_image_size
from deer_vla.data.importing import (
    ActionMapping,
    ImportWriter,
    check_action_frame,
    check_new_output,
    dataset_meta,
    fit_proprio_spec,
    next_train_command,
    resize_square,
    resolve_action_columns,
)
from deer_vla.data.lerobot import (
    TASKS_PATH,
    DataFiles,
    LeRobotFormatError,
    LeRobotInfo,
    VideoFrames,
    column_matrix,
    decode_image_cell,
    read_episodes,
    read_tasks,
)

_WRIST_HINTS = ("wrist", "hand", "gripper", "eye_in_hand")


def resolve_cameras(info: LeRobotInfo, pairs: list[str] | None) -> dict[str, str]:
    """``["static=observation.images.front", ...]`` (or, none given, the dataset's cameras) -> slot -> feature."""
    available = info.camera_keys()
    if not available:
        raise LeRobotFormatError(f"{info.root}: no image or video features; the policy needs at least one camera")
    if pairs:
        out: dict[str, str] = {}
        for item in pairs:
            slot, sep, key = item.partition("=")
            if not sep or not slot or not key:
                raise DatasetError(f"--camera expects SLOT=FEATURE (e.g. static=observation.images.front), "
                                   f"got {item!r}")
            if key not in available:
                raise DatasetError(f"--camera {item}: {key!r} is not a camera feature; cameras: {', '.join(available)}")
            check_camera_name(slot, f"--camera {item}: slot")
            if slot in out:
                raise DatasetError(f"--camera: slot {slot!r} given twice")
            if key in out.values():  # the same frames stored twice, as two views the policy would trust
                raise DatasetError(f"--camera: {key!r} given for two slots; each slot needs its own camera")
            out[slot] = key
        return out
    if len(available) == 1:  # a lone hand camera keeps its name, as a pair's does
        only = available[0]
        return {"wrist" if any(h in only.lower() for h in _WRIST_HINTS) else "static": only}
    if len(available) == 2:
        wrist = [k for k in available if any(h in k.lower() for h in _WRIST_HINTS)]
        second = wrist[0] if len(wrist) == 1 else available[1]
        return {"static": next(k for k in available if k != second), "wrist": second}
    raise DatasetError(f"{info.root} has {len(available)} cameras ({', '.join(available)}); choose with "
                       "--camera static=FEATURE [--camera wrist=FEATURE]")


@dataclass
class _Segment:
    """The rows of one output episode: a whole LeRobot episode, or its run of frames with one task."""

    row: dict[str, Any]
    start: int
    stop: int
    task_index: int


def _runs(task_index: np.ndarray) -> list[tuple[int, int, int]]:
    """Contiguous runs of equal task index: (start, stop, task)."""
    cuts = [0, *(np.flatnonzero(np.diff(task_index)) + 1).tolist(), len(task_index)]
    return [(a, b, int(task_index[a])) for a, b in zip(cuts[:-1], cuts[1:])]


def import_lerobot(src: str | Path, out: str | Path, cameras: list[str] | None = None, action_key: str = "action",
                   state_key: str | None = "observation.state", action_axes: str | None = None,
                   velocity: bool = False, quantile: float = 0.99, gripper_open: float | None = None,
                   gripper_closed: float | None = None, image_size: int = 64,
                   max_episodes: int | None = None, log: Any = print, action_frame: str = "") -> dict[str, Any]:
    """Import; returns a summary (episodes, steps, cameras, action spec, proprio names, fps). ``action_frame``:
    the TF frame of the action's axes (LeRobot's format does not record it)."""
    if max_episodes is not None and max_episodes < 1:  # rows[:-1] would silently drop the last episode
        raise DatasetError(f"--episodes must be >= 1, got {max_episodes}")
    check_image_size(image_size, "--image-size")
    check_action_frame(action_frame)
    check_new_output(out)  # before reading the whole dataset, not after
    info = LeRobotInfo.load(src)
    if state_key and state_key not in info.features:
        raise DatasetError(f"{info.root}: no feature {state_key!r} (features: {', '.join(info.features)}); name the "
                           "proprioception with --state-key, or --state-key none for a robot without it")
    root = info.root
    slots = resolve_cameras(info, cameras)
    action_dim = info.vector_dim(action_key)
    labels = resolve_action_columns(action_dim, info.names(action_key), action_axes, velocity)
    state_dim = info.vector_dim(state_key) if state_key else 0
    tasks = read_tasks(root)
    listed = read_episodes(root)
    rows = listed[:max_episodes]
    if not rows:
        raise LeRobotFormatError(f"{root}: no episodes")
    # what is not imported is said (the CLI prints it): an episode of no frames, episodes meta/episodes leaves out
    skipped = [f"episode {int(r['episode_index'])}: 0 frames" for r in rows if int(r["length"]) == 0]
    total = info.info.get("total_episodes")
    if isinstance(total, int) and not isinstance(total, bool) and total != len(listed):
        skipped.append(f"meta/info.json says {total} episodes, meta/episodes lists {len(listed)}: only those are read")
    columns = [action_key, "task_index", *([state_key] if state_key else [])]
    data = DataFiles(info, columns)

    # pass 1: the low-dimensional columns of every episode (to fit the spaces before writing anything)
    segments: list[_Segment] = []
    per_episode: dict[int, tuple[np.ndarray, np.ndarray | None, np.ndarray]] = {}
    for row in rows:
        if int(row["length"]) == 0:
            continue
        episode = data.episode(row)
        where = f"{episode.source}, episode {episode.episode_index}"
        actions = column_matrix(episode.columns[action_key], action_dim, f"{where}, column {action_key!r}")
        states = (column_matrix(episode.columns[state_key], state_dim, f"{where}, column {state_key!r}")
                  if state_key else None)
        task_index = np.asarray(episode.columns["task_index"].to_numpy(zero_copy_only=False)).reshape(-1)
        unknown = sorted(set(task_index.tolist()) - set(tasks))
        if unknown:
            raise LeRobotFormatError(f"{where}: task_index {unknown} not in {root / TASKS_PATH}")
        per_episode[int(row["episode_index"])] = (actions, states, episode.timestamps)
        segments.extend(_Segment(row, a, b, t) for a, b, t in _runs(task_index))
    if not per_episode:
        raise LeRobotFormatError(f"{root}: every episode has length 0")
    all_actions = np.concatenate([a for a, _, _ in per_episode.values()])
    mapping = ActionMapping.fit(all_actions, labels, velocity, quantile, gripper_open, gripper_closed, action_frame)
    proprio = None
    if state_key:
        proprio = fit_proprio_spec(np.concatenate([s for _, s, _ in per_episode.values() if s is not None]),
                                   info.names(state_key))
    meta = dataset_meta(
        list(slots), image_size, mapping, proprio, [tasks[s.task_index] for s in segments], info.fps,
        {"source": "lerobot", "path": str(root.resolve()), "codebase_version": info.info.get("codebase_version"),
         "robot_type": info.info.get("robot_type"), "camera_map": slots, "action_feature": action_key,
         "state_feature": state_key, "fps": info.fps},
    )

    # pass 2: frames, one episode at a time (resized as they are decoded)
    videos = VideoFrames(info)
    image_keys = [k for k in slots.values() if info.feature(k).get("dtype") == "image"]
    image_data = DataFiles(info, image_keys) if image_keys else None
    by_index = {int(r["episode_index"]): r for r in rows}
    next_seed = max(by_index) + 1  # seeds of the later parts of a split episode (the first part keeps its index)
    with ImportWriter(out, meta) as writer:
        for ep, (actions, states, timestamps) in per_episode.items():
            row = by_index[ep]
            frames: dict[str, np.ndarray] = {}
            cells = image_data.episode(row) if image_data is not None else None
            for slot, key in slots.items():
                decoded: Iterator[np.ndarray]
                if cells is not None and key in image_keys:
                    decoded = (decode_image_cell(c, f"{cells.source}, episode {ep}, column {key!r}, row {i}")
                               for i, c in enumerate(cells.columns[key].to_pylist()))
                else:
                    decoded = videos.episode(key, row, timestamps)
                frames[slot] = np.stack([resize_square([f], image_size)[0] for f in decoded])
            for seg in (s for s in segments if int(s.row["episode_index"]) == ep):
                seed = ep
                if seg.start > 0:
                    seed, next_seed = next_seed, next_seed + 1
                sl = slice(seg.start, seg.stop)
                writer.write(
                    tasks[seg.task_index], seed, {slot: f[sl] for slot, f in frames.items()},
                    None if states is None else states[sl], mapping.normalise(actions[sl]),
                    {"source_episode": ep, "frames": [seg.start, seg.stop]},
                )
            log(f"episode {ep}: {len(actions)} steps")
    return {
        "episodes": writer.count, "steps": writer.steps, "out": str(writer.root), "cameras": slots,
        "action_spec": mapping.spec.to_dict(), "clipped_fraction": mapping.clipped_fraction,
        "gripper": mapping.gripper_text(),
        "proprio_names": None if proprio is None else list(proprio.names), "fps": info.fps,
        "tasks": sorted({tasks[s.task_index] for s in segments}), "skipped": skipped,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deer-vla import-lerobot", description=__doc__.splitlines()[0])
    p.add_argument("dir", type=path_argument, help="LeRobot v3 dataset root (with meta/info.json)")
    p.add_argument("--out", type=path_argument, required=True, help="new deer_vla dataset directory")
    p.add_argument("--camera", action="append", default=None, metavar="SLOT=FEATURE",
                   help="map a camera feature to a policy camera slot, e.g. static=observation.images.front "
                        "(repeatable; default: the dataset's one or two cameras -> static[, wrist])")
    p.add_argument("--action-key", default="action", help="action feature (default: action)")
    p.add_argument("--state-key", default="observation.state",
                   help="proprioception feature (default: observation.state; 'none' for no proprioception)")
    p.add_argument("--action-axes", default=None, metavar="LABELS",
                   help="one label per action value: x,y,z,roll,pitch,yaw,gripper or '-' to skip "
                        "(default: from the feature's names)")
    p.add_argument("--velocity", action="store_true",
                   help="actions are velocities (m/s, rad/s); default: displacements per step (m, rad)")
    p.add_argument("--action-quantile", type=float, default=0.99,
                   help="per-axis scale = this quantile of |action| over the dataset (default 0.99)")
    p.add_argument("--gripper-open", type=float, default=None, help="raw gripper value meaning open (-> -1)")
    p.add_argument("--gripper-closed", type=float, default=None, help="raw gripper value meaning closed (-> +1)")
    p.add_argument("--image-size", type=int, default=64, help="stored square image size (default 64)")
    p.add_argument("--episodes", type=int, default=None, help="import only the first N episodes")
    p.add_argument("--action-frame", default="", metavar="FRAME",
                   help="TF frame the action's axes are in (kept in the checkpoint; the policy node sends its "
                        "twists in it)")
    return p


def cli_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_image_size(args.image_size, "--image-size")
    except DatasetError as exc:
        print(f"deer-vla import-lerobot: {exc}", file=sys.stderr)
        return 2
    try:
        summary = import_lerobot(
            args.dir, args.out, args.camera, args.action_key,
            None if args.state_key.lower() == "none" else args.state_key, args.action_axes, args.velocity,
            args.action_quantile, args.gripper_open, args.gripper_closed, args.image_size, args.episodes,
            log=lambda *_: None, action_frame=args.action_frame,
        )
    except (DatasetError, FileNotFoundError) as exc:  # the dataset or a setting refused
        print(f"deer-vla import-lerobot: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, DatasetWriteError) else 2  # a write that failed (disk full): no usage error
    spec = summary["action_spec"]
    for line in summary["skipped"]:
        print(f"deer-vla import-lerobot: not imported: {line}", file=sys.stderr)
    print(f"imported {summary['episodes']} episodes ({summary['steps']} steps at {summary['fps']:g} fps) into "
          f"{summary['out']}")
    print(f"  cameras   {', '.join(f'{s} <- {k}' for s, k in summary['cameras'].items())}")
    axes = ", ".join(f"{a} {s:.4g} {u}" for a, u, s in zip(spec["axes"], spec["units"], spec["scale"]))
    print(f"  action    {axes} per unit; gripper {summary['gripper']} "
          f"({100 * summary['clipped_fraction']:.2f}% of motion values clipped)")
    print(f"  proprio   {', '.join(summary['proprio_names'] or ['none'])}")
    unsaid = "not recorded (give --action-frame FRAME; the policy node sends base_link)"
    print(f"  frame     {spec.get('frame') or unsaid}")
    more = " ..." if len(summary["tasks"]) > 5 else ""
    print(f"  tasks     {len(summary['tasks'])}: {'; '.join(summary['tasks'][:5])}{more}")
    print(f"next: {next_train_command(summary['out'])}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
