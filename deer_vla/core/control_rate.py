"""The control rates a policy may run at: one range for the datasets, the checkpoints and the policy node.

A dataset's fps becomes the checkpoint's ``control_rate_hz`` and, with ``rate_hz: 0``, the node's control
timer and the factor that turns per-step deltas into velocities: an fps of 1e300 from a hand-edited info.json
gave a 0 ns timer and commands of 1e297 m/s, one of 1e-9 a node that never stepped.
"""
from __future__ import annotations

import math
from typing import Any

MIN_CONTROL_RATE_HZ = 0.01  # one step every 100 s
MAX_CONTROL_RATE_HZ = 1000.0  # past any arm controller's command rate


def control_rate_problem(rate_hz: Any) -> str | None:
    """Why ``rate_hz`` is no control rate, as the end of a sentence, or None."""
    if isinstance(rate_hz, bool) or not isinstance(rate_hz, int | float) or not math.isfinite(rate_hz):
        return f"must be a number of steps per second, got {rate_hz!r}"
    if not MIN_CONTROL_RATE_HZ <= rate_hz <= MAX_CONTROL_RATE_HZ:
        return f"must be in {MIN_CONTROL_RATE_HZ:g}..{MAX_CONTROL_RATE_HZ:g} Hz, got {rate_hz:g}"
    return None
