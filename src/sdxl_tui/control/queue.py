"""The queue for the night: runs that start one after another, locally or on Slurm.

Why: the card's night is a sequence (the SD1.5 search, then SDXL, then evaluation), and
nobody wants to wake up at 3 am to start the next run. ``sdxl-tui queue add`` appends a
launch config to a per-user queue (``formats/queue.py``) and makes sure the detached
*runner* is alive (``python -m sdxl_tui.control.queue runner DIR``: new session, one
instance by ``flock``, exits when nothing is left, like the evaluation runner). Each entry
waits for its predecessor (the previous entry, or ``--after`` an entry or a run directory):

* a **local** run starts (``control/launch.py``, after the same preflight as ``start``) once
  the predecessor has ended, no queued local run is still training, and the GPU is free
  (NVML: less than :data:`GPU_BUSY_BYTES` in use; no NVML counts as free);
* a **Slurm** run is submitted at once with ``--dependency=afterok:JOB`` on a Slurm
  predecessor (``afterany`` when the predecessor says ``--on-failure continue``), so Slurm
  starts it the moment the previous job ends; a job whose dependency can never be satisfied
  is cancelled and marked skipped;
* a predecessor that did not finish (its state is not ``finished``) stops the entries after
  it (``skipped``) unless it was added with ``--on-failure continue``;
* ``--eval SPEC`` queues evaluations of the finished run's checkpoints on the existing
  evaluation queue (``control/evaluate.py``): ``last``, ``6-10``, ``6,8,10``, file names.

Nothing here prints; the runner writes what it does into each entry's ``message``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sdxl_tui.control.detached import runner_main, spawn_runner
from sdxl_tui.formats.launch_config import LaunchConfigError, load_launch_config
from sdxl_tui.formats.queue import ACTIVE, ON_FAILURE, read_queue, write_entry
from sdxl_tui.formats.slurm import ACTIVE_STATES, FINAL_STATES
from sdxl_tui.formats.statedir import state_dir
from sdxl_tui.model import QueueEntry, RunState
from sdxl_tui.sources.scheduler import Runner, query_job, read_slurm_record, run_command

MODULE = "sdxl_tui.control.queue"
RUNNER_LOCK = "runner.lock"
RUNNER_INFO = "runner.info"
RUNNER_LOG = "runner.log"
#: A GPU with more memory than this in use is busy: a queued local run waits for it.
GPU_BUSY_BYTES = 2 << 30
DEFAULT_POLL = 5.0

#: How the runner asks about the world (injectable for tests of the decisions).
GpuFree = Callable[[], tuple[bool, str]]


class QueueError(ValueError):
    """A queue action cannot be done; the message says why and what to do."""


def _now() -> float:
    return time.time()


def _next_id(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    taken = [int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit()]
    n = max(taken, default=0) + 1
    while True:  # O_EXCL: two adds at once never get the same id
        try:
            os.close(os.open(folder / f"{n}.json", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return str(n)
        except FileExistsError:
            n += 1


def add(folder: str | os.PathLike[str], launch_file: str | os.PathLike[str], *, after: str | None = None,
        on_failure: str = "stop", evaluate: str | None = None) -> QueueEntry:
    """Append a run to the queue (the caller then starts the runner with :func:`ensure_runner`).

    Raises:
        QueueError: an unreadable launch config, an unknown ``--after``, a bad ``--on-failure``.
    """
    q = Path(folder)
    if on_failure not in ON_FAILURE:
        raise QueueError(f"--on-failure must be one of {', '.join(ON_FAILURE)}, not {on_failure!r}")
    path = Path(launch_file).expanduser().resolve()
    try:
        cfg = load_launch_config(path)
    except LaunchConfigError as exc:
        raise QueueError(str(exc)) from None
    entries = {e.id: e for e in read_queue(q)}
    if after is not None and after not in entries:
        run = Path(after).expanduser()
        if not run.is_dir():
            raise QueueError(f"--after {after}: neither a queue entry ({', '.join(entries) or 'none yet'}) "
                             "nor a run directory")
        after = str(run.resolve())
    entry = QueueEntry(id=_next_id(q), launch_file=str(path), output_dir=cfg.output_dir, backend=cfg.backend,
                       after=after, on_failure=on_failure, evaluate=evaluate, added_at=_now(),
                       message="waiting for its turn")
    write_entry(q, entry)
    return entry


def remove(folder: str | os.PathLike[str], entry_id: str, *, runner: Runner = run_command) -> QueueEntry:
    """Take an entry out: a waiting one, or a submitted Slurm job that has not started (scancel).

    Raises:
        QueueError: no such entry, or it is running (stop it with ``sdxl-tui kill``).
    """
    q = Path(folder)
    entry = next((e for e in read_queue(q) if e.id == entry_id), None)
    if entry is None:
        raise QueueError(f"no queue entry {entry_id}")
    if entry.status not in ACTIVE:
        raise QueueError(f"entry {entry_id} is already {entry.status}")
    if entry.status == "running" or (entry.status == "submitted" and entry.job_id and
                                     query_job(entry.job_id, runner=runner).state not in ("PENDING", None)):
        raise QueueError(f"entry {entry_id} is running: stop it with `sdxl-tui kill {entry.output_dir}`")
    if entry.status == "submitted" and entry.job_id:
        res = runner(["scancel", entry.job_id])
        if res.returncode != 0:
            raise QueueError(f"scancel {entry.job_id} failed: {res.first_error}")
    removed = replace(entry, status="removed", ended_at=_now(), message="removed by you")
    write_entry(q, removed)
    return removed


# --------------------------------------------------------------------------- decisions


def _predecessor(entry: QueueEntry, entries: Sequence[QueueEntry]) -> QueueEntry | str | None:
    """The entry (or the run directory) ``entry`` waits for; None: it waits for nothing."""
    if entry.after is not None:
        target = next((e for e in entries if e.id == entry.after), None)
        if target is None:
            return entry.after  # a run directory outside the queue
        return None if target.status == "removed" else target
    before = [e for e in entries if e.id != entry.id and int(e.id) < int(entry.id) and e.status != "removed"]
    return before[-1] if before else None


def run_verdict(output_dir: str) -> tuple[bool, str]:
    """Did the run in ``output_dir`` finish? ``(ok, "state: reason")`` from what its files say."""
    from sdxl_tui.sources.rundir import read_run

    snap = read_run(output_dir, gpu=False)
    return snap.state is RunState.FINISHED, f"{snap.state.value}: {snap.state_reason}"


def _outside_run(run_dir: str, runner: Runner) -> tuple[str, str | None]:
    """``("active" | "ok" | "failed", slurm job id)`` of a run directory outside the queue."""
    from sdxl_tui.sources.procs import discover

    record = read_slurm_record(run_dir)
    if record is not None:
        state = query_job(record.job_id, runner=runner, position=False).state
        if state in ACTIVE_STATES:
            return "active", record.job_id
    elif discover(run_dir).trees:
        return "active", None
    return ("ok" if run_verdict(run_dir)[0] else "failed"), (record.job_id if record else None)


def gpu_free() -> tuple[bool, str]:
    """Whether this machine's GPUs are free for the next local run (no NVML: free)."""
    try:
        from sdxl_tui.sources.gpu import sample_gpus

        status = sample_gpus()
    except Exception as exc:  # noqa: BLE001 - a broken NVML must not stop the queue
        return True, f"GPU not checked ({exc})"
    busy = [g for g in status.gpus if (g.memory_used or 0) > GPU_BUSY_BYTES]
    if busy:
        used = ", ".join(f"GPU {g.index}: {(g.memory_used or 0) / 2**30:.1f} GiB in use" for g in busy)
        return False, f"waiting for the GPU ({used})"
    return True, "GPU free"


