"""Plain immutable values that describe a training run.

Every layer speaks in these types: the readers in ``sources/`` produce them, ``control/``
acts on them, the CLI prints them and the Textual layer only renders them. Nothing here
does I/O, and nothing here may import Textual; keeping the values frozen lets a snapshot
cross threads (reader worker -> UI) without locks.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


def _empty_map() -> Mapping[Any, Any]:
    return MappingProxyType({})



class RunState(str, enum.Enum):
    """What the trainer is doing, as far as the run directory and process table say."""

    MISSING = "missing"  # the directory does not exist (yet)
    UNREADABLE = "unreadable"  # the directory exists but this user may not read it
    WAITING = "waiting"  # no output yet
    LOADING = "loading"  # startup: dataset, model loading
    CACHING = "caching"  # caching latents / text encoder outputs
    TRAINING = "training"
    SAMPLING = "sampling"
    SAVING = "saving"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # process gone without a final checkpoint and no traceback
    STOPPED = "stopped"  # ended because the user asked (sdxl-tui kill, stop-after-checkpoint, its scancel)
    STALLED = "stalled"  # process alive but no progress for many step-times

    @property
    def is_live(self) -> bool:
        """True while a trainer may still write to the directory."""
        return self in _LIVE_STATES

    @property
    def is_over(self) -> bool:
        """True once the run has ended one way or another."""
        return self in (RunState.FINISHED, RunState.FAILED, RunState.INTERRUPTED, RunState.STOPPED)


_LIVE_STATES = frozenset(
    {
        RunState.LOADING,
        RunState.CACHING,
        RunState.TRAINING,
        RunState.SAMPLING,
        RunState.SAVING,
        RunState.STALLED,
    }
)


class Severity(str, enum.Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class CheckpointKind(str, enum.Enum):
    EPOCH = "epoch"  # {name}-{epoch:06d}.safetensors
    STEP = "step"  # {name}-step{step:08d}.safetensors
    FINAL = "final"  # {name}.safetensors
    OTHER = "other"  # a weights file whose name follows no sd-scripts pattern


class CheckpointStatus(str, enum.Enum):
    COMPLETE = "complete"
    WRITING = "writing"  # still growing, or header promises more bytes than are there
    CORRUPT = "corrupt"  # unreadable header that is not simply short


@dataclass(frozen=True, slots=True)
class ScalarPoint:
    """One TensorBoard scalar (or a loss value recovered from the log)."""

    step: int
    value: float
    wall_time: float = 0.0


@dataclass(frozen=True, slots=True)
class Series:
    """A scalar series for display: exact last value, bounded number of points.

    ``points`` may be downsampled (min/max preserving) once a series grows past the
    display budget; ``count`` and ``last`` stay exact.
    """

    tag: str
    points: tuple[ScalarPoint, ...] = ()
    count: int = 0
    last: ScalarPoint | None = None
    source: str = "tensorboard"  # or "log"

    @property
    def last_value(self) -> float | None:
        return None if self.last is None else self.last.value


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Configuration as the run itself reports it (log block, metadata, command line)."""

    output_name: str | None = None
    num_train_images: int | None = None  # images x repeats
    num_reg_images: int | None = None
    num_batches_per_epoch: int | None = None
    num_epochs: int | None = None
    batch_size: int | None = None
    gradient_accumulation_steps: int | None = None
    total_steps: int | None = None
    network_dim: int | None = None
    network_alpha: float | None = None
    learning_rate: float | None = None
    unet_lr: float | None = None
    text_encoder_lr: float | None = None
    optimizer: str | None = None
    scheduler: str | None = None
    resolution: str | None = None
    base_model_version: str | None = None
    mixed_precision: str | None = None
    save_every_n_epochs: int | None = None
    save_every_n_steps: int | None = None
    save_state: bool = False
    gradient_checkpointing: bool | None = None
    cache_text_encoder_outputs: bool | None = None
    network_train_unet_only: bool | None = None
    attention: str | None = None  # "xformers" | "sdpa" | "mem_eff_attn" | None
    logging_dir: str | None = None

    @property
    def steps_per_epoch(self) -> int | None:
        """Optimizer steps per epoch, as sd-scripts computes them (single process)."""
        if self.num_batches_per_epoch is None:
            return None
        accum = self.gradient_accumulation_steps or 1
        return math.ceil(self.num_batches_per_epoch / accum)


