"""The run directory a read-only command is given: there, a directory, and readable."""

from __future__ import annotations

import os
from collections.abc import Callable


def readable_run_dir(text: str, err: Callable[[str], None]) -> tuple[str, int]:
    """(the absolute directory, 0), or ("", the exit status) after ``err`` said what is wrong:
    2 for a missing path or a file, 1 for a directory that cannot be read."""
    run_dir = os.path.abspath(os.path.expanduser(text))
    if not os.path.exists(run_dir):
        err(f"no such directory: {text}")
        return "", 2
    if not os.path.isdir(run_dir):
        err(f"not a directory: {text}")
        return "", 2
    if not os.access(run_dir, os.R_OK | os.X_OK):
        err(f"cannot read {text}: permission denied")
        return "", 1
    return run_dir, 0
