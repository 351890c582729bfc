"""MCAP logs split into parts (a robot that runs for days): each part is finished with its footer, the writer's
memory does not grow with the run, and every reader reads the parts back as one log, naming a missing part."""
from __future__ import annotations

import json
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from deer_vla.data.mcap_io import NO_SPLIT, McapLog, SplitLimits, is_finished, read_messages
from deer_vla.data.mcap_parts import MissingPartError, log_parts, part_info, read_log

TOPIC = "/deer_vla/step_record"


def _write(log: McapLog, start: int, count: int, flush: bool = False, size: int = 200) -> None:
    for i in range(start, start + count):
        # incompressible text: the bytes on disk follow the messages, not zstd's luck
        log.write(TOPIC, "std_msgs/msg/String", {"data": f"{i} " + os.urandom(size // 2).hex()}, 1_000 + i)
        if flush:
            log.flush()


def _stamps(source: str | Path) -> list[int]:
    return [m.log_time_ns - 1_000 for m in read_log(source)]


def test_a_log_past_its_size_moves_on_to_finished_parts_that_read_back_as_one(tmp_path):
    limit = 16 * 1024
    log = McapLog(tmp_path / "steps.mcap", chunk_bytes=2048, split=SplitLimits(max_bytes=limit, max_seconds=0))
    _write(log, 0, 400)
    assert len(log.parts) >= 4, "the log never split"
    # every part but the last is finished (with its footer) while the log is still being written
    assert all(is_finished(p) for p in log.parts[:-1]) and not is_finished(log.parts[-1])
    log.close()
    assert [p.name for p in log.parts] == ["steps.mcap"] + [f"steps_{n}.mcap" for n in range(1, len(log.parts))]
    assert all(is_finished(p) for p in log.parts)
    for part in log.parts[:-1]:  # past the limit by at most the chunk in progress and the footer
        assert limit <= part.stat().st_size <= limit + 2048 + 4096, part
    assert len({part_info(p).log for p in log.parts}) == 1 and [part_info(p).part for p in log.parts] == list(
        range(len(log.parts)))
    assert _stamps(tmp_path / "steps.mcap") == list(range(400))
    assert _stamps(tmp_path) == list(range(400))  # the folder
    assert _stamps(str(tmp_path / "steps*.mcap")) == list(range(400))  # a glob
    assert _stamps(log.parts[2]) == [m.log_time_ns - 1_000 for p in log.parts[2:] for m in read_messages(p)]


def test_a_log_keeps_its_newest_parts_only_when_told_and_reads_back_from_the_oldest_left(tmp_path):
    """A robot that logs for weeks filled its disk: nothing ever deleted a part (~66 GB in 72 h with the
    recording on). With keep_parts the oldest finished parts go as new ones begin; none go without it."""
    limit = 16 * 1024
    log = McapLog(tmp_path / "steps.mcap", chunk_bytes=2048,
                  split=SplitLimits(max_bytes=limit, max_seconds=0, keep_parts=3))
    _write(log, 0, 700)
    log.close()
    assert len(log.parts) >= 6 and log.deleted_parts == len(log.parts) - 3
    assert [p.exists() for p in log.parts] == [False] * (len(log.parts) - 3) + [True] * 3
    oldest_left = log.parts[-3]
    expected = [m.log_time_ns - 1_000 for p in log.parts[-3:] for m in read_messages(p)]
    assert _stamps(oldest_left) == expected == list(range(700 - len(expected), 700))
    assert _stamps(tmp_path) == expected  # the folder reads from the oldest part left
    keep_all = McapLog(tmp_path / "all" / "steps.mcap", chunk_bytes=2048, split=SplitLimits(max_bytes=limit))
    _write(keep_all, 0, 400)
    keep_all.close()
    assert keep_all.deleted_parts == 0 and all(p.exists() for p in keep_all.parts)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="keep_parts must be an integer >= 0"):
            SplitLimits(keep_parts=bad)


def test_a_log_past_its_time_moves_on_and_a_step_is_never_cut(tmp_path):
    log = McapLog(tmp_path / "steps.mcap", split=SplitLimits(max_bytes=0, max_seconds=0.2))
    _write(log, 0, 3)
    time.sleep(0.25)
    log.write(TOPIC, "std_msgs/msg/String", {"data": "same step"}, 1_003, may_split=False)  # stays in part 0
    _write(log, 4, 2)  # the first of these begins part 1
    log.close()
    assert len(log.parts) == 2
    assert [m.log_time_ns - 1_000 for m in read_messages(log.parts[0])] == [0, 1, 2, 3]
    assert _stamps(tmp_path / "steps.mcap") == [0, 1, 2, 3, 4, 5]


def test_the_writer_memory_stays_bounded_when_split_and_grows_when_not(tmp_path):
    """The writer keeps an index entry per chunk until the footer: unsplit it grows with every chunk (every
    flush), split it starts again with each part."""

    def growth(name: str, split: SplitLimits) -> int:
        log = McapLog(tmp_path / name, split=split)
        _write(log, 0, 100, flush=True, size=8)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            _write(log, 100, 2000, flush=True, size=8)
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
            log.close()
        return grown

    unsplit = growth("one.mcap", NO_SPLIT)
    split = growth("split.mcap", SplitLimits(max_bytes=16 * 1024, max_seconds=0))
    assert unsplit > 400_000, f"2000 chunks grew the unsplit writer by only {unsplit} B: nothing to bound"
    assert split < unsplit / 8, f"split writer grew {split} B (unsplit {unsplit} B)"
    assert len(list((tmp_path).glob("split_*.mcap"))) >= 10


def _split_log(tmp_path: Path) -> list[Path]:
    log = McapLog(tmp_path / "io.mcap", chunk_bytes=2048, split=SplitLimits(max_bytes=8 * 1024, max_seconds=0))
    _write(log, 0, 300)
    log.close()
    assert len(log.parts) >= 5
    return log.parts


def test_a_missing_part_is_an_error_naming_it(tmp_path):
    parts = _split_log(tmp_path)
    parts[2].rename(tmp_path / "elsewhere.bin")  # a gap in the middle
    with pytest.raises(MissingPartError, match=f"part {parts[2]} is missing"):
        log_parts(parts[0])
    with pytest.raises(MissingPartError, match="io_2.mcap is missing"):
        _stamps(tmp_path)
    for later in parts[3:]:
        later.unlink()  # the tail gone too: part 1 still says the log goes on
    with pytest.raises(MissingPartError, match="io_2.mcap is missing .io_1.mcap says the log goes on"):
        log_parts(parts[0])


def test_a_log_named_from_the_middle_or_mixed_with_others(tmp_path):
    parts = _split_log(tmp_path)
    everything = _stamps(parts[0])
    parts[0].unlink()
    parts[1].unlink()  # the oldest parts deleted to free space: the folder reads from the earliest left
    assert log_parts(tmp_path) == parts[2:] and _stamps(tmp_path) == everything[-len(_stamps(parts[2])):]
    other = McapLog(tmp_path / "other.mcap")
    other.close()
    with pytest.raises(ValueError, match="holds 2 MCAP logs .io_2.mcap, other.mcap.: give one of them"):
        log_parts(tmp_path)
    stranger = McapLog(tmp_path / "x" / "io.mcap", split=SplitLimits(max_bytes=1, max_seconds=0))
    _write(stranger, 0, 3)
    stranger.close()
    (tmp_path / "x" / "io_1.mcap").replace(parts[-1].with_name(f"io_{len(parts)}.mcap"))  # another log's part
    with pytest.raises(ValueError, match="written by another log"):
        log_parts(parts[2])
    with pytest.raises(FileNotFoundError, match="MCAP log not found"):
        log_parts(tmp_path / "nothing.mcap")
    with pytest.raises(FileExistsError, match="io_2.mcap .a part of an earlier log named io.mcap"):
        McapLog(tmp_path / "io.mcap")  # would overwrite the parts left there


# -- the policy recording: recorder, replay, calibrate ----------------------------------------------------------

def _record(path: Path, split: SplitLimits, steps: int = 24) -> list[Path]:
    from std_msgs.msg import String

    from deer_vla.core import StepRecord
    from deer_vla.ros.image_conv import rgb_to_image_msg
    from deer_vla.ros.recorder import PolicyRecorder

    rng = np.random.default_rng(0)
    rec = PolicyRecorder(path, ("static", "wrist"), split=split)
    for i in range(steps):
        frames = {c: rgb_to_image_msg(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
                  for c in ("static", "wrist")}
        record = StepRecord(step=i, episode=i // 12, exit_used=1, max_exit=1, stop_reason="fixed", llm_gflops=1.0,
                            total_gflops=1.0)
        rec.write_step(frames, f"task {i // 12}", np.full(4, i, np.float32), np.full(7, i / 100),
                       String(data=record.to_json()), 1_000 + i)
        if i % 2:
            rec.log.flush()  # as the flusher does every 0.5 s: the size counts the chunks it closed
    rec.close()
    return rec.log.parts


def test_replay_and_calibrate_read_a_split_recording_as_the_unsplit_one(tmp_path, tiny_checkpoint, capsys):
    from deer_vla.commands.calibrate import recorded_observation_episodes
    from deer_vla.data.recording import read_recording
    from deer_vla.ros.replay import cli_main as replay

    whole = tmp_path / "whole" / "io.mcap"
    assert _record(whole, NO_SPLIT) == [whole]
    parts = _record(tmp_path / "split" / "io.mcap", SplitLimits(max_bytes=40 * 1024, max_seconds=0))
    assert len(parts) >= 4
    # a split due at every message still comes between steps only: one whole step (2 images, instruction,
    # proprio, action, record) per part
    per_step = _record(tmp_path / "per_step" / "io.mcap", SplitLimits(max_bytes=0, max_seconds=1e-9), steps=3)
    assert [len(list(read_messages(p))) for p in per_step] == [6, 6, 6]
    a, b = read_recording(whole), read_recording(parts[0])
    assert len(a) == len(b) == 24
    for x, y in zip(a, b):
        assert x.record == y.record and x.instruction == y.instruction and x.stamp_ns == y.stamp_ns
        assert all(np.array_equal(x.images[c], y.images[c]) for c in ("static", "wrist"))
        assert np.array_equal(x.proprio, y.proprio) and np.array_equal(x.action7, y.action7)

    class Runner:
        cameras = ("static", "wrist")
        image_size = 8  # frames are read at the model's size

    glob = str(tmp_path / "split" / "io*.mcap")
    for source in (parts[0], tmp_path / "split", glob):
        episodes = recorded_observation_episodes(Runner(), [source])
        expected = recorded_observation_episodes(Runner(), [whole])
        assert [[o.stamp_ns for o in ep] for ep in episodes] == [[o.stamp_ns for o in ep] for ep in expected]
        assert [ep[0].instruction for ep in episodes] == ["task 0", "task 1"]

    reports = []
    for source in (whole, glob):
        out = tmp_path / f"report{len(reports)}.json"
        assert replay([str(source), "--checkpoint", str(tiny_checkpoint), "--fixed-exit", "1", "--json",
                       str(out)]) == 0
        reports.append(json.loads(out.read_text()))
    assert reports[0] == reports[1] and reports[0]["steps"] == 24
    parts[1].unlink()
    assert replay([str(parts[0]), "--checkpoint", str(tiny_checkpoint)]) == 2
    assert f"part {parts[1]} is missing" in capsys.readouterr().err


def test_a_restarted_recorder_moves_the_earlier_recording_aside_with_its_parts(tmp_path):
    from deer_vla.data.recording import read_recording
    from deer_vla.ros.recorder import PolicyRecorder

    parts = _record(tmp_path / "io.mcap", SplitLimits(max_bytes=40 * 1024, max_seconds=0), steps=12)
    assert len(parts) >= 3
    rec = PolicyRecorder(tmp_path / "io.mcap", ("static", "wrist"))
    rec.close()
    assert rec.moved_aside == tmp_path / "io.1.mcap"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["io.mcap", "io.1.mcap"] + [f"io.1_{n}.mcap" for n in range(1, len(parts))])
    assert [s.record.step for s in read_recording(tmp_path / "io.1.mcap")] == list(range(12))
    assert read_recording(tmp_path / "io.mcap") == []


# -- parameters ----------------------------------------------------------------------------------------------

def test_split_parameters_are_validated_with_their_names():
    from deer_vla.ros.params import POLICY_DEFAULTS, ParameterError, parse_params

    params = parse_params(POLICY_DEFAULTS)
    assert params.record_split == SplitLimits(max_bytes=256 * 2**20, max_seconds=3600.0)
    assert parse_params({**POLICY_DEFAULTS, "record_split_mib": 0, "record_split_s": 0}).record_split == NO_SPLIT
    assert parse_params({**POLICY_DEFAULTS, "record_keep_parts": 5}).record_split.keep_parts == 5
    with pytest.raises(ValueError, match="record_keep_parts"):
        parse_params({**POLICY_DEFAULTS, "record_keep_parts": -2})
    with pytest.raises(ParameterError, match=r"'record_split_mib' = 0.5: .*at least 1 MiB") as err:
        parse_params({**POLICY_DEFAULTS, "record_split_mib": 0.5, "record_split_s": float("nan")})
    assert "'record_split_s' = nan" in str(err.value)


def test_the_monitor_splits_steps_mcap_and_jsonl_together_and_they_read_back_whole(executor, tmp_path):
    from rclpy.parameter import Parameter
    from std_msgs.msg import String

    from deer_vla.core import StepRecord
    from deer_vla.ros.monitor_node import RECORD_TOPIC_MCAP, MonitorNode

    def params(**values: object) -> list:
        return [Parameter(k, value=v) for k, v in {"log_dir": str(tmp_path), "run_name": "r", "write_plot": False,
                                                   **values}.items()]

    with pytest.raises(ValueError, match="parameter 'log_split_s' must be 0 .no time limit. or at least 10 s"):
        MonitorNode(parameter_overrides=params(log_split_s=0.5))
    node = MonitorNode(parameter_overrides=params(log_split_mib=0, log_split_s=10))
    try:
        for step in range(6):
            if step == 3:
                assert node._log_writer.drain(5.0)  # steps 0-2 written (on the logs' thread) before the clock moves
                node._mcap._part_started -= 11  # ten seconds on, without waiting for them
            node._on_record(String(data=StepRecord(step=step, episode=0, exit_used=1, max_exit=1,
                                                   stop_reason="fixed", llm_gflops=1.0, total_gflops=1.0,
                                                   stamp_ns=1_000 + step).to_json()))
    finally:
        summary = node.close()
        node.destroy_node()
    assert summary["mcap_parts"] == 2 and (tmp_path / "r" / "steps_1.mcap").is_file()
    steps = [json.loads(m.message.data)["step"] for m in read_log(tmp_path / "r" / "steps.mcap", [RECORD_TOPIC_MCAP])]
    assert steps == list(range(6))
    assert len(list(read_messages(tmp_path / "r" / "steps_1.mcap"))) == 6  # record + metrics per step, not cut
    # steps.jsonl goes on in steps_1.jsonl with it (a soak would otherwise grow one file without bound), each
    # JSONL part holding the records of the MCAP part with its number
    assert summary["jsonl_parts"] == 2
    for name in ("steps", "steps_1"):
        in_jsonl = [json.loads(line)["step"] for line in (tmp_path / "r" / f"{name}.jsonl").read_text().splitlines()]
        in_mcap = [json.loads(m.message.data)["step"] for m in read_messages(tmp_path / "r" / f"{name}.mcap")
                   if m.topic == RECORD_TOPIC_MCAP]
        assert in_jsonl == in_mcap and in_jsonl
    # the MCAP moving on by two parts between records (a disk that filled up twice): the JSONL follows to the
    # same number and goes on there (it tried to open its new part again at every record)
    jumpy = MonitorNode(parameter_overrides=params(run_name="j"))
    try:
        jumpy._on_record(String(data=StepRecord(step=0, episode=0, exit_used=1, max_exit=1, stop_reason="fixed",
                                                llm_gflops=1.0, total_gflops=1.0, stamp_ns=1_000).to_json()))
        assert jumpy._log_writer.drain(5.0)  # step 0 written (on the logs' thread) before the parts move on
        for _ in range(2):
            with jumpy._mcap._lock:
                jumpy._mcap._next_part()
        for step in (1, 2):
            jumpy._on_record(String(data=StepRecord(step=step, episode=0, exit_used=1, max_exit=1,
                                                    stop_reason="fixed", llm_gflops=1.0, total_gflops=1.0,
                                                    stamp_ns=1_000 + step).to_json()))
        assert jumpy._log_writer.drain(5.0) and jumpy.log_errors == 0
    finally:
        jumpy.close()
        jumpy.destroy_node()
    assert [json.loads(line)["step"] for line in (tmp_path / "j" / "steps_2.jsonl").read_text().splitlines()] == [1, 2]
    # log_keep_parts: the oldest parts of both logs go as new ones begin
    kept = MonitorNode(parameter_overrides=params(run_name="k", log_split_mib=0, log_split_s=10, log_keep_parts=2))
    try:
        for step in range(8):
            if step in (2, 4, 6):
                assert kept._log_writer.drain(5.0)  # the steps before written before the clock moves on
                kept._mcap._part_started -= 11
            kept._on_record(String(data=StepRecord(step=step, episode=0, exit_used=1, max_exit=1, stop_reason="fixed",
                                                   llm_gflops=1.0, total_gflops=1.0, stamp_ns=1_000 + step).to_json()))
    finally:
        kept_summary = kept.close()
        kept.destroy_node()
    assert kept_summary["mcap_parts"] == 4 and kept_summary["deleted_parts"] == 2
    assert sorted(p.name for p in (tmp_path / "k").glob("steps*")) == [
        "steps_2.jsonl", "steps_2.mcap", "steps_3.jsonl", "steps_3.mcap"]
    with pytest.raises(ValueError, match="parameter 'log_keep_parts' must be an integer"):
        MonitorNode(parameter_overrides=params(run_name="bad", log_keep_parts=-1))
    # a restart with the same run name finds the folder taken, even with only a JSONL part left in it
    for name in ("steps.jsonl", "steps.mcap", "steps_1.mcap"):
        (tmp_path / "r" / name).unlink()
    again = MonitorNode(parameter_overrides=params())
    try:
        assert again.log_dir == tmp_path / "r.1"
    finally:
        again.destroy_node()


DISK_FULL_SCRIPT = r"""
import os, resource, signal, sys, warnings
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
from deer_vla.data.mcap_io import NO_SPLIT, McapLog
from deer_vla.data.mcap_parts import read_log
path, fails_in = sys.argv[1], sys.argv[2]
# "flush": each message flushed, a chunk fails in flush(); "write": small chunks, never flushed, so a chunk goes
# out, and fails, inside write() itself
log = McapLog(path, flush_interval_s=1000, split=NO_SPLIT, **({"chunk_bytes": 4096} if fails_in == "write" else {}))
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
failed = 0
def write(i):
    global failed
    try:
        # incompressible, image-sized: a chunk is bigger than the file's 8 KiB buffer, so a write can fail partway
        log.write("/t", "std_msgs/msg/String", {"data": f"{i:05d}" + os.urandom(10000).hex()}, 1000 + i)
        if fails_in == "flush":
            log.flush()
    except OSError:
        failed += 1
for i in range(10):
    write(i)
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + 5000, hard))  # the disk fills up
for i in range(10, 20):
    write(i)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # and has room again
for i in range(20, 30):
    write(i)
log.close()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    got = [int(m.message.data[:5]) for m in read_log(path)]
print(repr((failed, len(log.parts), got, [str(w.message) for w in caught])))
"""


@pytest.mark.parametrize("fails_in", ["flush", "write"])
def test_a_log_whose_disk_filled_up_reads_back_what_was_written_before_and_after(tmp_path, fails_in):
    """A chunk write that failed partway (disk full) left half a chunk, and the log went on after it in the same
    file: reading stopped there with a ZstdError traceback, and every message written after the disk recovered
    was lost. The writer now goes on in a new part, and the reader reads each part up to a damaged chunk; so
    too for a chunk that fails inside write() itself (a small chunk size, no flush), not only in flush()."""
    import ast
    import subprocess
    import sys

    path = tmp_path / "steps.mcap"
    out = subprocess.run([sys.executable, "-c", DISK_FULL_SCRIPT, str(path), fails_in], capture_output=True,
                         text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.returncode == 0, out.stderr
    failed, parts, got, warned = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    assert failed >= 1 and parts == 2
    assert got[-10:] == list(range(20, 30)), got
    assert got == sorted(got)
    if fails_in == "flush":  # (each message flushed: all before the disk filled are whole)
        assert got[:10] == list(range(10)), got
        assert any("damaged" in w or "cut off" in w for w in warned), warned


def test_a_folder_of_two_logs_names_the_one_that_holds_the_topic_asked(tmp_path):
    """`deer-vla replay deer_vla_logs/demo_<t>` was refused: every demo folder holds the policy's recording and the
    monitor's steps.mcap. A reader asking for a topic takes the one log that holds it; with none or both, the
    folder is still refused."""
    recording = McapLog(tmp_path / "policy_io.mcap")
    recording.write("/deer_vla/policy/output/record", "std_msgs/msg/String", {"data": "{}"}, 1)
    recording.close()
    steps = McapLog(tmp_path / "steps.mcap")
    _write(steps, 0, 3)
    steps.close()
    assert log_parts(tmp_path, "/deer_vla/policy/output/record") == [tmp_path / "policy_io.mcap"]
    assert log_parts(str(tmp_path / "*.mcap"), TOPIC) == [tmp_path / "steps.mcap"]
    for topic in (None, "/elsewhere"):
        with pytest.raises(ValueError, match="holds 2 MCAP logs"):
            log_parts(tmp_path, topic)
    # the monitor killed: its log has no summary to say what it holds; the one that says it holds the topic is taken
    cut = (tmp_path / "steps.mcap").read_bytes()
    (tmp_path / "steps.mcap").write_bytes(cut[: len(cut) // 2])
    assert log_parts(tmp_path, "/deer_vla/policy/output/record") == [tmp_path / "policy_io.mcap"]


def test_a_folder_with_a_finished_recording_and_one_cut_short_names_both(tmp_path):
    """A second run killed beside a finished one: the cut-short file has no summary to say what it holds, and was
    passed over for the finished one without a word. Its readable start says it holds the topic too: refused."""
    record = "/deer_vla/policy/output/record"
    for name in ("policy_io.mcap", "policy_io_later.mcap"):
        log = McapLog(tmp_path / name)
        for i in range(3):
            log.write(record, "std_msgs/msg/String", {"data": "{}"}, i)
        log.flush()
        cut = (tmp_path / name).read_bytes()  # as a SIGKILL leaves it: no summary, no footer
        log.close()
        if name == "policy_io_later.mcap":
            (tmp_path / name).write_bytes(cut)
    later = tmp_path / "policy_io_later.mcap"
    assert not is_finished(later)
    with pytest.raises(ValueError, match="holds 2 MCAP logs"):
        log_parts(tmp_path, record)
    # cut short before any channel was written, it holds no message to replay: the one that holds the topic
    later.write_bytes(later.read_bytes()[:8])
    assert log_parts(tmp_path, record) == [tmp_path / "policy_io.mcap"]
