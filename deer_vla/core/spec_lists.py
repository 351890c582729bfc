"""Reading a spec's list fields from JSON/YAML data: a list or nothing, so that a number, a string or a mapping
where a list belongs is said in a ValueError naming the field (``tuple(3)`` raised a bare TypeError, which
pydantic validators pass on as a traceback)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def listed(data: Mapping[str, Any], key: str, default: tuple[Any, ...], spec: str) -> tuple[Any, ...]:
    """``data[key]`` as a tuple (``default`` when absent); ValueError naming ``spec.key`` when it is not a list."""
    value = data.get(key, default)
    if not isinstance(value, list | tuple):
        shown = repr(value) if len(repr(value)) <= 80 else f"a {type(value).__name__}"
        raise ValueError(f"{spec}.{key} must be a list, got {shown}")
    return tuple(value)