class _Step:
    """One pass of the runner over the queue (state in the entries' files)."""

    def __init__(self, folder: Path, runner: Runner, gpu: GpuFree, settings: Any) -> None:
        self.folder, self.runner, self.gpu, self.settings = folder, runner, gpu, settings

    def save(self, entry: QueueEntry, **changes: Any) -> QueueEntry:
        new = replace(entry, **changes)
        if new != entry:
            write_entry(self.folder, new)
        return new

    def run(self) -> bool:
        """Advance every entry once; True while some entry still needs the runner."""
        for entry in read_queue(self.folder):
            if entry.status == "running":
                self._check_local(entry)
            elif entry.status == "submitted":
                self._check_job(entry)
        for entry in read_queue(self.folder):  # again: ends above may free the next
            if entry.status == "waiting":
                self._consider(entry, read_queue(self.folder))
        return any(e.status in ACTIVE for e in read_queue(self.folder))

    def _finish(self, entry: QueueEntry) -> None:
        """Record the end in one write: a reader that sees "done" sees its evaluations too."""
        ended = _now()
        ok, verdict = run_verdict(entry.output_dir)
        message = f"{verdict}; {self._evaluate(entry)}" if ok and entry.evaluate else verdict
        self.save(entry, status="done" if ok else "failed", ended_at=ended, message=message)

    def _check_local(self, entry: QueueEntry) -> None:
        from sdxl_tui.sources.procs import discover

        if not discover(entry.output_dir).trees:
            self._finish(entry)

    def _check_job(self, entry: QueueEntry) -> None:
        if not entry.job_id:
            return
        status = query_job(entry.job_id, runner=self.runner, position=False,
                           state_dir=state_dir(entry.output_dir))
        if status.state == "PENDING" and status.reason == "DependencyNeverSatisfied":
            self.runner(["scancel", entry.job_id])
            self.save(entry, status="skipped", ended_at=_now(),
                      message=f"the run before it did not finish: Slurm job {entry.job_id} cancelled before it started")
        elif status.state in FINAL_STATES or (status.state is None and status.problem is not None):
            self._finish(entry)
        elif status.state is not None:
            self.save(entry, message=f"Slurm job {entry.job_id} {status.state}"
                      + (f" ({status.reason})" if status.reason and status.state == "PENDING" else ""))

    def _consider(self, entry: QueueEntry, entries: Sequence[QueueEntry]) -> None:
        pred = _predecessor(entry, entries)
        job = None
        if pred is None:
            state = "ok"
        elif isinstance(pred, str):
            state, job = _outside_run(pred, self.runner)
        else:
            state = {"done": "ok", "failed": "failed", "skipped": "failed"}.get(pred.status, "active")
            job = pred.job_id if pred.status == "submitted" else None
        name = pred if isinstance(pred, str) else f"#{pred.id}" if pred is not None else ""
        continues = isinstance(pred, QueueEntry) and pred.on_failure == "continue" and pred.status != "skipped"
        if state == "failed" and not continues:
            self.save(entry, status="skipped", ended_at=_now(),
                      message=f"{name} did not finish; skipped (add it with --on-failure continue to go on anyway)")
        elif state == "active" and entry.backend == "slurm" and job is not None:
            self._submit(entry, f"{'afterany' if continues else 'afterok'}:{job}")
        elif state == "active":
            self.save(entry, message=f"waiting for {name} to end")
        elif entry.backend == "slurm":
            self._submit(entry, None)
        else:
            self._start_local(entry, entries)

    def _submit(self, entry: QueueEntry, dependency: str | None) -> None:
        from sdxl_tui.control.slurm import submit

        try:
            cfg = load_launch_config(entry.launch_file)
        except LaunchConfigError as exc:
            self.save(entry, status="failed", ended_at=_now(), message=str(exc))
            return
        result = submit(cfg, dependency=dependency, runner=self.runner)
        if not result.ok:
            self.save(entry, status="failed", ended_at=_now(), message=result.message)
            return
        self.save(entry, status="submitted", job_id=result.job_id, dependency=dependency, started_at=_now(),
                  message=result.message)

    def _start_local(self, entry: QueueEntry, entries: Sequence[QueueEntry]) -> None:
        from sdxl_tui.control.launch import launch, preflight, report_has_errors
        from sdxl_tui.sources.procs import discover

        busy = next((e for e in entries if e.status == "running" and e.backend == "local"), None)
        if busy is not None:
            self.save(entry, message=f"waiting for #{busy.id} to end (one local run at a time)")
            return
        if discover(entry.output_dir).trees:
            self.save(entry, message=f"waiting: a trainer is already running for {entry.output_dir}")
            return
        free, why = self.gpu()
        if not free:
            self.save(entry, message=why)
            return
        try:
            cfg = load_launch_config(entry.launch_file)
        except LaunchConfigError as exc:
            self.save(entry, status="failed", ended_at=_now(), message=str(exc))
            return
        report, _note = preflight(cfg)
        if report_has_errors(report):
            codes = ", ".join(f.code for f in getattr(report, "errors", ()))
            self.save(entry, status="failed", ended_at=_now(), message=f"preflight errors: {codes}")
            return
        result = launch(cfg)
        self.save(entry, status="running" if result.ok else "failed", started_at=_now(),
                  ended_at=None if result.ok else _now(), message=result.message)

    def _evaluate(self, entry: QueueEntry) -> str:
        from sdxl_tui.control.evaluate import (
            EvalError,
            list_checkpoints,
            parse_selection,
            plan_eval,
            start_eval,
        )

        try:
            spec = entry.evaluate or ""
            if spec == "last":
                files = list_checkpoints(entry.output_dir)
                if not files:
                    return "no checkpoint to evaluate"
                paths = [max(files, key=os.path.getmtime)]
            else:
                paths = parse_selection(entry.output_dir, spec)
            for path in paths:
                start_eval(plan_eval(entry.output_dir, path, settings=self.settings), when="now")
        except (EvalError, OSError) as exc:
            return f"evaluation not queued: {exc}"
        return f"{len(paths)} evaluation(s) queued ({', '.join(os.path.basename(p) for p in paths)})"


