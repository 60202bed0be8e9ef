"""The pure half of the run reader: what the sub-readers saw -> one ``RunSnapshot``.

Why pure: every rule that combines the readers' facts (which configuration wins, which step
and epoch the run is at, where the loss comes from, the state, the ETA, the alerts) is a
decision about plain data. Kept apart from the I/O, each rule is tested from hand-built
:class:`Observations` in milliseconds, and :class:`~sdxl_tui.sources.rundir.RunReader` is
left with one job: asking each sub-reader what changed.

The only memory across refreshes is the previous snapshot: the loss at each checkpoint once
the series has passed it (display points are downsampled later, the value must not move),
and the step at which the current exception line was first seen (an exception the live
trainer survives does not end the run).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from sdxl_tui.formats.cmdline import OptionValues
from sdxl_tui.formats.names import LOG_NAME
from sdxl_tui.formats.statedir import RunRecord, StopRecord
from sdxl_tui.model import (
    Checkpoint,
    CheckpointKind,
    GpuStatus,
    ProcessTree,
    ProcInfo,
    Progress,
    QueueEntry,
    RunSnapshot,
    RunState,
    SchedulerStatus,
    Series,
    StateDir,
    TrainConfig,
)
from sdxl_tui.sources.alerts import AlertInputs, derive_alerts
from sdxl_tui.sources.checkpoints import CheckpointScan, settle_for_dead_writer
from sdxl_tui.sources.events import EventRun
from sdxl_tui.sources.jobstate import merge_scheduler_state, scheduler_alert, scheduler_liveness
from sdxl_tui.sources.launches import (
    Stitched,
    attribute_checkpoints,
    attribute_states,
    find_launches,
    log_offset,
    stitch,
)
from sdxl_tui.sources.logfacts import LogFacts
from sdxl_tui.sources.procs import ExitInfo
from sdxl_tui.sources.progress import (
    compute_progress,
    count_upcoming_saves,
    pause_per_save,
    steps_per_second_from_points,
)
from sdxl_tui.sources.resume import last_complete, resume_hint
from sdxl_tui.sources.runconfig import (
    config_from_metadata,
    config_from_options,
    infer_save_every,
    logged_saves,
    merge_config,
    spacing_of_logged,
)
from sdxl_tui.sources.saveloss import loss_at, loss_point, with_loss_at_save
from sdxl_tui.sources.state import StateInputs, decide_state, stall_threshold
from sdxl_tui.sources.stops import applicable_stop, describe_stop

__all__ = ["Errors", "Observations", "Position", "fuse", "loss_at", "loss_point", "with_loss_at_save"]

_NO_DATA = "No data found. Please verify arguments (train_data_dir must be the parent of folders with images)"
_INVALID_CONFIG = "Invalid user config (the dataset TOML): MultipleInvalid"


def _empty_series() -> Mapping[str, Series]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Observations:
    """Everything the sub-readers saw in one pass over a run directory, as plain data."""

    run_dir: str
    now: float
    readable: bool = True
    #: Reader-level notes in the order they were found (log, processes, checkpoints, events).
    problems: tuple[str, ...] = ()
    #: What the trainer was told, by dest: launch config, overridden by its command line.
    options: OptionValues = field(default_factory=dict)
    script: str | None = None
    log: LogFacts | None = None  # None: no log was read
    log_path: str | None = None
    log_mtime: float | None = None  # None: the log does not exist
    scan: CheckpointScan = field(default_factory=CheckpointScan)
    state_dir_size: int | None = None
    disk_free: int | None = None
    series: Mapping[str, Series] = field(default_factory=_empty_series)
    event_files: tuple[str, ...] = ()
    resume_steps: tuple[int, ...] = ()
    event_runs: tuple[EventRun, ...] = ()  # one per launch that logged scalars (EventReader.runs)
    events_last_wall_time: float | None = None
    process_known: bool = True  # False with --no-procs
    process: ProcessTree | None = None  # the live trainer tree
    exit: ExitInfo | None = None  # how the trainer ended, once none is alive
    record: RunRecord | None = None
    gpu: GpuStatus = field(default_factory=lambda: GpuStatus(available=False))
    stall_factor: float = 10.0
    gpu_temp_warn: int = 85
    #: A Slurm run's job (None for local runs), who stopped it (the stop record), the queue.
    scheduler: SchedulerStatus | None = None
    stop: StopRecord | None = None  # the last stop asked for (.sdxl-tui/last-kill.json)
    queue: tuple[QueueEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class Position:
    """Where the run is: step and epoch reconciled from the log, the events and the files."""

    step: int | None
    total: int | None
    epoch: int | None
    epochs: int | None
    seconds_per_step: float | None
    last_write: float | None


@dataclass(frozen=True, slots=True)
class Errors:
    """The errors the log (and the loss) show, normalised for the state and the alerts."""

    traceback: str | None
    keyboard_interrupt: bool
    oom: str | None
    host_oom: str | None
    bad_args: tuple[str, ...]
    nan_step: int | None


# --------------------------------------------------------------------------- rules


def newest_metadata(checkpoints: Sequence[Checkpoint]) -> Mapping[str, str]:
    """The ``ss_*`` metadata of the newest complete checkpoint that has any."""
    for c in sorted(checkpoints, key=lambda c: c.mtime, reverse=True):
        if c.complete and c.metadata:
            return c.metadata
    return {}


def logging_dir_of(log: LogFacts | None, options: OptionValues) -> str | None:
    """``--logging_dir`` (where the event files are), before the rest of the config is known."""
    if log is not None and log.config.logging_dir:
        return log.config.logging_dir
    return config_from_options(options).logging_dir


def fuse_config(obs: Observations) -> TrainConfig:
    """Log > checkpoint metadata > options, then the output name and save spacing the files
    and the log's save lines imply when nothing states them."""
    log_cfg = obs.log.config if obs.log is not None else None
    config = merge_config(log_cfg, config_from_metadata(newest_metadata(obs.scan.checkpoints)),
                          config_from_options(obs.options, obs.script))
    if config.output_name is None and obs.scan.output_name:
        config = replace(config, output_name=obs.scan.output_name)
    logged = logged_saves(obs.log.saves) if obs.log is not None else []
    if config.output_name is None and logged:
        config = replace(config, output_name=logged[-1][0])
    if config.save_every_n_epochs is None and config.save_every_n_steps is None:
        every_e, every_s = infer_save_every(obs.scan.checkpoints)
        if every_e is None and every_s is None and logged:
            every_e, every_s = spacing_of_logged(logged)
        config = replace(config, save_every_n_epochs=every_e, save_every_n_steps=every_s)
    return config


