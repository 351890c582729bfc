"""JSON from files and messages this package is handed: every way it fails is one JsonTextError saying why.

``json.loads`` fails in four unrelated ways: JSONDecodeError (not JSON), a plain ValueError (an integer over
Python's 4300-digit limit), RecursionError ("[[[[...", not a ValueError at all) and, for bytes, a
UnicodeDecodeError; a file read whole can also be far too big to hold. Each reader (checkpoint, thresholds,
journal, data set, resume state, ...) catches JsonTextError alone and names its file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_MAX_BYTES = 16 << 20  # far above any metadata file this package reads; a stray huge file stays unread


class JsonTextError(ValueError):
    """Why a text is not the JSON expected. ``syntax``: it is not JSON at all (a line cut short by a crash is
    such), as opposed to JSON Python will not hold (too deep, a huge integer) or a file that is not text."""

    def __init__(self, reason: str, syntax: bool = False) -> None:
        super().__init__(reason)
        self.syntax = syntax


def parse_json(data: str | bytes) -> Any:
    """``json.loads`` with its failures as JsonTextError: "not UTF-8 JSON text (...)", "not JSON (...)",
    "JSON nested too deeply"."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonTextError(f"not UTF-8 JSON text ({exc})") from exc
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise JsonTextError(f"not JSON ({exc})", syntax=True) from exc
    except ValueError as exc:  # valid JSON Python will not read: an integer over its 4300-digit limit
        raise JsonTextError(f"not JSON ({exc})") from exc
    except RecursionError as exc:
        raise JsonTextError("JSON nested too deeply") from exc


def read_json_file(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """The JSON document in ``path``, refused unread past ``max_bytes`` (read whole, a 1 GB file took 2.5 GB
    before "not JSON"). OSError (missing, unreadable) passes through for the caller to name."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise JsonTextError(f"{size} bytes, far more than this file holds (at most {max_bytes})")
    return parse_json(path.read_bytes())
