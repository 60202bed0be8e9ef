"""Incremental reader of TensorBoard event files (TFRecord framing around ``Event`` protobufs).

Why not tbparse or tensorboard's loaders: they read every file whole into pandas or convert
each value to a tensor proto (seconds for 200,000 scalars, see docs/architecture.md). This
reader walks the TFRecord framing itself from a saved offset per file, decodes only what a
scalar needs with a small hand-written protobuf decoder (no tensorboard import at all), and
keeps per tag the exact ``last`` and ``count`` plus a bounded, min/max-preserving set of
points for display. A refresh therefore costs only the bytes appended since the last one.

Framing (one record): ``uint64 length`` (LE), ``uint32 masked_crc32c(length bytes)``,
``data[length]``, ``uint32 masked_crc32c(data)``. A record cut short at the end of a file is
being written: the reader stops there and retries from the same offset next time. A record
whose length CRC is wrong cannot be trusted to say where the next one starts, so the reader
scans forward for the next header whose length CRC checks out; a record whose data CRC is
wrong is skipped (its length was verified). Both are reported in ``problems``.

Restarts: sd-scripts writes each launch into ``<logging_dir>/<prefix><YYYYmmddHHMMSS>/
network_train/``. Runs are read in the order of that timestamp. When a later run's steps
restart below where the tag's series ended (``--resume`` without
``--skip_until_initial_step`` restarts ``global_step`` at 0, REF §2.2), its steps are
*offset* by the previous end so each series stays monotonic in time order; the stitched step
where every later run began is recorded in ``resume_steps`` for the chart to mark. Series
steps are therefore "stitched" steps; they equal TensorBoard's raw steps for a single run.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sdxl_tui.formats.names import SAMPLE_DIR, STATE_SUFFIX
from sdxl_tui.formats.statedir import STATE_DIR
from sdxl_tui.formats.tfrecord import (
    EVENT_FILE_PREFIX,
    HEADER,
    MASK_DELTA,
    crc32c,
    decode_event,
    masked_crc32c_many,
    read_varint,
    simple_value_tag,
    unmask,
)
from sdxl_tui.model import ScalarPoint, Series

__all__ = ["EventReader", "EventsUpdate", "downsample_minmax"]

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_F64 = struct.Struct("<d")
_F32 = struct.Struct("<f")

# ---------------------------------------------------------------------------------------------
# Bounded series.
# ---------------------------------------------------------------------------------------------


def downsample_minmax(points: Sequence[ScalarPoint], group: int) -> list[ScalarPoint]:
    """Keep the min and the max (in their original order) of each run of ``group`` points."""
    vals = [p.value for p in points]
    total = sum(vals)
    out: list[ScalarPoint] = []
    if total == total:  # noqa: PLR0124 - no NaN anywhere: C-level min/max per group
        for i in range(0, len(points), group):
            cv = vals[i : i + group]
            lo = cv.index(min(cv))
            hi = cv.index(max(cv))
            if lo == hi:
                out.append(points[i + lo])
            elif lo < hi:
                out.extend((points[i + lo], points[i + hi]))
            else:
                out.extend((points[i + hi], points[i + lo]))
        return out
    for i in range(0, len(points), group):
        chunk = points[i : i + group]
        lo = min(range(len(chunk)), key=lambda k: _key(chunk[k].value))
        hi = max(range(len(chunk)), key=lambda k: _key(chunk[k].value, high=True))
        if lo == hi:
            out.append(chunk[lo])
        elif lo < hi:
            out.extend((chunk[lo], chunk[hi]))
        else:
            out.extend((chunk[hi], chunk[lo]))
    return out


def _key(v: float, high: bool = False) -> float:
    # NaN must survive downsampling (it is the point of a NaN alert): rank it as an extreme.
    if v != v:  # noqa: PLR0124 - NaN test, hot path
        return float("inf") if high else float("-inf")
    return v


def _make_points_builder() -> Callable[[Iterable[int], Iterable[float], Iterable[float]], list[ScalarPoint]]:
    """A function building ``ScalarPoint`` objects from columns, faster than the constructor.

    Why: a cold read ends by building ~16,000 display points, and the frozen dataclass's
    ``__init__`` goes through ``object.__setattr__`` three times per point. Setting the three
    slots through their descriptors does exactly what that ``__init__`` does, in about 60%
    of the time. Used only while ``ScalarPoint`` is the plain three-field slotted dataclass
    it is today (checked here); anything else falls back to the constructor.
    """
    import dataclasses

    def plain(steps: Iterable[int], values: Iterable[float], walls: Iterable[float]) -> list[ScalarPoint]:
        return list(map(ScalarPoint, steps, values, walls))

    try:
        names = [f.name for f in dataclasses.fields(ScalarPoint)]
        slots = getattr(ScalarPoint, "__slots__", ())
        if names != ["step", "value", "wall_time"] or tuple(slots) != ("step", "value", "wall_time"):
            return plain
        new = ScalarPoint.__new__
        members = vars(ScalarPoint)  # the slots' member descriptors
        set_step = members["step"].__set__
        set_value = members["value"].__set__
        set_wall = members["wall_time"].__set__
    except (AttributeError, TypeError):  # pragma: no cover - a changed model
        return plain

    def fast(steps: Iterable[int], values: Iterable[float], walls: Iterable[float]) -> list[ScalarPoint]:
        out: list[ScalarPoint] = []
        append = out.append
        cls = ScalarPoint
        for s, v, w in zip(steps, values, walls):
            p = new(cls)
            set_step(p, s)
            set_value(p, v)
            set_wall(p, w)
            append(p)
        return out

    return fast


_build_points = _make_points_builder()


def _select(vals: Sequence[float], start: int, end: int, group: int) -> list[int]:
    """Indices (ascending) of the min and the max of each run of ``group`` values in
    ``vals[start:end]`` (the last run may be shorter): what ``downsample_minmax`` keeps.

    The first index of an extreme wins ties; NaN ranks as an extreme (it is the point of a
    NaN alert). Without NaN the work is C-level: the runs as tuples, ``min``/``max`` and
    ``tuple.index`` mapped over them.
    """
    out: list[int] = []
    if end <= start:
        return out
    chunk = vals[start:end]
    total = sum(chunk)
    if total == total:  # noqa: PLR0124 - no NaN anywhere
        whole = (end - start) // group * group
        groups: list[tuple[float, ...]] = list(zip(*[iter(chunk)] * group)) if group > 1 else []
        if group > 1:
            if whole < len(chunk):
                groups.append(tuple(chunk[whole:]))
            los = map(tuple.index, groups, map(min, groups))
            his = map(tuple.index, groups, map(max, groups))
            base = start
            append = out.append
            for lo, hi in zip(los, his):
                if lo == hi:
                    append(base + lo)
                elif lo < hi:
                    append(base + lo)
                    append(base + hi)
                else:
                    append(base + hi)
                    append(base + lo)
                base += group
            return out
        return list(range(start, end))
    for i in range(start, end, group):
        j = min(end, i + group)
        lo = min(range(i, j), key=lambda k: _key(vals[k]))
        hi = max(range(i, j), key=lambda k: _key(vals[k], high=True))
        if lo == hi:
            out.append(lo)
        else:
            out.extend((lo, hi) if lo < hi else (hi, lo))
    return out


class _Acc:
    """One tag's series: exact count/last, bounded display points.

    The display points are kept as columns (steps, values, wall times) and turned into
    ``ScalarPoint`` objects only when a ``Series`` is built, once per kept point (a prefix
    cache, rebuilt after a compaction), so points that later compactions drop are never
    built at all.
    """

    __slots__ = (
        "compacted",
        "count",
        "dirty",
        "kept",
        "last",
        "max_points",
        "new_cols",
        "new_n",
        "pend",
        "plugin",
        "pts",
        "tag",
        "width",
    )

    def __init__(self, tag: str, max_points: int) -> None:
        self.tag = tag
        self.max_points = max(8, max_points)
        self.count = 0
        self.last: ScalarPoint | None = None
        self.width = 1  # raw points per bucket
        # bucketed (min/max) points and the raw points of the open bucket, as columns
        self.kept: tuple[list[int], list[float], list[float]] = ([], [], [])
        self.pend: tuple[list[int], list[float], list[float]] = ([], [], [])
        self.pts: list[ScalarPoint] = []  # ScalarPoints of the first len(pts) kept points
        self.dirty = False
        self.compacted = False
        # the raw columns of this refresh's newest points (at most max_points in all); turned
        # into ScalarPoint objects only if a consumer asks for them (see _NewPoints)
        self.new_cols: list[tuple[Sequence[int], Sequence[float], Sequence[float]]] = []
        self.new_n = 0
        self.plugin: str | None = None

    def take_new(self) -> list[tuple[Sequence[int], Sequence[float], Sequence[float]]]:
        """This refresh's newest raw columns (bounded); forgets them."""
        cols = self.new_cols
        self.new_cols = []
        self.new_n = 0
        return cols

    def _keep(self, steps: Sequence[int], values: Sequence[float], walls: Sequence[float],
              idx: list[int]) -> None:
        ks, kv, kw = self.kept
        ks.extend(map(steps.__getitem__, idx))
        kv.extend(map(values.__getitem__, idx))
        kw.extend(map(walls.__getitem__, idx))

    def add_arrays(self, steps: Sequence[int], values: Sequence[float], walls: Sequence[float]) -> None:
        n = len(steps)
        if not n:
            return
        self.count += n
        self.dirty = True
        mp = self.max_points
        # newest raw points: keep references to (the tails of) the columns, never more than
        # max_points in all (the columns are never changed after they are handed over)
        if n > mp:
            steps_t, values_t, walls_t = steps[n - mp :], values[n - mp :], walls[n - mp :]
        else:
            steps_t, values_t, walls_t = steps, values, walls
        cols = self.new_cols
        cols.append((steps_t, values_t, walls_t))
        self.new_n += len(steps_t)
        while self.new_n - len(cols[0][0]) >= mp:
            self.new_n -= len(cols.pop(0)[0])
        # Widen the buckets first so a big batch never materialises more than the budget:
        # afterwards every bucket this batch completes fits (<= 2 points each), so no
        # compaction is needed midway.
        while len(self.kept[0]) + 2 * (len(self.pend[0]) + n) // self.width > mp:
            self._compact()
        width = self.width
        ps, pv, pw = self.pend
        i = 0
        if ps:  # fill the open bucket first
            i = min(n, width - len(ps))
            ps.extend(steps[:i])
            pv.extend(values[:i])
            pw.extend(walls[:i])
            if len(ps) >= width:
                self._keep(ps, pv, pw, _select(pv, 0, len(pv), width))
                self.pend = ([], [], [])
        end = i + (n - i) // width * width  # whole buckets inside the arrays
        if end > i:
            self._keep(steps, values, walls, _select(values, i, end, width))
        if end < n:
            ps, pv, pw = self.pend
            ps.extend(steps[end:])
            pv.extend(values[end:])
            pw.extend(walls[end:])
        if len(self.kept[0]) > mp:  # pragma: no cover - guarded by the widening above
            self._compact()
        self.last = ScalarPoint(steps[n - 1], values[n - 1], walls[n - 1])

    def _compact(self) -> None:
        """Halve the display points: min/max of each 4 kept points, buckets twice as wide."""
        ks, kv, kw = self.kept
        idx = _select(kv, 0, len(kv), 4)
        self.kept = ([], [], [])
        self._keep(ks, kv, kw, idx)
        self.pts = []
        self.width *= 2
        self.compacted = True

    def points(self) -> list[ScalarPoint]:
        """The display points: kept (built once each), then the open bucket's raw points."""
        ks, kv, kw = self.kept
        pts = self.pts
        done = len(pts)
        if done < len(ks):
            pts.extend(_build_points(ks[done:], kv[done:], kw[done:]))
        ps, pv, pw = self.pend
        return pts + _build_points(ps, pv, pw)

    def series(self, source: str) -> Series:
        pts = self.points()
        last = self.last
        if last is not None and (
            not pts or (pts[-1].step, pts[-1].wall_time) != (last.step, last.wall_time)
        ):
            pts.append(last)
        return Series(self.tag, tuple(pts), self.count, self.last, source)


