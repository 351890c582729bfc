"""Shipped checkpoints are chosen by name ("default", "mt50") wherever a checkpoint is chosen."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from deer_vla.model import shipped
from deer_vla.model.shipped import (
    UnknownCheckpointError,
    checkpoint_argument,
    resolve_checkpoint,
    shipped_checkpoints,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def assets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package assets folder with a default and an "mt50" checkpoint, plus two folders that are not ones."""
    root = tmp_path / "assets"
    for name in ("default_checkpoint", "mt50_checkpoint", "other_data"):
        (root / name).mkdir(parents=True)
        (root / name / "config.json").write_text("{}")
    (root / "half_checkpoint").mkdir()  # no config.json: not a checkpoint
    monkeypatch.setattr(shipped, "ASSETS_DIR", root)
    monkeypatch.chdir(tmp_path)  # relative names are looked up here first
    return root


def test_the_real_assets_ship_the_default_checkpoint() -> None:
    default = REPO / "deer_vla" / "assets" / "default_checkpoint"
    assert resolve_checkpoint("") == default and resolve_checkpoint("default") == default
    assert shipped_checkpoints()["default"] == default


def test_names_resolve_to_their_folders(assets: Path) -> None:
    assert shipped_checkpoints() == {"default": assets / "default_checkpoint", "mt50": assets / "mt50_checkpoint"}
    assert resolve_checkpoint("") == assets / "default_checkpoint"
    assert resolve_checkpoint("default") == assets / "default_checkpoint"
    assert resolve_checkpoint("mt50") == assets / "mt50_checkpoint"


