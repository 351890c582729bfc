"""The learned exit criterion on the control side: the controller stops where the policy's exit gates say (from
exit 1 on, with an exit-1 gate), charges the gates' compute, and the existing solvers find thresholds on the gate
scores; gates and thresholds from before exit-1 gates keep their behaviour."""
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
    learned_criterion,
    simulate_exits,
    solve_thresholds_descent,
    solve_thresholds_quantile,
)
from deer_vla.control.budgets import budget_report
from deer_vla.control.risk import RiskSpec, calibrate_risk
from deer_vla.core import CostProfile, Observation

N = 5
GATE_GFLOPS = 0.01
LEARNED = Criterion(kind="learned")  # from exit 1: gates with an exit-1 gate
LEGACY = Criterion(kind="learned", first_exit=2)  # gates trained before exit 1 had one


def profile() -> CostProfile:
    llm = [1.0, 2.0, 3.0, 4.0, 5.0]
    return CostProfile(llm_gflops=llm, total_gflops=[c + 0.5 for c in llm], params=[1] * N, weight_bytes=[4] * N)


class ScriptedGatedPolicy:
    """Every exit proposes the same action (so the consecutive criterion always stops at exit 2);
    the gate scores of exits first..N come from ``scores`` (one row per step)."""

    def __init__(self, scores: list[list[float]], gates: bool = True, first: int = 1) -> None:
        self.scores = scores
        self.gates = gates
        self.first = first
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

    @property
    def first_gated_exit(self) -> int:
        return self.first

    def reset(self) -> None:
        pass

    def begin_step(self, observation: Observation) -> None:
        self.step += 1
        self.k = 0

    def run_next_exit(self) -> np.ndarray:
        self.k += 1
        return np.array([0.1, -0.2, 0.3, 1.0])

    def exit_score(self) -> float:
        assert self.k >= self.first, f"exit {self.k} has no gate"
        self.scored.append(self.k)
        return self.scores[self.step][self.k - self.first]

    def commit(self, exit_index: int) -> np.ndarray:
        self.committed.append(exit_index)
        return np.array([0.1, -0.2, 0.3, 1.0])


def obs() -> Observation:
    return Observation(images={"static": np.zeros((8, 8, 3), dtype=np.uint8)}, instruction="x")


def test_learned_criterion_exits_where_the_gate_says_from_exit_one_on() -> None:
    eta = Thresholds(values=[0.05] * N, criterion=LEARNED)
    scores = [[0.3, 0.2, 0.1, 0.04, 0.0], [0.02, 0.5, 0.5, 0.5, 0.0], [0.3, 0.01, 0.5, 0.5, 0.0], [0.3] * 4 + [0.0]]
    policy = ScriptedGatedPolicy(scores)
    ctl = ExitController(policy, profile(), eta)
    records = [ctl.step(obs())[1] for _ in scores]
    assert [r.exit_used for r in records] == [4, 1, 2, 5]
    assert policy.committed == [4, 1, 2, 5]
    assert records[1].stop_reason == "threshold" and policy.scored[4] == 1  # exit 1 chosen on its own gate
    # the same actions under the consecutive criterion stop at exit 2 every time (distance 0), never at 1
    plain = ExitController(ScriptedGatedPolicy(scores), profile(), Thresholds(values=[0.05] * (N - 1)))
    assert [plain.step(obs())[1].exit_used for _ in scores] == [2, 2, 2, 2]


def test_step_record_carries_the_gate_scores_compared_with_the_thresholds() -> None:
    ctl = ExitController(ScriptedGatedPolicy([[0.3, 0.2, 0.1, 0.04, 0.0]]), profile(),
                         Thresholds(values=[0.05] * N, criterion=LEARNED))
    _, rec = ctl.step(obs())
    assert rec.distances == [0.3, 0.2, 0.1, 0.04]
    assert rec.thresholds == [0.05] * N and rec.distances_from_exit == 1
    assert rec.stop_reason == "threshold"
    consecutive = ExitController(ScriptedGatedPolicy([[0.0] * N]), profile(), Thresholds(values=[0.05] * (N - 1)))
    assert consecutive.step(obs())[1].distances_from_exit == 2


