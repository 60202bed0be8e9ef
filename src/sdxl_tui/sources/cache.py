"""Remembering what was read: each run's decoded event files, kept in the user's cache folder.

Why: a cold ``sdxl-tui status`` on a big run spends most of its time decoding event records
it decoded last time too. The event reader's bounded state (per file: device, inode, size,
mtime and read offset; per tag: exact count and last point, downsampled display points) is
small (a few hundred KB for any run length), so it is saved after a read and loaded before
the next one, which then reads only the bytes appended since. The runs view over many runs
reads each run's summary through :func:`cached_events`.

Where: ``$XDG_CACHE_HOME/sdxl-tui/runs/`` (``formats/statedir.py``), never the run directory
(reading a run never writes into it, and run directories may be read-only or shared). One
file per event roots, one per run directory for its checkpoint headers (20 safetensors
headers of several KB of JSON each are the second cost of a status), and one per console log
for its reading state (the tail's offset and the parser's bounded state: a second status
reads only what the log gained); the folder is kept under ``cache.max_mb`` (least recently
used files removed first). The log state is a pickle read back by an unpickler that builds
only the log reader's own classes.

Safety: files are written to a temporary name and renamed over the old one (``os.replace``),
so concurrent writers (a dashboard and a ``status``) each leave a whole file, the last one
wins. A state is used only if it decodes (``sources/eventstate.py`` checks its structure) and
every file it names is still the same file (device, inode), at least as long as what was
read, and unchanged (same mtime) where its size did not grow; anything else is ignored and
the run is read from scratch. Disk trouble only loses the cache, never a read.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdxl_tui.formats.statedir import events_cache_path, headers_cache_path, log_cache_path
from sdxl_tui.sources.eventstate import EventState, decode_state, encode_state

if TYPE_CHECKING:
    from sdxl_tui.config import Settings
    from sdxl_tui.sources.events import EventsUpdate
    from sdxl_tui.sources.logparse import LogParser
    from sdxl_tui.sources.logtail import LogTail

__all__ = ["CacheFile", "EventCache", "cached_events", "event_cache", "headers_cache", "load_headers",
           "load_log", "log_cache", "save_headers", "save_log"]


class CacheFile:
    """One file of the cache folder: read whole (up to ``max_bytes``), replaced atomically."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes

    def read(self) -> bytes | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read(self.max_bytes + 1)
        except OSError:
            return None
        with contextlib.suppress(OSError):
            os.utime(self.path)  # recently used: kept longest when the folder is trimmed
        return data

    def write(self, data: bytes) -> bool:
        """Write to a temporary name, rename it over the file; then trim the folder."""
        if len(data) > self.max_bytes:
            return False
        folder = self.path.parent
        import tempfile

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


class EventCache:
    """The cache file of one event reader (its roots and point budget)."""

    def __init__(self, roots: Sequence[str], max_points: int, *, max_bytes: int = 64 << 20,
                 base: Path | None = None) -> None:
        self.file = CacheFile(events_cache_path(roots, max_points, base), max_bytes)
        self.path = self.file.path
        self.max_points = max_points

    def load(self) -> EventState | None:
        """The remembered state, if it still describes the files on disk; else None."""
        data = self.file.read()
        if data is None:
            return None
        try:
            state = decode_state(data)
        except ValueError:
            return None
        if state.max_points != self.max_points or not _still_valid(state):
            return None
        return state

    def save(self, state: EventState) -> bool:
        """Write the state atomically; then keep the folder under its bound."""
        try:
            data = encode_state(state)
        except ValueError:
            return False
        return self.file.write(data)

    def save_encoded(self, data: bytes) -> bool:
        """Write a state already encoded by ``encode_state`` (a prefetch child's)."""
        return self.file.write(data)


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


def _max_bytes(settings: Settings | None) -> int | None:
    if settings is not None and not settings.cache.enabled:
        return None
    return int((settings.cache.max_mb if settings is not None else 64.0) * 1e6)


