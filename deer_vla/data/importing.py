"""What every importer of foreign robot data shares: action/proprio spaces fitted to the data, and the writer.

An importer (LeRobot, MCAP) reads raw per-step arrays in the robot's own
units and hands them here:

* ``ActionMapping`` says which raw column is which end-effector axis and
  which is the gripper, and turns raw actions into deer_vla's normalised
  layout: each continuous axis divided by a symmetric scale (the
  ``quantile`` of |value| over the whole dataset, so zero stays "no
  motion" and rare spikes clip at +-1 instead of squeezing everything
  else), the gripper mapped linearly from the stated raw open/closed
  values to -1 (open) .. +1 (closed). The resulting ``ActionSpec`` (axes,
  units, scale) is what the policy node uses to turn actions back into
  metres and radians.
* ``fit_proprio_spec`` names the proprio values and records their mean and
  standard deviation, which the model applies itself (so the node feeds
  raw robot values).
* ``ImportWriter`` resizes frames, names episodes and writes them in the
  deer_vla episode format, plus ``import_map.jsonl`` (which source episode
  and frames each stored episode came from), into a new directory that
  appears only when the import is complete.
"""
from __future__ import annotations

import errno
import json
import math
import os
import re
import shlex
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import numpy as np

from deer_vla.core.action_spec import (
    AXIS_UNITS,
    GRIPPER,
    PLAUSIBLE_MOTION,
    STANDARD_AXES,
    ActionSpec,
    axis_kind,
    check_frame_id,
)
from deer_vla.core.config_io import config_dir_candidates, packaged_config_dir
from deer_vla.core.image_resize import resize_rgb_frames
from deer_vla.core.proprio_spec import ProprioSpec
from deer_vla.data.episodes import META_FILE, DatasetError, DatasetMeta, DatasetWriteError, Episode, EpisodeWriter

SKIP = "-"  # an action column that is not used
IMPORT_MAP = "import_map.jsonl"
RECIPE = "train_own_robot.yaml"  # the own-robot training config the importers point at
_ALIASES: dict[str, tuple[str, ...]] = {
    "x": ("x", "dx", "pos_x", "x_pos", "tx", "vx", "linear_x"),
    "y": ("y", "dy", "pos_y", "y_pos", "ty", "vy", "linear_y"),
    "z": ("z", "dz", "pos_z", "z_pos", "tz", "vz", "linear_z"),
    "roll": ("roll", "rx", "rot_x", "droll", "wx", "angular_x"),
    "pitch": ("pitch", "ry", "rot_y", "dpitch", "wy", "angular_y"),
    "yaw": ("yaw", "rz", "rot_z", "dyaw", "wz", "angular_z"),
    GRIPPER: ("gripper", "grip", "gripper_pos", "gripper_position", "gripper_state", "gripper_command", "g"),
}
_PREFIXES = ("action.", "delta_", "d_", "ee_", "eef_", "tcp_", "target_", "cmd_", "commanded_", "world_vector_")
_SUFFIXES = ("_delta", ".delta", ".vel", "_vel", ".pos", "_cmd")


def _rare_axis_scale(axis: str, values: np.ndarray, moved: dict[str, float]) -> float:
    """The scale of an axis that moves on under 1 - quantile of the steps (its quantile is 0). Unit scale (1 m
    or 1 rad per step) let the model's small errors on an axis the robot never moved reach metres per second:
    its largest recorded move, or, one never moved, the smallest scale of the moving axes of its kind (of any
    kind if none), so it is clipped no wider than they are."""
    largest = float(np.max(np.abs(values)))
    if largest > 1e-9:
        return largest
    same = [v for a, v in moved.items() if axis_kind(a) == axis_kind(axis)]
    return min(same or list(moved.values()) or [1.0])


def axis_of_name(name: str) -> str | None:
    """A raw column name -> a standard axis or "gripper" (None when it is not recognised)."""
    key = name.strip().lower().replace(" ", "_")
    for _ in range(2):
        for p in _PREFIXES:
            key = key.removeprefix(p)
        for s in _SUFFIXES:
            key = key.removesuffix(s)
    return next((axis for axis, names in _ALIASES.items() if key in names), None)


