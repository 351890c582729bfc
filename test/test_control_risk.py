"""Risk-controlled thresholds (control.risk): valid p-values, the LTT guarantee on synthetic streams,
where plain empirical choices fail, infeasible requests, and the guarantee carried to the step records."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deer_vla.control import BudgetSpec, ExitController, OnlineBudgetTracker, Thresholds, solve_thresholds_quantile
from deer_vla.control.guarantee import Guarantee
from deer_vla.control.risk import (
    InfeasibleRiskError,
    RiskSpec,
    calibrate_risk,
    certified_count,
    eps_needed,
    family_matrices,
    p_values,
    reapply,
)
from deer_vla.control.synthetic import ReplayExitPolicy, synthetic_episodes, synthetic_exit_actions, synthetic_profile

PROFILE = synthetic_profile(6)
COSTS = np.asarray(PROFILE.costs("llm_gflops"))


@pytest.fixture(scope="module")
def population() -> tuple[Thresholds, np.ndarray]:
    """A large synthetic step population and base thresholds solved on other (disjoint-seed) steps."""
    base = solve_thresholds_quantile(synthetic_exit_actions(2000, difficulty=0.6, seed=1), PROFILE,
                                     BudgetSpec(average_gflops=0.4 * COSTS[-1]))
    return base, synthetic_exit_actions(20_000, difficulty=0.6, seed=0)


@pytest.mark.parametrize("spec", [RiskSpec("mean", None, 1.0, "wsr"), RiskSpec("mean", None, 1.0, "hb"),
                                  RiskSpec("exceed", 0.5, 1.0)])
def test_p_values_are_valid_at_the_null_boundary(spec: RiskSpec) -> None:
    # Bernoulli losses with mean exactly eps: a valid p-value is <= delta at most a delta share of the time.
    rng = np.random.default_rng(0)
    eps, delta, n, reps = 0.2, 0.1, 200, 4000
    losses = (rng.random((n, reps)) < eps).astype(float)
    rate = float(np.mean(p_values(losses, eps, delta, spec) <= delta))
    assert rate <= delta + 3 * np.sqrt(delta * (1 - delta) / reps)
    # and the test has power where the risk is well below eps
    low = (rng.random((n, 200)) < eps / 4).astype(float)
    assert np.mean(p_values(low, eps, delta, spec) <= delta) > 0.9


def _rates(base: Thresholds, pop: np.ndarray, spec: RiskSpec, eps: float, delta: float, n: int,
           seeds: int) -> tuple[float, float, float]:
    """Violation rates (true risk on the population > eps) of LTT and of the plain empirical choice
    over ``seeds`` i.i.d. calibration draws of n steps; and LTT's mean cost share of the full model."""
    losses, step_costs = family_matrices(pop, base, COSTS, 6, spec)
    true_risk, true_cost = losses.mean(axis=0), step_costs.mean(axis=0)
    rng = np.random.default_rng(1)
    ltt = plain = 0
    spent = []
    for _ in range(seeds):
        cal = rng.integers(0, len(pop), n)
        risks, costs = losses[cal].mean(axis=0), step_costs[cal].mean(axis=0)
        k = certified_count(losses[cal], eps, delta, spec)
        j = int(np.argmin(costs[:k])) if k else 0
        ltt += true_risk[j] > eps
        ok = np.flatnonzero(risks <= eps)
        jp = int(ok[np.argmin(costs[ok])])
        plain += true_risk[jp] > eps
        spent.append(true_cost[j] / COSTS[-1])
    return ltt / seeds, plain / seeds, float(np.mean(spent))


@pytest.mark.parametrize("spec,eps", [(RiskSpec("mean", None, 1.0, "wsr"), 0.05),
                                      (RiskSpec("exceed", 0.1, 1.0), 0.2)])
def test_ltt_holds_the_risk_where_the_plain_empirical_choice_violates(population, spec: RiskSpec,
                                                                      eps: float) -> None:
    base, pop = population
    delta = 0.1
    ltt, plain, spent = _rates(base, pop, spec, eps, delta, n=400, seeds=200)
    assert plain > 3 * delta  # choosing on the calibration risk alone overshoots eps about half the time
    assert ltt <= delta
    assert spent < 0.95  # and the certified thresholds still save compute


