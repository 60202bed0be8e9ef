"""Which file a live trainer really writes its log to (Linux ``/proc/PID/fd``).

Why: when ``training.log`` is moved aside (``logrotate``, a user's ``mv``) and a new one is
created, the trainer keeps writing to the file it opened, now under the old name or unlinked.
Reading ``training.log`` by name then shows a log that stopped at "loading" while the steps go on.
The trainer's stdout and stderr descriptors name the file it writes; an unlinked file can still be
read through ``/proc/PID/fd/N`` as long as the trainer holds it open.
"""

from __future__ import annotations

import os
import stat

__all__ = ["written_log"]

_DELETED = " (deleted)"


def written_log(pid: int, default: str) -> str | None:
    """The log file ``pid`` writes its stderr (else stdout) to, when it is not ``default`` (the
    same file by device and inode); None when it is ``default``, a terminal, a pipe, not a log (a
    regular file is taken for one in ``default``'s folder or named ``*.log*``: not a captured
    temporary file), or cannot be seen (another user, no ``/proc``)."""
    try:
        ours = os.stat(default)
    except OSError:
        ours = None
    for fd in (2, 1):
        link = f"/proc/{pid}/fd/{fd}"
        try:
            target = os.readlink(link)
            st = os.stat(link)  # follows the descriptor itself, even to an unlinked file
        except OSError:
            continue
        if not target.startswith("/") or not stat.S_ISREG(st.st_mode) or not _a_log(target, default):
            continue
        if ours is not None and (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino):
            return None
        if target.endswith(_DELETED) or not os.path.exists(target):
            return link  # unlinked: readable only through the trainer's own descriptor
        return target
    return None


def _a_log(target: str, default: str) -> bool:
    name = target.removesuffix(_DELETED)
    return os.path.dirname(name) == os.path.dirname(default) or ".log" in os.path.basename(name)