_VELOCITY_NAMES = {"vx", "vy", "vz", "wx", "wy", "wz", "linear_x", "linear_y", "linear_z", "angular_x", "angular_y",
                   "angular_z"}
_POSITION_NAMES = {"pos_x", "pos_y", "pos_z", "x_pos", "y_pos", "z_pos"}


def implied_units(name: str) -> str | None:
    """What a motion column's name says its values are: "velocity", "position" (an absolute pose or target) or
    None (a delta per step, or nothing said)."""
    key = name.strip().lower().replace(" ", "_")
    if key.endswith((".vel", "_vel")) or key.split(".")[-1] in _VELOCITY_NAMES:
        return "velocity"
    if key.endswith(".pos") or key.startswith("target_") or key.split(".")[-1] in _POSITION_NAMES:
        return "position"
    return None


def check_named_units(names: Sequence[str], labels: Sequence[str], velocity: bool) -> None:
    """DatasetError when the motion columns' names say velocities without ``--velocity``, or absolute positions:
    taken as per-step deltas, a 0.05 m/s velocity at 30 fps was published as 1.5 m/s, and a pose target as a
    jump of its whole value every step."""
    motion = [(n, implied_units(n)) for n, x in zip(names, labels) if x not in (GRIPPER, SKIP)]
    fast = [n for n, kind in motion if kind == "velocity"]
    if fast and not velocity:
        raise DatasetError(f"action names {fast} say velocities: pass --velocity (values in m/s and rad/s), or "
                           "label the columns yourself with --action-axes if they are per-step deltas")
    poses = [n for n, kind in motion if kind == "position"]
    if poses:
        raise DatasetError(f"action names {poses} say absolute positions or targets; deer_vla learns per-step "
                           "deltas (or velocities with --velocity): convert them, or label the columns with "
                           "--action-axes if they already are deltas")


def resolve_action_columns(dim: int, names: Sequence[str] | None, flag: str | None,
                           velocity: bool = False) -> list[str]:
    """One label per raw action column (an axis, "gripper" or "-" to skip), from ``--action-axes`` or the names
    (whose units they say are checked against ``velocity``: ``check_named_units``)."""
    valid = (*STANDARD_AXES, GRIPPER, SKIP)
    if flag:
        labels = [x.strip() for x in flag.split(",")]
        if len(labels) != dim:
            raise DatasetError(f"--action-axes lists {len(labels)} labels for {dim} action values "
                               f"(names in the data: {list(names) if names else 'none'})")
        bad = [x for x in labels if x not in valid]
        if bad:
            raise DatasetError(f"--action-axes: unknown label(s) {bad}; use {', '.join(valid)} ('-' skips a value)")
    elif names is None:
        raise DatasetError(f"the {dim} action values carry no names: say which is which with --action-axes "
                           f"(e.g. x,y,z,roll,pitch,yaw,gripper; '-' skips a value)")
    else:
        if len(names) != dim:
            raise DatasetError(f"{len(names)} action names {list(names)} for {dim} values")
        labels = [axis_of_name(n) or "?" for n in names]
        unknown = [n for n, x in zip(names, labels) if x == "?"]
        if unknown:
            raise DatasetError(f"action names {unknown} are not end-effector axes I recognise (of {list(names)}); "
                               "map them with --action-axes, e.g. x,y,z,roll,pitch,yaw,gripper ('-' skips a value). "
                               "deer_vla policies command end-effector motion, not joint positions")
        check_named_units(names, labels, velocity)
    used = [x for x in labels if x != SKIP]
    if len(set(used)) != len(used):
        raise DatasetError(f"action columns map to repeated axes {labels}")
    if used.count(GRIPPER) != 1:
        raise DatasetError(f"exactly one action value must be the gripper, got {labels}")
    if len(used) < 2:
        raise DatasetError(f"at least one motion axis besides the gripper is needed, got {labels}")
    return labels


def check_action_frame(frame: str) -> str:
    """The --action-frame given, or DatasetError (said before a long read, not after)."""
    try:
        return check_frame_id(frame, "--action-frame")
    except ValueError as exc:
        raise DatasetError(str(exc)) from exc


