"""A split MCAP log's parts, found and read back in order (``McapLog`` writes them: deer_vla.data.mcap_io).

A log is named by any of:

- a file: that file and the parts after it (the first file: the whole log);
- a directory, or a glob: the one log among its ``.mcap`` files (an error naming them if there are several),
  from its earliest part there (so a log whose oldest parts were deleted to free space still reads).

The parts are ``<stem>.mcap``, ``<stem>_1.mcap``, ``<stem>_2.mcap``, ...; each starts with a
``deer_vla.log_part`` record naming its log and number, so a file of another log that happens to be named like
a part is never read as one. A missing part (a gap, or the part a finished part says comes next) is a
``MissingPartError`` naming the file. A file without that record (written before logs were split, or by another
program) is a log of its own.
"""
from __future__ import annotations

import glob
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mcap.reader import make_reader
from mcap.records import Channel, Metadata
from mcap.stream_reader import StreamReader

from deer_vla.data.mcap_io import (
    CONTINUED_METADATA,
    PART_METADATA,
    McapMessage,
    is_finished,
    numbered_parts,
    part_path,
    read_messages,
)


class MissingPartError(FileNotFoundError):
    """A split log lacks a part between (or right after) the parts that are there."""


@dataclass(frozen=True)
class PartInfo:
    log: str  # the id every part of one log shares
    part: int


def part_info(path: str | Path) -> PartInfo | None:
    """The ``deer_vla.log_part`` record right after the file's header; None for a file without one."""
    try:
        with Path(path).open("rb") as stream:
            # emit_chunks: never decompress anything; the record is the second in the file or not there
            records = StreamReader(stream, emit_chunks=True, record_size_limit=1 << 20).records
            for _, record in zip(range(2), records):
                if isinstance(record, Metadata) and record.name == PART_METADATA:
                    return PartInfo(str(record.metadata["log"]), int(record.metadata["part"]))
    except Exception:  # not MCAP, cut off inside its header, a damaged record: read_messages says what it is
        return None
    return None


def _continued_in(path: Path) -> int | None:
    """The next part a finished part says its log goes on in (None: the last part, or not finished)."""
    if not is_finished(path):
        return None
    try:
        with path.open("rb") as stream:
            for entry in make_reader(stream).iter_metadata():
                if entry.name == CONTINUED_METADATA:
                    return int(entry.metadata["next_part"])
    except Exception:  # a damaged summary: read_messages reports it when the part is read
        return None
    return None


def _first_name(path: Path, info: PartInfo | None) -> Path:
    """The first part's path by name (``<stem>_<n>.mcap`` -> ``<stem>.mcap``)."""
    if info is None or info.part == 0:
        return path
    match = re.fullmatch(r"(.*)_" + str(info.part) + re.escape(path.suffix), path.name)
    if match is None:
        raise ValueError(f"{path} is part {info.part} of a split MCAP log but is not named <first>_{info.part}"
                         f"{path.suffix}: its other parts cannot be found (rename it back)")
    return path.with_name(match.group(1) + path.suffix)


def _parts_from(start: Path) -> list[Path]:
    """``start`` and the parts of its log after it, checked complete."""
    info = part_info(start)
    if info is None:
        return [start]
    first = _first_name(start, info)
    parts, last = [start], info.part
    while True:
        candidate = part_path(first, last + 1)
        if not candidate.is_file():
            break
        following = part_info(candidate)
        if following is None and candidate.stat().st_size < 64:
            parts.append(candidate)  # created by a writer killed before its header was out: empty, read as such
            last += 1
            break
        if following != PartInfo(info.log, last + 1):
            raise ValueError(f"{candidate} is named as part {last + 1} of the MCAP log {first} but was written by "
                             "another log: move it aside")
        parts.append(candidate)
        last += 1
    later = [n for n, path in numbered_parts(first).items() if n > last + 1
             and (other := part_info(path)) is not None and other.log == info.log]
    said_next = _continued_in(parts[-1])
    if later or said_next is not None:
        there = f"part {later[0]} is there" if later else f"{parts[-1].name} says the log goes on"
        raise MissingPartError(f"MCAP log {first}: part {part_path(first, last + 1)} is missing ({there})")
    return parts


