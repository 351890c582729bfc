"""Thresholds: quantile solver meets the average budget; save/load and validation."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from deer_vla.control import BudgetSpec, Criterion, InfeasibleBudgetError, Thresholds, simulate_exits
from deer_vla.control import solve_thresholds_quantile as solve
from deer_vla.control.synthetic import synthetic_exit_actions, synthetic_profile
from deer_vla.control.thresholds import exit_fractions


@pytest.fixture(scope="module")
def calib() -> np.ndarray:
    return synthetic_exit_actions(600, 6, difficulty=0.5, seed=11)


@pytest.fixture(scope="module")
def profile():
    return synthetic_profile(6)


@pytest.mark.parametrize("shape", ["geometric", "gaussian", "gamma"])
@pytest.mark.parametrize("fraction", [0.3, 0.45, 0.6, 0.8, 0.95])
def test_quantile_thresholds_meet_average_budget_within_2_percent(calib, profile, shape, fraction):
    costs = profile.costs()
    budget = BudgetSpec(average_gflops=costs[1] + fraction * (costs[-1] - costs[1]))
    th = solve(calib, profile, budget, shape=shape)
    # Re-simulate the exits independently of the solver's own bookkeeping.
    exits = simulate_exits(calib, th)
    mean_cost = float(np.mean(np.asarray(costs)[exits - 1]))
    assert mean_cost == pytest.approx(th.expected_cost)
    assert mean_cost <= budget.average_gflops * (1 + 1e-12)
    assert abs(mean_cost - budget.average_gflops) <= 0.02 * budget.average_gflops
    dist = np.bincount(exits, minlength=7)[1:] / len(exits)
    np.testing.assert_allclose(dist, th.exit_distribution)
    assert th.method == "quantile" and th.budget == budget and len(th.values) == 5


def test_total_metric_budget(calib, profile):
    totals = profile.costs("total_gflops")
    budget = BudgetSpec(average_gflops=0.5 * (totals[1] + totals[-1]), metric="total_gflops")
    th = solve(calib, profile, budget)
    exits = simulate_exits(calib, th)
    assert np.mean(np.asarray(totals)[exits - 1]) == pytest.approx(budget.average_gflops, rel=0.02)
    assert th.metric == "total_gflops"


def test_slack_budget_runs_every_step_to_the_cap(calib, profile):
    th = solve(calib, profile, BudgetSpec(average_gflops=100.0, peak_gflops=profile.llm_gflops[3]))
    assert th.exit_distribution[3] > 0.99
    assert th.expected_cost == pytest.approx(profile.llm_gflops[3], rel=0.01)


def test_peak_cap_is_respected_by_the_solution(calib, profile):
    budget = BudgetSpec(average_gflops=profile.llm_gflops[2], peak_gflops=profile.llm_gflops[3])
    th = solve(calib, profile, budget)
    exits = simulate_exits(calib, th, cap=4)
    assert exits.max() <= 4
    assert sum(th.exit_distribution[4:]) == 0.0
    assert th.expected_cost == pytest.approx(budget.average_gflops, rel=0.02)


def test_budget_below_exit_two_means_exit_one_only(calib, profile):
    th = solve(calib, profile, BudgetSpec(average_gflops=profile.llm_gflops[0] * 1.5))
    assert th.exit_distribution[0] == 1.0


def test_exit_fractions_are_normalised_and_monotone():
    exits = np.arange(2, 7)
    for shape in ("geometric", "gaussian", "gamma"):
        means = []
        for p in np.linspace(-3, 3, 13):
            f = exit_fractions(shape, float(p) + (4 if shape == "gaussian" else 0), exits)
            assert f.sum() == pytest.approx(1.0)
            means.append(f @ exits)
        assert np.all(np.diff(means) > 0), shape


def test_solver_errors(calib, profile):
    with pytest.raises(InfeasibleBudgetError, match="smallest feasible average budget"):
        solve(calib, profile, BudgetSpec(average_gflops=0.1))
    with pytest.raises(ValueError, match="needs a budget with average_gflops"):
        solve(calib, profile, BudgetSpec(peak_gflops=5.0))
    with pytest.raises(ValueError, match="4 exits but the cost profile has 6"):
        solve(calib[:, :4], profile, BudgetSpec(average_gflops=8.0))
    with pytest.raises(ValueError, match="unknown exit distribution shape"):
        solve(calib, profile, BudgetSpec(average_gflops=8.0), shape="uniform")  # type: ignore[arg-type]
    bad = calib.copy()
    bad[3, 2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        solve(bad, profile, BudgetSpec(average_gflops=8.0))


def test_save_load_round_trip(tmp_path, calib, profile):
    th = solve(calib, profile, BudgetSpec(average_gflops=9.0, peak_gflops=20.0), criterion=Criterion("max"))
    path = tmp_path / "thresholds.json"
    th.save(path)
    back = Thresholds.load(path, num_exits=6)
    assert back.values == th.values
    assert back.budget == th.budget and back.criterion == Criterion("max")
    assert back.exit_distribution == th.exit_distribution and back.expected_cost == th.expected_cost
    # calibrate --out names a directory; given where a thresholds file is expected, the error points inside
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} is a directory, not a thresholds file; the "
                                                f"JSON files in it: {path}"):
        Thresholds.load(tmp_path)


def test_a_malformed_thresholds_file_is_a_one_line_error_naming_it(tmp_path, calib, profile):
    """A value of the wrong type reached math.isfinite (TypeError), deep nesting the JSON parser
    (RecursionError), non-UTF-8 bytes a UnicodeDecodeError without the file's name: each escaped a command's
    bad-input handler (ValueError) as a traceback."""
    good = solve(calib, profile, BudgetSpec(average_gflops=9.0)).to_dict()
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({**good, "expected_cost": "x"}))
    with pytest.raises(ValueError, match=f"thresholds file {path}: thresholds 'expected_cost' must be a number"):
        Thresholds.load(path)
    path.write_text(json.dumps({**good, "exit_distribution": ["a"] * len(good["exit_distribution"])}))
    with pytest.raises(ValueError, match=f"thresholds file {path}: "):
        Thresholds.load(path)
    # a hand edit float() or bool() would have taken, each with a meaning the file never had
    n = len(good["values"])
    for edit, message in (({"values": ["0.1"] * n}, "'values' must be a list of numbers"),
                          ({"values": [True] * n}, "'values' must be a list of numbers"),
                          ({"criterion": {**good["criterion"], "gripper_flip_infinite": "false"}},
                           "gripper_flip_infinite must be true or false, got 'false'"),
                          ({"exit_distribution": [0.9] * len(good["exit_distribution"])}, "summing to 1"),
                          ({"method": 3}, "'method' must be a name")):
        path.write_text(json.dumps({**good, **edit}))
        with pytest.raises(ValueError, match=f"thresholds file {path}: .*{message}"):
            Thresholds.load(path)
    path.write_text("[" * 100_000)
    with pytest.raises(ValueError, match=f"thresholds file {path} is not valid JSON"):
        Thresholds.load(path)
    path.write_bytes(b'{"values": [0.1, \xff]}')
    with pytest.raises(ValueError, match=f"thresholds file {path} is not valid JSON"):
        Thresholds.load(path)


def test_saving_thresholds_over_a_file_is_all_or_nothing(tmp_path, calib, profile, monkeypatch):
    """A crash between writing and renaming keeps the old file whole and leaves no temporary file."""
    path = tmp_path / "thresholds.json"
    old = solve(calib, profile, BudgetSpec(average_gflops=9.0))
    old.save(path)
    new = solve(calib, profile, BudgetSpec(average_gflops=12.0))
    assert new.values != old.values

    def killed(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        new.save(path)
    monkeypatch.undo()
    assert Thresholds.load(path).values == old.values
    assert [p.name for p in tmp_path.iterdir()] == ["thresholds.json"]
    new.save(path)
    assert Thresholds.load(path).values == new.values


def test_thresholds_record_the_weights_they_were_solved_on_and_refuse_others(tmp_path):
    """Two checkpoints of one architecture (the shipped default and mt50) take each other's thresholds file
    structurally; only the digest of the weights they were solved on tells them apart."""
    mine, other = "a" * 64, "b" * 64
    path = tmp_path / "thresholds.json"
    Thresholds(values=[0.1, 0.2], weights_sha256=mine).save(path)
    back = Thresholds.load(path)
    assert back.weights_sha256 == mine
    back.check_solved_on(lambda: mine, str(path), "ckpt")
    with pytest.raises(ValueError, match=f"{path} was solved on other weights \\(sha256 aaaaaaaaaaaa.*\\) than "
                                         "ckpt's \\(bbbbbbbbbbbb.*calibrate"):
        back.check_solved_on(lambda: other, str(path), "ckpt")

    def never() -> str:
        raise AssertionError("a file that records no weights must not cost a hash of them")

    Thresholds(values=[0.1, 0.2]).check_solved_on(never, "old.json", "ckpt")  # files from before: accepted
    assert "weights_sha256" not in Thresholds(values=[0.1]).to_dict()  # and written as they were
    with pytest.raises(ValueError, match="weights_sha256 must be 64 hex digits"):
        Thresholds(values=[0.1], weights_sha256="abc")


def test_learned_thresholds_record_the_gates_they_were_solved_with_and_refuse_retrained_ones(tmp_path):
    """The learned criterion's scores are its gates' predictions: thresholds solved with one gates file mean
    something else under retrained gates, on the very same weights."""
    weights, gates, retrained = "a" * 64, "c" * 64, "d" * 64
    path = tmp_path / "thresholds.json"
    Thresholds(values=[0.1, 0.2], weights_sha256=weights, gates_sha256=gates).save(path)
    back = Thresholds.load(path)
    assert back.gates_sha256 == gates
    back.check_solved_on(lambda: weights, str(path), "ckpt", lambda: gates)
    with pytest.raises(ValueError, match=f"{path} was solved with other exit gates \\(sha256 cccccccccccc.*\\) "
                                         "than ckpt's gates.safetensors \\(dddddddddddd.*calibrate again"):
        back.check_solved_on(lambda: weights, str(path), "ckpt", lambda: retrained)
    back.check_solved_on(lambda: weights, str(path), "ckpt", lambda: None)  # no gates: the criterion says so

    def never() -> str:
        raise AssertionError("a file that records no gates must not cost a hash of them")

    Thresholds(values=[0.1, 0.2], weights_sha256=weights).check_solved_on(lambda: weights, "old.json", "ckpt", never)
    assert "gates_sha256" not in Thresholds(values=[0.1]).to_dict()
    with pytest.raises(ValueError, match="gates_sha256 must be 64 hex digits"):
        Thresholds(values=[0.1], gates_sha256="C" * 64)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([0.1, -0.2], "eta_3 must be >= 0"),
        ([0.1, float("nan")], "eta_3 is NaN"),
        ([float("inf")], "eta_2 is infinite"),
        (["a"], "must be numbers"),
    ],
)
def test_bad_threshold_values(values, match):
    with pytest.raises(ValueError, match=match):
        Thresholds(values=values)


def test_bad_threshold_files(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"values": [0.1, 0.2]}))
    with pytest.raises(ValueError, match="a 6-exit model needs 5"):
        Thresholds.load(path, num_exits=6)
    path.write_text('{"values": [0.1, NaN]}')
    with pytest.raises(ValueError, match="NaN"):
        Thresholds.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Thresholds.load(path)
    path.write_text(json.dumps({"values": [0.1], "colour": "red"}))
    with pytest.raises(ValueError, match="unknown thresholds keys"):
        Thresholds.load(path)
    with pytest.raises(FileNotFoundError):
        Thresholds.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="need 5 values"):
        Thresholds(values=[0.1, 0.2]).check_covers(6)
    with pytest.raises(ValueError, match="exit_distribution"):
        Thresholds(values=[0.1], exit_distribution=[0.5])


def test_gripper_flip_infinite_criterion_still_meets_budget(calib, profile):
    crit = Criterion(gripper_flip_infinite=True)
    budget = BudgetSpec(average_gflops=9.0)
    th = solve(calib, profile, budget, criterion=crit)
    exits = simulate_exits(calib, th)
    assert np.mean(np.asarray(profile.costs())[exits - 1]) == pytest.approx(9.0, rel=0.02)
    # A step whose exits disagree on the gripper never stops on the threshold at that exit.
    flips = (calib[:, 1:, -1] > 0) != (calib[:, :-1, -1] > 0)
    for k in range(2, 6):
        assert not np.any((exits == k) & flips[:, k - 2])


@pytest.mark.parametrize("method", ["quantile", "descent"])
def test_a_budget_gripper_flips_put_out_of_reach_is_refused_with_the_smallest_feasible_one(method):
    """A step whose exits disagree on the gripper cannot stop there under gripper_flip_infinite. Quantile gave
    back its cheapest setting, over budget, without a word; descent's check used an infinite eta (which also
    stops infinite scores) and saved finite thresholds that spent more than the expected_cost it reported."""
    from deer_vla.control import solve_thresholds
    from deer_vla.core import CostProfile

    rng = np.random.default_rng(0)
    actions = rng.normal(0, 0.1, (200, 4, 3))
    actions[:, :, 2] = 1.0
    actions[:20, 0, 2] = -1.0  # 10%: exits 1 and 2 disagree on the gripper, so these cannot stop at exit 2
    profile = CostProfile(llm_gflops=[1.0, 2.0, 3.0, 4.0], total_gflops=[1.0, 2.0, 3.0, 4.0], params=[1] * 4,
                          weight_bytes=[1] * 4)
    crit = Criterion(gripper_flip_infinite=True)
    with pytest.raises(InfeasibleBudgetError, match="smallest feasible average budget is 2.1"):
        solve_thresholds(method, actions, profile, BudgetSpec(average_gflops=2.05), crit)
    th = solve_thresholds(method, actions, profile, BudgetSpec(average_gflops=2.1), crit)
    spent = np.asarray([1.0, 2.0, 3.0, 4.0])[simulate_exits(actions, th) - 1].mean()
    assert spent <= 2.1 + 1e-9 and spent == pytest.approx(th.expected_cost)


@pytest.mark.parametrize(("change", "said"), [
    ({"values": [10**400]}, "wrong type: OverflowError"),
    ({"expected_cost": 10**400}, "wrong type: OverflowError"),
    ({"criterion": ["distance"]}, "wrong type: AttributeError"),
])
def test_a_thresholds_file_python_cannot_take_is_a_value_error_naming_it(tmp_path, change, said):
    """These escaped the loaders' ValueError handlers as OverflowError / AttributeError tracebacks."""
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"values": [0.1, 0.2], **change}))
    with pytest.raises(ValueError, match=f"thresholds file {path}: .*{said}"):
        Thresholds.load(path)
    path.write_text('{"values": [' + "9" * 5000 + "]}")
    with pytest.raises(ValueError, match=f"thresholds file {path} is not valid JSON"):
        Thresholds.load(path)


