"""Whether a command's output folder can be written, asked before minutes of work whose result it holds; whether
a file being written is still there to be read."""
from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

BLANK_PATH = "an empty path, which would mean the current directory: give one ('.' for the current directory)"
# (a blank one, " ", is a folder of that name: odd, but not the current directory, and what the user typed)


def nonblank_path(text: str | None, what: str) -> str | None:
    """``text`` unless it is empty: ``Path("")`` is the current directory, so an empty output setting
    wrote a dataset, a model or a checkpoint's thresholds where the command ran (or, as 'not given', into the
    shipped checkpoint). None passes (not given)."""
    if text == "":
        raise ValueError(f"{what} is {BLANK_PATH}")
    return text


def path_argument(text: str) -> Path:
    """argparse ``type`` of a path option: an empty one is refused (``nonblank_path``)."""
    if text == "":
        raise argparse.ArgumentTypeError(BLANK_PATH)
    return Path(text)


def unwritable_dir(path: Path, create: bool) -> str | None:
    """Why files cannot be written into ``path`` (created first when ``create``), or None. A missing ``path``
    that is not to be created is left to its reader (a checkpoint's loader says what is missing)."""
    if path.exists() and not path.is_dir():  # mkdir would say "File exists", which hides the problem
        return f"cannot write to {path}: not a directory"
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.is_dir():
            return None
        tempfile.TemporaryFile(dir=path).close()  # the real test: permissions, a read-only mount, a full quota
    except OSError as exc:
        return f"cannot write to {path}: {exc.strerror or exc}"
    return None


def missing_dirs(path: Path) -> list[Path]:
    """``path`` and its parents that do not exist yet, deepest first: what creating it makes (and
    ``remove_empty_dirs`` undoes when the command then fails)."""
    return [d for d in (path, *path.parents) if not d.exists()]


def remove_empty_dirs(dirs: Iterable[Path]) -> None:
    """Remove ``dirs`` (deepest first) where they are empty: folders a failed command created before writing
    anything into them. One that holds something, or cannot be removed, is left with those above it."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            return


def fresh_start_problem(resume: bool, overwrite: bool, earlier: Callable[[], str | None], where: Path | str,
                        other: str) -> str | None:
    """Why a run may not start in ``where``: both --resume and --overwrite, or (neither) an earlier run there
    that starting afresh would lose, as ``earlier()`` describes it (None: nothing to lose). ``other``: the
    setting that picks another folder, named in the message."""
    if resume and overwrite:
        return "--resume continues the earlier run and --overwrite deletes it: pass one"
    found = None if resume or overwrite else earlier()
    if found:  # hours of episodes or training steps, lost without a word before
        return (f"{where} holds an earlier run ({found}): --resume continues it, --overwrite starts afresh and "
                f"loses it, or choose another {other}")
    return None


def clobbers_input(out: str | Path, inputs: Iterable[str | Path], allowed: Iterable[str | Path] = ()
                   ) -> str | None:
    """Why writing ``out`` would replace one of the job's own inputs, or None: ``out`` is one of ``inputs``
    (any spelling of its path), or an existing file inside one of them that is a folder (a checkpoint's
    weights), other than the files in ``allowed`` (the job's own output there, e.g. a checkpoint's
    profile.json). New files inside an input folder are left alone. Asked before the work."""
    try:
        target = Path(out).expanduser().resolve()
        kept = {Path(p).expanduser().resolve() for p in allowed}
        if target in kept:
            return None
        for given in inputs:
            source = Path(given).expanduser().resolve()
            if target == source or (target.is_file() and source in target.parents):
                what = "is" if target == source else "is a file of"
                return f"{out} {what} this job's input {given}: writing it would replace it; choose another path"
    except (OSError, RuntimeError):  # an unreadable or looping path: the write says what is wrong with it
        return None
    return None


def unlinked(stream: IO[Any]) -> bool:
    """Whether the open file ``stream`` was deleted (or its folder): writes into it still succeed, into a file
    no one can read. A stream closed meanwhile (a log that moved on to its next part and closed this one, read
    by another thread) is not a deleted file: False, whether it was closed before the check or during it."""
    try:
        deleted = os.fstat(stream.fileno()).st_nlink == 0
    except (OSError, ValueError):  # closed: fileno() refuses, or fstat meets the freed descriptor
        return False
    return deleted and not stream.closed
