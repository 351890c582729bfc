"""The model is its weights and its config: a config.json edited so that every tensor keeps its shape (attention
heads, norm eps, the head's history, the action scale) makes the same weights compute another policy. Recorded
only by the weights' digest, such a copy took the original's thresholds, resumed its evaluation journal (one
table pooling two models) and passed its recordings off as reproductions (an audit)."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from deer_vla.control.thresholds import Thresholds
from deer_vla.evaluation.journal import EpisodeJournal, JournalError, run_fingerprint
from deer_vla.model.checkpoint_dir import CheckpointDir


def _edited(source: Path, folder: Path, edit) -> CheckpointDir:
    shutil.copytree(source, folder)
    ckpt = CheckpointDir(folder)
    config = json.loads(ckpt.config_path.read_text())
    edit(config)
    ckpt.config_path.write_text(json.dumps(config))
    return ckpt


def test_the_config_digest_is_what_the_config_says_not_how_it_is_written(tiny_checkpoint: Path,
                                                                         tmp_path: Path) -> None:
    digest = CheckpointDir(tiny_checkpoint).config_digest()

    def informational(config: dict) -> None:  # the folder a backbone was first read from: not the model
        config["lm"]["path"] = "/somewhere/else"

    assert _edited(tiny_checkpoint, tmp_path / "reformatted", lambda c: None).config_digest() == digest
    assert _edited(tiny_checkpoint, tmp_path / "path", informational).config_digest() == digest

    def theta(value: float | int):
        def edit(config: dict) -> None:  # 10000 and 10000.0 are one value (jq rewrites the one as the other)
            config["lm"]["hf_config"]["rope_theta"] = value
        return edit

    as_int = _edited(tiny_checkpoint, tmp_path / "int", theta(10000))
    as_float = _edited(tiny_checkpoint, tmp_path / "float", theta(10000.0))
    assert "10000.0" not in as_int.config_path.read_text() and "10000.0" in as_float.config_path.read_text()
    assert as_int.config_digest() == as_float.config_digest() != digest

    def history(config: dict) -> None:
        config["head"]["history"] += 1

    def scale(config: dict) -> None:
        config["action"]["scale"] = [s * 2 for s in config["action"]["scale"]]

    for name, edit in (("history", history), ("scale", scale)):
        assert _edited(tiny_checkpoint, tmp_path / name, edit).config_digest() != digest, name


def test_thresholds_solved_under_one_config_are_refused_under_another(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from deer_vla.evaluation.evaluator import load_thresholds_for
    from deer_vla.ros.policy_backend import ConfigurationError, load_stack

    original = CheckpointDir(tiny_checkpoint)
    stamped = tmp_path / "thresholds.json"
    base = Thresholds.load(original.thresholds_path)
    replace(base, weights_sha256=original.weights_digest(), config_sha256=original.config_digest()).save(stamped)
    assert json.loads(stamped.read_text())["config_sha256"] == original.config_digest()
    load_stack(tiny_checkpoint, stamped, "cpu", {}, 0)  # the model it was solved on

    def history(config: dict) -> None:
        config["head"]["history"] += 1

    edited = _edited(tiny_checkpoint, tmp_path / "edited", history)
    with pytest.raises(ConfigurationError, match=f"{stamped} was solved on these weights with another config"):
        load_stack(edited.root, stamped, "cpu", {}, 0)
    with pytest.raises(ValueError, match="another config"):
        load_thresholds_for(stamped, base.num_exits, edited.root)
    # a file from before configs were recorded is judged on its weights alone, as it was
    replace(base, weights_sha256=original.weights_digest()).save(stamped)
    load_stack(edited.root, stamped, "cpu", {}, 0)
    with pytest.raises(ValueError, match="config_sha256 must be 64 hex digits"):
        replace(base, config_sha256="abc")


def test_a_journal_resumes_only_under_the_config_it_was_started_with(tmp_path: Path) -> None:
    def fingerprint(config: str | None) -> dict:
        return run_fingerprint("w" * 64, [], 100000, None, 64, config)

    EpisodeJournal(tmp_path, fingerprint("a" * 64)).start(resume=False)
    assert EpisodeJournal(tmp_path, fingerprint("a" * 64)).start(resume=True) == {}
    with pytest.raises(JournalError, match=r"different run \(config_sha256 differ\)"):
        EpisodeJournal(tmp_path, fingerprint("b" * 64)).start(resume=True)
    # a journal written before configs were recorded resumes under any (judged on what it recorded)
    EpisodeJournal(tmp_path, fingerprint(None)).start(resume=False)
    assert EpisodeJournal(tmp_path, fingerprint("b" * 64)).start(resume=True) == {}
    # one stamped with another digest the config answers to (the first scheme's, over the whole proprio spec)
    # resumes, and is stamped with the current one from then on
    EpisodeJournal(tmp_path, fingerprint("c" * 64)).start(resume=False)
    with pytest.raises(JournalError, match=r"config_sha256 differ"):
        EpisodeJournal(tmp_path, fingerprint("b" * 64), config_digests=("b" * 64, "d" * 64)).start(resume=True)
    assert EpisodeJournal(tmp_path, fingerprint("b" * 64), config_digests=("b" * 64, "c" * 64)).start(resume=True) == {}
    assert EpisodeJournal(tmp_path, fingerprint("b" * 64)).start(resume=True) == {}


def test_the_shipped_thresholds_record_their_checkpoints_config() -> None:
    from deer_vla.model.shipped import resolve_checkpoint, shipped_checkpoints

    for name in shipped_checkpoints():
        ckpt = CheckpointDir(resolve_checkpoint(name))
        assert Thresholds.load(ckpt.thresholds_path).config_sha256 == ckpt.config_digest(), name


def test_eval_report_keeps_two_configs_of_one_weights_apart(tmp_path: Path) -> None:
    from deer_vla.evaluation.journal import JOURNAL_NAME
    from deer_vla.evaluation.journal_report import journal_report

    def run(folder: str, config: str | None) -> Path:
        out = tmp_path / folder
        out.mkdir()
        fingerprint = {"weights_sha256": "w", "max_steps": None, "image_size": 64, "seed_offset": 0}
        if config is not None:
            fingerprint["config_sha256"] = config
        episode = {"mode": "full", "task": "reach-v3", "seed": 0, "instruction": "reach", "success": True,
                   "steps": 10, "llm_gflops": 5.0, "total_gflops": 6.0, "exit_counts": [0, 10], "model_ms": 3.0}
        (out / JOURNAL_NAME).write_text(json.dumps({"journal": 1, "fingerprint": fingerprint}) + "\n"
                                        + json.dumps(episode) + "\n")
        return out

    a, b, old = run("a", "a" * 64), run("b", "b" * 64), run("old", None)
    with pytest.raises(JournalError, match="their config_sha256 differ"):
        journal_report([a, b])
    assert journal_report([a, old])["progress"]["full"][0] == 1  # a journal from before: its weights decide
    with pytest.raises(JournalError, match="their config_sha256 differ"):
        journal_report([old, a, b])


def test_a_controller_built_directly_refuses_thresholds_of_another_config(tiny_checkpoint: Path,
                                                                          tmp_path: Path) -> None:
    from deer_vla.control.controller import ExitController
    from deer_vla.model.runner import PolicyRunner

    original = CheckpointDir(tiny_checkpoint)
    stamped = replace(Thresholds.load(original.thresholds_path), config_sha256=original.config_digest())

    def history(config: dict) -> None:
        config["head"]["history"] += 1

    runner = PolicyRunner.from_checkpoint(_edited(tiny_checkpoint, tmp_path / "edited", history).root)
    with pytest.raises(ValueError, match="another config"):
        ExitController(runner, runner.cost_profile, stamped)


def test_calibrations_into_one_folder_save_in_turn_and_keep_each_others_thresholds(tiny_checkpoint: Path,
                                                                                   tmp_path: Path) -> None:
    """Two `calibrate --out` runs into one folder at once: both checked for an earlier file before either wrote,
    and one run's thresholds were lost without the copy calibrate promises (2 of 8 runs in an audit). The save
    waits for the folder's lock."""
    import threading
    import time

    from deer_vla.commands.calibrate import save_thresholds
    from deer_vla.core.run_lock import lock_folder

    source = CheckpointDir(tiny_checkpoint)
    out = CheckpointDir(tmp_path / "out")
    thresholds = Thresholds.load(source.thresholds_path)
    from deer_vla.model.runner import PolicyRunner

    profile = PolicyRunner.from_checkpoint(tiny_checkpoint).cost_profile
    save_thresholds(out, profile, thresholds, source)
    held = lock_folder(out.root, "calibration")  # another calibration, saving
    saver = threading.Thread(target=save_thresholds, args=(out, profile, replace(thresholds), source))
    saver.start()
    time.sleep(0.3)
    assert saver.is_alive() and not list(out.root.glob("thresholds.replaced-*.json"))  # waiting its turn
    held.close()
    saver.join(timeout=10)
    assert not saver.is_alive() and len(list(out.root.glob("thresholds.replaced-*.json"))) == 1