def fuse_series(obs: Observations) -> dict[str, Series]:
    """The event files' series; without any ``loss/*`` tag, the log's ``avr_loss`` stands in."""
    series = dict(obs.series)
    log = obs.log
    if log is not None and log.avr_loss_points and not any(t.startswith("loss/") for t in series):
        pts = log.avr_loss_points
        series["loss/average"] = Series(tag="loss/average", points=pts, count=log.avr_loss_count or len(pts),
                                        last=pts[-1], source="log")
    return series


def fuse_launches(obs: Observations) -> Stitched:
    """The launches of a resumed run and its series at true steps (``sources/launches.py``)."""
    resume = obs.options.get("resume")
    # when the process whose command line says --resume started (a launch config: unknown)
    since = obs.process.trainer.create_time if obs.process is not None else (
        obs.record.create_time if obs.record is not None else None)
    launches = find_launches(
        obs.event_runs, obs.log.launches if obs.log is not None else (),
        resume_arg=resume[-1] if isinstance(resume, tuple) and resume else None, resume_since=since,
        skip_arg=obs.options.get("skip_until_initial_step") is True, states=obs.scan.states)
    return stitch(fuse_series(obs), obs.event_runs, launches, obs.resume_steps)


def locate(obs: Observations, config: TrainConfig, series: Mapping[str, Series], offset: int = 0) -> Position:
    """Step, total, epoch, epochs, speed and the last write, each from the best source.

    ``offset``: what the newest launch adds to its own step count (a resumed launch, ``Launch``).
    """
    log = obs.log
    step = log.step + offset if log is not None and log.step is not None else None
    total = (log.total_steps if log is not None else None) or config.total_steps
    loss = series.get("loss/current") or series.get("loss/average")
    measured = loss is not None and loss.source != "log"
    if step is None and measured and loss is not None and loss.last is not None:
        step = loss.last.step
    epoch = log.epoch if log is not None else None
    epochs = (log.epochs if log is not None else None) or config.num_epochs
    if step is not None and config.steps_per_epoch:
        # The "epoch N/M" line may lie in the skipped middle of a big log (or stdout is block-
        # buffered): the step says at least which epoch it is in.
        by_step = min(epochs or 10**9, max(1, math.ceil(step / config.steps_per_epoch)))
        epoch = by_step if epoch is None else max(epoch, by_step)
    if epoch is None:
        saved = [c for c in obs.scan.checkpoints if c.complete and c.epoch is not None]
        if saved:
            epoch = max(saved, key=lambda c: (c.step or -1, c.mtime)).epoch
    if total is None and config.steps_per_epoch and epochs:
        total = config.steps_per_epoch * epochs
    sps = log.tqdm_rate if log is not None else None
    if measured and loss is not None:
        # At short steps tqdm's rate is absurd (sd-scripts' unpause() after every step keeps
        # its elapsed near 0: "[00:00<00:00, 8939110.40it/s]"); the event wall times are then
        # the honest clock (tests/unit/test_tqdm_claim.py). Both exclude save/sample pauses.
        wall = steps_per_second_from_points(loss.points)
        if wall and (not sps or sps < wall / 4):
            sps = wall
    newest_file = max((c.mtime for c in obs.scan.checkpoints), default=None)
    writes = [t for t in (obs.log_mtime, obs.events_last_wall_time, newest_file) if t is not None]
    return Position(step, total, epoch, epochs, sps, max(writes) if writes else None)


