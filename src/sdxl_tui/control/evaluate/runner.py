"""Start, queue and run evaluations: the detached queue runner of one run directory.

Why detached: an evaluation must survive the dashboard closing. The runner
(``python -m sdxl_tui.control.evaluate runner DIR``, new session, stdin /dev/null) runs queued
evaluations one at a time, holds ``after-training`` ones until the trainer is gone, takes a
per-user lock per GPU (``cuda`` = ``cuda:0``) so two run directories do not share one, and
exits when the queue is empty.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdxl_tui.config import Settings
from sdxl_tui.control.detached import runner_main, spawn_runner
from sdxl_tui.control.evaluate.compare import (
    CompareJob,
    compare_job,
    compare_jobs,
    compare_ready,
    finish_compare,
    grid_path_for,
    has_results,
    job_from,
    label_for,
    output_dir_of,
)
from sdxl_tui.control.evaluate.devices import acquire_device
from sdxl_tui.control.evaluate.plan import (
    DEFAULT_POLL,
    EVAL_LOG,
    MODULE,
    RUNNER_INFO,
    RUNNER_LOCK,
    RUNNER_LOG,
    WHEN,
    EvalError,
    EvalPlan,
    compare_dir,
    evals_dir,
    plan_eval,
    training_pid,
)
from sdxl_tui.control.evaluate.store import (
    EvalRecord,
    eval_record,
    eval_status,
    process_alive,
    record_from,
    status_lock,
    update_status,
)
from sdxl_tui.formats.statedir import read_json, write_json_atomic

# --------------------------------------------------------------------------- start, queue, runner


def start_eval(
    plan: EvalPlan,
    *,
    when: str = "now",
    poll_interval: float = DEFAULT_POLL,
    spawn_runner: bool = True,
) -> EvalRecord:
    """Queue ``plan`` and make sure the detached queue runner is alive.

    ``when="now"`` runs as soon as no other evaluation of this run directory is running
    (training or not: the user chose); ``"after-training"`` also waits until no trainer
    writes to the run directory. The runner outlives the caller (the dashboard).

    Raises:
        EvalError: ``when`` is unknown, or this checkpoint already has an evaluation queued
            or running.
    """
    if when not in WHEN:
        raise EvalError(f"when must be one of {', '.join(WHEN)}, not {when!r}")
    path = plan.status_path
    with status_lock(plan.run_dir):
        existing = read_json(path)
        if existing is not None:
            rec = record_from(path, existing)
            if rec.active:
                raise EvalError(f"{plan.name} already has an evaluation {rec.status} (pid {rec.pid or '-'})")
        write_json_atomic(
            path,
            {
                "checkpoint": plan.checkpoint,
                "output_dir": plan.output_dir,
                "status": "queued",
                "pid": None,
                "create_time": None,
                "argv": list(plan.argv),
                "started_at": None,
                "ended_at": None,
                "exit_code": None,
                "queued_at": time.time(),
                "when": when,
                "device": plan.device,
                "log": plan.log_path,
                "note": None,
                "env": dict(plan.env),
                "cwd": plan.cwd or plan.run_dir,
            },
        )
    if spawn_runner:
        ensure_runner(plan.run_dir, poll_interval=poll_interval)
    result = eval_record(plan.run_dir, plan.name)
    assert result is not None
    return result


def cancel_eval(run_dir: str | os.PathLike[str], name: str, *, timeout: float = 10.0) -> EvalRecord | None:
    """Cancel a queued evaluation, or stop a running one (its whole process group, after
    checking pid + create_time). Returns the updated record (None if there is none)."""
    run_dir = os.path.abspath(os.fspath(run_dir))
    path = os.path.join(evals_dir(run_dir), Path(name).stem + ".json")
    with status_lock(run_dir):
        data = read_json(path)
        if data is None:
            return None
        if data.get("status") == "queued":
            update_status(path, status="failed", note="cancelled before it started", ended_at=time.time())
            return eval_record(run_dir, name)
    pid, ctime = data.get("pid"), data.get("create_time")
    if data.get("status") == "running" and isinstance(pid, int) and process_alive(pid, ctime):
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process_alive(pid, ctime):
            time.sleep(0.05)
        if process_alive(pid, ctime):
            _signal_group(pid, signal.SIGKILL)
        with status_lock(run_dir):
            update_status(path, note="cancelled")
    return eval_record(run_dir, name)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # the evaluation was started as its own session/group leader
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def runner_pid(run_dir: str | os.PathLike[str]) -> int | None:
    """The live queue runner's pid (from its lock file, identity-checked), else None."""
    data = read_json(os.path.join(evals_dir(run_dir), RUNNER_INFO))
    if not data:
        return None
    pid, ctime = data.get("pid"), data.get("create_time")
    return int(pid) if isinstance(pid, int) and process_alive(pid, ctime) else None


