"""The scheduler's view of a run submitted to Slurm: job state, node, queue place, remote GPUs.

Why: a run on a cluster node is invisible to this machine's process table and NVML; its
liveness, its end (COMPLETED, CANCELLED, TIMEOUT…) and its GPU figures come from Slurm.
Which commands a cluster answers varies: ``squeue`` always (while the controller remembers
the job, ``MinJobAge``, 300 s by default), ``scontrol show job`` for the exit code, ``sacct``
only with an accounting database. So :func:`query_job` asks ``squeue``, then ``scontrol``
for a job that ended, then ``sacct``, and finally reads the end record the batch script
wrote (``formats/slurm.py``), so the end is known even on a cluster without ``sacct``.

Every command goes through a :data:`Runner` (injectable; the real one is
:func:`run_command`), never through a shell. Blocking; called from reader threads and
one-shot commands, at a slow interval (``refresh.scheduler_interval``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sdxl_tui.formats.statedir import RECORD_NAME, STATE_DIR, read_json, read_run_record
from sdxl_tui.model import GpuStatus, SchedulerStatus

if TYPE_CHECKING:  # formats/slurm is imported only for a run submitted to Slurm
    from sdxl_tui.formats.slurm import JobInfo

__all__ = [
    "CommandResult",
    "Runner",
    "SchedulerWatcher",
    "SlurmRecord",
    "query_job",
    "read_slurm_record",
    "remote_gpu",
    "run_command",
]

GPU_UNAVAILABLE = "GPU figures not available from here"


@dataclass(frozen=True)
class CommandResult:
    """What a command printed and how it exited (127: it could not be started)."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def first_error(self) -> str:
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        return lines[-1] if lines else f"exit status {self.returncode}"


Runner = Callable[[Sequence[str]], CommandResult]


def run_command(argv: Sequence[str], *, timeout: float = 30.0, env: Mapping[str, str] | None = None) -> CommandResult:
    """Run ``argv`` (no shell), stdin from /dev/null, output captured as text."""
    import subprocess  # only a Slurm run asks anything (a local run's status never imports it)

    try:
        res = subprocess.run(list(argv), capture_output=True, text=True, errors="replace", timeout=timeout,
                             stdin=subprocess.DEVNULL, env=None if env is None else dict(env), check=False)
    except FileNotFoundError:
        return CommandResult(127, "", f"{argv[0]}: command not found (not a Slurm login node?)")
    except OSError as exc:
        return CommandResult(126, "", f"{argv[0]}: {exc.strerror or exc}")
    except subprocess.TimeoutExpired:
        return CommandResult(124, "", f"{argv[0]}: no answer within {timeout:.0f} s")
    return CommandResult(res.returncode, res.stdout, res.stderr)


# --------------------------------------------------------------------------- the run record


@dataclass(frozen=True)
class SlurmRecord:
    """The Slurm part of a run record (``formats/statedir.RunRecord`` with ``backend = "slurm"``)."""

    job_id: str
    cluster: str | None = None
    submitted_at: float | None = None
    partition: str | None = None
    user: str | None = None
    argv: tuple[str, ...] = ()


def read_slurm_record(run_dir: str | os.PathLike[str]) -> SlurmRecord | None:
    """The job of a run submitted to Slurm, or None (a local run, no record, unreadable)."""
    r = read_run_record(run_dir)
    if r is None or r.backend != "slurm" or not r.job_id:
        return None
    return SlurmRecord(job_id=r.job_id, cluster=r.cluster, submitted_at=r.submitted_at, partition=r.partition,
                       user=r.user, argv=r.argv)


# --------------------------------------------------------------------------- asking Slurm


def _merge(base: JobInfo | None, more: JobInfo | None) -> JobInfo | None:
    """Fields of ``base``, completed (not overridden) by ``more``."""
    if base is None:
        return more
    if more is None:
        return base
    fill = {k: v for k, v in vars(more).items() if v is not None and getattr(base, k) is None}
    fill.pop("source", None)
    return replace(base, **fill)