def _first_nan(series: Series | None) -> int | None:
    """First NaN step of a series when the log parser did not report one (display points)."""
    if series is None or series.last is None or not math.isnan(series.last.value):
        return None
    return next((p.step for p in series.points if math.isnan(p.value)), series.last.step)


def collect_errors(log: LogFacts | None, series: Mapping[str, Series]) -> Errors:
    """The exception line, interrupt, OOMs, rejected arguments and first NaN step."""
    nan_step = _first_nan(series.get("loss/current"))
    if log is None:
        return Errors(None, False, None, None, (), nan_step)
    traceback = log.traceback
    ki = log.keyboard_interrupt or bool(traceback and traceback.strip().startswith("KeyboardInterrupt"))
    if traceback is None and log.no_data:
        traceback = _NO_DATA  # sd-scripts logs an ERROR and returns: it exits without training
    if traceback is None and log.invalid_config:
        traceback = _INVALID_CONFIG
    host_oom = log.host_oom
    if host_oom is None and traceback and ("killed by signal: Killed" in traceback or "SIGKILL" in traceback):
        host_oom = traceback
    first_nan = log.first_nan_step if log.first_nan_step is not None else log.nan_step
    return Errors(traceback, ki, log.oom, host_oom, log.unrecognized_args,
                  first_nan if first_nan is not None else nan_step)


def traceback_seen(errors: Errors, step: int | None, prev: RunSnapshot | None) -> tuple[str, int | None] | None:
    """(exception line, step when this reader first saw it), carried from snapshot to snapshot."""
    if errors.traceback is None:
        return prev.traceback_seen if prev is not None else None
    if prev is not None and prev.traceback_seen is not None and prev.traceback_seen[0] == errors.traceback:
        return prev.traceback_seen
    return errors.traceback, step


def ended_tree(exit_info: ExitInfo | None, record: RunRecord | None) -> ProcessTree | None:
    """The trainer that is gone, with its exit status when known (run record, watcher)."""
    if exit_info is None or exit_info.pid is None:
        return None
    rec = record if record is not None and record.pid == exit_info.pid else None
    info = ProcInfo(
        pid=exit_info.pid,
        create_time=(rec.create_time or 0.0) if rec is not None else 0.0,
        cmdline=rec.argv if rec is not None else (),
        alive=False,
        status=exit_info.description,
        exit_code=exit_info.exit_code,
    )
    return ProcessTree(trainer=info, recorded=rec is not None)


# --------------------------------------------------------------------------- the function


