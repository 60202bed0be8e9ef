"""TensorBoard event files written byte-for-byte like ``torch.utils.tensorboard.SummaryWriter``.

Each record is TFRecord framing (little-endian u64 length, masked CRC32C of the length, the
payload, masked CRC32C of the payload) around an ``Event`` protobuf. The few protobuf fields
needed are encoded by hand (no tensorboard import): the first event carries
``file_version="brain.Event:2"`` and ``source_metadata.writer`` exactly like tensorboard's
``EventFileWriter``; scalars are one event per tag with ``simple_value`` (float32), as
accelerate's ``TensorBoardTracker.log`` calls ``add_scalar`` per key and then ``flush()``.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

# One CRC32C for the whole project: the reader's (C extension when installed, else a
# table-driven pure-Python fallback). tests/oracles.py checks it independently, bit by bit.
from sdxl_tui.sources.events import _crc32c_py as crc32c_py
from sdxl_tui.sources.events import crc32c, masked_crc32c

__all__ = ["EventWriter", "crc32c", "crc32c_py", "frame", "masked_crc32c"]


def frame(payload: bytes) -> bytes:
    """One TFRecord: length, masked CRC of the length, payload, masked CRC of the payload."""
    header = struct.pack("<Q", len(payload))
    return (
        header
        + struct.pack("<I", masked_crc32c(header))
        + payload
        + struct.pack("<I", masked_crc32c(payload))
    )


def _varint(n: int) -> bytes:
    if n < 0:
        n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(tag: int, data: bytes) -> bytes:
    return bytes([tag]) + _varint(len(data)) + data


def file_version_event(wall_time: float) -> bytes:
    """The first Event of every file: ``file_version`` and the writer's source metadata."""
    meta = _len_field(0x0A, b"tensorboard.summary.writer.event_file_writer")
    return b"\x09" + struct.pack("<d", wall_time) + _len_field(0x1A, b"brain.Event:2") + _len_field(0x52, meta)


def scalar_event(tag: str, value: float, step: int, wall_time: float) -> bytes:
    """``Event(wall_time, step, summary=Summary(value=[Value(tag, simple_value)]))``."""
    val = _len_field(0x0A, tag.encode("utf-8")) + b"\x15" + struct.pack("<f", value)
    summary = _len_field(0x0A, val)
    body = b"\x09" + struct.pack("<d", wall_time)
    if step:
        body += b"\x10" + _varint(step)
    return body + _len_field(0x2A, summary)


def event_file_name(wall_time: float, hostname: str | None = None, pid: int | None = None) -> str:
    """``events.out.tfevents.<10-digit time>.<hostname>.<pid>.0`` like tensorboard's writer."""
    host = hostname or socket.gethostname()
    return f"events.out.tfevents.{int(wall_time):010d}.{host}.{os.getpid() if pid is None else pid}.0"


class EventWriter:
    """Appends scalar events to one file and flushes after every ``log`` call."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        wall_time: float | None = None,
        hostname: str | None = None,
        pid: int | None = None,
    ) -> None:
        now = time.time() if wall_time is None else wall_time
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / event_file_name(now, hostname, pid)
        self._f: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 - kept open like SummaryWriter's
        self._f.write(frame(file_version_event(now)))
        self._f.flush()

    def log(self, values: Mapping[str, float], step: int, wall_time: float | None = None) -> None:
        """``accelerator.log(values, step=step)``: one event per tag, then flush."""
        for tag, value in values.items():
            t = time.time() if wall_time is None else wall_time
            self._f.write(frame(scalar_event(tag, float(value), step, t)))
        self._f.flush()

    def write_raw(self, data: bytes) -> None:
        self._f.write(data)

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            self._f.close()
