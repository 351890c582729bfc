"""Building a spec (ActionSpec, ProprioSpec) from JSON/YAML data: its list fields a list or nothing, so that a
number, a string or a mapping where a list belongs is said in a ValueError naming the field (``tuple(3)``
raised a bare TypeError, which pydantic validators pass on as a traceback), and an item ``float()`` cannot take
(null, a list) too."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

SpecT = TypeVar("SpecT")


def spec_from_lists(make: Callable[..., SpecT], data: Mapping[str, Any], defaults: Mapping[str, tuple[Any, ...]],
                    spec: str) -> SpecT:
    """``make(**{key: data[key] as a tuple, or defaults[key]})``; ValueError naming ``spec.key`` when one is not
    a list, or saying that the values must be numbers when ``make`` cannot take an item."""
    lists = {}
    for key, default in defaults.items():
        value = data.get(key, default)
        if not isinstance(value, list | tuple):
            shown = repr(value)  # (config_io.shown_value would bring yaml and pydantic into every spec's import)
            raise ValueError(f"{spec}.{key} must be a list, got "
                             f"{shown if len(shown) <= 80 else 'a ' + type(value).__name__}")
        lists[key] = tuple(value)
    try:
        return make(**lists)
    except TypeError as exc:
        raise ValueError(f"{spec} values must be numbers: {exc}") from exc