@dataclass(frozen=True, slots=True)
class Progress:
    """Where the run is and when it will be done."""

    epoch: int | None = None  # 1-based current epoch
    epochs: int | None = None
    step: int | None = None  # optimizer steps done
    total_steps: int | None = None
    seconds_per_step: float | None = None  # measured, excluding sampling/saving pauses
    elapsed_seconds: float | None = None  # training time (tqdm's elapsed)
    eta_seconds: float | None = None
    eta_at: float | None = None  # unix time of the expected finish
    next_checkpoint: str | None = None  # file name of the next scheduled save
    next_checkpoint_eta_seconds: float | None = None
    started_at: float | None = None  # unix time training started (ss_training_started_at or log)

    @property
    def fraction(self) -> float | None:
        if self.step is None or not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One saved LoRA file."""

    name: str
    path: str
    kind: CheckpointKind
    epoch: int | None
    step: int | None
    size: int
    mtime: float
    status: CheckpointStatus
    metadata: Mapping[str, str] = field(default_factory=_empty_map, compare=False, hash=False)
    loss_at_save: float | None = None
    state_dir: str | None = None  # matching resumable -state directory, if any
    evaluation: str | None = None  # evaluation status, see Evaluation.status
    problem: str | None = None  # why status is not complete
    loss_step: int | None = None  # the step loss_at_save was logged at (< step: the events end earlier)
    launch: int | None = None  # index of the launch that wrote it (Launch.index), when the run was resumed
    trainer_step: int | None = None  # its ss_steps as written, when that differs from ``step`` (a resumed launch)

    @property
    def complete(self) -> bool:
        return self.status is CheckpointStatus.COMPLETE


@dataclass(frozen=True, slots=True)
class Launch:
    """One start of the trainer in a run's output folder (a resumed run has several).

    Steps here are the run's true steps: a launch resumed without
    ``--skip_until_initial_step`` counts from 0 again, so its own count plus ``offset`` is the
    true step (``formats/trainstate.py``).
    """

    index: int  # 0-based, in time order
    started_at: float | None = None
    resumed_from: str | None = None  # the --resume folder
    resume_step: int | None = None  # that folder's train_state.json current_step (None: not resumed / unknown)
    resume_epoch: int | None = None
    offset: int = 0  # added to the trainer's own step count
    own_counts: bool = False  # --skip_until_initial_step: the counts are the trainer's own, not stitched
    first_step: int | None = None  # true steps of its loss points
    last_step: int | None = None
    discarded_after: int | None = None  # its points after this true step were redone by a later launch
    source: str = ""  # where the resume point came from: "log", "command line", "" (not resumed / unknown)
    in_log: bool = False  # the log shows it (its resume lines or its "running training" block)
    chained_from: int | None = None  # its state was saved by this (resumed) launch: resume_step includes its offset
    saved_states: tuple[str, ...] = ()  # names of the -state folders the log shows it saving


@dataclass(frozen=True, slots=True)
class StateDir:
    """A ``--save_state`` directory (resumable with ``--resume``)."""

    name: str
    path: str
    epoch: int | None
    step: int | None
    complete: bool  # train_state.json present and parseable


@dataclass(frozen=True, slots=True)
class Sample:
    """A sample image written by the trainer under ``sample/``."""

    name: str
    path: str
    epoch: int | None
    step: int | None
    prompt_index: int | None
    mtime: float


@dataclass(frozen=True, slots=True)
class Evaluation:
    """An evaluation output folder (``eval_epoch8`` and the like)."""

    name: str
    path: str
    checkpoint: str | None
    epoch: int | None
    status: str  # "queued" | "running" | "done" | "failed" | "unknown"
    images: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """One process of the trainer's tree, identified by (pid, create_time)."""

    pid: int
    create_time: float
    cmdline: tuple[str, ...]
    username: str | None = None
    role: str = "trainer"  # "launcher" | "trainer" | "worker" | "child"
    alive: bool = True
    status: str | None = None
    cpu_percent: float | None = None
    rss: int | None = None
    exit_code: int | None = None
    ppid: int | None = None
    # a rank of a multi-process launch (torchrun, accelerate launch --multi_gpu): RANK,
    # LOCAL_RANK and WORLD_SIZE of its environment; None when unset or unreadable
    rank: int | None = None
    local_rank: int | None = None
    world_size: int | None = None


