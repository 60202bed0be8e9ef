"""Start reading the run before Textual is even imported (no textual import here).

The first full frame on a big run is bounded by the reader's first pass over it; starting
that pass in a thread while the interpreter imports Textual and builds the screen overlaps
the two, instead of paying for them one after the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


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
        except BaseException as exc:  # re-raised in the feed thread, which reports it
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


def prefetch_run(run_dir: str, **reader_kwargs: Any) -> PrefetchedReader:
    """A ``RunReader`` for ``run_dir`` whose first pass starts now."""

    def factory() -> Any:
        from sdxl_tui.sources.rundir import RunReader

        return RunReader(run_dir, **reader_kwargs)

    return PrefetchedReader(factory)
