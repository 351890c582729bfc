"""The HDF5 episode format: round trip, atomic writes, and clear errors for bad files."""
from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from deer_vla.core.action_spec import ActionSpec
from deer_vla.data.episodes import (
    META_FILE,
    SCHEMA_VERSION,
    DatasetError,
    DatasetMeta,
    Episode,
    EpisodeDataset,
    EpisodeWriter,
    read_episode,
    remove_stale_tmp,
)

SPEC = ActionSpec(axes=("x", "y", "z"), scale=(0.01,) * 3)


def make_meta(**kw) -> DatasetMeta:
    args = dict(cameras=("static", "wrist"), image_size=16, action_spec=SPEC.to_dict(), proprio_dim=4,
                tasks=["drawer-open", "faucet-close"])
    args.update(kw)
    return DatasetMeta(**args)


def make_episode(task: str = "drawer-open", seed: int = 0, length: int = 5, size: int = 16) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        task=task,
        instruction="open the drawer",
        seed=seed,
        success=True,
        images={c: rng.integers(0, 255, (length, size, size, 3), dtype=np.uint8) for c in ("static", "wrist")},
        proprio=rng.normal(size=(length, 4)).astype(np.float32),
        actions=rng.uniform(-1, 1, (length, 4)).astype(np.float32),
        actions_executed=rng.uniform(-1, 1, (length, 4)).astype(np.float32),
    )


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    w = EpisodeWriter(tmp_path / "ds", make_meta())
    w.write(make_episode("faucet-close", 3))
    w.write(make_episode("drawer-open", 7))
    w.write(make_episode("drawer-open", 2, length=9))
    return tmp_path / "ds"


def test_round_trip_and_order(dataset: Path) -> None:
    ds = EpisodeDataset(dataset)
    assert len(ds) == 3
    # meta task order, then seed
    assert [(ds.task_of(i), ds.load(i).seed) for i in range(3)] == [("drawer-open", 2), ("drawer-open", 7),
                                                                    ("faucet-close", 3)]
    ep = ds.load(0)
    ref = make_episode("drawer-open", 2, length=9)
    for cam in ("static", "wrist"):
        np.testing.assert_array_equal(ep.images[cam], ref.images[cam])
    np.testing.assert_array_equal(ep.actions, ref.actions)
    np.testing.assert_array_equal(ep.proprio, ref.proprio)
    np.testing.assert_array_equal(ep.actions_executed, ref.actions_executed)
    assert (ep.task, ep.instruction, ep.success, ep.length) == ("drawer-open", "open the drawer", True, 9)
    assert ds.episodes_for_task("faucet-close") == [2]
    with pytest.raises(KeyError, match="no episodes.*present: drawer-open, faucet-close"):
        ds.episodes_for_task("window-open")
    with pytest.raises(IndexError, match="outside 0..2"):
        ds.load(3)
    summary = ds.verify()
    assert summary["episodes"] == 3 and summary["steps"] == 19 and summary["per_task"] == {"drawer-open": 2,
                                                                                           "faucet-close": 1}
    assert json.loads((dataset / META_FILE).read_text())["schema_version"] == 1


def _only_file(dataset: Path, name: str) -> Path:
    return next(dataset.rglob(name))