@dataclass(frozen=True, slots=True)
class ProcessTree:
    """The trainer, the launcher chain above it and everything below it.

    A multi-process launch is one tree: ``trainer`` is rank 0 (the process whose output and
    exit count: it writes the checkpoints, the event file and the progress bar), ``ranks``
    the other ranks in rank order, ``children`` everything below any of them.
    """

    trainer: ProcInfo
    launchers: tuple[ProcInfo, ...] = ()  # outermost first
    children: tuple[ProcInfo, ...] = ()
    recorded: bool = False  # found through sdxl-tui's own launch record
    ranks: tuple[ProcInfo, ...] = ()  # the other ranks' trainer processes (rank 1, 2, ...)

    @property
    def pid(self) -> int:
        return self.trainer.pid

    @property
    def alive(self) -> bool:
        return self.trainer.alive

    @property
    def trainers(self) -> tuple[ProcInfo, ...]:
        """Rank 0 (or the only trainer) first, then the other ranks."""
        return (self.trainer, *self.ranks)

    def all(self) -> tuple[ProcInfo, ...]:
        return (*self.launchers, self.trainer, *self.ranks, *self.children)


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU at one moment. ``None`` means the field is not supported (N/A)."""

    index: int
    name: str
    uuid: str | None = None
    memory_used: int | None = None  # bytes
    memory_total: int | None = None
    utilization: int | None = None  # percent
    memory_utilization: int | None = None
    temperature: int | None = None  # celsius
    temperature_slowdown: int | None = None
    power_draw: float | None = None  # watts
    power_limit: float | None = None
    throttle_reasons: tuple[str, ...] = ()
    process_memory: Mapping[int, int] = field(default_factory=_empty_map, compare=False, hash=False)
    problem: str | None = None  # why this device could not be (fully) read, e.g. "GPU is lost"


@dataclass(frozen=True, slots=True)
class GpuStatus:
    """NVML's answer: GPUs, or why there are none (a normal state, not an error)."""

    available: bool
    gpus: tuple[GpuSample, ...] = ()
    reason: str | None = None  # e.g. "no NVIDIA driver (NVML library not found)"
    driver_version: str | None = None
    taken_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Alert:
    """Something the user should know, with a fix that fits this run."""

    # "finished" | "oom" | "host_oom" | "nan" | "crash" | "bad_args" | "interrupted" | "stall" | "disk"
    # | "gpu_heat" | "gpu_throttle" | "reader"
    kind: str
    severity: Severity
    message: str
    fix: str | None = None
    key: str = ""  # stable identity: the same condition keeps the same key across refreshes
    step: int | None = None
    at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity.value,
            "message": self.message,
            "fix": self.fix,
            "key": self.key or self.kind,
            "step": self.step,
            "at": self.at,
        }


@dataclass(frozen=True, slots=True)
class LogLine:
    """One logical line of the trainer's console log (tqdm redraws collapsed)."""

    number: int  # logical line number, 0-based, from the start of what was read
    text: str
    kind: str = "text"  # "text" | "record" | "progress" | "traceback"
    level: str | None = None  # INFO/WARNING/ERROR/CRITICAL for RichHandler records


