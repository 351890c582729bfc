"""Damaged or hostile files at the CLI boundaries, found by fuzzing them (session 54): each is refused in one
line naming what is wrong, at once, instead of a traceback or gigabytes of memory."""
from __future__ import annotations

import json
import shutil
import struct
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _alias_bomb(path: Path, levels: int) -> Path:
    """A few hundred bytes of YAML whose aliases expand to 10 ** (levels + 1) strings."""
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_yaml_of_nested_aliases_is_refused_at_once_in_a_short_message(tmp_path):
    from deer_vla.core.config_io import ConfigError, read_yaml_mapping, shown_value, validate
    from deer_vla.train.config import TrainConfig

    bomb = _alias_bomb(tmp_path / "bomb.yaml", 7)
    assert bomb.stat().st_size < 500
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="Extra inputs are not permitted") as err:
        validate(TrainConfig, read_yaml_mapping(bomb, "training config"), "training config", str(bomb))
    assert time.perf_counter() - start < 5.0  # the whole repr of 10^8 strings took 22 s and 880 MB
    assert len(str(err.value)) < 3000
    assert shown_value("x" * 1000).endswith("... (1000 characters)")
    assert shown_value({"deep": [[[[1]]]]}).count("...") >= 1 and len(shown_value(list(range(10**6)))) <= 124


@pytest.mark.parametrize("field,value,said", [
    (("action", "units"), 3, "ActionSpec.units must be a list, got 3"),
    (("action", "low"), True, "ActionSpec.low must be a list"),
    (("action", "high"), [None, 1, 1, 1], "ActionSpec.high values must be numbers, got None"),
    # read by float() as 1.0 m per step (100x the default) and 0.01: a bool or a string is no number
    (("action", "scale"), [True, True, True], "ActionSpec.scale values must be numbers, got True"),
    (("action", "scale"), ["0.01", 0.01, 0.01], "ActionSpec.scale values must be numbers, got '0.01'"),
    (("action", "low"), [-10**400, -1, -1], "ActionSpec.low values must be finite numbers, got an integer too large"),
    # a 5e9 m/s twist for half a command: the reach of a full command is held to any arm's motion
    (("action", "scale"), [1e9, 0.01, 0.01], "axis 'x' reaches 1e+09 m per step (max(|low|, |high|) x scale), "
                                             "beyond any arm's motion (1 m per step)"),
    (("proprio",), {"names": "abc"}, "ProprioSpec.names must be a list"),
    (("proprio",), {"names": ["a"], "low": [None], "high": [1]}, "ProprioSpec.low values must be numbers, got None"),
    (("proprio",), {"names": ["a"], "low": [False], "high": [1]}, "ProprioSpec.low values must be numbers, got False"),
    (("lm", "hf_config", "tie_word_embeddings"), [1], "lm.hf_config is not a valid LlamaConfig"),
])
def test_a_checkpoint_config_with_a_wrong_typed_field_is_a_checkpoint_error_naming_it(tiny_checkpoint, tmp_path,
                                                                                       field, value, said):
    from deer_vla.model.checkpoint import CheckpointError, load_checkpoint

    ckpt = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    config = json.loads((ckpt / "config.json").read_text())
    node = config
    for key in field[:-1]:
        node = node[key]
    node[field[-1]] = value
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="config.json") as err:
        load_checkpoint(ckpt)
    assert said in str(err.value)


MCAP_ARGS = ["--image-topic", "/camera/image_raw", "--action-topic", "/servo/delta_twist_cmds",
             "--instruction", "wipe the table", "--rate", "10"]