def test_truncated_file_is_detected(dataset: Path) -> None:
    path = _only_file(dataset, "drawer-open__seed0000007.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"(?s)1 bad episode.*drawer-open__seed0000007\.h5.*(truncated|corrupt)"):
        EpisodeDataset(dataset).verify()


def test_flipped_bytes_are_detected(dataset: Path) -> None:
    path = _only_file(dataset, "faucet-close__seed0000003.h5")
    ds = EpisodeDataset(dataset)
    with h5py.File(path, "r") as f:  # corrupt the middle of the stored (compressed) image chunk
        info = f["images/static"].id.get_chunk_info(0)
        offset, size = info.byte_offset, info.size
    with open(path, "r+b") as fh:
        fh.seek(offset + size // 2)
        chunk = bytearray(fh.read(64))
        fh.seek(offset + size // 2)
        fh.write(bytes(b ^ 0xFF for b in chunk))
    with pytest.raises(DatasetError, match=r"(?s)faucet-close__seed0000003\.h5.*(corrupt|checksum)"):
        ds.load(ds.episodes_for_task("faucet-close")[0])
    with pytest.raises(DatasetError, match="1 bad episode"):
        ds.verify()


def test_checksum_catches_edited_values(dataset: Path) -> None:
    path = _only_file(dataset, "drawer-open__seed0000002.h5")
    with h5py.File(path, "r+") as f:
        f["actions"][0, 0] = 0.5 + float(f["actions"][0, 0]) / 4  # valid values, wrong data
    with pytest.raises(DatasetError, match="checksum mismatch"):
        read_episode(path)


def test_malformed_files_are_named(dataset: Path) -> None:
    path = _only_file(dataset, "drawer-open__seed0000002.h5")
    with h5py.File(path, "r+") as f:
        del f.attrs["instruction"]
    with pytest.raises(DatasetError, match=r"drawer-open__seed0000002\.h5: malformed episode, missing attributes"):
        read_episode(path)
    other = _only_file(dataset, "drawer-open__seed0000007.h5")
    with h5py.File(other, "r+") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(DatasetError, match="schema version 99"):
        read_episode(other)
    nested = _only_file(dataset, "faucet-close__seed0000003.h5")
    with h5py.File(nested, "r+") as f:
        f.attrs["cameras"] = "[" * 100_000 + "]" * 100_000  # a RecursionError escaped every handler before
    with pytest.raises(DatasetError, match=r"faucet-close__seed0000003\.h5: corrupt episode file .*nested too deeply"):
        read_episode(nested)
    with h5py.File(other, "r+") as f:  # a foreign file: a group where the actions array belongs
        f.attrs["schema_version"] = SCHEMA_VERSION
        del f["actions"]
        f.create_group("actions")
    with pytest.raises(DatasetError, match=r"seed0000007\.h5: malformed episode, actions must be arrays, not groups"):
        read_episode(other)
    stray = dataset / "episodes" / "drawer-open" / "notes.h5"
    stray.write_bytes(b"")
    with pytest.raises(DatasetError, match="notes.h5: unexpected file"):
        EpisodeDataset(dataset)


def test_meta_errors(tmp_path: Path, dataset: Path) -> None:
    with pytest.raises(DatasetError, match="dataset directory not found"):
        EpisodeDataset(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="meta.json: missing"):
        EpisodeDataset(tmp_path / "empty")
    meta = json.loads((dataset / META_FILE).read_text())
    (dataset / META_FILE).write_text(json.dumps({**meta, "schema_version": 0}))
    with pytest.raises(DatasetError, match="schema version 0.*reads version 1"):
        EpisodeDataset(dataset)
    (dataset / META_FILE).write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        EpisodeDataset(dataset)
    (dataset / META_FILE).write_text(json.dumps({k: v for k, v in meta.items() if k != "image_size"}))
    with pytest.raises(DatasetError, match="malformed metadata"):
        EpisodeDataset(dataset)


def test_episode_must_match_meta(tmp_path: Path) -> None:
    w = EpisodeWriter(tmp_path / "ds", make_meta())
    with pytest.raises(DatasetError, match="images/static are 32x32, dataset is 16x16"):
        w.write(make_episode(size=32))
    bad = make_episode()
    bad.actions, bad.actions_executed = bad.actions[:, :3].copy(), None
    with pytest.raises(DatasetError, match="actions have 3 values, dataset action_dim is 4"):
        w.write(bad)
    nan = make_episode()
    nan.proprio[1, 1] = np.nan
    with pytest.raises(DatasetError, match="proprio contains NaN"):
        w.write(nan)
    with pytest.raises(DatasetError, match="recorded differently.*image_size"):
        EpisodeWriter(tmp_path / "ds", make_meta(image_size=32))
    # another expert noise level into a set whose meta.json names one: refused; unrecorded on one side: accepted
    noisy = make_meta()
    noisy.collection = {"action_noise": 0.1}
    EpisodeWriter(tmp_path / "noisy", noisy)
    louder = make_meta()
    louder.collection = {"action_noise": 0.3}
    with pytest.raises(DatasetError, match=r"recorded differently \(collection.action_noise: 0.1 != 0.3\)"):
        EpisodeWriter(tmp_path / "noisy", louder)
    EpisodeWriter(tmp_path / "noisy", make_meta())
    # the same for the simulator version and what each camera name means; the first seed may differ (a resume
    # with another --seed adds other seeds)
    other_sim = make_meta()
    other_sim.collection = {"action_noise": 0.1, "simulator": "metaworld 3.2.0 (v3, goal-observable)",
                            "camera_map": {"static": "corner4"}, "seed": 0}
    EpisodeWriter(tmp_path / "sim", other_sim)
    newer = make_meta()
    newer.collection = {**other_sim.collection, "simulator": "metaworld 3.3.0 (v3, goal-observable)", "seed": 500}
    with pytest.raises(DatasetError, match=r"collection.simulator: metaworld 3.2.0 .* != metaworld 3.3.0"):
        EpisodeWriter(tmp_path / "sim", newer)
    remapped = make_meta()
    remapped.collection = {**other_sim.collection, "camera_map": {"static": "topview"}}
    with pytest.raises(DatasetError, match=r"collection.camera_map"):
        EpisodeWriter(tmp_path / "sim", remapped)
    EpisodeWriter(tmp_path / "sim", make_meta())
    resumed = make_meta()
    resumed.collection = {**other_sim.collection, "seed": 500}
    EpisodeWriter(tmp_path / "sim", resumed)
    assert not list((tmp_path / "ds").rglob("*.h5")), "rejected episodes must leave no file"


@pytest.mark.parametrize(("instruction", "said"), [
    ("open the\x00 drawer", "NUL character"),
    ("open the \udcff drawer", "not valid text"),  # a non-UTF-8 byte in a shell argument, decoded by Python
    ("\u200b\ufeff\u2060", "holds no text"),  # zero-width alone: the runner refuses it; training read no text
])
def test_an_instruction_hdf5_cannot_store_is_refused_before_writing(tmp_path: Path, instruction: str,
                                                                   said: str) -> None:
    """h5py raised UnicodeEncodeError or its own ValueError mid-write, outside the importers' DatasetError
    handlers, so `import-mcap --instruction` with such text ended in a traceback."""
    w = EpisodeWriter(tmp_path / "ds", make_meta())
    bad = make_episode()
    bad.instruction = instruction
    with pytest.raises(DatasetError, match=said):
        w.write(bad)
    assert not list((tmp_path / "ds").rglob("*.h5*"))
    ok = make_episode()
    ok.instruction = "open the drawer 🙂"
    w.write(ok)
    assert EpisodeDataset(tmp_path / "ds").load(0).instruction == "open the drawer 🙂"


def test_atomic_write_leaves_no_partial_episode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = EpisodeWriter(tmp_path / "ds", make_meta())

    def killed(*_a, **_k):  # the process dies between writing the data and the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        w.write(make_episode(seed=4))
    monkeypatch.undo()
    assert len(EpisodeDataset(tmp_path / "ds")) == 0
    assert not list((tmp_path / "ds").rglob("*.tmp"))  # cleaned up on the way out
    # a temp file from a hard kill (no cleanup) is ignored by readers and removed by the collector
    stale = w.path_for("drawer-open", 4).with_name(".drawer-open__seed0000004.h5.123.tmp")
    stale.write_bytes(b"partial")
    ds = EpisodeDataset(tmp_path / "ds")
    assert len(ds) == 0 and ds.verify()["stale_tmp_files"] == [str(stale)]
    assert remove_stale_tmp(tmp_path / "ds") == [stale] and not stale.exists()


def test_writer_extends_task_list(tmp_path: Path) -> None:
    EpisodeWriter(tmp_path / "ds", make_meta(tasks=["drawer-open"]))
    w = EpisodeWriter(tmp_path / "ds", make_meta(tasks=["window-open", "drawer-open"]))
    assert w.meta.tasks == ["drawer-open", "window-open"]
    assert DatasetMeta.load(tmp_path / "ds").tasks == ["drawer-open", "window-open"]


def test_actions_outside_the_normalised_range_are_refused(tmp_path: Path) -> None:
    """The format says actions are in [-1, 1], checked on read: an episode with 50.0 trained to a loss of 73."""
    w = EpisodeWriter(tmp_path / "ds", make_meta())
    bad = make_episode()
    bad.actions = bad.actions.copy()
    bad.actions[2, 0] = 50.0
    with pytest.raises(DatasetError, match="actions reach 50"):
        w.write(bad)


def test_an_episode_declaring_more_data_than_it_holds_is_refused_before_reading(tmp_path: Path) -> None:
    """A 105 KB file whose images declared 10^9 frames made numpy ask for terabytes (a MemoryError traceback)."""
    w = EpisodeWriter(tmp_path / "ds", make_meta())
    path = w.write(make_episode())
    with h5py.File(path, "r+") as f:
        del f["images/static"]
        f.create_dataset("images/static", shape=(10**9, 16, 16, 3), dtype=np.uint8, chunks=(1, 16, 16, 3))
    with pytest.raises(DatasetError, match=r"images/static has shape \(1000000000, 16, 16, 3\) for 5 steps"):
        read_episode(path, make_meta())


@pytest.mark.parametrize(("key", "value", "said"), [
    ("image_size", 32.7, "image_size must be an integer"),  # was cut to 32
    ("success_only", "no", "success_only must be true or false"),  # was True
    ("cameras", [1, 2], "cameras must be a list of names"),  # was 2 pydantic errors naming no file
])
def test_metadata_of_the_wrong_type_is_refused_naming_the_file(tmp_path: Path, key: str, value: object,
                                                              said: str) -> None:
    EpisodeWriter(tmp_path / "ds", make_meta())
    path = tmp_path / "ds" / "meta.json"
    data = json.loads(path.read_text())
    data[key] = value
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=f"meta.json: malformed metadata: {said}"):
        DatasetMeta.load(tmp_path / "ds")


FULL_DISK_WRITER = """
import resource, sys
sys.path[:0] = [sys.argv[2], sys.argv[3]]
from test_data_episodes import make_episode, make_meta
from deer_vla.data.episodes import DatasetWriteError, EpisodeWriter
writer = EpisodeWriter(sys.argv[1], make_meta())
writer.write(make_episode("drawer-open", 0, length=3))  # a small one fits
# every file from here on is cut at 20 kB (EFBIG, what ENOSPC is to the writer; Python ignores SIGXFSZ)
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))
try:
    writer.write(make_episode("drawer-open", 1, length=40, size=16))
except DatasetWriteError as exc:
    print("REFUSED", exc)
"""


def test_an_episode_the_disk_cannot_take_is_one_error_naming_it_and_the_earlier_ones_stay(tmp_path: Path) -> None:
    """A full disk mid-collection: h5py raised RuntimeErrors out of its close and printed a traceback per open
    object (130 lines, then `deer-vla collect` died on an unhandled RuntimeError). The file is now built in
    memory and written as bytes: one DatasetWriteError naming the file, nothing half-written left."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", FULL_DISK_WRITER, str(tmp_path / "ds"), str(root),
                          str(root / "test")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "REFUSED cannot write" in out.stdout and "drawer-open__seed0000001" in out.stdout, out.stdout
    assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr, out.stderr[-3000:]
    ds = EpisodeDataset(tmp_path / "ds")
    assert len(ds) == 1 and ds.load(0).seed == 0
    assert not list((tmp_path / "ds").rglob("*.tmp"))


def test_collect_says_a_write_failure_in_one_line_and_that_the_same_command_goes_on(tmp_path, monkeypatch, capsys):
    from deer_vla.data import collect as collect_module
    from deer_vla.data.episodes import DatasetWriteError

    def full(*args: object, **kwargs: object) -> None:
        raise DatasetWriteError("cannot write /robot/ds/episodes/x.h5: No space left on device")

    monkeypatch.setattr(collect_module, "collect", full)
    code = collect_module.cli_main(["--tasks", "drawer-close", "--episodes-per-task", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "No space left on device" in err and "the same command goes on" in err, err
