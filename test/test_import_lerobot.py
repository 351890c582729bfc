"""LeRobot v3 datasets in: a dataset written by the format's spec (pyarrow parquet, AV1 mp4 via PyAV) imports with
its cameras, named proprio, 7-D end-effector actions, tasks, episode boundaries and fps."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from deer_vla.data.episodes import DatasetError, EpisodeDataset
from deer_vla.data.import_lerobot import cli_main, import_lerobot
from deer_vla.data.lerobot_writer import (
    DEMO_ACTION_NAMES,
    DEMO_CAMERAS,
    DEMO_STATE_NAMES,
    DEMO_TASKS,
    LeRobotEpisode,
    demo_episodes,
    write_demo_dataset,
    write_lerobot_dataset,
)


@pytest.fixture(scope="module")
def lerobot_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 3 data/video files of 2 episodes, one file per chunk: chunk-000..002 all get used
    return write_demo_dataset(tmp_path_factory.mktemp("lr") / "demo", n_episodes=6, steps=12,
                              episodes_per_file=2, chunks_size=1)


def test_the_written_dataset_follows_the_v3_layout(lerobot_demo: Path):
    info = json.loads((lerobot_demo / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10
    assert info["features"]["action"]["names"] == list(DEMO_ACTION_NAMES)
    assert info["features"][DEMO_CAMERAS[0]]["dtype"] == "video"
    assert sorted(p.relative_to(lerobot_demo).as_posix() for p in lerobot_demo.glob("data/*/*.parquet")) == [
        "data/chunk-000/file-000.parquet", "data/chunk-001/file-000.parquet", "data/chunk-002/file-000.parquet"]
    assert (lerobot_demo / "videos" / DEMO_CAMERAS[1] / "chunk-002" / "file-000.mp4").is_file()


def test_import_keeps_episodes_tasks_fps_and_fits_the_spaces(lerobot_demo: Path, tmp_path: Path):
    source = demo_episodes(n_episodes=6, steps=12)  # the same episodes the fixture wrote
    summary = import_lerobot(lerobot_demo, tmp_path / "out", gripper_open=0.0, gripper_closed=1.0, image_size=32,
                             log=lambda *_: None, action_frame="base")
    assert summary["episodes"] == 6 and summary["steps"] == 72
    assert summary["cameras"] == {"static": DEMO_CAMERAS[0], "wrist": DEMO_CAMERAS[1]}
    ds = EpisodeDataset(tmp_path / "out")
    meta = ds.meta
    assert meta.control_rate_hz == 10.0 and meta.image_size == 32 and meta.cameras == ("static", "wrist")
    spec = meta.action_spec
    assert spec["axes"] == ["x", "y", "z", "roll", "pitch", "yaw"] and spec["units"] == ["m"] * 3 + ["rad"] * 3
    assert spec["frame"] == "base"  # LeRobot's format does not record it: --action-frame does
    raw = np.concatenate([e.action for e in source]).astype(np.float64)
    np.testing.assert_allclose(spec["scale"], np.quantile(np.abs(raw[:, :6]), 0.99, axis=0), rtol=1e-5)
    assert meta.proprio_dim == 6 and meta.proprio_spec["names"] == list(DEMO_STATE_NAMES)
    states = np.concatenate([e.state for e in source])
    np.testing.assert_allclose(meta.proprio_spec["mean"], states.mean(0), rtol=1e-4, atol=1e-4)
    assert ds.verify()["episodes"] == 6
    for i in range(len(ds)):
        ep = ds.load(i)
        src = source[ep.seed]  # seed = LeRobot episode_index
        assert ep.instruction == src.task and ep.length == src.length
        np.testing.assert_allclose(ep.proprio, src.state)
        expected = np.clip(src.action[:, :6] / np.asarray(spec["scale"]), -1, 1)
        np.testing.assert_allclose(ep.actions[:, :6], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ep.actions[:, 6], np.where(src.action[:, 6] > 0.5, 1.0, -1.0))  # 0 -> open
        assert ep.images["static"].shape == (12, 32, 32, 3)
    assert {ep.instruction for ep in ds} == set(DEMO_TASKS)


def test_each_episode_gets_its_own_video_frames(tmp_path: Path):
    """Frames are flat grey levels that encode (episode, step): the importer must find each episode's frames at
    its from_timestamp inside multi-episode AV1 files."""
    def level(e: int, t: int) -> int:
        return 20 + 30 * e + 8 * t

    episodes = [LeRobotEpisode("push", {"observation.images.top": np.stack(
        [np.full((32, 32, 3), level(e, t), np.uint8) for t in range(n)])},
        np.zeros((n, 2), np.float32), np.tile(np.array([0.1, 0.0, -1.0], np.float32), (n, 1)))
        for e, n in enumerate([5, 3, 6, 4])]
    write_lerobot_dataset(tmp_path / "lr", episodes, 15, ["a", "b"], ["x", "y", "gripper"], episodes_per_file=3)
    import_lerobot(tmp_path / "lr", tmp_path / "out", image_size=32, log=lambda *_: None)
    ds = EpisodeDataset(tmp_path / "out")
    for ep in ds:
        means = ep.images["static"].reshape(ep.length, -1).mean(1)
        np.testing.assert_allclose(means, [level(ep.seed, t) for t in range(ep.length)], atol=3.0)


def test_image_features_and_an_episode_that_changes_task(tmp_path: Path):
    eps = demo_episodes(n_episodes=2, steps=8)
    eps.append(LeRobotEpisode("later part", {k: v.copy() for k, v in eps[0].frames.items()}, eps[0].state,
                              eps[0].action))
    write_lerobot_dataset(tmp_path / "lr", eps, 10, DEMO_STATE_NAMES, DEMO_ACTION_NAMES, images_as="image")
    # make episode 0's last 3 frames carry the third task, as a LeRobot recording with a sub-task would
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "lr/data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    task = table.column("task_index").to_numpy().copy()
    task[5:8] = 2
    pq.write_table(table.set_column(table.column_names.index("task_index"), "task_index", pa.array(task)), path)
    summary = import_lerobot(tmp_path / "lr", tmp_path / "out", gripper_open=0, gripper_closed=1,
                             log=lambda *_: None)
    assert summary["episodes"] == 4
    rows = [json.loads(line) for line in (tmp_path / "out/import_map.jsonl").read_text().splitlines()]
    parts = {(r["source_episode"], tuple(r["frames"])) for r in rows}
    assert {(0, (0, 5)), (0, (5, 8)), (1, (0, 8)), (2, (0, 8))} == parts
    ds = EpisodeDataset(tmp_path / "out")
    by_seed = {ep.seed: ep for ep in ds}
    assert by_seed[0].instruction == DEMO_TASKS[0] and by_seed[0].length == 5
    assert by_seed[3].instruction == "later part" and by_seed[3].length == 3  # fresh seed past the last index


def test_unclear_inputs_are_refused_with_what_to_do(lerobot_demo: Path, tmp_path: Path, capsys):
    with pytest.raises(DatasetError, match="--gripper-open V --gripper-closed V"):  # demo gripper is 0..1
        import_lerobot(lerobot_demo, tmp_path / "a", log=lambda *_: None)
    with pytest.raises(DatasetError, match="--gripper-open and --gripper-closed must be finite, got nan and 1"):
        import_lerobot(lerobot_demo, tmp_path / "a", gripper_open=float("nan"), gripper_closed=1,
                       log=lambda *_: None)  # every gripper label NaN, blamed on a temporary file
    # the demo's gripper runs 0..1: stated values it never reaches made every label one end, silently (a policy
    # trained on it never closes the gripper)
    for raw_open, raw_closed, end in ((5, 7, "open"), (7, 5, "closed"), (-3, -2, "closed")):
        with pytest.raises(DatasetError, match=f"gripper values span \\[0, 1\\], all beyond --gripper-open "
                                               f"{raw_open} --gripper-closed {raw_closed}: every gripper label "
                                               f"would be {end}"):
            import_lerobot(lerobot_demo, tmp_path / "a", gripper_open=raw_open, gripper_closed=raw_closed,
                           log=lambda *_: None)
    assert not (tmp_path / "a").exists()
    eps = demo_episodes(n_episodes=1, steps=4)
    write_lerobot_dataset(tmp_path / "joints", eps, 10, None, ["shoulder.pos", "elbow.pos", "a", "b", "c", "d", "e"])
    with pytest.raises(DatasetError, match="not end-effector axes.*--action-axes"):
        import_lerobot(tmp_path / "joints", tmp_path / "b", log=lambda *_: None)
    summary = import_lerobot(tmp_path / "joints", tmp_path / "c", action_axes="x,-,z,-,-,yaw,gripper",
                             gripper_open=0, gripper_closed=1, log=lambda *_: None)
    assert summary["action_spec"]["axes"] == ["x", "z", "yaw"] and summary["proprio_names"][0] == "state_0"
    info = json.loads((lerobot_demo / "meta/info.json").read_text())
    old = tmp_path / "v21"
    (old / "meta").mkdir(parents=True)
    (old / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    assert cli_main([str(old), "--out", str(tmp_path / "d")]) == 2
    assert "convert_dataset_v21_to_v30" in capsys.readouterr().err
    assert cli_main([str(lerobot_demo), "--out", str(tmp_path / "e"), "--camera", "static=observation.images.side",
                     "--gripper-open", "0", "--gripper-closed", "1"]) == 2
    assert "cameras: observation.images.front, observation.images.wrist" in capsys.readouterr().err
    assert cli_main([str(lerobot_demo), "--out", str(tmp_path / "f"), "--episodes", "-1"]) == 2  # all but the last
    assert "--episodes must be >= 1, got -1" in capsys.readouterr().err
    front = "observation.images.front"
    for cameras, message in (
            # a slot is an HDF5 dataset name: '.' and 'a/' ended in an h5py traceback after the whole import
            ([f".={front}"], "--camera .=observation.images.front: slot name '.': use letters, digits"),
            ([f"static/={front}"], "slot name 'static/'"),
            # one camera as two views: the policy would take the same frames for two viewpoints
            ([f"static={front}", f"wrist={front}"], f"--camera: '{front}' given for two slots")):
        args = [arg for c in cameras for arg in ("--camera", c)]
        assert cli_main([str(lerobot_demo), "--out", str(tmp_path / "g"), *args, *GRIPPER_ARGS]) == 2
        assert message in capsys.readouterr().err
    # an image size the readers refuse was imported, then every read failed ("4100x4100, the data set's are 4100")
    assert cli_main([str(lerobot_demo), "--out", str(tmp_path / "h"), *GRIPPER_ARGS, "--image-size", "4100"]) == 2
    assert "--image-size must be an integer in 8..4096 px, got 4100" in capsys.readouterr().err
    assert cli_main([str(lerobot_demo), "--out", str(tmp_path / "i"), *GRIPPER_ARGS, "--action-frame", "a b"]) == 2
    assert "--action-frame must be a TF frame id" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in "ghi")


# --- broken inputs: one line naming the file and what is wrong, and never a dataset that is not whole ---

def _copy(src: Path, dst: Path) -> Path:
    import shutil

    return Path(shutil.copytree(src, dst))


def _edit_info(root: Path, **changes: object) -> None:
    path = root / "meta/info.json"
    info = json.loads(path.read_text())
    for key, value in changes.items():
        target = info
        *parents, leaf = key.split("__")  # features__action__shape -> info["features"]["action"]["shape"]
        for p in parents:
            target = target[p.replace("_dot_", ".")]
        target[leaf] = value
    path.write_text(json.dumps(info))


GRIPPER_ARGS = ["--gripper-open", "0", "--gripper-closed", "1", "--image-size", "16"]


@pytest.mark.parametrize("changes, expected", [
    ({"fps": 0}, "fps must be in 0.01..1000 Hz, got 0"),
    ({"fps": "ten"}, "fps must be a number of steps per second, got 'ten'"),
    ({"fps": 1e300}, "fps must be in 0.01..1000 Hz, got 1e+300"),  # the node's control timer: 0 ns
    ({"fps": 1e-9}, "fps must be in 0.01..1000 Hz, got 1e-09"),
    ({"features": ["action"]}, "features must be an object"),
    ({"features__action": "float32"}, "not objects with dtype"),
    ({"features__action__shape": ["seven"]}, "feature 'action' has shape ['seven']"),
    ({"data_path": "data/{chunk}/x.parquet"}, "data_path 'data/{chunk}/x.parquet' is not a path template"),
])
def test_an_info_json_with_wrong_types_is_refused_naming_the_field(lerobot_demo: Path, tmp_path: Path, capsys,
                                                                  changes: dict, expected: str):
    root = tmp_path / "lr"
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text((lerobot_demo / "meta/info.json").read_text())
    _edit_info(root, **changes)
    assert cli_main([str(root), "--out", str(tmp_path / "out"), *GRIPPER_ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{root / 'meta/info.json'}: " in err and expected in err
    (root / "meta/info.json").write_text("[1, 2]")
    assert cli_main([str(root), "--out", str(tmp_path / "out"), *GRIPPER_ARGS]) == 2
    assert "info.json: expected a JSON object" in capsys.readouterr().err


def test_bad_values_in_the_data_are_refused_naming_file_episode_and_row(lerobot_demo: Path, tmp_path: Path,
                                                                       capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = "data/chunk-001/file-000.parquet"  # episodes 2 and 3

    def broken(name: str, column: str, change) -> Path:
        root = _copy(lerobot_demo, tmp_path / name)
        table = pq.read_table(root / data)
        values = table.column(column).to_pylist()
        pq.write_table(table.set_column(table.column_names.index(column), column, change(values)), root / data)
        return root

    def nan_at_row_5(rows: list) -> pa.Array:
        rows[12 + 5][1] = float("nan")  # episode 3, row 5
        return pa.array(rows, pa.list_(pa.float32(), 6))

    cases = [
        (broken("nan", "observation.state", nan_at_row_5),
         "episode 3, column 'observation.state': NaN or inf in row 5"),
        (broken("narrow", "action", lambda rows: pa.array([r[:6] for r in rows], pa.list_(pa.float32()))),
         "episode 2, column 'action': row 0 of 12 has 6 values, info.json says 7"),
        (broken("scalar", "action", lambda rows: pa.array([r[0] for r in rows], pa.float32())),
         "episode 2, column 'action': one value per row (float), info.json says 7"),
        (broken("task", "task_index", lambda rows: pa.array([7] * len(rows), pa.int64())),
         "episode 2: task_index [7] not in"),
        # rows of 6 and 8 values: the total is 7 per row, and the rows were shifted into each other
        (broken("mixed", "action", lambda rows: pa.array([r[:6] if i % 2 == 0 else [*r, 0.0] for i, r in
                                                           enumerate(rows)], pa.list_(pa.float32()))),
         "episode 2, column 'action': row 0 of 12 has 6 values, info.json says 7 (12 such row(s))"),
        # frames one period apart, numbered 0, 1, 2, ...: one picture for every step, a gap, another rate
        (broken("same_time", "timestamp", lambda rows: pa.array([0.0] * 12 + rows[12:], pa.float32())),
         "episode 2: frames 0 and 1 are 0 s apart, not 1/fps"),
        (broken("gap", "frame_index", lambda rows: pa.array([i + (i >= 3) * 2 if i < 12 else r
                                                             for i, r in enumerate(rows)], pa.int64())),
         "episode 2: frame_index is 5 at row 3, not 3: frames missing or repeated"),
    ]
    for root, expected in cases:
        assert cli_main([str(root), "--out", str(tmp_path / f"{root.name}_out"), *GRIPPER_ARGS]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{root / data}, {expected}" in err, err
        assert not (tmp_path / f"{root.name}_out").exists()


def test_a_task_without_its_string_is_refused_not_imported_as_the_word_none(lerobot_demo: Path, tmp_path: Path,
                                                                            capsys):
    """A null task string became the instruction "None" (str(None)), and two such tasks merged into one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, change in (("null", lambda texts: [None] * len(texts)), ("blank", lambda texts: ["  "] * len(texts))):
        root = _copy(lerobot_demo, tmp_path / name)
        tasks = root / "meta/tasks.parquet"
        table = pq.read_table(tasks)
        column = "task" if "task" in table.column_names else table.column_names[-1]
        texts = change(table.column(column).to_pylist())
        pq.write_table(table.set_column(table.column_names.index(column), column, pa.array(texts, pa.string())),
                       tasks)
        assert cli_main([str(root), "--out", str(tmp_path / f"{name}_out"), *GRIPPER_ARGS]) == 2
        err = capsys.readouterr().err.strip()
        assert f"{tasks}: task_index 0 has no task string" in err and "\n" not in err, err
        assert not (tmp_path / f"{name}_out").exists()


