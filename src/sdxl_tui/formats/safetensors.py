"""safetensors headers: the one reader, and the one definition of a complete checkpoint.

Why one reader: the dashboard, ``sdxl-tui status``, the stop-after-checkpoint watcher, the
evaluation queue, the evaluator and the base-model check all ask "is this file a complete
safetensors file, and what does its header say?", and a file labelled complete by one and
incomplete by another is a bug a user sees. The format (``safetensors`` crate,
``safetensors/src/tensor.rs:read_metadata``): an 8-byte little-endian header length ``N``,
``N`` bytes of JSON (tensor name -> dtype, shape, ``data_offsets``; ``__metadata__`` ->
string map), then the tensor data. The header promises the exact file size
(``8 + N + largest data_offsets end``), and sd-scripts writes the file in place
(``library/train_util.py:save_sd_model_on_epoch_end_or_stepwise``), so a file shorter than
promised is still being written (or was killed mid-write), one longer is corrupt.

Only the header is read, never the tensor data. ``.ckpt``/``.pt`` files (torch.save's zip
archive since torch 1.6) are complete once their end-of-central-directory record is in place.
"""

from __future__ import annotations

import itertools
import json
import operator
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sdxl_tui.model import CheckpointStatus

__all__ = [
    "MAX_HEADER_BYTES",
    "SafetensorsHeader",
    "checkpoint_status",
    "is_complete",
    "peek_metadata",
    "read_header",
    "read_metadata",
    "weights_verdict",
]

MAX_HEADER_BYTES = 100_000_000
"""safetensors itself refuses headers above 100 MB; anything larger is not a safetensors file."""
_ZIP_LOCAL = b"PK\x03\x04"
_ZIP_EOCD = b"PK\x05\x06"
_ZIP_TAIL = 65_536 + 22
_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SafetensorsHeader:
    """What the first ``8 + N`` bytes of a safetensors file say.

    ``state`` is ``"ok"`` (header valid and the file has exactly the promised size),
    ``"short"`` (fewer bytes than promised: being written, or truncated) or ``"bad"`` (can never
    become valid: absurd length, invalid UTF-8/JSON, bad offsets, extra bytes).
    """

    state: str
    file_size: int
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    header_length: int | None = None
    expected_size: int | None = None  # total size the header promises (None: header unread)
    problem: str | None = None
    tensor_count: int = 0
    tensor_names: tuple[str, ...] = ()  # only when asked for (``read_header(names=True)``)

    @property
    def complete(self) -> bool:
        """The one definition: the header is valid and the file has exactly the promised size."""
        return self.state == "ok"


