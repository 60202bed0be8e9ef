"""What a scheduler job's state means for the run's state: the merge of Slurm and the files.

Why a merge and not a replacement: the files say what the trainer did (step 412, a CUDA OOM
traceback, ``model saved.``), the scheduler says what happened to the job around it (still
queued, on node gpu07, killed at its time limit, its node died, its host memory limit hit).
The reader first lets the job stand in for the process table (:func:`scheduler_liveness`:
a RUNNING job is a live trainer, an ended job an ended one, with its exit code), decides the
state from the files as for a local run, then :func:`merge_scheduler_state` corrects what
only the scheduler knows. Pure.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sdxl_tui.model import Alert, RunState, SchedulerStatus, Severity, StateDir

__all__ = ["merge_scheduler_state", "scheduler_alert", "scheduler_liveness"]

#: Live scheduler states that are not "running on a node" yet.
_QUEUED = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"})
_ABNORMAL = frozenset({"TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "FAILED", "BOOT_FAIL", "DEADLINE"})


def scheduler_liveness(sched: SchedulerStatus | None, alive: bool | None, exit_code: int | None,
                       exit_signal: int | None) -> tuple[bool | None, int | None, int | None]:
    """``(alive, exit_code, exit_signal)`` for the state machine, the job standing in for the
    process table; a trainer this machine can see itself (the node is this host) wins."""
    if sched is None or sched.state is None:
        return alive, exit_code, exit_signal
    from sdxl_tui.formats.slurm import ACTIVE_STATES  # only for a Slurm run (status of a local one skips it)

    if sched.state in ACTIVE_STATES:
        if sched.state in _QUEUED:
            return alive, exit_code, exit_signal
        return (True if alive is None else alive), None, None
    if alive:
        return alive, exit_code, exit_signal
    return False, sched.exit_code, sched.exit_signal


def _at(step: int | None) -> str:
    return f" at step {step}" if step is not None else ""


def _ago(ts: float | None, now: float) -> str:
    if ts is None:
        return ""
    seconds = max(0.0, now - ts)
    if seconds < 90:
        return f", submitted {seconds:.0f} s ago"
    return f", submitted {seconds / 60:.0f} min ago" if seconds < 7200 else f", submitted {seconds / 3600:.1f} h ago"


def resume_hint(states: Sequence[StateDir]) -> str:
    """How to continue from the newest complete ``-state`` folder (sd-scripts ``--resume``)."""
    done = [s for s in states if s.complete]
    if not done:
        return ("no resumable state was saved (add save_state = true to [args]); start it again with a "
                "longer [slurm] time")
    newest = max(done, key=lambda s: (s.step or -1, s.epoch or -1))
    return f"resume with resume = \"{newest.path}\" in [args] and a longer [slurm] time (sbatch --time)"


def _job(s: SchedulerStatus) -> str:
    return f"Slurm job {s.job_id}"


def _queued(s: SchedulerStatus, now: float) -> str:
    why = f" ({s.reason})" if s.reason else ""
    place = f", #{s.queue_position} in the queue" if s.queue_position else ""
    return f"{_job(s)} {s.state.lower() if s.state else 'queued'}{why}{place}{_ago(s.submitted_at, now)}"


def _running(s: SchedulerStatus) -> str:
    from sdxl_tui.formats.slurm import format_time_limit

    where = f" on {s.node}" if s.node else ""
    used = ""
    if s.elapsed is not None:
        used = f" ({format_time_limit(s.elapsed)}"
        used += f" of {format_time_limit(s.time_limit)})" if s.time_limit is not None else ")"
    return f"{_job(s)} {s.state.lower() if s.state else 'running'}{where}{used}"


def merge_scheduler_state(state: RunState, reason: str, sched: SchedulerStatus | None, *, step: int | None,
                          states: Sequence[StateDir] = (), stopped: str | None = None,
                          now: float | None = None) -> tuple[RunState, str]:
    """The run's state once the scheduler's view is taken into account (see module docstring)."""
    if sched is None:
        return state, reason
    from sdxl_tui.formats.slurm import ACTIVE_STATES

    now = time.time() if now is None else now
    s = sched.state
    job = _job(sched)
    if s is None:
        return state, f"{reason}; {job}: {sched.problem}" if sched.problem else reason
    if s in _QUEUED:
        return RunState.WAITING, _queued(sched, now)
    if s == "SUSPENDED":
        return RunState.STALLED, f"{job} suspended by Slurm{_at(step)}"
    if s in ACTIVE_STATES:
        if state is RunState.WAITING:
            return RunState.LOADING, f"{_running(sched)}; no log yet"
        return state, f"{_running(sched)}; {reason}"
    return _ended(state, reason, sched, step=step, states=states, stopped=stopped)


def _ended(state: RunState, reason: str, sched: SchedulerStatus, *, step: int | None,
           states: Sequence[StateDir], stopped: str | None) -> tuple[RunState, str]:
    s, job, at = sched.state, _job(sched), _at(step)
    node = f" on {sched.node}" if sched.node else ""
    if state is RunState.FINISHED:
        return state, f"{reason}; {job} {s}"
    if s == "CANCELLED":
        if stopped:
            return RunState.STOPPED, f"stopped by you ({stopped}){at}; {job} CANCELLED"
        return (
            RunState.INTERRUPTED,
            f"{job} CANCELLED (scancel by someone other than sdxl-tui){at}; no final checkpoint",
        )
    if s == "TIMEOUT":
        from sdxl_tui.formats.slurm import format_time_limit

        limit = f" ({format_time_limit(sched.time_limit)})" if sched.time_limit is not None else ""
        return RunState.INTERRUPTED, f"hit the time limit{limit}{at}: {resume_hint(states)}"
    if s == "OUT_OF_MEMORY":
        return RunState.FAILED, (f"host out of memory{node}{at}: the job passed its Slurm memory limit "
                                 "(--mem; host RAM, not GPU VRAM); raise [slurm] mem")
    if s == "NODE_FAIL":
        return RunState.FAILED, f"node{node.replace(' on', '')} failed (Slurm NODE_FAIL){at}: {resume_hint(states)}"
    if s == "PREEMPTED":
        return RunState.INTERRUPTED, f"preempted by Slurm for another job{at}: {resume_hint(states)}"
    if state is RunState.FAILED:
        return state, f"{reason}; {job} {s}"
    if s == "FAILED":
        how = f"exit code {sched.exit_code}" if sched.exit_code is not None else (
            f"signal {sched.exit_signal}" if sched.exit_signal is not None else "no exit code")
        return RunState.FAILED, f"{job} FAILED ({how}){at}, without the final checkpoint"
    if s == "COMPLETED":
        return state, f"{reason}; {job} COMPLETED"
    return RunState.FAILED, f"{job} ended {s}{at}"


def scheduler_alert(state: RunState, reason: str, sched: SchedulerStatus | None, at: float | None) -> Alert | None:
    """An alert for a job that the scheduler ended abnormally (time limit, memory, node, preemption)."""
    if sched is None or sched.state not in _ABNORMAL:
        return None
    fixes = {
        "TIMEOUT": "submit again with a longer [slurm] time, resuming from the last -state folder",
        "OUT_OF_MEMORY": "raise [slurm] mem, or lower max_data_loader_n_workers / cache latents to disk",
        "NODE_FAIL": "submit again (resume from the last -state folder); tell the cluster admins about the node",
        "PREEMPTED": "submit again (resume from the last -state folder), or use a QOS that is not preemptible",
    }
    severity = Severity.WARNING if sched.state in ("TIMEOUT", "PREEMPTED") else Severity.ERROR
    return Alert(kind="slurm", severity=severity, message=reason if state.is_over else f"{_job(sched)} {sched.state}",
                 fix=fixes.get(sched.state or "", "see the end of training.log and `scontrol show job`"),
                 key=f"slurm:{sched.job_id}:{sched.state}", at=at)