def test_learned_criterion_charges_one_gate_per_exit_it_scores() -> None:
    policy = ScriptedGatedPolicy([[0.3, 0.2, 0.1, 0.04, 0.0]])
    ctl = ExitController(policy, profile(), Thresholds(values=[0.05] * N, criterion=LEARNED))
    _, rec = ctl.step(obs())
    assert rec.exit_used == 4 and policy.scored == [1, 2, 3, 4]
    assert rec.llm_gflops == pytest.approx(4.0 + 4 * GATE_GFLOPS)
    assert rec.total_gflops == pytest.approx(4.5 + 4 * GATE_GFLOPS)
    assert ctl.profile.gate_gflops == GATE_GFLOPS and ctl.profile.gate_first_exit == 1
    # an already charged profile is not charged twice; one charged from another exit is refused
    again = ExitController(ScriptedGatedPolicy([[0.3, 0.2, 0.1, 0.04, 0.0]]),
                           profile().with_exit_gates(GATE_GFLOPS, 1), Thresholds(values=[0.05] * N, criterion=LEARNED))
    assert again.step(obs())[1].llm_gflops == pytest.approx(4.0 + 4 * GATE_GFLOPS)
    with pytest.raises(ValueError, match="charges exit gates from exit 2"):
        ExitController(ScriptedGatedPolicy([[0.0] * N]), profile().with_exit_gates(GATE_GFLOPS, 2),
                       Thresholds(values=[0.05] * N, criterion=LEARNED))
    # fixed exits and the consecutive criterion pay nothing for gates
    fixed = ExitController(ScriptedGatedPolicy([[0.0] * N]), profile(), None, fixed_exit=4)
    assert fixed.step(obs())[1].llm_gflops == pytest.approx(4.0)


def test_gates_and_thresholds_from_before_exit_one_gates_behave_as_before() -> None:
    # a thresholds file written before exit-1 gates: N-1 values, a learned criterion without first_exit
    old = Thresholds.from_dict({"values": [0.05] * (N - 1), "criterion": {"distance": "rms", "smooth": 1,
                                                                          "gripper_flip_infinite": False,
                                                                          "kind": "learned"}}, num_exits=N)
    assert old.criterion == LEGACY and old.first_exit == 2 and old.num_exits == N
    scores = [[0.01, 0.5, 0.5, 0.0], [0.2, 0.1, 0.04, 0.0]]  # exits 2..N
    for first in (2, 1):  # old gates, and new ones whose exit-1 gate would stop both steps at exit 1
        policy = ScriptedGatedPolicy(scores if first == 2 else [[0.0, *row] for row in scores], first=first)
        ctl = ExitController(policy, profile(), old)
        records = [ctl.step(obs())[1] for _ in scores]
        assert [r.exit_used for r in records] == [2, 4]
        assert policy.scored == [2, 2, 3, 4]  # exit 1 is never scored, nor charged
        assert records[1].llm_gflops == pytest.approx(4.0 + 3 * GATE_GFLOPS)
        assert records[1].distances == [0.2, 0.1, 0.04] and records[1].distances_from_exit == 2
    # thresholds that stop at exit 1 need an exit-1 gate: old gates are refused, naming the fix
    with pytest.raises(ValueError, match="gates begin at exit 2.*deer-vla train-gate"):
        ExitController(ScriptedGatedPolicy(scores, first=2), profile(), Thresholds(values=[0.05] * N,
                                                                                  criterion=LEARNED))
    assert learned_criterion(ScriptedGatedPolicy(scores, first=2)) == LEGACY
    assert learned_criterion(ScriptedGatedPolicy(scores)) == LEARNED


def test_learned_criterion_without_gates_is_refused_with_the_command_that_makes_them() -> None:
    th = Thresholds(values=[0.05] * N, criterion=LEARNED)
    with pytest.raises(ValueError, match="needs exit gates.*deer-vla train-gate"):
        ExitController(ScriptedGatedPolicy([[0.0] * N], gates=False), profile(), th)
    with pytest.raises(ValueError, match="needs exit gates"):
        collect_exit_actions_and_scores(ScriptedGatedPolicy([[0.0] * N], gates=False), [[obs()]])


def test_thresholds_of_one_criterion_do_not_run_the_other() -> None:
    policy = ScriptedGatedPolicy([[0.0] * N])
    with pytest.raises(ValueError, match="solved for the consecutive criterion"):
        ExitController(policy, profile(), Thresholds(values=[0.05] * (N - 1)), criterion=LEARNED)
    with pytest.raises(ValueError, match="from exit 2 cannot run a criterion that first stops at exit 1"):
        ExitController(policy, profile(), Thresholds(values=[0.05] * (N - 1), criterion=LEGACY), criterion=LEARNED)
    ctl = ExitController(policy, profile(), Thresholds(values=[0.05] * N, criterion=LEARNED))
    with pytest.raises(ValueError, match="for the consecutive criterion"):
        ctl.set_thresholds(Thresholds(values=[0.05] * (N - 1)))
    with pytest.raises(ValueError, match="learned criterion from exit 2.*from exit 1"):
        ctl.set_thresholds(Thresholds(values=[0.05] * (N - 1), criterion=LEGACY))


