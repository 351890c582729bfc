"""Checkpoints shipped inside the package, selectable by name wherever a checkpoint is chosen.

A shipped checkpoint is a folder ``deer_vla/assets/<name>_checkpoint`` holding
``config.json``; its name is ``<name>`` ("default", "mt50", ...). Every option
that takes a checkpoint (``--checkpoint`` of the commands and benches, the
policy node's ``checkpoint_dir`` parameter, the launch argument ``checkpoint``)
goes through :func:`resolve_checkpoint`, so a name works in all of them.
No torch and no ROS here: the node's parameter validation calls it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from deer_vla.model.checkpoint_dir import CheckpointDir

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_NAME = "default"
SUFFIX = "_checkpoint"


class UnknownCheckpointError(ValueError):
    """A bare name that is neither a shipped checkpoint nor an existing path; the message lists the names."""


def _assets(assets: Path | None) -> Path:
    return ASSETS_DIR if assets is None else assets  # read at call time: tests point ASSETS_DIR elsewhere


def shipped_checkpoints(assets: Path | None = None) -> dict[str, Path]:
    """Name -> folder of every shipped checkpoint (a ``<name>_checkpoint`` folder with config.json), by name."""
    root = _assets(assets)
    if not root.is_dir():
        return {}
    found = (p for p in root.iterdir() if p.name.endswith(SUFFIX) and (p / CheckpointDir.CONFIG).is_file())
    return {p.name[: -len(SUFFIX)]: p for p in sorted(found)}


def _is_bare_name(value: str) -> bool:
    return Path(value).name == value and value not in (".", "..") and not value.startswith("~")


def resolve_checkpoint(value: str | Path, assets: Path | None = None) -> Path:
    """The checkpoint folder ``value`` selects.

    - ``""`` or ``"default"``: the shipped default checkpoint (its folder, even if it is missing: the loader
      then says what is wrong there);
    - an existing path: that path (``~`` expanded). For a bare name that is also a shipped name, only a folder
      that holds a checkpoint (config.json) wins: a checkpoint ``./mt50`` shadows the shipped "mt50", a dataset
      or log folder ``./mt50`` does not (write ``./mt50`` to mean that folder whatever it holds);
    - a shipped name (``"mt50"``): ``deer_vla/assets/mt50_checkpoint``;
    - any other path with a separator (``runs/x``): returned as it is, for the loader's "not found" message.

    A bare name that matches nothing raises UnknownCheckpointError listing the shipped names.
    """
    text = str(value)
    root = _assets(assets)
    if not text:
        return root / f"{DEFAULT_NAME}{SUFFIX}"
    path = Path(text).expanduser()
    if not _is_bare_name(text):
        return path
    # a folder named like a shipped checkpoint but holding none (data/mt50's own name, a log folder) is not
    # what "mt50" asks for: it would only fail later, with a message that never mentions the shipped one
    if CheckpointDir(path).exists():
        return path
    if text == DEFAULT_NAME:
        return root / f"{DEFAULT_NAME}{SUFFIX}"
    shipped = shipped_checkpoints(root)
    if text in shipped:
        return shipped[text]
    if path.exists():
        return path
    names = ", ".join(shipped) or "none found"
    raise UnknownCheckpointError(
        f"checkpoint {text!r} is neither an existing directory nor a shipped checkpoint "
        f"(shipped: {names}; in {root})"
    )


def shipped_name_of(folder: str | Path, assets: Path | None = None) -> str | None:
    """The name of the shipped checkpoint ``folder`` is (by any spelling of its path), else None: commands that
    write into a checkpoint refuse to change the package's own files unless told where to write."""
    try:
        target = Path(folder).expanduser().resolve()
    except OSError:
        return None
    return next((name for name, path in shipped_checkpoints(assets).items() if path.resolve() == target), None)


def checkpoint_argument(value: str) -> Path:
    """argparse ``type=`` for a --checkpoint option: a directory or a shipped name (the error is argparse's)."""
    try:
        return resolve_checkpoint(value)
    except UnknownCheckpointError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def checkpoint_help(what: str = "policy checkpoint", default: str | None = f'the shipped "{DEFAULT_NAME}"') -> str:
    """Help text for a --checkpoint option, naming the shipped checkpoints found (and the default, if any)."""
    names = ", ".join(shipped_checkpoints()) or "none"
    return f"{what}: a directory or a shipped checkpoint's name (shipped: {names})" + (
        f"; default: {default}" if default else "")


# the description of a settings field that takes a checkpoint (resolved with resolve_checkpoint where it is used)
CHECKPOINT_HELP = "checkpoint directory, or the name of one shipped in deer_vla/assets (default, mt50, ...)"