def step(folder: str | os.PathLike[str], *, runner: Runner = run_command, gpu: GpuFree = gpu_free,
         settings: Any = None) -> bool:
    """One pass over the queue; True while some entry is waiting, running or submitted."""
    return _Step(Path(folder), runner, gpu, settings).run()


# --------------------------------------------------------------------------- the runner


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def runner_pid(folder: str | os.PathLike[str]) -> int | None:
    """The live runner's pid (identity-checked by create time and command line), else None."""
    import psutil  # type: ignore[import-untyped, unused-ignore]

    data = _read_json(Path(folder) / RUNNER_INFO)
    if not data or not isinstance(data.get("pid"), int):
        return None
    try:
        proc = psutil.Process(data["pid"])
        if abs(proc.create_time() - float(data.get("create_time") or 0)) > 0.05 or MODULE not in proc.cmdline():
            return None
        return None if proc.status() == psutil.STATUS_ZOMBIE else int(data["pid"])
    except (psutil.Error, OSError):
        return None


def ensure_runner(folder: str | os.PathLike[str], *, poll: float = DEFAULT_POLL) -> None:
    """Start a detached runner (a spare one finds the lock held and exits at once)."""
    q = Path(folder)
    q.mkdir(parents=True, exist_ok=True)
    spawn_runner(MODULE, str(q), poll=poll, log_path=q / RUNNER_LOG)