# gripper values this share of the open..closed span beyond them count as beyond (a closed gripper reads a
# little past its commanded value)
GRIPPER_SLACK = 0.05
# the most an arm moves, per axis kind, (per control step, per second): a recorded value beyond is no motion


@dataclass(frozen=True)
class ActionMapping:
    """Raw action columns -> the normalised deer_vla layout (continuous axes in standard order, gripper last)."""

    axes: tuple[str, ...]
    columns: tuple[int, ...]  # raw column of each axis
    gripper_column: int
    scale: tuple[float, ...]  # raw units per normalised unit, per axis
    units: tuple[str, ...]
    gripper_open: float
    gripper_closed: float
    quantile: float
    clipped_fraction: float = 0.0  # of continuous values beyond +-1 after scaling, on the fitted data
    frame: str = ""  # the TF frame the axes are in ("" = not known)
    # of gripper values beyond the stated open..closed values (by more than GRIPPER_SLACK of their span): clipped
    gripper_clipped_fraction: float = 0.0

    @classmethod
    def fit(cls, raw: np.ndarray, labels: Sequence[str], velocity: bool = False, quantile: float = 0.99,
            gripper_open: float | None = None, gripper_closed: float | None = None,
            frame: str = "") -> ActionMapping:
        """Fit the scales on every raw action of the dataset (N, A); ``velocity``: values are m/s, rad/s;
        ``frame``: the TF frame the raw axes are in."""
        check_action_frame(frame)
        raw = np.asarray(raw, dtype=np.float64)
        if raw.ndim != 2 or raw.shape[1] != len(labels) or raw.shape[0] == 0:
            raise DatasetError(f"actions of shape {raw.shape} for {len(labels)} labelled columns")
        if not np.all(np.isfinite(raw)):
            raise DatasetError("actions contain NaN or inf")
        if not 0.5 <= quantile <= 1.0:
            raise DatasetError(f"the action scale quantile must be in [0.5, 1], got {quantile}")
        order = [a for a in STANDARD_AXES if a in labels]
        columns = tuple(list(labels).index(a) for a in order)
        for a, c in zip(order, columns):  # one absurd row set the scale: every real label ~0, full scale 1e300 m/s
            kind = axis_kind(a)
            limit, unit = PLAUSIBLE_MOTION[kind][velocity], AXIS_UNITS[kind][int(velocity)]
            row = int(np.argmax(np.abs(raw[:, c])))
            if abs(raw[row, c]) > limit:
                raise DatasetError(f"action axis {a}: {raw[row, c]:g} {unit} at row {row} is beyond any arm's motion "
                                   f"({limit:g} {unit}{'' if velocity else ' per step'}): a damaged record, or "
                                   "values not in metres and radians (convert them first)")
        moved: dict[str, float] = {}  # axis -> its quantile scale, for the axes that move on enough steps
        for a, c in zip(order, columns):
            q = float(np.quantile(np.abs(raw[:, c]), quantile))
            if q > 1e-9:
                moved[a] = q
        scale = [moved.get(a) or _rare_axis_scale(a, raw[:, c], moved) for a, c in zip(order, columns)]
        g = list(labels).index(GRIPPER)
        lo, hi = float(raw[:, g].min()), float(raw[:, g].max())
        if gripper_open is None and gripper_closed is None:
            # only a signed gripper in [-1, 1] is taken as deer_vla's own convention; 0..1 is recorded both
            # ways round (0 = open in some datasets, 0 = closed in others), so it must be stated
            if lo < -1.0 - 1e-6 or hi > 1.0 + 1e-6 or lo >= 0.0:
                raise DatasetError(f"gripper values span [{lo:g}, {hi:g}]; deer_vla uses -1 (open) .. +1 (closed) "
                                   "and cannot tell which end is open: state the raw values with "
                                   "--gripper-open V --gripper-closed V")
            gripper_open, gripper_closed = -1.0, 1.0
        elif gripper_open is None or gripper_closed is None:
            raise DatasetError("give both --gripper-open and --gripper-closed")
        elif not (math.isfinite(gripper_open) and math.isfinite(gripper_closed)):  # NaN would make every label NaN
            raise DatasetError(f"--gripper-open and --gripper-closed must be finite, got {gripper_open:g} and "
                               f"{gripper_closed:g}")
        if gripper_open == gripper_closed:
            raise DatasetError(f"--gripper-open and --gripper-closed are both {gripper_open}")
        low, high = sorted((gripper_open, gripper_closed))
        slack = GRIPPER_SLACK * (high - low)
        below, above = raw[:, g] < low - slack, raw[:, g] > high + slack
        if below.all() or above.all():  # every label clipped to one end: a policy that never closes (or opens)
            end = "open" if (below.all()) == (low == gripper_open) else "closed"
            raise DatasetError(f"gripper values span [{lo:g}, {hi:g}], all beyond --gripper-open {gripper_open:g} "
                               f"--gripper-closed {gripper_closed:g}: every gripper label would be {end}; give the "
                               "raw values the gripper column has when open and when closed")
        unit_index = 1 if velocity else 0
        mapping = cls(tuple(order), columns, g, tuple(scale),
                      tuple(AXIS_UNITS[axis_kind(a)][unit_index] for a in order),
                      float(gripper_open), float(gripper_closed), float(quantile), frame=frame)
        scaled = raw[:, list(columns)] / np.asarray(scale)
        return replace(mapping, clipped_fraction=float(np.mean(np.abs(scaled) > 1.0)),
                       gripper_clipped_fraction=float(np.mean(below | above)))

    def gripper_text(self) -> str:
        """How the gripper column maps, for an import's summary (and how much of it was clipped)."""
        text = f"{self.gripper_open:g} open -> -1, {self.gripper_closed:g} closed -> +1"
        if self.gripper_clipped_fraction > 0:
            text += f" ({100 * self.gripper_clipped_fraction:.2f}% of gripper values beyond them, clipped)"
        return text

    @property
    def spec(self) -> ActionSpec:
        return ActionSpec(axes=self.axes, scale=self.scale, units=self.units, frame=self.frame)

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """(T, A) raw -> (T, axes + 1) float32 in [-1, 1], gripper last (+1 closed)."""
        raw = np.asarray(raw, dtype=np.float64)
        motion = np.clip(raw[:, list(self.columns)] / np.asarray(self.scale), -1.0, 1.0)
        span = self.gripper_closed - self.gripper_open
        grip = np.clip(-1.0 + 2.0 * (raw[:, self.gripper_column] - self.gripper_open) / span, -1.0, 1.0)
        return np.concatenate([motion, grip[:, None]], axis=1).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {
            "axes": {a: {"column": c, "scale": s, "units": u}
                     for a, c, s, u in zip(self.axes, self.columns, self.scale, self.units)},
            "scale_rule": f"quantile {self.quantile:g} of |raw value| over the dataset; beyond it clipped to +-1",
            "clipped_fraction": round(self.clipped_fraction, 6),
            "gripper_clipped_fraction": round(self.gripper_clipped_fraction, 6),
            "frame": self.frame or "not recorded",
            "gripper": {"column": self.gripper_column, "raw_open": self.gripper_open,
                        "raw_closed": self.gripper_closed, "rule": "linear, raw_open -> -1, raw_closed -> +1, clipped"},
        }


