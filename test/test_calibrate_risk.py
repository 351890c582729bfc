"""`deer-vla calibrate --risk`: certified thresholds written with their guarantee, infeasible limits refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixtures import build_tiny_checkpoint

from deer_vla.commands.calibrate import cli_main as calibrate_main
from deer_vla.commands.calibrate import split_base_episodes
from deer_vla.control.thresholds import Thresholds
from deer_vla.model.checkpoint_dir import CheckpointDir
from deer_vla.train.synthetic import write_tiny_dataset

torch.set_num_threads(1)
TASKS = ("drawer-open", "drawer-close", "window-open", "window-close", "faucet-open")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from deer_vla.model.checkpoint import read_config

    root = tmp_path_factory.mktemp("risk")
    ckpt = build_tiny_checkpoint(root / "ckpt", texts=["open the drawer", "close the window"], eta=None,
                                 profile=True, proprio_dim=4)
    cfg = read_config(ckpt)
    data = write_tiny_dataset(root / "demos", tuple(cfg.cameras), int(cfg.image_size), 4, cfg.model_dump()["action"],
                              tasks=TASKS, length=8)
    return ckpt, data


def test_split_base_episodes_keeps_both_sides_disjoint_and_non_empty() -> None:
    base, cert = split_base_episodes(list(range(10)), 0.3)
    assert len(base) == 3 and len(cert) == 7 and not set(base) & set(cert)
    assert [len(side) for side in split_base_episodes([0, 1], 0.9)] == [1, 1]
    with pytest.raises(ValueError, match=">= 2 calibration episodes"):
        split_base_episodes([0], 0.3)


def _args(checkpoint: tuple[Path, Path], out: Path) -> list[str]:
    ckpt, data = checkpoint
    return ["--checkpoint", str(ckpt), "--dataset", str(data), "--episodes", "5", "--out", str(out)]


def test_risk_calibration_writes_thresholds_carrying_their_guarantee(
        checkpoint: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert calibrate_main([*_args(checkpoint, tmp_path), "--risk", "0.5", "--delta", "0.1"]) == 0
    report = json.loads(capsys.readouterr().out)
    th = Thresholds.load(CheckpointDir(tmp_path).thresholds_path)
    g = th.guarantee
    assert th.method == "risk" and g is not None
    assert (g.eps, g.delta, g.metric, g.bound) == (0.5, 0.1, "mean", 2.0)
    assert g.n_calibration == report["calibration_steps"] == 4 * 8  # 1 of 5 episodes solves the base
    assert report["base_steps"] == 8
    assert th.weights_sha256 == CheckpointDir(checkpoint[0]).weights_digest()  # other checkpoints refuse them


def test_calibrated_thresholds_record_the_weights_they_were_solved_on(checkpoint: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    assert calibrate_main([*_args(checkpoint, tmp_path), "--average-budget-fraction", "0.6"]) == 0
    th = Thresholds.load(CheckpointDir(tmp_path).thresholds_path)
    assert th.method == "quantile" and th.weights_sha256 == CheckpointDir(checkpoint[0]).weights_digest()
    # solved again for another budget into the same folder: the earlier file is kept beside, not lost
    first = CheckpointDir(tmp_path).thresholds_path.read_text()
    assert calibrate_main([*_args(checkpoint, tmp_path), "--average-budget-fraction", "0.9"]) == 0
    kept = list(tmp_path.glob("thresholds.replaced-*.json"))
    assert len(kept) == 1 and kept[0].read_text() == first
    assert CheckpointDir(tmp_path).thresholds_path.read_text() != first


def test_the_exceedance_metric_is_certified_in_the_same_file_format(
        checkpoint: tuple[Path, Path], tmp_path: Path) -> None:
    args = [*_args(checkpoint, tmp_path), "--risk", "0.5", "--delta", "0.2", "--risk-metric", "exceed:0.01"]
    assert calibrate_main(args) == 0
    g = Thresholds.load(CheckpointDir(tmp_path).thresholds_path).guarantee
    assert g is not None and (g.metric, g.tau, g.delta) == ("exceed", 0.01, 0.2)


def test_an_eps_no_thresholds_can_be_certified_for_is_refused_naming_the_smallest(
        checkpoint: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """1e-6 on 32 calibration steps: refused, naming the smallest feasible eps; nothing written."""
    assert calibrate_main([*_args(checkpoint, tmp_path), "--risk", "1e-6", "--delta", "0.1"]) == 2
    assert "smallest feasible eps" in capsys.readouterr().err
    assert not CheckpointDir(tmp_path).thresholds_path.exists()


def test_an_exceedance_metric_without_its_tau_is_refused(
        checkpoint: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert calibrate_main([*_args(checkpoint, tmp_path), "--risk", "0.5", "--risk-metric", "exceed"]) == 2
    assert "exceed:TAU" in capsys.readouterr().err


def test_a_failed_calibration_leaves_no_empty_out_folder_behind(checkpoint: tuple[Path, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """--out is created to test that it can be written, before the dataset is read: a run that then failed (a
    dataset not found) left the empty folders; a folder that was there before stays."""
    ckpt, _ = checkpoint
    out = tmp_path / "new" / "thresholds"
    argv = ["--checkpoint", str(ckpt), "--dataset", str(tmp_path / "no_such_data"), "--average-budget-fraction",
            "0.5", "--out", str(out)]
    assert calibrate_main(argv) == 2
    assert "no_such_data" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    out.mkdir(parents=True)
    assert calibrate_main(argv) == 2
    assert out.is_dir()


def test_calibrate_refuses_an_output_it_cannot_write_before_calibrating(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The thresholds are written after minutes of calibration: an --out that cannot be written (a file in the
    way here; a read-only mount on a robot) is refused at the start, in one line, not by a traceback at the end.
    The checkpoint is never loaded, so none is needed."""
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "thresholds"
    argv = ["--checkpoint", str(tmp_path / "ckpt"), "--recording", "x.mcap", "--average-budget-fraction", "0.5"]
    assert calibrate_main([*argv, "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"deer-vla calibrate: cannot write to {out}: Not a directory"


def test_model_commands_set_their_thread_count_deliberately(checkpoint: tuple[Path, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """calibrate / profile / replay run the model for minutes: each sets torch's thread count (default 1; the
    default of every core oversubscribes a shared CPU), and a count below 1 is a usage error."""
    from deer_vla.model.profiling import cli_main as profile_main
    from deer_vla.ros.replay import cli_main as replay_main

    ckpt, _ = checkpoint
    try:
        torch.set_num_threads(2)
        assert calibrate_main([*_args(checkpoint, tmp_path), "--average-budget-fraction", "0.6"]) == 0
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        assert profile_main(["--checkpoint", str(ckpt), "--iters", "1", "--warmup", "0"]) == 0
        assert torch.get_num_threads() == 1
        assert profile_main(["--checkpoint", str(ckpt), "--iters", "1", "--warmup", "0", "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
        torch.set_num_threads(2)
        assert replay_main([str(tmp_path / "none.mcap"), "--checkpoint", str(ckpt)]) == 2  # no such recording
        assert torch.get_num_threads() == 1
        capsys.readouterr()
        for main, argv in ((profile_main, ["--checkpoint", str(ckpt)]), (replay_main, ["x.mcap"])):
            with pytest.raises(SystemExit) as exc:
                main([*argv, "--threads", "0"])
            assert exc.value.code == 2 and "expected an integer in 1..1024, got 0" in capsys.readouterr().err
        # counts profile_policy refuses (a traceback before), and a --json it cannot write (a traceback too)
        for option, value, message in (("--iters", "0", "in 1..100000, got 0"),
                                       ("--warmup", "-1", "in 0..100000, got -1"), ("--max-exit", "0", ">= 1, got 0")):
            with pytest.raises(SystemExit) as exc:
                profile_main(["--checkpoint", str(ckpt), option, value])
            assert exc.value.code == 2 and message in capsys.readouterr().err
        assert profile_main(["--checkpoint", str(ckpt), "--iters", "1", "--warmup", "0",
                             "--json", str(tmp_path / "no" / "p.json")]) == 1
        assert "--json" in capsys.readouterr().err and not (tmp_path / "no").exists()
        assert calibrate_main([*_args(checkpoint, tmp_path), "--average-budget-fraction", "0.6", "--threads", "0"]) == 2
        assert "threads" in capsys.readouterr().err
    finally:
        torch.set_num_threads(1)


def test_an_unknown_task_is_named_without_quotes_around_the_message(checkpoint: tuple[Path, Path], tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert calibrate_main([*_args(checkpoint, tmp_path), "--average-budget-fraction", "0.9", "--tasks", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deer-vla calibrate: task 'bogus' has no episodes in ") and not err.endswith('"')


def test_thresholds_the_disk_cannot_take_leave_the_old_ones_in_force(checkpoint: tuple[Path, Path], tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A full disk while saving: the earlier thresholds were moved aside first, so a failed write left the
    checkpoint with none, and the error was a bare "[Errno 28]" with no folder named."""
    import errno

    assert calibrate_main([*_args(checkpoint, tmp_path), "--average-budget-fraction", "0.6"]) == 0
    capsys.readouterr()
    path = CheckpointDir(tmp_path).thresholds_path
    first = path.read_text()

    def full(self: Thresholds, where: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Thresholds, "save", full)
    assert calibrate_main([*_args(checkpoint, tmp_path), "--average-budget-fraction", "0.9"]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "No space left on device" in err and "unchanged" in err, err
    assert path.read_text() == first


def test_certified_thresholds_hold_their_own_cost_or_the_budget_asked_for(
        checkpoint: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --average-gflops the base thresholds are solved at a fraction of the full model's cost, and the
    certified ones (scaled until the risk limit holds) spend more: they were saved carrying the base's average,
    so the node held, the monitor judged (ERROR) and a replay re-tested a budget the certified thresholds
    overspend by design. They carry their own expected cost; re-tested at configure, the new member's."""
    import dataclasses

    from deer_vla.control.budgets import BudgetSpec
    from deer_vla.control.risk import reapply

    assert calibrate_main([*_args(checkpoint, tmp_path / "own"), "--risk", "0.5", "--delta", "0.1"]) == 0
    report = json.loads(capsys.readouterr().out)
    th = Thresholds.load(CheckpointDir(tmp_path / "own").thresholds_path)
    assert th.budget is not None and th.budget.average_gflops == th.expected_cost
    assert report["budget"]["average_gflops"] == th.expected_cost
    # a file saved before (the base's average in it) re-tested as the node does at configure
    older = dataclasses.replace(th, budget=BudgetSpec(average_gflops=th.expected_cost * 0.6, metric=th.metric))
    again = reapply(older, th.guarantee.eps, th.guarantee.delta)
    assert again.budget.average_gflops == again.expected_cost == th.expected_cost
    asked = th.expected_cost * 1.5
    kept = reapply(older, th.guarantee.eps, th.guarantee.delta, asked)
    assert kept.budget.average_gflops == asked and kept.expected_cost <= asked
    assert calibrate_main([*_args(checkpoint, tmp_path / "asked"), "--risk", "0.5", "--delta", "0.1",
                           "--average-gflops", f"{asked}"]) == 0
    capsys.readouterr()
    assert Thresholds.load(CheckpointDir(tmp_path / "asked").thresholds_path).budget.average_gflops == asked
