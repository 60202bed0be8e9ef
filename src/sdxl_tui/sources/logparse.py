"""Turn the segments of sd-scripts' console log into facts: progress, config, phases, errors.

Why a streaming parser: the log is read incrementally (``LogTail``), often starting in the
middle of a big file, so every rule here works one segment at a time and keeps only bounded
state: the last N display lines, a downsampled ``avr_loss`` series with its exact last value,
the last traceback. The formats (``library/utils.py:setup_logging``'s RichHandler, tqdm, faults):

* RichHandler records: ``TIME|19 spaces`` + level (8) + message + right-aligned ``file.py:N``,
  wrapped into continuation lines indented by 29 spaces (§1.2). They are joined back into one
  message: a line that fills the message column was folded inside a word (joined directly),
  a shorter one broke at a space (joined with a space), an indented or empty continuation is a
  new line of a multi-line message (joined with a newline). An empty record
  (``logger.info("")``) gives no display line. A record may start after blanks on its physical
  line (the spaces that cleared a ``leave=False`` bar, or tqdm's padding after a bar, §1.3/§1.7).
* tqdm bars redraw with ``\\r`` and no newline (§1.7): every redraw of one bar collapses into
  one display line; the ``steps`` bar gives step, total, elapsed, rate and ``avr_loss``. A
  nested bar (position 1: ``\\n``, ``\\r…``, ``\\x1b[A``) ends each redraw with a newline; its
  redraws collapse too, and the spaces that clear it leave no line.
* plain prints: the "running training" block (§1.5), ``epoch N/M``, ``saving checkpoint:``.
* tracebacks, CUDA/host OOM, ``KeyboardInterrupt``, argparse errors, dataset errors (§1.4, §7).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Sequence
from types import MappingProxyType
from typing import Any

from sdxl_tui.formats.trainstate import TrainState
from sdxl_tui.model import LogLine, ScalarPoint
from sdxl_tui.sources.launchlog import LaunchLines, LoggedLaunch
from sdxl_tui.sources.logfacts import EXCEPTION_LINE, LogFacts, LogInterpreter, SaveEvent, StepPoints
from sdxl_tui.sources.tqdm import TqdmBar, display_cells, parse_interval, parse_tqdm

__all__ = ["STATE_CLASSES", "LogFacts", "LogParser", "SaveEvent", "TqdmBar", "parse_interval", "parse_tqdm"]

_INDENT = 29  # 19 (time) + 1 + 8 (level) + 1
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_RECORD = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d| {19}) (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) *"
    r" (?P<msg>.*?)(?: +(?P<src>[^\s:]+:\d+))? *$"
)
_TQDM_HINT = re.compile(r"\d%\|")
# a record that does not start the physical line: after a cleared bar's spaces or tqdm's padding
_LATE_RECORD = re.compile(r" +(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d |(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) )")
_SRC_ONLY = re.compile(r"[^\s:]+:\d+")
# (n, avr_loss) of each "steps" meter line, for a run of redraws in one pass
_AVR = re.compile(r"\| *(\d+)/\d+ \[[^\]\n]*?avr_loss=([^,\]\n]+)")


class LogParser(LogInterpreter):
    """Feed segments (``(text, terminator)`` from ``LogTail``); read ``facts`` any time.

    Args:
        max_lines: display lines kept (the log pane's scrollback).
        max_points: display budget of the ``avr_loss`` series (count and last stay exact).
    """

    def __init__(self, *, max_lines: int = 5000, max_points: int = 4000) -> None:
        self._lines: deque[LogLine] = deque(maxlen=max(1, max_lines))
        self._line_no = 0
        self._open: LogLine | None = None  # the progress line being redrawn
        self._open_desc: str | None = None
        self._open_n = 0  # its bar's count and total
        self._open_total: int | None = None
        self._open_ended = False  # its last redraw ended with a newline (closed or nested bar)
        # RichHandler record being joined
        self._rec_level: str | None = None
        self._rec_parts: list[str] = []
        self._rec_width = 0  # message column width in cells
        self._rec_prev_full = False
        self._rec_line: int | None = None
        self._resume: tuple[str, list[str], int, bool, int | None] | None = None
        self._resume_extra = 0
        # traceback
        self._in_tb = False
        self._tb: list[str] = []
        self._loss = StepPoints(max_points)
        self._loss_step: int | None = None
        self._loss_value: float | None = None
        self._cfg: dict[str, Any] = {}
        self._saw_te_lora = False
        self._saw_unet_lora = False
        self._caching_armed = False
        self._saves: deque[SaveEvent] = deque(maxlen=500)
        self._errors: deque[str] = deque(maxlen=50)
        self._warnings: dict[str, None] = {}
        self._segments = 0
        self._launches = LaunchLines()
        self._f: dict[str, Any] = {
            "phase": None, "epoch": None, "epochs": None, "step": None, "total_steps": None,
            "tqdm_elapsed": None, "tqdm_remaining": None, "tqdm_rate": None, "postfix": MappingProxyType({}),
            "model_saved": False, "sample_step": None, "caching": None, "traceback": None,
            "traceback_lines": (), "keyboard_interrupt": False, "oom": None, "host_oom": None,
            "first_nan_step": None, "nan_in_latents": False, "unrecognized_args": (), "no_data": False,
            "empty_image_dirs": (),
            "invalid_config": False, "last_record_time": None, "mid_file": False,
        }
        self._facts: LogFacts | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Picklable state (the log cache, ``sources/cache.py``): plain dicts for the read-only
        views, no derived facts."""
        state = dict(self.__dict__)
        state["_facts"] = None
        state["_f"] = {**self._f, "postfix": dict(self._f["postfix"])}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._f["postfix"] = MappingProxyType(self._f["postfix"])

    # -- public -------------------------------------------------------------------------------

    def feed(self, segments: Iterable[tuple[str, str]]) -> None:
        """Consume segments in file order (they may start in the middle of a file)."""
        self._facts = None
        segs = segments if isinstance(segments, (list, tuple)) else list(segments)
        i = 0
        n = len(segs)
        # A big first read: sample the avr_loss history of all but the last 2000 redraws.
        stride, sample_until = 1, 0
        redraws = sum(1 for _, t in segs if t == "\r")
        if redraws > 6000:
            stride = -(-(redraws - 2000) // 4000)
            left = 2000
            for k in range(n - 1, -1, -1):
                if segs[k][1] == "\r":
                    left -= 1
                    if left == 0:
                        sample_until = k
                        break
        while i < n:
            text, term = segs[i]
            if term in ("\r", "partial") and i + 1 < n and segs[i + 1][1] in ("\r", "partial"):
                j = i + 1
                while j < n and segs[j][1] in ("\r", "partial"):
                    j += 1
                if self._bar_run(segs, i, j, stride if j <= sample_until else 1):
                    self._segments += j - i
                    i = j
                    continue
            i += 1
            self._segments += 1
            if term == "skip":
                self._end_record()
                self._end_traceback()
                self._close_open()
                self._f["mid_file"] = True
                self._emit(text, "skip")
                continue
            if term == "\r" or term == "partial":
                # "partial": the meter being drawn right now; it comes again with its "\r"
                if text and (term == "\r" or _TQDM_HINT.search(text)):
                    self._bar_or_text(text, redraw=True)
                continue
            self._line(text, term)
        # rich writes a whole record at once, so it is complete by now; should the next feed
        # start with more of its continuation lines after all, it is resumed
        self._end_record(resumable=True)

    def _bar_run(self, segs: Sequence[tuple[str, str]], i: int, j: int, stride: int = 1) -> bool:
        """Consume segs[i:j], consecutive redraws of one bar, in a few C-level passes.

        A 4 MB tail window is mostly tqdm redraws (two or more per step); only the last
        redraw matters for the display and the meter, and ``avr_loss`` needs the last value
        per step, which one ``findall`` over the joined texts yields. On a very long run of
        redraws (a big file's first read) the older history is sampled (every k-th redraw,
        at most ~4000) and the last 2000 redraws are read in full: the chart's history stays
        representative, the newest values stay exact (``stride`` comes from ``feed``, which
        knows how many redraws the whole read holds). False: not one bar.
        """
        texts = [t for t, _ in segs[i:j] if t]
        if len(texts) < 2:
            return False
        joined = "\n".join(texts)
        if joined.count("%|") != len(texts):
            return False
        if joined.count("steps:") == len(texts):
            if stride > 1:
                joined = "\n".join(texts[::stride] + texts[-1:])
            elif len(texts) > 6000:
                step = -(-(len(texts) - 2000) // 4000)
                joined = "\n".join(texts[: -2000 : step] + texts[-2000:])
            per_step = dict(_AVR.findall(joined))
            if per_step:
                self._avr_many({int(k): v for k, v in per_step.items()})
        self._bar_or_text(texts[-1], redraw=True)
        return True

    @property
    def facts(self) -> LogFacts:
        if self._facts is None:
            self._facts = self._build()
        return self._facts

    # -- lines --------------------------------------------------------------------------------

    def _emit(self, text: str, kind: str, level: str | None = None) -> LogLine:
        line = LogLine(self._line_no, text, kind, level)
        self._line_no += 1
        self._lines.append(line)
        return line

    def _close_open(self) -> None:
        if self._open is not None:
            self._lines.append(self._open)
            self._open = None
            self._open_desc = None
            self._open_ended = False

    def _bar_or_text(self, text: str, *, redraw: bool) -> None:
        bar = parse_tqdm(text) if _TQDM_HINT.search(text) else None
        if bar is None:
            if redraw and text.strip():  # a \r-terminated non-bar (not a cleared bar): show it
                self._line(text, "\r")
            return
        self._end_record()
        self._on_bar(bar)
        shown = text[: bar.end].strip()
        if (
            self._open is not None
            and self._open_desc == bar.desc
            # after a newline-ended redraw, only more of the same bar (a nested bar's next
            # redraw: same total, count not going back) updates the line; a new bar starts at 0
            and (not self._open_ended or (bar.total == self._open_total and bar.n >= self._open_n))
        ):
            self._open = LogLine(self._open.number, shown, "progress")
        else:
            self._close_open()
            self._open = LogLine(self._line_no, shown, "progress")
            self._open_desc = bar.desc
            self._line_no += 1
        self._open_n = bar.n
        self._open_total = bar.total
        rest = text[bar.end :]
        if rest.strip():  # a log record written right after the bar, on its line (§1.3)
            self._close_open()
            self._line(rest if self._find_record(rest) is not None else rest.lstrip(" "), "\n")
        else:
            # A newline after a redraw: the bar closed (leave=True), or a nested bar moved down
            # for its next redraw (\n, \r..., cursor-up). The line stays open until something
            # else is shown; only a redraw of the same bar may still update it.
            self._open_ended = not redraw

    def _line(self, text: str, term: str) -> None:
        """A ``\\n``-terminated segment (or text that must be shown as a line)."""
        if "%|" in text and _TQDM_HINT.search(text):
            bar = parse_tqdm(text)
            if bar is not None:
                self._bar_or_text(text, redraw=False)
                return
        found = self._find_record(text)
        # continuation of a RichHandler record?
        resume, self._resume = self._resume, None
        if (
            resume is not None
            and self._rec_level is None
            and found is None
            and text.startswith(" " * _INDENT)
            and self._line_no - 1 - self._resume_extra == resume[4]
            and len(self._lines) > self._resume_extra
        ):
            for _ in range(self._resume_extra):  # the multi-line tail is rebuilt at its end
                self._lines.pop()
                self._line_no -= 1
            self._rec_level, self._rec_parts, self._rec_width, self._rec_prev_full, self._rec_line = resume
        if self._rec_level is not None and found is None and text.startswith(" " * _INDENT):
            self._continue_record(text)
            return
        if self._rec_level is not None and self._in_tb is False and not text.strip():
            # an empty physical line ends a record
            self._end_record()
            return
        self._end_record()
        if found is not None:
            self._close_open()
            m, at = found
            self._start_record(m, text[at:] if at else text)
            return
        stripped = text.rstrip()
        if not stripped:
            return  # blank lines carry nothing for the pane
        self._close_open()
        self._plain(stripped)

    # -- RichHandler records -------------------------------------------------------------------

    @staticmethod
    def _find_record(text: str) -> tuple[re.Match[str], int] | None:
        """The RichHandler record in ``text`` and where it starts, or None.

        Usually at column 0. It starts later when it shares its physical line with blanks: the
        spaces that cleared a ``leave=False`` bar (``\\r`` + spaces + ``\\x1b[A``) or
        tqdm's padding after the last redraw of a bar (§1.3). Such a late record must show its
        source column (every RichHandler record does), so that indented text is not taken for one.
        """
        if len(text) > _INDENT and text[20:21] != " ":
            m = _RECORD.match(text)
            if m is not None:
                return m, 0
        if text[:1] != " " or len(text) <= _INDENT:
            return None
        late = _LATE_RECORD.match(text)
        if late is None:
            return None
        k = len(text) - len(text.lstrip(" "))
        at = k if text[k].isdigit() else k - 20  # a timestamp, or a level after the blank time
        if at <= 0:
            return None
        m = _RECORD.match(text[at:])
        if m is None or not (m.group("src") or _SRC_ONLY.fullmatch(m.group("msg").strip())):
            return None
        return m, at

    def _start_record(self, m: re.Match[str], text: str) -> None:
        self._end_traceback()
        t = m.group("time")
        if t.strip():
            self._f["last_record_time"] = t
        msg = m.group("msg").rstrip()
        src = m.group("src") or ""
        if not src and _SRC_ONLY.fullmatch(msg):
            # an empty record (logger.info("")): the regex took its source column for the message
            msg, src = "", msg
        if not msg:
            # nothing to show (sd-scripts logs one before "generating sample images", §1.9)
            self._on_record(m.group("level"), "")
            return
        self._rec_level = m.group("level")
        width = display_cells(text.rstrip("\n"))
        self._rec_width = max(1, width - _INDENT - (len(src) + 1 if src else 0))
        self._rec_parts = [msg]
        self._rec_prev_full = self._folded(msg)
        self._rec_line = self._line_no
        self._emit(msg, "record", self._rec_level)

    def _folded(self, chunk: str) -> bool:
        """Did rich fold a word at the end of ``chunk`` (so the next line continues it)?

        rich moves a word that does not fit to the next line and folds only words longer
        than the column, so a folded chunk fills the column and holds one word (leading
        indentation of a multi-line message counts as part of it). A CJK character that
        does not fit in the last cell leaves the column one cell short.
        """
        core = chunk.strip(" ")
        if not core or " " in core:
            return False
        cells = display_cells(chunk)
        return cells >= self._rec_width or (not chunk.isascii() and cells >= self._rec_width - 1)

    def _continue_record(self, text: str) -> None:
        body = text[_INDENT:].rstrip()
        if not body:
            self._rec_parts.append("\n")
            self._rec_prev_full = False
        elif self._rec_prev_full:
            self._rec_parts.append(body)  # the rest of a folded word
        elif body.startswith(" "):
            self._rec_parts.append("\n" + body)  # next line of a multi-line message
        else:
            self._rec_parts.append(" " + body)  # wrapped at a space
        if body:
            self._rec_prev_full = self._folded(body)
        # update the record's display line in place (it is the newest line)
        msg = "".join(self._rec_parts).strip("\n")
        if self._lines and self._lines[-1].number == self._rec_line:
            # multi-line messages get their other lines when the record ends
            self._lines[-1] = LogLine(self._rec_line, msg.split("\n", 1)[0], "record", self._rec_level)

    def _end_record(self, *, resumable: bool = False) -> None:
        if self._rec_level is None:
            return
        self._resume = (
            (self._rec_level, list(self._rec_parts), self._rec_width, self._rec_prev_full, self._rec_line)
            if resumable
            else None
        )
        level = self._rec_level
        msg = "".join(self._rec_parts).strip("\n")
        self._rec_level = None
        self._rec_parts = []
        extra_lines = 0
        if "\n" in msg and self._lines and self._lines[-1].number == self._rec_line:
            first, *more = msg.split("\n")
            self._lines[-1] = LogLine(self._lines[-1].number, first, "record", level)
            for extra in more:
                if extra.strip():
                    self._emit(extra, "record", level)
                    extra_lines += 1
        if self._resume is not None:
            self._resume_extra = extra_lines
        self._on_record(level, msg)

    # -- tracebacks ----------------------------------------------------------------------------

    def _end_traceback(self) -> None:
        if self._in_tb:
            self._in_tb = False
            self._f["traceback_lines"] = tuple(self._tb[-60:])

    def _plain(self, line: str) -> None:
        """A line that is neither a record nor a bar: prints, tracebacks, stderr noise."""
        kind = "text"
        if line.startswith("Traceback (most recent call last):"):
            if not self._in_tb:
                self._tb = []
            self._in_tb = True
            kind = "traceback"
            self._tb.append(line)
        elif self._in_tb:
            kind = "traceback"
            self._tb.append(line)
            if len(self._tb) > 400:
                del self._tb[1:200]
            if not line[:1].isspace() and EXCEPTION_LINE.match(line) and not line.startswith(
                ("During handling", "The above exception")
            ):
                self._f["traceback"] = line
                self._f["traceback_lines"] = tuple(self._tb[-60:])
                if line.split(":", 1)[0].endswith("KeyboardInterrupt"):
                    self._f["keyboard_interrupt"] = True
                self._in_tb = False
        elif EXCEPTION_LINE.match(line) and ("Error:" in line or "Exception:" in line) and "Warning" not in line:
            # an exception line seen without its traceback header (tail window)
            kind = "traceback"
            if line.split(":", 1)[0].rsplit(".", 1)[-1].endswith(("Error", "Exception")):
                self._f["traceback"] = line
        elif line.strip() == "KeyboardInterrupt":
            self._f["keyboard_interrupt"] = True
            self._f["traceback"] = line.strip()
            kind = "traceback"
        self._emit(line, kind)
        self._scan_faults(line)
        if kind == "text":
            self._on_print(line)


#: The classes a pickled parser's state holds: the log cache's unpickler builds these (and the
#: tail) and nothing else (``sources/cache.py``). A new kind of value kept by the parser is
#: named here, beside the state it joins.
STATE_CLASSES = frozenset((c.__module__, c.__qualname__) for c in (
    LogParser, StepPoints, SaveEvent, LogLine, ScalarPoint, deque, LaunchLines, LoggedLaunch, TrainState,
))
