"""Submit, stop and stop-after-checkpoint a run on Slurm: the backend of ``backend = "slurm"``.

Why a second backend beside ``control/launch.py``: on a cluster the trainer runs on a node
this machine cannot signal, and the job is the unit the scheduler knows. So a start is a
batch script (``formats/slurm.py``) handed to ``sbatch --parsable``, the run record keeps the
job id, cluster and submit time, and a stop is ``scancel``:

* :func:`plan_submit` / :func:`submit` - the same refusals as a local start (a live trainer
  or a queued/running job for this output directory, another start in progress), the exact
  script and sbatch line for the confirmation, then the submission under the start lock.
* :func:`plan_cancel` / :func:`cancel` - the job of the run record, checked to be the one
  submitted (same id, same submit time) and the caller's own; ``scancel --full --signal=INT``
  (the trainer's Ctrl-C; sd-scripts saves nothing either way), then after the grace period a
  plain ``scancel`` of the whole job. The stop record (``last-kill.json``, ``{"stop": …}``,
  the fields of a local kill) is written before the first signal, so the state says
  "stopped by you".
* :func:`start_stop_after_checkpoint` / :func:`watch_and_cancel` - the detached watcher
  (``python -m sdxl_tui.control.watcher``, which hands Slurm runs to this module) waits on the
  shared filesystem for the next complete checkpoint, then cancels as above.

Commands run through a :data:`~sdxl_tui.sources.scheduler.Runner` (never a shell). Nothing here prints.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import shutil
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sdxl_tui.control.detached import start_watcher
from sdxl_tui.control.launch import log_rotations, rotate_logs
from sdxl_tui.formats.launch_config import LaunchConfig
from sdxl_tui.formats.slurm import (
    ACTIVE_STATES,
    END_NAME,
    BatchSpec,
    SlurmConfig,
    batch_script,
    parse_sbatch_parsable,
    sbatch_argv,
    shell_join,
)
from sdxl_tui.formats.statedir import (
    LOCK_NAME,
    RECORD_NAME,
    SLURM_SCRIPT_NAME,
    WATCHER_LOG_NAME,
    StopRecord,
    state_dir,
    write_json_atomic,
    write_stop_record,
)
from sdxl_tui.model import SchedulerStatus
from sdxl_tui.sources.procs import discover
from sdxl_tui.sources.scheduler import (
    Runner,
    SlurmRecord,
    query_job,
    read_slurm_record,
    run_command,
)

#: A job whose submit time differs from the record's by more than this is another job.
SAME_JOB_SECONDS = 120.0


def _job_name(cfg: LaunchConfig) -> str:
    name = cfg.args.get("output_name") or os.path.basename(cfg.output_dir.rstrip("/")) or "run"
    return f"sdxl-tui:{name}"


def _active_job(run_dir: str, runner: Runner) -> SchedulerStatus | None:
    record = read_slurm_record(run_dir)
    if record is None:
        return None
    status = query_job(record.job_id, runner=runner, position=False)
    return status if status.state in ACTIVE_STATES else None


# --------------------------------------------------------------------------- submit


@dataclass(frozen=True)
class SubmitPlan:
    """What a submission would do, for the confirmation and ``--dry-run``."""

    config: LaunchConfig
    spec: BatchSpec
    script: str
    script_path: str
    sbatch: tuple[str, ...]
    rotations: tuple[tuple[str, str], ...] = ()
    writes: tuple[str, ...] = ()
    refusal: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def sbatch_line(self) -> str:
        return shell_join(self.sbatch)

    @property
    def command_line(self) -> str:
        """The trainer's argv as one line (what the script runs on the node)."""
        return shell_join(self.spec.argv)

    @property
    def cwd(self) -> str:
        """The trainer's working directory on the node."""
        return self.spec.cwd


@dataclass(frozen=True)
class SubmitResult:
    ok: bool
    message: str
    job_id: str | None = None
    cluster: str | None = None
    record_path: str | None = None
    record: dict[str, Any] | None = field(default=None, compare=False)