def run_queue(folder: str | os.PathLike[str], *, poll: float = DEFAULT_POLL) -> int:
    """The runner's loop: step until nothing is left; one runner per queue (flock)."""
    import psutil  # type: ignore[import-untyped, unused-ignore]

    from sdxl_tui.config import load_settings

    q = Path(folder)
    q.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "create_time": psutil.Process().create_time(), "started_at": _now()}
    try:
        settings: Any = load_settings()
    except Exception:  # noqa: BLE001 - evaluations then use their defaults
        settings = None
    with open(q / RUNNER_LOCK, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0
        (q / RUNNER_INFO).write_text(json.dumps(me), encoding="utf-8")
        while True:
            try:
                pending = step(q, settings=settings)
            except Exception as exc:  # noqa: BLE001 - log it and try again: the queue must go on
                print(f"{time.strftime('%H:%M:%S')} queue step failed: {type(exc).__name__}: {exc}", flush=True)
                pending = True
            if pending:
                time.sleep(poll)
                continue
            with contextlib.suppress(OSError):
                (q / RUNNER_INFO).unlink()
            fcntl.flock(fh, fcntl.LOCK_UN)
            if not any(e.status in ACTIVE for e in read_queue(q)):
                return 0
            try:  # an entry was added while we were leaving: stay
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return 0
            (q / RUNNER_INFO).write_text(json.dumps(me), encoding="utf-8")


def _main(argv: Sequence[str] | None = None) -> int:
    about = ("sdxl-tui queue runner", "run the queue in DIR (detached; exits when nothing is left)")
    return runner_main(argv, module=MODULE, about=about, default_poll=DEFAULT_POLL,
                       run=lambda folder, poll: run_queue(folder, poll=poll))


if __name__ == "__main__":
    sys.exit(_main())
