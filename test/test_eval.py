"""Calibration and closed-loop evaluation end to end with a tiny model in the real simulator."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import build_tiny_checkpoint

from deer_vla.commands.calibrate import cli_main as calibrate_main
from deer_vla.control.thresholds import Thresholds
from deer_vla.evaluation.evaluator import EvalConfig, evaluate
from deer_vla.evaluation.evaluator import cli_main as evaluate_main
from deer_vla.evaluation.objective import TUNE_SEED_OFFSET, ClosedLoopObjective
from deer_vla.evaluation.report import summarize
from deer_vla.evaluation.rollout import EpisodeResult, ModeSpec
from deer_vla.evaluation.workers import EvalWorker, PolicySpec
from deer_vla.model.checkpoint_dir import CheckpointDir
from deer_vla.sim.metaworld_env import ACTION_SPEC
from deer_vla.train.synthetic import write_tiny_dataset

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An untrained tiny policy with Meta-World's action layout (its profile saved) + a 1-episode dataset for it."""
    from deer_vla.model.checkpoint import read_config

    root = tmp_path_factory.mktemp("eval")
    ckpt = build_tiny_checkpoint(root / "ckpt", texts=["open the drawer", "pull the drawer out", "drawer open now"],
                                 eta=None, profile=True, action=ACTION_SPEC.to_dict(), proprio_dim=4)
    cfg = read_config(ckpt)
    data = write_tiny_dataset(root / "demos", tuple(cfg.cameras), int(cfg.image_size), 4, ACTION_SPEC.to_dict(),
                              tasks=("drawer-open",), length=6)
    return ckpt, data


def _mid_fraction(ckpt: Path) -> float:
    from deer_vla.model.runner import PolicyRunner

    llm = PolicyRunner.from_checkpoint(ckpt).cost_profile.llm_gflops
    return (llm[0] + llm[-1]) / 2 / llm[-1]