def plan_submit(cfg: LaunchConfig, *, dependency: str | None = None, runner: Runner = run_command,
                sbatch: str = "sbatch") -> SubmitPlan:
    """Describe the submission of ``cfg`` without doing anything."""
    slurm = cfg.slurm or SlurmConfig()
    sdir = state_dir(cfg.output_dir)
    env = dict(cfg.env)
    env["PYTHONUNBUFFERED"] = "1"
    spec = BatchSpec(slurm=slurm, argv=tuple(cfg.argv()), cwd=cfg.cwd, output_dir=cfg.output_dir,
                     log_path=cfg.log_path, state_dir=str(sdir), env=tuple(env.items()),
                     job_name=_job_name(cfg), source=cfg.source)
    script_path = str(sdir / SLURM_SCRIPT_NAME)
    refusal = None
    if shutil.which(sbatch) is None:
        refusal = f"{sbatch} not found: this machine is not a Slurm login node (or load Slurm's module first)"
    else:
        active = _active_job(cfg.output_dir, runner)
        if active is not None:
            refusal = (f"Slurm job {active.job_id} for this output directory is still {active.state}; "
                       f"stop it first (sdxl-tui kill {cfg.output_dir})")
    if refusal is None:
        found = discover(cfg.output_dir)
        if found.trees:
            refusal = f"a trainer for this output directory is already running (pid {found.trees[0].pid})"
    warnings = []
    if slurm.time is None:
        warnings.append("no [slurm] time: the partition's default time limit applies (a run cut at it ends TIMEOUT)")
    if slurm.gres is None:
        warnings.append("no [slurm] gres: the job may get no GPU (e.g. gres = \"gpu:1\")")
    return SubmitPlan(
        config=cfg, spec=spec, script=batch_script(spec), script_path=script_path,
        sbatch=tuple(sbatch_argv(spec, script_path, dependency=dependency, program=sbatch)),
        rotations=tuple(log_rotations(cfg.log_path)),
        writes=(f"{script_path} (the batch script)",
                f"{cfg.log_path} (the job's stdout and stderr, appended)",
                f"{sdir / RECORD_NAME} (run record: job id, cluster, submit time)",
                f"{sdir / END_NAME} (written on the node when the trainer ends)"),
        refusal=refusal, warnings=tuple(warnings))


def cluster_name(runner: Runner = run_command) -> str | None:
    """The cluster's ``ClusterName`` (``scontrol show config``), or None."""
    res = runner(["scontrol", "show", "config"])
    for line in res.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ClusterName":
            return value.strip() or None
    return None


