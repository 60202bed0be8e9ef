"""Identity-checked signals to the processes of one run (the psutil boundary of ``kill``).

Every process is named by (pid, create time): right before *each* signal the pid is looked
up again and signalled only if it is still the same process, owned by the same user. A PID
that was reused by another program in between is reported as "skipped", never signalled.

The steps ``control/kill.py`` composes:

* :func:`freeze` - SIGSTOP the wrapper chain (``bash train.sh``, a retry loop), so nothing
  above the trainer can start it again while it is being stopped. A frozen shell cannot
  reap its child: the exited trainer stays a zombie until the shell is released, and a
  zombie counts as gone (it runs nothing).
* :func:`send` / :func:`wait_for` - the trainer's SIGINT, SIGTERM and SIGKILL steps.
* :func:`release` - end the frozen wrappers: SIGTERM while stopped (pending), then SIGCONT so
  it is delivered, wait, and SIGKILL what is left.

Nothing here prints.
"""

from __future__ import annotations

import os
import signal as _signal
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from sdxl_tui.model import ProcInfo
from sdxl_tui.sources.procs import same_time

__all__ = ["Target", "freeze", "gone", "ignores", "load_psutil", "owner", "reap", "release", "send", "wait_for"]


def load_psutil(module: ModuleType | None) -> Any:
    """``psutil`` (or the psutil-like module a test injects)."""
    if module is not None:
        return module
    import psutil

    return psutil


def owner(ps: Any, proc: Any) -> tuple[int | None, str | None]:
    """(real uid, user name) of a psutil process; Nones when unknown."""
    try:
        uid = proc.uids().real
    except (ps.Error, OSError, AttributeError):
        uid = None
    try:
        name = proc.username()
    except (ps.Error, OSError, KeyError):
        name = str(uid) if uid is not None else None
    return uid, name


class Target:
    """One process of a kill and what happened to it."""

    def __init__(self, info: ProcInfo) -> None:
        self.info = info
        self.signals: list[str] = []
        self.result: str | None = None  # "exited" | "survived" | "skipped" | "gone"
        self.after: str | None = None  # the step during which it exited
        self.detail = ""
        self.frozen = False


def gone(ps: Any, t: Target) -> bool:
    """True once the process has exited (a zombie counts: it runs nothing any more), or its
    pid now names another process."""
    try:
        proc = ps.Process(t.info.pid)
        if not same_time(proc.create_time(), t.info.create_time):
            return True
        return bool(proc.status() == ps.STATUS_ZOMBIE)
    except ps.NoSuchProcess:
        return True
    except (ps.Error, OSError):
        return False


def reap(targets: Sequence[Target]) -> None:
    """Reap those that are our own children (tests), or they stay zombies."""
    for t in targets:
        try:
            os.waitpid(t.info.pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            pass


def send(ps: Any, t: Target, sig: _signal.Signals, me: int) -> bool:
    """Signal one process after re-checking its identity and owner right before.
    Returns True when the signal was sent."""
    try:
        proc = ps.Process(t.info.pid)
        if not same_time(proc.create_time(), t.info.create_time):
            t.result, t.detail = "skipped", "pid now belongs to another process"
            return False
        uid, _ = owner(ps, proc)
        if uid != me:
            t.result, t.detail = "skipped", "owned by another user"
            return False
        if proc.status() == ps.STATUS_ZOMBIE:
            return False
        proc.send_signal(sig)
    except ps.NoSuchProcess:
        return False
    except ps.AccessDenied:
        t.result, t.detail = "skipped", "access denied"
        return False
    if sig not in (_signal.SIGSTOP, _signal.SIGCONT):
        t.signals.append(sig.name)
    return True


def wait_for(ps: Any, group: Sequence[Target], seconds: float, step: str,
             sleep: Callable[[float], None] = time.sleep) -> bool:
    """Wait up to ``seconds`` for every process of ``group`` to be gone, marking each one
    "exited" during ``step``. True when all are gone (or were decided otherwise)."""
    deadline = time.monotonic() + seconds
    while True:
        reap(group)
        for t in group:
            if t.result is None and gone(ps, t):
                t.result, t.after = "exited", step
        if all(t.result is not None for t in group):
            return True
        if time.monotonic() >= deadline:
            return False
        sleep(0.05)


def ignores(pid: int, sig: _signal.Signals) -> bool:
    """True when the process ignores ``sig`` (``SigIgn`` in ``/proc/PID/status``; Linux).

    A trainer started from ``nohup … &`` or a job runner may inherit SIGINT ignored: waiting
    for it to react to SIGINT would only waste the timeout.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("SigIgn:"):
                    return bool(int(line.split()[1], 16) >> (int(sig) - 1) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def freeze(ps: Any, targets: Sequence[Target], me: int) -> list[Target]:
    """SIGSTOP each live target (outermost first); returns those now frozen."""
    frozen = []
    for t in targets:
        if t.result is None and send(ps, t, _signal.SIGSTOP, me):
            t.frozen = True
            frozen.append(t)
    return frozen


def release(ps: Any, targets: Sequence[Target], me: int, *, wait: float, kill_wait: float) -> None:
    """End the (frozen) wrappers: SIGTERM + SIGCONT, wait, then SIGKILL what is left.

    The SIGTERM is sent while the process is still stopped (it stays pending), and SIGCONT
    delivers it: a retry loop gets no chance to run one more line first.
    """
    live = [t for t in targets if t.result is None]
    if not live:
        return
    for t in reversed(live):  # innermost first: a parent never sees its child "fail" and retry
        send(ps, t, _signal.SIGTERM, me)
        if t.frozen:
            send(ps, t, _signal.SIGCONT, me)
    if wait_for(ps, live, wait, "SIGTERM"):
        return
    rest = [t for t in live if t.result is None]
    for t in rest:
        send(ps, t, _signal.SIGKILL, me)
    wait_for(ps, rest, kill_wait, "SIGKILL")
