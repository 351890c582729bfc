"""Generalisation evaluation: canonical vs held-out instructions on the same seeds."""
from __future__ import annotations

import pytest

from deer_vla.evaluation.evaluator import EvalConfig, episode_plan
from deer_vla.evaluation.report import heldout_vs_canonical, summarize
from deer_vla.evaluation.rollout import EpisodeResult
from deer_vla.sim.tasks import TASK_SUITE, get_task


def test_every_task_has_at_least_six_never_trained_instructions() -> None:
    for spec in TASK_SUITE.values():
        assert len(spec.heldout_instructions) >= 6, spec.name
        assert not set(spec.heldout_instructions) & set(spec.train_instructions)
    trained = {t for s in TASK_SUITE.values() for t in s.train_instructions}
    held = {t for s in TASK_SUITE.values() for t in s.heldout_instructions}
    assert not trained & held  # not even another task's training instruction


def test_heldout_plan_uses_the_same_seeds_and_only_heldout_instructions() -> None:
    canonical = episode_plan("drawer-close", 14, 100_000, heldout=False)
    held = episode_plan("drawer-close", 14, 100_000, heldout=True)
    assert [s for s, _ in canonical] == [s for s, _ in held]
    spec = get_task("drawer-close")
    assert {i for _, i in held} == set(spec.heldout_instructions)  # 14 episodes cycle all 7
    assert all(i is None for _, i in canonical)  # None = the task's canonical instruction


def _result(mode: str, task: str, seed: int, success: bool) -> EpisodeResult:
    return EpisodeResult(mode=mode, task=task, seed=seed, instruction="x", success=success, steps=10,
                         llm_gflops=1.0, total_gflops=2.0, exit_counts=[10])


def test_heldout_vs_canonical_pairs_each_mode_with_its_heldout_run() -> None:
    rs = [_result("full", "a", s, s < 4) for s in range(5)] + [_result("full [heldout]", "a", s, s < 2)
                                                              for s in range(5)]
    rs += [_result("full", "b", 0, False), _result("full [heldout]", "b", 0, True)]
    rs += [_result("dyn0.2", "a", 0, True)]  # run only canonically: no pair
    table = heldout_vs_canonical(summarize(rs, ["full", "dyn0.2", "full [heldout]"]))
    assert set(table) == {"full"}
    assert table["full"]["tasks"]["a"]["canonical"] == [4, 5]
    assert table["full"]["tasks"]["a"]["heldout"] == [2, 5]
    assert table["full"]["tasks"]["a"]["ratio"] == pytest.approx(0.5)
    assert table["full"]["tasks"]["b"]["ratio"] is None  # canonical 0/1: no ratio
    assert table["full"]["overall"]["ratio"] == pytest.approx(3 / 4)


def test_instruction_set_is_validated() -> None:
    with pytest.raises(ValueError, match="instructions must be one of"):
        EvalConfig(checkpoint="x", tasks=["drawer-open"], instructions="paraphrased")
    assert EvalConfig(checkpoint="x", tasks=["a"], instructions="both").instruction_conditions() == [
        "canonical", "heldout"]
