"""Remembering what was read: each run's decoded event files, kept in the user's cache folder.

Why: a cold ``sdxl-tui status`` on a big run spends most of its time decoding event records
it decoded last time too. The event reader's bounded state (per file: device, inode, size,
mtime and read offset; per tag: exact count and last point, downsampled display points) is
small (a few hundred KB for any run length), so it is saved after a read and loaded before
the next one, which then reads only the bytes appended since. The runs view over many runs
reads each run's summary through :func:`cached_events`.

Where: ``$XDG_CACHE_HOME/sdxl-tui/events/`` (``formats/statedir.py``), never the run directory
(reading a run never writes into it, and run directories may be read-only or shared). One
file per event roots; the folder is kept under ``cache.max_mb`` (oldest files removed first).

Safety: files are written to a temporary name and renamed over the old one (``os.replace``),
so concurrent writers (a dashboard and a ``status``) each leave a whole file, the last one
wins. A state is used only if it decodes (``sources/eventstate.py`` checks its structure) and
every file it names is still the same file (device, inode), at least as long as what was
read, and unchanged (same mtime) where its size did not grow; anything else is ignored and
the run is read from scratch. Disk trouble only loses the cache, never a read.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sdxl_tui.formats.statedir import events_cache_path
from sdxl_tui.sources.eventstate import EventState, decode_state, encode_state

if TYPE_CHECKING:
    from sdxl_tui.config import Settings
    from sdxl_tui.sources.events import EventsUpdate

__all__ = ["EventCache", "cached_events", "event_cache"]


class EventCache:
    """The cache file of one event reader (its roots and point budget)."""

    def __init__(self, roots: Sequence[str], max_points: int, *, max_bytes: int = 64 << 20,
                 base: Path | None = None) -> None:
        self.path = events_cache_path(roots, max_points, base)
        self.max_points = max_points
        self.max_bytes = max_bytes

    def load(self) -> EventState | None:
        """The remembered state, if it still describes the files on disk; else None."""
        try:
            with open(self.path, "rb") as f:
                data = f.read(self.max_bytes + 1)
        except OSError:
            return None
        try:
            state = decode_state(data)
        except ValueError:
            return None
        if state.max_points != self.max_points or not _still_valid(state):
            return None
        with contextlib.suppress(OSError):
            os.utime(self.path)  # recently used: kept longest when the folder is trimmed
        return state

    def save(self, state: EventState) -> bool:
        """Write the state atomically; then keep the folder under ``max_bytes``."""
        try:
            data = encode_state(state)
        except ValueError:
            return False
        if len(data) > self.max_bytes:
            return False
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            return False
        _trim(folder, self.max_bytes, keep=self.path)
        return True


def _still_valid(state: EventState) -> bool:
    for fs in state.files.values():
        try:
            st = os.stat(fs.path)
        except OSError:
            return False
        if (st.st_dev, st.st_ino) != (fs.dev, fs.ino) or st.st_size < fs.offset:
            return False
        if st.st_size == fs.size and st.st_mtime_ns != fs.mtime_ns:
            return False  # rewritten in place
    return True


def _trim(folder: Path, max_bytes: int, keep: Path) -> None:
    """Remove the least recently used cache files until the folder holds ``max_bytes``."""
    try:
        entries = []
        with os.scandir(folder) as it:
            for e in it:
                if e.is_file():
                    st = e.stat()
                    entries.append((st.st_mtime, st.st_size, e.path))
    except OSError:
        return
    total = sum(size for _t, size, _p in entries)
    for _t, size, path in sorted(entries):
        if total <= max_bytes:
            break
        if path == str(keep):
            continue
        with contextlib.suppress(OSError):
            os.unlink(path)
            total -= size


def event_cache(roots: Sequence[str], max_points: int, settings: Settings | None) -> EventCache | None:
    """The cache for these roots as the settings want it (None: ``cache.enabled`` is off)."""
    if settings is not None and not settings.cache.enabled:
        return None
    max_mb = settings.cache.max_mb if settings is not None else 64.0
    return EventCache(roots, max_points, max_bytes=int(max_mb * 1e6))


def cached_events(run_dir: str | os.PathLike[str], *, logs_dir: str | os.PathLike[str] | None = None,
                  settings: Settings | None = None) -> EventsUpdate:
    """A run's event summary (per tag: count, last, display points) at the cost of new bytes.

    The one call for views over many runs: the roots are those ``sdxl-tui status`` uses by
    default (``logs_dir``, else the run directory), so both share one cache file. Reads only
    what was appended since the cached state (everything when there is none), saves the new
    state, and returns what an ``EventReader.refresh`` returns. Never raises for file trouble.
    """
    from sdxl_tui.sources.events import EventReader

    root = os.path.abspath(os.path.expanduser(os.fspath(logs_dir if logs_dir is not None else run_dir)))
    reader = EventReader([root], cache=event_cache([root], EventReader.DEFAULT_MAX_POINTS, settings))
    try:
        return reader.refresh()
    finally:
        reader.close()
