"""The policy node under a fidelity limit: risk.eps / risk.delta re-test the certified family at configure,
the guarantee in force reaches every step record and /diagnostics, infeasible pairs are refused."""
from __future__ import annotations

import re

import pytest
from fixtures import Driver

from deer_vla.control.guarantee import Guarantee, RiskFamilyData
from deer_vla.control.thresholds import Thresholds

pytestmark = pytest.mark.ros


@pytest.fixture
def certified(tiny_checkpoint, tmp_path):
    """A thresholds file with a certified family: members 0..2 need eps >= 0.01 / 0.02 / 0.05."""
    from deer_vla.model.runner import PolicyRunner

    plain = Thresholds.load(tiny_checkpoint / "thresholds.json")
    profile = PolicyRunner.from_checkpoint(tiny_checkpoint).cost_profile
    n = profile.num_exits
    costs = [profile.cost(n), profile.cost(max(1, n - 1)), profile.cost(2)]
    family = RiskFamilyData(base=[0.5 + v for v in plain.values], scales=[0.0, 1.0, 2.0], costs=costs,
                            risks=[0.0, 0.01, 0.03], eps_needed=[0.01, 0.02, 0.05], delta=0.1, cap=n)
    g = Guarantee(eps=0.05, delta=0.1, metric="mean", n_calibration=500, bound=2.0, scale=2.0, family=family)
    path = tmp_path / "certified.json"
    Thresholds(values=[2 * v for v in family.base], method="risk", expected_cost=costs[2], guarantee=g).save(path)
    return path, costs


def test_apply_risk_retests_the_family_and_names_the_smallest_feasible_values(certified) -> None:
    from deer_vla.control.budgets import BudgetSpec
    from deer_vla.ros.policy_backend import ConfigurationError, apply_risk

    path, costs = certified
    th = Thresholds.load(path)
    cap = th.guarantee.family.cap
    got = apply_risk(th, path, BudgetSpec(), cap, 0.03, 0.1)
    assert got.guarantee.eps == 0.03 and got.guarantee.scale == 1.0 and got.expected_cost == costs[1]
    with pytest.raises(ConfigurationError, match="smallest feasible eps is 0.01"):
        apply_risk(th, path, BudgetSpec(), cap, 0.001, 0.1)
    with pytest.raises(ConfigurationError, match=r"smallest feasible average budget is ([0-9.e-]+);") as err:
        apply_risk(th, path, BudgetSpec(average_gflops=0.5 * (costs[1] + costs[2])), cap, 0.03, 0.1)
    smallest = float(re.search(r"smallest feasible average budget is ([0-9.e-]+);", str(err.value)).group(1))
    assert costs[1] <= smallest <= costs[1] * (1 + 1e-5)  # rounded up: that budget is accepted
    apply_risk(th, path, BudgetSpec(average_gflops=smallest), cap, 0.03, 0.1)
    with pytest.raises(ConfigurationError, match="smallest feasible delta is 0.1"):
        apply_risk(th, path, BudgetSpec(), cap, 0.03, 0.05)
    with pytest.raises(ConfigurationError, match="certified with exits up to"):
        apply_risk(th, path, BudgetSpec(), cap - 1, 0.03, 0.1)
    plain = Thresholds(values=th.values)
    with pytest.raises(ConfigurationError, match="calibrate --risk"):
        apply_risk(plain, path, BudgetSpec(), cap, 0.03, 0.1)


def test_node_runs_under_the_guarantee_and_publishes_it(executor, tiny_checkpoint, certified) -> None:
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    from deer_vla.core import StepRecord
    from deer_vla.ros.budget_monitor import BudgetMonitor
    from deer_vla.ros.policy_node import PolicyNode

    path, costs = certified

    def policy(**params):
        overrides = {"checkpoint_dir": str(tiny_checkpoint), "thresholds_file": str(path), "control_mode": "event",
                     **params}
        node = PolicyNode(parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        executor.add_node(node)
        return node

    refused = policy(**{"risk.eps": 0.001})
    assert refused.trigger_configure() == R.FAILURE and refused.stack is None
    too_cheap = policy(**{"risk.eps": 0.03, "budget.average_gflops": 0.5 * (costs[1] + costs[2])})
    assert too_cheap.trigger_configure() == R.FAILURE
    node = policy(**{"risk.eps": 0.03, "risk.delta": 0.2})
    assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    assert node.stack.controller.guarantee.eps == 0.03
    drv = Driver(executor)
    drv.instruct()
    assert drv.drive_until(lambda: len(drv.records) >= 3)
    rec = StepRecord.from_json(drv.records[-1].data)
    assert (rec.risk_eps, rec.risk_delta, rec.risk_metric, rec.risk_n_calibration) == (0.03, 0.1, "mean", 500)
    assert rec.threshold_scale == 1.0  # certified thresholds are never scaled by the tracker
    monitor = BudgetMonitor(metric="llm_gflops")
    monitor.update(rec)
    status = next(s for s in monitor.statuses() if s.name == "fidelity_guarantee")
    assert status.values["eps"] == "0.03" and "mean action distance <= 0.03" in status.message
    # the policy node's own /diagnostics status names it too
    values = {kv.key: kv.value for kv in node.diagnostics().status[0].values}
    assert (values["guarantee eps"], values["guarantee delta"]) == ("0.03", "0.1")
    assert "<= 0.03 with probability >= 0.9" in values["fidelity guarantee"]
    # the limit is set at configure; a budget that would void it is refused at run time
    assert not node.set_parameters([Parameter("risk.eps", value=0.5)])[0].successful
    low = node.set_parameters([Parameter("budget.average_gflops", value=0.5 * (costs[1] + costs[2]))])[0]
    assert not low.successful and "smallest feasible average budget" in low.reason