def ensure_runner(run_dir: str | os.PathLike[str], *, poll_interval: float = DEFAULT_POLL) -> None:
    """Start a detached queue runner. Always: a spare one finds the lock held and exits at
    once, and asking a live runner instead could race with it exiting."""
    run_dir = os.path.abspath(os.fspath(run_dir))
    os.makedirs(evals_dir(run_dir), exist_ok=True)
    spawn_runner(MODULE, run_dir, poll=poll_interval, log_path=os.path.join(evals_dir(run_dir), RUNNER_LOG),
                 with_source_path=True)


def _next_job(run_dir: str, trainer_alive: bool) -> str | None:
    queued = []
    for rec in eval_status(run_dir):
        if rec.status == "queued" and (rec.when == "now" or not trainer_alive):
            queued.append(rec)
    queued.sort(key=lambda r: (r.queued_at or 0.0, r.name))
    return queued[0].status_path if queued else None


def _has_pending(run_dir: str) -> bool:
    if any(r.status in ("queued", "running") for r in eval_status(run_dir)):
        return True
    return any(j.status == "waiting" for j in compare_jobs(run_dir))


_RUNNER_CREATE_TIME: float | None = None  # set by run_queue: identifies this runner in status files


def _run_job(run_dir: str, path: str, poll_interval: float = DEFAULT_POLL) -> None:
    """Run one queued evaluation to its end and record it (called in the runner)."""
    data = read_json(path)
    if not data or data.get("status") != "queued":
        return
    device_lock = acquire_device(run_dir, path, str(data.get("device") or ""), poll_interval)
    if device_lock is False:
        return
    try:
        _run_locked(run_dir, path)
    finally:
        if device_lock is not None:
            device_lock.close()


def _run_locked(run_dir: str, path: str) -> None:
    with status_lock(run_dir):
        data = read_json(path)
        if not data or data.get("status") != "queued":
            return
        argv = [str(a) for a in data.get("argv") or []]
        out = str(data.get("output_dir"))
        log_path = str(data.get("log") or os.path.join(out, EVAL_LOG))
        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in (data.get("env") or {}).items()})
        env["PYTHONUNBUFFERED"] = "1"
        started = time.time()
        created = not os.path.isdir(out)
        try:
            os.makedirs(out, exist_ok=True)
            log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        except OSError as exc:
            update_status(path, status="failed", started_at=started, ended_at=time.time(), exit_code=None,
                    note=f"cannot write {log_path}: {exc.strerror or exc}")
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
        log.write(f"# sdxl-tui eval {stamp}: {shlex.join(argv)}\n".encode())
        log.flush()
        try:
            cwd = str(data.get("cwd") or run_dir)
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True, env=env,
                                    cwd=cwd if os.path.isdir(cwd) else run_dir)
        except OSError as exc:
            log.write(f"# cannot start: {exc}\n".encode())
            log.close()
            if created:  # an attempt that never started leaves no eval_* folder behind
                shutil.rmtree(out, ignore_errors=True)
            update_status(path, status="failed", started_at=started, ended_at=time.time(), exit_code=127,
                    note=f"cannot start {argv[0] if argv else '(empty argv)'}: {exc.strerror or exc}",
                    **({"log": None} if created else {}))
            return
        ctime = None
        with contextlib.suppress(Exception):
            import psutil

            ctime = psutil.Process(proc.pid).create_time()
        update_status(path, status="running", pid=proc.pid, create_time=ctime, started_at=started,
                runner_pid=os.getpid(), runner_create_time=_RUNNER_CREATE_TIME)
    code = proc.wait()
    ended = time.time()
    with contextlib.suppress(OSError):
        log.write(f"# exit status {code} after {ended - started:.1f} s\n".encode())
    log.close()
    with status_lock(run_dir):
        current = read_json(path) or {}
        note = current.get("note")
        if code < 0:
            note = note or f"killed by signal {-code}"
        update_status(path, status="done" if code == 0 else "failed", exit_code=code, ended_at=ended, note=note)


