"""Whether a command's output folder can be written, asked before minutes of work whose result it holds."""
from __future__ import annotations

import tempfile
from pathlib import Path


def unwritable_dir(path: Path, create: bool) -> str | None:
    """Why files cannot be written into ``path`` (created first when ``create``), or None. A missing ``path``
    that is not to be created is left to its reader (a checkpoint's loader says what is missing)."""
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.is_dir():
            return None
        tempfile.TemporaryFile(dir=path).close()  # the real test: permissions, a read-only mount, a full quota
    except OSError as exc:
        return f"cannot write to {path}: {exc.strerror or exc}"
    return None
