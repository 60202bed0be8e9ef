"""``RunLog``: the run's console log as a ``RunReader`` follows it, one file at a time.

Why its own piece: following the log is a tail (``LogTail``) and a parser (``LogParser``) of
the file the reader chose, replaced when that choice changes, started afresh when the file is
truncated or rotated, and (with the cache on) started from where the last reader of that file
stopped: the user's cache folder keeps the tail's offset and the parser's bounded state
(``sources/cache.py``), so a second ``sdxl-tui status`` parses only what the log gained.
"""

from __future__ import annotations

from sdxl_tui.config import Settings
from sdxl_tui.sources.cache import CacheFile, load_log, log_cache, save_log
from sdxl_tui.sources.logfacts import LogFacts
from sdxl_tui.sources.logparse import LogParser
from sdxl_tui.sources.logtail import LogTail

__all__ = ["RunLog"]


class RunLog:
    """The tail and the parser of the log file being followed.

    Args:
        tail_bytes, head_bytes: how much of a big file the first read parses (its end and its
            start; the middle is skipped), see ``LogTail``.
        settings: the cache's settings (``cache.enabled``, ``cache.max_mb``).
        cache: start from the cached state of the file and remember it on ``save``.
    """

    def __init__(self, tail_bytes: int, head_bytes: int, settings: Settings, *, cache: bool) -> None:
        self.tail_bytes = tail_bytes
        self.head_bytes = head_bytes
        self._settings = settings
        self._use_cache = cache
        self.tail: LogTail | None = None
        self.parser = LogParser()
        self.file: str | None = None  # the file followed
        self._cache: CacheFile | None = None
        self.unsaved = False  # the log was read since its state was cached

    def read(self, path: str) -> tuple[LogFacts, list[str]]:
        """Feed the parser with the new bytes of ``path``; returns (facts, problems)."""
        problems: list[str] = []
        if self.tail is None or path != self.file:
            self.save()
            self.tail, self.parser = self._start(path)
            self.file = path
        read = self.tail.read()
        self.unsaved = self.unsaved or read.changed
        if read.truncated or read.rotated:
            # The log started over (a new run with `>`, or rotation): parse it afresh.
            self.parser = LogParser()
            problems.append(f"log {'rotated' if read.rotated else 'truncated'}; parsing it again: {path}")
        if read.head_segments:
            self.parser.feed(read.head_segments)
        if read.segments:
            self.parser.feed(read.segments)
        problems.extend(read.problems)
        return self.parser.facts, problems

    def _start(self, path: str) -> tuple[LogTail, LogParser]:
        """A tail and parser for ``path``: with the cache on, where the last reader stopped."""
        self._cache = None
        if self._use_cache:
            self._cache = log_cache(path, self.tail_bytes, self.head_bytes, self._settings)
            cached = load_log(self._cache, path) if self._cache is not None else None
            if cached is not None:
                return cached
        return LogTail(path, initial_tail_bytes=self.tail_bytes, head_bytes=self.head_bytes), LogParser()

    def save(self) -> None:
        """Remember the reading state in the cache, if anything was read since (cache on)."""
        if self.unsaved and self._cache is not None and self.tail is not None:
            save_log(self._cache, self.tail, self.parser)
        self.unsaved = False

    def close(self) -> None:
        """Close the file and remember where it was read to."""
        if self.tail is not None:
            self.tail.close()
            self.save()
