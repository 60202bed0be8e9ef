"""Checkpoints, ``-state`` directories, sample images and evaluations of one run directory.

Why a scanner with memory: the dashboard rescans every few seconds while a run may be writing
a 200 MB LoRA in place (sd-scripts saves are not atomic, REF §1.8). Whether a file is complete
can be decided from its safetensors header alone (REF §4.1: the header promises the exact file
size), but "still being written" versus "killed mid-write" needs time: a short file that keeps
changing is WRITING, one that stays short is CORRUPT. Parsed headers are cached by
``(st_ino, st_size, st_mtime_ns)``, so a rescan of unchanged files costs only ``stat`` calls.

The scanner never writes anything, follows symlinks to files, and goes exactly one level into
the folders it knows (``sample/``, ``eval_*``, ``*-state``, ``.sdxl-tui/evals``), so a symlink
loop cannot make it recurse.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
import os
import re
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from sdxl_tui.formats.statedir import evals_dir
from sdxl_tui.model import (
    Checkpoint,
    CheckpointKind,
    CheckpointStatus,
    Evaluation,
    Sample,
    StateDir,
)

__all__ = [
    "WEIGHT_SUFFIXES",
    "CheckpointScan",
    "CheckpointScanner",
    "SafetensorsHeader",
    "classify_name",
    "parse_sample_name",
    "read_safetensors_header",
]

WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".ckpt", ".pt")
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp")
MAX_HEADER_BYTES = 100_000_000
"""safetensors itself refuses headers above 100 MB; anything larger is not a safetensors file."""
STALE_SECONDS = 30.0
"""A short file unchanged for this long is a killed save, not a save in progress."""
_SMALL_JSON_MAX = 1 << 20
_ZIP_LOCAL = b"PK\x03\x04"
_ZIP_EOCD = b"PK\x05\x06"
_ZIP_TAIL = 65_536 + 22
_EVAL_STATUSES = frozenset({"queued", "running", "done", "failed"})

_STEP_RE = re.compile(r"(?P<name>.+)-step(?P<num>\d{8,})")
_EPOCH_RE = re.compile(r"(?P<name>.+)-(?P<num>\d{6,})")
_SAMPLE_RE = re.compile(
    r"(?:(?P<prefix>.*)_)?(?:e(?P<epoch>\d{6,})|(?P<step>\d{6,}))_(?P<idx>\d{2,})"
    r"_(?P<ts>\d{14})(?:_(?P<seed>-?\d+))?"
)
_EVAL_EPOCH_RE = re.compile(r"eval_epoch(?P<num>\d+)")

_Sig = tuple[int, int, int]  # (st_ino, st_size, st_mtime_ns)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class CheckpointScan:
    """Everything the scanner found in one pass; plain frozen data, safe to hand to the UI."""

    checkpoints: tuple[Checkpoint, ...] = ()
    states: tuple[StateDir, ...] = ()
    samples: tuple[Sample, ...] = ()
    evaluations: tuple[Evaluation, ...] = ()
    problems: tuple[str, ...] = ()
    output_name: str | None = None
    """The output name used to recognise the final file (given, from metadata, or inferred)."""


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


# --------------------------------------------------------------------------- pure helpers


def read_safetensors_header(path: str | os.PathLike[str]) -> SafetensorsHeader:
    """Read and validate the header of a safetensors file without touching the tensor data.

    Only the 8-byte length and the ``N`` header bytes are read (REF §4.1), never the data.

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
    return _parse_header(raw, size, n)


_INT = r"(?:0|[1-9][0-9]*)"
# the value tokens of the entries, each followed by '"' (see _fast_header)
_SHAPE = re.compile(rb":\[(?:" + _INT.encode() + rb"(?:," + _INT.encode() + rb")*)?\],")
_CONTROL = bytes(range(32))
_ENTRY_LITERALS = ((2, b":{"), (3, b"dtype"), (4, b":"), (6, b","), (7, b"shape"), (9, b"data_offsets"))
_MD_PREFIX = '{"__metadata__":'
_DECODER = json.JSONDecoder()