@pytest.mark.parametrize(("shape", "shape_param"), [("gaussian", 50.0), ("gamma", 500.0)])
def test_a_shape_that_cannot_reach_the_first_exit_still_keeps_a_feasible_budget(shape, shape_param):
    """A wide gaussian or a large-alpha gamma never puts all its mass on the first exit, even at its bracket's end:
    the solver returned that setting (24% and 3x over a budget that stopping every step at exit 2 meets) without
    an error. It falls back to stopping every step as early as its scores allow."""
    prof = synthetic_profile(6)
    costs = np.asarray(prof.costs())
    calib = synthetic_exit_actions(600, 6, seed=3)
    budget = costs[1] + 0.05 * (costs[-1] - costs[1])
    th = solve(calib, prof, BudgetSpec(average_gflops=budget), shape=shape, shape_param=shape_param)
    realised = costs[simulate_exits(calib, th) - 1].mean()
    assert realised <= budget and th.expected_cost == pytest.approx(realised)


def test_values_and_an_exit_distribution_of_other_lengths_name_both() -> None:
    """Values cut to 5 beside a 12-exit distribution said "exit_distribution must be 5 fractions": the fault
    named was the intact one."""
    from deer_vla.control.thresholds import Thresholds

    with pytest.raises(ValueError, match=r"exit_distribution has 12 fractions \(exits 1\.\.12\) but 'values' has "
                                         r"5 thresholds \(exits 2\.\.6\): one of the two was cut"):
        Thresholds(values=[0.1] * 5, exit_distribution=[1 / 12] * 12)