def read_header(path: str | os.PathLike[str], *, names: bool = False) -> SafetensorsHeader:
    """Read and validate the header of a safetensors file without touching the tensor data.

    Only the 8-byte length and the ``N`` header bytes are read, never the data.

    Args:
        path: the file.

    Returns:
        The header verdict; metadata values are the file's strings, in a read-only mapping.

    Raises:
        OSError: the file cannot be opened or read (vanished, permission denied…).
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return SafetensorsHeader("short", 0, problem="empty file (0 bytes)")
        head = f.read(8)
        if len(head) < 8:
            return SafetensorsHeader(
                "short", size, problem=f"header length incomplete: {len(head)} of 8 bytes"
            )
        n = int.from_bytes(head, "little")
        if n < 2 or n > MAX_HEADER_BYTES:
            return SafetensorsHeader(
                "bad", size, header_length=n, problem=f"not a safetensors file: header length {n}"
            )
        if size < 8 + n:
            return SafetensorsHeader(
                "short",
                size,
                header_length=n,
                problem=f"header incomplete: {size} of at least {8 + n} bytes",
            )
        raw = f.read(n)
    if len(raw) < n:  # shrank between fstat and read: rewritten right now
        return SafetensorsHeader(
            "short", size, header_length=n, problem=f"header incomplete: {8 + len(raw)} bytes"
        )
    return _parse_header(raw, size, n, names)


_INT = r"(?:0|[1-9][0-9]*)"
# the value tokens of the entries, each followed by '"' (see _fast_header)
_SHAPE = re.compile(rb":\[(?:" + _INT.encode() + rb"(?:," + _INT.encode() + rb")*)?\],")
_CONTROL = bytes(range(32))
_ENTRY_LITERALS = ((2, b":{"), (3, b"dtype"), (4, b":"), (6, b","), (7, b"shape"), (9, b"data_offsets"))
_MD_PREFIX = '{"__metadata__":'
_DECODER = json.JSONDecoder()


def _fast_header(text: str) -> tuple[dict[str, Any], int, int, list[bytes]] | None:
    """(raw metadata, largest data_offsets end, tensor count, tensor names as UTF-8) of a
    header in the usual layout.

    Why: a LoRA header is ~300 KB of tensor entries around a few KB of ``__metadata__``, and
    building 2,000 dicts only to read two integers from each is most of a checkpoint scan.
    Only the metadata object goes through ``json``. The entries are checked as a whole with C-
    level string operations: with no backslash in them every ``"`` opens or closes a string,
    so splitting on it gives ten tokens per entry at fixed places
    (``,"NAME":{"dtype":"DT","shape":[…],"data_offsets":[A,B]}``); the literal tokens are
    compared with strided slices, the shape and offset tokens are matched as one string by a
    strict pattern, and the offsets are read from them as one JSON array. Together that proves the text
    is valid JSON of exactly this shape. Anything else (another layout, whitespace, escaped
    names, duplicate keys, invalid offsets) returns None and the full parser decides, so the
    verdict and the problem text are the same either way.
    """
    if text.startswith(_MD_PREFIX):
        try:
            md, pos = _DECODER.raw_decode(text, len(_MD_PREFIX))
        except ValueError:
            return None
        if not isinstance(md, dict):
            return None
        lead = ""
    elif text.startswith('{"'):
        md, pos, lead = {}, 1, ","
    else:
        return None
    end = len(text) - 1  # the entries end where the closing brace is (then only padding)
    while end >= pos and text[end] in " \t\n\r":
        end -= 1
    if end < pos or text[end] != "}":
        return None
    if end == pos:
        return md, 0, 0, []
    if text.find("\\", pos, end) >= 0:  # escapes: the full parser
        return None
    # the entries as UTF-8 bytes (splitting bytes is about twice as fast as splitting text)
    toks = (lead + text[pos:end] + ',"').encode().split(b'"')
    n = (len(toks) - 2) // 10
    if len(toks) != 10 * n + 2 or toks[0] != b"," or toks[-1] != b"":
        return None
    for k, literal in _ENTRY_LITERALS:
        if toks[k::10].count(literal) != n:
            return None
    names = toks[1:-1:10]
    unique = set(names)
    if len(unique) != n or b"__metadata__" in unique:
        return None
    # strings may hold no control characters (in UTF-8 they are single bytes): names checked
    # at once, dtypes and shapes (a handful of distinct values) one by one
    joined = b"".join(names)
    if len(joined.translate(None, _CONTROL)) != len(joined):
        return None
    if not all(d.decode().isprintable() for d in set(toks[5::10])):
        return None
    if not all(_SHAPE.fullmatch(sh) for sh in set(toks[8::10])):
        return None
    # offsets: every token is ':[' X ']},' (its boundaries are checked by counting), so
    # turning each into '[X],' gives one JSON array whose n elements must all be [int, int]
    offsets = b'"'.join(toks[10::10]) + b'"'
    if not offsets.startswith(b":[") or offsets.count(b']},":[') != n - 1 or not offsets.endswith(b']},"'):
        return None
    try:
        pairs = _DECODER.decode("[" + offsets.replace(b":[", b"[").replace(b']},"', b"],")[:-1].decode() + "]")
    except ValueError:
        return None
    if len(pairs) != n or set(map(len, pairs)) != {2}:
        return None
    flat = list(itertools.chain.from_iterable(pairs))
    if set(map(type, flat)) != {int} or min(flat) < 0:
        return None
    starts, ends = flat[0::2], flat[1::2]
    if not all(map(operator.le, starts, ends)):
        return None
    return md, max(ends), n, names


def _parse_header(raw: bytes, size: int, n: int, names: bool) -> SafetensorsHeader:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return SafetensorsHeader(
            "bad", size, header_length=n, problem=f"header is not UTF-8 (byte {exc.start})"
        )
    fast = _fast_header(text)
    if fast is not None:
        raw_md, data_end, count, raw_names = fast
        found = tuple(b.decode() for b in raw_names) if names else ()
        return _verdict(size, n, raw_md or {}, data_end, count, found)
    try:
        obj = json.loads(text)
    except ValueError as exc:
        return SafetensorsHeader(
            "bad", size, header_length=n, problem=f"header is not valid JSON: {exc}"
        )
    if not isinstance(obj, dict):
        return SafetensorsHeader("bad", size, header_length=n, problem="header is not an object")
    raw_md = obj.pop("__metadata__", None) or {}
    if not isinstance(raw_md, dict):
        return SafetensorsHeader(
            "bad", size, header_length=n, problem="__metadata__ is not an object"
        )
    data_end = 0
    for name, info in obj.items():
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            return SafetensorsHeader(
                "bad",
                size,
                metadata=_metadata(raw_md),
                header_length=n,
                problem=f"tensor {name!r} has invalid data_offsets",
            )
        data_end = max(data_end, offsets[1])
    return _verdict(size, n, raw_md, data_end, len(obj), tuple(obj) if names else ())


def _metadata(raw_md: dict[str, Any]) -> Mapping[str, str]:
    return MappingProxyType(
        {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw_md.items()}
    )


def _verdict(size: int, n: int, raw_md: dict[str, Any], data_end: int, count: int,
             names: tuple[str, ...]) -> SafetensorsHeader:
    """ok / short / bad from the size the header promises (``8 + N + largest end``)."""
    expected = 8 + n + data_end
    common: dict[str, Any] = {
        "metadata": _metadata(raw_md),
        "header_length": n,
        "expected_size": expected,
        "tensor_count": count,
        "tensor_names": names,
    }
    if size < expected:
        return SafetensorsHeader(
            "short", size, problem=f"truncated: {size} of {expected} bytes", **common
        )
    if size > expected:
        return SafetensorsHeader(
            "bad",
            size,
            problem=f"{size - expected} bytes after the tensor data ({size}, expected {expected})",
            **common,
        )
    return SafetensorsHeader("ok", size, **common)


def _read_torch_file(path: str) -> tuple[str, str | None]:
    """Verdict for a ``.ckpt``/``.pt`` file: ("ok"|"short"|"unknown", problem).

    torch.save writes a zip archive since torch 1.6: it is complete once its end-of-central-
    directory record is in place. Anything else (legacy pickle) has no such marker: "unknown",
    decided by size stability.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return "short", "empty file (0 bytes)"
        if f.read(4) != _ZIP_LOCAL:
            return "unknown", None
        f.seek(max(0, size - _ZIP_TAIL))
        tail = f.read()
    idx = tail.rfind(_ZIP_EOCD)
    if idx >= 0 and idx + 22 <= len(tail):
        comment = int.from_bytes(tail[idx + 20 : idx + 22], "little")
        if idx + 22 + comment == len(tail):
            return "ok", None
    return "short", f"truncated: zip archive without its end record ({size} bytes)"


