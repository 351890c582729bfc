"""Success-rate statistics."""
from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default); (0, 1) when n == 0.

    Preferred over the normal approximation: it stays inside [0, 1] and is
    sensible at 0% or 100% success with few episodes.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The interval contains p by construction; rounding can put a bound just past it at 0 or 100% (1 - 1e-16),
    # which an error bar of p - low or high - p then reads as a negative length.
    return min(max(0.0, centre - half), p), max(min(1.0, centre + half), p)


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value for paired success/failure outcomes (the same task and seed under two
    policies): ``only_first`` pairs only the first policy solved, ``only_second`` only the second. Pairs both
    solved or both failed carry no information on which is better; 1.0 when no pair differs."""
    if only_first < 0 or only_second < 0:
        raise ValueError(f"need counts >= 0, got {only_first}, {only_second}")
    n = only_first + only_second
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_first, only_second) + 1))
    return min(1.0, 2 * tail / 2**n)  # exact integers: no overflow for thousands of pairs
