"""An empty output path is refused by every command: ``Path("")`` is the current directory, so `--out ''` wrote a
dataset, a model or results where the command ran, and calibrate took it as "not given" after its guard took it
as given, overwriting the shipped checkpoint's thresholds."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from deer_vla.cli import main as cli

EMPTY = "an empty path, which would mean the current directory"


def _run(argv: list[str]) -> int:
    try:
        return cli(argv)
    except SystemExit as exc:  # argparse's own usage errors
        return int(exc.code or 0)


@pytest.mark.parametrize("argv", [
    ["calibrate", "--checkpoint", "default", "--dataset", "d", "--average-budget-fraction", "0.3", "--out", ""],
    ["collect", "--tasks", "reach", "--episodes-per-task", "1", "--out", ""],
    ["train", "--set", "output_dir="],
    ["train", "--set", "dataset= "],
    ["evaluate", "--checkpoint", "default", "--tasks", "reach", "--out", ""],
    ["import-lerobot", "somewhere", "--out", ""],
    ["import-mcap", "some.mcap", "--out", ""],
    ["profile", "--checkpoint", "default", "--json", ""],
    ["replay", "some.mcap", "--json", ""],
    ["train-gate", "default", "--out", ""],
    ["instruction-swap", "--expert", "own", "--out", ""],
    ["eval-report", "somewhere", "--json", ""],
    ["demo", "--output-dir", ""],
    # inputs too: `replay ""` replayed whatever MCAP the current folder held, `--thresholds ""` "not found: ."
    ["replay", ""],
    ["replay", "some.mcap", "--thresholds", ""],
    ["import-lerobot", ""],
    ["import-mcap", ""],
    ["eval-report", ""],
    ["train-gate", "default", "--task-weights", ""],
])
def test_an_empty_output_path_is_refused_and_nothing_is_written(argv: list[str], tmp_path: Path, monkeypatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert _run(argv) == 2
    err = capsys.readouterr().err
    assert EMPTY in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_calibrate_with_an_empty_out_leaves_the_shipped_thresholds_alone(tmp_path: Path, monkeypatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from deer_vla.model.shipped import resolve_checkpoint

    shipped = resolve_checkpoint("default")
    before = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in shipped.iterdir()}
    monkeypatch.chdir(tmp_path)
    assert _run(["calibrate", "--checkpoint", "default", "--recording", "x.mcap", "--average-budget-fraction",
                 "0.3", "--out", ""]) == 2
    assert EMPTY in capsys.readouterr().err
    assert {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in shipped.iterdir()} == before


def test_profile_says_the_tokenizer_file_is_missing_in_one_line(tiny_checkpoint: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint with tokenizer_config.json but no tokenizer.json: a traceback from profile, and in every
    command transformers' message blamed missing libraries ("sentencepiece or tiktoken")."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    (ckpt / "tokenizer.json").unlink()
    assert (ckpt / "tokenizer_config.json").is_file()
    assert _run(["profile", "--checkpoint", str(ckpt), "--iters", "1", "--warmup", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"deer-vla profile: tokenizer {ckpt} (it has no tokenizer.json) cannot be loaded")
    assert "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize("argv", [
    ["replay", "some.mcap", "--threads", str(10**30)],  # torch's C int: a traceback
    ["profile", "--checkpoint", "default", "--threads", "1099511627776"],
    ["profile", "--checkpoint", "default", "--iters", str(10**30)],  # ran for ever, printing nothing
    ["profile", "--checkpoint", "default", "--warmup", str(10**30)],
    ["train-gate", "default", "--threads", "0"],
    ["train-gate", "default", "--max-steps", "0"],  # said "the episodes were empty" after loading everything
    ["collect", "--tasks", "reach", "--episodes-per-task", "1", "--workers", str(10**30)],
    ["evaluate", "--checkpoint", "default", "--tasks", "reach", "--threads", str(10**30)],
    ["calibrate", "--checkpoint", "default", "--dataset", "d", "--average-budget-fraction", "0.3", "--threads",
     "5000"],
])
def test_counts_past_what_a_machine_can_start_are_refused_before_anything_runs(argv: list[str], tmp_path: Path,
                                                                               monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert _run(argv) == 2
    err = capsys.readouterr().err
    assert any(flag in err for flag in ("--threads", "--iters", "--warmup", "--workers", "threads", "--max-steps")) \
        and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []
