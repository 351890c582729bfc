"""The figures `deer-vla replay` reports, on recorded steps replayed through a stub policy stack (no ROS, no
model): rules no other test pinned down (a mutation audit broke each and every test passed). Broken, a replay
would report a run reproduced, or changed, when it was not: exits compared with themselves, a signed action
difference, one side's costs or exits reported for the other, budgets not followed."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from deer_vla.control.budgets import BudgetSpec
from deer_vla.core import Observation, StepRecord
from deer_vla.data.recording import RecordedStep
from deer_vla.ros.replay import ReplayReport, replay

# (episode, exit, LLM GFLOPs, average budget) per recorded step
RECORDED = [(0, 1, 1.0, 1.0), (0, 2, 2.0, 2.0), (1, 3, 3.0, 1.0), (1, 3, 3.0, 1.0)]
# what the replaying controller does: exits 1, 1, 3, 2 (two of four as recorded), cheaper, and one action 0.5
# below the recorded one
REPLAYED_EXITS = [1, 1, 3, 2]
REPLAYED_COSTS = [1.0, 1.0, 3.0, 2.0]
REPLAYED_ACTIONS = [np.zeros(7), np.r_[-0.5, np.zeros(6)], np.zeros(7), np.zeros(7)]


class ScriptedController:
    """Replays a script of exits, costs and actions; counts episode resets and the budgets it is given."""

    def __init__(self) -> None:
        self.i = 0
        self.resets = 0
        self.budgets: list[float | None] = []

    def set_budget(self, budget: BudgetSpec) -> None:
        self.budgets.append(budget.average_gflops)

    def reset_episode(self) -> None:
        self.resets += 1

    def step(self, observation: Observation) -> tuple[np.ndarray, StepRecord]:
        i, self.i = self.i, self.i + 1
        record = StepRecord(step=i, episode=0, exit_used=REPLAYED_EXITS[i], max_exit=3, stop_reason="threshold",
                            llm_gflops=REPLAYED_COSTS[i], total_gflops=REPLAYED_COSTS[i] + 1)
        return REPLAYED_ACTIONS[i], record


def _recorded_steps() -> list[RecordedStep]:
    steps = []
    for i, (episode, exit_used, cost, average) in enumerate(RECORDED):
        record = StepRecord(step=i, episode=episode, exit_used=exit_used, max_exit=3, stop_reason="threshold",
                            llm_gflops=cost, total_gflops=cost + 1, budget_average_gflops=average)
        steps.append(RecordedStep(images={"static": np.zeros((2, 2, 3), np.uint8)}, instruction="open the drawer",
                                  proprio=None, action7=np.zeros(7), record=record, stamp_ns=i))
    return steps


def _replay(follow_budgets: bool = False) -> tuple[ReplayReport, ScriptedController]:
    controller = ScriptedController()
    identity = SimpleNamespace(clip=lambda a: a, to_standard7=lambda a: np.asarray(a, float))
    stack = SimpleNamespace(cameras=("static",), controller=controller, action_spec=identity)
    report = replay("stub.mcap", stack, follow_budgets=follow_budgets, steps=_recorded_steps())  # type: ignore[arg-type]
    return report, controller


def test_same_exit_fraction_compares_the_recorded_exits_with_the_replayed_ones() -> None:
    """Compared with themselves, every replay reproduced 100% of the recorded exits."""
    report, _ = _replay()
    assert report.same_exit_fraction == pytest.approx(0.5)
    assert (report.recorded_exits, report.replayed_exits) == ([1, 2, 3, 3], REPLAYED_EXITS)


def test_each_side_reports_its_own_mean_exit_and_cost() -> None:
    """One side's exits or costs reported for both: a replay under another budget showed no change in depth or
    compute."""
    report, _ = _replay()
    assert report.recorded_mean_exit == pytest.approx(9 / 4) and report.replayed_mean_exit == pytest.approx(7 / 4)
    assert report.recorded_mean_gflops == pytest.approx(9 / 4) and report.replayed_mean_gflops == pytest.approx(7 / 4)


def test_action_difference_is_absolute_and_its_mean_is_a_mean() -> None:
    """A signed difference missed a replayed action below the recorded one (max 0); the "mean" was the max."""
    report, _ = _replay()
    assert report.max_action_diff == pytest.approx(0.5)
    assert report.mean_action_diff == pytest.approx(0.5 / 4)


def test_each_recorded_episode_restarts_the_controller() -> None:
    """Without a reset at each recorded episode, the tracker and the action head's history ran on across
    episodes, unlike the policy node that recorded them."""
    _, controller = _replay()
    assert controller.resets == 2


def test_a_budget_changed_and_changed_back_is_followed_and_counted_once_per_distinct_budget() -> None:
    """Only the first recorded budget was applied (a run whose budget changed live was not reproduced), or the
    report counted every change as another budget."""
    report, controller = _replay(follow_budgets=True)
    assert controller.budgets == [1.0, 2.0, 1.0]  # applied at steps 0, 1 and 2, as recorded
    assert report.recorded_budgets == 2
    report, controller = _replay(follow_budgets=False)
    assert controller.budgets == [] and report.recorded_budgets == 0


def test_a_damaged_thresholds_name_in_a_recording_is_no_file_of_ours(tmp_path):
    """Replay compares the recording's thresholds name with the file it replays with (the tracker starts at the
    recorded scale only for the recorded thresholds): a name with a NUL byte raised ValueError from the path."""
    from deer_vla.ros.replay import _same_file

    ours = tmp_path / "thresholds.json"
    ours.write_text("{}")
    assert _same_file(ours, str(tmp_path / "." / "thresholds.json"))
    for named in ("bad\x00name.json", "", None, str(tmp_path / "other.json")):
        assert not _same_file(ours, named)