def test_eps_needed_reproduces_the_fixed_sequence_test(population) -> None:
    base, pop = population
    spec = RiskSpec("mean", None, 1.0, "wsr")
    losses, _ = family_matrices(pop[:600], base, COSTS, 6, spec)
    need = eps_needed(losses, 0.1, spec)
    assert np.all(np.diff(need) >= 0)
    for eps in (0.02, 0.05, 0.08, 0.12):
        direct = certified_count(losses, eps, 0.1, spec)
        assert int(np.sum(need <= eps)) == direct


def test_calibrated_thresholds_carry_the_guarantee_and_refuse_infeasible_requests(population, tmp_path) -> None:
    base, pop = population
    spec = RiskSpec("mean", None, 1.0)
    th = calibrate_risk(pop[:1000], base, COSTS, 6, eps=0.05, delta=0.1, spec=spec)
    g = th.guarantee
    assert g is not None and (g.eps, g.delta, g.metric, g.n_calibration, g.bound) == (0.05, 0.1, "mean", 1000, 1.0)
    assert th.values == pytest.approx([v * g.scale for v in base.values])
    th.save(tmp_path / "t.json")
    loaded = Thresholds.load(tmp_path / "t.json")
    assert loaded.guarantee == g and loaded.values == th.values
    # values edited by hand (x20, far looser) kept the guarantee: every step record claimed it, the distance
    # from the full model measured 0.16 against eps 0.1
    edited = {**th.to_dict(), "values": [v * 20 for v in th.values]}
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    with pytest.raises(ValueError, match="not the certified family's base x scale .* guarantee does not cover them"):
        Thresholds.load(tmp_path / "edited.json")
    # a budget below the cheapest certified cost is refused with the smallest feasible budget ...
    with pytest.raises(InfeasibleRiskError, match="the risk limit binds") as err:
        reapply(loaded, 0.05, 0.1, average_budget=0.5 * th.expected_cost)
    assert err.value.smallest_budget == pytest.approx(th.expected_cost)
    assert err.value.smallest_eps is not None and err.value.smallest_eps > 0.05
    # ... and both smallest values are indeed feasible
    assert reapply(loaded, 0.05, 0.1, average_budget=err.value.smallest_budget).values == th.values
    cheap = reapply(loaded, err.value.smallest_eps, 0.1, average_budget=0.5 * th.expected_cost)
    assert cheap.expected_cost <= 0.5 * th.expected_cost
    with pytest.raises(InfeasibleRiskError, match="smallest feasible eps") as err2:
        reapply(loaded, 1e-6, 0.1)
    assert err2.value.smallest_eps > 1e-6
    with pytest.raises(InfeasibleRiskError, match="smallest feasible delta is 0.1"):
        reapply(loaded, 0.05, 0.01)


def test_step_records_carry_the_guarantee_and_the_tracker_cannot_scale_it(population) -> None:
    base, pop = population
    th = calibrate_risk(pop[:800], base, COSTS, 6, eps=0.05, delta=0.1, spec=RiskSpec("exceed", 0.1, 2.0))
    policy = ReplayExitPolicy(pop[:50])
    tracker = OnlineBudgetTracker(0.5 * COSTS[-1], gain=0.5)  # would loosen the thresholds fast
    ctrl = ExitController(policy, PROFILE, th, BudgetSpec(average_gflops=0.4 * COSTS[-1]), tracker=tracker)
    records = [ctrl.step(obs)[1] for obs in synthetic_episodes(1, 30)[0]]
    assert all(r.threshold_scale == 1.0 for r in records)
    r = records[-1]
    assert (r.risk_eps, r.risk_delta, r.risk_metric, r.risk_tau, r.risk_n_calibration) == (0.05, 0.1, "exceed",
                                                                                           0.1, 800)
    # a cap other than the certified one takes other exits: no guarantee is claimed
    capped = ExitController(ReplayExitPolicy(pop[:50]), PROFILE, th, BudgetSpec(peak_gflops=COSTS[3]))
    assert capped.step(synthetic_episodes(1, 1)[0][0])[1].risk_eps is None
    # a per-step deadline stops steps before the certified thresholds decide: refused while the guarantee
    # holds, and with one set from the start no guarantee is claimed (every record carried risk_eps before)
    with pytest.raises(ValueError, match="deadline .* fidelity guarantee would not hold"):
        ctrl.set_budget(BudgetSpec(average_gflops=th.expected_cost, deadline_ms=5.0))
    assert ctrl.step(synthetic_episodes(1, 1)[0][0])[1].risk_eps == 0.05
    with pytest.warns(UserWarning, match="cannot be enforced"):  # this profile has no latency: not enforced
        timed = ExitController(ReplayExitPolicy(pop[:50]), PROFILE, th,
                               BudgetSpec(average_gflops=0.4 * COSTS[-1], deadline_ms=5.0))
    assert timed.guarantee is None and timed.step(synthetic_episodes(1, 1)[0][0])[1].risk_eps is None


