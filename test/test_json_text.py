"""Every JSON file or message the package is handed fails the same clear way, whatever is wrong with it: not
JSON, nested past Python's recursion limit, an integer over Python's 4300-digit limit, not UTF-8, far too big.
Each reader names its file in one error of its own kind, never a RecursionError or a bare ValueError."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from deer_vla.core.json_text import JsonTextError, parse_json, read_json_file

HOSTILE: dict[str, bytes] = {
    "not JSON": b'{"a": 1',
    "nested": b"[" * 100_000 + b"]" * 100_000,
    "huge integer": b'{"a": ' + b"9" * 5000 + b"}",
    "not UTF-8": b'{"a": "\xff\xfe"}',
    "too big": b"[" + b"0," * (9 << 20) + b"0]",  # 18 MiB of valid JSON: refused before it is parsed
}


def test_parse_json_says_why_in_one_error_type():
    assert parse_json(b'{"a": [1, 2]}') == {"a": [1, 2]} == parse_json('{"a": [1, 2]}')
    for name, data in HOSTILE.items():
        if name == "too big":
            continue
        with pytest.raises(JsonTextError) as err:
            parse_json(data)
        assert ("\n" not in str(err.value)) and str(err.value)
        assert err.value.syntax == (name == "not JSON")  # only a text that is not JSON could be a torn write


def test_read_json_file_refuses_a_huge_file_unread(tmp_path):
    path = tmp_path / "big.json"
    path.write_bytes(HOSTILE["too big"])
    with pytest.raises(JsonTextError, match="bytes, far more than this file holds"):
        read_json_file(path)
    assert read_json_file(path, max_bytes=32 << 20)[:2] == [0, 0]


def _checkpoint_config(root: Path) -> None:
    from deer_vla.model.checkpoint_dir import CheckpointDir

    CheckpointDir(root).read_config()


def _thresholds(root: Path) -> None:
    from deer_vla.control.thresholds import Thresholds

    Thresholds.load(root / "thresholds.json")


def _resume_state(root: Path) -> None:
    from deer_vla.train.state import STATE_TENSORS, load_train_state

    (root / STATE_TENSORS).write_bytes(b"")
    load_train_state(root)


def _dataset_meta(root: Path) -> None:
    from deer_vla.data.episodes import DatasetMeta

    DatasetMeta.load(root)


def _lerobot_info(root: Path) -> None:
    from deer_vla.data.lerobot import LeRobotInfo

    LeRobotInfo.load(root)


def _task_weights(root: Path) -> None:
    from deer_vla.train.gate import read_task_weights

    read_task_weights(root / "weights.json")


READERS: dict[str, tuple[str, Callable[[Path], None], str]] = {
    # reader: (the file it reads, how to call it, the error type its command reports in one line)
    "checkpoint": ("config.json", _checkpoint_config, "CheckpointError"),
    "thresholds": ("thresholds.json", _thresholds, "ValueError"),
    "resume state": ("train_state.json", _resume_state, "ValueError"),
    "dataset meta": ("meta.json", _dataset_meta, "DatasetError"),
    "LeRobot info": ("meta/info.json", _lerobot_info, "LeRobotFormatError"),
    "task weights": ("weights.json", _task_weights, "ValueError"),
}


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_json_file_reader_names_its_file_in_one_error(tmp_path, reader, hostile):
    name, read, error_type = READERS[reader]
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(HOSTILE[hostile])
    with pytest.raises(ValueError) as err:
        read(tmp_path)
    assert type(err.value).__name__ == error_type
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("hostile", ["nested", "huge integer", "not UTF-8"])
def test_the_journal_refuses_a_hostile_line_even_last_and_drops_only_a_torn_one(tmp_path, hostile):
    from deer_vla.evaluation.journal import JOURNAL_VERSION, JournalError, read_journal

    path = tmp_path / "episodes.jsonl"
    header = json.dumps({"journal": JOURNAL_VERSION})
    path.write_bytes(header.encode() + b"\n" + HOSTILE[hostile] + b"\n")
    with pytest.raises(JournalError, match="line 2 is not an episode record|cannot be read as an evaluation journal"):
        read_journal(path)
    path.write_bytes(header.encode() + b'\n{"mode": "full", "task": "rea\n')  # a write cut short by a kill
    assert read_journal(path)[1] == []


def test_a_step_record_and_collection_failures_survive_hostile_json(tmp_path):
    from deer_vla.core import StepRecord
    from deer_vla.data.collect import FAILURES_FILE, _read_failures

    for name in ("not JSON", "nested", "huge integer"):  # what a String message can carry
        with pytest.raises(ValueError, match="^step record: (not JSON|JSON nested too deeply)"):
            StepRecord.from_json(HOSTILE[name].decode())
    lines = [b'{"task": "reach", "seed": 3}', HOSTILE["nested"], HOSTILE["huge integer"], b'{"task": "push", "se']
    (tmp_path / FAILURES_FILE).write_bytes(b"\n".join(lines) + b"\n")
    assert _read_failures(tmp_path, None) == {("reach", 3)}  # the damaged lines are skipped with a warning


def test_json_inside_model_folders_recordings_and_logs_fails_clearly(tmp_path):
    from deer_vla.core import CostProfile
    from deer_vla.data.mcap_io import NO_SPLIT, McapLog
    from deer_vla.data.recording import POLICY, RecordingError, recorded_policy
    from deer_vla.model.backbones import hf_weight_files
    from deer_vla.train.trainer import _row_step

    # a Hugging Face folder's shard index: hostile text, or shards named outside the folder
    index = tmp_path / "hf" / "model.safetensors.index.json"
    index.parent.mkdir()
    for text in (HOSTILE["nested"], b'{"weight_map": {"w": "../../elsewhere.safetensors"}}', b"[1]"):
        index.write_bytes(text)
        with pytest.raises(ValueError, match="model.safetensors.index.json|JSON nested too deeply"):
            hf_weight_files(index.parent)
    # a cost profile (bench_budgets --profile)
    profile = tmp_path / "profile.json"
    profile.write_bytes(HOSTILE["nested"])
    with pytest.raises(ValueError, match=f"cost profile {profile}: JSON nested too deeply"):
        CostProfile.load(profile)
    # the policy description at the head of a recording
    log = McapLog(tmp_path / "rec.mcap", split=NO_SPLIT)
    log.write(POLICY, "std_msgs/msg/String", {"data": HOSTILE["nested"].decode()}, 1)
    log.close()
    with pytest.raises(RecordingError, match="not a JSON string .JSON nested too deeply"):
        recorded_policy(tmp_path / "rec.mcap")
    # a training log line (trimmed on --resume): a damaged line sorts last and is dropped, never a crash
    assert _row_step(HOSTILE["nested"].decode()) == float("inf") == _row_step("[1, 2]")
    assert _row_step('{"step": 12}') == 12.0
