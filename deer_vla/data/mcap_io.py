"""MCAP files of ROS 2 messages (readable by Foxglove and PlotJuggler).

mcap-ros2-support serialises from a message definition text, so the few
types deer_vla records are defined here (same fields as the .msg files,
comments dropped) and do not depend on a ROS installation's share/ folder.

Crash safety: a writer closes its chunk and flushes the file at least every
``flush_interval_s`` (a background thread, so a quiet log is flushed too), so
a killed process loses about that much. A file without its footer (the
writer never closed it) is read as a stream up to its last whole chunk, with
a ``TruncatedMcapWarning``.

A write or flush that fails (disk full) may leave half a chunk in the file
(the mcap writer hands a chunk's bytes over whole and forgets them), and the
chunks written after it could not be read past it. So the part is marked torn:
the next write or flush (the flusher retries every tick) starts a new part,
and the torn one is finished behind it; the readers read a part up to a
damaged chunk, with a TruncatedMcapWarning, and go on with the next part.
``close()`` always releases the file and then raises the error that kept the
footer from being written.

Splitting (rosbag2's ``max_bagfile_size`` / ``max_bagfile_duration``): a log
that passes ``SplitLimits`` moves on to its next part, ``<stem>_1.mcap``,
``<stem>_2.mcap``, ... beside the first file, which keeps the name it was
given (rosbag2's ``<name>_<index>`` with the unsuffixed name as index 0, so a
short run is one file where it always was). Each part is a whole MCAP file,
finished with its footer when the next one starts, so only the last part can
be unfinished after a crash, and the writer's in-memory index (one entry per
chunk, until the footer) is per part. A part opens with a ``deer_vla.log_part``
metadata record (the log's id, its part number) and a finished one that is
continued ends with ``deer_vla.log_continued``: ``deer_vla.data.mcap_parts``
reads a log's parts back in order and names a missing one.
"""
from __future__ import annotations

import logging
import math
import numbers
import re
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mcap.reader import NonSeekingReader, make_reader
from mcap.stream_reader import CRCValidationError
from mcap_ros2.decoder import DecoderFactory
from mcap_ros2.writer import Writer

from deer_vla.core.writable import unlinked

log = logging.getLogger(__name__)

_SEP = "=" * 80
_TIME = "int32 sec\nuint32 nanosec\n"
_HEADER = "builtin_interfaces/Time stamp\nstring frame_id\n"
_LAYOUT = "MultiArrayDimension[] dim\nuint32 data_offset\n"
_DIM = "string label\nuint32 size\nuint32 stride\n"


def _with_deps(main: str, deps: list[tuple[str, str]]) -> str:
    return main + "".join(f"{_SEP}\nMSG: {name}\n{text}" for name, text in deps)


MSGDEFS: dict[str, str] = {
    "std_msgs/msg/String": "string data\n",
    "sensor_msgs/msg/Image": _with_deps(
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\nuint32 step\n"
        "uint8[] data\n",
        [("std_msgs/Header", _HEADER), ("builtin_interfaces/Time", _TIME)],
    ),
    "sensor_msgs/msg/CompressedImage": _with_deps(
        "std_msgs/Header header\nstring format\nuint8[] data\n",
        [("std_msgs/Header", _HEADER), ("builtin_interfaces/Time", _TIME)],
    ),
    "std_msgs/msg/Float32MultiArray": _with_deps(
        "MultiArrayLayout layout\nfloat32[] data\n",
        [("std_msgs/MultiArrayLayout", _LAYOUT), ("std_msgs/MultiArrayDimension", _DIM)],
    ),
    "std_msgs/msg/Float64MultiArray": _with_deps(
        "MultiArrayLayout layout\nfloat64[] data\n",
        [("std_msgs/MultiArrayLayout", _LAYOUT), ("std_msgs/MultiArrayDimension", _DIM)],
    ),
}


