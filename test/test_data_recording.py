"""The policy node's recordings read back (replay, calibrate --recording): a damaged or foreign file fails with
one message naming the file, the topic and the log time, never a traceback or a step built from garbage."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deer_vla.core import StepRecord
from deer_vla.data.mcap_io import McapFormatError, McapLog
from deer_vla.data.recording import ACTION, INSTRUCTION, PROPRIO, RECORD, RecordingError, image_topic, read_recording

IMAGE = {"header": {"stamp": {"sec": 0, "nanosec": 0}, "frame_id": ""}, "height": 16, "width": 16,
         "encoding": "rgb8", "is_bigendian": 0, "step": 48, "data": bytes(16 * 48)}


def _array(values: list[float]) -> dict:
    return {"layout": {"dim": [], "data_offset": 0}, "data": values}


def _record(step: int) -> dict:
    return {"data": StepRecord(step=step, episode=0, exit_used=1, max_exit=1, stop_reason="fixed", llm_gflops=1.0,
                               total_gflops=1.0).to_json()}


def _write(path: Path, replace: dict[str, tuple[str, dict]] | None = None, steps: int = 3) -> Path:
    """A recording as PolicyRecorder writes it; ``replace``: topic -> (type, message) written instead."""
    log = McapLog(path)
    for i in range(steps):
        messages = {image_topic("static"): ("sensor_msgs/msg/Image", IMAGE),
                    INSTRUCTION: ("std_msgs/msg/String", {"data": "reach the goal"}),
                    PROPRIO: ("std_msgs/msg/Float32MultiArray", _array([0.1, 0.2])),
                    ACTION: ("std_msgs/msg/Float32MultiArray", _array([0.0] * 7)),
                    RECORD: ("std_msgs/msg/String", _record(i))}
        messages.update(replace or {})
        for topic, (datatype, msg) in messages.items():
            log.write(topic, datatype, msg, 1000 + i)
    log.close()
    return path


def test_a_whole_recording_reads_back_step_by_step(tmp_path):
    steps = read_recording(_write(tmp_path / "ok.mcap"))
    assert [s.record.step for s in steps] == [0, 1, 2] and steps[1].instruction == "reach the goal"
    np.testing.assert_allclose(steps[1].proprio, [0.1, 0.2], rtol=1e-6)
    assert steps[1].images["static"].shape == (16, 16, 3) and steps[1].action7.shape == (7,)


@pytest.mark.parametrize("topic, message, expected", [
    (image_topic("static"), ("std_msgs/msg/Float32MultiArray", _array([1.0])),
     "type std_msgs/msg/Float32MultiArray, expected sensor_msgs/msg/Image"),  # AttributeError traceback before
    (image_topic("static"), ("sensor_msgs/msg/Image", {**IMAGE, "data": bytes(10)}), "image data truncated"),
    (RECORD, ("std_msgs/msg/Float32MultiArray", _array([1.0])), "expected std_msgs/msg/String"),  # TypeError before
    (RECORD, ("std_msgs/msg/String", {"data": "{not json"}), "Expecting property name"),
    (INSTRUCTION, ("std_msgs/msg/Float32MultiArray", _array([1.0])), "expected std_msgs/msg/String"),
    (PROPRIO, ("std_msgs/msg/Float32MultiArray", _array([float("nan"), 0.0])), "NaN or inf in [nan, 0.0]"),
    (ACTION, ("std_msgs/msg/Float32MultiArray", _array([0.0] * 3)), "3 values, expected 7"),  # replayed as inf
])
def test_a_damaged_message_is_refused_naming_file_topic_and_time(tmp_path, topic, message, expected):
    path = _write(tmp_path / "damaged.mcap", {topic: message})
    with pytest.raises(RecordingError) as info:
        read_recording(path)
    assert str(info.value).startswith(f"{path}: {topic} at 1000 ns: ") and expected in str(info.value)


def test_a_file_that_is_not_mcap_is_refused(tmp_path):
    path = tmp_path / "notes.mcap"
    path.write_text("a text file saved as .mcap\n")
    with pytest.raises(McapFormatError, match=f"{path}: not an MCAP file"):
        read_recording(path)


def test_an_empty_file_is_said_to_be_empty_not_cut_off(tmp_path):
    """A writer killed before its header leaves 0 bytes (or part of the magic): read as no messages, said as an
    empty file, not "was not closed and is cut off"."""
    from deer_vla.data.mcap_io import MAGIC, TruncatedMcapWarning, read_messages

    for data in (b"", MAGIC[:3]):
        path = tmp_path / "empty.mcap"
        path.write_bytes(data)
        with pytest.warns(TruncatedMcapWarning, match=f"MCAP file {path} is empty \\({len(data)} bytes: its writer "
                                                      "stopped before its header was written\\?\\); no messages"):
            assert list(read_messages(path)) == []


def test_a_chunk_whose_data_no_longer_matches_its_checksum_is_said_and_not_replayed(tmp_path):
    """A bit flipped on disk inside a chunk: the recording read back (replay, calibrate) with a damaged frame and
    no word. Chunk checksums are checked; the damaged chunk's steps are left out, with a warning saying why."""
    from deer_vla.data.mcap_io import TruncatedMcapWarning

    path = _write(tmp_path / "flipped.mcap")
    data = bytearray(path.read_bytes())
    at = 8  # after the magic: records are opcode (1 byte), length (u64), content; the first chunk's
    while data[at] != 0x06:
        at += 9 + int.from_bytes(data[at + 1:at + 9], "little")
    crc = at + 9 + 24  # after its start and end times and uncompressed size
    assert int.from_bytes(data[crc:crc + 4], "little") != 0
    data[crc] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.warns(TruncatedMcapWarning, match=f"MCAP file {path} is damaged after 0 message\\(s\\) \\(a chunk's "
                                                  "checksum does not match its data"):
        assert read_recording(path) == []


