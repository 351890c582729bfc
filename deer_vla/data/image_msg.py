"""sensor_msgs/Image and CompressedImage -> HxWx3 uint8 RGB arrays, with strict validation (no ROS).

Malformed camera input must be rejected with a message that says what is
wrong (the policy node logs it, throttled) instead of crashing the node or
silently feeding garbage to the model. The same decoding reads the images of
MCAP recordings offline (``data.recording``, ``data.import_mcap``); building a
sensor_msgs/Image needs ROS and lives in ``deer_vla.ros.image_conv``.
Compressed frames (JPEG, PNG: image_transport's ``compressed``) are decoded
after their declared size is read from the header with Pillow: JPEG with
libjpeg-turbo through simplejpeg, strictly (a frame libjpeg finds damaged is
refused: OpenCV's decoder returned its garbage as a picture), PNG with Pillow.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from deer_vla.core.log_text import quoted

# encoding -> (channels, index order to get RGB); alpha is dropped.
_ENCODINGS: dict[str, tuple[int, tuple[int, ...]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
    "8uc1": (1, (0, 0, 0)),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_ENCODINGS)
# encodings that say how many channels but not their order: cv_bridge's "passthrough" of an OpenCV frame is
# 8UC3 holding BGR, another driver's RGB; read either way, half the cameras would swap red and blue unseen
_NO_CHANNEL_ORDER = {"8uc3": "rgb8 or bgr8", "8uc4": "rgba8 or bgra8"}
MIN_SIZE = 8  # the model needs at least this many pixels per side
# A compressed image's declared size is checked before it is decoded: a 1 MB PNG of zeros can declare
# 20000 x 20000 pixels (1.2 GB decoded; OpenCV's own limit is 2^30 pixels). 8192^2 is above any robot camera.
MAX_DECODED_PIXELS = 8192 * 8192
# libjpeg's warning that bytes sit between the entropy data and the end marker (EOI, 0xFFD9): cameras pad frames so
PADDED_END = "extraneous bytes before marker 0xd9"
# a progressive JPEG's scans each pass over the whole picture: libjpeg's encoders write up to ~12 (color), and 105 KB
# of a few hundred repeated scans held the step worker 2.4 s before its damage was found (libjpeg-turbo's own
# advice is to bound them: djpeg -maxscans)
MAX_JPEG_SCANS = 100
# segments (JPEG markers, PNG chunks) before the picture's data: a camera's frame has a dozen; 2.4 MB of empty PNG
# chunks held the executor 0.6 s in the header read (Pillow walks them one by one)
MAX_HEADER_SEGMENTS = 1000
# bytes before the picture that Pillow's header read steps over one at a time (junk, fill bytes, escaped 0xFF;
# ITU T.81 allows fill bytes, a camera writes none or a few): 2.4 MB of them held the executor 0.2-0.8 s
MAX_LOOSE_BYTES = 65536
_FF_RUN = re.compile(rb"\xff+")
# markers without a length: TEM, RST0-7, SOI, EOI (a run of SOI markers skipped 64 KB a step as lengths)
_JPEG_BARE_MARKERS = frozenset({0x01, *range(0xD0, 0xDA)})
COMPRESSED_TOPIC_SUFFIX = "compressed"  # image_transport's name for a camera's compressed stream: <base>/compressed


class ImageConversionError(ValueError):
    """The image message cannot be turned into an RGB array."""


def image_to_rgb(
    encoding: str, height: int, width: int, step: int, data: bytes | bytearray | memoryview | np.ndarray
) -> np.ndarray:
    """Validate the fields of a sensor_msgs/Image and return an HxWx3 uint8 RGB copy."""
    enc = encoding.lower()
    if enc in _NO_CHANNEL_ORDER:
        raise ImageConversionError(
            f"image encoding {quoted(encoding, 40)} does not say the channels' order (an OpenCV frame published "
            f"with cv_bridge's 'passthrough' is BGR): publish it as {_NO_CHANNEL_ORDER[enc]}")
    if enc not in _ENCODINGS:
        supported = ", ".join(SUPPORTED_ENCODINGS)
        raise ImageConversionError(f"unsupported image encoding {quoted(encoding, 40)}; supported: {supported}")
    channels, order = _ENCODINGS[enc]
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ImageConversionError(f"image {height}x{width} is too small (min {MIN_SIZE}x{MIN_SIZE})")
    if step < width * channels:
        raise ImageConversionError(f"image step {step} is smaller than width*channels = {width}*{channels}")
    buf = np.frombuffer(memoryview(data).cast("B") if not isinstance(data, np.ndarray) else data.tobytes(), np.uint8)
    needed = step * height
    if buf.size < needed:
        raise ImageConversionError(f"image data truncated: {buf.size} bytes, step*height needs {needed}")
    if buf.size > needed:
        raise ImageConversionError(f"image data has {buf.size} bytes, step*height is {needed}")
    rows = buf.reshape(height, step)[:, : width * channels].reshape(height, width, channels)
    if channels == 3 and order == (0, 1, 2):  # rgb8: one plain copy
        return rows.copy()
    # one strided copy per channel: an index list (rows[:, :, [2, 1, 0]]) made numpy gather byte by byte, 1.3 ms
    # for one 480x640 bgr8 frame on the executor thread against 0.13 ms this way (docs/RESULTS.md)
    out = np.empty((height, width, 3), dtype=np.uint8)
    for i, src in enumerate(order):
        out[:, :, i] = rows[:, :, src]
    return out


def image_msg_to_rgb(msg: object) -> np.ndarray:
    """sensor_msgs/Image (or anything with its fields) -> HxWx3 uint8 RGB."""
    return image_to_rgb(
        str(msg.encoding), int(msg.height), int(msg.width), int(msg.step), msg.data  # type: ignore[attr-defined]
    )


def is_compressed_topic(topic: str) -> bool:
    """A topic image_transport's naming says carries sensor_msgs/CompressedImage (its last name is
    ``compressed``, e.g. ``camera/image_raw/compressed``)."""
    return topic.rstrip("/").rsplit("/", 1)[-1] == COMPRESSED_TOPIC_SUFFIX


# the two formats image_transport's compressed plugin writes, by their magic bytes: anything else (a TIFF, an HDR
# labelled "jpeg") is refused before a decoder sees it, as are frames whose size Pillow cannot read from the header
_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}
# Pillow modes of more than 8 bits per sample: a 16-bit grey PNG is a depth image (decoding it as colour keeps the
# top 8 bits: 400..3000 mm became grey levels 1..11)
_DEEP_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


@dataclass(frozen=True)
class CompressedFrame:
    """A compressed camera frame whose header was checked (cheap); ``decode`` does the expensive part."""

    data: bytes
    image_format: str  # the message's format field, as sent
    kind: str  # "JPEG" or "PNG"
    width: int
    height: int

    def decode(self) -> np.ndarray:
        """HxWx3 uint8 RGB; ImageConversionError when the data does not decode (truncated, damaged)."""
        return self._decode_jpeg() if self.kind == "JPEG" else self._decode_png()

    def _decode_png(self) -> np.ndarray:
        """A PNG decoded by Pillow, not OpenCV: libpng wrote its complaint about a damaged frame to the process's
        stderr, once per frame (a camera at 30 Hz flooded the robot's log), and the refusal could only say "does
        not decode". The same pixels as OpenCV's for every 8- and 16-bit colour, grey, palette and alpha PNG (16
        bits keep their top 8); EXIF orientation is ignored, as image_transport's subscriber ignores it."""
        import io

        from PIL import Image

        try:
            with Image.open(io.BytesIO(self.data), formats=["PNG"]) as image:
                # a palette with transparency by way of RGBA: straight to RGB Pillow warns, to stderr
                return np.array((image.convert("RGBA") if image.mode in ("P", "PA") else image).convert("RGB"))
        except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated, damaged data, bad checksums
            raise ImageConversionError(f"compressed image (format {quoted(self.image_format, 40)}) does not decode: "
                                       f"{quoted(str(exc), 120)}") from None

    def _decode_jpeg(self) -> np.ndarray:
        """A JPEG decoded strictly: libjpeg's warnings about damaged data ("Corrupt JPEG data: premature end of data
        segment", a flaky USB camera's; "Inconsistent progression sequence") refuse the frame, which OpenCV
        decoded into a picture 60 grey levels off on average without a word to the node. Not the warning that
        bytes sit before the end marker (PADDED_END): many UVC webcams pad every frame so; libjpeg gives it on
        reaching that marker, after the whole picture, so as its first warning the picture is whole. Grey and
        CMYK JPEGs come out as RGB; EXIF orientation is ignored, as image_transport's subscriber ignores it."""
        import simplejpeg

        try:
            try:
                return simplejpeg.decode_jpeg(self.data, colorspace="RGB", strict=True)
            except ValueError as exc:
                if PADDED_END not in str(exc):
                    raise
                return simplejpeg.decode_jpeg(self.data, colorspace="RGB", strict=False)
        except ValueError as exc:
            raise ImageConversionError(f"compressed image (format {quoted(self.image_format, 40)}) does not decode: "
                                       f"{quoted(str(exc), 120)}") from None