def test_an_mcap_with_a_damaged_magic_or_schema_is_one_line_exit_2(tmp_path, capsys):
    from robot_data_support import write_teleop_mcap

    from deer_vla.data.import_mcap import cli_main

    good = write_teleop_mcap(tmp_path / "ok.mcap", seconds=3.0, gap=(1.4, 1.8)).read_bytes()
    summary_schema = good.find(b"builtin_interfaces", 1000)  # a schema copy in the uncompressed summary
    damaged = {
        "magic": (bytes([good[0] ^ 1]) + good[1:], "cannot read the file's header or summary"),
        "schema": (good[:summary_schema] + good[summary_schema:].replace(b"builtin_interfaces",
                                                                         b"builtin_interf!ces"),
                   "cannot be read"),
    }
    for name, (data, said) in damaged.items():
        path = tmp_path / f"{name}.mcap"
        path.write_bytes(data)
        assert cli_main([str(path), "--out", str(tmp_path / f"out_{name}"), *MCAP_ARGS]) == 2, name
        err = capsys.readouterr().err
        assert said in err and str(path) in err and "Traceback" not in err, (name, err[-2000:])


def test_a_lerobot_video_with_a_damaged_metadata_string_is_one_line_exit_2(tmp_path, capsys):
    from deer_vla.data.import_lerobot import cli_main
    from deer_vla.data.lerobot_writer import write_demo_dataset

    root = write_demo_dataset(tmp_path / "ds", n_episodes=2, steps=8, episodes_per_file=2, chunks_size=1)
    video = sorted(root.rglob("*.mp4"))[0]
    data = bytearray(video.read_bytes())
    brand = data.find(b"mp41")
    assert brand > 0
    data[brand + 3] = 0xB1  # not UTF-8: PyAV raised UnicodeDecodeError reading the container's tags
    video.write_bytes(bytes(data))
    assert cli_main([str(root), "--out", str(tmp_path / "out"), "--gripper-open", "0", "--gripper-closed", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot decode the video" in err and str(video) in err and "Traceback" not in err, err[-2000:]


def _png(width: int, height: int, rows: int | None = None) -> bytes:
    """An RGB PNG of zeros: a few hundred kilobytes whatever the size it declares (``rows``: only the first
    rows' data, a cut file)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    packer = zlib.compressobj(1)
    row = b"\x00" * (1 + width * 3)
    pixels = b"".join(packer.compress(row) for _ in range(height if rows is None else rows)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_a_compressed_image_declaring_too_many_pixels_is_refused_before_decoding():
    from deer_vla.data.image_msg import MAX_DECODED_PIXELS, ImageConversionError
    from deer_vla.data.import_mcap import image_to_rgb

    small = image_to_rgb(SimpleNamespace(data=_png(40, 30), format="png"), "sensor_msgs/msg/CompressedImage")
    assert small.shape == (30, 40, 3)
    side = 8200  # just over the limit: 200 MB decoded, from a PNG of well under a megabyte
    assert side * side > MAX_DECODED_PIXELS
    bomb = _png(side, side)
    assert len(bomb) < 1_000_000
    with pytest.raises(ImageConversionError, match=f"declares {side} x {side} pixels"):
        image_to_rgb(SimpleNamespace(data=bomb, format="png"), "sensor_msgs/msg/CompressedImage")
    huge = _png(20000, 20000, rows=1)  # over Pillow's own bomb limit: refused by the header alone
    with pytest.raises(ImageConversionError, match="declares more than"):
        image_to_rgb(SimpleNamespace(data=huge, format="png"), "sensor_msgs/msg/CompressedImage")


def test_compressed_frames_are_a_cameras_8_bit_jpeg_or_png_as_sent():
    """A 16-bit depth PNG was decoded as colour (its top 8 bits: depths became grey levels 1..11), a Bayer mosaic
    as grey, a Radiance HDR labelled jpeg declaring 144 Mpx was decoded past the pixel limit (Pillow could not
    read its size, so the limit was not checked), and an EXIF orientation turned the frame."""
    import io

    import cv2
    import numpy as np
    from PIL import Image as PILImage

    from deer_vla.data.image_msg import ImageConversionError, compressed_to_rgb

    depth = cv2.imencode(".png", np.full((20, 30), 1500, np.uint16))[1].tobytes()
    for fmt, data, said in (("png", depth, "more than 8 bits per pixel"),
                            ("16UC1; png compressed ", depth, "encoding '16UC1' is not a camera's colours"),
                            ("bayer_rggb8; jpeg compressed ", _png(40, 30), "encoding 'bayer_rggb8'"),
                            ("jpeg", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 12000 +X 12000\n", "neither JPEG"),
                            ("jpeg", cv2.imencode(".bmp", np.zeros((20, 30, 3), np.uint8))[1].tobytes(), "neither")):
        with pytest.raises(ImageConversionError, match=said):
            compressed_to_rgb(fmt, data)
    colour16 = cv2.imencode(".png", np.full((20, 30, 3), 40000, np.uint16))[1].tobytes()
    assert compressed_to_rgb("png", colour16).shape == (20, 30, 3)  # 16-bit colour: a camera's, scaled to 8
    assert compressed_to_rgb("rgb8; jpeg compressed bgr8", cv2.imencode(".jpg", np.zeros((20, 30, 3), np.uint8))[1]
                             .tobytes()).shape == (20, 30, 3)
    rotated = io.BytesIO()
    exif = PILImage.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees to display"
    PILImage.new("RGB", (64, 48), (200, 10, 10)).save(rotated, "JPEG", exif=exif)
    out = compressed_to_rgb("jpeg", rotated.getvalue())
    assert out.shape == (48, 64, 3) and out[0, 0, 0] > 150 > out[0, 0, 2]  # as sent: not turned, RGB order



def test_a_png_decodes_to_opencvs_pixels_and_a_damaged_one_says_why_without_writing_to_stderr(capfd):
    """OpenCV's libpng wrote its complaint about a damaged PNG to the process's stderr, once per frame (a camera
    at 30 Hz flooded the robot's log), and the refusal said only "does not decode". Pillow decodes PNGs now: the
    very pixels OpenCV gave for colour, grey, palette, alpha and 16-bit frames, and a damaged one is refused
    with libpng-free words on the node's log only."""
    import io
    import warnings

    import cv2
    import numpy as np
    from PIL import Image as PILImage

    from deer_vla.data.image_msg import ImageConversionError, compressed_to_rgb

    rng = np.random.default_rng(0)
    frames = {f"{shape} {dtype.__name__}": cv2.imencode(".png", rng.integers(0, np.iinfo(dtype).max, shape,
                                                                          dtype=dtype))[1].tobytes()
              for shape, dtype in (((48, 64, 3), np.uint8), ((48, 64, 4), np.uint8), ((48, 64), np.uint8),
                                   ((48, 64, 3), np.uint16), ((48, 64, 4), np.uint16))}
    for mode in ("P", "1", "LA"):
        buffer = io.BytesIO()
        PILImage.fromarray(rng.integers(0, 256, (48, 64), dtype=np.uint8)).convert(mode).save(buffer, "PNG")
        frames[mode] = buffer.getvalue()
    buffer = io.BytesIO()  # a palette with a transparent entry: Pillow warned on stderr going straight to RGB
    palette = PILImage.fromarray(rng.integers(0, 256, (48, 64), dtype=np.uint8)).convert("P")
    palette.save(buffer, "PNG", transparency=bytes([0, 128, 255, 10]))
    frames["P transparent"] = buffer.getvalue()
    assert len(frames) == 9
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning Pillow gives is one line on stderr per process in a node
        for name, data in frames.items():
            opencv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
            assert np.array_equal(compressed_to_rgb("png", data), opencv), name
    damaged = bytearray(next(iter(frames.values())))
    damaged[damaged.index(b"IDAT") + 30] ^= 0xFF
    capfd.readouterr()
    for data, said in ((bytes(damaged), "broken data stream"), (bytes(damaged[: len(damaged) // 2]), "truncated")):
        with pytest.raises(ImageConversionError, match=f"does not decode: '.*{said}"):
            compressed_to_rgb("png", data)
    assert capfd.readouterr().err == ""


def test_an_integer_of_thousands_of_digits_and_escape_heavy_text_are_refused_in_a_short_message(tmp_path):
    """PyYAML turns an integer of over 4300 digits into a ValueError of Python's int() (a traceback from
    `deer-vla train --config` and `--set`); a string of control characters has a repr four times its length."""
    from deer_vla.core.config_io import ConfigError, parse_value, read_yaml_mapping, shown_value

    big = tmp_path / "big.yaml"
    big.write_text(f"joint:\n  steps: {'9' * 5000}\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        read_yaml_mapping(big, "training config")
    with pytest.raises(ConfigError, match="is not a YAML value"):
        parse_value("9" * 5000)
    for text in ("\x00" * 120, "a\n" * 60):
        assert len(shown_value(text)) <= 140, shown_value(text)


def test_a_damaged_jpeg_is_refused_not_decoded_into_garbage():
    """Entropy data with bytes changed mid-stream (a flaky USB MJPEG camera's; markers intact): OpenCV decoded it
    into a picture 60 grey levels off on average, libjpeg's warning on stderr only, and the node stepped on it.
    Grey and CMYK JPEGs still decode to RGB."""
    import io

    import cv2
    import numpy as np
    from PIL import Image as PILImage

    from deer_vla.data.image_msg import ImageConversionError, compressed_to_rgb

    picture = np.full((240, 320, 3), 128, np.uint8)
    cv2.circle(picture, (160, 120), 60, (0, 0, 255), -1)
    good = cv2.imencode(".jpg", picture)[1].tobytes()
    damaged = bytearray(good)
    for i in range(good.find(b"\xff\xda") + 200, len(good) - 200, 97):
        damaged[i] = (damaged[i] * 7 + 13) & 0x7F  # no 0xFF: the markers stay
    with pytest.raises(ImageConversionError, match="does not decode: 'Corrupt JPEG data"):
        compressed_to_rgb("jpeg", bytes(damaged))
    with pytest.raises(ImageConversionError, match="does not decode"):
        compressed_to_rgb("jpeg", good[: len(good) * 9 // 10])
    decoded = compressed_to_rgb("jpeg", good)
    assert np.abs(decoded.astype(int) - picture[:, :, ::-1]).mean() < 3  # RGB, as sent
    # padding before the end marker, as many UVC webcams send every frame: a whole picture (a first version refused
    # it, "Corrupt JPEG data: 59 extraneous bytes before marker 0xd9", and the node never stepped)
    end = good.rfind(b"\xff\xd9")
    for fill in (b"\x00" * 61, b"\xff" * 61, b"\x00"):
        assert np.array_equal(compressed_to_rgb("jpeg", good[:end] + fill + good[end:]), decoded)
    for mode in ("L", "CMYK"):  # colours as OpenCV decodes them (an Adobe CMYK JPEG is stored inverted)
        other = io.BytesIO()
        PILImage.fromarray(picture[:, :, ::-1]).convert(mode).save(other, "JPEG")
        opencv = cv2.imdecode(np.frombuffer(other.getvalue(), np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        assert np.abs(compressed_to_rgb("jpeg", other.getvalue()).astype(int) - opencv).max() <= 2, mode


def test_frames_built_to_cost_their_reader_are_refused_before_any_decoder_walks_them():
    """A progressive JPEG of hundreds of repeated scans (105 KB) held the step worker 2.4 s before its damage was
    found, and 2.4 MB of empty PNG chunks before the picture held the executor 0.6 s in Pillow's header read: more
    than MAX_JPEG_SCANS scans or MAX_HEADER_SEGMENTS segments before the picture are refused at once; a camera's
    progressive JPEG, and a PNG or JPEG with a few metadata segments, still decode."""
    import io

    import numpy as np
    from PIL import Image

    from deer_vla.data.image_msg import (
        MAX_HEADER_SEGMENTS,
        MAX_JPEG_SCANS,
        ImageConversionError,
        compressed_to_rgb,
    )

    picture = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(picture).save(out, "JPEG", progressive=True, quality=90)
    progressive = out.getvalue()
    assert 1 < progressive.count(b"\xff\xda") <= MAX_JPEG_SCANS
    assert compressed_to_rgb("jpeg", progressive).shape == (48, 64, 3)
    first_scan = progressive.index(b"\xff\xda")
    scans = progressive[first_scan:-2]  # every scan, without the end marker
    bomb = progressive[:first_scan] + scans * (MAX_JPEG_SCANS // progressive.count(b"\xff\xda") + 1) + b"\xff\xd9"
    with pytest.raises(ImageConversionError, match=r"scans, more than 100 \(not decoded\)"):
        compressed_to_rgb("jpeg", bomb)
    app = b"\xff\xe5\x00\x02"  # an empty APP5 segment
    assert compressed_to_rgb("jpeg", progressive[:2] + app * 10 + progressive[2:]).shape == (48, 64, 3)
    started = time.perf_counter()
    with pytest.raises(ImageConversionError, match="more than 1000 markers before its picture"):
        compressed_to_rgb("jpeg", progressive[:2] + app * 600_000 + progressive[2:])
    assert time.perf_counter() - started < 0.2
    png = _png(64, 48)
    idat = png.index(b"IDAT") - 4
    empty = struct.pack(">I", 0) + b"abCd" + struct.pack(">I", zlib.crc32(b"abCd") & 0xFFFFFFFF)
    assert compressed_to_rgb("png", png[:idat] + empty * 10 + png[idat:]).shape == (48, 64, 3)
    started = time.perf_counter()
    with pytest.raises(ImageConversionError, match="more than 1000 chunks before its picture"):
        compressed_to_rgb("png", png[:idat] + empty * 200_000 + png[idat:])
    assert time.perf_counter() - started < 0.2
    assert MAX_HEADER_SEGMENTS == 1000


def test_a_jpeg_cannot_slip_junk_fill_or_bare_markers_past_the_walk():
    """A review: one junk byte after the first segment ended the walk ("fine") while Pillow skips junk byte by
    byte and walked 600 000 segments after it (0.78 s); a run of SOI markers was read as lengths, 64 KB a step
    (0.85 s); and legal fill bytes (ITU T.81 B.1.1.2) were counted as markers. Junk, fill and escaped 0xFF count
    as loose bytes (MAX_LOOSE_BYTES), markers without a length are two bytes."""
    import io

    import numpy as np
    from PIL import Image

    from deer_vla.data.image_msg import MAX_LOOSE_BYTES, ImageConversionError, compressed_to_rgb

    out = io.BytesIO()
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(out, "JPEG")
    jpeg = out.getvalue()
    app, com = b"\xff\xe0\x00\x02", b"\xff\xfe\x00\x02"
    for bomb, why in ((jpeg[:2] + app + b"\x00" + com * 600_000 + jpeg[2:], "more than 1000 markers"),
                      (jpeg[:2] + b"\xff\xd8" * 1_200_000 + jpeg[2:], "more than 1000 markers"),
                      (jpeg[:2] + app + b"\x00" * 2_400_000 + jpeg[2:], f"more than {MAX_LOOSE_BYTES} bytes of junk"),
                      (jpeg[:2] + app + b"\xff\x00" * 1_200_000 + jpeg[2:],
                       f"more than {MAX_LOOSE_BYTES} bytes of junk")):
        started = time.perf_counter()
        with pytest.raises(ImageConversionError, match=why):
            compressed_to_rgb("jpeg", bomb)
        assert time.perf_counter() - started < 0.2, why
    for tail in (b"\x00" * 2_400_000, b"\xff" * 2_400_000):  # junk or fill up to the end, no marker after it
        started = time.perf_counter()
        with pytest.raises(ImageConversionError, match=f"more than {MAX_LOOSE_BYTES} bytes of junk"):
            compressed_to_rgb("jpeg", jpeg[:2] + app + tail)
        assert time.perf_counter() - started < 0.2
    fill = jpeg[:2] + app + b"\xff" * 1001 + jpeg[2:]  # fill bytes before a marker are no markers
    assert compressed_to_rgb("jpeg", fill).shape == (48, 64, 3)