def fit_proprio_spec(states: np.ndarray, names: Sequence[str] | None,
                     units: Sequence[str] | None = None) -> ProprioSpec:
    """Name the proprio values (``state_i`` when unnamed) and record their mean / std for standardisation."""
    states = np.asarray(states, dtype=np.float64)
    if states.ndim != 2 or states.shape[0] == 0:
        raise DatasetError(f"proprio of shape {states.shape}: expected (N >= 1, P)")
    if not np.all(np.isfinite(states)):
        raise DatasetError("proprio contains NaN or inf")
    dim = states.shape[1]
    if names is None:
        names = [f"state_{i}" for i in range(dim)]
    if len(names) != dim:
        raise DatasetError(f"{len(names)} proprio names {list(names)} for {dim} values")
    clean = [re.sub(r"[^A-Za-z0-9_.:/\-]+", "_", n).strip("_") or f"state_{i}" for i, n in enumerate(names)]
    with np.errstate(over="ignore"):  # values near 1e200 overflow the variance: refused below, in words
        std = states.std(axis=0)
        mean = states.mean(axis=0)
    if not (np.all(np.isfinite(std)) and np.all(np.isfinite(mean))):
        raise DatasetError(f"proprio values too large to standardise (largest magnitude {np.abs(states).max():.3g})")
    try:
        return ProprioSpec(names=tuple(clean), units=tuple(units) if units else (),
                           mean=tuple(float(m) for m in mean), std=tuple(float(s) if s > 1e-6 else 1.0 for s in std))
    except ValueError as exc:
        raise DatasetError(f"proprio: {exc}") from exc


