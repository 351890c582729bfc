"""Online average-budget tracking: keep the running mean cost on budget under distribution shift.

Offline thresholds meet the average budget only on the calibration
distribution. The tracker multiplies every threshold by a scale s = exp(z)
and integrates the relative cost error:

    z_t = clip(z_{t-1} + gain * (cost_t - budget) / budget, log(min_scale), log(max_scale))

Larger thresholds stop earlier, so overspending raises s and underspending
lowers it. While z is not clipped, z_t = gain * sum_t(error) / budget, so the
running mean's error is budget * z_t / (gain * t): it decays like 1/t for any
bounded z — the running mean itself converges to the budget, not only the
recent cost. The clip bounds the scale (anti-windup), and a small gain on a
static, monotone plant (cost falls as s grows) cannot oscillate divergently.
"""
from __future__ import annotations

import math


def _check(name: str, value: float, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"tracker {name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"tracker {name} must be positive, got {value}")
    return float(value)


class OnlineBudgetTracker:
    """Integral controller on log threshold scale; see the module docstring.

    reset_per_episode: True restarts the scale and the running mean at every
    episode (the budget holds per episode); False (default) carries them over
    (the budget holds over the whole deployment).
    """

    def __init__(
        self,
        target_gflops: float,
        gain: float = 0.05,
        min_scale: float = 1.0 / 16.0,
        max_scale: float = 16.0,
        reset_per_episode: bool = False,
    ) -> None:
        self._target = _check("target_gflops", target_gflops)
        self.gain = _check("gain", gain)
        self.min_scale = _check("min_scale", min_scale)
        self.max_scale = _check("max_scale", max_scale)
        if not self.min_scale <= 1.0 <= self.max_scale:
            raise ValueError(f"tracker scale bounds must bracket 1, got [{min_scale}, {max_scale}]")
        self.reset_per_episode = bool(reset_per_episode)
        self._z = 0.0  # log of the threshold scale
        self._sum = 0.0
        self._steps = 0

    @property
    def target_gflops(self) -> float:
        return self._target

    def set_target(self, target_gflops: float) -> None:
        """New budget; the integral state carries over (the mean since then is what is steered)."""
        self._target = _check("target_gflops", target_gflops)

    @property
    def scale(self) -> float:
        return math.exp(self._z)

    @property
    def running_mean(self) -> float:
        return self._sum / self._steps if self._steps else 0.0

    @property
    def steps(self) -> int:
        return self._steps

    def update(self, cost: float) -> float:
        """Record one step's cost; return the scale to use from the next step on."""
        cost = _check("cost", cost, positive=False)
        if cost < 0:
            raise ValueError(f"tracker cost must be >= 0, got {cost}")
        self._sum += cost
        self._steps += 1
        z = self._z + self.gain * (cost - self._target) / self._target
        self._z = min(max(z, math.log(self.min_scale)), math.log(self.max_scale))
        return self.scale

    def reset(self) -> None:
        self._z = 0.0
        self.restart_mean()

    def carry_on_from(self, earlier: OnlineBudgetTracker) -> None:
        """Take over an earlier tracker's scale and running mean: the same thresholds configured again go on
        holding the average over the deployment, instead of spending off budget while a fresh scale settles."""
        self._z, self._sum, self._steps = earlier._z, earlier._sum, earlier._steps

    def start_at(self, scale: float) -> None:
        """Start from this scale (a recording's first step's), the running mean counted afresh."""
        scale = _check("scale", scale)
        self._z = min(max(math.log(scale), math.log(self.min_scale)), math.log(self.max_scale))
        self.restart_mean()

    def restart_mean(self) -> None:
        """Count the running mean afresh, the scale kept (a budget now counted in another metric)."""
        self._sum = 0.0
        self._steps = 0

    def reset_episode(self) -> None:
        if self.reset_per_episode:
            self.reset()