def query_job(job_id: str, *, runner: Runner = run_command, state_dir: str | os.PathLike[str] | None = None,
              cluster: str | None = None, position: bool = True) -> SchedulerStatus:
    """Slurm's view of ``job_id``: squeue, scontrol for an ended job, sacct, the end record."""
    from sdxl_tui.formats import slurm  # only a run submitted to Slurm gets here

    problems: list[str] = []
    info: JobInfo | None = None
    res = runner(["squeue", "-h", "-t", "all", "-j", job_id, "-o", slurm.SQUEUE_FORMAT])
    if res.returncode == 0:
        info = slurm.parse_squeue(res.stdout).get(job_id)
    elif "Invalid job id" not in res.stderr:
        problems.append(f"squeue: {res.first_error}")
    if res.returncode != 127 and (info is None or info.state not in slurm.ACTIVE_STATES or info.state == "COMPLETING"):
        sc = runner(["scontrol", "show", "job", "-o", job_id])
        if sc.returncode == 0:
            info = _merge(info, slurm.parse_scontrol_job(sc.stdout))
        if info is None or info.state is None:
            acct = runner(["sacct", "-P", "-n", "-X", "-j", job_id, "-o", ",".join(slurm.SACCT_FIELDS)])
            if acct.returncode == 0:
                info = _merge(info, slurm.parse_sacct(acct.stdout, job_id))
            elif info is None:
                why = acct.first_error
                problems.append(f"job {job_id} is no longer known to the controller and sacct cannot tell ({why})"
                                if "not found" not in why else why)
    if state_dir is not None and (info is None or info.state in slurm.FINAL_STATES):
        end = read_json(Path(state_dir) / slurm.END_NAME)
        ended = slurm.parse_end_record(end, job_id) if end is not None else None
        info = _merge(info, ended) if info is not None else ended
    if info is None:
        return SchedulerStatus(kind="slurm", job_id=job_id, cluster=cluster,
                               problem="; ".join(problems) or f"job {job_id} not found")
    pos = None
    if position and info.state == "PENDING":
        args = ["squeue", "-h", "-t", "PD", "-o", "%i", "--sort=-p,i"]
        if info.partition:
            args[2:2] = ["-p", info.partition]
        order = runner(args)
        pos = slurm.queue_position(order.stdout, job_id) if order.returncode == 0 else None
    active = info.state in slurm.ACTIVE_STATES
    return SchedulerStatus(
        kind="slurm", job_id=job_id, state=info.state, reason=info.reason, node=info.nodes,
        queue_position=pos, time_limit=info.time_limit, elapsed=info.elapsed,
        submitted_at=info.submitted_at, started_at=info.started_at, ended_at=info.ended_at,
        exit_code=None if active else info.exit_code, exit_signal=None if active else info.exit_signal,
        cluster=cluster or info.cluster, user=info.user, partition=info.partition, source=info.source,
        problem="; ".join(problems) or None)


def remote_gpu(status: SchedulerStatus, *, runner: Runner = run_command, now: float | None = None) -> GpuStatus:
    """The job's GPUs, from ``srun --jobid=ID --overlap nvidia-smi`` on its node.

    A job that is not running, a node without nvidia-smi or a cluster that refuses the extra
    step all give ``available=False`` with a reason that starts "GPU figures not available
    from here", so the panel says it instead of showing this machine's GPUs.
    """
    from sdxl_tui.formats.nvidia_smi import parse_query_gpu, query_argv

    taken = time.time() if now is None else now
    if status.state != "RUNNING":
        return GpuStatus(available=False, reason=f"{GPU_UNAVAILABLE}: Slurm job {status.job_id} is not running",
                         taken_at=taken)
    res = runner(["srun", f"--jobid={status.job_id}", "--overlap", "--nodes=1", "--ntasks=1", "--quiet",
                  *query_argv()])
    gpus = parse_query_gpu(res.stdout) if res.returncode == 0 else ()
    if not gpus:
        where = f" on node {status.node}" if status.node else ""
        why = res.first_error if res.returncode != 0 else "nvidia-smi printed no GPU"
        return GpuStatus(available=False, reason=f"{GPU_UNAVAILABLE}: nvidia-smi{where} via srun: {why}",
                         taken_at=taken)
    return GpuStatus(available=True, gpus=gpus, taken_at=taken)


# --------------------------------------------------------------------------- the reader's sampler


class SchedulerWatcher:
    """Asks the scheduler about a run directory's job at most every ``interval`` seconds.

    ``sample()`` returns None for a run that was not submitted to a scheduler (no Slurm
    record), so local runs cost one ``stat`` of the run record per call.
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, runner: Runner = run_command,
                 interval: float = 10.0, gpu_interval: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.run_dir = Path(run_dir)
        self._runner = runner
        self.interval = interval
        self.gpu_interval = gpu_interval
        self._clock = clock
        self._record_sig: tuple[int, int] | None = None
        self.record: SlurmRecord | None = None
        self._status: SchedulerStatus | None = None
        self._asked_at: float | None = None
        self._gpu: GpuStatus | None = None
        self._gpu_at: float | None = None
        self._gpu_state: str | None = None

    def _reload_record(self) -> None:
        path = self.run_dir / STATE_DIR / RECORD_NAME
        try:
            st = path.stat()
        except OSError:
            self._record_sig, self.record = None, None
            return
        sig = (st.st_mtime_ns, st.st_size)
        if sig != self._record_sig:
            self._record_sig = sig
            record = read_slurm_record(self.run_dir)
            if record is None or self.record is None or record.job_id != self.record.job_id:
                self._status, self._asked_at, self._gpu, self._gpu_at = None, None, None, None
            self.record = record

    def sample(self) -> SchedulerStatus | None:
        self._reload_record()
        record = self.record
        if record is None:
            return None
        now = self._clock()
        from sdxl_tui.formats.slurm import FINAL_STATES  # a Slurm run's (local runs return above)

        final = self._status is not None and self._status.state in FINAL_STATES
        due = self._asked_at is None or now - self._asked_at >= (self.interval * 6 if final else self.interval)
        if due:
            self._asked_at = now
            self._status = query_job(record.job_id, runner=self._runner, state_dir=self.run_dir / STATE_DIR,
                                     cluster=record.cluster)
        return self._status

    def sample_gpu(self) -> GpuStatus | None:
        """The job's GPUs (slow interval, and again when the job's state changes), or None
        for a run that is not a scheduler job."""
        status = self._status
        if self.record is None or status is None:
            return None
        now = self._clock()
        stale = self._gpu_at is None or now - self._gpu_at >= self.gpu_interval
        if stale or self._gpu_state != status.state:
            self._gpu_at, self._gpu_state = now, status.state
            self._gpu = remote_gpu(status, runner=self._runner)
        return self._gpu