def submit(cfg: LaunchConfig, *, dependency: str | None = None, runner: Runner = run_command) -> SubmitResult:
    """Submit ``cfg`` with ``sbatch --parsable`` and write the run record (under the start lock)."""
    sdir = state_dir(cfg.output_dir)
    try:
        sdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return SubmitResult(False, f"cannot create {sdir}: {exc.strerror or exc}")
    lock_fd = os.open(sdir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return SubmitResult(False, f"another sdxl-tui start for {cfg.output_dir} is in progress")
        plan = plan_submit(cfg, dependency=dependency, runner=runner)
        if plan.refusal:
            return SubmitResult(False, f"refused: {plan.refusal}")
        try:
            rotate_logs(cfg.log_path)
            Path(plan.script_path).write_text(plan.script, encoding="utf-8")
            os.chmod(plan.script_path, 0o755)
            (sdir / END_NAME).unlink(missing_ok=True)
        except OSError as exc:
            return SubmitResult(False, f"cannot write the batch script: {exc.strerror or exc}")
        res = runner(list(plan.sbatch))
        if res.returncode != 0:
            return SubmitResult(False, f"sbatch failed: {res.first_error}")
        try:
            job_id, cluster = parse_sbatch_parsable(res.stdout)
        except ValueError as exc:
            return SubmitResult(False, str(exc))
        cluster = cluster or cluster_name(runner)
        now = time.time()
        record = {
            "backend": "slurm", "launch_id": uuid.uuid4().hex, "job_id": job_id, "cluster": cluster,
            "submitted_at": now, "started_at": now, "user": getpass.getuser(), "host": socket.gethostname(),
            "partition": plan.spec.slurm.partition, "argv": list(plan.spec.argv), "cwd": plan.spec.cwd,
            "output_dir": cfg.output_dir, "log": cfg.log_path, "script": plan.script_path,
            "sbatch": list(plan.sbatch), "dependency": dependency, "extra_env": dict(cfg.env),
        }
        record_path = sdir / RECORD_NAME
        write_json_atomic(record_path, record)
        where = f" on cluster {cluster}" if cluster else ""
        return SubmitResult(True, f"submitted Slurm job {job_id}{where}; log {cfg.log_path}", job_id=job_id,
                            cluster=cluster, record_path=str(record_path), record=record)
    finally:
        os.close(lock_fd)


# --------------------------------------------------------------------------- cancel


@dataclass(frozen=True)
class CancelPlan:
    """The job a stop would cancel, or why it will not."""

    run_dir: str
    record: SlurmRecord | None
    status: SchedulerStatus | None
    refusal: str | None = None

    @property
    def empty(self) -> bool:
        return self.refusal is not None

    def describe(self) -> list[str]:
        s = self.status
        if s is None or self.refusal:
            return [f"refused: {self.refusal}"]
        where = f" on {s.node}" if s.node else ""
        return [f"Slurm job {s.job_id}" + (f" (cluster {s.cluster})" if s.cluster else "")
                + f": {s.state}{where}, user {s.user or '?'}, partition {s.partition or '?'}"]


def plan_cancel(run_dir: str | os.PathLike[str], *, runner: Runner = run_command,
                user: str | None = None) -> CancelPlan:
    """The recorded job, checked: still queued or running, the same job, the caller's own."""
    target = os.path.realpath(os.fspath(run_dir))
    record = read_slurm_record(target)
    if record is None:
        return CancelPlan(target, None, None, "no Slurm job was submitted for this directory by sdxl-tui")
    status = query_job(record.job_id, runner=runner, state_dir=state_dir(target), cluster=record.cluster,
                       position=False)
    if status.state not in ACTIVE_STATES:
        why = status.state or status.problem or "unknown"
        return CancelPlan(target, record, status, f"Slurm job {record.job_id} is not queued or running ({why})")
    if (record.submitted_at is not None and status.submitted_at is not None
            and abs(status.submitted_at - record.submitted_at) > SAME_JOB_SECONDS):
        return CancelPlan(target, record, status,
                          f"Slurm job {record.job_id} was submitted at another time than the recorded job: "
                          "it is not the run sdxl-tui submitted and is left alone")
    me = user or getpass.getuser()
    if status.user is not None and status.user != me:
        return CancelPlan(target, record, status, f"Slurm job {record.job_id} belongs to {status.user}, not to {me}")
    return CancelPlan(target, record, status)


@dataclass(frozen=True)
class CancelResult:
    ok: bool
    message: str
    state: str | None = None
    signals: tuple[str, ...] = ()


def _wait_inactive(job_id: str, seconds: float, runner: Runner) -> SchedulerStatus:
    deadline = time.monotonic() + seconds
    while True:
        status = query_job(job_id, runner=runner, position=False)
        if status.state not in ACTIVE_STATES or time.monotonic() >= deadline:
            return status
        time.sleep(0.5)


def cancel(plan: CancelPlan, *, grace: float = 10.0, term_wait: float = 60.0, runner: Runner = run_command,
           by: str = "sdxl-tui kill", how: str = "kill", checkpoint: str | None = None,
           requested_at: float | None = None, progress: Callable[[str], None] | None = None,
           interrupt: bool = True) -> CancelResult:
    """Stop the planned job: ``scancel --full --signal=INT``, then ``scancel`` after ``grace``.

    A pending job has nothing to interrupt: it is cancelled at once (so is any job with
    ``interrupt=False``, ``sdxl-tui kill --signal TERM``). ``term_wait`` bounds the wait for
    Slurm's own SIGTERM, KillWait and SIGKILL after the plain ``scancel``.
    """
    say = progress or (lambda _msg: None)
    if plan.record is None or plan.status is None or plan.refusal:
        return CancelResult(False, f"nothing to stop: {plan.refusal}")
    job = plan.record.job_id
    pending = plan.status.state == "PENDING" or not interrupt
    signals: list[str] = []
    stop = StopRecord(by=by, requested_at=requested_at or time.time(), signal=None if pending else "SIGINT",
                      how=how, checkpoint=checkpoint, backend="slurm", job_id=job)
    write_stop_record(plan.run_dir, stop)
    status = plan.status
    if not pending:
        say(f"scancel --full --signal=INT {job}; waiting up to {grace:g} s")
        res = runner(["scancel", "--full", "--signal=INT", job])
        signals.append("SIGINT")
        if res.returncode == 0:
            status = _wait_inactive(job, grace, runner)
    if status.state in ACTIVE_STATES:
        say(f"scancel {job}; waiting up to {term_wait:g} s")
        res = runner(["scancel", job])
        signals.append("SIGTERM")
        if res.returncode != 0:
            write_stop_record(plan.run_dir, replace(stop, result="incomplete", signals=tuple(signals)))
            return CancelResult(False, f"scancel failed: {res.first_error}", status.state, tuple(signals))
        status = _wait_inactive(job, term_wait, runner)
    done = status.state not in ACTIVE_STATES
    write_stop_record(plan.run_dir, replace(stop, result="stopped" if done else "incomplete", signals=tuple(signals),
                                            ended_at=time.time() if done else None))
    if not done:
        return CancelResult(False, f"Slurm job {job} is still {status.state}", status.state, tuple(signals))
    return CancelResult(True, f"Slurm job {job} ended: {status.state or 'gone'}", status.state, tuple(signals))


# --------------------------------------------------------------------------- stop after checkpoint


def start_stop_after_checkpoint(run_dir: str | os.PathLike[str], *, grace: float = 10.0, poll: float = 2.0,
                                settle: float = 2.0, by: str = "sdxl-tui kill --after-checkpoint",
                                runner: Runner = run_command, wait_seconds: float = 15.0) -> tuple[bool, str]:
    """Start the detached watcher for a Slurm run; ``(ok, message)``."""
    from sdxl_tui.control.stop_after import (
        WATCHER_MODULE,
        complete_checkpoints,
        watch_path,
        watcher_status,
    )

    plan = plan_cancel(run_dir, runner=runner)
    if plan.refusal:
        return False, f"nothing to stop: {plan.refusal}"
    target = plan.run_dir
    current = watcher_status(target)
    if current and current.get("alive"):
        return False, (f"a stop-after-checkpoint watcher is already waiting (pid {current['pid']}); "
                       "cancel it with `sdxl-tui kill DIR --cancel`")
    token = f"{time.time():.6f}-{os.getpid()}"
    baseline = complete_checkpoints(target)
    cmd = [sys.executable, "-m", WATCHER_MODULE, "--run-dir", target, "--token", token,
           "--baseline", json.dumps(baseline), "--timeout-int", str(grace), "--poll", str(poll),
           "--settle", str(settle)]
    data = start_watcher(cmd, target=target, log_path=state_dir(target) / WATCHER_LOG_NAME,
                         report_path=watch_path(target), token=token, wait_seconds=wait_seconds)
    if data is not None:
        if data.get("state") == "failed":
            return False, f"the watcher failed: {data.get('message')}"
        return True, (f"watcher pid {data.get('pid')} will cancel Slurm job "
                      f"{plan.record.job_id if plan.record else '?'}"
                      f" after the next complete checkpoint (now {len(baseline)} on disk)")
    return False, f"the watcher did not report within {wait_seconds:.0f} s"


class _Cancelled(Exception):
    pass


def watch_and_cancel(run_dir: str, *, token: str, baseline: Sequence[str], grace: float, poll: float,
                     settle: float, runner: Runner = run_command) -> int:
    """The watcher's loop for a Slurm run (called in the detached watcher process)."""
    import psutil  # type: ignore[import-untyped, unused-ignore]

    from sdxl_tui.control.stop_after import CheckpointWaiter, watch_path

    path = watch_path(run_dir)
    record = read_slurm_record(run_dir)
    saves_state = bool(record and "--save_state" in record.argv) or any(
        e.is_dir() and e.name.endswith("-state") for e in os.scandir(run_dir))
    info: dict[str, Any] = {
        "token": token, "pid": os.getpid(), "create_time": psutil.Process().create_time(), "run_dir": run_dir,
        "started_at": time.time(), "baseline": list(baseline), "saves_state": saves_state,
        "job_id": record.job_id if record else None, "trainer_pid": None, "state": "waiting",
        "message": "waiting for the next complete checkpoint",
    }
    write_json_atomic(path, info)

    def on_term(_signum: int, _frame: object) -> None:
        raise _Cancelled()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    waiter = CheckpointWaiter(run_dir, baseline=baseline, saves_state=saves_state, settle=settle)
    last_check = 0.0
    try:
        while (name := waiter.poll()) is None:
            if time.monotonic() - last_check > 10.0:
                last_check = time.monotonic()
                if plan_cancel(run_dir, runner=runner).refusal:
                    info.update(state="trainer-gone", ended_at=time.time(),
                                message="the Slurm job ended before another checkpoint; nothing stopped")
                    write_json_atomic(path, info)
                    return 0
            time.sleep(poll)
    except _Cancelled:
        info.update(state="cancelled", ended_at=time.time(), message="cancelled; the run continues")
        write_json_atomic(path, info)
        return 0
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    info.update(state="stopping", checkpoint=name, checkpoint_at=time.time(), message=f"{name} is complete; stopping")
    write_json_atomic(path, info)
    result = cancel(plan_cancel(run_dir, runner=runner), grace=grace, runner=runner,
                    by="sdxl-tui kill --after-checkpoint", how="stop-after-checkpoint", checkpoint=name,
                    requested_at=float(info["started_at"]))
    info.update(state="done" if result.ok else "incomplete", ended_at=time.time(),
                message=f"stopped after {name}: {result.message}", new_checkpoints=waiter.new_checkpoints())
    write_json_atomic(path, info)
    return 0 if result.ok else 1