# ---------------------------------------------------------------------------------------------
# Discovery and per-file state.
# ---------------------------------------------------------------------------------------------

_RUN_DIR = re.compile(r"(\d{14})$")
# directories of a run that never hold event files: samples, resumable states, our own
# control files, evaluations, VCS/caches
_PRUNE = re.compile(rf"^(?:{SAMPLE_DIR}|{re.escape(STATE_DIR)}|\.git|__pycache__|eval_.*|.*{STATE_SUFFIX})$")
_FILE_TIME = re.compile(r"events\.out\.tfevents\.(\d+)")
_CHUNK = 8 << 20
_BLOCK_MIN_BYTES = 4096  # below this the plain loop is as fast as setting up a block
_BLOCK_RECORDS = 8192  # records per block: a pattern break costs at most one block's work
_MAX_RECORD = 256 << 20


@dataclass(slots=True)
class _FileState:
    path: str
    run_key: tuple[str, str]
    dev: int = -1
    ino: int = -1
    offset: int = 0
    size: int = 0
    records: int = 0
    pending: int = 0  # bytes of a partly written last record


@dataclass(slots=True)
class _RunState:
    key: tuple[str, str]
    offsets: dict[str, int] = field(default_factory=dict)  # tag -> step offset
    ordinal: int = 0  # 0 for the first run that produced scalars
    marked: bool = False  # its start was recorded in resume_steps


