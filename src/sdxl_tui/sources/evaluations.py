"""Evaluations of a run's checkpoints: ``eval_*`` folders and sdxl-tui's status files.

Why apart from the checkpoint scan: an evaluation is sdxl-tui's own artefact (the queue in
``control/evaluate`` writes ``.sdxl-tui/evals/<stem>.json`` and the images), matched here to the
trainer's checkpoints by name or epoch; a ``running`` status whose process is gone reads as
``failed``, as the queue itself would record it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import replace

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


def scan_evaluations(
    run_dir: str,
    eval_dirs: Iterable[os.DirEntry[str]],
    checkpoints: list[Checkpoint],
    problems: list[str],
    read_json: Callable[[str], object],
) -> list[Evaluation]:
    """Evaluation folders (``eval_*``) and status files (``.sdxl-tui/evals``), matched to checkpoints."""
    by_stem = {os.path.splitext(c.name)[0]: c for c in checkpoints}
    by_name = {c.name: c for c in checkpoints}

    def for_epoch(n: int) -> Checkpoint | None:
        for kind in (CheckpointKind.EPOCH, CheckpointKind.FINAL):
            for c in checkpoints:
                if c.kind is kind and c.epoch == n:
                    return c
        return None

    def match_dir(dirname: str) -> tuple[Checkpoint | None, int | None]:
        n = eval_dir_epoch(dirname)
        if n is not None:
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

    status_dir = os.fspath(evals_dir(run_dir))
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
            data = read_json(sf)
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
            out_path = os.path.join(run_dir, os.path.expanduser(str(out)))
        else:
            epoch = ck.epoch if ck is not None and ck.kind is CheckpointKind.EPOCH else None
            out_path = os.path.join(run_dir, eval_dir_name(stem, epoch))
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
