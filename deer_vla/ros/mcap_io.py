"""MCAP files of ROS 2 messages (readable by Foxglove and PlotJuggler).

mcap-ros2-support serialises from a message definition text, so the few
types deer_vla records are defined here (same fields as the .msg files,
comments dropped) and do not depend on a ROS installation's share/ folder.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from mcap_ros2.writer import Writer

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
    "std_msgs/msg/Float32MultiArray": _with_deps(
        "MultiArrayLayout layout\nfloat32[] data\n",
        [("std_msgs/MultiArrayLayout", _LAYOUT), ("std_msgs/MultiArrayDimension", _DIM)],
    ),
    "std_msgs/msg/Float64MultiArray": _with_deps(
        "MultiArrayLayout layout\nfloat64[] data\n",
        [("std_msgs/MultiArrayLayout", _LAYOUT), ("std_msgs/MultiArrayDimension", _DIM)],
    ),
}


class McapLog:
    """Append-only MCAP writer; one schema per type, registered on first use."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stream = self.path.open("wb")
        self._writer = Writer(self._stream)
        self._schemas: dict[str, Any] = {}
        self._sequence = 0
        self.count = 0
        self.closed = False

    def write(self, topic: str, datatype: str, message: Any, stamp_ns: int) -> None:
        """``message`` is an rclpy message or a dict with the same fields."""
        if self.closed:
            raise RuntimeError(f"MCAP log {self.path} is closed")
        if datatype not in MSGDEFS:
            raise ValueError(f"no message definition for '{datatype}'; known: {sorted(MSGDEFS)}")
        schema = self._schemas.get(datatype)
        if schema is None:
            schema = self._schemas[datatype] = self._writer.register_msgdef(datatype, MSGDEFS[datatype])
        self._writer.write_message(topic, schema, message, log_time=stamp_ns, publish_time=stamp_ns,
                                   sequence=self._sequence)
        self._sequence += 1
        self.count += 1

    def close(self) -> None:
        if not self.closed:
            self._writer.finish()
            self._stream.close()
            self.closed = True


@dataclass
class McapMessage:
    topic: str
    datatype: str
    log_time_ns: int
    message: Any  # decoded dynamic message: fields as attributes


def read_messages(path: str | Path, topics: list[str] | None = None) -> Iterator[McapMessage]:
    """All messages of ``path`` in log-time order (optionally only ``topics``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MCAP file not found: {path}")
    with path.open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages(topics=topics, log_time_order=True):
            yield McapMessage(channel.topic, schema.name if schema else "", message.log_time, decoded)