def weights_verdict(path: str | os.PathLike[str]) -> tuple[str, str | None, Mapping[str, str]]:
    """(verdict, problem, metadata) of any weights file sd-scripts writes.

    The verdict is ``ok`` | ``short`` | ``bad`` for safetensors (see :class:`SafetensorsHeader`),
    ``ok`` | ``short`` | ``unknown`` for ``.ckpt``/``.pt`` (``unknown``: a legacy pickle, with
    no end marker; only a stable size can tell).

    Raises:
        OSError: the file cannot be opened or read.
    """
    if os.fspath(path).lower().endswith(".safetensors"):
        h = read_header(path)
        return h.state, h.problem, h.metadata
    verdict, problem = _read_torch_file(os.fspath(path))
    return verdict, problem, _EMPTY


def is_complete(path: str | os.PathLike[str]) -> bool | None:
    """True when a safetensors file is complete, False while shorter than its header promises,
    None when it is not (or not yet) a readable safetensors file."""
    try:
        h = read_header(path)
    except OSError:
        return None
    if h.state == "ok":
        return True
    return False if h.state == "short" else None


def read_metadata(path: str | os.PathLike[str]) -> Mapping[str, str]:
    """The ``__metadata__`` strings of a safetensors file ({} when unreadable or none)."""
    try:
        return read_header(path).metadata
    except OSError:
        return _EMPTY