# how far into a file without a summary its channels are looked for: they are written before their first message
SCAN_BYTES = 32 * 2**20


def _topics(path: Path, wanted: str | None = None) -> set[str] | None:
    """The topics of an MCAP file's channels: a finished file's from its summary; one without (still being
    written, or cut short by a crash) from the channel records of its readable start, up to one on ``wanted``
    or ``SCAN_BYTES``. None: not one channel could be read."""
    try:
        with path.open("rb") as stream:
            summary = make_reader(stream).get_summary()
    except Exception:  # the mcap library raises its own errors, and struct's, for a damaged end
        summary = None
    if summary is not None:
        return {channel.topic for channel in summary.channels.values()}
    seen: set[str] = set()
    try:
        with path.open("rb") as stream:
            for record in StreamReader(stream).records:
                if isinstance(record, Channel):
                    seen.add(record.topic)
                    if record.topic == wanted:
                        break
                if stream.tell() > SCAN_BYTES:
                    break
    except Exception:  # a cut-off chunk or record ends what can be read
        pass
    return seen or None


def _one_log(candidates: list[Path], named: str, topic: str | None = None) -> Path:
    """The earliest file of the single log among ``candidates``; with ``topic``, of the single one that can hold
    it, where there are several (a demo's folder holds the policy's recording and the monitor's log)."""
    logs: dict[str, list[tuple[int, Path]]] = {}
    for path in candidates:
        info = part_info(path)
        key = info.log if info is not None else f"file:{path}"
        logs.setdefault(key, []).append((info.part if info is not None else 0, path))
    if not logs:
        raise FileNotFoundError(f"no MCAP files in {named}")
    starts = sorted(min(parts)[1] for parts in logs.values())
    if len(starts) > 1 and topic is not None:
        topics = {start: _topics(start, topic) for start in starts}
        holding = [start for start in starts if topic in (topics[start] or ())]
        unread = [start for start in starts if topics[start] is None]  # cut short before any channel: no message
        if len(holding) == 1:
            starts = holding
        elif not holding and len(unread) == 1:
            starts = unread
    if len(starts) > 1:
        raise ValueError(f"{named} holds {len(starts)} MCAP logs ({', '.join(p.name for p in starts)}): "
                         "give one of them")
    return starts[0]


def log_parts(source: str | Path, topic: str | None = None) -> list[Path]:
    """The files of the log ``source`` names (a file, a directory or a glob; module doc), in order; ``topic``: of
    the one log that holds it, where a directory or glob names several."""
    path = Path(source)
    if path.is_dir():
        return _parts_from(_one_log(sorted(p for p in path.iterdir() if p.suffix == ".mcap" and p.is_file()),
                                    f"directory {path}", topic))
    if path.is_file():
        return _parts_from(path)
    if glob.has_magic(str(source)):
        matches = sorted(Path(p) for p in glob.glob(str(source)) if Path(p).is_file())
        if not matches:
            raise FileNotFoundError(f"no MCAP files match {source}")
        return _parts_from(_one_log(matches, f"the files matching {source}", topic))
    raise FileNotFoundError(f"MCAP log not found: {source}")


def read_log(source: str | Path, topics: list[str] | None = None) -> Iterator[McapMessage]:
    """Every message of the log ``source`` names, part after part, in the order written (not sorted by log time: a
    sender's stamps may go backwards, and a step must stay where it was written); an unfinished part
    (the last, after a crash) is read up to its last complete chunk with a TruncatedMcapWarning."""
    for _, message in read_log_by_part(source, topics):
        yield message


def read_log_by_part(source: str | Path, topics: list[str] | None = None) -> Iterator[tuple[Path, McapMessage]]:
    """``read_log``'s messages, each with the part file it is in (for errors that name the file)."""
    for path in log_parts(source):
        for message in read_messages(path, topics, log_time_order=False):
            yield path, message
