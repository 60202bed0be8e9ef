"""Messages from the feed workers to the App: past events wrapping frozen model values.

Workers only ever ``post_message`` these; the App's handlers own the state (harlequin's rule).
"Latest state" messages define ``can_replace`` so a busy UI skips stale ones (toolong);
append-style messages carry batches and are never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from sdxl_tui.model import Alert, GpuStatus, LogLine, RunSnapshot


class SnapshotUpdated(Message):
    """The run reader produced a new snapshot (replaces an unprocessed older one that
    carries no log lines).

    The log lines read with it ride along (``lines``, ``reset``: as in :class:`LogLinesAdded`)
    so that one message means one frame: posted apart, the snapshot and its log batch were
    painted as two frames, twice the compositor work for a run that writes all the time.
    """

    def __init__(
        self,
        snapshot: RunSnapshot,
        refresh_seconds: float = 0.0,
        lines: tuple[LogLine, ...] = (),
        reset: bool = False,
    ) -> None:
        super().__init__()
        self.snapshot = snapshot
        #: How long the reader's refresh took (shown in the status line, used by the benchmark).
        self.refresh_seconds = refresh_seconds
        self.lines = lines
        self.reset = reset

    def can_replace(self, message: Message) -> bool:
        # An append-style batch is never dropped: only a snapshot without lines is replaced.
        return isinstance(message, SnapshotUpdated) and not message.lines and not message.reset


class GpuSampled(Message):
    """A fresh NVML sample (replaces an unprocessed older one)."""

    def __init__(self, status: GpuStatus) -> None:
        super().__init__()
        self.status = status

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GpuSampled)


class LogLinesAdded(Message):
    """New logical log lines, in order. A line whose ``number`` equals the last shown line's
    replaces it (a tqdm redraw); ``reset`` means the log was truncated or rotated."""

    def __init__(self, lines: tuple[LogLine, ...], reset: bool = False) -> None:
        super().__init__()
        self.lines = lines
        self.reset = reset


class ReaderFailed(Message):
    """The reader raised; the feed keeps going and the error is shown, never a traceback."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ReaderFailed)


class WatchModeChanged(Message):
    """How the run directory is watched: ``inotify`` or ``polling (reason)``."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode


class AlertsRaised(Message):
    """Alerts seen for the first time (each key is announced once)."""

    def __init__(self, alerts: tuple[Alert, ...], initial: bool = False) -> None:
        super().__init__()
        self.alerts = alerts
        #: True for alerts already present in the first snapshot (shown, not rung).
        self.initial = initial


@dataclass(frozen=True)
class ActionOutcome:
    """What a control action answered, in words for a notification."""

    action: str
    ok: bool
    message: str


class ActionFinished(Message):
    """A control action (start, kill, stop-after-checkpoint, evaluate) finished."""

    def __init__(self, outcome: ActionOutcome) -> None:
        super().__init__()
        self.outcome = outcome


class HookFinished(Message):
    """The alert hook command ran (ok or not)."""

    def __init__(self, ok: bool, detail: str) -> None:
        super().__init__()
        self.ok = ok
        self.detail = detail
