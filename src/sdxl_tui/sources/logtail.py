"""Byte-offset tail of the trainer's console log (``training.log``).

Why a hand-made tail: sd-scripts' log is a mix of RichHandler records, plain prints and tqdm bars
that redraw with ``\\r`` and never end their line (tqdm in
``train_network.py:NetworkTrainer.train``). A refresh must cost only what is new, so the tail keeps
``(st_dev, st_ino, offset)`` and a buffered partial segment, and splits on both ``\\r`` and ``\\n``.
It survives what happens to log files in practice:

* truncated in place (``>`` reused for a new run): size < offset, restart at 0, ``truncated``;
* rotated or replaced (new inode): drain the rest of the old file, reopen the new one from 0,
  ``rotated`` (the old file's last segments come back in ``drained_segments``);
* missing (not created yet, deleted): ``missing``, and it is picked up when it appears;
* permission denied, a directory in its place: a problem string, never a traceback;
* non-UTF-8 bytes (decoded with ``errors="replace"``), ANSI/CSI escapes (stripped);
* one enormous line without a newline: cut at ``max_line_bytes`` and marked, never held whole.

On the first read of a big file (a 300 MB night run) only a head window (startup lines and the
"running training" block) and a tail window (the current state) are read; the middle is
skipped and reported as ``skipped_bytes``, and a marker segment ``(text, "skip")`` sits where it
was. The tail never writes anything (the file is opened read-only).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from sdxl_tui.humanize import format_binary_bytes

__all__ = ["LogTail", "Segment", "TailRead", "strip_escapes"]

Segment = tuple[str, str]
"""(text, terminator): terminator is ``"\\n"``, ``"\\r"``, ``""`` (a line cut at the length cap,
its rest dropped), ``"skip"`` (marker: bytes were skipped here; text says how many) or
``"partial"`` (only ever last: the unterminated segment being written, sent when it is a whole
tqdm meter, because tqdm ends a redraw with no terminator and the next ``\\r`` may be minutes
away; the same text comes again, terminated, once the next redraw starts)."""

# CSI (ESC [ params intermediates final), OSC (ESC ] ... BEL/ST), and two-byte ESC sequences.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")
_SPLIT = re.compile(r"([\r\n])")
_TERMS = re.compile(rb"[\r\n]")
_METER_END = re.compile(rb"%\|[^\r\n]*\][ ]*$")
_READ_CHUNK = 4 << 20


def strip_escapes(text: str) -> str:
    """Remove ANSI/VT escape sequences (colours, cursor moves such as ``\\x1b[A``)."""
    if "\x1b" not in text and "\x9b" not in text:
        return text
    return _ESCAPES.sub("", text)


@dataclass(frozen=True, slots=True)
class TailRead:
    """The result of one :meth:`LogTail.read`."""

    segments: tuple[Segment, ...] = ()
    head_segments: tuple[Segment, ...] = ()  # first read of a big file only: its start
    drained_segments: tuple[Segment, ...] = ()  # the end of the previous file when rotated
    skipped_bytes: int = 0  # middle of a big file not read
    dropped_bytes: int = 0  # rest of over-long lines not kept
    truncated: bool = False
    rotated: bool = False
    missing: bool = False
    problems: tuple[str, ...] = ()
    offset: int = 0  # bytes of the current file consumed so far
    size: int = 0  # file size seen by this read
    pending_bytes: int = 0  # partial last segment waiting for its terminator

    @property
    def changed(self) -> bool:
        return bool(self.segments or self.head_segments or self.drained_segments or self.truncated or self.rotated)


class LogTail:
    """Incremental reader of one log file; call :meth:`read` whenever you like.

    Args:
        path: the log file (it may not exist yet; it may be a symlink).
        initial_tail_bytes: on the first read of a big file, how much of its end to read.
        head_bytes: on the first read of a big file, how much of its start to read.
        max_line_bytes: a segment longer than this is cut (the rest of it is dropped).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        initial_tail_bytes: int = 4 << 20,
        head_bytes: int = 1 << 20,
        max_line_bytes: int = 1 << 20,
    ) -> None:
        self.path = os.fspath(path)
        self.initial_tail_bytes = max(1024, initial_tail_bytes)
        self.head_bytes = max(0, head_bytes)
        self.max_line_bytes = max(256, max_line_bytes)
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None
        self.offset = 0
        self._partial = b""
        self._dropping = False  # inside an over-long line: drop bytes until its terminator
        self._fresh = True  # the next read of the current file is its first
        self._last_problem: str | None = None

    def __getstate__(self) -> dict[str, object]:
        """Picklable state (the log cache): where the read stopped, without the open file."""
        state = dict(self.__dict__)
        state["_fd"] = None
        return state

    def matches(self, st: os.stat_result) -> bool:
        """Whether this tail's state (say, from the cache) still fits the file now described by
        ``st``: the same file, not shorter than what was read."""
        return not self._fresh and self._ident == (st.st_dev, st.st_ino) and st.st_size >= self.offset

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the open file descriptor (reading again reopens it)."""
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        self.close()

    def __enter__(self) -> LogTail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------------

    def read(self) -> TailRead:
        """Return the segments completed since the previous call. Never raises for file trouble."""
        name = os.path.basename(self.path) or self.path
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._gone()
        except OSError as exc:
            return self._problem(f"cannot read {name}: {_why(exc)}")
        if stat.S_ISDIR(st.st_mode):
            return self._problem(f"cannot read {name}: it is a directory")
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
            return self._problem(f"cannot read {name}: not a regular file")
        drained: list[Segment] = []
        dropped = 0
        rotated = False
        if self._ident is not None and (st.st_dev, st.st_ino) != self._ident:
            # rotated or replaced: the rest of the old file first, then the new one from 0
            if self._fd is not None:
                drained, dropped = self._drain_and_close()
            self._forget()
            rotated = True
        if self._fd is None:
            opened = self._open(name, drained, rotated)
            if isinstance(opened, TailRead):
                return opened
            rotated = opened
        self._last_problem = None
        return self._read_new(name, drained, dropped, rotated)

    def _gone(self) -> TailRead:
        """The file is not there: finish the old one if it was open (deleted or renamed away)."""
        drained: list[Segment] = []
        dropped = 0
        rotated = False
        if self._fd is not None:
            drained, dropped = self._drain_and_close()
            self._forget()
            rotated = True
        return TailRead(drained_segments=tuple(drained), rotated=rotated, missing=True,
                        dropped_bytes=dropped, offset=self.offset)

    def _open(self, name: str, drained: list[Segment], rotated: bool) -> TailRead | bool:
        """Open the file; whether it turned out to be another file (rotated), or why it failed."""
        try:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return TailRead(drained_segments=tuple(drained), rotated=rotated, missing=True)
        except OSError as exc:
            r = self._problem(f"cannot read {name}: {_why(exc)}")
            return TailRead(drained_segments=tuple(drained), rotated=rotated, problems=r.problems)
        try:
            fst = os.fstat(self._fd)
        except OSError as exc:  # pragma: no cover - fstat on an open fd hardly fails
            self.close()
            return self._problem(f"cannot read {name}: {_why(exc)}")
        if self._ident is not None and (fst.st_dev, fst.st_ino) != self._ident:
            # replaced between stat and open: start the new file from 0, keeping it open
            rotated = True
            fd, self._fd = self._fd, None
            self._forget()
            self._fd = fd
        self._ident = (fst.st_dev, fst.st_ino)
        return rotated

    def _read_new(self, name: str, drained: list[Segment], dropped: int, rotated: bool) -> TailRead:
        """Read what the open file gained (from 0 after a truncation), into segments."""
        assert self._fd is not None
        problems: list[str] = []
        truncated = False
        try:
            size = os.fstat(self._fd).st_size
        except OSError as exc:  # pragma: no cover
            return self._problem(f"cannot read {name}: {_why(exc)}")
        if size < self.offset:
            truncated = True
            self.offset = 0
            self._partial = b""
            self._dropping = False
            self._fresh = True
        head: list[Segment] = []
        segs: list[Segment] = []
        skipped = 0
        try:
            if self._fresh:
                self._fresh = False
                if size > self.head_bytes + self.initial_tail_bytes and self.offset == 0:
                    skipped, dropped = self._first_read_big(size, head, segs, dropped)
            elif size - self.offset > 4 * self.initial_tail_bytes:
                # a burst far bigger than a refresh ever needs: keep only its end
                skipped, dropped = self._jump_to_tail(size, segs, dropped)
            dropped += self._read_to(size, segs)
        except OSError as exc:
            problems.append(f"cannot read {name}: {_why(exc)}")
        if self._partial and not self._dropping and _METER_END.search(self._partial):
            segs.append((strip_escapes(_decode(self._partial)), "partial"))
        return TailRead(
            segments=tuple(segs),
            head_segments=tuple(head),
            drained_segments=tuple(drained),
            skipped_bytes=skipped,
            dropped_bytes=dropped,
            truncated=truncated,
            rotated=rotated,
            problems=tuple(problems),
            offset=self.offset,
            size=size,
            pending_bytes=len(self._partial),
        )

    # -- internals ----------------------------------------------------------------------------

    def _problem(self, msg: str) -> TailRead:
        self._last_problem = msg
        return TailRead(problems=(msg,), offset=self.offset)

    def _forget(self) -> None:
        self.close()
        self._ident = None
        self.offset = 0
        self._partial = b""
        self._dropping = False
        self._fresh = True

    def _drain_and_close(self) -> tuple[list[Segment], int]:
        segs: list[Segment] = []
        dropped = 0
        try:
            assert self._fd is not None
            size = os.fstat(self._fd).st_size
            if size >= self.offset:
                if size - self.offset > 4 * self.initial_tail_bytes:
                    _, dropped = self._jump_to_tail(size, segs, dropped)
                dropped += self._read_to(size, segs)
        except OSError:
            pass
        if self._partial and not self._dropping:  # the old file will not grow any more
            segs.append((_decode(self._partial), ""))
        self._partial = b""
        self.close()
        return segs, dropped

    def _first_read_big(self, size: int, head: list[Segment], segs: list[Segment], dropped: int) -> tuple[int, int]:
        assert self._fd is not None
        data = os.pread(self._fd, self.head_bytes, 0)
        cut = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if cut >= 0:
            head.extend(self._split(data[: cut + 1]))
        elif data:  # one giant first line: keep its start, cut
            head.append((_decode(data[: self.max_line_bytes]), ""))
        return self._jump_to_tail(size, segs, dropped, head_end=cut + 1 if cut >= 0 else len(data))

    def _jump_to_tail(
        self, size: int, segs: list[Segment], dropped: int, head_end: int | None = None
    ) -> tuple[int, int]:
        """Skip to the first segment boundary inside the last ``initial_tail_bytes``."""
        assert self._fd is not None
        start = max(self.offset, size - self.initial_tail_bytes)
        probe = os.pread(self._fd, min(self.max_line_bytes, size - start), start)
        m = _TERMS.search(probe)
        if m is not None:
            new_offset = start + m.end()
            self._dropping = False
        else:  # no boundary near the end: an endless line; drop until one comes
            new_offset = start + len(probe)
            self._dropping = True
        begin = head_end if head_end is not None else self.offset
        skipped = max(0, new_offset - begin)
        self._partial = b""
        self.offset = new_offset
        segs.append((f"[… {format_binary_bytes(skipped)} of log not shown …]", "skip"))
        if self._dropping:
            dropped += len(probe)
        return skipped, dropped

    def _read_to(self, size: int, segs: list[Segment]) -> int:
        """Read [offset, size) in chunks, appending complete segments. Returns dropped bytes."""
        assert self._fd is not None
        dropped = 0
        cap = self.max_line_bytes
        while self.offset < size:
            chunk = os.pread(self._fd, min(_READ_CHUNK, size - self.offset), self.offset)
            if not chunk:
                break
            self.offset += len(chunk)
            if self._dropping:
                m = _TERMS.search(chunk)
                if m is None:
                    dropped += len(chunk)
                    continue
                dropped += m.start()
                self._dropping = False
                chunk = chunk[m.end() :]
            cut = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
            if cut < 0:
                self._partial += chunk
            else:
                data = self._partial + chunk[: cut + 1] if self._partial else chunk[: cut + 1]
                self._partial = chunk[cut + 1 :]
                segs.extend(self._split(data))
            if len(self._partial) > cap:
                segs.append((_decode(self._partial[:cap]), ""))
                dropped += len(self._partial) - cap
                self._partial = b""
                self._dropping = True
        return dropped

    def _split(self, data: bytes) -> list[Segment]:
        """Split bytes that end with a terminator into (text, terminator) segments."""
        text = strip_escapes(_decode(data))
        parts = _SPLIT.split(text)
        # parts: [t0, term0, t1, term1, ..., tn, ""] (data ends with a terminator)
        cap = self.max_line_bytes
        texts = parts[0:-1:2]
        out = list(zip(texts, parts[1::2], strict=False))
        if texts and max(map(len, texts)) > cap:
            # a line over the cap inside one read: keep its start, marked as cut
            out = [(t, term) if len(t) <= cap else (t[:cap], "") for t, term in out]
        return out


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _why(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    return (exc.strerror or str(exc)).lower()
