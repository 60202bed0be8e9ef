"""The evaluation status files: ``OUTPUT_DIR/.sdxl-tui/evals/<checkpoint stem>.json``.

Why files: the queue runner, the dashboard, ``sdxl-tui eval --status`` and the checkpoint
scanner are separate processes; each status file is replaced atomically under a lock, and a
process that died without recording its end is reported as ``failed``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdxl_tui.control.evaluate.plan import EVAL_LOG, NOT_RESULT_IMAGES, STATUSES, evals_dir
from sdxl_tui.formats.names import (
    IMAGE_SUFFIXES,
    epoch_from_name,
)
from sdxl_tui.formats.statedir import read_json, write_json_atomic


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation's status file, as the UI and ``--status`` show it."""

    name: str
    checkpoint: str
    output_dir: str
    status: str  # queued | running | done | failed
    argv: tuple[str, ...] = ()
    pid: int | None = None
    create_time: float | None = None
    queued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    when: str = "now"
    device: str = ""
    log: str = ""
    note: str | None = None  # e.g. "cancelled", "process gone without recording its end"
    images: tuple[str, ...] = ()  # result images written so far
    status_path: str = ""

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def epoch(self) -> int | None:
        return epoch_from_name(self.name)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "checkpoint": self.checkpoint,
            "output_dir": self.output_dir,
            "status": self.status,
            "pid": self.pid,
            "create_time": self.create_time,
            "argv": list(self.argv),
            "queued_at": self.queued_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "exit_code": self.exit_code,
            "when": self.when,
            "device": self.device,
            "log": self.log,
            "note": self.note,
            "images": list(self.images),
        }


# --------------------------------------------------------------------------- status files


@contextlib.contextmanager
def status_lock(run_dir: str) -> Iterator[None]:
    """Serialise read-modify-write of status files between the UI, CLI and runner."""
    import fcntl

    os.makedirs(evals_dir(run_dir), exist_ok=True)
    with open(os.path.join(evals_dir(run_dir), ".status.lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def update_status(path: str, **changes: Any) -> dict[str, Any]:
    data = read_json(path) or {}
    data.update(changes)
    write_json_atomic(path, data)
    return data


def result_images(output_dir: str) -> tuple[str, ...]:
    """Result images in an evaluation folder (sorted; the contact sheet and base_* left out)."""
    try:
        with os.scandir(output_dir) as it:
            names = sorted(
                e.name
                for e in it
                if e.is_file()
                and e.name.lower().endswith(IMAGE_SUFFIXES)
                and e.name not in NOT_RESULT_IMAGES
                and not e.name.startswith("base_")
            )
    except OSError:
        return ()
    return tuple(os.path.join(output_dir, n) for n in names)


def read_manifest(output_dir: str) -> dict[str, Any] | None:
    """The built-in evaluator's ``manifest.json`` in ``output_dir`` (None if absent)."""
    return read_json(os.path.join(output_dir, "manifest.json"))


def process_alive(pid: int | None, create_time: float | None) -> bool:
    if not pid:
        return False
    try:
        import psutil

        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - float(create_time)) < 0.01
    except Exception:  # noqa: BLE001 - NoSuchProcess, AccessDenied, bad values
        return False


def record_from(path: str, data: Mapping[str, Any]) -> EvalRecord:
    name = os.path.basename(path)[: -len(".json")]
    status = str(data.get("status", "failed"))
    note = data.get("note")
    if status not in STATUSES:
        status, note = "failed", f"unknown status {status!r}"
    pid, ctime = data.get("pid"), data.get("create_time")
    # The runner records the end a moment after the process exits; a dead process without a
    # recorded end *and* without its live runner means the runner died too.
    if (
        status == "running"
        and not process_alive(pid, ctime)
        and not process_alive(data.get("runner_pid"), data.get("runner_create_time"))
    ):
        status, note = "failed", "the evaluation process is gone without a recorded end (runner killed?)"
    out = str(data.get("output_dir") or "")
    return EvalRecord(
        name=name,
        checkpoint=str(data.get("checkpoint") or ""),
        output_dir=out,
        status=status,
        argv=tuple(str(a) for a in data.get("argv") or ()),
        pid=pid if isinstance(pid, int) else None,
        create_time=float(ctime) if isinstance(ctime, (int, float)) else None,
        queued_at=data.get("queued_at"),
        started_at=data.get("started_at"),
        ended_at=data.get("ended_at"),
        exit_code=data.get("exit_code") if isinstance(data.get("exit_code"), int) else None,
        when=str(data.get("when") or "now"),
        device=str(data.get("device") or ""),
        log=str(data.get("log") or (os.path.join(out, EVAL_LOG) if out else "")),
        note=str(note) if note else None,
        images=result_images(out) if out else (),
        status_path=path,
    )


def eval_status(run_dir: str | os.PathLike[str]) -> tuple[EvalRecord, ...]:
    """Every evaluation of the run directory, queued first in queue order, then by start."""
    folder = evals_dir(run_dir)
    try:
        with os.scandir(folder) as it:
            paths = sorted(e.path for e in it if e.name.endswith(".json") and not e.name.startswith("."))
    except OSError:
        return ()
    records = []
    for path in paths:
        data = read_json(path)
        if data is not None:
            records.append(record_from(path, data))
    order = {"running": 0, "queued": 1, "done": 2, "failed": 2}
    return tuple(
        sorted(records, key=lambda r: (order[r.status], r.queued_at or r.started_at or 0.0, r.name))
    )


def eval_record(run_dir: str | os.PathLike[str], name: str) -> EvalRecord | None:
    """The record of one checkpoint (by file stem), or None."""
    path = os.path.join(evals_dir(run_dir), Path(name).stem + ".json")
    data = read_json(path)
    return record_from(path, data) if data is not None else None


def log_tail(record: EvalRecord, lines: int = 20, *, max_bytes: int = 64 * 1024) -> tuple[str, ...]:
    """The last ``lines`` lines of an evaluation's log (``\\r`` redraws collapsed)."""
    try:
        with open(record.log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ()
    text = data.decode("utf-8", errors="replace")
    out = [seg.rsplit("\r", 1)[-1] for seg in text.replace("\r\n", "\n").split("\n")]
    out = [line for line in out if line.strip()]
    return tuple(out[-lines:])
