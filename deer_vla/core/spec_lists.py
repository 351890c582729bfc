"""Building a spec (ActionSpec, ProprioSpec) from JSON/YAML data: its list fields a list or nothing, so that a
number, a string or a mapping where a list belongs is said in a ValueError naming the field (``tuple(3)``
raised a bare TypeError, which pydantic validators pass on as a traceback), and an item ``float()`` cannot take
(null, a list) too."""
from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping
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


def real_numbers(values: Iterable[Any], field: str) -> tuple[float, ...]:
    """``values`` as floats, each a JSON/YAML number: not a bool (``true`` read as 1.0 made a checkpoint's action
    scale 1 m per step, 100x the default) nor a string of digits ("0.01"), which ``float()`` takes too. ValueError
    naming ``field`` and the first item that is not."""
    values = tuple(values)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            shown = repr(value) if len(repr(value)) <= 40 else type(value).__name__
            raise ValueError(f"{field} values must be numbers, got {shown}")
    try:
        return tuple(float(v) for v in values)
    except OverflowError:  # a JSON integer of 400 digits: no float holds it
        raise ValueError(f"{field} values must be finite numbers, got an integer too large for a float") from None
