"""The night's queue on disk: one JSON file per entry in the queue folder.

Layout (``queue.dir``, default ``$XDG_STATE_HOME/sdxl-tui/queue``, else
``~/.local/state/sdxl-tui/queue``): ``<id>.json`` per entry (the fields of
:class:`~sdxl_tui.model.QueueEntry`), ``runner.lock`` (flock of the one runner), ``runner.info``
(its pid and create time) and ``runner.log``. Per user, not per run directory: the queue
strings runs of different output directories together. Files are replaced atomically, so a
reader never sees half an entry. Pure apart from those reads and writes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from sdxl_tui.model import QueueEntry

__all__ = [
    "ACTIVE",
    "ENDED",
    "ON_FAILURE",
    "default_queue_dir",
    "entry_from_json",
    "entry_path",
    "queue_dir",
    "read_queue",
    "write_entry",
]

#: Statuses of entries the runner still has to look after.
ACTIVE = ("waiting", "running", "submitted")
#: Statuses of entries that are over.
ENDED = ("done", "failed", "skipped", "removed")
ON_FAILURE = ("stop", "continue")
_FIELDS = {f.name for f in fields(QueueEntry)}


def default_queue_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "sdxl-tui" / "queue"


def queue_dir(setting: str | os.PathLike[str] | None = None) -> Path:
    """The queue folder: the ``queue.dir`` setting when given, else the default."""
    return Path(os.path.expanduser(os.fspath(setting))) if setting else default_queue_dir()


def entry_path(folder: str | os.PathLike[str], entry_id: str) -> Path:
    return Path(folder) / f"{entry_id}.json"


def entry_from_json(data: object) -> QueueEntry | None:
    """An entry from its JSON object (unknown keys ignored), or None when it is not one."""
    if not isinstance(data, dict):
        return None
    known = {k: v for k, v in data.items() if k in _FIELDS}
    try:
        entry = QueueEntry(**known)
    except TypeError:
        return None
    if not isinstance(entry.id, str) or not isinstance(entry.output_dir, str):
        return None
    return entry


def read_queue(folder: str | os.PathLike[str]) -> tuple[QueueEntry, ...]:
    """Every entry, in queue order (by number); unreadable files are skipped."""
    entries = []
    try:
        names = [e.name for e in os.scandir(folder) if e.name.endswith(".json")]
    except OSError:
        return ()
    for name in names:
        try:
            entry = entry_from_json(json.loads((Path(folder) / name).read_text(encoding="utf-8")))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if entry is not None:
            entries.append(entry)
    return tuple(sorted(entries, key=lambda e: (int(e.id) if e.id.isdigit() else 1 << 30, e.id)))


def entry_json(entry: QueueEntry) -> dict[str, Any]:
    return asdict(entry)


def write_entry(folder: str | os.PathLike[str], entry: QueueEntry) -> Path:
    """Write ``entry`` atomically (temp file + rename)."""
    path = entry_path(folder, entry.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entry_json(entry), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
