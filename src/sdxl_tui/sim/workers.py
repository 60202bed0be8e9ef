"""Real DataLoader-worker child processes for the subprocess simulator.

The real trainer forks ``min(--max_data_loader_n_workers, cpu_count)`` workers when an epoch's
iteration starts (once with ``--persistent_data_loader_workers``); they share its command
line, ignore SIGINT, and leave when the epoch's iterator is exhausted or their parent dies.
Process-tree views and tree kills need those children to exist, so the subprocess simulator
forks the same way; the in-process API never forks.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Callable


def _worker_main(read_fd: int, write_fd: int, parent: int) -> None:
    """Child: wait for EOF on the pipe (epoch over) or for the parent to disappear."""
    try:
        os.close(write_fd)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # "Main process will raise KeyboardInterrupt anyways"
        while True:
            ready, _, _ = select.select([read_fd], [], [], 0.5)
            if ready and os.read(read_fd, 1) == b"":
                break
            if os.getppid() != parent:
                break
    finally:
        os._exit(0)


class DataLoaderWorkers:
    """A batch of forked worker processes, ended like DataLoader's shutdown (pipe EOF)."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self._write_fd: int | None = None

    def spawn(self, n: int, flush: Callable[[], None]) -> None:
        self.stop()
        if n <= 0:
            return
        flush()  # multiprocessing flushes stdout/stderr before forking
        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        for _ in range(n):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                _worker_main(read_fd, write_fd, parent)
            self.pids.append(pid)
        os.close(read_fd)
        self._write_fd = write_fd

    def stop(self) -> None:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        for pid in self.pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.pids.clear()