def check_compressed(image_format: str, data: Any) -> CompressedFrame:
    """A sensor_msgs/CompressedImage's format and bytes, checked from the header without decoding: a camera's
    colour or 8-bit grey JPEG or PNG (a 16-bit colour PNG is scaled to 8 bits; a 16-bit grey one is a depth
    image) of at least MIN_SIZE and at most MAX_DECODED_PIXELS pixels, or ImageConversionError saying why not."""
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    fmt = quoted(image_format, 40)
    lowered = image_format.lower()
    if "compresseddepth" in lowered:  # 16-bit depth behind a header: not a camera's colours
        raise ImageConversionError(f"compressed image format {fmt} is a depth image, not a camera's colours")
    if ";" in lowered:  # image_transport's "<encoding>; jpeg compressed <target>": the camera's own encoding
        encoding = image_format.split(";", 1)[0].strip()
        if encoding and encoding.lower() not in _ENCODINGS:
            raise ImageConversionError(f"compressed image format {fmt}: encoding {quoted(encoding, 40)} is not a "
                                       f"camera's colours; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    raw = bytes(data)  # bytes, array('B'), a list of ints (an MCAP decoder's): compressed frames are small
    if not raw:  # drivers send one at startup
        raise ImageConversionError(f"compressed image (format {fmt}) is empty")
    kind = next((k for magic, k in _MAGIC.items() if raw.startswith(magic)), None)
    if kind is None:
        raise ImageConversionError(f"compressed image (format {fmt}) is neither JPEG nor PNG")
    why = _outsized_structure(raw, kind)
    if why is not None:
        raise ImageConversionError(f"compressed image (format {fmt}) {why} (not decoded)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw), formats=[kind]) as image:
                (width, height), mode = image.size, image.mode
    except Image.DecompressionBombError:  # over twice Pillow's own limit, itself above ours
        raise ImageConversionError(f"compressed image (format {fmt}) declares more than {MAX_DECODED_PIXELS} "
                                   "pixels (not decoded)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):  # SyntaxError: Pillow's "not a PNG"
        raise ImageConversionError(f"compressed image (format {fmt}): its {kind} header does not read") from None
    if width * height > MAX_DECODED_PIXELS:
        raise ImageConversionError(f"compressed image (format {fmt}) declares {width} x {height} pixels, more "
                                   f"than {MAX_DECODED_PIXELS} (not decoded)")
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ImageConversionError(f"image {height}x{width} is too small (min {MIN_SIZE}x{MIN_SIZE})")
    if mode in _DEEP_MODES:
        raise ImageConversionError(f"compressed image (format {fmt}) is a {kind} of more than 8 bits per pixel "
                                   f"(mode {mode}): a depth image, not a camera's colours")
    return CompressedFrame(raw, image_format, kind, int(width), int(height))


def _outsized_structure(raw: bytes, kind: str) -> str | None:
    """Why a JPEG or PNG is built to cost its reader far more than a camera's frame, or None: more than
    MAX_JPEG_SCANS scans (an SOS marker, 0xFFDA, never occurs inside entropy-coded data), or more than
    MAX_HEADER_SEGMENTS segments before the picture's data, or more than MAX_LOOSE_BYTES of what Pillow's header
    read skips one byte at a time (junk between markers, fill bytes, escaped 0xFF). A walk of bounded steps
    (runs are skipped at C speed); anything else is the decoders' to refuse."""
    if kind == "JPEG":
        scans = raw.count(b"\xff\xda")
        if scans > MAX_JPEG_SCANS:
            return f"has {scans} scans, more than {MAX_JPEG_SCANS}"
        pos, markers, loose, end = 2, 0, 0, len(raw)
        while pos + 1 < end:
            if loose > MAX_LOOSE_BYTES:
                return f"has more than {MAX_LOOSE_BYTES} bytes of junk or fill between its markers"
            if raw[pos] != 0xFF:  # junk before a marker: Pillow skips it byte by byte
                after = raw.find(b"\xff", pos)
                after = end if after < 0 else after
                loose, pos = loose + after - pos, after
                continue
            run = _FF_RUN.match(raw, pos)
            assert run is not None
            loose, pos = loose + run.end() - 1 - pos, run.end() - 1  # fill bytes: the last 0xFF starts the marker
            if pos + 1 >= end:
                break
            marker = raw[pos + 1]
            if marker == 0x00:  # an escaped 0xFF where a marker should be
                loose, pos = loose + 2, pos + 2
                continue
            markers += 1
            if markers > MAX_HEADER_SEGMENTS:
                return f"has more than {MAX_HEADER_SEGMENTS} markers before its picture"
            if marker == 0xDA:  # start of scan: the picture's data
                return None
            if marker in _JPEG_BARE_MARKERS:
                pos += 2
            else:
                pos += 2 + int.from_bytes(raw[pos + 2:pos + 4], "big")
        if loose > MAX_LOOSE_BYTES:  # junk or fill up to the end of the frame, with no marker after it
            return f"has more than {MAX_LOOSE_BYTES} bytes of junk or fill between its markers"
        return None
    pos, seen = 8, 0
    while pos + 8 <= len(raw) and raw[pos + 4:pos + 8] != b"IDAT":
        seen += 1
        if seen > MAX_HEADER_SEGMENTS:
            return f"has more than {MAX_HEADER_SEGMENTS} chunks before its picture"
        pos += 12 + int.from_bytes(raw[pos:pos + 4], "big")
    return None


def compressed_to_rgb(image_format: str, data: Any) -> np.ndarray:
    """A sensor_msgs/CompressedImage's format and bytes -> HxWx3 uint8 RGB (a grey JPEG gives three equal
    channels): check_compressed, then the decode."""
    return check_compressed(image_format, data).decode()


def check_compressed_msg(msg: object) -> CompressedFrame:
    """sensor_msgs/CompressedImage (or anything with its fields), checked: check_compressed."""
    return check_compressed(str(msg.format), msg.data)  # type: ignore[attr-defined]


def compressed_msg_to_rgb(msg: object) -> np.ndarray:
    """sensor_msgs/CompressedImage (or anything with its fields) -> HxWx3 uint8 RGB."""
    return check_compressed_msg(msg).decode()