MAGIC = b"\x89MCAP0\r\n"
FLUSH_INTERVAL_S = 0.5  # a crash loses at most about this much (plus the write in progress)
CHUNK_BYTES = 256 * 1024  # chunks also close at this size, so a burst of images does not wait for the timer


# Default split limits, for a robot that runs for days. The writer holds ~1 KB per chunk until a file's footer
# (docs/RESULTS.md, bench_mcap_split.py). 256 MiB: a part that Foxglove opens and that copies off the robot in
# seconds, with at most ~1000 chunks (of CHUNK_BYTES) in the index (~1 MB). 1 h: a slow log (the monitor's ~1 KB
# step records never fill a chunk; the flusher closes one every FLUSH_INTERVAL_S) still rolls over hourly, which
# bounds its index at 3600 / FLUSH_INTERVAL_S = 7200 chunks (~7.5 MB), and a damaged part costs at most an hour.
DEFAULT_SPLIT_MIB = 256.0
DEFAULT_SPLIT_S = 3600.0
PART_METADATA = "deer_vla.log_part"  # {"log": id shared by the parts, "part": "0", "1", ...}
CONTINUED_METADATA = "deer_vla.log_continued"  # {"next_part": "n"}: a finished part whose log goes on


@dataclass(frozen=True)
class SplitLimits:
    """When a log moves on to its next part: past ``max_bytes`` or ``max_seconds`` (wall time since the part
    began, so sim time or odd stamps cannot stall it), whichever comes first; 0 = no limit of that kind."""

    max_bytes: int = int(DEFAULT_SPLIT_MIB * 2**20)
    max_seconds: float = DEFAULT_SPLIT_S
    # retention: when a part begins, only the newest keep_parts parts stay on disk (the oldest finished ones are
    # deleted), so a robot that logs for weeks keeps a bounded disk share; 0 = keep every part
    keep_parts: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.max_bytes, numbers.Integral) and self.max_bytes >= 0):
            raise ValueError(f"split max_bytes must be an integer >= 0 (0 = no size limit), got {self.max_bytes!r}")
        if not (math.isfinite(self.max_seconds) and self.max_seconds >= 0):
            raise ValueError(f"split max_seconds must be finite and >= 0 (0 = no time limit), got {self.max_seconds}")
        if not (isinstance(self.keep_parts, numbers.Integral) and not isinstance(self.keep_parts, bool)
                and self.keep_parts >= 0):
            raise ValueError(f"keep_parts must be an integer >= 0 (0 = keep every part), got {self.keep_parts!r}")


DEFAULT_SPLIT = SplitLimits()
NO_SPLIT = SplitLimits(max_bytes=0, max_seconds=0.0)


def prune_parts(parts: list[Path], keep: int, deleted: int) -> int:
    """Delete the oldest of ``parts`` (every part a log began, oldest first) beyond the newest ``keep`` (0 = keep
    all); ``deleted``: how many were deleted before. -> how many are deleted now. The readers read a log from
    its oldest part left (mcap_parts)."""
    if keep <= 0:
        return deleted
    for path in parts[deleted:max(deleted, len(parts) - keep)]:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # not ours to delete any more (moved, permissions): the log goes on regardless
            log.warning("log part %s not deleted (keep_parts %d): %s", path, keep, exc)
        else:
            log.info("log part %s deleted: only the newest %d parts are kept", path, keep)
        deleted += 1
    return deleted


def part_path(first: str | Path, part: int) -> Path:
    """Part ``part`` of the log whose first file is ``first``: ``first`` itself for 0, else ``<stem>_<part>``."""
    first = Path(first)
    return first if part == 0 else first.with_name(f"{first.stem}_{part}{first.suffix}")