def test_the_proprio_edits_own_robot_md_asks_for_keep_the_digest_and_calibration(tmp_path: Path) -> None:
    """docs/own_robot.md has `deg` written into a trained checkpoint's proprio.units (and limits or joint names
    added by hand): the node then refused the thresholds as solved "with another config", and calibrate, as
    the refusal advised, refused the checkpoint's own dataset (units [deg] != [""]). Names, units and limits
    are the node's reading of the robot; the model computes with the length and the standardisation."""
    from fixtures import build_tiny_checkpoint

    from deer_vla.core.proprio_spec import ProprioSpec
    from deer_vla.data.episodes import DatasetMeta
    from deer_vla.model.config import PolicyConfig
    from deer_vla.train.spaces import SpaceMismatchError, spaces_from_dataset

    spec = ProprioSpec(names=("shoulder", "elbow"), mean=(1.0, 2.0), std=(3.0, 4.0))
    source = build_tiny_checkpoint(tmp_path / "ckpt", proprio_dim=2, proprio=spec.to_dict())
    digest = CheckpointDir(source).config_digest()

    def hand_edits(config: dict) -> None:
        config["proprio"].update(units=["deg", ""], low=[-180.0, -180.0], high=[180.0, 180.0],
                                 names=["shoulder_pan.pos", "elbow.pos"])

    edited = _edited(source, tmp_path / "edited", hand_edits)
    assert edited.config_digest() == digest

    def restandardised(config: dict) -> None:  # the model's own input changes: another policy
        config["proprio"]["std"] = [3.0, 5.0]

    assert _edited(source, tmp_path / "std", restandardised).config_digest() != digest
    # thresholds stamped by the first scheme (the whole proprio spec, 2026-12-07) still fit their config
    first_scheme = CheckpointDir(source).config_digests()[1]
    assert first_scheme != digest and edited.config_digests()[1] != first_scheme
    Thresholds(values=[0.1, 0.2], config_sha256=first_scheme).check_solved_on(
        lambda: "w", "old.json", "ckpt", config_digests=CheckpointDir(source).config_digests)
    with pytest.raises(ValueError, match="another config"):
        Thresholds(values=[0.1, 0.2], config_sha256=first_scheme).check_solved_on(
            lambda: "w", "old.json", "ckpt", config_digests=edited.config_digests)
    pcfg = PolicyConfig.model_validate(edited.read_config().model_dump())
    (tmp_path / "data").mkdir()

    def meta(**proprio) -> DatasetMeta:
        return DatasetMeta(tuple(pcfg.cameras), pcfg.image_size, pcfg.action_spec.to_dict(), 2,
                           proprio_spec={**spec.to_dict(), **proprio})

    meta().save(tmp_path / "data")
    assert spaces_from_dataset(pcfg, tmp_path / "data", set(), fixed=True) is pcfg  # its own dataset: fits
    for units, std in ((["rad", ""], [3.0, 4.0]), (["", ""], [3.0, 5.0])):  # said otherwise, or another input
        meta(units=units, std=std).save(tmp_path / "data")
        with pytest.raises(SpaceMismatchError, match="proprio"):
            spaces_from_dataset(pcfg, tmp_path / "data", set(), fixed=True)
