"""Whole-or-nothing writes of the results a run leaves: a full disk keeps the file before, names the file lost,
and leaves nothing half written or empty (an audit on a 200 KiB tmpfs: an empty results.json and steps.png, and
an error that named no file)."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from deer_vla.core.atomic_file import atomic_write_text, save_figure


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch):
    """The disk fills when the data are flushed to it: the error names no file, as the kernel's does then."""
    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)


def test_a_full_disk_names_the_file_and_keeps_the_one_before(tmp_path: Path, full_disk) -> None:
    path = tmp_path / "results.json"
    path.write_text('{"before": 1}')
    with pytest.raises(OSError, match=r"No space left on device: '.*results\.json'") as raised:
        atomic_write_text(path, '{"after": 2}')
    assert raised.value.filename == str(path)
    assert path.read_text() == '{"before": 1}' and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_figure_is_saved_in_its_suffix_format_whole_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    try:
        save_figure(fig, tmp_path / "steps.png", dpi=50)  # written under a temporary name: the format is the suffix's
        assert (tmp_path / "steps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        save_figure(fig, tmp_path / "curve.pdf", dpi=50)
        assert (tmp_path / "curve.pdf").read_bytes()[:5] == b"%PDF-"

        def no_space(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", no_space)
        with pytest.raises(OSError, match=r"No space left on device: '.*other\.png'"):
            save_figure(fig, tmp_path / "other.png", dpi=50)
    finally:
        plt.close(fig)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.pdf", "steps.png"]  # no empty other.png


def test_the_evaluation_results_keep_their_last_whole_version(tmp_path: Path, full_disk) -> None:
    from deer_vla.evaluation.report import write_csv, write_json

    results, table = tmp_path / "results.json", tmp_path / "results.csv"
    results.write_text("{}")
    table.write_text("mode\n")
    with pytest.raises(OSError, match="results.json"):
        write_json(results, {"full": {"success_rate": 0.5}})
    summary = {"full": {"tasks": {}, "overall": {"episodes": 1, "successes": 1}}}
    with pytest.raises(OSError, match="results.csv"):
        write_csv(table, summary, {"full": {"kind": "full"}})
    assert results.read_text() == "{}" and table.read_text() == "mode\n"


def test_a_link_is_written_through_and_a_pipe_or_device_straight(tmp_path: Path) -> None:
    """Renaming the new file over the path replaced a symbolic link itself (a shared report.json it pointed to
    kept its old content) and, as root, `--json /dev/stdout` replaced the system's /dev/stdout link with a
    file."""
    shared = tmp_path / "shared" / "report.json"
    shared.parent.mkdir()
    shared.write_text("old")
    link = tmp_path / "report.json"
    link.symlink_to(shared)
    atomic_write_text(link, "new")
    assert link.is_symlink() and shared.read_text() == "new"
    dangling = tmp_path / "later.json"
    dangling.symlink_to(tmp_path / "shared" / "later.json")
    atomic_write_text(dangling, "made")
    assert dangling.is_symlink() and (tmp_path / "shared" / "later.json").read_text() == "made"
    read_end, write_end = os.pipe()
    try:
        atomic_write_text(f"/proc/self/fd/{write_end}", "to the pipe")  # what /dev/stdout is in a pipeline
        assert os.read(read_end, 100) == b"to the pipe"
    finally:
        os.close(read_end)
        os.close(write_end)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["later.json", "report.json", "shared"]


def test_a_failure_in_the_mode_probe_names_the_file_being_written(tmp_path: Path, monkeypatch) -> None:
    """A disk out of inodes failed on the private probe file that reads the new file's mode: the error named
    '.mode-probe.<pid>.<thread>', not the file lost."""
    from deer_vla.core import atomic_file

    def no_inode(folder: Path) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / ".mode-probe.1.2"))

    monkeypatch.setattr(atomic_file, "_new_file_mode", no_inode)
    with pytest.raises(OSError, match=r"No space left on device: '.*model\.safetensors'"):
        atomic_file.atomic_write_with(tmp_path / "model.safetensors", lambda tmp: tmp.write_bytes(b"x"))
    assert not list(tmp_path.iterdir())


def test_a_stream_named_by_a_link_is_written_straight_even_when_it_is_a_file(tmp_path: Path) -> None:
    """`cmd --json /dev/stdout >> run.log`: /dev/stdout leads through /proc/self/fd/1 to run.log, a regular
    file, and renaming the new file over it lost everything else the shell and the process wrote there."""
    log = tmp_path / "run.log"
    with open(log, "a") as stream:
        stream.write("before\n")
        stream.flush()
        atomic_write_text(f"/proc/self/fd/{stream.fileno()}", "the report\n")
        stream.write("after\n")
    assert log.read_text() == "before\nthe report\nafter\n"


def test_a_writer_that_takes_a_file_name_appends_to_a_stream_too(tmp_path: Path) -> None:
    """`--plot /dev/stdout >> run.log` (savefig and safetensors' save_file open their file "wb"): the writer was
    handed the stream's name and truncated the file behind it, losing what the shell had written before."""
    from deer_vla.core.atomic_file import atomic_write_with

    log = tmp_path / "run.log"

    def write(name: Path) -> None:
        name.write_bytes(b"the figure\n")

    with open(log, "a") as stream:
        stream.write("before\n")
        stream.flush()
        atomic_write_with(f"/proc/self/fd/{stream.fileno()}", write)
        atomic_write_with(tmp_path / "plot.png", write)  # a file: whole, as before
        stream.write("after\n")
    assert log.read_text() == "before\nthe figure\nafter\n"
    assert (tmp_path / "plot.png").read_bytes() == b"the figure\n"


def test_a_folder_that_takes_no_new_name_is_written_in_place(tmp_path: Path, monkeypatch) -> None:
    """An existing writable file in a folder where no temporary file can be made (the user may not add names
    there) was written before whole writes; it still is, in place."""
    import builtins

    target = tmp_path / "stats.json"
    target.write_text("old")
    real_open = builtins.open

    def no_new_names(file, mode="r", *args, **kwargs):
        if str(file).endswith(".tmp"):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_new_names)
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
