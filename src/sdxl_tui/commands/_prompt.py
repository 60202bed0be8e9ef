"""The one y/N confirmation the destructive commands share (``start``, ``kill``)."""

from __future__ import annotations

import sys


def confirm(question: str) -> bool | None:
    """Ask ``question [y/N]`` on the terminal.

    Returns True for yes, False for anything else (EOF included), and None when stdin is not
    a terminal, so nobody can answer: callers then refuse and point at ``--yes`` rather than
    act unconfirmed.
    """
    if not sys.stdin.isatty():
        return None
    try:
        answer = input(f"\n{question} [y/N] ").strip().lower()
    except EOFError:
        return False
    return answer in ("y", "yes")