def test_a_step_that_lost_part_of_itself_is_left_out_not_completed_from_its_neighbour(tmp_path):
    """After a write that failed partway (disk full) the log goes on in a new part, which can begin inside a step.
    The reader carried the previous step's action over and cleared only the images: a step with no image ended
    replay in a KeyError, and one that lost its action was replayed with its neighbour's."""
    from deer_vla.data.mcap_io import TruncatedMcapWarning

    path = tmp_path / "torn.mcap"
    log = McapLog(path)
    for i in range(4):
        messages = {image_topic("static"): ("sensor_msgs/msg/Image", IMAGE),
                    INSTRUCTION: ("std_msgs/msg/String", {"data": "reach the goal"}),
                    ACTION: ("std_msgs/msg/Float32MultiArray", _array([0.1 * i] * 7)),
                    RECORD: ("std_msgs/msg/String", _record(i))}
        if i == 1:
            del messages[image_topic("static")]  # its image was in the damaged chunk
        if i == 2:
            del messages[ACTION]
        for topic, (datatype, msg) in messages.items():
            log.write(topic, datatype, msg, 1000 + i)
    log.write(image_topic("static"), "sensor_msgs/msg/Image", IMAGE, 1004)  # a step cut off by the crash
    log.close()
    with pytest.warns(TruncatedMcapWarning, match=r"3 incomplete step\(s\) left out") as caught:
        steps = read_recording(path)
    assert [s.record.step for s in steps] == [0, 3]
    np.testing.assert_allclose(steps[1].action7, [0.3] * 7, rtol=1e-6)
    assert f"{path} at 1001 ns" in str(caught[0].message)


def test_the_policy_message_is_stamped_on_the_steps_clock_and_comes_first(tmp_path):
    """Under use_sim_time the steps carry sim-time stamps (~100 s) while the policy message carried the wall clock
    (2026): the file's time range spanned 57 years, and a tool rewriting it in log-time order put the policy
    message after every step, where recorded_policy no longer finds it."""

    from mcap.reader import make_reader
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from deer_vla.data.recording import POLICY, read_recording, recorded_policy
    from deer_vla.ros.recorder import PolicyRecorder

    path = tmp_path / "policy_io.mcap"
    policy = {"checkpoint": "c", "weights_sha256": "w" * 64, "thresholds": "t"}
    rec = PolicyRecorder(path, ("static",), policy=policy)
    stamps = [100_000_000_000 + i * 100_000_000 for i in range(3)]
    for i, stamp in enumerate(stamps):
        image = Image(height=8, width=8, encoding="rgb8", step=24, data=bytes(192))
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp, 10**9)
        record = String(data=json.dumps({"step": i, "episode": 0, "exit_used": 1, "max_exit": 1,
                                         "stop_reason": "threshold", "llm_gflops": 0.1, "total_gflops": 0.1,
                                         "total_ms": 1.0, "stamp_ns": stamp}))
        rec.write_step({"static": image}, "open the drawer", None, np.zeros(7, np.float32),
                       record, stamp)
    rec.close()
    with open(path, "rb") as f:
        reader = make_reader(f)
        statistics = reader.get_summary().statistics
        assert (statistics.message_start_time, statistics.message_end_time) == (stamps[0], stamps[-1])
        in_time_order = [channel.topic for _, channel, _ in reader.iter_messages(log_time_order=True)]
    assert in_time_order[0] == POLICY
    assert recorded_policy(path) == policy and len(read_recording(path)) == 3


def test_the_recorder_refuses_what_is_not_an_image_message(tmp_path):
    """The MCAP writer serialised any object: a caller still passing the node's frames (an object holding the
    message) wrote empty images, and a benchmark measured files of nothing."""
    from types import SimpleNamespace

    import numpy as np
    import pytest
    from std_msgs.msg import String

    from deer_vla.ros.image_conv import rgb_to_image_msg
    from deer_vla.ros.recorder import PolicyRecorder

    rec = PolicyRecorder(tmp_path / "io.mcap", ("static",))
    image = rgb_to_image_msg(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(TypeError, match="camera 'static': a sensor_msgs/Image"):
        rec.write_step({"static": SimpleNamespace(msg=image)}, "x", None, np.zeros(7), String(data="{}"), 1)
    rec.write_step({"static": image}, "x", None, np.zeros(7), String(data="{}"), 1)
    rec.close()
    assert rec.steps == 1


def test_images_read_at_the_models_size_are_the_pixels_the_model_would_resize_them_to(tmp_path):
    """Replay and calibrate --recording read a recording's frames at the model's input size as they go: every
    frame held at full size made a 90 s recording of two 1080p cameras 8.7 GB of memory."""
    from deer_vla.core.image_resize import resize_rgb

    pixels = np.random.default_rng(0).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    path = _write(tmp_path / "big.mcap", {image_topic("static"): ("sensor_msgs/msg/Image",
                                                                   {**IMAGE, "data": pixels.tobytes()})})
    full, small = read_recording(path), read_recording(path, image_size=8)
    assert [s.images["static"].shape for s in small] == [(8, 8, 3)] * 3
    np.testing.assert_array_equal(small[0].images["static"], resize_rgb(full[0].images["static"], 8))
    np.testing.assert_array_equal(full[0].images["static"], pixels)
