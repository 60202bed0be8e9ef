"""The one fork-based cold-start prefetcher: run a function in a forked child, take its result.

Why: a cold start on a big run is mostly the decoding of the event files (200,000 records),
pure Python work that needs nothing else the start does (imports, the log, checkpoint
headers, the process table, Textual). In a thread it would only take turns with that work
(one interpreter lock); in a forked child it runs on the second core. The child sends its
result back pickled through a pipe, length-prefixed (whole or nothing), and leaves with
``os._exit``. ``sdxl-tui status`` and the dashboard both use it through
``EventReader.prefetch``: the reader adopts the state the child produced, so the first
snapshot (and the dashboard's first frame) reads every byte of the event files once.

Only for callers with a single thread (``fork`` copies one thread): :func:`can_fork` says
whether forking is possible and worth it. If the child fails in any way, :meth:`ForkedCall.result`
returns None and the caller does the work itself.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ForkedCall", "can_fork"]

T = TypeVar("T")
_LEN = struct.Struct("<Q")


def can_fork() -> bool:
    """Whether a prefetch child can help: ``os.fork`` exists and there are two CPUs.

    The caller must be single-threaded (``sdxl-tui status``; the dashboard before Textual
    starts): the child copies only the forking thread. It runs only the readers' own code
    (file reads, decoding, pickling: no logging, no locks of other threads) and leaves with
    ``os._exit``.
    """
    if not hasattr(os, "fork"):
        return False
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return cpus >= 2


class ForkedCall(Generic[T]):
    """``fn()`` running in a forked child; :meth:`result` waits for its (picklable) value.

    Raises OSError when the fork fails. ``close()`` kills a child whose result was not taken
    and reaps it; idempotent, always call it.
    """

    def __init__(self, fn: Callable[[], T]) -> None:
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            raise
        if pid == 0:  # pragma: no cover - the child (coverage does not follow forks)
            code = 1
            try:
                os.close(read_fd)
                data = pickle.dumps(fn(), protocol=pickle.HIGHEST_PROTOCOL)
                view = memoryview(_LEN.pack(len(data)) + data)
                while view:
                    view = view[os.write(write_fd, view) :]
                os.close(write_fd)  # end of data for the parent now, before the teardown
                code = 0
            except BaseException:  # noqa: BLE001 - the parent does the work itself then
                pass
            finally:
                os._exit(code)
        os.close(write_fd)
        self.pid: int | None = pid
        self._fd: int | None = read_fd
        self._exiting: int | None = None

    @property
    def pending(self) -> bool:
        """The child runs and its result was not taken yet."""
        return self._fd is not None

    def wait(self, timeout: float) -> bool:
        """Whether the child's result is there (or it ended) within ``timeout`` seconds."""
        if self._fd is None:
            return True
        import select

        try:
            return bool(select.select([self._fd], [], [], max(0.0, timeout))[0])
        except (OSError, ValueError):
            return True  # result() will tell

    def result(self) -> T | None:
        """Wait for the child's value (None: it failed). Only the first call reads it."""
        fd, self._fd = self._fd, None
        pid, self.pid = self.pid, None
        if fd is None or pid is None:
            return None
        chunks: list[bytes] = []
        try:
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        except OSError:
            chunks = []
        finally:
            os.close(fd)
        data = b"".join(chunks)
        # The child closed its end once everything was written; it may still be exiting:
        # don't wait for that here (close() reaps it), the length prefix says the data is whole.
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except OSError:
            done, status = pid, -1
        if not done:
            self._exiting = pid
        if (done and status != 0) or len(data) < 8 or _LEN.unpack_from(data)[0] != len(data) - 8:
            self.close()
            return None
        try:
            value: T = pickle.loads(memoryview(data)[8:])
        except Exception:  # noqa: BLE001 - anything odd: the caller reads in-process
            return None
        return value

    def close(self) -> None:
        """Kill a child whose result was not taken; reap it (idempotent)."""
        exiting, self._exiting = self._exiting, None
        if exiting is not None:
            with contextlib.suppress(OSError):
                os.waitpid(exiting, 0)
        pid, self.pid = self.pid, None
        fd, self._fd = self._fd, None
        if pid is None:
            return
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)

    def __del__(self) -> None:
        if getattr(self, "pid", None) is not None or getattr(self, "_exiting", None) is not None:
            self.close()
