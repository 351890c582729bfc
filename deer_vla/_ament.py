"""Make ament_index find packages installed into the running Python prefix."""
from __future__ import annotations

import os
import sys
from pathlib import Path

_MARKER = Path("share", "ament_index", "resource_index", "packages")


def register_venv_prefix(prefix: str | None = None) -> bool:
    """Append ``prefix`` (default ``sys.prefix``) to AMENT_PREFIX_PATH.

    Only when that prefix holds an ament resource index and is not listed yet.
    Returns True when the variable was changed.
    """
    prefix = prefix or sys.prefix
    if not (Path(prefix) / _MARKER).is_dir():
        return False
    current = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if os.path.realpath(prefix) in {os.path.realpath(p) for p in current}:
        return False
    os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join([*current, prefix])
    return True
