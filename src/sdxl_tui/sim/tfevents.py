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
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from sdxl_tui.formats.tfrecord import event_file_name, file_version_event, frame, scalar_event

__all__ = ["EventWriter"]


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
