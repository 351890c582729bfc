"""The learned exit criterion on the control side: the controller stops where the policy's exit gates say,
charges the gates' compute, and the existing solvers find thresholds on the gate scores."""
from __future__ import annotations

import numpy as np
import pytest

from deer_vla.control import (
    BudgetSpec,
    Criterion,
    ExitController,
    Thresholds,
    collect_exit_actions,
    collect_exit_actions_and_scores,
    criterion_scores,
    simulate_exits,
    solve_thresholds_descent,
    solve_thresholds_quantile,
)
from deer_vla.control.risk import RiskSpec, calibrate_risk
from deer_vla.core import CostProfile, Observation

N = 5
GATE_GFLOPS = 0.01
LEARNED = Criterion(kind="learned")


def profile() -> CostProfile:
    llm = [1.0, 2.0, 3.0, 4.0, 5.0]
    return CostProfile(llm_gflops=llm, total_gflops=[c + 0.5 for c in llm], params=[1] * N, weight_bytes=[4] * N)


class ScriptedGatedPolicy:
    """Every exit proposes the same action (so the consecutive criterion always stops at exit 2);
    the gate scores of exits 2..N come from ``scores`` (one row per step)."""

    def __init__(self, scores: list[list[float]], gates: bool = True) -> None:
        self.scores = scores
        self.gates = gates
        self.step = -1
        self.k = 0
        self.committed: list[int] = []
        self.scored: list[int] = []

    num_exits = N

    @property
    def has_exit_gates(self) -> bool:
        return self.gates

    @property
    def exit_gate_gflops(self) -> float:
        return GATE_GFLOPS

    def reset(self) -> None:
        pass

    def begin_step(self, observation: Observation) -> None:
        self.step += 1
        self.k = 0

    def run_next_exit(self) -> np.ndarray:
        self.k += 1
        return np.array([0.1, -0.2, 0.3, 1.0])

    def exit_score(self) -> float:
        self.scored.append(self.k)
        return self.scores[self.step][self.k - 2]

    def commit(self, exit_index: int) -> np.ndarray:
        self.committed.append(exit_index)
        return np.array([0.1, -0.2, 0.3, 1.0])


def obs() -> Observation:
    return Observation(images={"static": np.zeros((8, 8, 3), dtype=np.uint8)}, instruction="x")


def test_learned_criterion_exits_where_the_gate_says_not_where_consecutive_exits_agree() -> None:
    eta = Thresholds(values=[0.05] * (N - 1), criterion=LEARNED)
    scores = [[0.2, 0.1, 0.04, 0.0], [0.01, 0.5, 0.5, 0.0], [0.3, 0.3, 0.3, 0.0]]
    policy = ScriptedGatedPolicy(scores)
    ctl = ExitController(policy, profile(), eta)
    exits = [ctl.step(obs())[1].exit_used for _ in scores]
    assert exits == [4, 2, 5]
    assert policy.committed == [4, 2, 5]
    # the same actions under the consecutive criterion stop at exit 2 every time (distance 0)
    plain = ExitController(ScriptedGatedPolicy(scores), profile(), Thresholds(values=[0.05] * (N - 1)))
    assert [plain.step(obs())[1].exit_used for _ in scores] == [2, 2, 2]


def test_step_record_carries_the_gate_scores_compared_with_the_thresholds() -> None:
    ctl = ExitController(ScriptedGatedPolicy([[0.2, 0.1, 0.04, 0.0]]), profile(),
                         Thresholds(values=[0.05] * (N - 1), criterion=LEARNED))
    _, rec = ctl.step(obs())
    assert rec.distances == [0.2, 0.1, 0.04]
    assert rec.stop_reason == "threshold"


def test_learned_criterion_charges_one_gate_per_exit_from_exit_two_on() -> None:
    policy = ScriptedGatedPolicy([[0.2, 0.1, 0.04, 0.0]])
    ctl = ExitController(policy, profile(), Thresholds(values=[0.05] * (N - 1), criterion=LEARNED))
    _, rec = ctl.step(obs())
    assert rec.exit_used == 4 and policy.scored == [2, 3, 4]
    assert rec.llm_gflops == pytest.approx(4.0 + 3 * GATE_GFLOPS)
    assert rec.total_gflops == pytest.approx(4.5 + 3 * GATE_GFLOPS)
    assert ctl.profile.gate_gflops == GATE_GFLOPS
    # an already charged profile is not charged twice
    again = ExitController(ScriptedGatedPolicy([[0.2, 0.1, 0.04, 0.0]]), profile().with_exit_gates(GATE_GFLOPS),
                           Thresholds(values=[0.05] * (N - 1), criterion=LEARNED))
    assert again.step(obs())[1].llm_gflops == pytest.approx(4.0 + 3 * GATE_GFLOPS)
    # fixed exits and the consecutive criterion pay nothing for gates
    fixed = ExitController(ScriptedGatedPolicy([[0.0] * 4]), profile(), None, fixed_exit=4)
    assert fixed.step(obs())[1].llm_gflops == pytest.approx(4.0)


def test_learned_criterion_without_gates_is_refused_with_the_command_that_makes_them() -> None:
    th = Thresholds(values=[0.05] * (N - 1), criterion=LEARNED)
    with pytest.raises(ValueError, match="needs exit gates.*deer-vla train-gate"):
        ExitController(ScriptedGatedPolicy([[0.0] * 4], gates=False), profile(), th)
    with pytest.raises(ValueError, match="needs exit gates"):
        collect_exit_actions_and_scores(ScriptedGatedPolicy([[0.0] * 4], gates=False), [[obs()]])


