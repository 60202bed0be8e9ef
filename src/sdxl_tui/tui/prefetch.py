"""Start reading the run before Textual is even imported (no textual import here).

The first full frame on a big run is bounded by the reader's first pass over it. That pass
is Python work: in a thread it only takes turns with the import of Textual and the building
of the screen (one interpreter lock), so the two cost their sum. :class:`ForkedFirstRead`
makes the first pass in a forked child instead, on the other core, while this process
imports Textual and mounts the screen; the child sends back the first snapshot (pickled)
and exits. The dashboard's own reader is built afterwards, in the feed thread, and reads
the run again once the first frame is up (its later refreshes are incremental as usual).
Where ``fork`` is missing or the child fails, the first read simply happens here.
"""

from __future__ import annotations

import copyreg
import os
import pickle
import struct
import threading
import types
from collections.abc import Callable
from typing import Any


def _mappingproxy(data: dict[Any, Any]) -> types.MappingProxyType[Any, Any]:
    return types.MappingProxyType(data)


def _reduce_mappingproxy(m: types.MappingProxyType[Any, Any]) -> tuple[Any, ...]:
    return (_mappingproxy, (dict(m),))


#: Snapshots hold read-only mappings (``MappingProxyType``), which pickle cannot handle alone.
copyreg.pickle(types.MappingProxyType, _reduce_mappingproxy)


class PrefetchedReader:
    """Wraps a reader whose construction and first ``refresh()`` already run in a thread."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._reader: Any = None
        self._first: Any = None
        self._error: BaseException | None = None
        self._used = False
        self._thread = threading.Thread(target=self._run, args=(factory,), name="run-prefetch", daemon=True)
        self._thread.start()

    def _run(self, factory: Callable[[], Any]) -> None:
        try:
            self._reader = factory()
            self._first = self._reader.refresh()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the feed thread, which reports it
            self._error = exc

    def refresh(self) -> Any:
        if not self._used:
            self._used = True
            self._thread.join()
            if self._error is not None:
                raise self._error
            return self._first
        if self._reader is None:
            raise RuntimeError(f"the run reader could not start: {self._error}")
        return self._reader.refresh()

    def close(self) -> None:
        close = getattr(self._reader, "close", None)
        if callable(close):
            close()


class ForkedFirstRead:
    """The first ``refresh()`` comes from a forked child; later ones from a reader built here.

    Fork it before any thread exists in this process (before Textual is imported): the
    child runs ``factory().refresh()``, writes the pickled snapshot, length-prefixed, to a
    pipe and leaves with ``os._exit``. A thread here reads the pipe, so the child never
    blocks on a full pipe, and reaps it.
    """

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._reader: Any = None
        self._first: Any = None
        self._used = False
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: read, send, leave (never return into the caller's code)
            code = 1
            try:
                os.close(read_fd)
                snapshot = factory().refresh()
                data = pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL)
                view = memoryview(struct.pack("<Q", len(data)) + data)
                while view:
                    view = view[os.write(write_fd, view):]
                code = 0
            except BaseException:  # noqa: BLE001 - the parent reads the run itself then
                pass
            finally:
                os._exit(code)
        os.close(write_fd)
        self._pid = pid
        self._thread = threading.Thread(target=self._receive, args=(read_fd,), name="run-prefetch", daemon=True)
        self._thread.start()

    def _receive(self, fd: int) -> None:
        chunks: list[bytes] = []
        try:
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
            try:
                os.waitpid(self._pid, 0)
            except ChildProcessError:
                pass
        raw = b"".join(chunks)
        if len(raw) >= 8 and struct.unpack("<Q", raw[:8])[0] == len(raw) - 8:
            try:
                self._first = pickle.loads(raw[8:])
            except Exception:  # noqa: BLE001 - read it here instead
                self._first = None

    def refresh(self) -> Any:
        if not self._used:
            self._used = True
            self._thread.join()
            if self._first is not None:
                first, self._first = self._first, None
                return first
        if self._reader is None:
            self._reader = self._factory()
        return self._reader.refresh()

    def close(self) -> None:
        close = getattr(self._reader, "close", None)
        if callable(close):
            close()


def prefetch_run(run_dir: str, **reader_kwargs: Any) -> PrefetchedReader | ForkedFirstRead:
    """A ``RunReader`` for ``run_dir`` whose first pass starts now (in a child where it can)."""

    def factory() -> Any:
        from sdxl_tui.sources.rundir import RunReader

        return RunReader(run_dir, **reader_kwargs)

    if hasattr(os, "fork") and threading.active_count() == 1:
        try:
            return ForkedFirstRead(factory)
        except OSError:  # no fork (limits): the thread still overlaps the child's events
            pass
    return PrefetchedReader(factory)