def _fast_header(text: str) -> tuple[dict[str, Any], int, int] | None:
    """(raw metadata, largest data_offsets end, tensor count) of a header in the usual layout.

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
        return md, 0, 0
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
    return md, max(ends), n


def _parse_header(raw: bytes, size: int, n: int) -> SafetensorsHeader:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return SafetensorsHeader(
            "bad", size, header_length=n, problem=f"header is not UTF-8 (byte {exc.start})"
        )
    fast = _fast_header(text)
    if fast is not None:
        raw_md, data_end, count = fast
        return _verdict(size, n, raw_md or {}, data_end, count)
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
    return _verdict(size, n, raw_md, data_end, len(obj))


def _metadata(raw_md: dict[str, Any]) -> Mapping[str, str]:
    return MappingProxyType(
        {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw_md.items()}
    )


def _verdict(size: int, n: int, raw_md: dict[str, Any], data_end: int, count: int) -> SafetensorsHeader:
    """ok / short / bad from the size the header promises (``8 + N + largest end``)."""
    expected = 8 + n + data_end
    common: dict[str, Any] = {
        "metadata": _metadata(raw_md),
        "header_length": n,
        "expected_size": expected,
        "tensor_count": count,
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


def classify_name(stem: str) -> tuple[CheckpointKind | None, str, int | None]:
    """Split a weights file stem by sd-scripts' name patterns (REF §3.1/§3.2).

    Returns ``(EPOCH|STEP, name, number)`` for ``{name}-{epoch:06d}`` / ``{name}-step{step:08d}``,
    or ``(None, stem, None)`` when the stem follows neither (a final file or something else).
    """
    m = _STEP_RE.fullmatch(stem)
    if m:
        return CheckpointKind.STEP, m["name"], int(m["num"])
    m = _EPOCH_RE.fullmatch(stem)
    if m:
        return CheckpointKind.EPOCH, m["name"], int(m["num"])
    return None, stem, None


def parse_sample_name(stem: str) -> tuple[int | None, int | None, int | None, str | None]:
    """``(epoch, step, prompt_index, timestamp)`` from a sample image stem (REF §3.5).

    ``{output_name}_e{epoch:06d}_{i:02d}_{ts}[_{seed}]`` gives the epoch,
    ``{output_name}_{steps:06d}_{i:02d}_{ts}[_{seed}]`` the step; the prefix is optional.
    """
    m = _SAMPLE_RE.fullmatch(stem)
    if not m:
        return None, None, None, None
    epoch = int(m["epoch"]) if m["epoch"] is not None else None
    step = int(m["step"]) if m["step"] is not None else None
    return epoch, step, int(m["idx"]), m["ts"]


def _int(value: object) -> int | None:
    """An int from a metadata string ("3", "3.0"); None for "None", garbage or missing."""
    if value is None:
        return None
    try:
        f = float(str(value))
    except ValueError:
        return None
    return int(f) if math.isfinite(f) and f == int(f) else None


def _sig(st: os.stat_result) -> _Sig:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _read_small_json(path: str) -> object:
    """Parse a small JSON file (status and train_state files). Raises OSError or ValueError."""
    with open(path, "rb") as f:
        raw = f.read(_SMALL_JSON_MAX + 1)
    if len(raw) > _SMALL_JSON_MAX:
        raise ValueError("file too large")
    return json.loads(raw.decode("utf-8", errors="replace"))


def _images_in(folder: str, *, depth: int = 2) -> tuple[str, ...]:
    """Image paths in ``folder`` and (depth 2) its direct subfolders, sorted; never raises."""
    found: list[str] = []
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return ()
    for e in entries:
        try:
            if e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file():
                found.append(e.path)
            elif depth > 1 and e.is_dir() and not e.name.startswith("."):
                found.extend(_images_in(e.path, depth=depth - 1))
        except OSError:
            continue
    return tuple(found)


def _pid_gone(pid: object) -> bool:
    """True only when ``pid`` certainly names no live process (signal 0 probe, sends nothing)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, someone else's
        return False
    return False


def _local_ts(mtime: float) -> str:
    return time.strftime("%Y%m%d%H%M%S", time.localtime(mtime))


