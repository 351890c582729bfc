"""The bounded simulator cache that collection and evaluation workers keep their simulators in."""
from __future__ import annotations

import pytest

from deer_vla.sim.simulator_cache import SimulatorCache


class _Sim:
    def __init__(self, task: str, closed: list[str]) -> None:
        self.task, self._closed = task, closed

    def close(self) -> None:
        self._closed.append(self.task)


def test_the_least_recently_used_simulator_is_closed_to_make_another() -> None:
    closed: list[str] = []
    made: list[str] = []
    cache = SimulatorCache(2)

    def get(task: str) -> _Sim:
        def make() -> _Sim:
            made.append(task)
            return _Sim(task, closed)
        return cache.get(task, make)

    a = get("a")
    get("b")
    assert get("a") is a and made == ["a", "b"]  # kept, not made again; "b" is now the least recently used
    get("c")
    assert closed == ["b"] and cache.keys == ["a", "c"]
    get("b")  # made again, closing "a"
    assert made == ["a", "b", "c", "b"] and closed == ["b", "a"] and cache.keys == ["c", "b"]
    cache.close()
    assert sorted(closed) == ["a", "b", "b", "c"] and cache.keys == []
    get("d")  # still usable after close()
    assert cache.keys == ["d"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None])
def test_the_number_kept_open_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(ValueError, match="kept open must be an int >= 1"):
        SimulatorCache(bad)  # type: ignore[arg-type]