class _NewPoints(Mapping[str, tuple[ScalarPoint, ...]]):
    """tag -> the newest raw points of one refresh, built from their columns when first read.

    Why lazy: a cold read of 200,000 scalars would otherwise build 4,000 ``ScalarPoint``
    objects per tag that a one-shot reader (``sdxl-tui status``) never looks at. Read-only;
    the columns it holds are never changed after the refresh.
    """

    __slots__ = ("_cols", "_done", "_max")

    def __init__(self, cols: dict[str, list[tuple[Sequence[int], Sequence[float], Sequence[float]]]],
                 max_points: int) -> None:
        self._cols = cols
        self._done: dict[str, tuple[ScalarPoint, ...]] = {}
        self._max = max(8, max_points)

    def __getitem__(self, tag: str) -> tuple[ScalarPoint, ...]:
        pts = self._done.get(tag)
        if pts is None:
            parts = self._cols[tag]  # KeyError for an unknown tag
            out: list[ScalarPoint] = []
            for st, va, wa in parts:
                out.extend(_build_points(st, va, wa))
            pts = self._done[tag] = tuple(out[-self._max :])
        return pts

    def __iter__(self) -> Iterator[str]:
        return iter(self._cols)

    def __len__(self) -> int:
        return len(self._cols)

    def __contains__(self, tag: object) -> bool:
        return tag in self._cols

    def __repr__(self) -> str:
        return f"_NewPoints({dict(self)!r})"