_KIND_RANK = {
    CheckpointKind.STEP: 0,
    CheckpointKind.EPOCH: 1,
    CheckpointKind.FINAL: 2,
    CheckpointKind.OTHER: 3,
}


def _checkpoint_order(c: Checkpoint) -> tuple[Any, ...]:
    return (
        c.step is None,
        c.step or 0,
        c.epoch is None,
        c.epoch or 0,
        _KIND_RANK[c.kind],
        c.mtime,
        c.name,
    )


# --------------------------------------------------------------------------- scanner


@dataclass(slots=True)
class _Weights:
    """A weights file found in this pass, before its kind is settled."""

    name: str
    path: str
    stem: str
    suffix: str
    st: os.stat_result
    verdict: str  # ok | short | bad | unknown | unreadable
    problem: str | None
    metadata: Mapping[str, str]


class CheckpointScanner:
    """Scan a run directory for checkpoints, state dirs, samples and evaluations.

    Incremental: it remembers each file's ``(inode, size, mtime_ns)`` and parsed header, and
    when it last saw the file change, which is how WRITING and CORRUPT are told apart.
    Not thread-safe; one scanner belongs to one reader thread.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        output_name: str | None = None,
        clock: Callable[[], float] = time.time,
        stale_seconds: float = STALE_SECONDS,
    ) -> None:
        self.run_dir = os.path.abspath(os.fspath(run_dir))
        self.output_name = output_name
        """Known output name (``--output_name``); None lets the scanner infer it."""
        self._clock = clock
        self._stale = stale_seconds
        self._headers: dict[str, tuple[_Sig, str, str | None, Mapping[str, str]]] = {}
        self._seen: dict[str, tuple[_Sig, float]] = {}
        self._json_cache: dict[str, tuple[_Sig, object]] = {}
        self._json_touched: set[str] = set()
        self._samples: dict[str, tuple[tuple[str, int, str], Sample]] = {}
        self._samples_sorted: tuple[Sample, ...] = ()
        self.header_reads = 0
        """How many files were opened for their header (a measure of the cache's work)."""

    # ---------------------------------------------------------------- public

    def scan(self) -> CheckpointScan:
        """One pass over the run directory; never raises for file-system trouble.

        Returns:
            The frozen scan. ``problems`` explains anything that could not be read.
        """
        now = self._clock()
        problems: list[str] = []
        self._json_touched = set()
        try:
            with os.scandir(self.run_dir) as it:
                entries = list(it)
        except FileNotFoundError:
            self._forget_all()
            return CheckpointScan(problems=(f"run directory not found: {self.run_dir}",))
        except NotADirectoryError:
            return CheckpointScan(problems=(f"not a directory: {self.run_dir}",))
        except PermissionError:
            return CheckpointScan(
                problems=(f"cannot list run directory (permission denied): {self.run_dir}",)
            )
        except OSError as exc:
            return CheckpointScan(problems=(f"cannot list run directory: {exc}",))

        weights: list[_Weights] = []
        state_dirs: list[os.DirEntry[str]] = []
        eval_dirs: list[os.DirEntry[str]] = []
        sample_dir: str | None = None
        for entry in sorted(entries, key=lambda e: e.name):
            name = entry.name
            lower = name.lower()
            if lower.endswith(WEIGHT_SUFFIXES) and not name.startswith("."):
                w = self._weights(entry, problems)
                if w is not None:
                    weights.append(w)
                continue
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                continue
            if not is_dir:
                continue
            if name.endswith("-state"):
                state_dirs.append(entry)
            elif name.startswith("eval_"):
                eval_dirs.append(entry)
            elif name == "sample":
                sample_dir = entry.path

        live = {w.path for w in weights}
        for stale_path in [p for p in self._seen if p not in live]:
            self._seen.pop(stale_path, None)
            self._headers.pop(stale_path, None)

        output_name = self._resolve_output_name(weights)
        states = self._states(state_dirs)
        state_by_name = {s.name: s.path for s in states}
        checkpoints = [self._checkpoint(w, output_name, now, state_by_name) for w in weights]
        checkpoints.sort(key=_checkpoint_order)
        evaluations = self._evaluations(eval_dirs, checkpoints, problems)
        if evaluations:
            checkpoints = self._attach_evaluations(checkpoints, evaluations)
        samples = self._scan_samples(sample_dir, problems)
        for gone in [p for p in self._json_cache if p not in self._json_touched]:
            del self._json_cache[gone]  # removed state dirs / status files
        return CheckpointScan(
            checkpoints=tuple(checkpoints),
            states=tuple(states),
            samples=samples,
            evaluations=tuple(evaluations),
            problems=tuple(problems),
            output_name=output_name,
        )

    # ---------------------------------------------------------------- weights

    def _forget_all(self) -> None:
        self._headers.clear()
        self._seen.clear()
        self._json_cache.clear()
        self._samples.clear()
        self._samples_sorted = ()

    def _weights(self, entry: os.DirEntry[str], problems: list[str]) -> _Weights | None:
        path = entry.path
        try:
            st = entry.stat()  # follows symlinks; ELOOP for a loop
        except FileNotFoundError:
            if entry.is_symlink():
                problems.append(f"broken symlink: {entry.name}")
            return None  # else: removed during the scan (--save_last_n_epochs)
        except OSError as exc:
            problems.append(f"cannot stat {entry.name}: {exc.strerror or exc}")
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        stem, suffix = os.path.splitext(entry.name)
        sig = _sig(st)
        cached = self._headers.get(path)
        if cached is not None and cached[0] == sig:
            _, verdict, problem, metadata = cached
        else:
            try:
                verdict, problem, metadata = self._read_weights(path, suffix.lower())
            except FileNotFoundError:
                return None
            except OSError as exc:
                reason = "permission denied" if isinstance(exc, PermissionError) else str(exc)
                problems.append(f"cannot read {entry.name}: {reason}")
                verdict, problem, metadata = "unreadable", f"cannot read: {reason}", _EMPTY
            if verdict != "unreadable":
                self._headers[path] = (sig, verdict, problem, metadata)
        return _Weights(entry.name, path, stem, suffix.lower(), st, verdict, problem, metadata)

    def _read_weights(self, path: str, suffix: str) -> tuple[str, str | None, Mapping[str, str]]:
        self.header_reads += 1
        if suffix == ".safetensors":
            h = read_safetensors_header(path)
            return h.state, h.problem, h.metadata
        verdict, problem = _read_torch_file(path)
        return verdict, problem, _EMPTY

    def _resolve_output_name(self, weights: Iterable[_Weights]) -> str | None:
        if self.output_name:
            return self.output_name
        meta_names = Counter(
            w.metadata["ss_output_name"] for w in weights if "ss_output_name" in w.metadata
        )
        if meta_names:
            name = meta_names.most_common(1)[0][0]
            return None if name == "None" else name
        families = Counter(
            fam for kind, fam, _ in (classify_name(w.stem) for w in weights) if kind is not None
        )
        if families:
            return families.most_common(1)[0][0]
        return None

    def _checkpoint(
        self, w: _Weights, output_name: str | None, now: float, state_by_name: Mapping[str, str]
    ) -> Checkpoint:
        kind, _family, number = classify_name(w.stem)
        md = w.metadata
        md_epoch, md_steps = _int(md.get("ss_epoch")), _int(md.get("ss_steps"))
        if output_name is not None and w.stem == output_name:
            kind, number = CheckpointKind.FINAL, None
        final_names = {output_name or "last"}
        if output_name in (None, "epoch", "at"):
            final_names.add("last")
        epoch: int | None
        step: int | None
        if kind is CheckpointKind.EPOCH:
            epoch, step = number, md_steps
        elif kind is CheckpointKind.STEP:
            # REF §4.4: a step save's ss_epoch is the 0-based index of the epoch in progress.
            epoch, step = (None if md_epoch is None else md_epoch + 1), number
        else:
            num_epochs = _int(md.get("ss_num_epochs"))
            says_final = md_epoch is not None and md_epoch == num_epochs
            if kind is None:
                kind = (
                    CheckpointKind.FINAL
                    if w.stem in final_names or says_final
                    else CheckpointKind.OTHER
                )
            epoch, step = md_epoch, md_steps
        status, problem = self._status(w, now)
        return Checkpoint(
            name=w.name,
            path=w.path,
            kind=kind,
            epoch=epoch,
            step=step,
            size=w.st.st_size,
            mtime=w.st.st_mtime,
            status=status,
            metadata=md,
            state_dir=state_by_name.get(w.stem + "-state"),
            problem=problem,
        )

    def _status(self, w: _Weights, now: float) -> tuple[CheckpointStatus, str | None]:
        sig = _sig(w.st)
        prev = self._seen.get(w.path)
        changed = prev is not None and prev[0] != sig
        unchanged_since = now if prev is None or changed else prev[1]
        self._seen[w.path] = (sig, unchanged_since)
        age = now - w.st.st_mtime
        settled = age >= self._stale or now - unchanged_since >= self._stale
        moving = changed or not settled
        if w.verdict == "ok":
            return CheckpointStatus.COMPLETE, None
        if w.verdict in ("bad", "unreadable"):
            return CheckpointStatus.CORRUPT, w.problem
        if w.verdict == "unknown":  # legacy pickle .ckpt/.pt: complete once the size is stable
            if moving:
                return CheckpointStatus.WRITING, f"being written: {w.st.st_size} bytes so far"
            return CheckpointStatus.COMPLETE, None
        # short: the writer is still at it, or it was killed mid-write
        if moving:
            return CheckpointStatus.WRITING, f"being written: {w.problem}"
        return CheckpointStatus.CORRUPT, w.problem

    # ---------------------------------------------------------------- state dirs

    def _json(self, path: str) -> object:
        """Cached small-JSON read; raises OSError/ValueError like ``_read_small_json``."""
        self._json_touched.add(path)
        st = os.stat(path)
        sig = _sig(st)
        cached = self._json_cache.get(path)
        if cached is not None and cached[0] == sig:
            return cached[1]
        value = _read_small_json(path)
        self._json_cache[path] = (sig, value)
        return value

    def _states(self, entries: Iterable[os.DirEntry[str]]) -> list[StateDir]:
        states: list[StateDir] = []
        for entry in entries:
            base = entry.name[: -len("-state")]
            kind, _fam, number = classify_name(base)
            data: object = None
            try:
                data = self._json(os.path.join(entry.path, "train_state.json"))
            except (OSError, ValueError):
                data = None
            complete = isinstance(data, dict)
            js: Mapping[str, object] = data if isinstance(data, dict) else {}
            epoch = number if kind is CheckpointKind.EPOCH else _int(js.get("current_epoch"))
            step = number if kind is CheckpointKind.STEP else _int(js.get("current_step"))
            states.append(StateDir(entry.name, entry.path, epoch, step, complete))
        states.sort(
            key=lambda s: (s.step is None, s.step or 0, s.epoch is None, s.epoch or 0, s.name)
        )
        return states

    # ---------------------------------------------------------------- samples

    def _scan_samples(self, folder: str | None, problems: list[str]) -> tuple[Sample, ...]:
        if folder is None:
            self._samples.clear()
            self._samples_sorted = ()
            return ()
        try:
            with os.scandir(folder) as it:
                names = {e.name: e for e in it if e.name.lower().endswith(IMAGE_SUFFIXES)}
        except OSError as exc:
            problems.append(f"cannot list sample/: {exc.strerror or exc}")
            return ()
        changed = False
        for gone in [n for n in self._samples if n not in names]:
            del self._samples[gone]
            changed = True
        for name, entry in names.items():
            if name in self._samples:
                continue  # sample images are written once; no stat for known names
            try:
                st = entry.stat()
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            epoch, step, idx, ts = parse_sample_name(os.path.splitext(name)[0])
            sample = Sample(name, entry.path, epoch, step, idx, st.st_mtime)
            # the name's local timestamp orders copies with equal mtimes; else the mtime
            key = (ts or _local_ts(st.st_mtime), -1 if idx is None else idx, name)
            self._samples[name] = (key, sample)
            changed = True
        if changed:
            self._samples_sorted = tuple(s for _, s in sorted(self._samples.values()))
        return self._samples_sorted

    # ---------------------------------------------------------------- evaluations

    def _evaluations(
        self,
        eval_dirs: Iterable[os.DirEntry[str]],
        checkpoints: list[Checkpoint],
        problems: list[str],
    ) -> list[Evaluation]:
        by_stem = {os.path.splitext(c.name)[0]: c for c in checkpoints}
        by_name = {c.name: c for c in checkpoints}

        def for_epoch(n: int) -> Checkpoint | None:
            for kind in (CheckpointKind.EPOCH, CheckpointKind.FINAL):
                for c in checkpoints:
                    if c.kind is kind and c.epoch == n:
                        return c
            return None

        def match_dir(dirname: str) -> tuple[Checkpoint | None, int | None]:
            m = _EVAL_EPOCH_RE.fullmatch(dirname)
            if m:
                n = int(m["num"])
                return for_epoch(n), n
            c = by_stem.get(dirname[len("eval_") :])
            return c, (c.epoch if c else None)

        results: dict[str, Evaluation] = {}
        for entry in eval_dirs:
            ck, epoch = match_dir(entry.name)
            images = _images_in(entry.path)
            results[os.path.normpath(entry.path)] = Evaluation(
                name=entry.name,
                path=entry.path,
                checkpoint=ck.name if ck else None,
                epoch=epoch,
                status="done" if images else "unknown",
                images=images,
            )

        status_dir = os.fspath(evals_dir(self.run_dir))
        try:
            with os.scandir(status_dir) as it:
                status_files = sorted(e.path for e in it if e.name.endswith(".json"))
        except FileNotFoundError:
            status_files = []
        except OSError as exc:
            problems.append(f"cannot list {status_dir}: {exc.strerror or exc}")
            status_files = []
        for sf in status_files:
            stem = os.path.basename(sf)[: -len(".json")]
            try:
                data = self._json(sf)
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                problems.append(f"unreadable evaluation status {os.path.basename(sf)}: {exc}")
                continue
            if not isinstance(data, dict):
                problems.append(f"unreadable evaluation status {os.path.basename(sf)}")
                continue
            ck_field = data.get("checkpoint")
            ck_name = os.path.basename(str(ck_field)) if ck_field else None
            ck = (by_name.get(ck_name) if ck_name else None) or by_stem.get(stem)
            out = data.get("output_dir")
            if out:
                out_path = os.path.join(self.run_dir, os.path.expanduser(str(out)))
            elif ck is not None and ck.kind is CheckpointKind.EPOCH and ck.epoch is not None:
                out_path = os.path.join(self.run_dir, f"eval_epoch{ck.epoch}")
            else:
                out_path = os.path.join(self.run_dir, f"eval_{stem}")
            key = os.path.normpath(out_path)
            status = str(data.get("status", "unknown"))
            if status not in _EVAL_STATUSES:
                status = "unknown"
            elif status == "running" and _pid_gone(data.get("pid")):
                status = "failed"  # the runner died without recording the end (as evaluate.py)
            existing = results.get(key)
            images = existing.images if existing else _images_in(out_path)
            epoch = ck.epoch if ck else (existing.epoch if existing else None)
            results[key] = Evaluation(
                name=existing.name if existing else os.path.basename(key),
                path=existing.path if existing else out_path,
                checkpoint=ck.name
                if ck
                else (ck_name or (existing.checkpoint if existing else None)),
                epoch=epoch,
                status=status,
                images=images,
            )
        return sorted(results.values(), key=lambda e: (e.epoch is None, e.epoch or 0, e.name))

    @staticmethod
    def _attach_evaluations(
        checkpoints: list[Checkpoint], evaluations: Iterable[Evaluation]
    ) -> list[Checkpoint]:
        status_for: dict[str, str] = {}
        for ev in evaluations:
            if ev.checkpoint is None:
                continue
            # a status from a status file (anything but a bare folder's done/unknown) wins
            if status_for.get(ev.checkpoint) in (None, "done", "unknown"):
                status_for[ev.checkpoint] = ev.status
        return [
            replace(c, evaluation=status_for[c.name]) if c.name in status_for else c
            for c in checkpoints
        ]


_EMPTY: Mapping[str, str] = MappingProxyType({})