def task_slug(text: str, max_len: int = 48) -> str:
    """An instruction -> an episode task name (lowercase letters, digits, '-')."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_len].strip("-")
    return slug or "task"


def resize_square(frames: Sequence[np.ndarray] | np.ndarray, size: int) -> np.ndarray:
    """RGB frames of any size -> (T, size, size, 3) uint8, resized as the policy node resizes camera images."""
    try:
        return resize_rgb_frames(frames, size)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None


def next_train_command(out: str | Path) -> str:
    """The command that trains on an imported dataset, to paste as printed from any folder: the own-robot
    config's full path (an installed package keeps it in share/deer_vla/config) and the paths quoted."""
    # the config folder in use first (a DEER_VLA_CONFIG_DIR may hold node parameters alone), then the package's
    # own; the ament index, for an apt install, is ROS's: not asked here
    folders = [f for f in (packaged_config_dir(), *config_dir_candidates()) if f is not None]
    config = next((f / RECIPE for f in folders if (f / RECIPE).is_file()), Path("config") / RECIPE)
    config = config.absolute() if config.is_file() else config  # (none found: the README's name)
    return shlex.join(["deer-vla", "train", "--config", str(config), "--set", f"dataset={Path(out).resolve()}"])


def check_new_output(out: str | Path) -> Path:
    """``out`` as the root of a new dataset: absent or an empty directory (an import never adds to one). A symbolic
    link stands for its target: the dataset is staged beside the target (the same file system) and renamed onto it,
    where a rename onto the link itself fails, after the whole import."""
    root = Path(out)
    if root.is_symlink():
        root = root.resolve()
    if root.exists() and not root.is_dir():
        raise DatasetError(f"--out {root} exists and is not a directory; import into a new directory")
    if root.is_dir() and any(root.iterdir()):
        held = f"a dataset ({META_FILE})" if (root / META_FILE).exists() else "files"
        raise DatasetError(f"--out {root} already holds {held}; import into a new directory")
    # the finished import is renamed onto --out: the working directory or a mount point cannot be replaced
    # (EBUSY after the whole import)
    if root.is_dir() and (root.resolve() == Path.cwd().resolve() or os.path.ismount(root)):
        raise DatasetError(f"--out {out} is the current directory or a mount point, which the finished import "
                           "cannot replace; name a new folder inside it")
    return root


def _reason(e: OSError) -> str:
    return f"{e.strerror}: {e.filename}" if e.strerror and e.filename else str(e)


def remove_abandoned_staging(out: Path) -> list[Path]:
    """Delete the staging folders a killed import into ``out`` left beside it (``.<name>.importing-<pid>-*``
    whose process is gone); -> the folders removed. A running import's folder is left alone."""
    removed = []
    for staging in out.parent.glob(f".{glob_escape(out.name)}.importing-*"):
        match = re.fullmatch(rf"\.{re.escape(out.name)}\.importing-(\d+)-[0-9a-f]+", staging.name)
        if match is None or not staging.is_dir() or _process_alive(int(match.group(1))):
            continue
        shutil.rmtree(staging, ignore_errors=True)
        removed.append(staging)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    try:  # a killed import not yet reaped (a zombie: `timeout -s KILL` leaves one for a moment) answers kill(0)
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


