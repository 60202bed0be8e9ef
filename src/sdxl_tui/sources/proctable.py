"""One read of the process table: pid, parent, create time, command line (the psutil boundary).

Why its own module: finding a run's processes (``sources/procs.py``) needs the table once per
refresh, every 2 s, and on Linux reading ``/proc`` directly is about 4x cheaper than
``psutil.process_iter`` on a busy box. psutil is imported only when a caller needs more than
the table (CPU, RSS, user of a trainer it found) or where ``/proc`` is missing, so a status of
a run with no live trainer never pays for importing it. A row reads the rest of what
discovery may ask about a process (working directory, the rank variables of its environment)
only when asked.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = ["LAZY_PSUTIL", "RANK_VARIABLES", "Row", "boot_time", "psutil_or_lazy", "scan"]

#: The variables torchrun (and ``accelerate launch`` through it) sets in each rank's environment.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


class _LazyPsutil:
    """``psutil``, imported on first attribute access (see the module's why)."""

    __name__ = "psutil"

    def __getattr__(self, name: str) -> Any:
        import psutil  # type: ignore[import-untyped, unused-ignore]

        return getattr(psutil, name)


LAZY_PSUTIL = _LazyPsutil()


def psutil_or_lazy(module: ModuleType | None) -> Any:
    """The injected psutil-like module (tests), else the lazily imported real one."""
    return module if module is not None else LAZY_PSUTIL


def boot_time(ps: Any) -> float:
    """psutil's boot time (the ``btime`` line of /proc/stat), read without importing it."""
    if ps is LAZY_PSUTIL:
        try:
            with open("/proc/stat", "rb") as fh:
                for line in fh:
                    if line.startswith(b"btime"):
                        return float(line.strip().split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return float(ps.boot_time())


@dataclass
class Row:
    """One process as the table shows it; ``cwd`` and ``ranks`` are read once, on demand."""

    pid: int
    ppid: int | None
    create_time: float | None
    cmdline: tuple[str, ...]
    proc: Any  # a psutil Process (psutil scan) or None (/proc scan)
    _cwd: str | None = None
    _cwd_done: bool = False
    _env: Mapping[str, str] | None = None
    _env_done: bool = False

    def cwd(self, ps: Any) -> str | None:
        if not self._cwd_done:
            self._cwd_done = True
            try:
                self._cwd = os.readlink(f"/proc/{self.pid}/cwd") if self.proc is None else self.proc.cwd()
            except (ps.Error, OSError):
                self._cwd = None
        return self._cwd

    def rank_env(self, ps: Any) -> Mapping[str, str]:
        """``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` from the process's environment; empty when
        unset or unreadable (another user's process: ``/proc/PID/environ`` is private)."""
        if not self._env_done:
            self._env_done = True
            try:
                if self.proc is None:
                    with open(f"/proc/{self.pid}/environ", "rb") as fh:
                        raw = fh.read().decode("utf-8", "surrogateescape").split("\0")
                    env = dict(item.split("=", 1) for item in raw if "=" in item)
                else:
                    env = dict(self.proc.environ())
            except (ps.Error, OSError, ValueError, AttributeError):  # AttributeError: a psutil without environ()
                env = {}
            self._env = {k: env[k] for k in RANK_VARIABLES if k in env}
        return self._env or {}


_CLOCK_TICKS: int | None = None


def _scan_proc(ps: Any) -> dict[int, Row] | None:
    """Read /proc directly (Linux). Create times are computed the way psutil does (boot time +
    start ticks / CLK_TCK), so they compare equal to ``Process.create_time()``.
    Returns None where /proc is not available."""
    global _CLOCK_TICKS
    try:
        names = os.listdir("/proc")
        boot = boot_time(ps)
        if _CLOCK_TICKS is None:
            _CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    ticks = float(_CLOCK_TICKS)
    rows: dict[int, Row] = {}
    for name in names:
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue  # gone mid-scan, or not readable
        try:
            fields = stat[stat.rindex(b")") + 2:].split()
            ppid = int(fields[1])
            create = boot + int(fields[19]) / ticks
        except (ValueError, IndexError):
            continue
        text = raw.decode("utf-8", "surrogateescape")
        if text.endswith("\0"):
            cmd = tuple(text[:-1].split("\0"))
        elif "\0" in text:
            cmd = tuple(text.split("\0"))
        else:
            cmd = tuple(text.split())  # a process that rewrote its title with spaces
        rows[pid] = Row(pid, ppid, create, cmd, None)
    return rows


def scan(ps: Any) -> dict[int, Row]:
    """Every process now, by pid (never raises for processes that vanish mid-scan)."""
    if getattr(ps, "__name__", None) == "psutil" and sys.platform.startswith("linux"):
        fast = _scan_proc(ps)
        if fast is not None:
            return fast
    rows: dict[int, Row] = {}
    for proc in ps.process_iter(["pid", "ppid", "cmdline", "create_time"], ad_value=None):
        info = proc.info
        pid = info.get("pid")
        if pid is None:
            continue
        rows[pid] = Row(pid, info.get("ppid"), info.get("create_time"), tuple(info.get("cmdline") or ()), proc)
    return rows