@dataclass(frozen=True, slots=True)
class EventsUpdate:
    """What one ``EventReader.refresh`` found.

    ``new_points`` holds, per tag, the raw points added since the previous refresh (at most
    ``max_points`` of them, the most recent); ``compacted`` names the tags whose display points
    were re-downsampled, so a consumer that appends must replace them with ``series[tag]``.
    """

    new_points: Mapping[str, tuple[ScalarPoint, ...]]
    series: Mapping[str, Series]
    files: tuple[str, ...]
    resume_steps: tuple[int, ...]
    problems: tuple[str, ...]  # new problems found by this refresh
    compacted: frozenset[str] = frozenset()
    bytes_read: int = 0
    records: int = 0
    pending_bytes: int = 0  # partly written records waiting at file ends
    last_wall_time: float | None = None
    reset: bool = False  # a file shrank or was replaced: everything was re-read from scratch

    @property
    def changed(self) -> bool:
        return bool(self.new_points) or self.reset


class EventReader:
    """Incremental scalar reader over every event file below some roots.

    Args:
        roots: directories (or event files) to search recursively, e.g. ``OUTPUT/logs`` or the
            trainer's ``--logging_dir``. They may not exist yet.
        max_points: display budget per tag; ``count`` and ``last`` stay exact.
    """

    def __init__(self, roots: Sequence[str | Path] | str | Path, *, max_points: int = 4000) -> None:
        if isinstance(roots, (str, Path)):
            roots = [roots]
        self.roots: tuple[str, ...] = tuple(os.fspath(r) for r in roots)
        self.max_points = max_points
        self._child: tuple[int, int] | None = None  # (pid, read fd) of a prefetch child
        self._exiting: int | None = None  # an adopted child not reaped yet
        self._reset_state()

    def _reset_state(self) -> None:
        self._files: dict[str, _FileState] = {}
        self._runs: dict[tuple[str, str], _RunState] = {}
        self._acc: dict[str, _Acc] = {}
        self._series: dict[str, Series] = {}
        self._resume: list[int] = []
        self._problems: list[str] = []
        self._last_wall: float | None = None
        self._bad_headers: set[bytes] = set()
        self._good_headers: set[bytes] = set()
        self._hdr_len: dict[bytes, int] = {}
        self._mid_tags: dict[bytes, str | None] = {}
        self._nonscalar: set[str] = set()

    def __del__(self) -> None:
        if getattr(self, "_child", None) is not None or getattr(self, "_exiting", None) is not None:
            self.close()

    # -- public state -------------------------------------------------------------------------

    @property
    def series(self) -> Mapping[str, Series]:
        return MappingProxyType(self._series)

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(self._files)

    @property
    def resume_steps(self) -> tuple[int, ...]:
        return tuple(self._resume)

    @property
    def problems(self) -> tuple[str, ...]:
        """All reader problems so far (bounded to the last 100)."""
        return tuple(self._problems[-100:])

    @property
    def last_wall_time(self) -> float | None:
        return self._last_wall

    # -- discovery ----------------------------------------------------------------------------

    def _discover(self, problems: list[str]) -> list[tuple[tuple[str, str], float, str]]:
        found: dict[str, tuple[tuple[str, str], float, str]] = {}
        for root in self.roots:
            try:
                st = os.stat(root)
            except FileNotFoundError:
                continue
            except OSError as exc:
                problems.append(f"cannot read {root}: {exc.strerror or exc}")
                continue
            if stat.S_ISREG(st.st_mode):
                if EVENT_FILE_PREFIX in os.path.basename(root):
                    real = os.path.realpath(root)
                    found.setdefault(real, (self._run_key(root, root), _file_time(root), root))
                continue
            self._walk(root, root, found, problems, 0, set())
        return sorted(found.values())

    def _walk(self, root: str, d: str, found: dict[str, tuple[tuple[str, str], float, str]],
              problems: list[str], depth: int, seen: set[tuple[int, int]]) -> None:
        if depth > 8:
            return
        try:
            st = os.stat(d)
            ident = (st.st_dev, st.st_ino)
            if ident in seen:  # symlink loop
                return
            seen.add(ident)
            with os.scandir(d) as it:
                entries = list(it)
        except FileNotFoundError:
            return
        except OSError as exc:
            problems.append(f"cannot list {d}: {exc.strerror or exc}")
            return
        for e in entries:
            try:
                if e.is_dir():
                    if _PRUNE.search(e.name):  # sd-scripts never logs there; they can be big
                        continue
                    self._walk(root, e.path, found, problems, depth + 1, seen)
                elif EVENT_FILE_PREFIX in e.name and e.is_file():
                    real = os.path.realpath(e.path)
                    if real not in found:
                        found[real] = (self._run_key(root, e.path), _file_time(e.name), e.path)
            except OSError as exc:
                problems.append(f"cannot read {e.path}: {exc.strerror or exc}")

    @staticmethod
    def _run_key(root: str, path: str) -> tuple[str, str]:
        """(timestamp, run dir) from the ``<prefix><YYYYmmddHHMMSS>`` directory above the file."""
        rel = os.path.relpath(os.path.dirname(path), root)
        parts = [] if rel == "." else rel.split(os.sep)
        for i, part in enumerate(parts):
            m = _RUN_DIR.search(part)
            if m:
                return m.group(1), os.path.join(root, *parts[: i + 1])
        # No timestamp dir: use the file's own time (10-digit unix time in its name).
        t = _file_time(path)
        import time as _time

        stamp = _time.strftime("%Y%m%d%H%M%S", _time.localtime(t)) if t else "0" * 14
        return stamp, os.path.dirname(path)

    # -- reading ------------------------------------------------------------------------------

    # -- first read in a forked child ----------------------------------------------------

    def prefetch(self, *, min_bytes: int = 2 << 20) -> bool:
        """Start the first read in a forked child process; the next ``refresh`` adopts it.

        Why: decoding 200,000 records is most of a cold ``sdxl-tui status``, and it does not
        depend on anything else the status reads (log, checkpoint headers, process table,
        NVML), so on a machine with two cores it can run beside them. The child reads exactly
        what ``refresh`` would (every CRC checked), then sends back only the bounded state
        (counts, last points, display points, offsets); the parent's ``refresh`` adopts it and
        then reads whatever was appended meanwhile, as any later refresh would. If the child
        fails in any way, ``refresh`` simply reads everything itself.

        Only for single-threaded callers (``fork``); does nothing on a later read, without
        ``os.fork``, on one CPU, or when the event files hold fewer than ``min_bytes``.
        Returns whether a child was started.
        """
        if self._child is not None or self._files or self._acc or not hasattr(os, "fork"):
            return False
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
        if cpus < 2:
            return False
        total = 0
        for _key, _t, path in self._discover([]):
            try:
                total += os.stat(path).st_size
            except OSError:
                continue
        if total < min_bytes:
            return False
        r, w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            return False
        if pid == 0:  # pragma: no cover - the child (coverage does not follow forks)
            code = 1
            try:
                import pickle

                os.close(r)
                problems: list[str] = []
                counts = self._read_all(problems)
                data = pickle.dumps((self._export(), problems, counts), protocol=pickle.HIGHEST_PROTOCOL)
                view = memoryview(_U64.pack(len(data)) + data)  # length first: complete or not
                while view:
                    view = view[os.write(w, view) :]
                # end of data for the parent now, not after this process's memory is torn down
                os.close(w)
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        self._child = (pid, r)
        return True

    def close(self) -> None:
        """Stop and reap a prefetch child (idempotent); one that was adopted is only reaped."""
        exiting, self._exiting = self._exiting, None
        if exiting is not None:
            with contextlib.suppress(OSError):
                os.waitpid(exiting, 0)
        child, self._child = self._child, None
        if child is None:
            return
        pid, fd = child
        import signal

        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.close(fd)
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)

    def _adopt(self) -> tuple[list[str], tuple[bool, int, int, int]] | None:
        """Take over the prefetch child's state; None when it failed (then read normally)."""
        child, self._child = self._child, None
        if child is None:
            return None
        pid, fd = child
        chunks = []
        try:
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError:
            chunks = []
        finally:
            os.close(fd)
        # The child closed its end once everything was written; it may still be exiting:
        # don't wait for that here (close() reaps it), the length prefix says the data is whole.
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except OSError:
            done, status = pid, -1
        if not done:
            self._exiting = pid
        elif status != 0:
            return None
        data = b"".join(chunks)
        if len(data) < 8 or _U64.unpack_from(data)[0] != len(data) - 8:
            if done:
                return None
            with contextlib.suppress(OSError):  # incomplete: it failed; reap it now
                os.waitpid(pid, 0)
            self._exiting = None
            return None
        import pickle

        try:
            state, problems, counts = pickle.loads(memoryview(data)[8:])
            self._import(state)
        except Exception:  # noqa: BLE001 - anything odd: forget it and read in-process
            self._reset_state()
            return None
        return list(problems), tuple(counts)

    def _export(self) -> dict[str, object]:
        """The reader's state as plain data (lists of numbers instead of point objects)."""
        accs = []
        for acc in self._acc.values():
            cols = acc.take_new()
            accs.append((
                acc.tag, acc.count, _flat([acc.last] if acc.last is not None else []), acc.width,
                acc.kept, acc.pend, acc.dirty, acc.compacted, acc.plugin,
                ([x for c in cols for x in c[0]], [x for c in cols for x in c[1]], [x for c in cols for x in c[2]]),
            ))
        return {
            "files": [(f.path, f.run_key, f.dev, f.ino, f.offset, f.size, f.records, f.pending)
                      for f in self._files.values()],
            "runs": [(r.key, r.offsets, r.ordinal, r.marked) for r in self._runs.values()],
            "accs": accs,
            "resume": self._resume,
            "problems": self._problems,
            "last_wall": self._last_wall,
            "nonscalar": self._nonscalar,
            "hdr_len": self._hdr_len,
            "mid_tags": self._mid_tags,
        }

    def _import(self, state: dict[str, Any]) -> None:
        self._reset_state()
        for path, run_key, dev, ino, offset, size, records, pending in state["files"]:
            self._files[path] = _FileState(path, tuple(run_key), dev, ino, offset, size, records, pending)
        for key, offsets, ordinal, marked in state["runs"]:
            self._runs[tuple(key)] = _RunState(tuple(key), dict(offsets), ordinal, marked)
        for tag, count, last, width, kept, pend, dirty, compacted, plugin, new in state["accs"]:
            acc = self._acc[tag] = _Acc(tag, self.max_points)
            acc.count = count
            acc.last = _points(last)[0] if last[0] else None
            acc.width = width
            acc.kept = (list(kept[0]), list(kept[1]), list(kept[2]))
            acc.pend = (list(pend[0]), list(pend[1]), list(pend[2]))
            acc.dirty = dirty
            acc.compacted = compacted
            acc.plugin = plugin
            if new[0]:
                acc.new_cols = [new]
                acc.new_n = len(new[0])
        self._resume = list(state["resume"])
        self._problems = list(state["problems"])
        self._last_wall = state["last_wall"]
        self._nonscalar = set(state["nonscalar"])
        self._hdr_len = dict(state["hdr_len"])
        self._mid_tags = dict(state["mid_tags"])

    def refresh(self) -> EventsUpdate:
        """Read whatever was appended since the last call. Never raises for file problems."""
        problems: list[str] = []
        adopted = self._adopt() if self._child is not None else None
        if adopted is not None:
            problems.extend(adopted[0])
        reset, bytes_read, records, pending = self._read_all(problems)
        if adopted is not None:
            reset = reset or adopted[1][0]
            bytes_read += adopted[1][1]
            records += adopted[1][2]
        return self._finish(problems, reset, bytes_read, records, pending)

    def _read_all(self, problems: list[str]) -> tuple[bool, int, int, int]:
        """Read every file from its saved offset: (reset, bytes read, records, pending bytes)."""
        reset = False
        discovered = self._discover(problems)
        # Files that shrank or were replaced: start over from scratch (rare; keeps series exact).
        for _key, _t, path in discovered:
            fs = self._files.get(path)
            if fs is None:
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) != (fs.dev, fs.ino) or st.st_size < fs.offset:
                why = "replaced" if (st.st_dev, st.st_ino) != (fs.dev, fs.ino) else "truncated"
                old_problems = self._problems
                self._reset_state()
                self._problems = old_problems
                problems.append(f"event file {why}, re-reading all event files: {path}")
                reset = True
                break
        bytes_read = 0
        records = 0
        pending = 0
        for key, _t, path in discovered:
            state = self._files.get(path)
            if state is None:
                state = self._files[path] = _FileState(path, key)
            n_bytes, n_rec = self._read_file(state, problems)
            bytes_read += n_bytes
            records += n_rec
            pending += state.pending
        for path in list(self._files):
            if path not in {p for _k, _t, p in discovered}:
                gone = self._files[path]
                if gone.offset and not os.path.exists(path):
                    problems.append(f"event file removed (its points are kept): {path}")
                    # forget it so a recreated file is read from 0 as a new file
                    del self._files[path]
        return reset, bytes_read, records, pending

    def _finish(self, problems: list[str], reset: bool, bytes_read: int, records: int,
                pending: int) -> EventsUpdate:
        new_cols: dict[str, list[tuple[Sequence[int], Sequence[float], Sequence[float]]]] = {}
        compacted: set[str] = set()
        for tag, acc in self._acc.items():
            if not acc.dirty:
                continue
            self._series[tag] = acc.series("tensorboard")
            if acc.new_n:
                new_cols[tag] = acc.take_new()
            if acc.compacted:
                compacted.add(tag)
            acc.dirty = False
            acc.compacted = False
        self._problems.extend(problems)
        del self._problems[:-100]
        return EventsUpdate(
            new_points=_NewPoints(new_cols, self.max_points),
            series=MappingProxyType(dict(self._series)),
            files=self.files,
            resume_steps=self.resume_steps,
            problems=tuple(problems),
            compacted=frozenset(compacted),
            bytes_read=bytes_read,
            records=records,
            pending_bytes=pending,
            last_wall_time=self._last_wall,
            reset=reset,
        )

    def _read_file(self, fs: _FileState, problems: list[str]) -> tuple[int, int]:
        try:
            fd = os.open(fs.path, os.O_RDONLY)
        except FileNotFoundError:
            return 0, 0
        except OSError as exc:
            problems.append(f"cannot open {fs.path}: {exc.strerror or exc}")
            return 0, 0
        total = 0
        recs = 0
        try:
            st = os.fstat(fd)
            fs.dev, fs.ino, fs.size = st.st_dev, st.st_ino, st.st_size
            while fs.offset < st.st_size:
                want = min(_CHUNK, st.st_size - fs.offset)
                buf = os.pread(fd, want, fs.offset)
                if not buf:
                    break
                total += len(buf)
                used, n, need_more = self._parse(buf, fs, problems, at_eof=fs.offset + len(buf) >= st.st_size)
                recs += n
                fs.offset += used
                if used == 0:
                    if need_more and fs.offset + len(buf) < st.st_size:
                        # one record larger than the chunk: read it whole
                        need = self._record_size(buf)
                        if need and need <= _MAX_RECORD:
                            big = os.pread(fd, need, fs.offset)
                            total += len(big)
                            used, n, _ = self._parse(big, fs, problems, at_eof=True)
                            recs += n
                            fs.offset += used
                            if used:
                                continue
                    break
            fs.pending = max(0, st.st_size - fs.offset)
        except OSError as exc:
            problems.append(f"cannot read {fs.path}: {exc.strerror or exc}")
        finally:
            os.close(fd)
        fs.records += recs
        return total, recs

    @staticmethod
    def _record_size(buf: bytes) -> int:
        if len(buf) < 12:
            return 0
        (length,) = _U64.unpack_from(buf, 0)
        return int(length) + 16

    def _parse(self, buf: bytes, fs: _FileState, problems: list[str], at_eof: bool) -> tuple[int, int, bool]:
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
            run = self._runs[fs.run_key] = _RunState(fs.run_key)
        # per-tag columns of this chunk: plain lists (extending a list from the tuples the
        # block decoder yields copies pointers; an array would convert every value)
        batch: dict[str, tuple[list[int], list[float], list[float]]] = {}
        # mid+tag bytes -> (append step, append value, append wall, step offset)
        sinks: dict[bytes, tuple[Callable[[int], object], Callable[[float], object], Callable[[float], object], int]] = {}
        by_tag: dict[str, tuple[Callable[[int], object], Callable[[float], object], Callable[[float], object], int]] = {}
        last_wall = self._last_wall
        stopped_short = False

        def sink_for(tag: str, step: int) -> tuple[Callable[[int], object], Callable[[float], object], Callable[[float], object], int]:
            s = by_tag.get(tag)
            if s is None:
                off = self._offset_for(run, tag, step)
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
                if unmask(lcrc) != crc(hdr[:8]) or length > _MAX_RECORD:
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
                        s = sinks[key] = sink_for(tag, step)
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
                if plugin != "scalars":
                    self._nonscalar.add(tag)
            for tag, value in ev.scalars:
                if tag in self._nonscalar:
                    continue
                s = sink_for(tag, ev.step)
                s[0](ev.step + s[3])
                s[1](value)
                s[2](ev.wall_time)
        self._last_wall = last_wall
        for tag, (st_, va, wa) in batch.items():
            acc = self._acc.get(tag)
            if acc is None:
                acc = self._acc[tag] = _Acc(tag, self.max_points)
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
            if unmask(lcrc) != crc32c(hdr[:8]) or length > _MAX_RECORD:
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
        run: _RunState,
        batch: dict[str, tuple[list[int], list[float], list[float]]],
        by_tag: dict[str, tuple[Callable[[int], object], Callable[[float], object], Callable[[float], object], int]],
        sink_for: Callable[[str, int], tuple[Callable[[int], object], Callable[[float], object], Callable[[float], object], int]],
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
        fmt2 = "<" + "".join(
            "13xd" + ("x" + "B" * sh[2] if sh[2] else "") + f"{len(sh[3])}xxf4x" for sh in pat
        )
        cols1 = list(zip(*struct.iter_unpack(fmt1, chunk)))
        cols2 = list(zip(*struct.iter_unpack(fmt2, chunk)))
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
                steps = [(a & 127) | (b << 7) for a, b in zip(sb[0], sb[1])]
            elif ks == 3:
                steps = [(a & 127) | ((b & 127) << 7) | (c3 << 14) for a, b, c3 in zip(sb[0], sb[1], sb[2])]
            else:
                steps = [(a & 127) | ((b & 127) << 7) | ((c3 & 127) << 14) | (d << 21)
                         for a, b, c3, d in zip(sb[0], sb[1], sb[2], sb[3])]
            prev_sb, prev_steps = sb, steps
            tag = tags[k]
            sink = by_tag.get(tag) or sink_for(tag, steps[0])
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
            if length <= _MAX_RECORD and unmask(lcrc) == crc32c(buf[pos : pos + 8]):
                return pos
            pos += 1
        return -1

    def _offset_for(self, run: _RunState, tag: str, step: int) -> int:
        """Step offset for ``tag`` in ``run`` (see the module docstring: stitched steps)."""
        off = run.offsets.get(tag)
        if off is not None:
            return off
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


def _flat(points: Sequence[ScalarPoint]) -> tuple[list[int], list[float], list[float]]:
    return [p.step for p in points], [p.value for p in points], [p.wall_time for p in points]


def _points(cols: tuple[list[int], list[float], list[float]]) -> list[ScalarPoint]:
    return list(map(ScalarPoint, *cols))


_BYTES = [bytes([i]) for i in range(256)]


def _file_time(path: str) -> float:
    m = _FILE_TIME.search(os.path.basename(path))
    return float(m.group(1)) if m else 0.0