def numbered_parts(first: str | Path) -> dict[int, Path]:
    """Files beside ``first`` named as its parts 1, 2, ... (whatever log wrote them) -> {part: path}."""
    first = Path(first)
    pattern = re.compile(re.escape(first.stem) + r"_([1-9][0-9]*)" + re.escape(first.suffix))
    if not first.parent.is_dir():
        return {}
    found = {}
    for candidate in first.parent.iterdir():
        match = pattern.fullmatch(candidate.name)
        if match and candidate.is_file():
            found[int(match.group(1))] = candidate
    return dict(sorted(found.items()))


class TruncatedMcapWarning(UserWarning):
    """An MCAP file has no footer (its writer died); only its complete chunks were read."""


class McapFormatError(ValueError):
    """A file that is not MCAP at all (another format, or garbage): nothing in it can be recovered."""


@contextmanager
def truncation_warnings_to_stderr(prog: str) -> Iterator[None]:
    """For command-line tools: TruncatedMcapWarning as a plain "PROG: warning: ..." line on stderr."""
    with warnings.catch_warnings():
        shown = warnings.showwarning
        warnings.simplefilter("always", TruncatedMcapWarning)

        def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, TruncatedMcapWarning):
                print(f"{prog}: warning: {message}", file=sys.stderr)
            else:
                shown(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


def _finish_part(writer: Writer, stream: IO[bytes], next_part: int | None = None) -> OSError | None:
    """Write a part's summary and footer (after a "continued" record naming ``next_part`` when its log goes on)
    and release its file whatever fails; -> the first OSError (disk full), or None."""
    error: OSError | None = None
    try:
        if next_part is not None:
            writer.add_metadata(CONTINUED_METADATA, {"next_part": str(next_part)})
        writer.finish()
    except OSError as exc:
        error = exc
    try:
        stream.close()
    except OSError as exc:  # the buffered tail could not be written either
        error = error or exc
    return error


class McapLog:
    """Append-only MCAP writer, split into parts by ``split``; one schema per type, registered on first use per
    part. Thread-safe. ``path`` is the first part; ``parts`` lists every part begun so far."""

    def __init__(self, path: str | Path, flush_interval_s: float = FLUSH_INTERVAL_S,
                 chunk_bytes: int = CHUNK_BYTES, split: SplitLimits = DEFAULT_SPLIT) -> None:
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stale = numbered_parts(self.path)
        if stale:  # its part 1 would be overwritten and the rest read as ours
            raise FileExistsError(f"{next(iter(stale.values()))} (a part of an earlier log named {self.path.name}) "
                                  "is in the way: move that log's parts aside first")
        self.split = split
        self.log_id = uuid.uuid4().hex
        self._chunk_bytes = chunk_bytes
        self.parts: list[Path] = []  # every part begun, deleted ones (split.keep_parts) included
        self.deleted_parts = 0
        self._stream, self._writer = self._start_part(0)  # the header is on disk: even an empty crashed log reads
        self._part_started = time.monotonic()
        self._part_count = 0  # messages in the current part
        self._schemas: dict[str, Any] = {}
        self._sequence = 0
        self.count = 0
        self.closed = False
        self._lock = threading.Lock()
        self._dirty = False  # messages written since the last flush
        self._torn = False  # a write to the current part failed: it may end in half a chunk (go on in a new part)
        self.flush_error: OSError | None = None  # the last failed background flush (None once one succeeds)
        self._stop = threading.Event()
        self._flush_interval_s = flush_interval_s
        self._flusher = threading.Thread(target=self._flush_loop, name=f"mcap_flush:{self.path.name}", daemon=True)
        self._flusher.start()

    def _start_part(self, part: int) -> tuple[IO[bytes], Writer]:
        """Open part ``part`` with its header and part record flushed to the OS; appended to ``parts``."""
        path = part_path(self.path, part)
        stream = self._open(path)
        try:
            writer = Writer(stream, chunk_size=self._chunk_bytes)
            writer.add_metadata(PART_METADATA, {"log": self.log_id, "part": str(part)})
            stream.flush()
        except BaseException:
            stream.close()
            raise
        self.parts.append(path)
        return stream, writer

    def _open(self, path: Path) -> IO[bytes]:
        """A part's file (the tests put a slow or failing disk here)."""
        return path.open("wb")

    def _split_due(self) -> bool:
        if self._part_count == 0:
            return False
        # tell() counts what reached the stream; the chunk being built (at most chunk_bytes) is not in it yet
        too_big = 0 < self.split.max_bytes <= self._stream.tell()
        too_old = 0 < self.split.max_seconds <= time.monotonic() - self._part_started
        return too_big or too_old

    def _next_part(self) -> None:
        """Finish the current part and go on in the next (holding the lock)."""
        # the next part is on disk before this one gets its "continued" record, so a kill in between leaves an
        # empty last part, never a finished part pointing at one that does not exist
        stream, writer = self._start_part(len(self.parts))
        old_stream, old_writer, old_path = self._stream, self._writer, self.parts[-2]
        self._stream, self._writer = stream, writer
        self._schemas = {}
        self._part_started, self._part_count, self._dirty = time.monotonic(), 0, False
        error = _finish_part(old_writer, old_stream, next_part=len(self.parts) - 1)
        if error is not None:  # disk full: its complete chunks stay readable (as an unfinished file)
            log.error("MCAP log %s: part not finished cleanly, going on in %s: %s", old_path, self.parts[-1], error)
        self.deleted_parts = prune_parts(self.parts, self.split.keep_parts, self.deleted_parts)

    def _flush_loop(self) -> None:
        while not self._stop.wait(self._flush_interval_s):
            try:
                self.flush()
            except OSError as exc:  # disk full, device gone: keep the flusher alive for when it recovers
                if self.flush_error is None:
                    log.error("MCAP log %s: flush failed, retrying every %.1f s: %s", self.path,
                              self._flush_interval_s, exc)
                self.flush_error = exc
            else:
                if self.flush_error is not None:
                    log.warning("MCAP log %s: flushing again after: %s", self.path, self.flush_error)
                self.flush_error = None

    def flush(self) -> None:
        """Close the open chunk and push it to the OS (not fsync: a process crash, not a power cut)."""
        with self._lock:
            if self.closed:
                return
            self._mend()
            if self._dirty:
                try:
                    # mcap_ros2's Writer wraps mcap's, whose flush() ends the chunk; it has no flush of its own
                    self._writer._writer.flush()
                except OSError:
                    self._torn = True
                    raise
                self._dirty = False

    def _mend(self) -> None:
        """After a failed write, go on in a new part (holding the lock); raises while the disk is still full."""
        if self._torn:
            self._next_part()  # the torn part is finished behind the new one; its whole chunks stay readable
            self._torn = False
            log.warning("MCAP log %s: writing again, in %s, after a failed write", self.path, self.parts[-1])

    def write(self, topic: str, datatype: str, message: Any, stamp_ns: int, may_split: bool = True) -> None:
        """``message`` is an rclpy message or a dict with the same fields. ``may_split=False`` keeps the message in
        the part of the one before it (a step written as several messages stays in one part)."""
        if datatype not in MSGDEFS:
            raise ValueError(f"no message definition for '{datatype}'; known: {sorted(MSGDEFS)}")
        # checked before the writer sees it: mcap fails on a bad time only halfway through a chunk, and that
        # chunk (and so close()) then fails for good, leaving the whole file without its footer
        if not (isinstance(stamp_ns, numbers.Integral) and 0 <= stamp_ns < 2**64):
            raise ValueError(f"MCAP log time must be an integer in 0..2^64-1 ns, got {stamp_ns!r}")
        stamp_ns = int(stamp_ns)
        with self._lock:
            if self.closed:
                raise RuntimeError(f"MCAP log {self.path} is closed")
            self._mend()
            if may_split and self._split_due():
                self._next_part()
            schema = self._schemas.get(datatype)
            try:
                if schema is None:
                    schema = self._schemas[datatype] = self._writer.register_msgdef(datatype, MSGDEFS[datatype])
                self._writer.write_message(topic, schema, message, log_time=stamp_ns, publish_time=stamp_ns,
                                           sequence=self._sequence)
            except OSError:  # a full chunk went out and failed partway
                self._torn = True
                raise
            self._sequence += 1
            self.count += 1
            self._part_count += 1
            self._dirty = True

    def unlinked(self) -> bool:
        """Whether the part being written was deleted (or its folder): the writes still succeed, into a file
        no one can read. False once closed. Never waits for the lock: a write stalled on the disk holds it, and
        the caller is a node's diagnostics timer (it held up the node's executor, its halt and its stops)."""
        return not self.closed and unlinked(self._stream)  # a part closed meanwhile (the next began) is not

    def close(self) -> None:
        """Write the summary and footer and release the file. If that fails (disk full), the file is still
        released and the log marked closed, then the OSError is raised: the readers recover such a file."""
        self._stop.set()
        error: OSError | None = None
        with self._lock:
            if not self.closed:
                self.closed = True
                error = _finish_part(self._writer, self._stream)
        if threading.current_thread() is not self._flusher:
            self._flusher.join(timeout=2.0)
        if error is not None:
            raise error


@dataclass
class McapMessage:
    topic: str
    datatype: str
    log_time_ns: int
    message: Any  # decoded dynamic message: fields as attributes


def is_finished(path: str | Path) -> bool:
    """Whether the file ends with MCAP's closing magic (its writer finished it)."""
    with Path(path).open("rb") as stream:
        stream.seek(0, 2)
        size = stream.tell()
        if size < 2 * len(MAGIC):
            return False
        stream.seek(size - len(MAGIC))
        return stream.read(len(MAGIC)) == MAGIC


def read_messages(path: str | Path, topics: list[str] | None = None,
                  log_time_order: bool = True) -> Iterator[McapMessage]:
    """All messages of ``path`` in log-time order, or with ``log_time_order=False`` in the order written (optionally
    only ``topics``). The logs this package writes are read in the order written (mcap_parts): their log times are
    the senders' stamps, which may go backwards, and a step or record must not move before an earlier one.

    An unfinished file (no footer: the writer crashed) is read in file order up to its last complete
    chunk, with a TruncatedMcapWarning saying so."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MCAP file not found: {path}")
    if not is_finished(path):
        with path.open("rb") as stream:
            head = stream.read(len(MAGIC))
        # a prefix of the magic is a writer killed before its header was out (read as empty, with the warning)
        if not MAGIC.startswith(head):
            raise McapFormatError(f"{path}: not an MCAP file (it starts with {head!r}, MCAP with {MAGIC!r})")
        yield from _read_unfinished(path, topics)
        return
    if not log_time_order:
        yield from _read_in_file_order(path, topics)
        return
    with path.open("rb") as stream:
        try:
            # chunk checksums checked: a flipped bit in a chunk decoded to a wrong image, imported without a word
            raw = make_reader(stream, validate_crcs=True).iter_messages(topics=topics, log_time_order=True)
        except Exception as exc:  # a damaged magic or summary (InvalidMagic, a bad schema name): one line
            raise McapFormatError(f"{path}: cannot read the file's header or summary "
                                  f"({type(exc).__name__}: {exc}); the file is damaged") from exc
        factory, decoders = DecoderFactory(), {}
        count = 0
        while True:
            try:
                schema, channel, message = next(raw)
            except StopIteration:
                return
            except Exception as exc:  # a damaged chunk or index (ZstdError, a cut record): one line, not a trace
                raise McapFormatError(f"{path}: cannot read past message {count} in log-time order "
                                      f"({type(exc).__name__}: {exc}); the file is damaged") from exc
            datatype = schema.name if schema else ""
            if channel.id not in decoders:
                try:
                    decoders[channel.id] = factory.decoder_for(channel.message_encoding, schema)
                except Exception as exc:  # a damaged schema text (UnicodeDecodeError, a bad type name)
                    raise McapFormatError(f"{path}: {channel.topic}: its schema {datatype!r} cannot be read "
                                          f"({type(exc).__name__}: {exc}); the file is damaged") from exc
            decoder = decoders[channel.id]
            if decoder is None:
                raise McapFormatError(f"{path}: {channel.topic}: messages encoded as {channel.message_encoding!r} "
                                      f"({datatype or 'no schema'}) cannot be decoded; ROS 2 recordings use cdr")
            try:
                decoded = decoder(message.data)
            except Exception as exc:  # a malformed message (struct.error, ...) in an otherwise sound file
                raise McapFormatError(f"{path}: {channel.topic} at {message.log_time} ns: the message does not "
                                      f"decode as {datatype} ({type(exc).__name__}: {exc})") from exc
            count += 1
            yield McapMessage(channel.topic, datatype, message.log_time, decoded)


@dataclass
class _Pass:
    """What one pass over a file's records in the order written got: messages, and the error that ended it."""

    count: int = 0
    error: Exception | None = None


def _file_order(path: Path, topics: list[str] | None, got: _Pass) -> Iterator[McapMessage]:
    """The messages of ``path`` in the order written (one pass over the chunks: the indexed reader would
    decompress them all first), up to the first record that cannot be read; ``got`` says how far it came."""
    with path.open("rb") as stream:
        try:
            reader = NonSeekingReader(stream, validate_crcs=True, decoder_factories=[DecoderFactory()])
            for schema, channel, message, decoded in reader.iter_decoded_messages(topics=topics,
                                                                                  log_time_order=False):
                got.count += 1
                yield McapMessage(channel.topic, schema.name if schema else "", message.log_time, decoded)
        except Exception as exc:  # a cut-off or damaged chunk or record: everything before it is kept
            got.error = exc


def _read_in_file_order(path: Path, topics: list[str] | None) -> Iterator[McapMessage]:
    """A finished file, up to a damaged chunk (a write that failed partway, disk full) with a warning."""
    got = _Pass()
    yield from _file_order(path, topics, got)
    if got.error is not None:  # the log's next part goes on
        warnings.warn(TruncatedMcapWarning(
            f"MCAP file {path} is damaged after {got.count} message(s) ({_damage(got.error)}): "
            f"{type(got.error).__name__}: {got.error}"), stacklevel=3)


def _damage(error: Exception) -> str:
    """What likely damaged a file, from the error its reading ended with."""
    if isinstance(error, CRCValidationError):
        return "a chunk's checksum does not match its data: changed on disk or in a copy"
    return "a write failed partway?"


def _read_unfinished(path: Path, topics: list[str] | None) -> Iterator[McapMessage]:
    if path.stat().st_size < len(MAGIC):  # nothing but (part of) the magic: no header, nothing to recover
        warnings.warn(TruncatedMcapWarning(
            f"MCAP file {path} is empty ({path.stat().st_size} bytes: its writer stopped before its header was "
            "written?); no messages"), stacklevel=3)
        return
    started = time.monotonic()
    got = _Pass()
    yield from _file_order(path, topics, got)  # the writers append in time order
    if got.error is None:
        problem = "ends without a footer"
    else:
        ended = "is damaged" if isinstance(got.error, CRCValidationError) else "is cut off"
        problem = f"{ended} ({_damage(got.error)}; {type(got.error).__name__}: {got.error})"
    warnings.warn(TruncatedMcapWarning(
        f"MCAP file {path} was not closed (its writer crashed?) and {problem}; recovered {got.count} message(s) "
        f"from its complete chunks in {time.monotonic() - started:.1f} s"
    ), stacklevel=3)
