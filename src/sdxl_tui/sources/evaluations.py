"""Evaluations of a run's checkpoints: ``eval_*`` folders and sdxl-tui's status files.

Why apart from the checkpoint scan: an evaluation is sdxl-tui's own artefact (the queue in
``control/evaluate`` writes ``.sdxl-tui/evals/<stem>.json`` and the images), matched here to the
trainer's checkpoints by name or epoch; a ``running`` status whose process is gone reads as
``failed``, as the queue itself would record it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sdxl_tui.formats.names import IMAGE_SUFFIXES, eval_dir_epoch, eval_dir_name
from sdxl_tui.formats.statedir import evals_dir
from sdxl_tui.model import Checkpoint, CheckpointKind, Evaluation

__all__ = ["attach_evaluations", "scan_evaluations"]

_EVAL_STATUSES = frozenset({"queued", "running", "done", "failed"})


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


@dataclass(frozen=True, slots=True)
class _Checkpoints:
    """The run's checkpoints, looked up the ways evaluation folders and status files name them."""

    all: Sequence[Checkpoint]
    by_stem: Mapping[str, Checkpoint]
    by_name: Mapping[str, Checkpoint]

    @classmethod
    def of(cls, checkpoints: Sequence[Checkpoint]) -> _Checkpoints:
        return cls(checkpoints, {os.path.splitext(c.name)[0]: c for c in checkpoints},
                   {c.name: c for c in checkpoints})

    def for_epoch(self, n: int) -> Checkpoint | None:
        for kind in (CheckpointKind.EPOCH, CheckpointKind.FINAL):
            for c in self.all:
                if c.kind is kind and c.epoch == n:
                    return c
        return None

    def for_folder(self, dirname: str) -> tuple[Checkpoint | None, int | None]:
        n = eval_dir_epoch(dirname)
        if n is not None:
            return self.for_epoch(n), n
        c = self.by_stem.get(dirname[len("eval_") :])
        return c, (c.epoch if c else None)

    def for_status(self, stem: str, data: Mapping[str, Any]) -> tuple[Checkpoint | None, str | None]:
        """The checkpoint a status file names (its ``checkpoint`` field, else its file name)."""
        ck_field = data.get("checkpoint")
        ck_name = os.path.basename(str(ck_field)) if ck_field else None
        return (self.by_name.get(ck_name) if ck_name else None) or self.by_stem.get(stem), ck_name


def _status_files(run_dir: str, problems: list[str]) -> list[str]:
    status_dir = os.fspath(evals_dir(run_dir))
    try:
        with os.scandir(status_dir) as it:
            return sorted(e.path for e in it if e.name.endswith(".json"))
    except FileNotFoundError:
        return []
    except OSError as exc:
        problems.append(f"cannot list {status_dir}: {exc.strerror or exc}")
        return []


def _read_status(path: str, problems: list[str], read_json: Callable[[str], object]) -> dict[str, Any] | None:
    try:
        data = read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        problems.append(f"unreadable evaluation status {os.path.basename(path)}: {exc}")
        return None
    if not isinstance(data, dict):
        problems.append(f"unreadable evaluation status {os.path.basename(path)}")
        return None
    return data


def _from_status(data: Mapping[str, Any], ck: Checkpoint | None, ck_name: str | None,
                 existing: Evaluation | None, out_path: str) -> Evaluation:
    """One status file's evaluation, merged with the folder already found for it (if any)."""
    status = str(data.get("status", "unknown"))
    if status not in _EVAL_STATUSES:
        status = "unknown"
    elif status == "running" and _pid_gone(data.get("pid")):
        status = "failed"  # the runner died without recording the end (as evaluate.py)
    return Evaluation(
        name=existing.name if existing else os.path.basename(os.path.normpath(out_path)),
        path=existing.path if existing else out_path,
        checkpoint=ck.name if ck else (ck_name or (existing.checkpoint if existing else None)),
        epoch=ck.epoch if ck else (existing.epoch if existing else None),
        status=status,
        images=existing.images if existing else _images_in(out_path),
    )


def scan_evaluations(
    run_dir: str,
    eval_dirs: Iterable[os.DirEntry[str]],
    checkpoints: list[Checkpoint],
    problems: list[str],
    read_json: Callable[[str], object],
) -> list[Evaluation]:
    """Evaluation folders (``eval_*``) and status files (``.sdxl-tui/evals``), matched to checkpoints."""
    known = _Checkpoints.of(checkpoints)
    results: dict[str, Evaluation] = {}
    for entry in eval_dirs:
        ck, epoch = known.for_folder(entry.name)
        images = _images_in(entry.path)
        results[os.path.normpath(entry.path)] = Evaluation(
            name=entry.name,
            path=entry.path,
            checkpoint=ck.name if ck else None,
            epoch=epoch,
            status="done" if images else "unknown",
            images=images,
        )
    for path in _status_files(run_dir, problems):
        stem = os.path.basename(path)[: -len(".json")]
        data = _read_status(path, problems, read_json)
        if data is None:
            continue
        ck, ck_name = known.for_status(stem, data)
        out = data.get("output_dir")
        if out:
            out_path = os.path.join(run_dir, os.path.expanduser(str(out)))
        else:
            epoch = ck.epoch if ck is not None and ck.kind is CheckpointKind.EPOCH else None
            out_path = os.path.join(run_dir, eval_dir_name(stem, epoch))
        key = os.path.normpath(out_path)
        results[key] = _from_status(data, ck, ck_name, results.get(key), out_path)
    return sorted(results.values(), key=lambda e: (e.epoch is None, e.epoch or 0, e.name))


def attach_evaluations(
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
