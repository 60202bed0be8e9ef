"""An event reader's bounded state as bytes: what the prefetch child sends and the cache keeps.

Why one format for both: the state a forked child hands back (``sources/forked.py``) and the
state remembered between two ``sdxl-tui status`` calls (``sources/cache.py``) are the same
thing, per event file its identity and read offset, per tag its exact count and last point
and its downsampled display points, so they share one encoder and one decoder, and the
tests of either exercise both.

Layout: ``MAGIC``, a little-endian u64 header length and u32 CRC-32 of the rest, the header as JSON (files, runs, tags'
counts, last points, bucket widths and column lengths, resume steps, problems), then three
columns for every tag's points in header order: int64 steps, float64 values, float64 wall
times (``array`` bytes, native order recorded in the header). No pickle: a cache file is
data, and a damaged or foreign one fails to decode (``ValueError``), never runs code.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sdxl_tui.model import ScalarPoint
from sdxl_tui.sources.eventdecode import FileState, RunState
from sdxl_tui.sources.series import SeriesAccumulator

__all__ = ["MAGIC", "EventState", "StateStore", "decode_state", "encode_state"]

MAGIC = b"SXTEVS02"
_HEAD = struct.Struct("<QI")  # header length, CRC-32 of everything after it
_Cols = tuple[list[int], list[float], list[float]]


@dataclass(slots=True)
class EventState:
    """Everything an ``EventReader`` keeps between refreshes that is worth keeping."""

    max_points: int
    files: dict[str, FileState] = field(default_factory=dict)
    runs: dict[tuple[str, str], RunState] = field(default_factory=dict)
    accs: dict[str, SeriesAccumulator] = field(default_factory=dict)
    resume: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    last_wall: float | None = None
    nonscalar: set[str] = field(default_factory=set)


class StateStore(Protocol):
    """Where a reader's state is remembered between processes (``sources/cache.EventCache``)."""

    def load(self) -> EventState | None: ...

    def save(self, state: EventState) -> bool: ...

    def save_encoded(self, data: bytes) -> bool: ...  # a state ``encode_state`` made already


def _flat(cols: Sequence[tuple[Sequence[int], Sequence[float], Sequence[float]]]) -> _Cols:
    steps: list[int] = []
    values: list[float] = []
    walls: list[float] = []
    for s, v, w in cols:
        steps.extend(s)
        values.extend(v)
        walls.extend(w)
    return steps, values, walls


def encode_state(state: EventState) -> bytes:
    """The state as bytes (the accumulators' pending new columns included)."""
    steps: array[int] = array("q")
    values: array[float] = array("d")
    walls: array[float] = array("d")
    accs: list[object] = []
    for acc in state.accs.values():
        new = _flat(acc.new_cols)
        lengths = []
        for cols in (acc.kept, acc.pend, new):
            try:
                steps.extend(cols[0])
            except OverflowError as exc:  # a stitched step beyond int64 (only in made-up files)
                raise ValueError(f"event state: {exc}") from exc
            values.extend(cols[1])
            walls.extend(cols[2])
            lengths.append(len(cols[0]))
        last = acc.last
        accs.append([acc.tag, acc.count, None if last is None else [last.step, last.value, last.wall_time],
                     acc.width, lengths, acc.dirty, acc.compacted, acc.plugin])
    header = {
        "byteorder": sys.byteorder,
        "max_points": state.max_points,
        "files": [[f.path, list(f.run_key), f.dev, f.ino, f.offset, f.size, f.records, f.pending,
                   f.mtime_ns] for f in state.files.values()],
        "runs": [[list(r.key), r.offsets, r.ordinal, r.marked, r.first_wall] for r in state.runs.values()],
        "accs": accs,
        "resume": state.resume,
        "problems": state.problems,
        "last_wall": state.last_wall,
        "nonscalar": sorted(state.nonscalar),
        "points": len(steps),
    }
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    rest = b"".join((head, steps.tobytes(), values.tobytes(), walls.tobytes()))
    return b"".join((MAGIC, _HEAD.pack(len(head), zlib.crc32(rest)), rest))


def decode_state(data: bytes | memoryview) -> EventState:
    """The state ``encode_state`` wrote. ValueError for anything else (damaged, foreign)."""
    view = memoryview(data)
    if bytes(view[: len(MAGIC)]) != MAGIC or len(view) < len(MAGIC) + _HEAD.size:
        raise ValueError("not an sdxl-tui event state")
    hlen, crc = _HEAD.unpack_from(view, len(MAGIC))
    at = len(MAGIC) + _HEAD.size
    if zlib.crc32(view[at:]) != crc:
        raise ValueError("damaged event state (CRC)")
    try:
        header = json.loads(bytes(view[at : at + hlen]))
        return _build(header, view[at + hlen :])
    except (KeyError, TypeError, IndexError, AttributeError, UnicodeDecodeError) as exc:
        raise ValueError(f"damaged event state: {exc!r}") from exc


def _build(header: dict[str, Any], body: memoryview) -> EventState:
    n = header["points"]
    if not isinstance(n, int) or len(body) != 24 * n:
        raise ValueError("event state: wrong column length")
    steps: array[int] = array("q")
    values: array[float] = array("d")
    walls: array[float] = array("d")
    steps.frombytes(body[: 8 * n])
    values.frombytes(body[8 * n : 16 * n])
    walls.frombytes(body[16 * n :])
    if header["byteorder"] != sys.byteorder:
        for col in (steps, values, walls):
            col.byteswap()
    max_points = int(header["max_points"])
    state = EventState(max_points)
    for path, key, dev, ino, offset, size, records, pending, mtime in header["files"]:
        state.files[path] = FileState(path, (key[0], key[1]), dev, ino, offset, size, records, pending, mtime)
    for key, offsets, ordinal, marked, *rest in header["runs"]:
        run_key = (key[0], key[1])
        first_wall = float(rest[0]) if rest and rest[0] is not None else None  # absent in older caches
        state.runs[run_key] = RunState(run_key, {str(t): int(o) for t, o in offsets.items()}, ordinal, marked,
                                       first_wall)
    at = 0
    for tag, count, last, width, lengths, dirty, compacted, plugin in header["accs"]:
        acc = state.accs[tag] = SeriesAccumulator(tag, max_points)
        cols: list[_Cols] = []
        for k in lengths:
            cols.append((steps[at : at + k].tolist(), values[at : at + k].tolist(), walls[at : at + k].tolist()))
            at += k
        acc.kept, acc.pend = cols[0], cols[1]
        if cols[2][0]:
            acc.new_cols = [cols[2]]
            acc.new_n = len(cols[2][0])
        acc.count = int(count)
        acc.last = None if last is None else ScalarPoint(int(last[0]), float(last[1]), float(last[2]))
        acc.width, acc.dirty, acc.compacted, acc.plugin = int(width), bool(dirty), bool(compacted), plugin
    if at != n:
        raise ValueError("event state: columns do not add up")
    state.resume = [int(x) for x in header["resume"]]
    state.problems = [str(x) for x in header["problems"]]
    lw = header["last_wall"]
    state.last_wall = None if lw is None else float(lw)
    state.nonscalar = {str(x) for x in header["nonscalar"]}
    return state