@dataclass(frozen=True, slots=True)
class SchedulerStatus:
    """A batch scheduler's view of the job that runs the trainer (Slurm: squeue/scontrol/sacct).

    ``state`` is the scheduler's own word (``PENDING``, ``RUNNING``, ``COMPLETED``, ``FAILED``,
    ``CANCELLED``, ``TIMEOUT``, ``OUT_OF_MEMORY``, ``NODE_FAIL``, ``PREEMPTED``…), or None when
    the scheduler could not be asked or no longer knows the job (``problem`` says which).
    """

    kind: str  # "slurm"
    job_id: str
    state: str | None = None
    reason: str | None = None  # why it is pending (Resources, Priority, Dependency…) or ended
    node: str | None = None
    queue_position: int | None = None  # 1-based among pending jobs of its partition
    time_limit: int | None = None  # seconds; None = unlimited or unknown
    elapsed: int | None = None  # seconds the job has run
    submitted_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    cluster: str | None = None
    user: str | None = None
    partition: str | None = None
    source: str = ""  # which command answered: "squeue", "scontrol", "sacct", "end record"
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One run of the night's queue (``sdxl-tui queue``): what starts after what, and how it went."""

    id: str
    launch_file: str
    output_dir: str
    backend: str = "local"  # "local" | "slurm"
    status: str = "waiting"  # waiting | running | submitted | done | failed | skipped | removed
    after: str | None = None  # the entry (id) or run directory it waits for; None: the previous entry
    on_failure: str = "stop"  # when this run fails: "stop" the runs after it, or "continue"
    evaluate: str | None = None  # checkpoints to evaluate when it finishes ("6-10", "last")
    job_id: str | None = None  # the Slurm job, once submitted
    dependency: str | None = None  # its sbatch --dependency (afterok:JOB / afterany:JOB)
    added_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    message: str | None = None  # the latest word from the runner (why waiting, the verdict)


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """Everything a run directory says at one moment."""

    run_dir: str
    taken_at: float
    state: RunState
    state_reason: str = ""
    config: TrainConfig = field(default_factory=TrainConfig)
    progress: Progress = field(default_factory=Progress)
    series: Mapping[str, Series] = field(default_factory=_empty_map, compare=False, hash=False)
    checkpoints: tuple[Checkpoint, ...] = ()
    states: tuple[StateDir, ...] = ()
    samples: tuple[Sample, ...] = ()
    evaluations: tuple[Evaluation, ...] = ()
    process: ProcessTree | None = None
    gpu: GpuStatus = field(default_factory=lambda: GpuStatus(available=False))
    alerts: tuple[Alert, ...] = ()
    log_path: str | None = None
    event_files: tuple[str, ...] = ()
    resume_steps: tuple[int, ...] = ()  # true steps where a later launch went on (chart markers)
    launches: tuple[Launch, ...] = ()  # empty for a run launched once
    # the points of launches after the step a later launch resumed from (redone; drawn apart)
    discarded: Mapping[str, Series] = field(default_factory=_empty_map, compare=False, hash=False)
    problems: tuple[str, ...] = ()  # reader-level notes (bad CRC skipped, permission denied…)
    # The log pane's feed (additive, tui issue): the last N logical lines (tqdm redraws
    # collapsed; a redraw replaces the line with the same ``number``) and the total number of
    # logical lines seen so far, so the UI appends only lines numbered >= what it already has.
    log_lines: tuple[LogLine, ...] = ()
    log_line_count: int = 0
    # The reader's memory across refreshes: the last exception line and the step at which it
    # was first seen (an exception the live trainer survives does not end the run).
    traceback_seen: tuple[str, int | None] | None = None
    # The batch scheduler's view when the run was submitted to Slurm (None for local runs).
    scheduler: SchedulerStatus | None = None
    # The night's queue (all entries, this run's among them; empty without a queue).
    queue: tuple[QueueEntry, ...] = ()

    def loss(self, tag: str = "loss/current") -> float | None:
        s = self.series.get(tag)
        return None if s is None else s.last_value