def test_calibrate_writes_valid_thresholds(checkpoint: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    ckpt, data = checkpoint
    frac = _mid_fraction(ckpt)
    out = tmp_path / "cal"
    rc = calibrate_main(["--checkpoint", str(ckpt), "--dataset", str(data), "--average-budget-fraction",
                         f"{frac:.6f}", "--episodes", "1", "--out", str(out)])
    assert rc == 0
    from deer_vla.core import CostProfile

    profile = CostProfile.load(out / "profile.json")
    th = Thresholds.load(out / "thresholds.json", num_exits=profile.num_exits)
    assert th.method == "quantile" and th.budget is not None
    assert th.expected_cost is not None and th.expected_cost <= th.budget.average_gflops + 1e-9
    assert sum(th.exit_distribution) == pytest.approx(1.0)
    report = json.loads(capsys.readouterr().out)
    assert report["calibration_steps"] == 6
    # the error-minimising solver, same file format and budget guarantee
    assert calibrate_main(["--checkpoint", str(ckpt), "--dataset", str(data), "--average-budget-fraction",
                           f"{frac:.6f}", "--episodes", "1", "--method", "descent", "--smooth", "2",
                           "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "descent"
    th = Thresholds.load(out / "thresholds.json", num_exits=profile.num_exits)
    assert th.method == "descent" and th.expected_cost <= th.budget.average_gflops + 1e-9
    assert th.criterion.smooth == 2  # saved with the thresholds: the controller scores the same way
    assert calibrate_main(["--checkpoint", str(ckpt), "--dataset", str(data), "--average-budget-fraction",
                           f"{frac:.6f}", "--smooth", "0", "--out", str(out)]) == 2
    assert "smooth" in capsys.readouterr().err
    # an impossible budget is a clear CLI error, not a traceback
    assert calibrate_main(["--checkpoint", str(ckpt), "--dataset", str(data), "--average-budget-fraction", "1.5",
                           "--out", str(out)]) == 2
    assert "fraction" in capsys.readouterr().err


def test_evaluator_one_short_episode_end_to_end(checkpoint: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, data = checkpoint
    frac = _mid_fraction(ckpt)
    out = tmp_path / "eval"
    rc = evaluate_main([
        "--checkpoint", str(ckpt), "--tasks", "drawer-open", "--episodes-per-task", "1", "--max-steps", "3",
        "--budgets", f"{frac:.6f}", "--exits", "1,all", "--oracle", "0.05", "--calibration-dataset", str(data),
        "--calibration-episodes", "1", "--out", str(out), "--no-progress", "--workers", "1",
        "--criterion-smooth", "2",
    ])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    modes = list(res["summary"])
    assert modes[0] == "full" and "exit1" in modes and any(m.startswith("dyn") for m in modes)
    assert any(m.startswith("oracle") for m in modes)
    dyn = next(m for m in modes if m.startswith("dyn"))
    assert dyn == f"dyn{float(f'{frac:.6f}'):g}-smooth2"  # another criterion than DeeR's plain one: its own name
    header = json.loads((out / "episodes.jsonl").read_text().splitlines()[0])
    assert set(header["plan"]["mode_digests"]) == set(modes)
    # the model is its weights and its config: an edited config resumes no journal of the original
    assert header["fingerprint"]["config_sha256"] == CheckpointDir(ckpt).config_digest()
    assert res["modes"][dyn]["thresholds"]["criterion"]["smooth"] == 2  # the solved thresholds carry it
    for m in modes:
        st = res["summary"][m]["overall"]
        assert st["episodes"] == 1 and 1 <= st["steps"] <= 3
        assert 0 <= st["ci95_low"] <= st["success_rate"] <= st["ci95_high"] <= 1
    full, exit1 = res["summary"]["full"]["overall"], res["summary"]["exit1"]["overall"]
    assert full["mean_exit"] == res["modes"]["full"]["exit"] and exit1["mean_exit"] == 1
    assert exit1["mean_llm_gflops"] < full["mean_llm_gflops"]
    assert set(res["paired"]) == set(modes) - {"full"}  # each mode paired with the full model, episode by episode
    assert res["paired"]["exit1"]["pairs"] == 1 and res["paired"]["exit1"]["reference"] == "full"
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["mode"] for r in rows} == set(modes) and {r["task"] for r in rows} == {"drawer-open", "ALL"}
    assert (out / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_runs_thresholds_files_as_written(checkpoint: tuple[Path, Path], tmp_path: Path) -> None:
    """--thresholds: each file is one dynamic mode, run with its own thresholds (e.g. risk-certified ones)."""
    from deer_vla.model.checkpoint import read_config

    ckpt, _ = checkpoint
    n = read_config(ckpt).num_exits
    Thresholds(values=[1e9] * (n - 1)).save(tmp_path / "early.json")  # any distance passes: stop at exit 2
    Thresholds(values=[0.0] * (n - 1)).save(tmp_path / "late.json")  # none passes: run to the full model
    out = tmp_path / "eval"
    rc = evaluate_main([
        "--checkpoint", str(ckpt), "--tasks", "drawer-open", "--episodes-per-task", "1", "--max-steps", "3",
        "--budgets", "", "--exits", "all", "--thresholds", f"{tmp_path / 'early.json'},{tmp_path / 'late.json'}",
        "--out", str(out), "--no-progress", "--workers", "1", "--threads", "1",
    ])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["threads"] == 1 and len(res["config"]["thresholds_files"]) == 2
    assert list(res["summary"]) == ["full", "th-early", "th-late"]
    assert res["summary"]["th-early"]["overall"]["mean_exit"] == 2
    assert res["summary"]["th-late"]["overall"]["mean_exit"] == n
    assert res["modes"]["th-early"]["thresholds"]["values"] == [1e9] * (n - 1)


def test_evaluate_tracks_a_thresholds_files_budget_and_refuses_a_file_without_one(
        checkpoint: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    """--track-budget with --thresholds: the file's mode also runs under the online tracker holding the file's
    average budget, as the policy node runs it; a file with no average budget cannot be tracked."""
    from deer_vla.control.budgets import BudgetSpec
    from deer_vla.model.checkpoint import read_config
    from deer_vla.model.runner import PolicyRunner

    ckpt, _ = checkpoint
    n = read_config(ckpt).num_exits
    exit1 = PolicyRunner.from_checkpoint(ckpt).cost_profile.costs("llm_gflops")[0]
    Thresholds(values=[0.0] * (n - 1), budget=BudgetSpec(average_gflops=1.2 * exit1)).save(tmp_path / "budgeted.json")
    Thresholds(values=[0.0] * (n - 1)).save(tmp_path / "bare.json")
    Thresholds(values=[0.0] * (n - 1), budget=BudgetSpec(average_gflops=0.5 * exit1)).save(tmp_path / "below.json")
    argv = ["--checkpoint", str(ckpt), "--tasks", "drawer-open", "--episodes-per-task", "1", "--max-steps", "3",
            "--budgets", "", "--track-budget", "--no-progress", "--workers", "1", "--threads", "1"]
    assert evaluate_main([*argv, "--thresholds", str(tmp_path / "budgeted.json"), "--out", str(tmp_path / "a")]) == 0
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert list(res["summary"]) == ["full", "th-budgeted", "th-budgeted+track"]
    assert res["modes"]["th-budgeted+track"]["track_budget"] and not res["modes"]["th-budgeted"]["track_budget"]
    assert res["modes"]["th-budgeted+track"]["budget_gflops"] == pytest.approx(1.2 * exit1)  # the file's budget
    assert res["modes"]["th-budgeted+track"]["thresholds"] == res["modes"]["th-budgeted"]["thresholds"]
    # --tracked-only: the policy node's way alone (implies --track-budget); a config asking for it without the
    # tracker is refused
    only = [a for a in argv if a != "--track-budget"] + ["--tracked-only", "--skip-full"]
    assert evaluate_main([*only, "--thresholds", str(tmp_path / "budgeted.json"), "--out", str(tmp_path / "t")]) == 0
    tracked = json.loads((tmp_path / "t" / "results.json").read_text())
    assert list(tracked["summary"]) == ["th-budgeted+track"] and tracked["modes"]["th-budgeted+track"]["track_budget"]
    from deer_vla.evaluation.evaluator import EvalConfig

    with pytest.raises(ValueError, match="tracked_only needs track_budget"):
        EvalConfig(checkpoint=str(ckpt), tasks=["drawer-open"], tracked_only=True)
    capsys.readouterr()
    assert evaluate_main([*argv, "--thresholds", str(tmp_path / "bare.json"), "--out", str(tmp_path / "b")]) == 2
    assert "records no average budget" in capsys.readouterr().err
    # a budget below exit 1's cost on this checkpoint: one line naming the file, before any episode
    assert evaluate_main([*argv, "--thresholds", str(tmp_path / "below.json"), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "below.json" in err and "below exit 1's cost" in err and "Traceback" not in err
    assert not (tmp_path / "c" / "episodes.jsonl").exists()
    # learned-criterion thresholds on a checkpoint without exit gates: refused the same way
    from deer_vla.control.criterion import Criterion

    Thresholds(values=[0.0] * n, criterion=Criterion(kind="learned"),
               budget=BudgetSpec(average_gflops=1.2 * exit1)).save(tmp_path / "gated.json")
    assert evaluate_main([*argv, "--thresholds", str(tmp_path / "gated.json"), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "gated.json" in err and "needs exit gates" in err and "Traceback" not in err


def test_a_certified_thresholds_file_is_not_run_again_under_the_tracker(checkpoint: tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    """The tracker never scales certified thresholds (their guarantee would be void): a 'th-<stem>+track' mode of
    a `calibrate --risk` file would replay its episodes, and one without an average budget must not be refused."""
    from deer_vla.control.budgets import BudgetSpec
    from deer_vla.control.guarantee import Guarantee
    from deer_vla.evaluation.evaluator import file_modes
    from deer_vla.model.checkpoint import read_config

    ckpt, _ = checkpoint
    n = read_config(ckpt).num_exits
    g = Guarantee(eps=0.1, delta=0.1, metric="mean", n_calibration=10, bound=2.0)
    Thresholds(values=[0.0] * (n - 1), guarantee=g).save(tmp_path / "risk.json")
    Thresholds(values=[0.0] * (n - 1), guarantee=g, budget=BudgetSpec(average_gflops=1.0)).save(
        tmp_path / "riskb.json")
    Thresholds(values=[0.0] * (n - 1), budget=BudgetSpec(average_gflops=1.0)).save(tmp_path / "plain.json")
    paths = [str(tmp_path / f) for f in ("risk.json", "riskb.json", "plain.json")]
    skipped: dict[str, str] = {}
    modes = file_modes(paths, n, lambda metric: [2.0], ckpt, track=True, skipped=skipped)
    assert [m.name for m in modes] == ["th-risk", "th-riskb", "th-plain", "th-plain+track"]
    # the certified files' tracked modes are not run, and a run says so (it was silent)
    assert sorted(skipped) == ["th-risk+track", "th-riskb+track"] and "never scales" in skipped["th-risk+track"]
    # the fraction of the full model in the thresholds' own metric (a total_gflops budget was divided by the
    # LLM cost: 8 of 16 total reported as 0.8)
    Thresholds(values=[0.0] * (n - 1), budget=BudgetSpec(average_gflops=8.0, metric="total_gflops"),
               metric="total_gflops").save(tmp_path / "total.json")
    full = {"llm_gflops": [10.0], "total_gflops": [16.0]}
    total, = file_modes([str(tmp_path / "total.json")], n, full.__getitem__, ckpt)
    assert total.budget_fraction == 0.5 and total.budget_gflops == 8.0


def test_evaluate_skip_full_plays_only_the_other_modes(checkpoint: tuple[Path, Path], tmp_path: Path) -> None:
    """--skip-full: the full model (deterministic, already played by another run) is not played again; 'every'
    exit is then every exit but the full model's."""
    from deer_vla.model.checkpoint import read_config

    ckpt, _ = checkpoint
    n = read_config(ckpt).num_exits
    out = tmp_path / "eval"
    rc = evaluate_main([
        "--checkpoint", str(ckpt), "--tasks", "drawer-open", "--episodes-per-task", "1", "--max-steps", "3",
        "--budgets", "", "--exits", "every", "--skip-full", "--out", str(out), "--no-progress", "--workers", "1",
        "--threads", "1",
    ])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    others = [f"exit{k}" for k in range(1, n)]
    assert list(res["summary"]) == others and {e["mode"] for e in res["episodes"]} == set(others)
    assert res["paired"] == {}


@pytest.mark.parametrize("argv, message", [
    (["--tasks", "no-such-task"], "unknown task"),
    (["--tasks", "drawer-open", "--skip-full", "--budgets", ""], "nothing to evaluate"),
    (["--tasks", "drawer-open", "--thresholds", "/no/such/thresholds.json"], "thresholds file not found"),
    (["--tasks", "drawer-open", "--budgets", "1.5"], "budgets"),
    # without demonstrations to solve on, budgets asked for by value quietly became the checkpoint's thresholds
    (["--tasks", "drawer-open", "--budgets", "0.3,0.5"], "--budgets 0.3,0.5 needs demonstrations to solve"),
    (["--tasks", "drawer-open", "--budgets", "0.2"], "--budgets 0.2 needs demonstrations"),  # the default's value
    (["--tasks", "drawer-open", "--set", "budgets=[0.2]"], "--budgets 0.2 needs demonstrations"),
    (["--tasks", "drawer-open", "--exits", "1,x"], "--exits: expected exit numbers"),
    (["--tasks", "drawer-open", "--exits", "0"], "--exits: exit 0 outside this checkpoint's exits"),  # was a
    (["--tasks", "drawer-open", "--exits", "99"], "--exits: exit 99 outside"),  # traceback from the workers
    (["--tasks", "drawer-open", "--calibration-dataset", "/no/such/demos"], "/no/such/demos: no such directory"),
    (["--tasks", "drawer-open", "--device", "gpu9"], "device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu9'"),
    (["--tasks", "drawer-open", "--device", "cuda:99"], "device 'cuda:99': "),  # no machine here has 100 GPUs
    # a comma list in --set or a config file: an argparse error inside the validator was a traceback
    (["--tasks", "drawer-open", "--set", "budgets=0.2,abc"], "expected a comma list of numbers, got '0.2,abc'"),
])
def test_evaluate_refuses_bad_arguments_with_exit_code_2(checkpoint: tuple[Path, Path], tmp_path: Path, capsys,
                                                         argv: list[str], message: str) -> None:
    ckpt, _ = checkpoint
    assert evaluate_main(["--checkpoint", str(ckpt), "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "pydantic.dev" not in err and "Traceback" not in err


@pytest.mark.parametrize("damage", ["missing", "nan", "other_weights"])
def test_the_checkpoints_own_thresholds_are_checked_before_the_run(checkpoint: tuple[Path, Path], tmp_path: Path,
                                                                  capsys, monkeypatch, damage: str) -> None:
    """Without demonstrations the default budget plays the checkpoint's own thresholds.json: missing, NaN or
    solved on other weights, it was found in the run (a traceback, and --out left holding only its lock)."""
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoint[0], ckpt)
    own = ckpt / "thresholds.json"
    if damage == "missing":
        own.unlink(missing_ok=True)
    else:
        from deer_vla.model.checkpoint_dir import CheckpointDir

        n = CheckpointDir(ckpt).read_config().num_exits
        Thresholds(values=[0.0] * (n - 1)).save(own)
        data = json.loads(own.read_text())
        if damage == "nan":
            data["values"][0] = float("nan")
        else:  # as another checkpoint's copied here: it names the weights it was solved on
            data["weights_sha256"] = "0" * 64
        own.write_text(json.dumps(data))
    monkeypatch.chdir(tmp_path)  # no data/demos here: the checkpoint's own thresholds are the dynamic mode
    out = tmp_path / "eval"
    assert evaluate_main(["--checkpoint", str(ckpt), "--tasks", "drawer-open", "--exits", "1", "--skip-full",
                          "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("deer-vla evaluate: ") and err.count("\n") == 1, err
    assert str(own) in err
    assert not out.exists()


def test_the_default_budgets_from_a_config_file_are_the_default_not_a_request() -> None:
    """config/evaluate_default.yaml lists the defaults: through --config, budgets [0.2] keep the default's fallback
    to the checkpoint's own thresholds when there are no demonstrations; the same value given on the command line
    is a request, refused without them."""
    from deer_vla.evaluation.evaluator import _budgets_asked, _settings_and_flags

    repo = Path(__file__).resolve().parents[1]
    for argv, asked in ((["--checkpoint", "c"], False),
                        (["--config", str(repo / "config/evaluate_default.yaml"), "--set", "checkpoint=c"], False),
                        (["--checkpoint", "c", "--budgets", "0.2"], True),
                        (["--checkpoint", "c", "--budgets=0.2"], True),
                        (["--checkpoint", "c", "--budget", "0.2"], True),  # an abbreviation argparse takes
                        (["--checkpoint", "c", "--set", "budgets=[0.2]"], True),
                        (["--checkpoint", "c", "--budgets", "0.3"], True)):
        assert _budgets_asked(*_settings_and_flags(argv)) is asked, argv


def test_eval_threads_per_worker_are_set_or_share_the_cores() -> None:
    import os

    base = {"checkpoint": "x", "tasks": ["drawer-open"]}
    assert EvalConfig(**base, workers=1, threads=1).threads_per_worker() == 1
    assert EvalConfig(**base, workers=2).threads_per_worker() == max(1, (os.cpu_count() or 1) // 2)
    with pytest.raises(ValueError, match="threads"):
        EvalConfig(**base, threads=0)


@pytest.mark.parametrize("field, value", [("threshold_method", "magic"), ("criterion_smooth", 0),
                                          ("episodes_per_task", 0), ("budgets", [1.5]), ("instructions", "some")])
def test_eval_config_names_the_invalid_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        EvalConfig(checkpoint="ckpt", tasks=["drawer-open"], **{field: value})


def test_a_repeated_budget_is_one_mode_and_two_budgets_of_one_mode_name_are_refused() -> None:
    """Dynamic modes are named 'dyn<budget:g>' and results are pooled by mode name: --budgets 0.2,0.2 played
    the same seeds twice under one name, and 0.2,0.2000001 mixed two threshold sets into one mode."""
    base = {"checkpoint": "ckpt", "tasks": ["drawer-open"]}
    assert EvalConfig(**base, budgets=[0.2, 0.1, 0.2]).budgets == [0.2, 0.1]
    with pytest.raises(ValueError, match="budgets 0.2 and 0.2000001 would both be mode 'dyn0.2'"):
        EvalConfig(**base, budgets=[0.2, 0.2000001])


def test_summary_pools_tasks_and_counts_exits() -> None:
    rs = [
        EpisodeResult("m", "a", 0, "i", True, 10, 10.0, 20.0, [5, 5]),
        EpisodeResult("m", "b", 1, "i", False, 30, 90.0, 120.0, [0, 30]),
    ]
    s = summarize(rs, ["m"])["m"]
    assert s["overall"]["success_rate"] == 0.5 and s["overall"]["steps"] == 40
    assert s["overall"]["mean_llm_gflops"] == pytest.approx(100 / 40)
    assert s["overall"]["mean_exit"] == pytest.approx((5 + 2 * 35) / 40)
    assert set(s["tasks"]) == {"a", "b"}


def test_a_tracking_modes_episode_plays_the_same_whatever_ran_before_it(checkpoint: tuple[Path, Path]) -> None:
    """A worker kept one tracker per tracking mode over all the episodes it ran, so an episode's exits, cost
    and even success depended on which worker took it and what it had run before (1 vs 2 workers, two runs
    alike, another task list). The tracker now restarts per episode: the same episode, the same result."""
    import dataclasses
    import hashlib
    import json

    from deer_vla.evaluation.journal import _rounded, mode_digests, mode_fields

    ckpt, _ = checkpoint
    worker = EvalWorker.from_spec(PolicySpec(str(ckpt)))
    n = worker.runner.num_exits
    budget = 0.5 * worker.profile.costs()[-1]  # below what these thresholds spend unscaled
    mode = ModeSpec(name="dyn+track", kind="dynamic", thresholds=Thresholds(values=[0.1] * (n - 1)).to_dict(),
                    budget_gflops=budget, budget_fraction=0.5, track_budget=True)

    def fields(r: EpisodeResult) -> dict:
        return {k: v for k, v in dataclasses.asdict(r).items() if k != "model_ms"}

    try:
        alone = worker.run_job((mode, "drawer-open", [(100001, None)], 12))
        other = EvalWorker.from_spec(PolicySpec(str(ckpt)))
        try:
            other.run_job((mode, "drawer-open", [(100000, None), (100002, None)], 12))  # a history before it
            after = other.run_job((mode, "drawer-open", [(100001, None)], 12))
        finally:
            other.close()
    finally:
        worker.close()
    assert alone[0].exit_counts[-1] < alone[0].steps  # the tracker scaled the thresholds up: some stopped early
    assert [fields(r) for r in after] == [fields(r) for r in alone]
    # journals written while the tracker ran on over a worker's episodes (no tracker scope in the digest) do
    # not pool with these; a mode without the tracker keeps its digest
    untracked = dataclasses.replace(mode, track_budget=False)
    assert mode_fields(mode)["tracker_scope"] == "episode" and "tracker_scope" not in mode_fields(untracked)
    before = {k: v for k, v in mode_fields(mode).items() if k != "tracker_scope"}
    old_digest = hashlib.sha256(json.dumps(_rounded(before), sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert mode_digests([mode])["dyn+track"] != old_digest
    assert mode_digests([untracked])["dyn+track"] == hashlib.sha256(json.dumps(
        _rounded(mode_fields(untracked)), sort_keys=True, default=str).encode()).hexdigest()[:16]


def test_closed_loop_objective_scores_thresholds_by_success_and_cost(checkpoint: tuple[Path, Path]) -> None:
    """calibrate --bayes's objective: thresholds 0 never stop early (the full model's cost per step), huge
    ones stop at exit 2 (the first exit the criterion can stop at)."""
    ckpt, _ = checkpoint
    worker = EvalWorker.from_spec(PolicySpec(str(ckpt)))
    worker.adapter("drawer-open", max_steps=3)  # made here with a short episode limit; the objective reuses it
    objective = ClosedLoopObjective(worker, ["drawer-open"], episodes_per_task=2)
    n, llm = worker.runner.num_exits, worker.profile.llm_gflops
    try:
        success, full_cost = objective(Thresholds(values=[0.0] * (n - 1)))
        _, early_cost = objective(Thresholds(values=[1e6] * (n - 1)))
    finally:
        worker.close()
    assert 0.0 <= success <= 1.0
    assert full_cost == pytest.approx(llm[-1]) and early_cost == pytest.approx(llm[1])
    assert sorted(seed for seed, _ in objective.plans["drawer-open"]) == [TUNE_SEED_OFFSET, TUNE_SEED_OFFSET + 1]


@pytest.mark.slow  # two spawn processes each import torch and MuJoCo: ~20 s on 2 busy cores
def test_worker_processes_give_the_same_episodes_as_one_process(checkpoint: tuple[Path, Path],
                                                                 tmp_path: Path) -> None:
    """--workers 2 runs the jobs in spawn processes that each load the policy: same seeds, same episodes, written
    in plan order (task, mode, seed), not in the order the workers finished them."""
    ckpt, _ = checkpoint
    runs, summaries = {}, {}
    for workers in (1, 2):
        cfg = EvalConfig(checkpoint=str(ckpt), tasks=["drawer-open", "drawer-close"], episodes_per_task=2,
                         budgets=[], exits=[1], max_steps=3, workers=workers)
        payload = evaluate(cfg, tmp_path / f"w{workers}", show_progress=False, verbose=False)
        runs[workers] = [(e["task"], e["mode"], e["seed"], e["steps"], e["success"], e["llm_gflops"],
                          e["exit_counts"]) for e in payload["episodes"]]
        summaries[workers] = {m: {k: v for k, v in block["overall"].items() if not k.endswith("_ms")}  # timings aside
                              for m, block in payload["summary"].items()}
    plan = [(t, m) for t in ("drawer-open", "drawer-close") for m in ("full", "exit1") for _ in (0, 1)]
    assert [r[:2] for r in runs[1]] == plan and all(a[2] < b[2] for a, b in zip(runs[1][::2], runs[1][1::2]))
    assert runs[2] == runs[1] and summaries[2] == summaries[1]


def test_instruction_swap_runs_a_checkpoints_modes(checkpoint: tuple[Path, Path], tmp_path: Path) -> None:
    """The swap evaluation's policy path: the checkpoint's modes on shared starts, one simulator per task."""
    from deer_vla.evaluation.instruction_swap import run_swap

    ckpt, _ = checkpoint
    tasks = ["drawer-open-shared", "drawer-close-shared"]
    cfg = EvalConfig(checkpoint=str(ckpt), tasks=tasks, episodes_per_task=1, budgets=[], exits=[1], max_steps=3)
    payload = run_swap(tasks, 1, tmp_path, eval_cfg=cfg, max_steps=3, show_progress=False)
    assert sorted((e["mode"], e["task"]) for e in payload["episodes"]) == sorted(
        (m, t) for m in ("full", "exit1") for t in tasks)
    assert all(e["steps"] <= 3 for e in payload["episodes"])
    assert set(payload["summary"]) == {"full", "exit1"}


def test_trace_episode_prints_policy_beside_expert(checkpoint: tuple[Path, Path], capsys) -> None:
    """scripts/trace_episode.py: every step's policy and expert action, and how the episode ended."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "trace_episode.py"
    spec = importlib.util.spec_from_file_location("trace_episode", path)
    assert spec is not None and spec.loader is not None
    trace = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trace)
    ckpt, _ = checkpoint
    assert trace.main(["--checkpoint", str(ckpt), "--task", "drawer-open", "--max-steps", "3", "--every", "1",
                       "--exit", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    steps = [line for line in out if " policy " in line and " expert " in line]
    assert len(steps) == 3 and out[0].startswith("drawer-open seed 100000 exit 1")
    assert out[-1] == "not solved after 3 steps"


def test_evaluate_resumes_from_its_episode_journal(checkpoint: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    """A run killed mid-way (journal cut, last line torn) resumes: finished episodes kept, only the rest played."""
    ckpt, _ = checkpoint
    out = tmp_path / "eval"
    argv = ["--checkpoint", str(ckpt), "--tasks", "drawer-open", "--episodes-per-task", "2", "--max-steps", "2",
            "--budgets", "", "--exits", "1,all", "--out", str(out), "--no-progress", "--workers", "1",
            "--threads", "1"]
    assert evaluate_main(argv) == 0
    journal = out / "episodes.jsonl"
    header, *records = journal.read_text().splitlines()
    assert len(records) == 4 and json.loads(header)["journal"] == 1
    # the crash: two episodes survived whole, the third was cut mid-line; mark the survivors to tell them apart
    kept = [json.loads(r) for r in records[:2]]
    for r in kept:
        r["model_ms"] = 12345.0
    journal.write_text("\n".join([header, *map(json.dumps, kept), records[2][:15]]))
    # what the interrupted run has so far, without the model: its plan, the finished episodes, the torn line dropped
    from deer_vla.evaluation.journal_report import cli_main as report_main
    from deer_vla.evaluation.journal_report import journal_report

    done = {m: sum(r["mode"] == m for r in kept) for m in ("full", "exit1")}
    so_far = journal_report(out)
    assert so_far["progress"] == {m: [done[m], 2] for m in ("full", "exit1")}
    assert {m: st["overall"]["episodes"] for m, st in so_far["summary"].items()} == done
    shared = set.intersection(*({r["seed"] for r in kept if r["mode"] == m} for m in ("full", "exit1")))
    common = journal_report(out, common=True)["summary"]  # only seeds every mode finished
    assert {m: st["overall"]["episodes"] for m, st in common.items()} == {"full": len(shared), "exit1": len(shared)}
    capsys.readouterr()
    assert report_main([str(out), "--json", str(tmp_path / "so_far.json")]) == 0
    assert f"full: {done['full']} of 2 episodes" in capsys.readouterr().out
    assert json.loads((tmp_path / "so_far.json").read_text())["progress"]["exit1"] == [done["exit1"], 2]
    assert report_main([str(tmp_path / "nowhere")]) == 2 and "no evaluation journal" in capsys.readouterr().err
    assert evaluate_main([*argv, "--resume"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert len(res["episodes"]) == 4
    assert sum(e["model_ms"] == 12345.0 for e in res["episodes"]) == 2  # kept, not replayed
    assert {(e["mode"], e["seed"]) for e in res["episodes"]} == {(m, s) for m in ("full", "exit1")
                                                                 for s in (100000, 100001)}
    assert len(journal.read_text().splitlines()) == 5
    # another run's journal is never mixed in
    capsys.readouterr()
    other = [a if a != "1,all" else "2,all" for a in argv]
    assert evaluate_main([*other, "--resume"]) == 2
    assert "different run" in capsys.readouterr().err
    # the same command without --resume emptied the journal, hours of episodes, without a word: refused now
    before = journal.read_text()
    assert evaluate_main(argv) == 2 and evaluate_main([*argv, "--resume", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"{out} holds an earlier run (4 episodes in {journal})" in err and "--overwrite" in err
    assert journal.read_text() == before
    assert evaluate_main([*other, "--overwrite"]) == 0  # said in so many words: another run starts there
    assert {json.loads(r)["mode"] for r in journal.read_text().splitlines()[1:]} == {"full", "exit2"}


def test_without_calibration_data_the_checkpoints_own_thresholds_run(checkpoint: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    import shutil

    from deer_vla.control.budgets import BudgetSpec
    from deer_vla.evaluation.evaluator import build_modes
    from deer_vla.model.checkpoint_dir import CheckpointDir
    from deer_vla.model.runner import PolicyRunner

    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoint[0], ckpt)
    runner = PolicyRunner.from_checkpoint(ckpt)
    full = runner.cost_profile.costs("llm_gflops")[-1]
    n = runner.num_exits
    Thresholds(values=[0.0] * (n - 1), budget=BudgetSpec(average_gflops=0.5 * full)).save(
        CheckpointDir(ckpt).thresholds_path)
    modes, _ = build_modes(EvalConfig(checkpoint=str(ckpt), tasks=["drawer-open"], budgets=[0.3]), runner)
    dyn = next(m for m in modes if m.kind == "dynamic")
    assert dyn.name == "dyn_ckpt" and dyn.thresholds is not None and dyn.thresholds["values"] == [0.0] * (n - 1)
    assert dyn.budget_fraction == pytest.approx(0.5)


def test_the_implicit_calibration_set_is_flagged_only_when_it_lacks_evaluated_tasks(tmp_path: Path, caplog) -> None:
    """evaluate solves its dynamic modes on data/demos unless told otherwise: a warning names the evaluated
    tasks with no demonstrations there (the thresholds would come from other tasks), and none is given when
    every evaluated task is there (a checkpoint trained on a superset of it is fine)."""
    import logging

    from deer_vla.evaluation.evaluator import warn_if_calibration_misses

    demos = write_tiny_dataset(tmp_path / "demos", ("static", "wrist"), 32, 4,
                               {"axes": ["x", "y", "z"], "low": [-1.0] * 3, "high": [1.0] * 3},
                               tasks=("drawer-open", "drawer-close"), length=4)
    with caplog.at_level(logging.WARNING, logger="deer_vla.evaluate"):
        warn_if_calibration_misses(str(demos), ["drawer-open"])
        assert not caplog.records
        warn_if_calibration_misses(str(demos), ["drawer-open", "window-open", "button-press"])
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "button-press, window-open" in message and "drawer-open" not in message.split("no demonstrations")[1]
    caplog.clear()
    warn_if_calibration_misses(str(tmp_path / "absent"), ["drawer-open"])  # unreadable: the solver reports it
    assert not caplog.records


def test_a_journal_stamped_with_another_digest_of_the_config_resumes(checkpoint: tuple[Path, Path], tmp_path: Path,
                                                                     monkeypatch, capsys) -> None:
    """A journal stamped with the first config-digest scheme (2026-12-07, over the whole proprio spec; one of the
    digests the checkpoint's config answers to) was refused as "a different run" on --resume; one stamped with a
    digest the config does not answer to still is."""
    from deer_vla.model.checkpoint_dir import CheckpointDir

    ckpt, _ = checkpoint
    out = tmp_path / "eval"
    argv = ["--checkpoint", str(ckpt), "--tasks", "drawer-open", "--episodes-per-task", "1", "--max-steps", "2",
            "--budgets", "", "--exits", "1", "--out", str(out), "--no-progress", "--workers", "1", "--threads", "1"]
    assert evaluate_main(argv) == 0
    journal = out / "episodes.jsonl"
    header, *records = journal.read_text().splitlines()
    current = CheckpointDir(ckpt).config_digests()

    def stamp(digest: str) -> None:
        head = json.loads(header)
        head["fingerprint"]["config_sha256"] = digest
        marked = [{**json.loads(r), "model_ms": 12345.0} for r in records]  # to tell kept from replayed
        journal.write_text("\n".join([json.dumps(head), *map(json.dumps, marked)]) + "\n")

    monkeypatch.setattr(CheckpointDir, "config_digests", lambda self: (*current, "e" * 64))
    stamp("f" * 64)
    capsys.readouterr()
    assert evaluate_main([*argv, "--resume"]) == 2 and "config_sha256 differ" in capsys.readouterr().err
    stamp("e" * 64)
    assert evaluate_main([*argv, "--resume"]) == 0
    assert json.loads(journal.read_text().splitlines()[0])["fingerprint"]["config_sha256"] == current[0]
    episodes = json.loads((out / "results.json").read_text())["episodes"]
    assert len(episodes) == len(records) and all(e["model_ms"] == 12345.0 for e in episodes)  # none replayed


def test_a_worker_killed_mid_run_ends_evaluate_with_how_to_resume(checkpoint: tuple[Path, Path], tmp_path: Path,
                                                                   monkeypatch, capsys) -> None:
    """A worker process that dies (the OOM killer's -9) ends `deer-vla evaluate` with exit code 1 and one message
    saying where the finished episodes are and that --resume continues, not a traceback."""
    import deer_vla.evaluation.evaluator as evaluator
    from deer_vla.evaluation.workers import WorkerProcessError

    def killed(*args, **kwargs):
        raise WorkerProcessError("an episode worker process ended before its jobs were done (exit codes [-9, None]) "
                                 "(-9: killed, e.g. by the kernel's out-of-memory killer)")

    monkeypatch.setattr(evaluator, "evaluate", killed)
    ckpt, _ = checkpoint
    out = tmp_path / "run"
    assert evaluate_main(["--checkpoint", str(ckpt), "--tasks", "drawer-open", "--budgets", "", "--no-progress",
                          "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "out-of-memory killer" in err and str(out / "episodes.jsonl") in err and "--resume" in err
    assert "fewer --workers" in err and "Traceback" not in err


def test_evaluate_warns_when_data_demos_lacks_the_evaluated_tasks(checkpoint: tuple[Path, Path], tmp_path: Path,
                                                                   monkeypatch, caplog) -> None:
    """Without --calibration-dataset, evaluate solves its budgets on data/demos when present: said, naming the
    evaluated tasks it has no demonstrations of (e.g. `--checkpoint mt50 --suite mt50`); silent when it has them
    all, or when the calibration set is given."""
    import logging
    import shutil

    import deer_vla.evaluation.evaluator as evaluator

    ckpt, data = checkpoint
    shutil.copytree(data, tmp_path / "data" / "demos")  # drawer-open only
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(evaluator, "evaluate", lambda *a, **k: {})  # the warning comes before any episode
    argv = ["--checkpoint", str(ckpt), "--budgets", "0.5", "--no-progress", "--out", str(tmp_path / "out")]
    with caplog.at_level(logging.WARNING, logger="deer_vla.evaluate"):
        assert evaluate_main([*argv, "--tasks", "drawer-open,window-open"]) == 0
    assert [r.getMessage() for r in caplog.records if "data/demos" in r.getMessage()] == [
        "the dynamic modes' thresholds are solved on data/demos (the default --calibration-dataset), which has no "
        "demonstrations of window-open: pass --calibration-dataset with the evaluated tasks' own"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deer_vla.evaluate"):
        assert evaluate_main([*argv, "--tasks", "drawer-open"]) == 0
        assert evaluate_main([*argv, "--tasks", "window-open", "--calibration-dataset", str(data)]) == 0
    assert not [r for r in caplog.records if "default --calibration-dataset" in r.getMessage()]


class _CountingWorker(EvalWorker):
    """An EvalWorker whose simulators are stand-ins that record being closed."""

    def __init__(self, max_simulators: int) -> None:
        super().__init__(runner=None, profile=None, image_size=64, max_simulators=max_simulators)  # type: ignore[arg-type]
        self.closed: list[str] = []

    def _make_adapter(self, task: str, max_steps: int | None) -> object:
        worker = self

        class Stand:
            def close(self) -> None:
                worker.closed.append(task)

        return Stand()


def test_an_evaluation_worker_keeps_at_most_max_simulators() -> None:
    """MT50's 50 simulators in one worker took 9 GB: a worker keeps --max-simulators and closes the oldest."""
    worker = _CountingWorker(max_simulators=2)
    for task in ("a", "b", "a", "c"):
        worker.adapter(task, None)
    assert worker.closed == ["b"] and worker.simulators.keys == ["a", "c"]
    worker.close()
    assert sorted(worker.closed) == ["a", "b", "c"]


@pytest.mark.parametrize("task", ["drawer-open", "drawer-open-shared"])  # shared: its start is drawn too
def test_a_simulator_made_again_plays_the_same_episode(task: str) -> None:
    """Closing a simulator and making it again must not change results: an episode is fixed by its seed, not by
    what the simulator played before."""
    from deer_vla.sim.metaworld_env import MetaWorldAdapter

    actions = np.random.default_rng(0).uniform(-1, 1, size=(4, 4))

    def play(adapter: MetaWorldAdapter) -> list[np.ndarray]:
        obs = adapter.reset(seed=100003)
        seen = [obs.images["static"].copy(), np.asarray(obs.proprio).copy()]
        for a in actions:
            out = adapter.step(a)
            seen += [out.observation.images["wrist"].copy(), np.asarray(out.observation.proprio).copy()]
        return seen

    used = MetaWorldAdapter(task, cameras=("static", "wrist"), image_size=32)
    fresh = MetaWorldAdapter(task, cameras=("static", "wrist"), image_size=32)
    try:
        used.reset(seed=100000)
        for a in actions[::-1]:
            used.step(a)
        for x, y in zip(play(used), play(fresh), strict=True):
            np.testing.assert_array_equal(x, y)
    finally:
        used.close()
        fresh.close()


def _overall(successes: int, episodes: int, gflops: float) -> dict:
    from deer_vla.evaluation.stats import wilson_interval

    lo, hi = wilson_interval(successes, episodes)
    return {"overall": {"successes": successes, "episodes": episodes, "success_rate": successes / episodes,
                        "ci95_low": lo, "ci95_high": hi, "mean_llm_gflops": gflops}}


def test_the_matched_success_line_counts_exactly_and_says_when_the_match_is_noise(monkeypatch) -> None:
    """90/100 against 89/100 was 'no budget within 1 pt' (float rounding); 10/12 against 10/12 printed a
    compute ratio as if measured equal, with nothing of its +-20-point intervals or the paired test."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    from bench_tradeoff import matched_success_report

    modes = {"full": {"kind": "fixed"}, "dyn0.2": {"kind": "dynamic"}}
    lines = matched_success_report({"full": _overall(90, 100, 1.0), "dyn0.2": _overall(89, 100, 0.2)}, modes)
    assert any(line.startswith("matched success (within 1 pt of full, point estimates): dyn0.2") for line in lines)
    paired = {"dyn0.2": {"pairs": 12, "only_reference": 2, "only_mode": 2, "p_mcnemar": 1.0}}
    small = matched_success_report({"full": _overall(10, 12, 1.0), "dyn0.2": _overall(10, 12, 0.15)}, modes,
                                   paired=paired)
    text = "\n".join(small)
    assert "10/12 [55.2, 95.3]; paired with full on 12 episodes: only full 2, only dyn0.2 2, McNemar p = 1" in text
    assert "the match is within noise" in text


def test_the_tradeoff_plot_draws_held_out_instruction_modes_as_their_own_series(tmp_path: Path, monkeypatch) -> None:
    """With --instructions both, 'exit1 [heldout]' and 'full [heldout]' joined the canonical static-exit line,
    which then zigzagged between the two runs under one legend entry."""
    import matplotlib.axes

    from deer_vla.evaluation.report import plot_tradeoff

    drawn: dict[str, list[float]] = {}
    real = matplotlib.axes.Axes.errorbar

    def spy(self, xs, ys, *args, **kwargs):
        drawn[kwargs["label"]] = list(ys)
        return real(self, xs, ys, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", spy)
    summary = {"full": _overall(90, 100, 10.0), "exit1": _overall(50, 100, 2.0),
               "full [heldout]": _overall(40, 100, 10.0), "exit1 [heldout]": _overall(20, 100, 2.0)}
    modes = {m: {"kind": "fixed"} for m in summary}
    plot_tradeoff(tmp_path / "t.png", summary, modes, "t")
    assert drawn == {"static exit": [50.0, 90.0], "static exit (held-out instructions)": [20.0, 40.0]}
    assert (tmp_path / "t.png").is_file()


def test_thresholds_solved_for_a_budget_do_not_depend_on_the_thread_count(checkpoint: tuple[Path, Path],
                                                                          monkeypatch) -> None:
    """The calibration ran at the worker's thread count, and the shipped checkpoint's thresholds came out
    different in the 7th significant digit with 1 and 2 threads: a --resume with other --threads or --workers
    was refused ("modes_sha256 differ") after calibrating again, and two such runs would not pool. The calibration's
    forward passes run on one thread (the tiny model here is too small for the thread count to change its
    floats, so the test checks the count the passes see), and the caller's count is given back."""
    import torch

    from deer_vla.control import calibration
    from deer_vla.evaluation.evaluator import EvalConfig, build_modes
    from deer_vla.model.runner import PolicyRunner

    seen: list[int] = []
    real = calibration.collect_exit_actions

    def counting(runner, demos):
        seen.append(torch.get_num_threads())
        return real(runner, demos)

    monkeypatch.setattr(calibration, "collect_exit_actions", counting)  # build_modes imports it when it runs
    ckpt, data = checkpoint
    cfg = EvalConfig(checkpoint=str(ckpt), tasks=["drawer-open"], budgets=[0.5], exits=[1],
                     calibration_dataset=str(data))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        modes, _ = build_modes(cfg, PolicyRunner.from_checkpoint(ckpt))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == [1] and any(m.kind == "dynamic" for m in modes)


def test_an_evaluation_started_afresh_leaves_no_earlier_results_and_an_unusable_out_is_refused_first(
        checkpoint: tuple[Path, Path], tmp_path: Path, monkeypatch, capsys) -> None:
    """--overwrite reset only the journal: interrupted, the folder held the earlier run's results.json beside the
    new journal. A --out that is a file failed after the policy loaded, with "File exists"."""
    from deer_vla.evaluation import evaluator

    ckpt, _ = checkpoint
    out = tmp_path / "eval"
    argv = ["--checkpoint", str(ckpt), "--tasks", "drawer-open", "--episodes-per-task", "1", "--max-steps", "2",
            "--budgets", "", "--exits", "1", "--out", str(out), "--no-progress", "--workers", "1", "--threads", "1"]
    assert evaluate_main(argv) == 0 and (out / "results.json").is_file()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluator, "run_jobs", interrupted)
    capsys.readouterr()
    assert evaluate_main([*argv, "--overwrite"]) == 130
    assert "the same command with --resume plays only the rest" in capsys.readouterr().err
    assert not (out / "results.json").exists() and not (out / "results.csv").exists()
    (tmp_path / "a_file").write_text("")
    assert evaluate_main([str(tmp_path / "a_file") if a == str(out) else a for a in argv]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_a_second_evaluation_into_a_busy_out_is_refused(checkpoint: tuple[Path, Path], tmp_path: Path,
                                                        capsys) -> None:
    """Two `--resume` runs into one --out each played the journal's missing episodes: twice the work, and
    episodes recorded twice."""
    from deer_vla.core.run_lock import lock_folder

    ckpt, _ = checkpoint
    out = tmp_path / "eval"
    argv = ["--checkpoint", str(ckpt), "--tasks", "drawer-open", "--episodes-per-task", "1", "--max-steps", "2",
            "--budgets", "", "--exits", "1", "--out", str(out), "--no-progress", "--workers", "1", "--threads", "1"]
    held = lock_folder(out, "evaluation")
    try:
        assert evaluate_main(argv) == 2
        assert "is in use by another evaluation" in capsys.readouterr().err
    finally:
        held.close()
    assert evaluate_main(argv) == 0  # free once the other has ended