def test_thresholds_of_one_criterion_do_not_run_the_other() -> None:
    policy = ScriptedGatedPolicy([[0.0] * 4])
    with pytest.raises(ValueError, match="solved for the consecutive criterion"):
        ExitController(policy, profile(), Thresholds(values=[0.05] * (N - 1)), criterion=LEARNED)
    ctl = ExitController(policy, profile(), Thresholds(values=[0.05] * (N - 1), criterion=LEARNED))
    with pytest.raises(ValueError, match="for the consecutive criterion"):
        ctl.set_thresholds(Thresholds(values=[0.05] * (N - 1)))


def test_calibration_records_the_gate_scores_of_exits_two_to_n() -> None:
    scores = [[0.2, 0.1, 0.04, 0.0], [0.01, 0.5, 0.5, 0.0]]
    actions, got = collect_exit_actions_and_scores(ScriptedGatedPolicy(scores), [[obs(), obs()]])
    assert actions.shape == (2, N, 4)
    np.testing.assert_array_equal(got, scores)
    assert collect_exit_actions(ScriptedGatedPolicy(scores), [[obs()]]).shape == (1, N, 4)


def _calibration(seed: int = 0, steps: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Exits 1..N-1 share one per-step error (so consecutive exits always agree: their distance says
    nothing), and the gate scores equal each exit's true distance from exit N (a perfect gate)."""
    rng = np.random.default_rng(seed)
    final = rng.uniform(-0.5, 0.5, size=(steps, 3))
    offset = 0.05 * rng.lognormal(0, 1, size=(steps, 1)) * rng.standard_normal((steps, 3))
    actions = np.empty((steps, N, 4))
    actions[:, :, :3] = (final + offset)[:, None, :]
    actions[:, -1, :3] = final
    actions[:, :, 3] = 1.0
    dist = np.sqrt(np.mean((actions[:, :, :3] - actions[:, -1:, :3]) ** 2, axis=-1))
    return actions, dist[:, 1:]


def test_existing_solvers_solve_the_learned_criterion_from_its_scores() -> None:
    actions, scores = _calibration()
    prof = profile()
    budget = BudgetSpec(average_gflops=3.0)
    for solver in (solve_thresholds_quantile, solve_thresholds_descent):
        th = solver(actions, prof, budget, criterion=LEARNED, scores=scores)
        assert th.criterion == LEARNED
        exits = simulate_exits(actions, th, scores=scores)
        assert np.mean(np.asarray(prof.costs())[exits - 1]) <= 3.0 + 1e-9
        assert th.expected_cost == pytest.approx(np.mean(np.asarray(prof.costs())[exits - 1]))
        assert Thresholds.from_dict(th.to_dict()).criterion == LEARNED
    with pytest.raises(ValueError, match="needs the exit gates' scores"):
        solve_thresholds_quantile(actions, prof, budget, criterion=LEARNED)
    with pytest.raises(ValueError, match="shape"):
        criterion_scores(actions, LEARNED, scores[:, :2])
    th = calibrate_risk(actions, solve_thresholds_quantile(actions, prof, budget, criterion=LEARNED, scores=scores),
                        np.asarray(prof.costs()), N, eps=0.02, delta=0.1, spec=RiskSpec(), scores=scores)
    assert th.criterion == LEARNED and th.guarantee is not None


def test_descent_on_a_perfect_gate_beats_descent_on_the_consecutive_distance() -> None:
    actions, scores = _calibration(seed=1)
    prof = profile()
    budget = BudgetSpec(average_gflops=2.5)
    err = np.sqrt(np.mean((actions[:, :, :3] - actions[:, -1:, :3]) ** 2, axis=-1))
    rows = np.arange(len(actions))

    def mean_error(th: Thresholds, sc: np.ndarray | None) -> float:
        return float(err[rows, simulate_exits(actions, th, scores=sc) - 1].mean())

    learned = solve_thresholds_descent(actions, prof, budget, criterion=LEARNED, scores=scores)
    plain = solve_thresholds_descent(actions, prof, budget)
    assert mean_error(learned, scores) < 0.8 * mean_error(plain, None)


def test_learned_criterion_keeps_the_consecutive_options_at_their_defaults() -> None:
    with pytest.raises(ValueError, match="consecutive criterion only"):
        Criterion(kind="learned", smooth=2)
    with pytest.raises(ValueError, match="unknown criterion kind"):
        Criterion(kind="oracle")  # type: ignore[arg-type]
    assert "kind" not in Criterion().to_dict()  # files written before keep their bytes
    assert Criterion.from_dict({"distance": "rms"}).kind == "consecutive"


def test_a_gated_profile_keeps_its_gate_charge_through_save_and_truncation(tmp_path) -> None:
    gated = profile().with_exit_gates(GATE_GFLOPS)
    assert gated.llm_gflops == pytest.approx([1.0, 2.01, 3.02, 4.03, 5.04])
    gated.save(tmp_path / "p.json")
    back = CostProfile.load(tmp_path / "p.json")
    assert back.gate_gflops == GATE_GFLOPS and back.truncated(3).gate_gflops == GATE_GFLOPS
    with pytest.raises(ValueError, match="already charges"):
        back.with_exit_gates(GATE_GFLOPS)
    assert "gate_gflops" not in profile().to_dict()
