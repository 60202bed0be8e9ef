"""When things happened, according to the trainer's console log.

Why a separate pass over the log: the dashboard's parser (``sources/logparse.py``) keeps the
latest facts of a run, not the history of its phases. A report needs the history once, so
this module reads the whole log one time and keeps a handful of time-stamped marks: the first
record (loading), latent caching, each ``running training`` block (a session; a resumed run
appended to the same log starts a second one), sample generation, ``model saved.``, ERROR
records, tracebacks and Ctrl-C.

Times come from RichHandler's record column (``train_util.py:setup_logging``: local time to
the second, left blank while it repeats, so a blank time means "the same second as the last
printed one"). Lines printed without a record (``running training``, ``saving checkpoint:``,
tracebacks) get the time of the last record before them, marked ``approx``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["LogMark", "LogMarks", "scan_log"]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_RECORD = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d| {19}) (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) +(?P<msg>.*)$"
)
_SRC = re.compile(r"\s+[^\s:]+\.py:\d+\s*$")
_CONTINUATION = " " * 29  # rich's message column
_SAMPLE = re.compile(r"generating sample images at step.*?(\d+)\s*$")
_CACHING = ("caching latents", "caching Text Encoder outputs", "caching text encoder outputs")
_OOM = ("CUDA out of memory", "OutOfMemoryError")
_LEVELS = ("DEBUG ", "INFO ", "WARNING ", "ERROR ", "CRITICAL ")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Interrupt)\b")


@dataclass(frozen=True, slots=True)
class LogMark:
    """One moment the log shows."""

    at: float | None  # unix time; None before the first timestamped record
    kind: str  # loading|caching|training|sampling|finished|error|traceback|oom|interrupt
    text: str
    step: int | None = None
    approx: bool = False  # a printed line: the time is that of the last record before it


@dataclass(frozen=True, slots=True)
class LogMarks:
    """The marks in log order, and the span of timestamped records."""

    marks: tuple[LogMark, ...] = ()
    first_at: float | None = None
    last_at: float | None = None
    log_mtime: float | None = None
    missing: bool = True


def _parse_time(text: str, cache: dict[str, float]) -> float | None:
    at = cache.get(text)
    if at is None:
        try:
            at = time.mktime(time.strptime(text, "%Y-%m-%d %H:%M:%S"))
        except ValueError:
            return None
        cache[text] = at
    return at


def _segments(path: str) -> Iterator[str]:
    """Every ``\\r``/``\\n``-separated piece of the log, escapes stripped."""
    with open(path, "rb") as fh:
        for raw in fh:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            for seg in line.split("\r"):
                if "\x1b" in seg:
                    seg = _ANSI.sub("", seg)
                if seg.strip():
                    yield seg


def _is_bar(seg: str) -> bool:
    return "%|" in seg[:80]


def _match_record(seg: str) -> re.Match[str] | None:
    """The record in ``seg``: at column 0, or after the spaces that cleared a tqdm bar."""
    m = _RECORD.match(seg)
    if m is not None or not seg.startswith(" "):
        return m
    stripped = seg.lstrip(" ")
    if stripped[:1].isdigit():
        return _RECORD.match(stripped)
    if len(seg) - len(stripped) >= 20 and stripped.startswith(_LEVELS):
        return _RECORD.match(" " * 20 + stripped)
    return None


class _Scanner:
    """Collects marks; a record's folded continuation lines are joined before matching."""

    def __init__(self) -> None:
        self.marks: list[LogMark] = []
        self.now: float | None = None
        self.first: float | None = None
        self._times: dict[str, float] = {}
        self._rec: list[str] | None = None
        self._level = ""
        self._in_traceback = False

    def segment(self, seg: str) -> None:
        if _is_bar(seg):
            return
        m = _match_record(seg)
        if m is not None:
            self.flush()
            stamp = m.group("time")
            if stamp.strip():
                at = _parse_time(stamp, self._times)
                if at is not None:
                    self.now = at
                    if self.first is None:
                        self.first = at
                        self.marks.append(LogMark(at, "loading", "first log record"))
            self._level = m.group("level")
            self._rec = [_SRC.sub("", m.group("msg")).strip()]
            self._in_traceback = False
            return
        if self._rec is not None and seg.startswith(_CONTINUATION):
            self._rec.append(_SRC.sub("", seg).strip())
            return
        self.flush()
        self._printed(seg.strip())

    def flush(self) -> None:
        if self._rec is None:
            return
        msg = " ".join(p for p in self._rec if p)
        self._rec = None
        if msg.startswith(_CACHING):
            self.marks.append(LogMark(self.now, "caching", msg))
        elif msg == "model saved.":
            self.marks.append(LogMark(self.now, "finished", "model saved."))
        elif self._level in ("ERROR", "CRITICAL"):
            self.marks.append(LogMark(self.now, "error", msg))
        else:
            s = _SAMPLE.search(msg)
            if s is not None:
                self.marks.append(LogMark(self.now, "sampling", "generating sample images", step=int(s.group(1))))

    def _printed(self, line: str) -> None:
        if line.startswith("running training"):
            self.marks.append(LogMark(self.now, "training", "running training", approx=True))
        elif line.startswith("Traceback (most recent call last)"):
            self._in_traceback = True
        elif any(k in line for k in _OOM) and not line.startswith(" "):
            self.marks.append(LogMark(self.now, "oom", line[:300], approx=True))
            self._in_traceback = False
        elif line.startswith("KeyboardInterrupt"):
            self.marks.append(LogMark(self.now, "interrupt", "KeyboardInterrupt (Ctrl-C / SIGINT)", approx=True))
            self._in_traceback = False
        elif self._in_traceback and _EXCEPTION.match(line):
            self.marks.append(LogMark(self.now, "traceback", line[:300], approx=True))
            self._in_traceback = False


def scan_log(path: str | os.PathLike[str] | None) -> LogMarks:
    """Read the whole log once; a missing or unreadable log gives empty marks."""
    if path is None:
        return LogMarks()
    p = os.fspath(path)
    scanner = _Scanner()
    try:
        mtime = os.stat(p).st_mtime
        for seg in _segments(p):
            scanner.segment(seg)
    except OSError:
        return LogMarks()
    scanner.flush()
    return LogMarks(marks=tuple(scanner.marks), first_at=scanner.first, last_at=scanner.now,
                    log_mtime=mtime, missing=False)