class ImportWriter:
    """Writes imported episodes as a new dataset at ``out``, all or nothing.

    Everything goes into a hidden sibling directory that is renamed to ``out`` only once the last episode is
    written (leaving the ``with`` block without an error), so an import that fails or is killed midway never
    leaves at ``out`` a dataset that loads as if complete; on an error the staged files are removed.
    """

    def __init__(self, out: str | Path, meta: DatasetMeta) -> None:
        self.root = check_new_output(out)
        self.image_size = meta.image_size
        self.count = 0
        self.steps = 0
        self.staging: Path | None = None
        try:
            self.root.parent.mkdir(parents=True, exist_ok=True)
            remove_abandoned_staging(self.root)
            # mkdir, not mkdtemp: the dataset gets the usual (umask) permissions, not mkdtemp's owner-only ones
            staging = self.root.parent / f".{self.root.name}.importing-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            staging.mkdir()
            self.staging = staging
            self.writer = EpisodeWriter(self.staging, meta)
            self._map = (self.staging / IMPORT_MAP).open("w", encoding="utf-8")
        except OSError as e:
            self._discard()
            raise DatasetWriteError(f"cannot write the dataset {self.root}: {_reason(e)}") from e

    def __enter__(self) -> ImportWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: Any) -> None:
        if exc_type is not None:
            self._map.close()
            self._discard()
            return
        try:
            self._map.close()
            assert self.staging is not None
            os.replace(self.staging, self.root)  # replaces an empty directory too, in one step
        except OSError as e:
            self._discard()
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):  # --out was free at the start: another run filled it
                raise DatasetWriteError(f"cannot write the dataset {self.root}: another run wrote a dataset there "
                                        "while this one ran; import into a new directory") from e
            raise DatasetWriteError(f"cannot write the dataset {self.root}: {_reason(e)}") from e
        remove_abandoned_staging(self.root)  # a killed run's left while this one ran (its process reaped since)

    def _discard(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)

    def write(self, instruction: str, seed: int, images: dict[str, Sequence[np.ndarray] | np.ndarray],
              proprio: np.ndarray | None, actions: np.ndarray, source: dict[str, Any]) -> Path:
        """Stage one episode; returns its path relative to the dataset root."""
        episode = Episode(
            task=task_slug(instruction), instruction=instruction, seed=int(seed), success=True,
            images={cam: resize_square(frames, self.image_size) for cam, frames in images.items()},
            proprio=None if proprio is None else np.asarray(proprio, dtype=np.float32),
            actions=np.asarray(actions, dtype=np.float32),
        )
        if self.writer.exists(episode.task, episode.seed):
            raise DatasetError(f"two imported episodes map to {episode.task} seed {episode.seed}")
        # named by its source: the staged file it would have become is deleted with the failed import
        episode.validate(self.writer.meta, where="the episode of " + ", ".join(f"{k} {v}" for k, v in source.items()))
        try:
            path = self.writer.write(episode).relative_to(self.writer.root)
            self._map.write(json.dumps({"file": str(path), **source}) + "\n")
        except OSError as e:  # disk full, quota: the whole import is discarded
            raise DatasetWriteError(f"cannot write the dataset {self.root}: {_reason(e)}") from e
        self.count += 1
        self.steps += episode.length
        return path


def dataset_meta(cameras: Sequence[str], image_size: int, mapping: ActionMapping, proprio: ProprioSpec | None,
                 instructions: Sequence[str], rate_hz: float, collection: dict[str, Any]) -> DatasetMeta:
    """The meta.json of an imported dataset: its spaces, rate and provenance (the action mapping included)."""
    tasks = list(dict.fromkeys(task_slug(t) for t in instructions))
    return DatasetMeta(
        cameras=tuple(cameras), image_size=int(image_size), action_spec=mapping.spec.to_dict(),
        proprio_dim=0 if proprio is None else proprio.dim,
        proprio_spec=None if proprio is None else proprio.to_dict(),
        tasks=tasks, success_only=True, control_rate_hz=float(rate_hz),
        collection={**collection, "action_mapping": mapping.describe(),
                    "episodes": "demonstrations, stored as successful (the source records no outcome)"},
    )
