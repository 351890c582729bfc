"""Evaluation, report, statistics and journal rules no other test pinned down (a mutation audit broke each and
every test passed). Broken, each would print or write a figure the user reads as something it is not: held-out
success measured on the canonical wording, a budget fraction written as GFLOPs, an interval in the wrong unit,
a group mean weighted by episode counts, two modes' runs pooled as one."""
from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path
from typing import Any

import matplotlib.axes
import pytest
import torch

from deer_vla.evaluation.evaluator import cli_main as evaluate_main
from deer_vla.evaluation.journal import mode_digests
from deer_vla.evaluation.report import (
    group_means,
    paired_with,
    plot_tradeoff,
    print_groups,
    print_paired,
    print_table,
    summarize,
    summarize_groups,
    write_csv,
)
from deer_vla.evaluation.rollout import EpisodeResult, ModeSpec
from deer_vla.evaluation.stats import mcnemar_exact, wilson_interval
from deer_vla.model.checkpoint import read_config
from deer_vla.sim.metaworld_env import ACTION_SPEC
from deer_vla.sim.tasks import get_task
from deer_vla.train.synthetic import write_tiny_dataset

torch.set_num_threads(1)

BUDGET = 0.5  # of the full model's LLM GFLOPs: the tiny model's exit 1 costs about 0.3 of it


def _episode(mode: str, task: str, seed: int, success: bool, *, steps: int = 10, llm: float = 10.0,
             total: float = 20.0, exits: tuple[int, ...] = (5, 5), instruction: str = "i") -> EpisodeResult:
    return EpisodeResult(mode, task, seed, instruction, success, steps, llm, total, list(exits))


