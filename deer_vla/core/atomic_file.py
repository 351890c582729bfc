"""Whole-or-nothing file writes: a crash (or SIGKILL) mid-write leaves the old file, never half a new one."""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a private temporary name beside ``path``, flush it to disk, then rename it over
    ``path`` in one step (os.replace is atomic on POSIX within a file system)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write_with(path, write)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: str | Path, write: Callable[[Path], None]) -> None:
    """``atomic_write_bytes`` for a writer that takes a file name (safetensors' ``save_file``, which writes from
    the tensors' memory where ``save`` would first copy the whole file into bytes): ``write(tmp)`` writes the
    temporary file, which gets the mode the umask gives new files (``save_file`` makes it 0600: a checkpoint
    another account, a robot's service user, could not read), is flushed to disk and renamed over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left when the write or the rename failed


def _umask() -> int:
    """This process's umask, read without changing it where Linux says it (/proc, since 4.7): setting it to read
    it would, for a moment, give files other threads create the wrong mode."""
    try:
        found = re.search(r"^Umask:\s*([0-7]+)$", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        found = None
    if found:
        return int(found.group(1), 8)
    mask = os.umask(0o077)  # (the briefly set value is the strict one)
    os.umask(mask)
    return mask
