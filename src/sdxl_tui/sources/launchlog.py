"""The launches a log holds: one per ``running training`` block, with what it resumed from.

Why: a log appended to with ``>>`` holds every launch of the trainer in one output folder.
A resumed launch says so before its ``running training`` block (``resume training from local
state: DIR``, then ``load train state from DIR/train_state.json: {...}`` with the state's
epoch and step, ``formats/trainstate.py``); with ``--skip_until_initial_step`` it logs
``skipping N steps`` after it. The state is taken from the log (what the trainer loaded then),
not from the folder now: a later save may have overwritten its ``train_state.json``.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, replace

from sdxl_tui.formats.trainstate import (
    LOAD_TRAIN_STATE,
    RESUME_LINE,
    SAVE_TRAIN_STATE,
    SKIP_LINE,
    TrainState,
    parse_logged_state,
)

__all__ = ["LaunchLines", "LoggedLaunch"]


@dataclass(frozen=True, slots=True)
class LoggedLaunch:
    """One launch as the log tells it."""

    resumed_from: str | None = None  # the --resume folder
    state: TrainState | None = None  # what its train_state.json said when loaded
    skip: bool = False  # --skip_until_initial_step: the step counts are the trainer's own
    at: str | None = None  # "YYYYmmddHHMMSS" of the last timestamped record before its block
    saved: tuple[str, ...] = ()  # names of the -state folders it saved (the newest 50)


class LaunchLines:
    """Collects :class:`LoggedLaunch` records from the log's messages (bounded)."""

    def __init__(self) -> None:
        self._done: deque[LoggedLaunch] = deque(maxlen=100)
        self._dir: str | None = None
        self._state: TrainState | None = None
        self._at: str | None = None

    def record(self, flat: str, record_time: str | None = None) -> str:
        """A log record (and the newest record time): ``"resume"`` (a new launch resumes: what
        the log said about the previous one's bar is over), ``"state"``, ``"skip"``, or ``""``."""
        m = RESUME_LINE.match(flat)
        if m:
            self._dir, self._state, self._at = m.group(1), None, _digits(record_time)
            return "resume"
        m = LOAD_TRAIN_STATE.match(flat)
        if m:
            self._state = parse_logged_state(m.group(2))
            if self._dir is None:
                self._dir, self._at = m.group(1).rsplit("/", 1)[0], _digits(record_time)
            return "state"
        if SKIP_LINE.match(flat) and self._done:
            last = self._done.pop()
            self._done.append(replace(last, skip=True))
            return "skip"
        m = SAVE_TRAIN_STATE.search(flat)
        if m and self._done:  # not a resume line: the caller reads it too (a save)
            last = self._done.pop()
            name = os.path.basename(os.path.dirname(m.group(1)))
            self._done.append(replace(last, saved=(*[n for n in last.saved if n != name], name)[-50:]))
        return ""

    def running(self, record_time: str | None) -> None:
        """The ``running training`` block: the launch so far is complete. ``record_time``: the
        newest ``YYYY-MM-DD HH:MM:SS`` record time (RichHandler), to match its event folder."""
        self._done.append(LoggedLaunch(self._dir, self._state, at=_digits(record_time)))
        self._dir, self._state = None, None

    @property
    def launches(self) -> tuple[LoggedLaunch, ...]:
        """The launches so far; a resume whose ``running training`` block is not in the log yet
        (stdout is block-buffered, the resume lines go to stderr) counts as the newest."""
        if self._dir is None:
            return tuple(self._done)
        return (*self._done, LoggedLaunch(self._dir, self._state, at=self._at))


def _digits(record_time: str | None) -> str | None:
    """``YYYY-MM-DD HH:MM:SS`` as ``YYYYmmddHHMMSS`` (an event folder's timestamp)."""
    at = "".join(ch for ch in record_time if ch.isdigit()) if record_time else ""
    return at if len(at) == 14 else None
