"""Checkpoints, ``-state`` directories, sample images and evaluations of one run directory.

Why a scanner with memory: the dashboard rescans every few seconds while a run may be writing
a 200 MB LoRA in place (sd-scripts saves are not atomic: ``safetensors.torch.save_file``). Whether a file is complete
can be decided from its safetensors header alone (the header promises the exact file
size), but "still being written" versus "killed mid-write" needs time: a short file that keeps
changing is WRITING, one that stays short is CORRUPT. Parsed headers are cached by
``(st_ino, st_size, st_mtime_ns)``, so a rescan of unchanged files costs only ``stat`` calls.

The scanner never writes anything, follows symlinks to files, and goes exactly one level into
the folders it knows (``sample/``, ``eval_*``, ``*-state``, ``.sdxl-tui/evals``), so a symlink
loop cannot make it recurse.
"""

from __future__ import annotations

import json
import math
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from sdxl_tui.formats.names import (
    IMAGE_SUFFIXES,
    SAMPLE_DIR,
    STATE_SUFFIX,
    WEIGHT_SUFFIXES,
    classify_name,
    parse_sample_name,
    state_dir_name,
)
from sdxl_tui.formats.safetensors import checkpoint_status, weights_verdict
from sdxl_tui.model import (
    Checkpoint,
    CheckpointKind,
    CheckpointStatus,
    Evaluation,
    Sample,
    StateDir,
)
from sdxl_tui.sources.evaluations import attach_evaluations, scan_evaluations

__all__ = ["CheckpointScan", "CheckpointScanner"]

STALE_SECONDS = 30.0
"""A short file unchanged for this long is a killed save, not a save in progress."""
_SMALL_JSON_MAX = 1 << 20

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


# --------------------------------------------------------------------------- pure helpers


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
            if name.endswith(STATE_SUFFIX):
                state_dirs.append(entry)
            elif name.startswith("eval_"):
                eval_dirs.append(entry)
            elif name == SAMPLE_DIR:
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
        evaluations = scan_evaluations(self.run_dir, eval_dirs, checkpoints, problems, self._json)
        if evaluations:
            checkpoints = attach_evaluations(checkpoints, evaluations)
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
                verdict, problem, metadata = self._read_weights(path)
            except FileNotFoundError:
                return None
            except OSError as exc:
                reason = "permission denied" if isinstance(exc, PermissionError) else str(exc)
                problems.append(f"cannot read {entry.name}: {reason}")
                verdict, problem, metadata = "unreadable", f"cannot read: {reason}", _EMPTY
            if verdict != "unreadable":
                self._headers[path] = (sig, verdict, problem, metadata)
        return _Weights(entry.name, path, stem, suffix.lower(), st, verdict, problem, metadata)

    def known_headers(self) -> dict[str, tuple[_Sig, str, str | None, dict[str, str]]]:
        """Every header verdict read so far, by path, with the file signature it holds for
        (plain data: the reader's cache keeps it between processes)."""
        return {p: (sig, v, prob, dict(meta)) for p, (sig, v, prob, meta) in self._headers.items()}

    def remember_headers(self, known: Mapping[str, tuple[_Sig, str, str | None, Mapping[str, str]]]) -> None:
        """Take verdicts read earlier (``known_headers``); each is used only while its file
        still has the same ``(inode, size, mtime_ns)``."""
        for path, (sig, verdict, problem, meta) in known.items():
            self._headers.setdefault(path, (sig, verdict, problem, MappingProxyType(dict(meta))))

    def _read_weights(self, path: str) -> tuple[str, str | None, Mapping[str, str]]:
        self.header_reads += 1
        return weights_verdict(path)

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
            # A step save's ss_epoch is the 0-based index of the epoch in progress (train_network.py).
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
            state_dir=state_by_name.get(state_dir_name(w.stem)),
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
        problem = f"being written: {w.st.st_size} bytes so far" if w.verdict == "unknown" else w.problem
        return checkpoint_status(w.verdict, problem, moving=moving)  # formats/safetensors.py: the one rule

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
            base = entry.name[: -len(STATE_SUFFIX)]
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


_EMPTY: Mapping[str, str] = MappingProxyType({})


def settle_for_dead_writer(checkpoints: Sequence[Checkpoint]) -> tuple[Checkpoint, ...]:
    """The checkpoints once the trainer is known to be gone: a file still labelled "writing"
    will never be finished; it is incomplete (``formats/safetensors.checkpoint_status`` with
    ``writer_alive=False``), at once, in every view."""
    out = []
    for c in checkpoints:
        if c.status is CheckpointStatus.WRITING:
            problem = (c.problem or "").removeprefix("being written: ") or None
            status, problem = checkpoint_status("short", problem, moving=True, writer_alive=False)
            c = replace(c, status=status, problem=problem)
        out.append(c)
    return tuple(out)