def state_inputs(obs: Observations, config: TrainConfig, pos: Position, errors: Errors,
                 seen: tuple[str, int | None] | None, prev: RunSnapshot | None = None) -> StateInputs:
    """The facts :func:`decide_state` weighs."""
    tree = obs.process
    alive = tree.alive if tree is not None else (False if obs.exit is not None else None)
    ended = obs.exit if tree is None else None
    # A Slurm job stands in for the process table of a trainer on another node.
    alive, exit_code, exit_signal = scheduler_liveness(
        obs.scheduler, alive, ended.exit_code if ended else None, ended.signal if ended else None)
    # Seen before and not found now: gone (the grace for a trainer never seen is for one in
    # another PID namespace).
    seen_alive = (prev is not None and prev.process is not None and prev.process.alive) or (
        obs.record is not None and obs.record.backend == "local" and obs.record.pid is not None)
    stop = applicable_stop(obs.stop, alive=alive, record=obs.record, last_write_at=pos.last_write)
    # An exception the live trainer survived (its step moved on since the line was first
    # seen) does not end the run: it stays an alert, not the state.
    survived = (alive is True and errors.traceback is not None and seen is not None
                and seen[1] is not None and pos.step is not None and pos.step > seen[1])
    final = next((c for c in obs.scan.checkpoints if c.kind is CheckpointKind.FINAL), None)
    log = obs.log
    return StateInputs(
        now=obs.now,
        readable=obs.readable,
        has_output=bool((log is not None and obs.log_mtime is not None) or obs.event_files or obs.scan.checkpoints),
        has_log=obs.log_mtime is not None,
        phase=log.phase if log is not None else None,
        step=pos.step,
        total_steps=pos.total,
        model_saved=log.model_saved if log is not None else False,
        final_complete=final is not None and final.complete,
        final_name=final.name if final is not None else None,
        traceback=None if survived else errors.traceback,
        keyboard_interrupt=errors.keyboard_interrupt and not survived,
        oom=errors.oom,
        host_oom=errors.host_oom,
        unrecognized_args=errors.bad_args,
        process_known=obs.process_known,
        alive=alive,
        pid=tree.pid if tree is not None else (obs.exit.pid if obs.exit is not None else None),
        exit_code=exit_code,
        exit_signal=exit_signal,
        last_write_at=pos.last_write,
        seconds_per_step=pos.seconds_per_step,
        stall_factor=obs.stall_factor,
        seen_alive=seen_alive,
        stopped=describe_stop(stop) if stop is not None and obs.scheduler is None else None,
        final_problem=None if final is None or final.complete else (
            "empty (0 bytes)" if final.size == 0 else final.problem or "truncated"),
    )


def _progress(obs: Observations, config: TrainConfig, pos: Position, series: Mapping[str, Series],
              checkpoints: Sequence[Checkpoint], running: bool) -> Progress:
    done = {c.name for c in checkpoints if c.complete}
    complete = [c for c in checkpoints if c.complete]
    ext = (os.path.splitext(complete[-1].name)[1] if complete else "") or ".safetensors"
    lc = series.get("loss/current")
    pause = None
    if lc is not None and lc.points and lc.source != "log":
        first, last = lc.points[0].step, lc.points[-1].step
        pauses = sum(1 for c in checkpoints if c.step is not None and first < c.step <= last)
        pause = pause_per_save(lc.points[0], lc.last, pos.seconds_per_step, pauses)
    md = newest_metadata(obs.scan.checkpoints)
    started: float | None = None
    try:
        started = float(md["ss_training_started_at"]) if md.get("ss_training_started_at") else None
    except ValueError:
        started = None
    if started is None or math.isnan(started):
        firsts = [s.points[0].wall_time for s in obs.series.values() if s.points]
        started = min(firsts) if firsts else None
    return compute_progress(
        config, epoch=pos.epoch, epochs=pos.epochs, step=pos.step, total_steps=pos.total,
        seconds_per_step=pos.seconds_per_step, elapsed_seconds=obs.log.tqdm_elapsed if obs.log else None,
        now=obs.now, last_step_at=pos.last_write, pause_seconds=pause, done=done, started_at=started,
        running=running, ext=ext,
    )


def _way_on(obs: Observations, config: TrainConfig, checkpoints: Sequence[Checkpoint],
            states: Sequence[StateDir]) -> str:
    """How to go on from what the run left (``sources/resume.py``), with the launch's argv."""
    argv = obs.record.argv if obs.record is not None else ()
    return resume_hint(states, checkpoints, argv=argv, epochs=config.num_epochs)


def _with_way_on(reason: str, way_on: str, checkpoints: Sequence[Checkpoint]) -> str:
    """A stopped or interrupted run's reason, with its last checkpoint and how to go on."""
    last = last_complete(checkpoints)
    saved = f"; last checkpoint {last.name}" if last is not None else ""
    return f"{reason}{saved}; {way_on}"


def relaunch(obs: Observations, stitched: Stitched, pos: Position) -> tuple[Position, bool]:
    """A live resumed trainer the log does not show yet (its command line says ``--resume``):
    the position it will go on from, and True (the previous launch's end is not the run's)."""
    newest = stitched.launches[-1] if stitched.launches else None
    if newest is None or newest.in_log or obs.process is None or not obs.process.alive:
        return pos, False
    if newest.resume_step is not None and not newest.own_counts:
        pos = replace(pos, step=newest.resume_step, epoch=newest.resume_epoch)
    return pos, True


