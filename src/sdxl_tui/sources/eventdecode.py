"""Decoding the records of an event file into per-tag series: the reader's inner loop.

Why its own module: this is where the cost of a cold read is (hundreds of thousands of
records). Records are framed and checked as ``formats/tfrecord.py`` defines; runs of records
with the same shape (sd-scripts writes one ``simple_value`` per event, the same few tags over
and over) are checked and decoded a block at a time with C-level bytes operations, anything
else by the plain loop (:func:`~sdxl_tui.formats.tfrecord.decode_event`). Both paths give the
same points; ``tests/unit/test_tfrecord_properties.py`` checks them against protobuf.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from sdxl_tui.formats.tfrecord import (
    HEADER,
    MASK_DELTA,
    crc32c,
    decode_event,
    masked_crc32c_many,
    read_varint,
    simple_value_tag,
    unmask,
)
from sdxl_tui.sources.series import SeriesAccumulator

__all__ = ["MAX_RECORD", "FileState", "RecordDecoder", "RunState"]

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_F64 = struct.Struct("<d")
_F32 = struct.Struct("<f")
_BLOCK_MIN_BYTES = 4096  # below this the plain loop is as fast as setting up a block
_BLOCK_RECORDS = 8192  # records per block: a pattern break costs at most one block's work
MAX_RECORD = 256 << 20
_BYTES = [bytes([i]) for i in range(256)]
#: Per (tag, step) key: append step, append value, append wall time, step offset of the run.
_Sink = tuple[Callable[[int], object], Callable[[float], object], Callable[[float], object], int]


@dataclass(slots=True)
class FileState:
    path: str
    run_key: tuple[str, str]
    dev: int = -1
    ino: int = -1
    offset: int = 0
    size: int = 0
    records: int = 0
    pending: int = 0  # bytes of a partly written last record
    mtime_ns: int = 0  # st_mtime_ns when last read (a cached state is trusted only if it matches)


@dataclass(slots=True)
class RunState:
    key: tuple[str, str]
    offsets: dict[str, int] = field(default_factory=dict)  # tag -> step offset
    ordinal: int = 0  # 0 for the first run that produced scalars
    marked: bool = False  # its start was recorded in resume_steps
    first_wall: float | None = None  # wall time of its first scalar (runs never overlap in time)


class RecordDecoder:
    """The decoding state and loop; :class:`~sdxl_tui.sources.events.EventReader` owns the
    files, the discovery and the prefetch around it."""

    max_points: int
    _runs: dict[tuple[str, str], RunState]
    _acc: dict[str, SeriesAccumulator]
    _resume: list[int]
    _last_wall: float | None
    _hdr_len: dict[bytes, int]
    _mid_tags: dict[bytes, str | None]
    _nonscalar: set[str]

    @staticmethod
    def _record_size(buf: bytes) -> int:
        if len(buf) < 12:
            return 0
        (length,) = _U64.unpack_from(buf, 0)
        return int(length) + 16

    def _parse(self, buf: bytes, fs: FileState, problems: list[str], at_eof: bool) -> tuple[int, int, bool]:
        """Parse complete records in ``buf``; return (bytes consumed, records, stopped short).

        The loop is the hot path of a cold start (200,000 records): headers already verified
        are cached (one per distinct record length), and the layout torch's ``add_scalar``
        writes (``09 wall [10 step] 2a L 0a L 0a L tag 15 value``) is decoded inline into
        per-tag arrays; anything else goes through the general decoder.
        """
        n = len(buf)
        pos = 0
        recs = 0
        hdr_len = self._hdr_len
        mids = self._mid_tags
        unpack_u32 = _U32.unpack_from
        unpack_f64 = _F64.unpack_from
        unpack_f32 = _F32.unpack_from
        crc = crc32c
        delta = MASK_DELTA
        run = self._runs.get(fs.run_key)
        if run is None:
            run = self._runs[fs.run_key] = RunState(fs.run_key)
        # per-tag columns of this chunk: plain lists (extending a list from the tuples the
        # block decoder yields copies pointers; an array would convert every value)
        batch: dict[str, tuple[list[int], list[float], list[float]]] = {}
        # mid+tag bytes -> (append step, append value, append wall, step offset)
        sinks: dict[bytes, _Sink] = {}
        by_tag: dict[
            str, tuple[Callable[[int], object], Callable[[float], object], Callable[[float], object], int]
        ] = {}
        last_wall = self._last_wall
        stopped_short = False

        def sink_for(
            tag: str, step: int, wall: float
        ) -> tuple[Callable[[int], object], Callable[[float], object], Callable[[float], object], int]:
            s = by_tag.get(tag)
            if s is None:
                off = self._offset_for(run, tag, step, wall)
                arrs: tuple[list[int], list[float], list[float]] = ([], [], [])
                batch[tag] = arrs
                s = by_tag[tag] = (arrs[0].append, arrs[1].append, arrs[2].append, off)
            return s

        block_at = pos  # next position where a periodic block is tried
        while pos + 12 <= n:
            if pos >= block_at and n - pos > _BLOCK_MIN_BYTES:
                got = self._block(buf, pos, run, batch, by_tag, sink_for)
                if got is not None:
                    pos, k, wall = got
                    recs += k
                    last_wall = wall
                    block_at = pos
                    continue
                block_at = pos + 1024  # not periodic here: plain records for a while
            hdr = buf[pos : pos + 12]
            length = hdr_len.get(hdr)
            if length is None:
                length, lcrc = HEADER.unpack(hdr)
                if unmask(lcrc) != crc(hdr[:8]) or length > MAX_RECORD:
                    nxt = self._resync(buf, pos + 1)
                    if nxt < 0:
                        if at_eof and n - pos < 12 + 16:
                            stopped_short = True  # maybe a header still being written
                            break
                        problems.append(
                            f"bad record header (length CRC) at byte {fs.offset + pos} of {fs.path}; "
                            f"skipped {max(0, n - pos - 11)} bytes"
                        )
                        pos = max(pos, n - 11)
                        break
                    problems.append(
                        f"bad record header (length CRC) at byte {fs.offset + pos} of {fs.path}; "
                        f"skipped {nxt - pos} bytes"
                    )
                    pos = nxt
                    continue
                if len(hdr_len) < 4096:
                    hdr_len[hdr] = length
            start = pos + 12
            end = start + length
            if end + 4 > n:
                stopped_short = True
                break
            c = crc(buf[start:end])
            if ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + delta) & 0xFFFFFFFF != unpack_u32(buf, end)[0]:
                problems.append(f"bad record data CRC at byte {fs.offset + pos} of {fs.path}; record skipped")
                pos = end + 4
                continue
            pos = end + 4
            recs += 1
            if length > 16 and buf[start] == 9 and buf[end - 5] == 0x15:
                b = buf[start + 9]
                if b == 0x10:
                    b = buf[start + 10]
                    if b < 128:
                        step = b
                        q = start + 11
                    else:
                        b2 = buf[start + 11]
                        if b2 < 128:
                            step = (b & 127) | (b2 << 7)
                            q = start + 12
                        else:
                            step, q = read_varint(buf, start + 10)
                            if step >= 1 << 63:
                                step -= 1 << 64
                else:
                    step = 0
                    q = start + 9
                key = buf[q : end - 5]
                s = sinks.get(key)
                if s is None and key not in mids:
                    mids[key] = simple_value_tag(key)
                    if len(mids) > 10_000:
                        mids.clear()
                if s is None:
                    tag = mids.get(key)
                    if tag is not None and tag not in self._nonscalar:
                        s = sinks[key] = sink_for(tag, step, unpack_f64(buf, start + 1)[0])
                if s is not None:
                    wall = unpack_f64(buf, start + 1)[0]
                    s[0](step + s[3])
                    s[1](unpack_f32(buf, end - 4)[0])
                    s[2](wall)
                    last_wall = wall
                    continue
            try:
                ev = decode_event(buf[start:end])
            except (ValueError, IndexError, struct.error) as exc:
                problems.append(f"undecodable event at byte {fs.offset + pos - length - 16} of {fs.path}: {exc}")
                continue
            if ev.file_version is None:
                last_wall = ev.wall_time
            for tag, plugin in ev.plugins:
                if plugin != "scalars" and tag not in self._nonscalar:
                    self._nonscalar.add(tag)
                    # the fast path routes a record to the sink it made for the same bytes
                    # before: a tag that is no scalar from here on must lose those sinks, or its
                    # later simple values would count in this chunk only (not after a restart)
                    sink = by_tag.get(tag)
                    for stale in [key for key, v in sinks.items() if v is sink]:
                        del sinks[stale]
            for tag, value in ev.scalars:
                if tag in self._nonscalar:
                    continue
                s = sink_for(tag, ev.step, ev.wall_time)
                s[0](ev.step + s[3])
                s[1](value)
                s[2](ev.wall_time)
        self._last_wall = last_wall
        for tag, (st_, va, wa) in batch.items():
            acc = self._acc.get(tag)
            if acc is None:
                acc = self._acc[tag] = SeriesAccumulator(tag, self.max_points)
            acc.add_arrays(st_, va, wa)
        return pos, recs, stopped_short

    def _shape(self, buf: bytes, pos: int) -> tuple[bytes, int, int, bytes] | None:
        """(header, data length, step varint length, tag prefix) of a fast-layout record."""
        if pos + 12 > len(buf):
            return None
        hdr = buf[pos : pos + 12]
        length = self._hdr_len.get(hdr)
        if length is None:
            length, lcrc = HEADER.unpack(hdr)
            if unmask(lcrc) != crc32c(hdr[:8]) or length > MAX_RECORD:
                return None
            if len(self._hdr_len) < 4096:
                self._hdr_len[hdr] = length
        start = pos + 12
        end = start + length
        if end + 4 > len(buf) or length < 16 or buf[start] != 9 or buf[end - 5] != 0x15:
            return None
        q = start + 9
        ks = 0
        if buf[q] == 0x10:
            q += 1
            while ks < 5 and buf[q + ks] & 0x80:
                ks += 1
            ks += 1
            if ks > 4:
                return None
            q += ks
        mid = buf[q : end - 5]
        if mid not in self._mid_tags:
            self._mid_tags[mid] = simple_value_tag(mid)
        if self._mid_tags[mid] is None:
            return None
        return hdr, length, ks, mid

    def _block(
        self,
        buf: bytes,
        pos: int,
        run: RunState,
        batch: dict[str, tuple[list[int], list[float], list[float]]],
        by_tag: dict[str, tuple[Callable[[int], object], Callable[[float], object], Callable[[float], object], int]],
        sink_for: Callable[
            [str, int, float], tuple[Callable[[int], object], Callable[[float], object], Callable[[float], object], int]
        ],
    ) -> tuple[int, int, float] | None:
        """Decode a long run of records repeating one pattern with ``struct.iter_unpack``.

        Why: a scalar file is a repeating pattern (one record per tag, same lengths while the
        step varint keeps its width), so whole groups of records can be split by one C call
        and checked column-wise, instead of ~15 Python operations per record. Every record
        is still verified (header bytes, data CRC, layout, tag prefix); the first group that
        fails any check ends the block, and the plain loop takes over there (and reports).
        Returns (new position, records, last wall time) or None.
        """
        n = len(buf)
        shapes = []
        p = pos
        for _ in range(16):
            sh = self._shape(buf, p)
            if sh is None:
                break
            shapes.append(sh)
            p += 16 + sh[1]
        period = 0
        for cand in range(1, len(shapes) // 2 + 1):
            if all(shapes[k] == shapes[k + cand] for k in range(len(shapes) - cand)):
                period = cand
                break
        if not period:
            return None
        pat = shapes[:period]
        tags = [t for t in (self._mid_tags[sh[3]] for sh in pat) if t is not None]
        if len(set(tags)) != period or any(t in self._nonscalar for t in tags):
            return None
        group = sum(16 + sh[1] for sh in pat)
        count = min((n - pos) // group, max(64, _BLOCK_RECORDS // period))
        if count < 8:
            return None
        chunk = buf[pos : pos + count * group]
        # 1. every byte that must be the same in each group (headers, layout, tag prefixes),
        #    checked with one strided slice per byte offset
        valid = count
        base = 0
        for _hdr, length, ks, mid in pat:
            fixed = list(enumerate(_hdr))
            fixed.append((12, 0x09))
            q = 12 + 9
            if ks:
                fixed.append((q, 0x10))
                q += 1 + ks
            fixed.extend((q + i, c) for i, c in enumerate(mid))
            fixed.append((q + len(mid), 0x15))
            for off, byte in fixed:
                col = chunk[base + off :: group]
                if col.count(byte) != len(col):  # first mismatch = length of the matching run
                    valid = min(valid, len(col) - len(col.lstrip(_BYTES[byte])))
            base += 16 + length
        if valid < 8:
            return None
        chunk = chunk[: valid * group]
        # 2. data and stored CRC of each record; 3. wall, step bytes and value
        fmt1 = "<" + "".join(f"12x{sh[1]}s4x" for sh in pat)
        fmt2 = "<" + "".join("13xd" + ("x" + "B" * sh[2] if sh[2] else "") + f"{len(sh[3])}xxf4x" for sh in pat)
        cols1 = list(zip(*struct.iter_unpack(fmt1, chunk), strict=False))
        cols2 = list(zip(*struct.iter_unpack(fmt2, chunk), strict=False))
        base = 0
        for k, sh in enumerate(pat):
            datas = cols1[k]
            computed = masked_crc32c_many(list(map(crc32c, datas)))
            # the stored CRCs, compared byte lane by byte lane with strided slices of the
            # chunk (each lane holds one byte of every record's CRC)
            at = base + 12 + sh[1]
            for j in range(4):
                mine = computed[j::4]
                theirs = chunk[at + j :: group]
                if mine != theirs:
                    valid = min(valid, next(i for i in range(len(mine)) if mine[i] != theirs[i]))
            base += 16 + sh[1]
        if valid < 8:
            return None
        last_wall = 0.0
        c = 0
        prev_sb: list[tuple[int, ...]] | None = None
        prev_steps: list[int] = []
        steps: list[int]
        for k, (_hdr, _length, ks, _mid) in enumerate(pat):
            walls = cols2[c][:valid]
            sb = [cols2[c + 1 + i][:valid] for i in range(ks)]
            values = cols2[c + 1 + ks][:valid]
            c += 2 + ks
            if sb == prev_sb:  # the tags of one step share its step bytes: decode once
                steps = prev_steps
            elif ks == 0:
                steps = [0] * valid
            elif ks == 1:
                steps = list(sb[0])
            elif ks == 2:
                steps = [(a & 127) | (b << 7) for a, b in zip(sb[0], sb[1], strict=False)]
            elif ks == 3:
                steps = [(a & 127) | ((b & 127) << 7) | (c3 << 14)
                         for a, b, c3 in zip(sb[0], sb[1], sb[2], strict=False)]
            else:
                steps = [
                    (a & 127) | ((b & 127) << 7) | ((c3 & 127) << 14) | (d << 21)
                    for a, b, c3, d in zip(sb[0], sb[1], sb[2], sb[3], strict=False)
                ]
            prev_sb, prev_steps = sb, steps
            tag = tags[k]
            sink = by_tag.get(tag) or sink_for(tag, steps[0], walls[0])
            off = sink[3]
            arrs = batch[tag]
            arrs[0].extend([x + off for x in steps] if off else steps)
            arrs[1].extend(values)
            arrs[2].extend(walls)
            if k == period - 1:
                last_wall = walls[-1]
        return pos + valid * group, valid * period, last_wall

    @staticmethod
    def _resync(buf: bytes, pos: int) -> int:
        """Offset of the next header whose length CRC checks out, or -1."""
        n = len(buf)
        unpack_hdr = HEADER.unpack_from
        while pos + 12 <= n:
            length, lcrc = unpack_hdr(buf, pos)
            if length <= MAX_RECORD and unmask(lcrc) == crc32c(buf[pos : pos + 8]):
                return pos
            pos += 1
        return -1

    def _offset_for(self, run: RunState, tag: str, step: int, wall: float) -> int:
        """Step offset for ``tag`` in ``run`` (see the module docstring: stitched steps)."""
        off = run.offsets.get(tag)
        if off is not None:
            return off
        if run.first_wall is None or wall < run.first_wall:
            run.first_wall = wall
        acc = self._acc.get(tag)
        prev_last = acc.last.step if acc is not None and acc.last is not None else None
        off = prev_last if prev_last is not None and step < prev_last else 0
        if not run.offsets:
            run.ordinal = sum(1 for r in self._runs.values() if r.offsets)
        run.offsets[tag] = off
        if run.ordinal and not run.marked and "epoch" not in tag:
            run.marked = True
            self._resume.append(step + off)
        return off