@pytest.fixture(scope="module")
def both_run(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `evaluate --instructions both` run on drawer-open: full, exit1 and a dynamic budget of half the full
    model's LLM cost, each on the canonical and the held-out wording, 1 episode of 1 step. Its results.json
    ("results"), results.csv ("csv") and printed tables ("stdout")."""
    root = tmp_path_factory.mktemp("both")
    cfg = read_config(tiny_checkpoint)
    data = write_tiny_dataset(root / "demos", tuple(cfg.cameras), int(cfg.image_size), 4, ACTION_SPEC.to_dict(),
                              tasks=("drawer-open",), length=6)
    out = root / "eval"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = evaluate_main(["--checkpoint", str(tiny_checkpoint), "--tasks", "drawer-open", "--episodes-per-task", "1",
                            "--max-steps", "1", "--exits", "1", "--budgets", str(BUDGET), "--calibration-dataset",
                            str(data), "--calibration-episodes", "1", "--instructions", "both", "--out", str(out),
                            "--no-progress", "--workers", "1", "--threads", "1"])
    assert rc == 0, stdout.getvalue()
    return {"results": json.loads((out / "results.json").read_text()),
            "csv": list(csv.DictReader((out / "results.csv").open(encoding="utf-8"))), "stdout": stdout.getvalue()}


# --- evaluate --------------------------------------------------------------------------------------------------


def test_held_out_modes_play_the_held_out_wording_on_the_canonical_seeds(both_run: dict[str, Any]) -> None:
    """Every "[heldout]" mode played the canonical plan instead: its success was the canonical success again, and
    the held-out / canonical ratio a user reads as generalisation to new wording was 1 whatever the model does."""
    res = both_run["results"]
    seed = res["config"]["seed_offset"]
    played = {(e["mode"], e["seed"]): e["instruction"] for e in res["episodes"]}
    modes = ("full", "exit1", f"dyn{BUDGET:g}")
    assert set(played) == {(m + suffix, seed) for m in modes for suffix in ("", " [heldout]")}
    held = get_task("drawer-open").heldout_instructions
    for mode in modes:
        assert played[(mode, seed)] not in held
        assert played[(mode + " [heldout]", seed)] == held[0]
    assert res["generalisation"]["full"]["overall"]["heldout"][1] == 1


def test_a_dynamic_modes_budget_is_written_in_gflops_in_the_json_and_the_csv(both_run: dict[str, Any]) -> None:
    """budget_gflops held the fraction (0.5) instead of the GFLOPs it stands for: bench_budget_shift divides the
    measured GFLOPs by it, and a reader of the CSV compares it with the GFLOPs column beside it."""
    res = both_run["results"]
    full = res["profile"]["llm_gflops"][-1]
    for mode in (f"dyn{BUDGET:g}", f"dyn{BUDGET:g} [heldout]"):
        assert res["modes"][mode]["budget_gflops"] == pytest.approx(BUDGET * full)
        assert res["modes"][mode]["budget_fraction"] == pytest.approx(BUDGET)
        rows = [r for r in both_run["csv"] if r["mode"] == mode]
        assert rows and all(float(r["budget_gflops"]) == pytest.approx(BUDGET * full) for r in rows)


def test_the_printed_table_gives_each_modes_llm_cost_relative_to_the_full_model(both_run: dict[str, Any]) -> None:
    """The evaluator passed no full mode to the table: its "LLM vs full" column was "-" in every row, the one
    figure of the compute an exit saves."""
    summary = both_run["results"]["summary"]
    rows = {}
    for line in both_run["stdout"].splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 2 and cells[1] in ("full", "exit1"):
            rows.setdefault(cells[1], line)
    ratio = summary["exit1"]["overall"]["mean_llm_gflops"] / summary["full"]["overall"]["mean_llm_gflops"]
    assert ratio < 0.9
    assert rows["full"].rstrip("│ ").endswith("1.00x")
    assert rows["exit1"].rstrip("│ ").endswith(f"{ratio:.2f}x")


# --- statistics ------------------------------------------------------------------------------------------------


def test_wilson_interval_matches_the_published_values_and_says_nothing_is_known_of_no_episodes() -> None:
    """(0, 0) of no episodes was a certain 0% success: a mode with no episode in a group read as one that always
    fails, with no uncertainty at all."""
    assert wilson_interval(3, 10) == pytest.approx((0.1078, 0.6032), abs=1e-4)  # Wilson 95% of 3/10
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert mcnemar_exact(7, 0) == pytest.approx(2 / 128) and mcnemar_exact(3, 3) == 1.0


# --- report ----------------------------------------------------------------------------------------------------


def test_the_group_mean_weighs_every_group_alike_whatever_its_episode_count() -> None:
    """Weighted by episodes, 9/10 easy and 1/2 medium gave 10/12 = 0.83: the overall rate again, not the mean of
    the groups' rates (0.7) that published MT50 tables report."""
    rs = [_episode("full", "reach", s, s < 9) for s in range(10)]  # easy 9/10
    rs += [_episode("full", "soccer", s, s < 1) for s in range(2)]  # medium 1/2
    means = group_means(summarize_groups(rs, ["full"], {"easy": ["reach"], "medium": ["soccer"]}))
    assert means["full"] == pytest.approx((0.9 + 0.5) / 2)


def test_mean_total_gflops_is_per_control_step_like_the_llm_gflops() -> None:
    """Divided by episodes, it was the GFLOPs of a whole episode beside the LLM's GFLOPs per step."""
    rs = [_episode("m", "a", 0, True, steps=10, llm=5.0, total=20.0),
          _episode("m", "b", 1, False, steps=30, llm=15.0, total=120.0, exits=(0, 30))]
    st = summarize(rs, ["m"])["m"]["overall"]
    assert st["mean_total_gflops"] == pytest.approx(140 / 40)
    assert st["mean_llm_gflops"] == pytest.approx(20 / 40)
    assert st["exit_fractions"] == pytest.approx([5 / 40, 35 / 40])


def test_the_table_prints_intervals_in_percent_and_the_cost_relative_to_full(capsys: pytest.CaptureFixture) -> None:
    """The interval was printed as fractions ([0.1, 0.6]) beside a success in percent (30.0%)."""
    rs = [_episode("full", "a", s, s < 3, llm=10.0) for s in range(10)]
    rs += [_episode("exit1", "a", s, s < 3, llm=2.5) for s in range(10)]
    print_table(summarize(rs, ["full", "exit1"]), {}, "full")
    out = capsys.readouterr().out
    lo, hi = wilson_interval(3, 10)
    assert f"[{100 * lo:.1f}, {100 * hi:.1f}]" in out
    assert "0.25x" in next(line for line in out.splitlines() if "exit1" in line)  # a quarter of full's cost


def test_the_groups_tables_last_column_is_the_modes_overall_success(capsys: pytest.CaptureFixture) -> None:
    """The "overall" column repeated the first group's cell (100% of reach) instead of 4/8 over every task."""
    rs = [_episode("full", "reach", s, True) for s in range(4)] + [_episode("full", "soccer", s, False)
                                                                   for s in range(4)]
    groups = {"easy": ["reach"], "medium": ["soccer"]}
    print_groups(summarize_groups(rs, ["full"], groups), summarize(rs, ["full"]))
    row = next(line for line in capsys.readouterr().out.splitlines() if "full" in line)
    assert row.rstrip("│ ").split("│")[-1].strip().startswith("50.0% (4/8)")


def test_the_paired_table_prints_each_sides_own_success(capsys: pytest.CaptureFixture) -> None:
    """The mode's percentage was the reference's: 1 of 4 solved printed as "1 (100.0%)"."""
    rs = [_episode("full", "a", s, True) for s in range(4)] + [_episode("exit1", "a", s, s < 1) for s in range(4)]
    paired = paired_with(rs, ["full", "exit1"])
    assert (paired["exit1"]["only_reference"], paired["exit1"]["only_mode"]) == (3, 0)
    print_paired(paired)
    row = next(line for line in capsys.readouterr().out.splitlines() if "exit1" in line)
    assert "1 (25.0%)" in row and "4 (100.0%)" in row


def test_episodes_pair_only_on_the_same_instruction() -> None:
    """Two held-out paraphrases played on one seed are two episodes: paired on task and seed alone, the full
    model's success with one wording was set against another mode's with another."""
    rs = [_episode("full", "a", 0, True, instruction="x"), _episode("exit1", "a", 0, False, instruction="y")]
    assert paired_with(rs, ["full", "exit1"]) == {}
    rs.append(_episode("exit1", "a", 0, True, instruction="x"))
    assert paired_with(rs, ["full", "exit1"])["exit1"]["pairs"] == 1


def test_the_csv_budget_column_holds_the_gflops_not_the_fraction(tmp_path: Path) -> None:
    """The column named budget_gflops was filled from the mode's budget_fraction."""
    rs = [_episode("dyn0.2", "a", 0, True)]
    write_csv(tmp_path / "r.csv", summarize(rs, ["dyn0.2"]),
              {"dyn0.2": {"kind": "dynamic", "budget_gflops": 3.5, "budget_fraction": 0.2}})
    rows = list(csv.DictReader((tmp_path / "r.csv").open(encoding="utf-8")))
    assert [r["task"] for r in rows] == ["a", "ALL"] and {r["budget_gflops"] for r in rows} == {"3.5"}


def test_the_plots_error_bars_run_from_the_interval_low_to_its_high(tmp_path: Path, monkeypatch) -> None:
    """Below and above were swapped: at 10% success (interval about [2, 40]) the bar went from -20% to 18%."""
    drawn = []
    real = matplotlib.axes.Axes.errorbar

    def spy(self, xs, ys, yerr=None, **kwargs):
        drawn.append((list(ys), [list(yerr[0]), list(yerr[1])]))
        return real(self, xs, ys, yerr=yerr, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", spy)
    rs = [_episode("full", "a", s, s < 1) for s in range(10)]
    plot_tradeoff(tmp_path / "p.png", summarize(rs, ["full"]), {"full": {"kind": "fixed"}}, "t")
    lo, hi = wilson_interval(1, 10)
    ((ys, (below, above)),) = drawn
    assert ys == pytest.approx([10.0])
    assert below == pytest.approx([10 - 100 * lo]) and above == pytest.approx([100 * hi - 10])


# --- journal ---------------------------------------------------------------------------------------------------


def _dynamic(first_threshold: float) -> ModeSpec:
    return ModeSpec(name="dyn0.2", kind="dynamic", thresholds={"values": [first_threshold, 0.5]}, budget_gflops=1.0)


def test_mode_digests_tell_other_thresholds_apart_and_ignore_float_noise() -> None:
    """Rounded to 2 significant digits, thresholds 0.1234 and 0.1240 gave one digest: runs of two modes pooled
    (and a --resume went on) as if they were one."""
    assert mode_digests([_dynamic(0.1234)]) != mode_digests([_dynamic(0.1240)])
    assert mode_digests([_dynamic(0.123456781)]) == mode_digests([_dynamic(0.123456789)])


def test_the_demos_headline_and_summary_figures_follow_its_episodes_and_steps() -> None:
    """The demo's success rate, mean exit, compute saved and the percent it prints were only checked to appear (a
    mutation audit inverted each, printed the saving as a fraction, and every test passed; the end-to-end demo's
    tiny checkpoint saves 0%, which reads the same either way)."""
    from deer_vla.ros.bringup import demo_figures, demo_headline

    results = [{"success": True}, {"success": False}, {"success": True}, {"success": True}]
    summary = {"steps": 40, "mean_exit": 2.25, "mean_llm_gflops": 0.03}
    figures = demo_figures(results, summary, "llm_gflops", 0.15)
    assert figures == {"success_rate": 0.75, "steps": 40, "mean_exit": 2.25, "mean_llm_gflops": 0.03,
                       "full_model_llm_gflops": 0.15, "compute_saved": pytest.approx(0.8)}
    assert demo_headline(results, figures, "llm_gflops", 12) == [
        "success rate      0.75 (3/4)",
        "average exit      2.25 of 12",
        "compute per step  0.03 llm_gflops vs 0.15 for the full model -> 80.0% saved",
    ]
    assert demo_figures([], {"steps": 0, "mean_exit": 0.0, "mean_llm_gflops": 0.0}, "llm_gflops", 0.15)[
        "compute_saved"] == 0.0  # no step: nothing saved, not 100%