def fuse(obs: Observations, prev: RunSnapshot | None = None) -> RunSnapshot:
    """The run as it is now, from what was observed (and the previous snapshot's memory)."""
    config = fuse_config(obs)
    stitched = fuse_launches(obs)
    series = dict(stitched.series)
    pos = locate(obs, config, series, log_offset(stitched.launches))
    errors = collect_errors(obs.log, series)
    pos, relaunched = relaunch(obs, stitched, pos)
    seen = traceback_seen(errors, pos.step, prev)
    inputs = state_inputs(obs, config, pos, errors, seen, prev)
    if relaunched:
        # a resumed trainer started after the log's last launch ended: the previous launch's
        # 'model saved.' and final file are not this one's end
        inputs = replace(inputs, model_saved=False, final_complete=False, phase="loading")
    state, reason = decide_state(inputs)
    stop = applicable_stop(obs.stop, alive=inputs.alive, record=obs.record, last_write_at=pos.last_write)
    state, reason = merge_scheduler_state(state, reason, obs.scheduler, step=pos.step, states=obs.scan.states,
                                          stopped=describe_stop(stop) if stop is not None else None, now=obs.now)
    checkpoints = with_loss_at_save(attribute_checkpoints(obs.scan.checkpoints, stitched.launches), series, prev)
    if state in (RunState.STOPPED, RunState.INTERRUPTED, RunState.FAILED):
        # the trainer died: its half-written file is never "writing" (one rule: formats/safetensors.py);
        # after a finished run, a growing file is someone else's copy, timed as usual
        checkpoints = settle_for_dead_writer(checkpoints)
    states = attribute_states(obs.scan.states, stitched.launches)
    way_on = _way_on(obs, config, checkpoints, states)
    if state in (RunState.STOPPED, RunState.INTERRUPTED) and obs.scheduler is None:
        reason = _with_way_on(reason, way_on, checkpoints)
    # A stalled run has no honest ETA, finish time or 'next checkpoint in': no step is coming.
    progress = _progress(obs, config, pos, series, checkpoints, state.is_live and state is not RunState.STALLED)
    done = {c.name for c in checkpoints if c.complete}
    remaining = count_upcoming_saves(config, step=pos.step or 0, total_steps=pos.total, done=done) if pos.total else 0
    problems = tuple(dict.fromkeys(obs.problems))
    exit_info = obs.exit if obs.process is None else None
    alerts = derive_alerts(AlertInputs(
        state=state, config=config, options=obs.options, script=obs.script, now=obs.now, step=pos.step,
        total_steps=pos.total, seconds_per_step=pos.seconds_per_step, last_step_at=pos.last_write,
        stall_after=stall_threshold(pos.seconds_per_step, obs.stall_factor), oom=errors.oom,
        host_oom=errors.host_oom, traceback=errors.traceback, keyboard_interrupt=errors.keyboard_interrupt,
        nan_step=errors.nan_step, unrecognized_args=errors.bad_args,
        exit_code=exit_info.exit_code if exit_info is not None else None,
        exit_signal=exit_info.signal if exit_info is not None else None, process=obs.process,
        process_known=obs.process_known, checkpoints=checkpoints, states=states,
        remaining_saves=remaining, state_dir_size=obs.state_dir_size, disk_free=obs.disk_free, gpu=obs.gpu,
        gpu_temp_warn=obs.gpu_temp_warn, problems=problems, log_name=os.path.basename(obs.log_path or LOG_NAME),
        empty_image_dirs=obs.log.empty_image_dirs if obs.log is not None else (),
        state_reason=reason, model_saved=obs.log.model_saved if obs.log is not None else False, resume=way_on,
    ))
    job_alert = scheduler_alert(state, reason, obs.scheduler, obs.now)
    if job_alert is not None:
        alerts = (*alerts, job_alert)
    log = obs.log
    return RunSnapshot(
        run_dir=obs.run_dir, taken_at=obs.now, state=state, state_reason=reason, config=config,
        progress=progress, series=MappingProxyType(series), checkpoints=checkpoints,
        states=states, samples=obs.scan.samples, evaluations=obs.scan.evaluations,
        process=obs.process if obs.process is not None else ended_tree(obs.exit, obs.record),
        gpu=obs.gpu, alerts=alerts, log_path=obs.log_path if obs.log_mtime is not None else None,
        event_files=obs.event_files, resume_steps=stitched.resume_steps, launches=stitched.launches,
        discarded=stitched.discarded, problems=problems,
        log_lines=log.lines if log is not None else (), log_line_count=log.line_count if log is not None else 0,
        traceback_seen=seen, scheduler=obs.scheduler, queue=obs.queue,
    )
