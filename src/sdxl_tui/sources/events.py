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
``--skip_until_initial_step`` restarts ``global_step`` at 0 in ``train_network.py:NetworkTrainer.train``), its steps are
*offset* by the previous end so each series stays monotonic in time order; the stitched step
where every later run began is recorded in ``resume_steps`` for the chart to mark. Series
steps are therefore "stitched" steps; they equal TensorBoard's raw steps for a single run.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sdxl_tui.model import ScalarPoint, Series
from sdxl_tui.sources.eventdecode import MAX_RECORD, FileState, RecordDecoder, RunState
from sdxl_tui.sources.eventfiles import discover_event_files
from sdxl_tui.sources.series import SeriesAccumulator, build_points, columns_of, points_of

__all__ = ["EventReader", "EventsUpdate"]

_U64 = struct.Struct("<Q")

# ---------------------------------------------------------------------------------------------
# Discovery and per-file state.
# ---------------------------------------------------------------------------------------------

_CHUNK = 8 << 20


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

    def __init__(self, roots: Sequence[str | Path] | str | Path, *, max_points: int = 4000) -> None:
        if isinstance(roots, (str, Path)):
            roots = [roots]
        self.roots: tuple[str, ...] = tuple(os.fspath(r) for r in roots)
        self.max_points = max_points
        self._child: tuple[int, int] | None = None  # (pid, read fd) of a prefetch child
        self._exiting: int | None = None  # an adopted child not reaped yet
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
        for _key, _t, path in discover_event_files(self.roots, []):
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
                acc.tag, acc.count, columns_of([acc.last] if acc.last is not None else []), acc.width,
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
            self._files[path] = FileState(path, tuple(run_key), dev, ino, offset, size, records, pending)
        for key, offsets, ordinal, marked in state["runs"]:
            self._runs[tuple(key)] = RunState(tuple(key), dict(offsets), ordinal, marked)
        for tag, count, last, width, kept, pend, dirty, compacted, plugin, new in state["accs"]:
            acc = self._acc[tag] = SeriesAccumulator(tag, self.max_points)
            acc.count = count
            acc.last = points_of(last)[0] if last[0] else None
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