def peek_metadata(path: str | os.PathLike[str], *, limit: int = 64 << 10) -> Mapping[str, str]:
    """The ``__metadata__`` strings when they lead the header, reading at most ``limit`` bytes.

    Why: run discovery asks "is this a trainer's file?" of many files, and only needs the
    ``ss_*`` keys that the safetensors writer puts first; the tensor entries (hundreds of KB
    in a LoRA) are never read. Falls back to {} (never raises) when the metadata is not the
    first key, does not fit in ``limit`` or the file is unreadable: callers that need the
    verdict use :func:`read_header`.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return _EMPTY
            n = int.from_bytes(head, "little")
            if n < 2 or n > MAX_HEADER_BYTES:
                return _EMPTY
            raw = f.read(min(n, limit))
    except OSError:
        return _EMPTY
    text = raw.decode("utf-8", errors="replace")
    if not text.startswith(_MD_PREFIX):
        return _EMPTY
    try:
        md, _ = _DECODER.raw_decode(text, len(_MD_PREFIX))
    except ValueError:
        return _EMPTY
    return _metadata(md) if isinstance(md, dict) else _EMPTY


def checkpoint_status(verdict: str, problem: str | None, *, moving: bool,
                      writer_alive: bool | None = None) -> tuple[CheckpointStatus, str | None]:
    """The one definition of a checkpoint's status, from its file verdict (:func:`weights_verdict`).

    ``complete``: the header promises exactly the file's size (a ``.ckpt``/``.pt`` zip: its end
    record is in place; a legacy pickle: its size stopped changing). ``writing``: shorter than
    promised (or a legacy pickle still growing) *while the file still changes and its writer may
    be alive*. ``corrupt``: anything that can never become valid, and a short file that stopped
    changing or whose writer is gone (a half-written file of a dead run is incomplete, never
    "writing"). ``moving``: the file changed recently; ``writer_alive`` False: the trainer is
    known to be gone. The checkpoint table, ``status``, stop-after-checkpoint and the
    evaluation queue all use this.
    """
    if verdict == "ok":
        return CheckpointStatus.COMPLETE, None
    if verdict not in ("short", "unknown"):
        return CheckpointStatus.CORRUPT, problem
    growing = moving and writer_alive is not False
    if verdict == "unknown":  # a legacy pickle: complete once its size is stable
        return (CheckpointStatus.WRITING, problem) if growing else (CheckpointStatus.COMPLETE, None)
    if growing:
        return CheckpointStatus.WRITING, f"being written: {problem}" if problem else "being written"
    if writer_alive is False:
        return CheckpointStatus.CORRUPT, f"incomplete: the trainer ended while writing it ({problem or 'truncated'})"
    return CheckpointStatus.CORRUPT, problem