def test_guarantee_json_is_validated() -> None:
    with pytest.raises(ValueError, match="needs tau"):
        Guarantee(eps=0.1, delta=0.1, metric="exceed", n_calibration=10, bound=2.0)
    with pytest.raises(ValueError, match="delta"):
        Guarantee.from_dict({"eps": 0.1, "delta": 1.5, "metric": "mean", "n_calibration": 10, "bound": 2.0})
    with pytest.raises(ValueError, match="unknown guarantee keys"):
        Guarantee.from_dict({"eps": 0.1, "delta": 0.1, "metric": "mean", "n_calibration": 10, "bound": 2.0, "x": 1})


def test_episode_unit_tests_per_episode_means_and_records_it(population) -> None:
    from deer_vla.control.risk import episode_means

    vals = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]])
    assert episode_means(vals, np.array([7, 7, 2])).tolist() == [[2.0, 1.0], [5.0, 4.0]]
    base, pop = population
    owner = np.repeat(np.arange(40), 25)  # 40 episodes of 25 steps
    th = calibrate_risk(pop[:1000], base, COSTS, 6, eps=0.3, delta=0.1, spec=RiskSpec("exceed", 0.1, 2.0),
                        episode_of=owner)
    g = th.guarantee
    assert g is not None and g.unit == "episode" and g.n_calibration == 40
    assert Thresholds.from_dict(th.to_dict()).guarantee.unit == "episode"
    # episode rates are not Bernoulli: the binomial tail would be invalid, a bounded-loss test is used
    rates = np.full((40, 1), 0.25)
    assert p_values(rates, 0.3, 0.1, RiskSpec("exceed", 0.1, 2.0))[0] > 0.0


def test_with_episodes_as_the_unit_the_certified_cost_is_still_a_mean_per_step() -> None:
    """The family's costs were averaged per episode, so a set whose long episodes were the hard ones certified a
    budget its thresholds overspent on the very calibration steps (26% over in the audit's case)."""
    from deer_vla.control.thresholds import simulate_exits

    n = 6
    prof = synthetic_profile(n)
    costs = np.array(prof.costs("llm_gflops"))
    base = solve_thresholds_quantile(synthetic_exit_actions(600, n, seed=1), prof,
                                     BudgetSpec(average_gflops=0.5 * costs[-1]))
    easy = synthetic_exit_actions(200, n, seed=3, difficulty=0.1, noise=0.05)  # 40 short easy episodes
    hard = synthetic_exit_actions(2000, n, seed=2, difficulty=0.9, noise=0.6)  # 40 long hard ones
    steps = np.concatenate([easy, hard])
    episode_of = np.concatenate([np.repeat(np.arange(40), 5), 40 + np.repeat(np.arange(40), 50)])
    th = calibrate_risk(steps, base, costs, n, 0.12, 0.1, RiskSpec("mean"), episode_of=episode_of)
    per_step = float(costs[simulate_exits(steps, th) - 1].mean())
    assert th.expected_cost == pytest.approx(per_step, rel=1e-9)
    with pytest.raises(InfeasibleRiskError, match="smallest feasible"):  # a budget under that cost is refused
        calibrate_risk(steps, base, costs, n, 0.12, 0.1, RiskSpec("mean"), average_budget=0.9 * per_step,
                       episode_of=episode_of)
    with pytest.raises(InfeasibleRiskError, match="on 80 calibration episodes"):  # the unit, not "steps"
        calibrate_risk(steps, base, costs, n, 1e-6, 0.1, RiskSpec("mean"), episode_of=episode_of)
