"""PNG plot of exit used and compute per step (matplotlib, headless Agg)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from deer_vla.core import StepRecord
from deer_vla.core.atomic_file import save_figure


class PlotPoint(NamedTuple):
    """What the plot draws of one step: a few numbers, not the whole record (whose per-exit lists made the
    monitor's plot history of 20 000 steps tens of MB)."""

    episode: int
    exit_used: int
    max_exit: int
    cost: float  # the plotted metric's GFLOPs this step
    budget_average_gflops: float | None

    @classmethod
    def of(cls, record: StepRecord, metric: str = "llm_gflops") -> PlotPoint:
        """The average budget only where it is in the plotted metric: a total_gflops budget drawn over llm_gflops
        costs looked 60% under a budget the run was exactly at."""
        budget = record.budget_average_gflops if (record.budget_metric or metric) == metric else None
        return cls(record.episode, record.exit_used, record.max_exit, float(getattr(record, metric)), budget)


def plot_records(records: Sequence[StepRecord], path: str | Path, metric: str = "llm_gflops") -> Path:
    return plot_points([PlotPoint.of(r, metric) for r in records], path, metric)


def plot_points(records: Sequence[PlotPoint], path: str | Path, metric: str = "llm_gflops") -> Path:
    if not records:
        raise ValueError("no step records to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    steps = list(range(len(records)))
    fig, (ax_exit, ax_cost) = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    ax_exit.step(steps, [r.exit_used for r in records], where="post", label="exit used")
    ax_exit.step(steps, [r.max_exit for r in records], where="post", linestyle=":", label="cap")
    ax_exit.set_ylabel("exit")
    top = max(r.max_exit for r in records)
    ax_exit.set_ylim(0.5, top + 0.5)
    # whole exits, a dozen ticks at most: a tick per exit for a record's max_exit of 1024 took the plot 8 s, past
    # the 5 s ros2 launch waits before SIGKILL
    ax_exit.yaxis.set_major_locator(MaxNLocator(nbins=12, integer=True, min_n_ticks=1))
    ax_exit.legend(loc="upper right")
    ax_cost.plot(steps, [r.cost for r in records], label=f"{metric} per step")
    budgets = [r.budget_average_gflops for r in records]
    if any(b for b in budgets):
        ax_cost.plot(steps, [b or float("nan") for b in budgets], linestyle="--", label="average budget")
    ax_cost.set_xlabel("control step")
    ax_cost.set_ylabel("GFLOPs")
    ax_cost.legend(loc="upper right")
    episode_starts = [i for i in steps[1:] if records[i].episode != records[i - 1].episode]
    if episode_starts:
        for ax in (ax_exit, ax_cost):
            # one collection: an axvline per boundary took 12 s for 20 000 steps of 3-step episodes,
            # longer than ros2 launch waits before SIGKILL at shutdown
            ax.vlines(episode_starts, 0, 1, transform=ax.get_xaxis_transform(), color="grey", linewidth=0.5)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_figure(fig, path, dpi=100)  # a full disk leaves no empty steps.png
    finally:
        plt.close(fig)
    return path