def test_a_path_is_a_path_and_an_existing_checkpoint_wins_over_a_name(assets: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "runs" / "ck"
    own.mkdir(parents=True)
    assert resolve_checkpoint(own) == own and resolve_checkpoint(str(own)) == own
    (tmp_path / "mt50").mkdir()  # a folder ./mt50 that is not a checkpoint (a dataset, logs) does not shadow it
    assert resolve_checkpoint("mt50") == assets / "mt50_checkpoint"
    assert resolve_checkpoint("./mt50") == Path("mt50")  # written as a path, it is that path
    (tmp_path / "mt50" / "config.json").write_text("{}")  # a checkpoint ./mt50 shadows the shipped "mt50"
    assert resolve_checkpoint("mt50") == Path("mt50")
    # a missing path is handed on as it is: the loader says "not found" for it
    assert resolve_checkpoint("runs/missing") == Path("runs/missing")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_checkpoint("~/runs/ck") == own


def test_an_unknown_name_lists_the_shipped_ones(assets: Path) -> None:
    with pytest.raises(UnknownCheckpointError, match=r"'mt5'.*shipped: default, mt50") as exc:
        resolve_checkpoint("mt5")
    assert isinstance(exc.value, ValueError)
    for not_a_checkpoint in ("half", "other_data"):
        with pytest.raises(UnknownCheckpointError):
            resolve_checkpoint(not_a_checkpoint)


def test_a_checkpoint_option_takes_names_and_reports_unknown_ones(assets: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", type=checkpoint_argument, default="")
    assert p.parse_args([]).checkpoint == assets / "default_checkpoint"
    assert p.parse_args(["--checkpoint", "mt50"]).checkpoint == assets / "mt50_checkpoint"
    with pytest.raises(SystemExit):
        p.parse_args(["--checkpoint", "mt5"])
    assert "shipped: default, mt50" in capsys.readouterr().err


def test_policy_node_parameter_takes_a_name_and_refuses_an_unknown_one(assets: Path) -> None:
    from deer_vla.ros.params import POLICY_DEFAULTS, ParameterError, parse_params

    params = parse_params({**POLICY_DEFAULTS, "checkpoint_dir": "mt50"})
    assert params.checkpoint == assets / "mt50_checkpoint"
    assert params.thresholds_path == assets / "mt50_checkpoint" / "thresholds.json"
    assert parse_params(POLICY_DEFAULTS).checkpoint == assets / "default_checkpoint"
    with pytest.raises(ParameterError, match=r"'checkpoint_dir' = 'mt5'.*shipped: default, mt50"):
        parse_params({**POLICY_DEFAULTS, "checkpoint_dir": "mt5"})


def test_evaluate_and_calibrate_resolve_the_name_before_loading(assets: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from deer_vla.commands.calibrate import cli_main as calibrate_main
    from deer_vla.evaluation.evaluator import cli_main as evaluate_main

    assert evaluate_main(["--checkpoint", "mt5", "--budgets", ""]) == 2
    assert "shipped: default, mt50" in capsys.readouterr().err
    assert calibrate_main(["--checkpoint", "mt5", "--dataset", "d", "--average-budget-fraction", "0.5"]) == 2
    assert "shipped: default, mt50" in capsys.readouterr().err
    # "mt50" reaches the shipped folder: its (deliberately broken) config is what fails, named by its path
    (assets / "mt50_checkpoint" / "config.json").write_text(json.dumps({"format_version": 99}))
    assert evaluate_main(["--checkpoint", "mt50", "--budgets", ""]) == 2
    assert str(assets / "mt50_checkpoint") in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(shipped_checkpoints()))
def test_every_shipped_checkpoint_records_the_wordings_it_was_trained_on(name: str) -> None:
    """The instruction check, the typo reading and the refusals need a checkpoint's trained wordings: every
    shipped one has them. mt50's were written after its training (2026-12-06) from the suite at the commit that
    trained it: every MT50 task's training wordings, of the ten tasks only the first eight (their other seven
    were held-out wording until 2026-12-02); a record that claimed the later seven would hide from the check
    wording the weights never saw."""
    from deer_vla.model.checkpoint_dir import CheckpointDir
    from deer_vla.model.instruction_match import trained_wordings
    from deer_vla.sim.tasks import resolve_tasks

    record = CheckpointDir(resolve_checkpoint(name)).read_training().get("instructions")
    wordings = trained_wordings(record)
    assert wordings == record and wordings  # every text usable, none dropped as unreadable
    if name != "mt50":
        return
    ten = {t.name for t in resolve_tasks("all")}
    expected = {t.name: sorted(t.train_instructions[:8] if t.name in ten else t.train_instructions)
                for t in resolve_tasks("mt50")}
    assert record == expected
    heldout = {text for t in resolve_tasks("mt50") for text in t.heldout_instructions}
    assert not heldout & {text for texts in record.values() for text in texts}


@pytest.mark.parametrize("name", sorted(shipped_checkpoints()))
def test_every_shipped_checkpoint_is_complete_and_steps(name: str) -> None:
    """What the node loads for `checkpoint_dir: <name>`: weights, tokenizer, thresholds for its exits (and the
    exit gates where shipped) load, and a step on a blank observation gives a finite action in the action
    space from an exit the checkpoint has."""
    import numpy as np
    import torch

    from deer_vla.control.thresholds import Thresholds
    from deer_vla.core.observation import Observation
    from deer_vla.model.checkpoint_dir import CheckpointDir
    from deer_vla.ros.policy_backend import load_stack

    torch.set_num_threads(1)
    root = resolve_checkpoint(name)
    ckpt = CheckpointDir(root)
    cfg = ckpt.check()
    # its thresholds say which weights they were solved on: another checkpoint's are then refused
    thresholds = Thresholds.load(ckpt.thresholds_path)
    assert thresholds.weights_sha256 == ckpt.weights_digest()
    # and, where recorded, the gates they were solved with: these gates (retrained ones would refuse them);
    # the shipped ones record the file's bytes (calibrated before the gates' content digest)
    assert thresholds.gates_sha256 in (None, ckpt.gates_digest(), ckpt.gates_file_digest())
    assert name != "default" or thresholds.gates_sha256 is not None
    stack = load_stack(root, ckpt.thresholds_path, "cpu", {}, 0, track_average=True)
    assert stack.full_profile.num_exits == cfg.num_exits
    # shipped exit gates (the learned criterion) fit this model: read_gates checks them against it
    assert stack.runner.has_exit_gates == ckpt.gates_path.is_file()
    size = cfg.image_size
    obs = Observation(images={c: np.zeros((size, size, 3), np.uint8) for c in stack.cameras},
                      instruction="open the drawer",
                      proprio=np.zeros(stack.proprio_dim, np.float32) if stack.proprio_dim else None)
    action, record = stack.controller.step(obs)
    assert np.all(np.isfinite(action)) and 1 <= record.exit_used <= cfg.num_exits
    # a step is charged what its exit costs, plus the exit gates it ran when the thresholds are the learned
    # criterion's (then the controller's profile charges them)
    charged = stack.controller.profile
    assert (charged.gate_gflops > 0) == thresholds.criterion.learned
    assert record.llm_gflops == pytest.approx(charged.cost(record.exit_used))
    assert record.llm_gflops >= stack.profile.cost(record.exit_used)


def test_calibrate_and_train_gate_do_not_write_into_a_shipped_checkpoint(assets: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Calibrating or training gates for a shipped checkpoint would overwrite the package's own thresholds.json,
    profile.json or gates.safetensors (a git-tracked file in the source tree; in an install, the files every
    user of it gets, until the next install restores them): refused at the start, by name or by path, unless
    --out names where to write."""
    from deer_vla.commands.calibrate import cli_main as calibrate_main
    from deer_vla.train.gate import cli_main as train_gate_main

    folder = assets / "mt50_checkpoint"
    before = sorted(p.name for p in folder.iterdir())
    for checkpoint in ("mt50", str(folder)):
        assert calibrate_main(["--checkpoint", checkpoint, "--dataset", "d", "--average-budget-fraction", "0.5"]) == 2
        err = capsys.readouterr().err
        assert "shipped checkpoint 'mt50'" in err and "--out DIR" in err and err.count("\n") == 1
        assert train_gate_main([checkpoint, "--data", "d"]) == 2
        err = capsys.readouterr().err
        assert "shipped checkpoint 'mt50'" in err and "--out FILE" in err and err.count("\n") == 1
    assert sorted(p.name for p in folder.iterdir()) == before
    # --out naming the shipped folder is the deliberate way (how the shipped thresholds are made): it gets past
    # the refusal to the load, which fails here on the stand-in's empty config
    assert calibrate_main(["--checkpoint", "mt50", "--dataset", "d", "--average-budget-fraction", "0.5",
                           "--out", str(folder)]) != 0
    assert "shipped checkpoint" not in capsys.readouterr().err


def test_one_shipped_checkpoints_thresholds_are_refused_for_the_other(capsys: pytest.CaptureFixture[str]) -> None:
    """default and mt50 share the architecture (12 exits, one cost profile), so their thresholds files fit each
    other structurally; solved on other weights they would run the wrong exits. Refused where a thresholds file
    is chosen: the policy node's 'thresholds_file' (also bringup's and launch's thresholds:=, replay's
    --thresholds) and evaluate's --thresholds, before any model is loaded."""
    from deer_vla.evaluation.evaluator import cli_main as evaluate_main
    from deer_vla.ros.policy_backend import ConfigurationError, load_stack

    names = sorted(shipped_checkpoints())
    assert {"default", "mt50"} <= set(names)
    for name, other in zip(names, names[1:] + names[:1]):
        wrong = resolve_checkpoint(other) / "thresholds.json"
        with pytest.raises(ConfigurationError, match=f"{wrong} was solved on other weights.*than "
                                                     f"{resolve_checkpoint(name)}'s"):
            load_stack(resolve_checkpoint(name), wrong, "cpu", {}, 0)
        assert evaluate_main(["--checkpoint", name, "--budgets", "", "--thresholds", str(wrong)]) == 2
        err = capsys.readouterr().err
        assert "solved on other weights" in err and err.count("\n") == 1

