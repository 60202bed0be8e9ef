"""Whether the end of a run is the stop the user asked for (the stop record), and how to say it.

A stop is recorded in ``.sdxl-tui/last-kill.json`` before the first signal
(:class:`~sdxl_tui.formats.statedir.StopRecord`). It explains the end of *this* run only when
nothing of the run is alive any more, the run was not launched again after it, and nothing was
written long after it (a later run started by hand would keep writing).
"""

from __future__ import annotations

import time

from sdxl_tui.formats.statedir import RunRecord, StopRecord

__all__ = ["LATE_WRITE_SECONDS", "applicable_stop", "describe_stop"]

#: Writes this long after the stop ended belong to a later run (the trainer's own teardown,
#: an interrupted save, the supervisor's end record come within seconds).
LATE_WRITE_SECONDS = 120.0


def applicable_stop(stop: StopRecord | None, *, alive: bool | None, record: RunRecord | None,
                    last_write_at: float | None) -> StopRecord | None:
    """``stop`` when it explains why the run is over, else None."""
    if stop is None or alive is True:
        return None
    launched = record.started_at if record is not None else None
    if launched is not None and launched > stop.requested_at + 1.0:
        return None  # launched again after the stop
    done = max(stop.requested_at, stop.ended_at or 0.0)
    if last_write_at is not None and last_write_at > done + LATE_WRITE_SECONDS:
        return None
    return stop


def describe_stop(stop: StopRecord) -> str:
    """``sdxl-tui kill, SIGINT, 03:12`` (local time of the request)."""
    parts = [stop.by]
    if stop.signal:
        parts.append(stop.signal)
    parts.append(time.strftime("%H:%M", time.localtime(stop.requested_at)))
    return ", ".join(parts)
