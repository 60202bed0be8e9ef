"""What the supervisor does besides waiting: a slow GPU history, and the report when a run ends.

Why here and not in the dashboard: the supervisor of a run started with ``sdxl-tui start``
lives exactly as long as the run, with or without a dashboard open, so it is the one place
that can sample the GPUs all night and notice the end. Both jobs are best effort: nothing
here may disturb the trainer or the run record (errors are swallowed, a broken NVML is
"no GPU", and the report runs in its own process with a time limit).

The report is a subprocess (``python -m sdxl_tui report``) because ``control/`` and
``report/`` are siblings that may not import each other, and because a report that fails
or takes memory must not touch the supervisor.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from typing import Protocol

from sdxl_tui.formats.gpulog import GPU_HISTORY_INTERVAL, append_gpu_sample, gpu_history_path
from sdxl_tui.formats.statedir import state_dir
from sdxl_tui.model import GpuStatus

#: The report of a finished run must not keep a supervisor alive for long.
REPORT_TIMEOUT = 600.0


class _Monitor(Protocol):
    def sample(self, trainer_pids: Collection[int] = ()) -> GpuStatus: ...

    def close(self) -> None: ...


class GpuRecorder:
    """Append one GPU sample to ``OUTPUT_DIR/.sdxl-tui/gpu.jsonl`` every ``interval`` seconds.

    ``tick()`` is called from the supervisor's wait loop (every 0.5-5 s) and returns at once
    unless a sample is due, so its cost is one NVML query per ``interval`` (a few ms). Without
    a GPU one "unavailable" line is written when the reason first appears or changes.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        *,
        interval: float = GPU_HISTORY_INTERVAL,
        monitor: _Monitor | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.path = gpu_history_path(output_dir)
        self._interval = interval
        self._monitor = monitor
        self._clock = clock
        self._wall = wall
        self._next: float | None = None
        self._last_reason: str | None = None
        self._broken = False

    def _sampler(self) -> _Monitor:
        if self._monitor is None:
            from sdxl_tui.sources.gpu import GpuMonitor

            self._monitor = GpuMonitor()
        return self._monitor

    def tick(self, trainer_pids: Collection[int] = ()) -> bool:
        """Take a sample if one is due; True when a line was written."""
        now = self._clock()
        if self._broken or (self._next is not None and now < self._next):
            return False
        self._next = now + self._interval
        try:
            status = self._sampler().sample(trainer_pids)
            if not status.available:
                if status.reason == self._last_reason:
                    return False
                self._last_reason = status.reason
            else:
                self._last_reason = None
            append_gpu_sample(self.path, status, at=self._wall(), trainer_pids=trainer_pids)
        except Exception:  # noqa: BLE001 - a history is never worth disturbing the run
            self._broken = True
            return False
        return True

    def close(self) -> None:
        if self._monitor is not None:
            with contextlib.suppress(Exception):  # best effort at exit
                self._monitor.close()


def report_on_end(output_dir: str | None, *, python: str | None = None,
                  timeout: float = REPORT_TIMEOUT) -> bool:
    """Write ``OUTPUT_DIR/.sdxl-tui/report.html`` and ``report.md`` if ``report.on_end`` is set.

    The setting is read now, from the environment the run was started with and the settings
    file (``SDXL_TUI_CONFIG`` or the XDG file). The report's own output goes to
    ``.sdxl-tui/report.log``. Returns True when both reports were written.
    """
    if not output_dir:
        return False
    try:
        from sdxl_tui.config import load_settings

        if not load_settings().report.on_end:
            return False
    except Exception:  # noqa: BLE001 - a broken settings file: no report, the run is unharmed
        return False
    state = state_dir(output_dir)
    ok = True
    try:
        state.mkdir(parents=True, exist_ok=True)
        with open(state / "report.log", "ab") as log:
            for fmt in ("html", "md"):
                cmd = [python or sys.executable, "-m", "sdxl_tui", "report", output_dir,
                       "--format", fmt, "-o", str(state / f"report.{fmt}")]
                proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                      timeout=timeout, check=False)
                ok = ok and proc.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    return ok