def test_calibration_records_the_gate_scores_from_the_first_gated_exit() -> None:
    scores = [[0.3, 0.2, 0.1, 0.04, 0.0], [0.02, 0.01, 0.5, 0.5, 0.0]]
    actions, got = collect_exit_actions_and_scores(ScriptedGatedPolicy(scores), [[obs(), obs()]])
    assert actions.shape == (2, N, 4)
    np.testing.assert_array_equal(got, scores)
    legacy = [row[1:] for row in scores]
    _, got = collect_exit_actions_and_scores(ScriptedGatedPolicy(legacy, first=2), [[obs(), obs()]])
    np.testing.assert_array_equal(got, legacy)
    assert collect_exit_actions(ScriptedGatedPolicy(scores), [[obs()]]).shape == (1, N, 4)


def _calibration(seed: int = 0, steps: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Exits 1..N-1 share one per-step error (so consecutive exits always agree: their distance says
    nothing, and exit 1 is as good as any exit before N), and the gate scores of exits 1..N equal each exit's
    true distance from exit N (a perfect gate)."""
    rng = np.random.default_rng(seed)
    final = rng.uniform(-0.5, 0.5, size=(steps, 3))
    offset = 0.05 * rng.lognormal(0, 1, size=(steps, 1)) * rng.standard_normal((steps, 3))
    actions = np.empty((steps, N, 4))
    actions[:, :, :3] = (final + offset)[:, None, :]
    actions[:, -1, :3] = final
    actions[:, :, 3] = 1.0
    dist = np.sqrt(np.mean((actions[:, :, :3] - actions[:, -1:, :3]) ** 2, axis=-1))
    return actions, dist


def test_existing_solvers_solve_the_learned_criterion_from_its_scores() -> None:
    actions, scores = _calibration()
    prof = profile()
    budget = BudgetSpec(average_gflops=3.0)
    for solver in (solve_thresholds_quantile, solve_thresholds_descent):
        for crit, sc in ((LEARNED, scores), (LEGACY, scores[:, 1:])):
            th = solver(actions, prof, budget, criterion=crit, scores=sc)
            assert th.criterion == crit and len(th.values) == N + 1 - crit.first_exit
            exits = simulate_exits(actions, th, scores=sc)
            assert np.mean(np.asarray(prof.costs())[exits - 1]) <= 3.0 + 1e-9
            assert th.expected_cost == pytest.approx(np.mean(np.asarray(prof.costs())[exits - 1]))
            assert Thresholds.from_dict(th.to_dict()).criterion == crit
            assert (exits == 1).any() == (crit.first_exit == 1)  # exit 1 only where the criterion can stop there
    with pytest.raises(ValueError, match="needs the exit gates' scores"):
        solve_thresholds_quantile(actions, prof, budget, criterion=LEARNED)
    with pytest.raises(ValueError, match="shape"):
        criterion_scores(actions, LEARNED, scores[:, :2])
    with pytest.raises(ValueError, match="scores of exits 2..N, for a learned criterion with first_exit=2"):
        criterion_scores(actions, LEARNED, scores[:, 1:])
    base = solve_thresholds_quantile(actions, prof, budget, criterion=LEARNED, scores=scores)
    th = calibrate_risk(actions, base, np.asarray(prof.costs()), N, eps=0.02, delta=0.1, spec=RiskSpec(),
                        scores=scores)
    assert th.criterion == LEARNED and th.guarantee is not None
    # a loose limit certifies loose thresholds, which stop at exit 1 on its gate
    loose = calibrate_risk(actions, base, np.asarray(prof.costs()), N, eps=0.5, delta=0.1, spec=RiskSpec(),
                           scores=scores)
    assert (simulate_exits(actions, loose, scores=scores) == 1).mean() > 0.5


def test_exit_one_lets_the_learned_criterion_spend_less_at_the_same_fidelity() -> None:
    """Exit 1 is as accurate as exits 2..N-1 here: thresholds from exit 1 stop there instead of at exit 2,
    and a budget below exit 2's cost is met by mixing exit 1 with deeper ones, not by exit 1 alone."""
    actions, scores = _calibration(seed=2)
    prof = profile()
    err = np.sqrt(np.mean((actions[:, :, :3] - actions[:, -1:, :3]) ** 2, axis=-1))
    rows = np.arange(len(actions))
    for average in (2.5, 1.5):
        budget = BudgetSpec(average_gflops=average)
        from_one = solve_thresholds_descent(actions, prof, budget, criterion=LEARNED, scores=scores)
        from_two = solve_thresholds_descent(actions, prof, budget, criterion=LEGACY, scores=scores[:, 1:])
        one = simulate_exits(actions, from_one, cap=budget_report(prof, budget, first_exit=1).cap, scores=scores)
        two = simulate_exits(actions, from_two, cap=budget_report(prof, budget).cap, scores=scores[:, 1:])
        assert 0.3 < (one == 1).mean() < 1 and from_one.exit_distribution[0] == pytest.approx((one == 1).mean())
        assert (one == N).any() and not ((one > 1) & (one < N)).any()  # never an exit that is no better than 1
        assert err[rows, one - 1].mean() < 0.8 * err[rows, two - 1].mean()
    assert budget_report(prof, BudgetSpec(average_gflops=1.5)).cap == 1  # from exit 2: exit 1 only
    assert budget_report(prof, BudgetSpec(average_gflops=1.5), first_exit=1).cap == N


def test_descent_on_a_perfect_gate_beats_descent_on_the_consecutive_distance() -> None:
    actions, scores = _calibration(seed=1)
    prof = profile()
    budget = BudgetSpec(average_gflops=2.5)
    err = np.sqrt(np.mean((actions[:, :, :3] - actions[:, -1:, :3]) ** 2, axis=-1))
    rows = np.arange(len(actions))

    def mean_error(th: Thresholds, sc: np.ndarray | None) -> float:
        return float(err[rows, simulate_exits(actions, th, scores=sc) - 1].mean())

    learned = solve_thresholds_descent(actions, prof, budget, criterion=LEGACY, scores=scores[:, 1:])
    plain = solve_thresholds_descent(actions, prof, budget)
    assert mean_error(learned, scores[:, 1:]) < 0.8 * mean_error(plain, None)


def test_learned_criterion_keeps_the_consecutive_options_at_their_defaults() -> None:
    with pytest.raises(ValueError, match="consecutive criterion only"):
        Criterion(kind="learned", smooth=2)
    with pytest.raises(ValueError, match="unknown criterion kind"):
        Criterion(kind="oracle")  # type: ignore[arg-type]
    assert "kind" not in Criterion().to_dict()  # files written before keep their bytes
    assert Criterion.from_dict({"distance": "rms"}).kind == "consecutive"


def test_only_the_learned_criterion_can_start_at_exit_one() -> None:
    assert Criterion().first_exit == 2 and LEARNED.first_exit == 1 and LEARNED == Criterion(kind="learned",
                                                                                             first_exit=1)
    with pytest.raises(ValueError, match="compares two exits"):
        Criterion(first_exit=1)
    with pytest.raises(ValueError, match="first_exit must be 1 or 2"):
        Criterion(kind="learned", first_exit=3)
    assert Criterion.from_dict(LEARNED.to_dict()) == LEARNED and LEARNED.to_dict()["first_exit"] == 1
    th = Thresholds(values=[0.1, 0.2, 0.3, 0.4, 0.0], criterion=LEARNED)
    assert th.num_exits == N and th.eta(1) == 0.1 and th.eta(N) == 0.0
    with pytest.raises(IndexError, match="exits 2..5"):
        Thresholds(values=[0.1] * (N - 1)).eta(1)
    with pytest.raises(ValueError, match="needs 5 \\(exits 1..5\\)"):
        Thresholds.from_dict(Thresholds(values=[0.1] * (N - 1), criterion=LEARNED).to_dict(), num_exits=N)
    with pytest.raises(ValueError, match="threshold eta_1 must be >= 0"):
        Thresholds(values=[-0.1] * N, criterion=LEARNED)


def test_a_gated_profile_keeps_its_gate_charge_through_save_and_truncation(tmp_path) -> None:
    gated = profile().with_exit_gates(GATE_GFLOPS, 2)
    assert gated.llm_gflops == pytest.approx([1.0, 2.01, 3.02, 4.03, 5.04])
    assert profile().with_exit_gates(GATE_GFLOPS, 1).llm_gflops == pytest.approx([1.01, 2.02, 3.03, 4.04, 5.05])
    for first in (1, 2):
        profile().with_exit_gates(GATE_GFLOPS, first).save(tmp_path / "p.json")
        back = CostProfile.load(tmp_path / "p.json")
        assert back.gate_gflops == GATE_GFLOPS and back.truncated(3).gate_gflops == GATE_GFLOPS
        assert back.gate_first_exit == first and back.truncated(3).gate_first_exit == first
    with pytest.raises(ValueError, match="already charges"):
        back.with_exit_gates(GATE_GFLOPS, 1)
    assert "gate_gflops" not in profile().to_dict() and "gate_first_exit" not in profile().to_dict()