def run_queue(run_dir: str, *, poll_interval: float = DEFAULT_POLL) -> int:
    """The runner's loop: run eligible queued evaluations one by one, build waiting grids,
    exit when nothing is pending.

    An ``flock`` on ``runner.lock`` makes it the only runner of this run directory (a spare
    one exits at once); ``runner.json`` names its pid. Before exiting it releases the lock
    and looks once more, so a job queued meanwhile is never stranded: either this runner
    sees it and takes the lock back, or the runner started for it gets the lock.
    """
    import fcntl

    run_dir = os.path.abspath(run_dir)
    os.makedirs(evals_dir(run_dir), exist_ok=True)
    lock_path = os.path.join(evals_dir(run_dir), RUNNER_LOCK)
    info_path = os.path.join(evals_dir(run_dir), RUNNER_INFO)
    me: dict[str, Any] = {"pid": os.getpid(), "create_time": None, "started_at": time.time()}
    global _RUNNER_CREATE_TIME
    with contextlib.suppress(Exception):
        import psutil

        me["create_time"] = _RUNNER_CREATE_TIME = psutil.Process().create_time()
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0  # another runner owns the queue
        write_json_atomic(info_path, me)
        while True:
            trainer = training_pid(run_dir)
            job = _next_job(run_dir, trainer is not None)
            if job is not None:
                _run_job(run_dir, job, poll_interval)
                continue
            for cj in compare_jobs(run_dir):
                if cj.status == "waiting" and compare_ready(run_dir, cj):
                    finish_compare(run_dir, cj)
            if _has_pending(run_dir):
                time.sleep(poll_interval)
                continue
            with contextlib.suppress(OSError):
                os.unlink(info_path)
            fcntl.flock(fh, fcntl.LOCK_UN)
            if not _has_pending(run_dir):
                return 0
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return 0
            write_json_atomic(info_path, me)