def test_truncated_files_are_refused_naming_them(lerobot_demo: Path, tmp_path: Path, capsys):
    for rel in ("meta/tasks.parquet", "meta/episodes/chunk-000/file-000.parquet", "data/chunk-002/file-000.parquet"):
        root = _copy(lerobot_demo, tmp_path / rel.replace("/", "_"))
        whole = (root / rel).read_bytes()
        (root / rel).write_bytes(whole[: len(whole) // 2])
        assert cli_main([str(root), "--out", str(tmp_path / "out"), *GRIPPER_ARGS]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"deer-vla import-lerobot: {root / rel}: not a readable parquet file (truncated or corrupt?): " \
                      f"{err.split('corrupt?): ')[1]}" and "\n" not in err
        (root / rel).write_bytes(b"")
        assert cli_main([str(root), "--out", str(tmp_path / "out"), *GRIPPER_ARGS]) == 2
        assert f"{root / rel}: not a readable parquet file" in capsys.readouterr().err
        # a damaged footer (its length and magic kept): pyarrow's OSError made it an "I/O failure", status 1
        footer = len(whole) - 8 - int.from_bytes(whole[-8:-4], "little")
        (root / rel).write_bytes(whole[:footer] + b"\xff" * (len(whole) - 8 - footer) + whole[-8:])
        assert cli_main([str(root), "--out", str(tmp_path / "out"), *GRIPPER_ARGS]) == 2
        assert f"{root / rel}: not a readable parquet file" in capsys.readouterr().err


def test_an_import_that_fails_midway_leaves_nothing_and_touches_no_existing_dataset(lerobot_demo: Path,
                                                                                    tmp_path: Path, capsys,
                                                                                    monkeypatch):
    """The last video is cut short: episodes 0-3 are written before it is read. Nothing may appear at --out (a
    dataset there would load as if complete), and a re-run after the fix succeeds into the same --out."""
    root = _copy(lerobot_demo, tmp_path / "lr")
    video = root / "videos" / DEMO_CAMERAS[0] / "chunk-002" / "file-000.mp4"
    whole = video.read_bytes()
    video.write_bytes(whole[: len(whole) // 3])
    out = tmp_path / "data" / "mine"
    argv = [str(root), "--out", str(out), *GRIPPER_ARGS]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"deer-vla import-lerobot: {video}: cannot decode the video") and "\n" not in err
    assert list((tmp_path / "data").iterdir()) == []  # no dataset, no staging directory left behind
    video.write_bytes(whole)
    assert cli_main(argv) == 0 and len(EpisodeDataset(out)) == 6
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    assert cli_main(argv) == 2  # into an existing dataset: refused before anything is read
    assert "already holds a dataset (meta.json)" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    (tmp_path / "file").write_text("")
    assert cli_main([str(root), "--out", str(tmp_path / "file" / "mine"), *GRIPPER_ARGS]) == 1
    assert f"cannot write the dataset {tmp_path / 'file' / 'mine'}: " in capsys.readouterr().err
    # the disk fills up on the third episode
    from deer_vla.data.episodes import EpisodeWriter

    write, calls = EpisodeWriter.write, []

    def write_until_full(self, ep):
        calls.append(ep)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return write(self, ep)

    monkeypatch.setattr(EpisodeWriter, "write", write_until_full)
    assert cli_main([str(root), "--out", str(tmp_path / "full"), *GRIPPER_ARGS]) == 1
    assert f"cannot write the dataset {tmp_path / 'full'}: [Errno 28] No space left on device" in \
        capsys.readouterr().err
    assert not (tmp_path / "full").exists() and not list(tmp_path.glob(".full.importing-*"))


def test_staging_folders_of_killed_imports_are_removed_by_the_next_import(tmp_path: Path):
    """A SIGKILLed import cannot clean up: the next import into the same --out removes the staging folder whose
    process is gone, and leaves one whose process still runs (an import in progress)."""
    import os
    import subprocess
    import sys

    from deer_vla.data.importing import remove_abandoned_staging

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    out = tmp_path / "mine[1]"  # glob metacharacters in the name are taken literally
    abandoned = tmp_path / f".mine[1].importing-{dead_pid}-0123abcd"
    running = tmp_path / f".mine[1].importing-{os.getpid()}-89abcdef"
    other = tmp_path / f".theirs.importing-{dead_pid}-0123abcd"
    for folder in (abandoned, running, other):
        (folder / "episodes").mkdir(parents=True)
    assert remove_abandoned_staging(out) == [abandoned]
    assert not abandoned.exists() and running.is_dir() and other.is_dir()
    # a killed import not yet reaped (a zombie, as `timeout -s KILL` leaves one) is gone too: 9 of 12 kills
    # left their staging folder for good
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    while open(f"/proc/{zombie.pid}/stat").read().rpartition(")")[2].split()[0] != "Z":
        pass  # it exits; not waited for, it stays a zombie
    left = tmp_path / f".mine[1].importing-{zombie.pid}-0123abcd"
    left.mkdir()
    try:
        assert remove_abandoned_staging(out) == [left]
    finally:
        zombie.wait()


def test_an_out_that_is_a_symlink_receives_the_dataset_and_errors_name_the_source(lerobot_demo: Path, tmp_path: Path,
                                                                                 capsys):
    """A symlinked --out passed the early check, then failed after the whole import naming a staging folder
    (a rename onto the link); a value HDF5 cannot store named the deleted staged file, not the source."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = tmp_path / "disk" / "ds"
    target.mkdir(parents=True)
    link = tmp_path / "link_out"
    link.symlink_to(target)
    assert cli_main([str(lerobot_demo), "--out", str(link), *GRIPPER_ARGS]) == 0, capsys.readouterr().err
    assert link.is_symlink() and len(EpisodeDataset(link)) == 6 and (target / "meta.json").exists()
    capsys.readouterr()
    root = _copy(lerobot_demo, tmp_path / "nul")
    tasks = root / "meta/tasks.parquet"
    table = pq.read_table(tasks)
    column = "task" if "task" in table.column_names else table.column_names[-1]
    texts = ["pick\x00up"] * table.num_rows
    pq.write_table(table.set_column(table.column_names.index(column), column, pa.array(texts, pa.string())), tasks)
    assert cli_main([str(root), "--out", str(tmp_path / "nul_out"), *GRIPPER_ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert "the episode of source_episode 0, frames [0, 12]: the instruction holds a NUL character" in err, err
    assert ".importing-" not in err and "\n" not in err


def test_proprio_too_large_to_standardise_is_a_dataset_error():
    """Joint values near 1e200 overflowed the variance to inf and ended an import in a ValueError traceback."""
    from deer_vla.data.importing import fit_proprio_spec

    with pytest.raises(DatasetError, match="proprio values too large to standardise"):
        fit_proprio_spec(np.array([[1e200, 0.0], [-1e200, 1.0]]), ["a", "b"])
    assert fit_proprio_spec(np.array([[1.0, 0.0], [3.0, 1.0]]), ["a", "b"]).mean == (2.0, 0.5)


def test_an_import_into_the_working_directory_is_refused_before_reading(lerobot_demo: Path, tmp_path: Path, capsys,
                                                                         monkeypatch):
    """`--out .` in an empty folder ran the whole import, then failed to rename onto the working directory."""
    here = tmp_path / "empty"
    here.mkdir()
    monkeypatch.chdir(here)
    assert cli_main([str(lerobot_demo), "--out", ".", *GRIPPER_ARGS]) == 2
    assert "--out . is the current directory or a mount point" in capsys.readouterr().err
    assert list(here.iterdir()) == [] and not list(tmp_path.glob(".*importing*"))


def test_a_lone_wrist_camera_keeps_its_slot_and_a_missing_state_says_how_to_go_without(tmp_path: Path, capsys):
    """A single 'observation.images.wrist' went to the 'static' slot (docs: names with 'wrist' go to wrist); a
    dataset without observation.state was refused without saying --state-key none."""
    from deer_vla.data.import_lerobot import resolve_cameras
    from deer_vla.data.lerobot import LeRobotInfo

    eps = demo_episodes(n_episodes=1, steps=4)
    for ep in eps:  # the hand camera alone
        ep.frames = {k: v for k, v in ep.frames.items() if "wrist" in k}
    write_lerobot_dataset(tmp_path / "one", eps, 10, None, None)
    info = LeRobotInfo.load(tmp_path / "one")
    (only,) = info.camera_keys()
    assert resolve_cameras(info, None) == {"wrist": only}
    assert cli_main([str(tmp_path / "one"), "--out", str(tmp_path / "x"), "--state-key", "observation.nothing",
                     *GRIPPER_ARGS]) == 2
    assert "--state-key none for a robot without it" in capsys.readouterr().err


def test_an_axis_the_demonstrations_rarely_or_never_move_is_clipped_no_wider_than_those_they_do() -> None:
    """An axis whose 0.99 quantile was 0 (moved on under 1% of steps, or never) got scale 1: 1 m or 1 rad per
    step, so an output error of 0.05 on an axis the robot never moved was 0.5 m/s at 10 Hz, while the moving
    x axis was bounded at 0.1 m/s; a rare lift was labelled 0.01 and nearly not learnt."""
    import numpy as np

    from deer_vla.data.importing import ActionMapping

    rng = np.random.default_rng(0)
    raw = np.zeros((1000, 5))
    raw[:, 0] = rng.uniform(-0.01, 0.01, 1000)  # x moves
    raw[:5, 2] = 0.01  # z: a rare lift
    raw[:, 3] = rng.uniform(-0.2, 0.2, 1000)  # yaw moves
    raw[:, 4] = rng.integers(0, 2, 1000)
    m = ActionMapping.fit(raw, ["x", "y", "z", "yaw", "gripper"], gripper_open=0, gripper_closed=1)
    assert m.gripper_clipped_fraction == 0 and m.gripper_text() == "0 open -> -1, 1 closed -> +1"
    # values past the stated ones (beyond 5% of their span) are clipped, and the summary says how many
    over = raw.copy()
    over[:250, 4] = 1.04  # within the slack: a closed gripper reading a little past its command
    over[250:500, 4] = 1.5
    clipped = ActionMapping.fit(over, ["x", "y", "z", "yaw", "gripper"], gripper_open=0, gripper_closed=1)
    assert clipped.gripper_clipped_fraction == pytest.approx(0.25)
    assert clipped.gripper_text() == "0 open -> -1, 1 closed -> +1 (25.00% of gripper values beyond them, clipped)"
    assert clipped.describe()["gripper_clipped_fraction"] == 0.25
    x, y, z, yaw = m.scale
    assert y == x  # never moved: the moving translation's scale, not 1 m per step
    assert z == pytest.approx(0.01) and m.normalise(raw[:5])[:, 2] == pytest.approx(1.0)  # the lift is learnt
    assert yaw == pytest.approx(0.198, abs=0.002)
    still = np.zeros((100, 3))
    still[:, 0] = rng.uniform(-0.01, 0.01, 100)
    assert ActionMapping.fit(still, ["x", "roll", "gripper"], gripper_open=0, gripper_closed=1).scale[1] == \
        pytest.approx(float(np.quantile(np.abs(still[:, 0]), 0.99)))  # no rotation moved: the smallest there is


@pytest.mark.parametrize(("names", "velocity", "said"), [
    (["vx", "vy", "vz", "wz", "gripper"], False, "say velocities: pass --velocity"),
    (["x.vel", "y.vel", "z.vel", "yaw.vel", "gripper"], False, "say velocities"),
    (["linear_x", "linear_y", "linear_z", "angular_z", "gripper"], False, "say velocities"),
    (["target_x", "target_y", "target_z", "gripper"], False, "say absolute positions or targets"),
    (["pos_x", "pos_y", "pos_z", "gripper"], True, "say absolute positions or targets"),
])
def test_action_names_that_say_velocities_or_positions_are_not_taken_as_deltas(names, velocity, said) -> None:
    """Without --velocity, vx / x.vel / linear_x columns were labelled metres per step: a 0.05 m/s velocity at
    30 fps went out as 1.5 m/s; target_x columns (a pose) were taken as a jump of their whole value per step."""
    from deer_vla.data.episodes import DatasetError
    from deer_vla.data.importing import resolve_action_columns

    with pytest.raises(DatasetError, match=said):
        resolve_action_columns(len(names), names, None, velocity)
    if velocity is False and "velocities" in said:
        assert resolve_action_columns(len(names), names, None, True)[-1] == "gripper"  # with --velocity: fine
    labels = "x,y,z,yaw,gripper" if len(names) == 5 else "x,y,z,gripper"
    assert resolve_action_columns(len(names), names, labels, velocity)  # labelled by hand: the user's word
    assert resolve_action_columns(4, ["dx", "dy", "dz", "gripper"], None, False) == ["x", "y", "z", "gripper"]


def test_writing_videos_leaves_the_threads_scheduling_as_it_was(tmp_path: Path):
    """SVT-AV1 put the thread that ran an encoder on SCHED_FIFO priority 99 and left it so (as root): every
    test after the first dataset written ran real-time, and so did each process it started. Where the
    encoder cannot raise the priority (not root) there is nothing to put back and this holds trivially."""
    import os

    from deer_vla.data.lerobot_writer import write_demo_dataset

    before = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
    write_demo_dataset(tmp_path / "ds", n_episodes=1, steps=4)
    assert (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) == before


def test_an_action_beyond_any_arms_motion_is_refused_not_taken_as_the_scale() -> None:
    """One action of 3e38 m (or a twist of 1e300 m/s) set the axis' scale: every real label became ~0 and the
    trained policy's full scale commanded 2e39 m/s."""
    from deer_vla.data.importing import ActionMapping, DatasetError

    rng = np.random.default_rng(0)
    raw = np.column_stack([rng.uniform(-0.01, 0.01, (40, 4)), rng.integers(0, 2, 40)]).astype(np.float64)
    labels = ["x", "y", "z", "yaw", "gripper"]
    ActionMapping.fit(raw, labels, gripper_open=0, gripper_closed=1)
    for column, value, velocity, said in ((0, 3e38, False, "action axis x: 3e+38 m at row 7 is beyond any arm's "
                                                              "motion (1 m per step)"),
                                          (3, -7.0, False, "action axis yaw: -7 rad at row 7"),
                                          (0, 1e300, True, "action axis x: 1e+300 m/s at row 7 is beyond any arm's "
                                                           "motion (10 m/s)")):
        bad = raw.copy()
        bad[7, column] = value
        with pytest.raises(DatasetError, match=re.escape(said)):
            ActionMapping.fit(bad, labels, velocity=velocity, gripper_open=0, gripper_closed=1)
    fast = raw.copy()
    fast[7, 0] = 0.9  # a fast step is still motion
    assert ActionMapping.fit(fast, labels, gripper_open=0, gripper_closed=1).scale[0] > 0


def test_a_control_rate_outside_the_policys_range_is_refused_in_datasets_and_checkpoints(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from deer_vla.data.episodes import DatasetError, DatasetMeta
    from deer_vla.model.presets import preset_config

    meta = DatasetMeta(cameras=("static",), image_size=16, action_spec={}, proprio_dim=0).to_dict()
    with pytest.raises(DatasetError, match=r"control_rate_hz must be in 0\.01\.\.1000 Hz, got 1e\+300"):
        DatasetMeta.from_dict({**meta, "control_rate_hz": 1e300}, "meta.json")
    assert DatasetMeta.from_dict({**meta, "control_rate_hz": 30.0}, "meta.json").control_rate_hz == 30.0
    config = preset_config("tiny").model_dump(mode="json")
    for rate in (1e300, 1e-9):
        with pytest.raises(ValidationError, match="control_rate_hz"):
            type(preset_config("tiny")).model_validate({**config, "control_rate_hz": rate})


def test_a_frame_index_that_is_no_frame_number_is_refused() -> None:
    from deer_vla.data.lerobot import LeRobotFormatError, check_frame_timing

    times = np.array([0.0, 0.1, 0.2])
    for index in ([0, np.nan, 2], [0, 1.5, 2]):
        with pytest.raises(LeRobotFormatError, match="episode 4: frame_index holds a value that is no frame number"):
            check_frame_timing(Path("data.parquet"), 4, np.array(index), times, 10.0)
    check_frame_timing(Path("data.parquet"), 4, np.array([0, 1, 2]), times.astype(np.float32).astype(float), 10.0)


def test_episodes_left_out_are_said(lerobot_demo: Path, tmp_path: Path, capsys) -> None:
    """meta/episodes listing fewer episodes than info.json counts imported those alone without a word."""
    root = _copy(lerobot_demo, tmp_path / "lr")
    total = json.loads((root / "meta/info.json").read_text())["total_episodes"]
    _edit_info(root, total_episodes=total + 2)
    assert cli_main([str(root), "--out", str(tmp_path / "out"), *GRIPPER_ARGS]) == 0
    err = capsys.readouterr().err
    assert (f"not imported: meta/info.json says {total + 2} episodes, meta/episodes lists {total}: only those are "
            "read") in err


def test_an_out_another_import_filled_meanwhile_is_said_so(lerobot_demo: Path, tmp_path: Path, monkeypatch,
                                                           capsys) -> None:
    """Two imports into one --out at once: the loser said "Directory not empty: <its own staging folder>",
    a folder already deleted, not that another import had written --out."""
    import errno
    import os

    from deer_vla.data import importing

    real = os.replace

    def filled(src, dst):
        if Path(src).name.startswith(".out.importing-"):  # the finished staging folder onto --out
            raise OSError(errno.ENOTEMPTY, "Directory not empty", str(src))
        return real(src, dst)

    monkeypatch.setattr(importing.os, "replace", filled)
    out = tmp_path / "out"
    assert cli_main([str(lerobot_demo), "--out", str(out), *GRIPPER_ARGS]) == 1
    assert (f"cannot write the dataset {out}: another run wrote a dataset there while this one ran; import into "
            "a new directory") in capsys.readouterr().err
    assert not list(tmp_path.glob(".out.importing-*"))
