"""Teleoperation recordings in: an MCAP written like rosbag2 (CDR via rclpy serialization) imports time-aligned at
the control rate, split at gaps and instruction changes, with twist velocities as the action."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from robot_data_support import JOINTS, TELEOP_INSTRUCTIONS, teleop_twist, write_teleop_mcap

from deer_vla.data.episodes import DatasetError, EpisodeDataset
from deer_vla.data.import_mcap import McapSources, cli_main, import_mcap

pytest.importorskip("rclpy")

SOURCES = dict(cameras={"static": "/camera/image_raw", "wrist": "/wrist/image/compressed"},
               action="/servo/delta_twist_cmds", instruction_topic="/instruction", gripper="/gripper_cmd",
               proprio="/joint_states")


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_teleop_mcap(tmp_path_factory.mktemp("bag") / "teleop_0.mcap")


def test_ticks_take_the_latest_message_and_episodes_split_at_gaps_and_new_instructions(recording, tmp_path):
    summary = import_mcap(recording, tmp_path / "out", McapSources(**SOURCES), rate_hz=10.0, image_size=24)
    ds = EpisodeDataset(tmp_path / "out")
    meta = ds.meta
    assert meta.control_rate_hz == 10.0 and meta.cameras == ("static", "wrist")
    spec = meta.action_spec
    assert spec["units"] == ["m/s"] * 3 + ["rad/s"] * 3  # a twist is a velocity
    assert meta.proprio_spec["names"] == list(JOINTS)
    episodes = sorted(ds, key=lambda e: e.seed)
    assert [e.instruction for e in episodes] == list(TELEOP_INSTRUCTIONS) and summary["dropped_ticks"] > 0
    starts = [json.loads(line)["start_ns"] for line in (tmp_path / "out/import_map.jsonl").read_text().splitlines()]
    # the first tick waits for every stream: the wrist camera's first frame at 0.203 s
    assert starts[0] == 203_000_000
    first = episodes[0]
    # stream pause at 2.4 s: ticks continue while the latest data is younger than max_age (0.5 s), then the
    # episode ends; the 1-tick stretch between the pause and the new instruction at 3.5 s is too short to keep
    assert first.length == len(np.arange(0.203, 2.35 + 0.5, 0.1))
    scale = np.asarray(spec["scale"])
    for k in range(first.length):
        tick = 0.203 + 0.1 * k
        t_msg = 0.2 + 0.05 * np.floor((tick - 0.201) / 0.05 + 1e-9)  # latest twist at or before the tick
        t_msg = min(t_msg, 2.35)  # nothing arrives in the pause
        lin, ang = teleop_twist(t_msg, TELEOP_INSTRUCTIONS[0])
        np.testing.assert_allclose(first.actions[k, :6], np.clip(np.r_[lin, ang] / scale, -1, 1), atol=1e-5)
        np.testing.assert_allclose(first.proprio[k], [t_msg, -t_msg, 0.5 * t_msg], atol=1e-6)
    assert first.actions[0, 6] == -1.0  # no gripper message yet: open
    second = episodes[1]
    yaw = second.actions[:, spec["axes"].index("yaw")]
    assert np.all(yaw > 0.5)  # turning the valve is mostly yaw, carried as rad/s


def test_array_actions_and_one_instruction(tmp_path):
    import cv2
    from robot_data_support import RosbagLikeWriter
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Float32MultiArray

    w = RosbagLikeWriter(tmp_path / "arm.mcap")
    for k in range(30):
        t = int(k * 1e8)
        ok, png = cv2.imencode(".png", np.full((16, 16, 3), k * 8, np.uint8))
        w.write("/cam", CompressedImage(format="png", data=png.tobytes()), t)
        w.write("/cmd", Float32MultiArray(data=[0.01 * k, 0.5, -0.2, 0.3 if k > 15 else 0.9]), t + 1000)
    w.close()
    with pytest.raises(DatasetError, match="--action-axes"):
        import_mcap(tmp_path / "arm.mcap", tmp_path / "a", McapSources({"static": "/cam"}, "/cmd", instruction="x"),
                    rate_hz=5.0)
    assert cli_main([str(tmp_path / "arm.mcap"), "--out", str(tmp_path / "b"), "--image-topic", "/cam",
                     "--action-topic", "/cmd", "--action-axes", "z,-,yaw,gripper", "--gripper-open", "0.9",
                     "--gripper-closed", "0.3", "--instruction", "stack the cups", "--rate", "10"]) == 0
    ds = EpisodeDataset(tmp_path / "b")
    (ep,) = list(ds)
    assert ds.meta.action_spec["axes"] == ["z", "yaw"] and ds.meta.action_spec["units"] == ["m", "rad"]
    assert ep.instruction == "stack the cups" and ep.proprio is None and ds.meta.proprio_dim == 0
    # raw 0.9 = open -> -1, raw 0.3 = closed -> +1
    np.testing.assert_allclose(ep.actions[:, -1], np.where(np.arange(ep.length) > 15, 1.0, -1.0), atol=1e-6)
    np.testing.assert_allclose(ep.images["static"].reshape(ep.length, -1).mean(1), np.arange(ep.length) * 8,
                               atol=1.0)  # 10 Hz ticks take each 10 Hz frame (deltas at their own rate)


def _arm_recording(path: Path, cam=None, action=None, late_at: int | None = None, finish: bool = True,
                   start_ns: int = 0) -> Path:
    """/cam (PNG, 10 Hz) and /cmd (4-value array) like test_array_actions_and_one_instruction; ``late_at``: after
    message k of /cmd, one more /cmd stamped 0.5 s earlier (an unclosed file is read in file order)."""
    import cv2
    from robot_data_support import RosbagLikeWriter
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Float32MultiArray

    w = RosbagLikeWriter(path)
    for k in range(30):
        t = start_ns + int(k * 1e8)
        ok, png = cv2.imencode(".png", np.full((16, 16, 3), k * 8, np.uint8))
        w.write("/cam", cam(k) if cam else CompressedImage(format="png", data=png.tobytes()), t)
        w.write("/cmd", action(k) if action else Float32MultiArray(data=[0.01 * k, 0.5, -0.2, 0.3]), t + 1000)
        if k == late_at:
            w.write("/cmd", Float32MultiArray(data=[9.0, 0.5, -0.2, 0.3]), t + 1000 - 500_000_000)
    w.close()
    if not finish:  # as if the recorder was killed before its footer: the closing magic is missing
        path.write_bytes(path.read_bytes()[:-8])
    return path


ARM = ["--image-topic", "/cam", "--action-topic", "/cmd", "--action-axes", "z,-,yaw,gripper", "--gripper-open", "0.9",
       "--gripper-closed", "0.3", "--instruction", "stack the cups", "--rate", "10"]


def test_broken_recordings_are_refused_in_one_line_naming_file_topic_and_time(recording, tmp_path, capsys):
    from std_msgs.msg import Float32MultiArray

    text = tmp_path / "notes.mcap"
    text.write_text("a text file saved as .mcap\n")
    wrong_cam = _arm_recording(tmp_path / "cam.mcap", cam=lambda k: Float32MultiArray(data=[1.0]))
    nan = _arm_recording(tmp_path / "nan.mcap",
                         action=lambda k: Float32MultiArray(data=[float("nan") if k == 6 else 0.0, 0.5, -0.2, 0.3]))
    ok = _arm_recording(tmp_path / "ok.mcap")
    twist = ["--image-topic", "/camera/image_raw", "--action-topic", "/servo/delta_twist_cmds", "--instruction-topic",
             "/instruction", "--rate", "10", "--image-size", "16"]
    cases = [
        ([str(text), *ARM], f"{text}: not an MCAP file"),
        ([str(wrong_cam), *ARM], f"{wrong_cam}: /cam at 0 ns: camera type std_msgs/msg/Float32MultiArray not "
                                 "supported (use sensor_msgs/msg/Image, sensor_msgs/msg/CompressedImage)"),
        ([str(nan), *ARM], f"{nan}: /cmd at 600001000 ns: NaN or inf in [nan, 0.5"),
        ([str(recording), *twist, "--gripper-topic", "/joint_states"],  # JointState where a Float64 belongs
         f"{recording}: /joint_states at 202000000 ns: gripper type sensor_msgs/msg/JointState not supported"),
        ([str(recording), "--image-topic", "/camera/image_raw", "--action-topic", "/servo/delta_twist_cmds",
          "--instruction-topic", "/joint_states", "--rate", "10"],  # a JointState read as the instruction text
         f"{recording}: /joint_states at 202000000 ns: instruction type sensor_msgs/msg/JointState not supported"),
        ([str(ok), *ARM[:-4], "--instruction", "  ", "--rate", "5"], "--instruction is empty ('  ')"),
        ([str(ok), *ARM[:-1], "inf"], "--rate must be a number of steps per second, got inf"),  # looped forever
        ([str(ok), *ARM, "--max-age", "nan"], "--max-age must be > 0 seconds, got nan"),
        # 1e6 for 10: each camera frame repeated a hundred thousand times filled 30 GiB before the end; past the
        # policy's control rates now, and 900 (in them) still repeats each frame too often
        ([str(ok), *ARM[:-1], "1e6"], "--rate must be in 0.01..1000 Hz, got 1e+06"),
        ([str(ok), *ARM[:-1], "900"], f"{ok}: /cam at "),
        ([str(ok), *ARM, "--image-size", "0"], "--image-size must be an integer in 8..4096 px, got 0"),
    ]
    for i, (argv, expected) in enumerate(cases):
        out = tmp_path / f"out{i}"
        assert cli_main([argv[0], "--out", str(out), *argv[1:]]) == 2, expected
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"deer-vla import-mcap: {expected}") and "\n" not in err, (expected, err)
        assert not out.exists()


def test_an_older_message_read_late_from_an_unclosed_file_does_not_replace_a_newer_one(tmp_path, capsys):
    """A recorder killed before its footer: the file is read in file order, where a message can come after a
    newer one of its topic. It must not become "the latest" (its 9.0 would be the action of the next ticks and
    its age would end the episode there); it is counted and said."""
    path = _arm_recording(tmp_path / "killed.mcap", late_at=20, finish=False)
    argv = [str(path), "--out", str(tmp_path / "out"), *ARM]
    assert cli_main(argv) == 0
    out = capsys.readouterr()
    assert "1 late message(s) ignored: older than one already read on their topic" in out.out
    assert "was not closed" in out.err
    ds = EpisodeDataset(tmp_path / "out")
    (ep,) = list(ds)
    scale = ds.meta.action_spec["scale"][0]  # raw z of tick j: message j's 0.01 * j, clipped at scale
    assert ep.length == 30 and np.allclose(ep.actions[:, 0] * scale, np.minimum(0.01 * np.arange(30), scale),
                                           atol=1e-5)


def test_a_damaged_chunk_a_malformed_message_or_an_empty_frame_is_one_line_naming_where(tmp_path, capsys):
    """Each was a traceback (ZstdError, struct.error, DecoderNotFoundError, cv2.error) naming nothing."""
    import cv2
    from robot_data_support import RosbagLikeWriter
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Float32MultiArray

    def recording(path: Path, bad_cmd: bytes | None = None, empty_frame_at: int | None = None) -> Path:
        w = RosbagLikeWriter(path)
        for k in range(30):
            t = int(k * 1e8)
            ok, png = cv2.imencode(".png", np.full((16, 16, 3), k * 8, np.uint8))
            w.write("/cam", CompressedImage(format="png", data=b"" if k == empty_frame_at else png.tobytes()), t)
            w.write("/cmd", Float32MultiArray(data=[0.01 * k, 0.5, -0.2, 0.3]), t + 1000)
            if k == 6 and bad_cmd is not None:  # a publisher's broken serialization
                w.writer.add_message(w.channels["/cmd"], log_time=t + 2000, data=bad_cmd, publish_time=t + 2000)
        w.close()
        return path

    damaged = recording(tmp_path / "damaged.mcap")
    data = bytearray(damaged.read_bytes())
    at = 8  # after the magic: records are opcode (1 byte), length (u64), content; damage the first chunk's
    while data[at] != 0x06:
        at += 9 + int.from_bytes(data[at + 1:at + 9], "little")
    content = at + 9  # start, end times, uncompressed size and crc, compression name, then the records
    compression = int.from_bytes(data[content + 28:content + 32], "little")
    first = content + 32 + compression + 8
    data[first + 1:first + 9] = (1 << 40).to_bytes(8, "little")  # its first record claims a terabyte
    damaged.write_bytes(bytes(data))
    # a chunk whose data no longer matches its checksum (a flipped bit on disk: imported without a word, a
    # damaged frame and all); its recorded uncompressed CRC is flipped here, the records left readable
    flipped = recording(tmp_path / "flipped.mcap")
    data = bytearray(flipped.read_bytes())
    assert data[at] == 0x06 and int.from_bytes(data[content + 24:content + 28], "little") != 0
    data[content + 24] ^= 0x01
    flipped.write_bytes(bytes(data))
    cases = [
        (damaged, f"{damaged}: cannot read past message"),
        (flipped, f"{flipped}: cannot read past message 0 in log-time order (CRCValidationError"),
        (recording(tmp_path / "malformed.mcap", bad_cmd=b"\x00\x01\x00\x00\x05"),
         f"{tmp_path / 'malformed.mcap'}: /cmd at 600002000 ns: the message does not decode as "
         "std_msgs/msg/Float32MultiArray"),
        (recording(tmp_path / "empty.mcap", empty_frame_at=4),
         f"{tmp_path / 'empty.mcap'}: /cam at 400000000 ns: compressed image (format 'png') is empty"),
    ]
    for path, expected in cases:
        out = tmp_path / f"{path.stem}_out"
        assert cli_main([str(path), "--out", str(out), *ARM]) == 2, expected
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"deer-vla import-mcap: {expected}") and "\n" not in err, (expected, err)
        assert not out.exists()


def test_an_instruction_of_invisible_characters_alone_is_refused() -> None:
    """`--instruction` made of zero-width characters passed the emptiness check: the data set would train
    the model on no instruction (the runner and the node refuse such a text at run time)."""
    sources = {k: v for k, v in SOURCES.items() if k != "instruction_topic"}
    with pytest.raises(DatasetError, match="--instruction is empty"):
        McapSources(**sources, instruction="\u200b\u2060 ")


def _twist_recording(path: Path, grip_from_s: float | None, grip_value: float = 0.08, instructions=None,
                     seconds: float = 4.0, frame=lambda k: "") -> Path:
    """/cam (rgb8, 10 Hz) and /cmd (TwistStamped); /grip (Float64) only from ``grip_from_s`` on (a driver that
    publishes on change); /instruction at each tick from ``instructions(t)`` when given."""
    from geometry_msgs.msg import TwistStamped
    from robot_data_support import RosbagLikeWriter
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float64, String

    w = RosbagLikeWriter(path)
    for k in range(int(seconds * 10)):
        t = int(k * 1e8)
        w.write("/cam", Image(height=16, width=16, encoding="rgb8", step=48,
                              data=np.full(768, k * 5 % 256, np.uint8).tobytes()), t)
        if instructions is not None:
            w.write("/instruction", String(data=instructions(k / 10)), t + 500)
        twist = TwistStamped()
        twist.header.frame_id = frame(k)
        twist.twist.linear.x, twist.twist.angular.z = 0.05 * np.sin(k), 0.1 * np.cos(k)
        w.write("/cmd", twist, t + 1000)
        if grip_from_s is not None and k / 10 >= grip_from_s:
            w.write("/grip", Float64(data=grip_value), t + 2000)
    w.close()
    return path


TWIST = ["--image-topic", "/cam", "--action-topic", "/cmd", "--rate", "10"]


def test_a_gripper_not_heard_yet_is_open_in_the_gripper_s_own_units(tmp_path, capsys):
    """Before the gripper topic's first message the twist's gripper is open. It was the normalised -1 put through
    the raw mapping: with a gripper measured in metres of opening (0.08 m open) the first 2 s became closed."""
    rec = _twist_recording(tmp_path / "late.mcap", grip_from_s=2.0)
    assert cli_main([str(rec), "--out", str(tmp_path / "a"), *TWIST, "--gripper-topic", "/grip",
                     "--gripper-open", "0.08", "--gripper-closed", "0", "--instruction", "wipe the table"]) == 0
    grips = np.concatenate([ep.actions[:, -1] for ep in EpisodeDataset(tmp_path / "a")])
    assert len(grips) >= 30 and np.all(grips == -1.0)
    assert "gripper 0.08 open -> -1, 0 closed -> +1" in capsys.readouterr().out
    # a 0..1 gripper without --gripper-open/--closed is refused (which end is open?) even when it spoke late:
    # the stand-in for the ticks before it no longer widens the range to look signed
    rec01 = _twist_recording(tmp_path / "g01.mcap", grip_from_s=0.5, grip_value=0.0)
    assert cli_main([str(rec01), "--out", str(tmp_path / "b"), *TWIST, "--gripper-topic", "/grip",
                     "--instruction", "wipe the table"]) == 2
    assert "cannot tell which end is open" in capsys.readouterr().err


def test_a_cleared_instruction_ends_the_episode(tmp_path):
    """An empty instruction (the goal cleared) between two stretches of the same goal: two episodes, as a gap or a
    new instruction makes, not one that jumps over the pause."""
    rec = _twist_recording(tmp_path / "blank.mcap", None, instructions=lambda t: "" if 1.0 <= t < 2.0 else "wipe it")
    sources = McapSources({"static": "/cam"}, "/cmd", instruction_topic="/instruction")
    summary = import_mcap(rec, tmp_path / "out", sources, rate_hz=10.0)
    assert summary["episodes"] == 2
    starts = [json.loads(line)["start_ns"] for line in (tmp_path / "out" / "import_map.jsonl").read_text().splitlines()]
    assert starts[1] >= 2_000_000_000


def test_a_split_rosbag2_bag_is_read_whole_from_its_folder(tmp_path, capsys):
    """rosbag2 --max-bag-duration writes <bag>/<bag>_0.mcap, _1.mcap and metadata.yaml listing them. The folder
    imports every file in order; one file alone imports with a warning naming the rest (it was silently partial)."""
    bag = tmp_path / "my_bag"
    bag.mkdir()
    _arm_recording(bag / "my_bag_0.mcap")
    _arm_recording(bag / "my_bag_1.mcap", start_ns=3_000_000_000)  # the bag goes on where the first file ends
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information:\n  version: 9\n  storage_identifier: mcap\n"
                                       "  relative_file_paths:\n  - my_bag_0.mcap\n  - my_bag_1.mcap\n")
    assert cli_main([str(bag), "--out", str(tmp_path / "whole"), *ARM]) == 0
    assert "read the bag's 2 files in order: my_bag_0.mcap, my_bag_1.mcap" in capsys.readouterr().out
    assert sum(ep.length for ep in EpisodeDataset(tmp_path / "whole")) == 60  # 6 s at 10 Hz
    assert cli_main([str(bag / "my_bag_0.mcap"), "--out", str(tmp_path / "part"), *ARM]) == 0
    assert "is one of 2 files of the bag" in capsys.readouterr().err
    assert sum(ep.length for ep in EpisodeDataset(tmp_path / "part")) == 30
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information:\n  relative_file_paths:\n  - ../elsewhere.mcap\n")
    assert cli_main([str(bag), "--out", str(tmp_path / "c"), *ARM]) == 2
    assert "'../elsewhere.mcap' is not a file inside the bag folder" in capsys.readouterr().err
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information:\n  storage_identifier: sqlite3\n"
                                       "  relative_file_paths:\n  - my_bag_0.db3\n")
    assert cli_main([str(bag), "--out", str(tmp_path / "d"), *ARM]) == 2
    assert "a sqlite3 bag; only MCAP is read" in capsys.readouterr().err


def test_one_topic_in_two_roles_and_an_image_size_no_reader_takes_are_refused_up_front(tmp_path, capsys):
    rec = _arm_recording(tmp_path / "arm.mcap")
    assert cli_main([str(rec), "--out", str(tmp_path / "a"), *ARM, "--episode-topic", "/cam"]) == 2
    assert "--episode-topic and --image-topic are both /cam" in capsys.readouterr().err
    assert cli_main([str(rec), "--out", str(tmp_path / "b"), *ARM, "--wrist-topic", "/cam"]) == 2
    assert "both /cam" in capsys.readouterr().err
    assert cli_main([str(rec), "--out", str(tmp_path / "c"), *ARM, "--image-size", "4100"]) == 2
    assert "--image-size must be an integer in 8..4096 px, got 4100" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_delta_actions_imported_at_another_rate_than_they_came_are_refused(tmp_path, capsys):
    """Each tick takes the latest action message: deltas sent at 10 Hz imported at --rate 5 (or 20) were labelled
    per tick, and the robot moved at half (twice) the demonstrated speed, without a word. Velocities and twists
    keep their meaning at any rate."""
    path = _arm_recording(tmp_path / "arm.mcap")
    at = ARM.index("--rate") + 1
    for rate in ("5", "20"):
        argv = [str(path), "--out", str(tmp_path / f"out{rate}"), *ARM[:at], rate, *ARM[at + 1:]]
        assert cli_main(argv) == 2
        err = capsys.readouterr().err
        assert "delta actions come every 100.0 ms (10 Hz) but --rate is" in err and "pass --rate 10" in err
        assert not (tmp_path / f"out{rate}").exists()
    argv = [str(path), "--out", str(tmp_path / "vel"), *ARM[:at], "5", *ARM[at + 1:], "--velocity"]
    assert cli_main(argv) == 0


def test_twists_without_a_gripper_topic_import_open_with_stated_gripper_values(tmp_path, capsys):
    """No gripper heard: every label is open. The importer's stand-in for the unheard values (-1) was judged
    as data beyond the stated --gripper-open 0.08 .. --gripper-closed 0 and the recording refused, saying
    every label would be closed."""
    import json

    import numpy as np

    from deer_vla.data.episodes import EpisodeDataset, read_episode

    rec = _twist_recording(tmp_path / "nogrip.mcap", grip_from_s=None)
    assert cli_main([str(rec), "--out", str(tmp_path / "a"), *TWIST, "--gripper-open", "0.08",
                     "--gripper-closed", "0", "--instruction", "wipe the table"]) == 0, capsys.readouterr().err
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    labels = np.concatenate([read_episode(p).actions[:, -1] for p in EpisodeDataset(tmp_path / "a").paths])
    assert labels.size and np.all(labels == -1.0), np.unique(labels)
    assert meta["collection"]["topics"]["gripper"] == "open throughout"


def test_the_frame_the_twists_were_recorded_in_is_kept_with_the_action_space(tmp_path, capsys):
    """The TwistStamped frame was dropped: teleoperation in the tool frame (MoveIt Servo's usual) was replayed by
    the node in base_link, its axes rotated, without a word. It is kept in the action spec, which training
    carries into the checkpoint the node reads; two frames are refused, and so is --action-frame contradicting
    the twists' own."""
    import json

    rec = _twist_recording(tmp_path / "tool.mcap", grip_from_s=None, frame=lambda k: "tool0")
    assert cli_main([str(rec), "--out", str(tmp_path / "a"), *TWIST, "--instruction", "wipe the table"]) == 0
    assert "action axes in frame 'tool0': kept with the action space" in capsys.readouterr().out
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["action_spec"]["frame"] == "tool0" and meta["collection"]["topics"]["twist_frame"] == "tool0"
    assert cli_main([str(rec), "--out", str(tmp_path / "c"), *TWIST, "--instruction", "wipe the table",
                     "--action-frame", "base_link"]) == 2
    assert "the twists say frame 'tool0', --action-frame says 'base_link'" in capsys.readouterr().err
    mixed = _twist_recording(tmp_path / "mixed.mcap", grip_from_s=None, frame=lambda k: "tool0" if k < 20 else "base")
    assert cli_main([str(mixed), "--out", str(tmp_path / "b"), *TWIST, "--instruction", "wipe the table"]) == 2
    assert "twists in several frames ['base', 'tool0']" in capsys.readouterr().err


def test_an_array_actions_frame_is_given_with_action_frame_and_checked_before_reading(tmp_path, capsys):
    import json

    rec = _arm_recording(tmp_path / "arm.mcap")
    assert cli_main([str(rec), "--out", str(tmp_path / "none"), *ARM]) == 0
    assert "the action's frame is not recorded" in capsys.readouterr().out
    assert "frame" not in json.loads((tmp_path / "none" / "meta.json").read_text())["action_spec"]
    assert cli_main([str(rec), "--out", str(tmp_path / "given"), *ARM, "--action-frame", "flange"]) == 0
    assert json.loads((tmp_path / "given" / "meta.json").read_text())["action_spec"]["frame"] == "flange"
    assert cli_main([str(tmp_path / "missing.mcap"), "--out", str(tmp_path / "bad"), *ARM,
                     "--action-frame", "/flange"]) == 2  # the frame is refused before the file is looked for
    assert "--action-frame must be a TF frame id" in capsys.readouterr().err


def test_a_ros1_style_or_unusable_twist_frame_is_taken_or_overridden_not_a_dead_end(tmp_path, capsys):
    """A recording whose twists said '/tool0' was refused after the whole read, under --action-frame's name, and
    --action-frame tool0 was refused as contradicting it: no way to import it but to re-record."""
    import json

    slash = _twist_recording(tmp_path / "slash.mcap", grip_from_s=None, frame=lambda k: "/tool0")
    assert cli_main([str(slash), "--out", str(tmp_path / "a"), *TWIST, "--instruction", "wipe the table"]) == 0
    assert "frame_id '/tool0' taken as 'tool0'" in capsys.readouterr().out
    assert json.loads((tmp_path / "a" / "meta.json").read_text())["action_spec"]["frame"] == "tool0"
    spaced = _twist_recording(tmp_path / "spaced.mcap", grip_from_s=None, frame=lambda k: "tool 0")
    assert cli_main([str(spaced), "--out", str(tmp_path / "b"), *TWIST, "--instruction", "wipe the table"]) == 2
    assert "/cmd: the twists' frame_id 'tool 0' is not a TF frame id" in capsys.readouterr().err
    assert cli_main([str(spaced), "--out", str(tmp_path / "c"), *TWIST, "--instruction", "wipe the table",
                     "--action-frame", "tool0"]) == 0
    assert "--action-frame used" in capsys.readouterr().out
    assert json.loads((tmp_path / "c" / "meta.json").read_text())["action_spec"]["frame"] == "tool0"


def _servo_teleop(path: Path, pause: tuple[float, float] = (1.0, 1.5), image_latency_s: float = 0.15,
                  joint_clock_s: float = 10.0, reset_at: float | None = None, gripper=None) -> Path:
    """A MoveIt Servo teleoperation as `ros2 bag record` sees it: 10 Hz rgb8 camera stamped at exposure and
    logged ``image_latency_s`` later (a Wi-Fi stream), 50 Hz stamped JointState (position = its time in s),
    20 Hz TwistStamped paused during ``pause`` (the operator let go; the cameras go on), and the gripper as a
    forward_command_controller's Float64MultiArray: open [0.04, 0.04] until 1.5 s, closed [0, 0] after
    (``gripper(t)`` instead when given). Joint states are stamped on a clock ``joint_clock_s`` ahead of t, as
    the cameras (10 s) unless given; ``reset_at``: both clocks restart there (a simulator's reset)."""
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import TwistStamped
    from robot_data_support import RosbagLikeWriter
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64MultiArray

    events = []
    def clock(offset: float, t: float) -> Time:  # stamp 0 reads as unstamped
        c = offset + (t - reset_at if reset_at is not None and t >= reset_at else t)
        return Time(sec=int(c), nanosec=int(round((c % 1) * 1e9)))

    for k in range(150):  # 3 s at 50 Hz
        t = k * 0.02
        stamp = clock(10.0, t)
        joint = JointState(name=["j"], position=[t])
        joint.header.stamp = clock(joint_clock_s, t)
        events.append((t + 0.002, "/joint_states", joint))
        if k % 5 == 0:  # 10 Hz camera
            image = Image(height=16, width=16, encoding="rgb8", step=48, data=bytes(768))
            image.header.stamp = stamp
            events.append((t + image_latency_s, "/cam", image))
        if k % 5 == 1:  # 10 Hz gripper command
            values = gripper(t) if gripper is not None else [0.04, 0.04] if t < 1.5 else [0.0, 0.0]
            events.append((t, "/grip", Float64MultiArray(data=values)))
        if k % 2 == 0 and not pause[0] <= t < pause[1]:  # 25 Hz twists
            twist = TwistStamped()
            twist.header.stamp, twist.header.frame_id = stamp, "tool0"
            twist.twist.linear.x = 0.05
            events.append((t + 0.001, "/cmd", twist))
    w = RosbagLikeWriter(path)
    for t, topic, msg in sorted(events, key=lambda e: e[0]):
        w.write(topic, msg, int(round(t * 1e9)))
    w.close()
    return path


SERVO = ["--image-topic", "/cam", "--action-topic", "/cmd", "--proprio-topic", "/joint_states", "--gripper-topic",
         "/grip", "--gripper-open", "0.04", "--gripper-closed", "0.0", "--instruction", "wipe the table", "--rate",
         "10"]


def test_a_servo_teleoperation_imports_as_the_node_will_see_it(tmp_path, capsys):
    """Three gaps between a recording and the node (found following the docs with a real set-up): the gripper
    of the documented forward_command_controller (a float array) could not be imported; over a camera's
    delivery latency each image was paired with a joint state stamped 150 ms after it, where the node pairs the
    one stamped nearest; and after the operator let go the last twist labelled up to 0.5 s of motion that the
    servo had already stopped."""
    rec = _servo_teleop(tmp_path / "servo.mcap")
    assert cli_main([str(rec), "--out", str(tmp_path / "held"), *SERVO]) == 0
    out = capsys.readouterr().out
    assert "labelled with a twist over 0.1 s old" in out and "--twist-timeout 0.1" in out
    assert cli_main([str(rec), "--out", str(tmp_path / "a"), *SERVO, "--twist-timeout", "0.1"]) == 0
    assert "labelled zero motion" in capsys.readouterr().out
    ds = EpisodeDataset(tmp_path / "a")
    (ep,) = list(ds)
    first_tick = 0.15  # the camera's first frame is logged 150 ms after its exposure
    ticks = first_tick + 0.1 * np.arange(ep.length)
    # proprio: the joint state stamped at the image's exposure (position = stamp), not the newest one
    exposure = np.round((ticks - 0.15) / 0.1) * 0.1
    np.testing.assert_allclose(ep.proprio[:, 0], exposure, atol=1e-6)
    # motion: zero from 0.1 s into the pause until the twists resume; the gripper: open, then closed after 1.5 s
    moving = ep.actions[:, 0] != 0
    paused = (ticks > 1.0 + 0.1) & (ticks < 1.5)
    assert not moving[paused].any() and moving[~paused & (ticks < 1.0)].all()
    np.testing.assert_array_equal(ep.actions[:, -1], np.where(ticks >= 1.5 + 0.02, 1.0, -1.0))


def test_joint_states_the_node_would_not_pair_are_not_imported_as_if_it_would(tmp_path, capsys):
    """A review of the stamp pairing: cameras and joint states stamped by two clocks (sim time and wall time)
    gave every step the first pose of the recording; pairs further apart than the node accepts were imported
    without a word; after a clock reset the second half took the first half's poses; an empty or NaN gripper
    array read as "[nan]"; the 0.1 s hint showed with --twist-timeout given; the timeout did nothing to arrays."""
    two_clocks = _servo_teleop(tmp_path / "clocks.mcap", joint_clock_s=1.7e9)
    assert cli_main([str(two_clocks), "--out", str(tmp_path / "a"), *SERVO]) == 2
    assert "stamped by one clock?" in capsys.readouterr().err
    behind = _servo_teleop(tmp_path / "behind.mcap", joint_clock_s=9.5)  # joints 0.5 s behind: none pairs
    assert cli_main([str(behind), "--out", str(tmp_path / "b"), *SERVO]) == 2
    assert "--max-joint-skew" in capsys.readouterr().err
    assert cli_main([str(behind), "--out", str(tmp_path / "b2"), *SERVO, "--max-joint-skew", "0.6"]) == 0
    capsys.readouterr()
    reset = _servo_teleop(tmp_path / "reset.mcap", reset_at=1.5)
    assert cli_main([str(reset), "--out", str(tmp_path / "c"), *SERVO, "--twist-timeout", "0.1"]) == 0
    assert "over 0.1 s old" not in capsys.readouterr().out  # the hint only without --twist-timeout
    poses = np.concatenate([ep.proprio[:, 0] for ep in EpisodeDataset(tmp_path / "c")])
    assert poses.max() > 2.5  # the second half's own poses, not the first half's again
    for name, values, said in (("empty", [], "a gripper array without values"),
                               ("nan", [0.04, float("nan")], "NaN or inf in [0.04, nan]")):
        bad = _servo_teleop(tmp_path / f"{name}.mcap", gripper=lambda t, v=values: v)
        assert cli_main([str(bad), "--out", str(tmp_path / name), *SERVO]) == 2
        assert said in capsys.readouterr().err
    # fingers that mirror each other ([0.04, -0.04] open): the first joint's value, not a mean of 0 ("closed")
    mirrored = _servo_teleop(tmp_path / "mirrored.mcap", gripper=lambda t: [0.04, -0.04] if t < 1.5 else [0.0, 0.0])
    assert cli_main([str(mirrored), "--out", str(tmp_path / "m"), *SERVO, "--twist-timeout", "0.1"]) == 0
    grips = np.concatenate([ep.actions[:, -1] for ep in EpisodeDataset(tmp_path / "m")])
    assert (grips == -1.0).any() and (grips == 1.0).any()
    arm = _arm_recording(tmp_path / "arm.mcap")
    assert cli_main([str(arm), "--out", str(tmp_path / "arm"), *ARM, "--twist-timeout", "0.1"]) == 2
    assert "--twist-timeout applies to twist actions" in capsys.readouterr().err


def test_two_joint_states_equally_near_the_images_pair_as_the_node_pairs_them():
    """The importer took the newer of two joint states equally near the images, the node's min() the older."""
    from types import SimpleNamespace

    from deer_vla.data.import_mcap import _Aligner

    def stamped(t: float, **fields) -> SimpleNamespace:
        return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=int(t), nanosec=round(t % 1 * 1e9))),
                               **fields)

    aligner = _Aligner(McapSources({"static": "/cam"}, "/cmd", instruction="x", proprio="/joints"),
                       100_000_000, 500_000_000, 16)
    for t in (1.09, 1.11):
        aligner.feed("/joints", "sensor_msgs/msg/JointState", int(t * 1e9), stamped(t, name=["j"], position=[t]))
    aligner.feed("/cam", "sensor_msgs/msg/Image", int(1.2e9), stamped(1.10))
    log_ns, msg, gap = aligner._paired_joint_state()
    assert msg.position == [1.09] and abs(gap - 10_000_000) <= 1


def test_episodes_too_short_to_import_are_counted(recording, tmp_path):
    """Episodes under min_steps were dropped uncounted: an instruction that changed every tick imported a
    fraction of the recording, and the summary said 0 ticks dropped."""
    full = import_mcap(recording, tmp_path / "all", McapSources(**SOURCES), rate_hz=10.0, image_size=24)
    lengths = sorted(json.loads(line)["steps"] for line in (tmp_path / "all/import_map.jsonl").read_text().splitlines())
    assert full["short_episodes"] == 1 and full["short_episode_ticks"] == 1  # the recording's one-tick stretch
    assert full["episodes"] == len(lengths) and min(lengths) >= 2
