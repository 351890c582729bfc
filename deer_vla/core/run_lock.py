"""One writer per output folder: an advisory lock that the kernel drops when its process ends (SIGKILL too)."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_NAME = ".deer_vla.lock"


class FolderInUseError(ValueError):
    """Another process holds the folder's lock; the message names the folder and, where known, the holder."""


def lock_folder(folder: Path, what: str, wait: bool = False) -> IO[str]:
    """An exclusive lock on ``folder`` (created if needed) for as long as the returned file stays open.

    ``what`` names the job in the refusal ("training", "evaluation"): two of them writing one folder at once
    interleaved their logs and removed each other's staging files. ``wait``: wait for the holder instead (a
    short write, such as calibrate's thresholds, each run's turn in order)."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = (folder / LOCK_NAME).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()[:80]
        handle.close()
        raise FolderInUseError(f"{folder} is in use by another {what} ({holder or 'a running process'}); wait "
                               "for it, or choose another folder") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle
