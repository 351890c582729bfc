"""The lines bench_tradeoff and bench_budget_shift print from an evaluation's summary: rules no other test pinned
down (a mutation audit broke each and every test passed). Broken, the benchmark's headline would name a budget
far behind the full model as matched, the dearest match instead of the cheapest, a compute ratio upside down, or
the wrong side of the paired test."""
from __future__ import annotations

import pytest
from fixtures import load_bench

from deer_vla.evaluation.stats import wilson_interval

tradeoff = load_bench("bench_tradeoff")
budget_shift = load_bench("bench_budget_shift")


def _overall(successes: int, episodes: int, gflops: float) -> dict:
    lo, hi = wilson_interval(successes, episodes)
    return {"overall": {"successes": successes, "episodes": episodes, "success_rate": successes / episodes,
                        "ci95_low": lo, "ci95_high": hi, "mean_llm_gflops": gflops, "steps": 10 * episodes}}


MODES = {"full": {"kind": "fixed"}, "exit1": {"kind": "fixed"}, "dyn0.1": {"kind": "dynamic"},
         "dyn0.2": {"kind": "dynamic"}, "dyn0.3": {"kind": "dynamic"}, "oracle0.05": {"kind": "oracle"}}
SUMMARY = {"full": _overall(90, 100, 1.0), "exit1": _overall(40, 100, 0.1), "dyn0.1": _overall(50, 100, 0.1),
           "dyn0.2": _overall(90, 100, 0.2), "dyn0.3": _overall(91, 100, 0.3), "oracle0.05": _overall(90, 100, 0.4)}


def test_the_cheapest_budget_within_a_point_of_full_is_the_match_and_a_far_worse_one_is_not() -> None:
    """With the gap's sign turned, dyn0.1 (40 points behind) matched and headlined a 10x saving; choosing the
    dearest match named dyn0.3; the ratio upside down read 0.20x "less" compute."""
    text = "\n".join(tradeoff.matched_success_report(SUMMARY, MODES))
    assert "matched success (within 1 pt of full, point estimates): dyn0.2 at 0.2000" in text
    assert "-> 5.00x less LLM compute than full" in text
    assert "cheapest static exit" not in text  # exit1 is 50 points behind


def test_the_noise_note_gives_the_intervals_half_width() -> None:
    """The note gave the whole width of the interval as its +- half."""
    modes = {"full": {"kind": "fixed"}, "dyn0.2": {"kind": "dynamic"}}
    lines = tradeoff.matched_success_report({"full": _overall(10, 12, 1.0), "dyn0.2": _overall(10, 12, 0.15)}, modes)
    lo, hi = wilson_interval(10, 12)
    assert f"intervals of +-{100 * (hi - lo) / 2:.0f} points" in "\n".join(lines)


def test_the_static_exit_and_oracle_ratios_are_full_over_exit_and_controller_over_oracle() -> None:
    """Each ratio was printed inverted: exit2 at half the cost read "0.50x less than full", the controller at half
    the oracle's compute read 2.00."""
    summary = {"full": _overall(90, 100, 1.0), "exit2": _overall(90, 100, 0.5), "dyn0.2": _overall(90, 100, 0.2),
               "oracle0.05": _overall(90, 100, 0.4)}
    modes = {"full": {"kind": "fixed"}, "exit2": {"kind": "fixed"}, "dyn0.2": {"kind": "dynamic"},
             "oracle0.05": {"kind": "oracle"}}
    text = "\n".join(tradeoff.matched_success_report(summary, modes))
    assert "cheapest static exit at matched success: exit2 (2.00x less than full" in text
    assert "dyn0.2: controller compute / oracle0.05 compute = 0.50" in text


def test_the_paired_evidence_names_who_alone_solved_how_many() -> None:
    """The mode's own count was the full model's again: "only full 5, only dyn0.2 5" for a 5 / 3 split."""
    paired = {"dyn0.2": {"pairs": 100, "only_reference": 5, "only_mode": 3, "p_mcnemar": 0.73}}
    text = "\n".join(tradeoff.matched_success_report(SUMMARY, MODES, paired=paired))
    assert "only full 5, only dyn0.2 3" in text


def test_budget_shift_reports_the_measured_cost_over_the_target() -> None:
    """target / measured read 0.83 for a static mode 20% over its budget: over-spending looked like saving."""
    payload = {"modes": {"dyn": {"kind": "dynamic", "budget_gflops": 0.05, "budget_fraction": 0.3},
                         "dyn+track": {"kind": "dynamic", "track_budget": True}},
               "summary": {"dyn": _overall(5, 8, 0.06), "dyn+track": _overall(2, 8, 0.04)}}
    (row,) = budget_shift.adherence_rows(payload, "A", "B")
    assert row["target_gflops"] == pytest.approx(0.05)
    assert row["static_ratio"] == pytest.approx(1.2) and row["tracked_ratio"] == pytest.approx(0.8)