def wait_for(run_dir: str | os.PathLike[str], name: str, *, timeout: float | None = None,
             interval: float = 0.2) -> EvalRecord | None:
    """Block until the evaluation of ``name`` is done or failed (or ``timeout`` passes)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        rec = eval_record(run_dir, name)
        if rec is None or not rec.active:
            return rec
        if deadline is not None and time.monotonic() >= deadline:
            return rec
        time.sleep(interval)


# --------------------------------------------------------------------------- comparisons


def start_compare(
    run_dir: str | os.PathLike[str],
    checkpoints: Sequence[str],
    *,
    settings: Settings | None = None,
    when: str = "now",
    rerun: bool = False,
    poll_interval: float = DEFAULT_POLL,
    **plan_kw: Any,
) -> CompareJob:
    """Evaluate several checkpoints with the same prompts and seeds, then grid them (detached).

    Checkpoints whose evaluation folder already has results are reused unless ``rerun``.
    For the built-in evaluator the prompts are fixed once (written to a prompts file shared
    by every row), so all rows render the same prompts with the same seeds. The queue runner
    builds the grid when the last evaluation ends; :func:`compare_grid` waits for it.

    Raises:
        EvalError: planning failed for one of the checkpoints (nothing is queued then).
    """
    run_dir = os.path.abspath(os.fspath(run_dir))
    checkpoints = [os.path.abspath(c) for c in checkpoints]
    if not checkpoints:
        raise EvalError("no checkpoints to compare")
    label = label_for(checkpoints)
    os.makedirs(compare_dir(run_dir), exist_ok=True)
    plans, dirs = _compare_plans(run_dir, checkpoints, label, settings=settings, rerun=rerun, plan_kw=plan_kw)
    job_path = os.path.join(compare_dir(run_dir), label + ".json")
    write_json_atomic(
        job_path,
        {
            "checkpoints": checkpoints,
            "output_dirs": dirs,
            "grid": grid_path_for(run_dir, checkpoints),
            "status": "waiting",
            "created_at": time.time(),
            "started": [p.name for p in plans],
            "error": None,
        },
    )
    for plan in plans:
        start_eval(plan, when=when, poll_interval=poll_interval, spawn_runner=False)
    ensure_runner(run_dir, poll_interval=poll_interval)
    return job_from(job_path, read_json(job_path) or {})


def _compare_plans(
    run_dir: str, checkpoints: list[str], label: str, *, settings: Settings | None, rerun: bool, plan_kw: dict[str, Any]
) -> tuple[list[EvalPlan], list[str]]:
    """(the evaluations to start, every row's output folder): a running or finished evaluation
    is reused unless ``rerun``; the built-in evaluator's rows share one prompts file."""
    plans: list[EvalPlan] = []
    dirs: list[str] = []
    prompts_file = plan_kw.pop("prompts", None)
    for ck in checkpoints:
        folder = output_dir_of(run_dir, ck)
        rec = eval_record(run_dir, Path(ck).stem)
        if rec is not None and rec.active:
            dirs.append(rec.output_dir)
            continue
        if not rerun and has_results(folder):
            dirs.append(folder)
            continue
        plan = plan_eval(run_dir, ck, settings=settings, prompts=prompts_file, check_training=False, **plan_kw)
        if plan.builtin and not (prompts_file or (settings or Settings()).eval.prompts):
            prompts_file = _shared_prompts(run_dir, label, checkpoints[0], plan)
            plan = plan_eval(run_dir, ck, settings=settings, prompts=prompts_file, check_training=False, **plan_kw)
        plans.append(plan)
        dirs.append(plan.output_dir)
    return plans, dirs


def _shared_prompts(run_dir: str, label: str, first_checkpoint: str, plan: EvalPlan) -> str:
    """Fix the built-in evaluator's prompts once for a comparison (same prompts every row)."""
    from sdxl_tui.evaluator.prompts import quote_prompt, resolve_prompts

    n = int(plan.values.get("num_samples") or 4)
    specs, _ = resolve_prompts(first_checkpoint, prompts_file=None, config_prompts_file=None, num_samples=n)
    path = os.path.join(compare_dir(run_dir), label + ".prompts.txt")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("# prompts shared by every checkpoint of this comparison\n")
        fh.writelines(quote_prompt(s) + "\n" for s in specs)
    return path


def compare_grid(
    run_dir: str | os.PathLike[str],
    checkpoints: Sequence[str],
    *,
    settings: Settings | None = None,
    wait: bool = True,
    timeout: float | None = None,
    interval: float = 0.25,
    **kw: Any,
) -> str:
    """Evaluate (or reuse) ``checkpoints`` and return the grid image's path.

    With ``wait`` it blocks until the grid exists. Without, it returns the path the runner
    will write.

    Raises:
        EvalError: planning failed, the grid could not be built, or ``timeout`` passed.
    """
    job = start_compare(run_dir, checkpoints, settings=settings, **kw)
    if not wait:
        return job.grid_path
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        current = compare_job(run_dir, job.label)
        if current is None:
            raise EvalError("the comparison job disappeared")
        if current.status == "done":
            return current.grid_path
        if current.status == "failed":
            raise EvalError(f"comparison failed: {current.error}")
        if deadline is not None and time.monotonic() >= deadline:
            raise EvalError(f"comparison not finished after {timeout} s")
        time.sleep(interval)


# --------------------------------------------------------------------------- runner entry point


def main(argv: Sequence[str] | None = None) -> int:
    about = ("sdxl-tui evaluation queue runner", "run the evaluation queue of DIR (detached; exits when empty)")
    return runner_main(argv, module=MODULE, about=about, default_poll=DEFAULT_POLL,
                       run=lambda run_dir, poll: run_queue(run_dir, poll_interval=poll))