def headers_cache(run_dir: str, settings: Settings | None) -> CacheFile | None:
    """The cache file of a run directory's checkpoint headers (None: the cache is off)."""
    max_bytes = _max_bytes(settings)
    return None if max_bytes is None else CacheFile(headers_cache_path(run_dir), max_bytes)


def load_headers(file: CacheFile) -> dict[str, tuple[tuple[int, int, int], str, str | None, dict[str, str]]]:
    """Checkpoint header verdicts by path (``CheckpointScanner.known_headers``); {} if none."""
    data = file.read()
    out: dict[str, tuple[tuple[int, int, int], str, str | None, dict[str, str]]] = {}
    if not data:
        return out
    try:
        raw = json.loads(data)
        for path, (sig, verdict, problem, meta) in raw.items():
            ino, size, mtime = (int(x) for x in sig)
            if not (isinstance(verdict, str) and (problem is None or isinstance(problem, str))):
                continue
            out[str(path)] = ((ino, size, mtime), verdict, problem, {str(k): str(v) for k, v in meta.items()})
    except (ValueError, TypeError, AttributeError):
        return {}
    return out


def save_headers(file: CacheFile, known: Mapping[str, tuple[tuple[int, int, int], str, str | None,
                                                            Mapping[str, str]]]) -> bool:
    data = {p: [list(sig), v, prob, dict(meta)] for p, (sig, v, prob, meta) in known.items()}
    return file.write(json.dumps(data, separators=(",", ":")).encode("utf-8"))


def log_cache(log: str, tail_bytes: int, head_bytes: int, settings: Settings | None) -> CacheFile | None:
    """The cache file of a console log's reading state (None: the cache is off)."""
    max_bytes = _max_bytes(settings)
    return None if max_bytes is None else CacheFile(log_cache_path(log, tail_bytes, head_bytes), max_bytes)


class _LogUnpickler(pickle.Unpickler):
    """Builds only the classes of a log state (the tail, and the parser's ``STATE_CLASSES``):
    a cache file cannot make it run anything else."""

    def find_class(self, module: str, name: str) -> Any:
        from sdxl_tui.sources.logparse import STATE_CLASSES

        if (module, name) not in STATE_CLASSES and (module, name) != ("sdxl_tui.sources.logtail", "LogTail"):
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a log state")
        return super().find_class(module, name)


def load_log(file: CacheFile, log: str) -> tuple[LogTail, LogParser] | None:
    """The remembered tail and parser of ``log`` if they still fit the file; else None.

    Fits: the same file (device, inode), at least as long as what was read, and unchanged
    (same mtime) where its size did not grow. The tail then reads only what was appended.
    """
    data = file.read()
    if not data:
        return None
    try:
        sig, tail, parser = _LogUnpickler(io.BytesIO(data)).load()
        st = os.stat(log)
    except Exception:  # noqa: BLE001 - a damaged or foreign cache file is no cache
        return None
    if type(tail).__name__ != "LogTail" or type(parser).__name__ != "LogParser" or not tail.matches(st):
        return None
    if tail.path != log or (st.st_size == sig[0] and st.st_mtime_ns != sig[1]):
        return None  # another path, or rewritten in place
    return tail, parser


def save_log(file: CacheFile, tail: LogTail, parser: LogParser) -> bool:
    """Remember where the tail stopped and what the parser knows (with the file's size and
    mtime now)."""
    try:
        st = os.stat(tail.path)
        if not tail.matches(st):
            return False
        data = pickle.dumps(((st.st_size, st.st_mtime_ns), tail, parser), protocol=pickle.HIGHEST_PROTOCOL)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        return False
    return file.write(data)


def event_cache(roots: Sequence[str], max_points: int, settings: Settings | None) -> EventCache | None:
    """The cache for these roots as the settings want it (None: ``cache.enabled`` is off)."""
    max_bytes = _max_bytes(settings)
    return None if max_bytes is None else EventCache(roots, max_points, max_bytes=max_bytes)


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
