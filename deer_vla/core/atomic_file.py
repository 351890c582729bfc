"""Whole-or-nothing file writes: a crash (or SIGKILL) mid-write leaves the old file, never half a new one."""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a private temporary name beside ``path``, flush it to disk, then rename it over
    ``path`` in one step (os.replace is atomic on POSIX within a file system). A symbolic link's target is
    replaced (the link stays); a device or pipe (``--json /dev/stdout``) is written straight, appended; a
    writable file in a folder that takes no new name is written in place, as before whole writes."""
    path = Path(path)
    target = _replaced_file(path)
    if target is None:
        with _names(path), open(path, "ab") as f:  # appended: a file behind /dev/stdout keeps what came before
            f.write(data)
        return
    tmp = _temporary_name(target)
    try:
        with _names(path):
            try:
                f = open(tmp, "wb")
            except PermissionError:  # a folder that takes no new name, beside a file that may be written: in place
                if not os.access(target, os.W_OK):
                    raise
                with open(target, "wb") as whole:
                    whole.write(data)
                return
            with f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)  # only left when the write or the rename failed


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_figure(fig: Any, path: str | Path, dpi: int) -> None:
    """A matplotlib figure saved whole or not at all (its format from ``path``'s suffix, PNG without one)."""
    suffix = Path(path).suffix.lstrip(".").lower()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=suffix or "png"))


def atomic_write_with(path: str | Path, write: Callable[[Path], None]) -> None:
    """``atomic_write_bytes`` for a writer that takes a file name (safetensors' ``save_file``, which writes from
    the tensors' memory where ``save`` would first copy the whole file into bytes): ``write(tmp)`` writes the
    temporary file, which then gets the mode a file created there gets (``save_file`` makes it 0600 whatever
    the umask or the folder's default ACL: a checkpoint a robot's service user could not read), is flushed to
    disk and renamed over ``path``; a stream's (a device or pipe) is appended to it."""
    path = Path(path)
    target = _replaced_file(path)
    if target is None:  # a stream: appended to, as atomic_write_bytes does (writers open their file "wb",
        # which truncated the file a shell sent stdout to), from a private file the writer fills first
        with tempfile.TemporaryDirectory() as folder, _names(path):
            whole = Path(folder) / f"whole{path.suffix}"  # the suffix kept: a writer may take its format from it
            write(whole)
            with open(whole, "rb") as src, open(path, "ab") as dst:
                shutil.copyfileobj(src, dst)
        return
    tmp = _temporary_name(target)
    try:
        with _names(path):
            write(tmp)
            os.chmod(tmp, _new_file_mode(target.parent))
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)  # only left when the write or the rename failed


def _replaced_file(path: Path) -> Path | None:
    """The file a whole write of ``path`` replaces: ``path``, or the end of its chain of symbolic links (renaming
    over the link replaced the link itself: a shared file it pointed to kept its old content); None to write
    ``path`` straight: a device or a pipe, or a stream's name such as /dev/stdout (a link through
    /proc/self/fd: renaming over the file a shell sent stdout to lost everything else written there, and
    renaming over /dev/stdout itself replaced the system's link)."""
    current = path
    for _ in range(40):  # the kernel's own limit on a chain of links
        if str(current).startswith(("/dev/", "/proc/")):
            return None
        if not current.is_symlink():
            break
        current = current.parent / os.readlink(current)
    try:
        st = os.stat(path)  # follows links
    except OSError:  # absent (a new file, a dangling link), or a loop: the writes below say which
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        return None
    return path if current == path else Path(os.path.realpath(current))


@contextlib.contextmanager
def _names(path: Path) -> Iterator[None]:
    """An OSError raised inside names ``path``: one raised when the data reach the disk (a full disk at flush or
    close) names no file, one raised on the temporary file or the mode probe names a private name, and each
    left the user to guess which of a run's files was lost."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None or str(exc.filename) != str(path):  # the others inside are this module's own
            exc.filename = str(path)
        raise


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _new_file_mode(folder: Path) -> int:
    """The mode open() gives a new file in ``folder``: the umask's, or where the folder has a default ACL, the
    ACL's (whose mask is the group bits: a mode from the umask alone would cut a named user's or group's
    grant). Read off a probe file, created and removed."""
    probe = folder / f".mode-probe.{os.getpid()}.{threading.get_ident()}"
    fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    try:
        return stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)
