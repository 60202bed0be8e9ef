"""Numbers as people read them: durations, sizes, ages, values.

Why one module: the dashboard, ``sdxl-tui status`` and the alerts used to format the same
quantities with three different functions, so one run read "1:02:05" in the terminal and
"1h02m" on the dashboard. Every user-facing number of a kind now goes through one function
here (pure, no imports from the rest of the package).
"""

from __future__ import annotations

import math

__all__ = [
    "format_ago",
    "format_binary_bytes",
    "format_bytes",
    "format_duration",
    "format_duration_words",
    "format_loss",
    "format_value",
]


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``4m05s``, ``12s``, ``1d01h``; ``--`` when unknown (compact, for columns)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "--"
    s = round(seconds)
    if s >= 86400:
        return f"{s // 86400}d{(s % 86400) // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def format_duration_words(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 05 min``: a planning estimate, where seconds are noise."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    h, rem = divmod(s, 3600)
    m, _ = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min"


def format_ago(seconds: float | None) -> str:
    """``42 s``, ``12 min``, ``3.5 h`` (how long ago something was written); ``?`` unknown."""
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_bytes(n: float | None) -> str:
    """``190.2 MB``, ``23.5 GB`` (decimal units, as ``ls -lh --si`` and disk vendors count)."""
    if n is None:
        return "--"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover


def format_binary_bytes(n: int) -> str:
    """``12 bytes``, ``1.5 MiB`` (binary units: how much of a file was skipped)."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB"):
        if value < 1024:
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _significant(v: float, digits: int) -> str:
    """``digits`` significant digits, scientific below 1e-3 and from 1e5."""
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    if abs(v) < 1e-3 or abs(v) >= 1e5:
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def format_value(v: float) -> str:
    """3 significant digits, scientific for tiny learning rates and huge values."""
    return _significant(v, 3)



def format_loss(v: float) -> str:
    """4 significant digits (``1.052``, ``0.09712``): losses of two epochs often differ only in
    the fourth, which is what picking the best epoch needs."""
    return _significant(v, 4)
