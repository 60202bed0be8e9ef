"""Incremental reader of TensorBoard event files (TFRecord framing around ``Event`` protobufs).

Why not tbparse or tensorboard's loaders: they read every file whole into pandas or convert
each value to a tensor proto (seconds for 200,000 scalars, see docs/architecture.md). This
reader walks the TFRecord framing itself from a saved offset per file, decodes only what a
scalar needs with a small hand-written protobuf decoder (no tensorboard import at all), and
keeps per tag the exact ``last`` and ``count`` plus a bounded, min/max-preserving set of
points for display. A refresh therefore costs only the bytes appended since the last one;
with a cache (``sources/cache.py``) that holds across processes too, and a first read can run
in a forked child whose state the reader adopts (``prefetch``).

Framing (one record): ``uint64 length`` (LE), ``uint32 masked_crc32c(length bytes)``,
``data[length]``, ``uint32 masked_crc32c(data)``. A record cut short at the end of a file is
being written: the reader stops there and retries from the same offset next time. A record
whose length CRC is wrong cannot be trusted to say where the next one starts, so the reader
scans forward for the next header whose length CRC checks out; a record whose data CRC is
wrong is skipped (its length was verified). Both are reported in ``problems``.

Restarts: sd-scripts writes each launch into ``<logging_dir>/<prefix><YYYYmmddHHMMSS>/
network_train/``. Runs are read in the order of that timestamp. When a later run's steps
restart below where the tag's series ended (``--resume`` without
``--skip_until_initial_step`` restarts ``global_step`` at 0 in ``train_network.py:NetworkTrainer.train``), its steps are
*offset* by the previous end so each series stays monotonic in time order; the stitched step
where every later run began is recorded in ``resume_steps`` for the chart to mark. Series
steps are therefore "stitched" steps; they equal TensorBoard's raw steps for a single run.
Where a run really goes on is known only beside the events (the step of the state it resumed
from): ``sources/launches.py`` moves each run's points there, using ``runs`` (each run's
offsets and the wall time of its first scalar).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from sdxl_tui.model import ScalarPoint, Series
from sdxl_tui.sources.eventdecode import MAX_RECORD, FileState, RecordDecoder, RunState
from sdxl_tui.sources.eventfiles import discover_event_files, file_time
from sdxl_tui.sources.eventstate import EventState, StateStore, decode_state, encode_state
from sdxl_tui.sources.forked import ForkedCall, can_fork
from sdxl_tui.sources.series import SeriesAccumulator, build_points

__all__ = ["EventReader", "EventRun", "EventsUpdate", "Prefetched"]

#: A prefetch child's hand-over: (encoded state, problems, (reset, bytes, records, pending),
#: whether it saved the state to the cache).
Prefetched = tuple[bytes, list[str], tuple[bool, int, int, int], bool]


# ---------------------------------------------------------------------------------------------
# Discovery and per-file state.
# ---------------------------------------------------------------------------------------------

_CHUNK = 8 << 20
_SAVE_BYTES = 4 << 20  # a watching reader saves its cache after this many new bytes...
_SAVE_SECONDS = 60.0  # ... or this long after the last save (and always on close)


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
                out.extend(build_points(st, va, wa))
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
class EventRun:
    """One TensorBoard run (one launch of the trainer): where its points lie in the series.

    ``offsets`` are the step offsets the reader added per tag (stitched at the previous run's
    end); ``first_wall`` the wall time of its first scalar: launches never overlap in time, so a
    point's run is the last one that began at or before its wall time.
    """

    key: str  # the ``<prefix><YYYYmmddHHMMSS>`` timestamp
    path: str  # the run's directory
    first_wall: float | None
    file_time: float  # from its event file's name (whole seconds)
    offsets: Mapping[str, int]


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


class EventReader(RecordDecoder):
    """Incremental scalar reader over every event file below some roots.

    Args:
        roots: directories (or event files) to search recursively, e.g. ``OUTPUT/logs`` or the
            trainer's ``--logging_dir``. They may not exist yet.
        max_points: display budget per tag; ``count`` and ``last`` stay exact.
    """

    DEFAULT_MAX_POINTS = 4000

    def __init__(self, roots: Sequence[str | Path] | str | Path, *, max_points: int = DEFAULT_MAX_POINTS,
                 cache: StateStore | None = None) -> None:
        if isinstance(roots, (str, Path)):
            roots = [roots]
        self.roots: tuple[str, ...] = tuple(os.fspath(r) for r in roots)
        self.max_points = max_points
        self._fork: ForkedCall[Prefetched] | None = None
        self._settled: tuple[list[str], tuple[bool, int, int, int], bool] | None = None  # see settle()
        self._cache = cache
        self._cache_tried = False
        self._read_any = False  # a refresh ran (a prefetch then makes no sense)
        self._unsaved = 0  # bytes read since the cache was last saved
        self._saved_at: float | None = None
        self.from_cache = False  # the state started from the cache
        self.bytes_read_total = 0  # every event-file byte this reader (and its child) read
        self._reset_state()

    def _reset_state(self) -> None:
        self._files: dict[str, FileState] = {}
        self._runs: dict[tuple[str, str], RunState] = {}
        self._acc: dict[str, SeriesAccumulator] = {}
        self._series: dict[str, Series] = {}
        self._resume: list[int] = []
        self._problems: list[str] = []
        self._last_wall: float | None = None
        self._bad_headers: set[bytes] = set()
        self._good_headers: set[bytes] = set()
        self._hdr_len: dict[bytes, int] = {}
        self._mid_tags: dict[bytes, str | None] = {}
        self._nonscalar: set[str] = set()

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
    def runs(self) -> tuple[EventRun, ...]:
        """The runs that produced scalars, in run order (timestamp)."""
        times: dict[tuple[str, str], float] = {}
        for fs in self._files.values():
            t = file_time(fs.path)
            times[fs.run_key] = min(t, times.get(fs.run_key, t))
        return tuple(
            EventRun(r.key[0], r.key[1], r.first_wall, times.get(r.key, 0.0), MappingProxyType(dict(r.offsets)))
            for r in sorted(self._runs.values(), key=lambda r: r.key) if r.offsets
        )

    @property
    def problems(self) -> tuple[str, ...]:
        """All reader problems so far (bounded to the last 100)."""
        return tuple(self._problems[-100:])

    @property
    def last_wall_time(self) -> float | None:
        return self._last_wall

    @property
    def prefetching(self) -> bool:
        """A prefetch child is reading; the next ``refresh`` waits for it."""
        return self._fork is not None

    def prefetch_done(self, timeout: float) -> bool:
        """Whether a prefetch child (if any) finishes within ``timeout`` seconds."""
        return self._fork is None or self._fork.wait(timeout)

    # -- first read in a forked child ----------------------------------------------------

    def prefetch(self, *, min_bytes: int = 2 << 20, then: Callable[[], object] | None = None) -> bool:
        """Start the first read in a forked child process; the next ``refresh`` adopts it.

        Why: decoding 200,000 records is most of a cold start, and it does not depend on
        anything else the start reads (log, checkpoint headers, process table, NVML, Textual),
        so on a machine with two cores it can run beside them (``sources/forked.py``). The
        child reads exactly what ``refresh`` would (every CRC checked) from the cached state
        if there is one, then sends back only the bounded state; the parent's ``refresh``
        adopts it and reads whatever was appended meanwhile, so every byte is read once. If
        the child fails in any way, ``refresh`` simply reads everything itself.

        Only for single-threaded callers (``fork``); does nothing on a later read, without
        ``os.fork``, on one CPU, or when fewer than ``min_bytes`` are left to read.
        ``then`` runs in the child after the read, before the hand-over (``RunReader``'s
        whole first read: it leaves the log's and the checkpoints' state in the cache).
        Returns whether a child was started.
        """
        if self._fork is not None or self._read_any:
            return False
        self._load_cache()
        if not can_fork() or self._left_to_read() < min_bytes:
            return False
        try:
            self._fork = ForkedCall(lambda: self.first_read(save=True, then=then))
        except OSError:
            return False
        return True

    def _left_to_read(self) -> int:
        total = 0
        for _key, _t, path in discover_event_files(self.roots, []):
            try:
                total += os.stat(path).st_size
            except OSError:
                continue
            fs = self._files.get(path)
            total -= fs.offset if fs is not None else 0
        return total

    def first_read(self, *, save: bool = False, then: Callable[[], object] | None = None) -> Prefetched:
        """A prefetch child's work: the first read (from the cache, if any) as a hand-over.

        ``save``: also save the cache here (the state is encoded for the hand-over anyway),
        so the parent need not encode and write it again after adopting it. ``then``: more
        work for the child before it hands over.
        """
        self._load_cache()
        problems: list[str] = []
        counts = self._read_all(problems)
        data = encode_state(self._state())
        saved = save and self._cache is not None and self._cache.save_encoded(data)
        if then is not None:
            then()
        return data, problems, counts, saved

    def settle(self) -> None:
        """Wait for a prefetch child now and take over its state; the next ``refresh`` goes on
        from there (for a caller that needs the child's other work done first)."""
        if self._fork is not None:
            self._load_cache()
            self._settled = self._adopt()

    def close(self) -> None:
        """Stop and reap a prefetch child (idempotent); save the cache if something is unsaved."""
        fork, self._fork = self._fork, None
        if fork is not None:
            fork.close()
        if self._unsaved:
            self._save_cache()

    def _adopt(self) -> tuple[list[str], tuple[bool, int, int, int], bool] | None:
        """Take over the prefetch child's state (and whether it saved it); None when it failed
        (then read normally)."""
        fork, self._fork = self._fork, None
        if fork is None:
            return None
        got = fork.result()
        fork.close()  # reaps it if it was still exiting
        if got is None:
            return None
        data, problems, counts, saved = got
        try:
            self._set_state(decode_state(data))
        except ValueError:
            self._reset_state()
            return None
        if saved:
            self._saved_at = time.monotonic()
        return list(problems), counts, saved

    def _state(self) -> EventState:
        return EventState(self.max_points, self._files, self._runs, self._acc, self._resume, self._problems,
                          self._last_wall, self._nonscalar)

    def _set_state(self, state: EventState) -> None:
        self._reset_state()
        self._files, self._runs, self._acc = state.files, state.runs, state.accs
        self._resume, self._problems = state.resume, state.problems
        self._last_wall, self._nonscalar = state.last_wall, state.nonscalar

    # -- the cache -----------------------------------------------------------------------

    def _load_cache(self) -> None:
        """Start from the cached state (once, before the first read), if it is still valid."""
        if self._cache is None or self._cache_tried:
            return
        self._cache_tried = True
        state = self._cache.load()
        if state is None:
            return
        self._set_state(state)
        for acc in self._acc.values():
            acc.dirty = True  # the first update returns every series
        self.from_cache = True

    def _save_cache(self) -> None:
        self._unsaved = 0
        self._saved_at = time.monotonic()
        if self._cache is not None:
            self._cache.save(self._state())

    def refresh(self) -> EventsUpdate:
        """Read whatever was appended since the last call. Never raises for file problems."""
        problems: list[str] = []
        self._load_cache()
        adopted, self._settled = self._settled or (self._adopt() if self._fork is not None else None), None
        if adopted is not None:
            problems.extend(adopted[0])
        reset, bytes_read, records, pending = self._read_all(problems)
        unsaved = bytes_read + (1 if reset else 0)
        if adopted is not None:
            reset = reset or adopted[1][0]
            bytes_read += adopted[1][1]
            records += adopted[1][2]
            if not adopted[2]:  # the child did not save what it read: this process will
                unsaved += adopted[1][1] + (1 if adopted[1][0] else 0)
        self._read_any = True
        self.bytes_read_total += bytes_read
        self._unsaved += unsaved
        update = self._finish(problems, reset, bytes_read, records, pending)
        if self._unsaved and (self._saved_at is None or self._unsaved >= _SAVE_BYTES
                              or time.monotonic() - self._saved_at >= _SAVE_SECONDS):
            self._save_cache()
        return update

    def _read_all(self, problems: list[str]) -> tuple[bool, int, int, int]:
        """Read every file from its saved offset: (reset, bytes read, records, pending bytes)."""
        reset = False
        discovered = discover_event_files(self.roots, problems)
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
                state = self._files[path] = FileState(path, key)
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

    def _read_file(self, fs: FileState, problems: list[str]) -> tuple[int, int]:
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
            fs.dev, fs.ino, fs.size, fs.mtime_ns = st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns
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
                        if need and need <= MAX_RECORD:
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
