"""``RunReader(run_dir).refresh() -> RunSnapshot``: the one place where the sub-readers meet.

Why an integrator: each sub-reader knows one file format (the log, TensorBoard events,
safetensors headers, the process table, NVML); none of them can say "this run failed at
step 37 because CUDA ran out of memory, try batch 2 with accumulation 4". The reader owns one
of each, asks each for what changed (all of them are incremental), merges what the run says
about itself from three places (the log's ``running training`` block, checkpoint metadata,
the trainer's command line), decides the state, computes the ETA and derives the alerts.

It never writes into the run directory.

State precedence (first match wins; :func:`decide_state`):

1. ``MISSING``     the directory does not exist (yet, or any more).
2. ``FINISHED``    ``model saved.`` was logged, or the final ``{output_name}.safetensors`` is
                   complete and the run is not visibly still training towards it.
3. ``FAILED``      an error ended the run: CUDA OOM, a traceback (not KeyboardInterrupt),
                   ``unrecognized arguments``, host OOM evidence, or a non-zero exit status in
                   the run record; with the process gone (or still exiting).
4. ``INTERRUPTED`` the process is gone (process table or run record; or, without process
                   information, the log has been silent for long) with no final checkpoint and
                   no error: Ctrl-C (``SIGINT``), SIGTERM, SIGKILL, reboot.
5. ``STALLED``     the process lives (or the log is fresh without process information) in a
                   training phase, but nothing was written for ``alerts.stall_factor`` x the
                   usual seconds per step (at least 120 s).
6. ``LOADING`` / ``CACHING`` / ``TRAINING`` / ``SAMPLING`` / ``SAVING``: the log's phase while
                   the process lives or the log is fresh.
7. ``WAITING``     the directory exists but nothing has been written and no trainer runs.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import sys
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from sdxl_tui.model import (
    Checkpoint,
    CheckpointKind,
    GpuStatus,
    LogLine,
    ProcessTree,
    ProcInfo,
    RunSnapshot,
    RunState,
    ScalarPoint,
    Series,
    StateDir,
    TrainConfig,
)
from sdxl_tui.sources.alerts import AlertInputs, Options, derive_alerts
from sdxl_tui.sources.jobstate import (
    merge_scheduler_state,
    scheduler_alert,
    scheduler_liveness,
    stopped_by,
)
from sdxl_tui.sources.progress import (
    compute_progress,
    count_upcoming_saves,
    pause_per_save,
    steps_per_second_from_points,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

__all__ = [
    "LOG_NAME",
    "RunReader",
    "StateInputs",
    "decide_state",
    "merge_config",
    "options_from_argv",
    "read_run",
]

LOG_NAME = "training.log"
#: A stall needs at least this long without any write, whatever the step time.
MIN_STALL_SECONDS = 120.0
#: Without a step time, a live-looking run is presumed stopped after this much silence.
DEFAULT_SILENCE_SECONDS = 600.0
#: A fresh log with no trainer process found counts as live for at most this long.
NOT_FOUND_GRACE_SECONDS = 60.0
_PHASE_STATES = {
    "loading": RunState.LOADING,
    "caching": RunState.CACHING,
    "training": RunState.TRAINING,
    "sampling": RunState.SAMPLING,
    "saving": RunState.SAVING,
}


# =============================================================================================
# the state machine (pure)


@dataclass(frozen=True, slots=True)
class StateInputs:
    """What :func:`decide_state` looks at: plain facts, so tests can hand-build them."""

    now: float
    exists: bool = True
    readable: bool = True
    has_output: bool = False  # a log, an event file or a checkpoint exists
    has_log: bool = False
    phase: str | None = None  # LogFacts.phase
    step: int | None = None
    total_steps: int | None = None
    model_saved: bool = False
    final_complete: bool = False
    final_name: str | None = None
    traceback: str | None = None
    keyboard_interrupt: bool = False
    oom: str | None = None
    host_oom: str | None = None
    unrecognized_args: tuple[str, ...] = ()
    process_known: bool = True  # False with --no-procs: liveness is guessed from the log age
    alive: bool | None = None  # True: trainer found alive; False: known gone; None: not found
    pid: int | None = None
    exit_code: int | None = None  # from the run record
    exit_signal: int | None = None
    last_write_at: float | None = None  # newest log/event/checkpoint write
    seconds_per_step: float | None = None
    stall_factor: float = 10.0


def stall_threshold(seconds_per_step: float | None, factor: float) -> float:
    """Seconds without a write that make a live run STALLED (and a silent one presumed gone)."""
    if seconds_per_step and seconds_per_step > 0:
        return max(MIN_STALL_SECONDS, factor * seconds_per_step)
    return DEFAULT_SILENCE_SECONDS


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _signame(sig: int | None) -> str:
    import signal

    try:
        return signal.Signals(sig).name if sig is not None else "?"
    except ValueError:
        return f"signal {sig}"


def decide_state(s: StateInputs) -> tuple[RunState, str]:
    """The run's state and a one-line reason, by the precedence in the module docstring."""
    if not s.exists:
        return RunState.MISSING, "the run directory does not exist (yet)"
    if not s.readable:
        return RunState.WAITING, "cannot read the run directory (permission denied)"

    age = None if s.last_write_at is None else max(0.0, s.now - s.last_write_at)
    threshold = stall_threshold(s.seconds_per_step, s.stall_factor)
    pid = f"PID {s.pid}" if s.pid is not None else "the trainer"

    # Is the trainer still there?  alive=True: seen; False: known gone; None: not found.
    if s.alive is True:
        live, how = True, f"{pid} is alive"
    elif s.alive is False or s.exit_code is not None or s.exit_signal is not None:
        live, how = False, f"{pid} has exited"
        if s.exit_signal is not None:
            how = f"{pid} was killed by {_signame(s.exit_signal)}"
        elif s.exit_code is not None:
            how = f"{pid} exited with status {s.exit_code}"
    else:
        # Not found. Without process information the log's age is all there is; with it, a
        # fresh log still counts for a short while (a trainer in another PID namespace, a
        # scan racing a restart), never for a whole stall threshold.
        window = threshold if not s.process_known else min(threshold, NOT_FOUND_GRACE_SECONDS)
        fresh = age is not None and age < window
        who = "no process info (--no-procs)" if not s.process_known else "trainer process not found"
        live = fresh and not (s.keyboard_interrupt or s.traceback)  # a final traceback ends it
        how = f"{who}; log written {_ago(age)} ago" if age is not None else who

    # 2. finished
    if s.model_saved:
        return RunState.FINISHED, f"'model saved.' logged{_final(s.final_name)}"
    if s.final_complete and not (live and s.step is not None and s.total_steps and s.step < s.total_steps):
        return RunState.FINISHED, f"final checkpoint complete{_final(s.final_name)}"

    # 3. failed (an error line ends the run even if the process is still tearing down)
    error = None
    if s.unrecognized_args:
        error = "the trainer rejected its arguments: unrecognized arguments: " + " ".join(s.unrecognized_args)
    elif s.oom:
        error = "CUDA out of memory"
    elif s.host_oom:
        error = "host out of memory"
    elif s.traceback and not s.keyboard_interrupt:
        error = f"crashed: {s.traceback.strip()[:160]}"
    if error is not None:
        tail = " (process still exiting)" if s.alive is True else ""
        return RunState.FAILED, f"{error}{_at(s.step)}; {how}{tail}"
    if not live and s.exit_code not in (None, 0) and s.exit_signal is None:
        return RunState.FAILED, f"{how}{_at(s.step)}, without the final checkpoint"

    # 4. interrupted
    if not live and (s.has_output or s.alive is False or s.exit_code is not None or s.exit_signal is not None):
        if s.keyboard_interrupt:
            return RunState.INTERRUPTED, f"SIGINT (KeyboardInterrupt){_at(s.step)}; {how}; no final checkpoint"
        if s.exit_code == 0:
            return RunState.INTERRUPTED, f"{how}{_at(s.step)} but wrote no final checkpoint (see the log's errors)"
        return RunState.INTERRUPTED, f"{how}{_at(s.step)}; no final checkpoint"
    if not live:
        return RunState.WAITING, "no output yet and no trainer running"

    # 5./6. live
    phase_state = _PHASE_STATES.get(s.phase or "", None)
    if s.phase == "finished":
        return RunState.SAVING, f"training loop done, final save in progress; {how}"
    if phase_state is None:
        phase_state = RunState.LOADING
    if phase_state in (RunState.TRAINING, RunState.SAMPLING, RunState.SAVING) and age is not None and age >= threshold:
        usual = f" (usual {s.seconds_per_step:.1f} s/step)" if s.seconds_per_step else ""
        return RunState.STALLED, f"nothing written for {_ago(age)}{usual}{_at(s.step)}; {how}"
    if not s.has_log:
        return phase_state, f"{how}; no log yet"
    return phase_state, how


def _at(step: int | None) -> str:
    return f" at step {step}" if step is not None else ""


def _final(name: str | None) -> str:
    return f" ({name})" if name else ""


# =============================================================================================
# what the run says about itself: command line, metadata, log block


@lru_cache(maxsize=1)
def _option_table() -> Mapping[str, str]:
    """``--option`` -> dest for every sd-scripts option (for argparse-style prefixes)."""
    try:
        text = resources.files("sdxl_tui").joinpath("data/sd_scripts_options.json").read_text("utf-8")
        data = json.loads(text)
    except (OSError, ValueError):  # pragma: no cover
        return {}
    table: dict[str, str] = {}
    for script in data.get("scripts", {}).values():
        for opt in script.get("options", []):
            for name in opt.get("options", []):
                table[name] = opt.get("dest", name.lstrip("-"))
    return MappingProxyType(table)


def _dest(option: str) -> str:
    table = _option_table()
    if option in table:
        return table[option]
    matches = {d for name, d in table.items() if name.startswith(option)} if len(option) > 3 else set()
    if len(matches) == 1:
        return matches.pop()
    return option.lstrip("-").replace("-", "_")


def _script_args(argv: Sequence[str]) -> Sequence[str]:
    try:
        from sdxl_tui.sources.procs import script_span

        span = script_span(argv)
    except ImportError:  # pragma: no cover
        span = None
    if span is not None:
        return argv[span[1]:]
    for i, tok in enumerate(argv):
        if tok.startswith("--"):
            return argv[i:]
    return ()


def options_from_argv(argv: Sequence[str], *, cwd: str | None = None) -> dict[str, bool | tuple[str, ...]]:
    """The trainer's options by dest name from its command line (``--config_file`` merged in).

    Flags map to ``True``, options with values to a tuple of strings. As in sd-scripts, values
    on the command line win over the ``--config_file`` TOML.
    """
    out: dict[str, bool | tuple[str, ...]] = {}
    key: str | None = None
    values: list[str] = []

    def flush() -> None:
        if key is not None:
            out[key] = tuple(values) if values else True

    for tok in _script_args(argv):
        if tok.startswith("--") and len(tok) > 2:
            flush()
            name, eq, val = tok.partition("=")
            key, values = _dest(name), ([val] if eq else [])
        elif key is not None:
            values.append(tok)
    flush()
    cfg = out.get("config_file")
    if isinstance(cfg, tuple) and cfg:
        path = cfg[0] if cfg[0].endswith(".toml") else cfg[0] + ".toml"
        if cwd and not os.path.isabs(path):
            path = os.path.join(cwd, path)
        from_file = options_from_toml(path)
        out = {**from_file, **out}
    return out


def options_from_mapping(args: Mapping[str, Any]) -> dict[str, bool | tuple[str, ...]]:
    """Options from a launch config's ``[args]`` table or a flattened sd-scripts config TOML."""
    out: dict[str, bool | tuple[str, ...]] = {}
    for k, v in args.items():
        if isinstance(v, Mapping):
            out.update(options_from_mapping(v))
        elif v is True:
            out[k] = True
        elif v is False or v is None:
            continue
        elif isinstance(v, (list, tuple)):
            out[k] = tuple(str(x) for x in v)
        else:
            out[k] = (str(v),)
    return out


def options_from_toml(path: str) -> dict[str, bool | tuple[str, ...]]:
    try:
        with open(path, "rb") as fh:
            return options_from_mapping(tomllib.load(fh))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def _opt(options: Options, name: str) -> str | None:
    v = options.get(name)
    return v[0] if isinstance(v, tuple) and v else None


def _num(text: Any, kind: type = float) -> Any:
    if text is None:
        return None
    s = str(text).strip()
    if s in ("", "None", "none", "null"):
        return None
    try:
        value = float(s)
    except ValueError:
        return None
    if math.isnan(value):
        return None
    return int(value) if kind is int else value


def _bool(text: Any) -> bool | None:
    if text is None:
        return None
    return str(text).strip().lower() in ("true", "1", "yes")


def _resolution_from_metadata(md: Mapping[str, str]) -> str | None:
    if md.get("ss_resolution"):
        r = md["ss_resolution"].strip("()[] ").replace(" ", "").split(",")
        return "x".join(r)
    datasets = md.get("ss_datasets")
    if datasets:
        try:
            first = json.loads(datasets)[0]
            res = first.get("resolution")
            if isinstance(res, (list, tuple)) and len(res) == 2:
                return f"{res[0]}x{res[1]}"
        except (ValueError, IndexError, KeyError, TypeError, AttributeError):
            pass
    return None


def _batch_from_metadata(md: Mapping[str, str]) -> int | None:
    if md.get("ss_batch_size_per_device"):
        value: int | None = _num(md["ss_batch_size_per_device"], int)
        return value
    datasets = md.get("ss_datasets")
    if datasets:
        try:
            return int(json.loads(datasets)[0]["batch_size_per_device"])
        except (ValueError, IndexError, KeyError, TypeError):
            return None
    return None


def config_from_metadata(md: Mapping[str, str]) -> TrainConfig:
    """The ``ss_*`` keys of a checkpoint header as a TrainConfig (REF §4.3-§4.5)."""
    if not md:
        return TrainConfig()
    return TrainConfig(
        output_name=md.get("ss_output_name") or None,
        num_train_images=_num(md.get("ss_num_train_images"), int),
        num_reg_images=_num(md.get("ss_num_reg_images"), int),
        num_batches_per_epoch=_num(md.get("ss_num_batches_per_epoch"), int),
        num_epochs=_num(md.get("ss_num_epochs"), int),
        batch_size=_batch_from_metadata(md),
        gradient_accumulation_steps=_num(md.get("ss_gradient_accumulation_steps"), int),
        total_steps=_num(md.get("ss_max_train_steps"), int),
        network_dim=_num(md.get("ss_network_dim"), int),
        network_alpha=_num(md.get("ss_network_alpha")),
        learning_rate=_num(md.get("ss_learning_rate")),
        unet_lr=_num(md.get("ss_unet_lr")),
        text_encoder_lr=_num(md.get("ss_text_encoder_lr")),
        optimizer=md.get("ss_optimizer") or None,
        scheduler=md.get("ss_lr_scheduler") or None,
        resolution=_resolution_from_metadata(md),
        base_model_version=md.get("ss_base_model_version") or None,
        mixed_precision=md.get("ss_mixed_precision") or None,
        gradient_checkpointing=_bool(md.get("ss_gradient_checkpointing")),
    )


def config_from_options(options: Options, script: str | None = None) -> TrainConfig:
    """Trainer options as a TrainConfig (what the command line or launch config asks for)."""
    if not options:
        return TrainConfig()

    def flag(name: str) -> bool | None:
        return True if options.get(name) is True else None

    attention = next((a for a in ("xformers", "sdpa", "mem_eff_attn") if options.get(a) is True), None)
    base = None
    if script and "sdxl" in os.path.basename(script):
        base = "sdxl"
    res = _opt(options, "resolution")
    return TrainConfig(
        output_name=_opt(options, "output_name"),
        num_epochs=_num(_opt(options, "max_train_epochs"), int),
        batch_size=_num(_opt(options, "train_batch_size"), int) if "dataset_config" not in options else None,
        gradient_accumulation_steps=_num(_opt(options, "gradient_accumulation_steps"), int),
        total_steps=None if "max_train_epochs" in options else _num(_opt(options, "max_train_steps"), int),
        network_dim=_num(_opt(options, "network_dim"), int),
        network_alpha=_num(_opt(options, "network_alpha")),
        learning_rate=_num(_opt(options, "learning_rate")),
        unet_lr=_num(_opt(options, "unet_lr")),
        text_encoder_lr=_num(_opt(options, "text_encoder_lr")),
        optimizer=_opt(options, "optimizer_type"),
        scheduler=_opt(options, "lr_scheduler"),
        resolution=res.replace(",", "x") if res else None,
        base_model_version=base,
        mixed_precision=_opt(options, "mixed_precision"),
        save_every_n_epochs=_num(_opt(options, "save_every_n_epochs"), int),
        save_every_n_steps=_num(_opt(options, "save_every_n_steps"), int),
        save_state=bool(options.get("save_state") is True or options.get("save_state_on_train_end") is True),
        gradient_checkpointing=flag("gradient_checkpointing"),
        cache_text_encoder_outputs=flag("cache_text_encoder_outputs"),
        network_train_unet_only=flag("network_train_unet_only"),
        attention=attention,
        logging_dir=_opt(options, "logging_dir"),
    )


def merge_config(*layers: TrainConfig | None) -> TrainConfig:
    """Field by field, the first layer that knows a value wins (log > metadata > options)."""
    values: dict[str, Any] = {}
    for f in fields(TrainConfig):
        for layer in layers:
            if layer is None:
                continue
            v = getattr(layer, f.name)
            if v is not None and not (f.name == "save_state" and v is False):
                values[f.name] = v
                break
    return TrainConfig(**values)


def infer_save_every(checkpoints: Sequence[Checkpoint]) -> tuple[int | None, int | None]:
    """(every_n_epochs, every_n_steps) from the spacing of existing checkpoints."""
    epochs = sorted({c.epoch for c in checkpoints if c.kind is CheckpointKind.EPOCH and c.epoch})
    steps = sorted({c.step for c in checkpoints if c.kind is CheckpointKind.STEP and c.step})

    def spacing(xs: list[int]) -> int | None:
        if not xs:
            return None
        if len(xs) == 1:
            return xs[0]
        gaps = [b - a for a, b in itertools.pairwise(xs) if b > a]
        return min(gaps) if gaps else None

    return spacing(epochs), spacing(steps)


def _logged_saves(saves: Sequence[Any]) -> list[tuple[str, CheckpointKind, int]]:
    """(output name, kind, number) of the epoch/step checkpoints the log announced."""
    from sdxl_tui.sources.checkpoints import classify_name

    out: list[tuple[str, CheckpointKind, int]] = []
    for ev in saves:
        path = getattr(ev, "path", None)
        if getattr(ev, "kind", None) != "checkpoint" or not path:
            continue
        stem = os.path.splitext(os.path.basename(str(path)))[0]
        kind, name, number = classify_name(stem)
        if kind is not None and number is not None:
            out.append((name, kind, number))
    return out


def _spacing_of_logged(logged: Sequence[tuple[str, CheckpointKind, int]]) -> tuple[int | None, int | None]:
    def spacing(xs: list[int]) -> int | None:
        xs = sorted(set(xs))
        if not xs:
            return None
        gaps = [b - a for a, b in itertools.pairwise(xs)]
        return min(gaps) if gaps else xs[0]

    return (spacing([n for _, k, n in logged if k is CheckpointKind.EPOCH]),
            spacing([n for _, k, n in logged if k is CheckpointKind.STEP]))


# =============================================================================================
# the reader


def _try_import(module: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        return None


def _mtime(path: str | None) -> float | None:
    if not path:
        return None
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


class RunReader:
    """Incremental reader of one run directory; ``refresh()`` returns an immutable snapshot.

    Args:
        run_dir: the trainer's ``--output_dir``; it may not exist yet.
        log_path: the console log (default: ``RUN_DIR/training.log``, else the run record's
            or launch config's log, else the newest ``*.log`` in the directory).
        logs_dir: TensorBoard directory; default ``RUN_DIR`` (recursively) plus the trainer's
            ``--logging_dir`` when it lies outside.
        gpu: a ``GpuMonitor``; ``None`` makes a default one lazily; ``False`` disables GPUs.
        procs: a ``ProcessWatcher``; ``None`` makes a default one; ``False`` disables the
            process table (liveness is then guessed from the log's age, and the reason says so).
        clock: "now" (injected in tests: no sleeps).
        settings: :class:`sdxl_tui.config.Settings` (stall factor, GPU temperature, intervals).
        launch_file: an explicit launch config TOML (default ``RUN_DIR/sdxl-tui.toml``).
        log_tail_bytes, log_head_bytes: how much of a big log the first refresh parses (its
            end, and its start for the ``running training`` block); the middle is skipped.
            Later refreshes read only appended bytes. ``read_run`` uses a smaller tail: a
            one-shot status needs the latest facts, not a long log pane.
        event_reader: an ``EventReader`` made (and maybe prefetching) by the caller, for the
            event roots it guessed (``logs_dir``, else the run directory); replaced (and
            closed) if the run's ``--logging_dir`` adds another root.

    Not thread-safe: one reader belongs to one worker thread.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        log_path: str | os.PathLike[str] | None = None,
        logs_dir: str | os.PathLike[str] | None = None,
        gpu: Any = None,
        procs: Any = None,
        clock: Callable[[], float] = time.time,
        settings: Any = None,
        launch_file: str | os.PathLike[str] | None = None,
        log_tail_bytes: int = 1 << 20,
        log_head_bytes: int = 256 << 10,
        event_reader: Any = None,
    ) -> None:
        self._log_tail_bytes = log_tail_bytes
        self._log_head_bytes = log_head_bytes
        self.run_dir = os.path.abspath(os.path.expanduser(os.fspath(run_dir)))
        self._explicit_log = os.fspath(log_path) if log_path is not None else None
        self._explicit_logs_dir = os.fspath(logs_dir) if logs_dir is not None else None
        self._gpu_arg = gpu
        self._procs_arg = procs
        self._clock = clock
        self._settings = settings
        self._launch_file = os.fspath(launch_file) if launch_file is not None else None
        self._stall_factor = float(self._setting("alerts.stall_factor", 10.0))
        self._temp_warn = int(self._setting("alerts.gpu_temp_warn", 85))
        self._proc_interval = float(self._setting("refresh.process_interval", 2.0))
        self._gpu_interval = float(self._setting("refresh.gpu_interval", 1.0))
        self._gpu: Any = None
        self._procs: Any = None
        self._last_proc_at: float | None = None
        self._last_gpu_at: float | None = None
        self._tree: ProcessTree | None = None
        self._exit: Any = None
        self._gpu_status = GpuStatus(available=False, reason="GPU monitoring disabled (--no-gpu)"
                                     if gpu is False else "not sampled yet")
        from sdxl_tui.sources.scheduler import SchedulerWatcher

        self._scheduler = SchedulerWatcher(  # a Slurm run's job: state, node, remote GPUs
            self.run_dir, interval=float(self._setting("refresh.scheduler_interval", 10.0)),
            gpu_interval=float(self._setting("refresh.remote_gpu_interval", 30.0)))
        self._reset_readers()
        if event_reader is not None:
            self._use_event_reader(event_reader)

    # -------------------------------------------------------------------------- helpers

    def _setting(self, name: str, default: Any) -> Any:
        if self._settings is None:
            return default
        try:
            return self._settings.get(name, default)
        except AttributeError:
            return default

    def _reset_readers(self) -> None:
        """Forget everything read so far (the directory vanished or was replaced)."""
        from sdxl_tui.sources.checkpoints import CheckpointScanner

        _close_events(getattr(self, "_events", None))

        self._scanner = CheckpointScanner(self.run_dir, clock=self._clock)
        self._tail: Any = None
        self._parser: Any = None
        self._log_file: str | None = None
        self._events: Any = None
        self._event_roots: tuple[str, ...] = ()
        self._dir_id: tuple[int, int] | None = None
        self._launch_options: dict[str, bool | tuple[str, ...]] | None = None
        self._launch_sig: tuple[str, int, int] | None = None
        self._launch_log: str | None = None
        self._record_argv: tuple[str, ...] = ()
        self._log_problems: list[str] = []
        self._loss_cache: dict[tuple[str, float, int], float] = {}
        self._tb_seen: tuple[str, int | None] | None = None
        self._state_size_cache: tuple[tuple[str, int], int] | None = None

    def _use_event_reader(self, reader: Any) -> None:
        """A reader started early (``EventReader.prefetch`` before the heavy imports); used
        if its roots are the ones this reader settles on, else closed and replaced."""
        self._events = reader
        self._event_roots = tuple(reader.roots)

    # -- sub-readers --------------------------------------------------------------------

    def _log_candidate(self, record: Mapping[str, Any] | None) -> str | None:
        if self._explicit_log:
            return self._explicit_log
        default = os.path.join(self.run_dir, LOG_NAME)
        if os.path.exists(default):
            return default
        if record and isinstance(record.get("log"), str):
            return str(record["log"])
        if self._launch_log:
            return self._launch_log
        try:
            logs = [e for e in os.scandir(self.run_dir) if e.name.endswith(".log") and e.is_file()]
        except OSError:
            logs = []
        if logs:
            return max(logs, key=lambda e: e.stat().st_mtime).path
        return default

    def _read_log(self, path: str | None) -> tuple[Any, list[str]]:
        """Feed the parser with new log bytes; returns (facts or None, problems)."""
        problems: list[str] = []
        if path is None:
            return None, problems
        logtail = _try_import("sdxl_tui.sources.logtail")
        logparse = _try_import("sdxl_tui.sources.logparse")
        if logtail is None or logparse is None:
            return None, ["log reader not available (sources/logtail.py, logparse.py missing)"]
        if self._tail is None or path != self._log_file:
            self._tail = logtail.LogTail(path, initial_tail_bytes=self._log_tail_bytes,
                                         head_bytes=self._log_head_bytes)
            self._parser = logparse.LogParser()
            self._log_file = path
        read = self._tail.read()
        if getattr(read, "truncated", False) or getattr(read, "rotated", False):
            # The log started over (a new run with `>`, or rotation): parse it afresh.
            self._parser = logparse.LogParser()
            problems.append(f"log {'rotated' if getattr(read, 'rotated', False) else 'truncated'}; parsing it again: {path}")
        head = getattr(read, "head_segments", ()) or ()
        if head:
            self._parser.feed(head)
        segs = getattr(read, "segments", ()) or ()
        if segs:
            self._parser.feed(segs)
        for p in getattr(read, "problems", ()) or ():
            problems.append(str(p))
        if getattr(read, "missing", False):
            return (self._parser.facts if self._parser is not None else None), problems
        return self._parser.facts, problems

    def _event_reader(self, logging_dir: str | None) -> Any:
        roots: list[str] = []
        if self._explicit_logs_dir:
            roots.append(self._explicit_logs_dir)
        else:
            roots.append(self.run_dir)
            if logging_dir:
                ld = logging_dir if os.path.isabs(logging_dir) else os.path.join(self.run_dir, logging_dir)
                ld = os.path.abspath(ld)
                if not (ld + os.sep).startswith(self.run_dir + os.sep):
                    roots.append(ld)
        key = tuple(roots)
        if self._events is None or key != self._event_roots:
            from sdxl_tui.sources.events import EventReader

            _close_events(self._events)  # e.g. a prefetch for other roots: stop it
            self._events = EventReader(roots)
            self._event_roots = key
        return self._events

    def prefetch_events(self) -> bool:
        """Start the first event read in a forked child (see ``EventReader.prefetch``).

        For one-shot, single-threaded callers (``read_run``): the records are decoded on the
        second core while this process reads the log, the checkpoint headers, the process
        table and NVML. The roots are guessed before the log is read (the run directory, or
        ``logs_dir``); if the log then names a ``--logging_dir`` outside the run directory,
        the prefetch is dropped and the files are read in-process as usual.
        """
        if self._events is not None:
            prefetch = getattr(self._events, "prefetch", None)
            return bool(prefetch()) if prefetch is not None else False
        if not os.path.isdir(self.run_dir):
            return False
        if not os.access(self.run_dir, os.R_OK | os.X_OK):
            return False
        reader = self._event_reader(None)
        return bool(reader.prefetch())

    def _sample_procs(self, now: float) -> None:
        if self._procs_arg is False:
            return
        if self._procs is None:
            if self._procs_arg is not None:
                self._procs = self._procs_arg
            else:
                from sdxl_tui.sources.procs import ProcessWatcher

                self._procs = ProcessWatcher(self.run_dir)
        if self._last_proc_at is not None and now - self._last_proc_at < self._proc_interval:
            return
        self._last_proc_at = now
        try:
            self._tree = self._procs.sample()
        except Exception as exc:  # noqa: BLE001 - a psutil surprise must not kill the reader
            self._tree = None
            self._log_problems.append(f"process scan failed: {exc}")
        self._exit = getattr(self._procs, "last_exit", None)
        disc = getattr(self._procs, "last_discovery", None)
        record = getattr(disc, "record", None) if disc is not None else None
        if isinstance(record, Mapping) and isinstance(record.get("argv"), list):
            self._record_argv = tuple(str(a) for a in record["argv"])

    def _sample_gpu(self, now: float) -> None:
        if self._gpu_arg is False:
            return
        remote = self._scheduler.sample_gpu()
        if remote is not None:  # a Slurm job: its node's GPUs, not this machine's
            self._gpu_status = remote
            return
        if self._gpu is None:
            if self._gpu_arg is not None:
                self._gpu = self._gpu_arg
            else:
                gpu_mod = _try_import("sdxl_tui.sources.gpu")
                if gpu_mod is None:
                    self._gpu_status = GpuStatus(available=False, reason="GPU reader not available")
                    self._gpu_arg = False
                    return
                self._gpu = gpu_mod.GpuMonitor()
        if self._last_gpu_at is not None and now - self._last_gpu_at < self._gpu_interval:
            return
        self._last_gpu_at = now
        pids = [p.pid for p in self._tree.all()] if self._tree is not None else []
        try:
            self._gpu_status = self._gpu.sample(pids)
        except Exception as exc:  # noqa: BLE001
            self._gpu_status = GpuStatus(available=False, reason=f"GPU query failed: {exc}")

    def _launch(self) -> None:
        """Options and log path from the launch config (re-read only when its file changes)."""
        mod = _try_import("sdxl_tui.control.launch_config")
        if mod is None:
            self._launch_options = {}
            return
        try:
            path = mod.find_launch_config(self.run_dir, self._launch_file)
            st = os.stat(path) if path is not None else None
        except OSError:
            path, st = None, None
        sig = None if st is None else (str(path), st.st_mtime_ns, st.st_size)
        if self._launch_options is not None and sig == self._launch_sig:
            return
        self._launch_sig = sig
        self._launch_options = {}
        self._launch_log = None
        if path is None or st is None:
            return
        try:
            cfg = mod.load_launch_config(path)
        except Exception as exc:  # noqa: BLE001 - a bad launch file is a note, not a crash
            self._log_problems.append(f"launch config not readable: {exc}")
            return
        opts: dict[str, bool | tuple[str, ...]] = {}
        if cfg.config_file:
            opts.update(options_from_toml(cfg.config_file))
        opts.update(options_from_mapping(cfg.args))
        self._launch_options = opts
        self._launch_log = cfg.log_path

    # -------------------------------------------------------------------------- refresh

    def close(self) -> None:
        """Release NVML (the only resource held between refreshes) and any prefetch child."""
        _close_events(self._events)
        if self._gpu is None or self._gpu_arg is not None:
            return  # an injected monitor belongs to the caller
        try:
            self._gpu.close()
        except Exception as exc:  # noqa: BLE001 - closing must never raise at exit
            self._log_problems.append(f"NVML shutdown failed: {exc}")

    def _state_size(self, states: Sequence[StateDir]) -> int | None:
        """Bytes in the newest complete ``-state`` dir (one level; cached by path and mtime)."""
        done = [s for s in states if s.complete]
        if not done:
            return None
        newest = max(done, key=lambda s: (s.step or -1, s.epoch or -1))
        try:
            key = (newest.path, os.stat(newest.path).st_mtime_ns)
        except OSError:
            return None
        if self._state_size_cache is not None and self._state_size_cache[0] == key:
            return self._state_size_cache[1]
        total = 0
        try:
            with os.scandir(newest.path) as it:
                for e in it:
                    try:
                        if e.is_file():
                            total += e.stat().st_size
                    except OSError:
                        continue
        except OSError:
            return None
        self._state_size_cache = (key, total)
        return total

    def _ended_tree(self, record: Any) -> ProcessTree | None:
        """The trainer that is gone, with its exit status when known (run record, watcher)."""
        ex = self._exit
        pid = getattr(ex, "pid", None)
        if ex is None or not isinstance(pid, int):
            return None
        rec = record if isinstance(record, Mapping) and record.get("pid") == pid else {}
        create = rec.get("create_time")
        argv = rec.get("argv")
        status = getattr(ex, "description", None) or "exited"
        info = ProcInfo(
            pid=pid,
            create_time=float(create) if isinstance(create, (int, float)) else 0.0,
            cmdline=tuple(str(a) for a in argv) if isinstance(argv, list) else (),
            alive=False,
            status=str(status),
            exit_code=getattr(ex, "exit_code", None),
        )
        return ProcessTree(trainer=info, recorded=bool(rec))

    def _with_loss(self, c: Checkpoint, series: Mapping[str, Series]) -> Checkpoint:
        if c.step is None or c.loss_at_save is not None:
            return c
        key = (c.path, c.mtime, c.step)
        value = self._loss_cache.get(key)
        if value is None:
            value = loss_at(series, c.step)
            if value is None:
                return c
            last = series.get("loss/average") or series.get("loss/current")
            if last is not None and last.last is not None and last.last.step > c.step:
                if len(self._loss_cache) > 4096:
                    self._loss_cache.clear()
                self._loss_cache[key] = value
        return replace(c, loss_at_save=value)

    def refresh(self) -> RunSnapshot:
        """Read what changed and return the run as it is now. Never raises for I/O trouble."""
        now = self._clock()
        problems: list[str] = []
        try:
            st = os.stat(self.run_dir)
        except FileNotFoundError:
            if self._dir_id is not None:
                self._reset_readers()
            state, reason = decide_state(StateInputs(now=now, exists=False))
            return RunSnapshot(run_dir=self.run_dir, taken_at=now, state=state,
                               state_reason=f"{reason}: {self.run_dir}", gpu=self._gpu_status)
        except OSError as exc:
            return RunSnapshot(run_dir=self.run_dir, taken_at=now, state=RunState.WAITING,
                               state_reason=f"cannot read the run directory: {exc.strerror or exc}",
                               problems=(f"cannot stat {self.run_dir}: {exc}",))
        if not os.path.isdir(self.run_dir):
            return RunSnapshot(run_dir=self.run_dir, taken_at=now, state=RunState.MISSING,
                               state_reason=f"not a directory: {self.run_dir}")
        dir_id = (st.st_dev, st.st_ino)
        if self._dir_id is not None and dir_id != self._dir_id:
            self._reset_readers()
            problems.append("the run directory was replaced; reading it from scratch")
        self._dir_id = dir_id
        readable = os.access(self.run_dir, os.R_OK | os.X_OK)
        if not readable:
            problems.append(f"permission denied: {self.run_dir}")

        self._launch()
        self._sample_procs(now)
        tree = self._tree
        alive: bool | None = None
        if tree is not None:
            alive = tree.alive
        exit_code = getattr(self._exit, "exit_code", None) if tree is None else None
        exit_signal = getattr(self._exit, "signal", None) if tree is None else None
        if tree is None and self._exit is not None:
            alive = False
        sched = self._scheduler.sample()
        alive, exit_code, exit_signal = scheduler_liveness(sched, alive, exit_code, exit_signal)

        # what the trainer was told: live cmdline > run record argv > launch config
        options: dict[str, bool | tuple[str, ...]] = dict(self._launch_options or {})
        script: str | None = None
        record = getattr(getattr(self._procs, "last_discovery", None), "record", None) if self._procs else None
        argv: Sequence[str] = tree.trainer.cmdline if tree is not None else self._record_argv
        if argv:
            cwd = record.get("cwd") if isinstance(record, Mapping) else None
            options.update(options_from_argv(argv, cwd=cwd if isinstance(cwd, str) else None))
            script = next((os.path.basename(a) for a in argv if a.endswith(".py")), None)

        # the log
        log_path = self._log_candidate(record if isinstance(record, Mapping) else None)
        facts, log_problems = self._read_log(log_path) if readable else (None, [])
        problems.extend(log_problems)
        problems.extend(self._log_problems)
        self._log_problems = []
        log_cfg: TrainConfig | None = getattr(facts, "config", None) if facts is not None else None
        if log_cfg is not None and not isinstance(log_cfg, TrainConfig):
            log_cfg = None

        # checkpoints
        scan = self._scanner.scan()
        problems.extend(p for p in scan.problems if "run directory not found" not in p)
        checkpoints = scan.checkpoints
        newest_md: Mapping[str, str] = {}
        for c in sorted(checkpoints, key=lambda c: c.mtime, reverse=True):
            if c.complete and c.metadata:
                newest_md = c.metadata
                break

        opt_cfg = config_from_options(options, script)
        md_cfg = config_from_metadata(newest_md)
        config = merge_config(log_cfg, md_cfg, opt_cfg)
        if config.output_name is None and scan.output_name:
            config = replace(config, output_name=scan.output_name)
        logged = _logged_saves(getattr(facts, "saves", ()) or ())
        if config.output_name is None and logged:
            config = replace(config, output_name=logged[-1][0])
        if config.save_every_n_epochs is None and config.save_every_n_steps is None:
            every_e, every_s = infer_save_every(checkpoints)
            if every_e is None and every_s is None and logged:
                every_e, every_s = _spacing_of_logged(logged)
            config = replace(config, save_every_n_epochs=every_e, save_every_n_steps=every_s)
        if self._scanner.output_name is None and config.output_name:
            self._scanner.output_name = config.output_name

        # GPUs (only needs the process tree): sampled before the event files, which may
        # still be decoding in a prefetch child (read_run)
        self._sample_gpu(now)

        # TensorBoard
        events = self._event_reader(config.logging_dir)
        if readable:
            events.refresh()
        problems.extend(events.problems)
        series: dict[str, Series] = dict(events.series)
        if facts is not None and not any(t.startswith("loss/") for t in series):
            pts = tuple(getattr(facts, "avr_loss_points", ()) or ())
            if pts:
                series["loss/average"] = Series(
                    tag="loss/average", points=pts, count=int(getattr(facts, "avr_loss_count", 0) or len(pts)),
                    last=pts[-1], source="log",
                )

        # progress numbers
        step = getattr(facts, "step", None)
        total = getattr(facts, "total_steps", None) or config.total_steps
        loss_series = series.get("loss/current") or series.get("loss/average")
        if step is None and loss_series is not None and loss_series.last is not None and loss_series.source != "log":
            step = loss_series.last.step
        epoch = getattr(facts, "epoch", None)
        epochs = getattr(facts, "epochs", None) or config.num_epochs
        if step is not None and config.steps_per_epoch:
            # The "epoch N/M" line may lie in the skipped middle of a big log (or stdout is
            # block-buffered, REF §1.3): the step says at least which epoch it is in.
            by_step = min(epochs or 10**9, max(1, math.ceil(step / config.steps_per_epoch)))
            epoch = by_step if epoch is None else max(epoch, by_step)
        if epoch is None:
            saved = [c for c in checkpoints if c.complete and c.epoch is not None]
            if saved:
                epoch = max(saved, key=lambda c: (c.step or -1, c.mtime)).epoch
        if total is None and config.steps_per_epoch and epochs:
            total = config.steps_per_epoch * epochs
        sps = getattr(facts, "tqdm_rate", None)
        if not sps and loss_series is not None and loss_series.source != "log":
            sps = steps_per_second_from_points(loss_series.points)

        # times
        log_mtime = _mtime(self._log_file) if facts is not None else None
        writes = [t for t in (log_mtime, events.last_wall_time,
                              max((c.mtime for c in checkpoints), default=None)) if t is not None]
        last_write = max(writes) if writes else None

        final = next((c for c in checkpoints if c.kind is CheckpointKind.FINAL), None)
        traceback = getattr(facts, "traceback", None)
        ki = bool(getattr(facts, "keyboard_interrupt", False)) or bool(
            traceback and traceback.strip().startswith("KeyboardInterrupt"))
        if traceback is None and getattr(facts, "no_data", False):
            # sd-scripts logs an ERROR and returns: the process exits without training
            traceback = "No data found. Please verify arguments (train_data_dir must be the parent of folders with images)"
        if traceback is None and getattr(facts, "invalid_config", False):
            traceback = "Invalid user config (the dataset TOML): MultipleInvalid"
        oom = getattr(facts, "oom", None)
        host_oom = getattr(facts, "host_oom", None)
        if host_oom is None and traceback and ("killed by signal: Killed" in traceback or "SIGKILL" in traceback):
            host_oom = traceback
        bad_args = tuple(getattr(facts, "unrecognized_args", ()) or ())
        nan_step = getattr(facts, "first_nan_step", None)
        if nan_step is None:
            nan_step = getattr(facts, "nan_step", None)
        if nan_step is None:
            nan_step = _first_nan(series.get("loss/current"))

        # An exception the live trainer survived (its step moved on since we first saw the
        # line) does not end the run: it stays an alert, not the state.
        if traceback is not None and (self._tb_seen is None or self._tb_seen[0] != traceback):
            self._tb_seen = (traceback, step)
        survived = (
            alive is True and traceback is not None and self._tb_seen is not None
            and self._tb_seen[1] is not None and step is not None and step > self._tb_seen[1]
        )
        inputs = StateInputs(
            now=now,
            exists=True,
            readable=readable,
            has_output=bool((facts is not None and log_mtime is not None) or events.files or checkpoints),
            has_log=log_mtime is not None,
            phase=getattr(facts, "phase", None),
            step=step,
            total_steps=total,
            model_saved=bool(getattr(facts, "model_saved", False)),
            final_complete=final is not None and final.complete,
            final_name=final.name if final is not None else None,
            traceback=None if survived else traceback,
            keyboard_interrupt=ki and not survived,
            oom=oom,
            host_oom=host_oom,
            unrecognized_args=bad_args,
            process_known=self._procs_arg is not False,
            alive=alive,
            pid=tree.pid if tree is not None else getattr(self._exit, "pid", None),
            exit_code=exit_code,
            exit_signal=exit_signal,
            last_write_at=last_write,
            seconds_per_step=sps,
            stall_factor=self._stall_factor,
        )
        state, reason = decide_state(inputs)
        if sched is not None:
            job_record = self._scheduler.record
            state, reason = merge_scheduler_state(
                state, reason, sched, step=step, states=scan.states, now=now,
                stopped=stopped_by(self.run_dir, job_record.submitted_at if job_record else None))

        # loss at save time (cached once the series has passed the checkpoint's step)
        checkpoints = tuple(self._with_loss(c, series) for c in checkpoints)
        done = {c.name for c in checkpoints if c.complete}
        ext = ".safetensors"
        named = [c for c in checkpoints if c.complete]
        if named:
            ext = os.path.splitext(named[-1].name)[1] or ext

        running = state.is_live
        lc = series.get("loss/current")
        pauses = sum(1 for c in checkpoints if c.step is not None and lc is not None and lc.points
                     and lc.points[0].step < c.step <= lc.points[-1].step)
        pause = None
        if lc is not None and lc.points and lc.source != "log":
            pause = pause_per_save(lc.points[0], lc.last, sps, pauses)
        started = _num(newest_md.get("ss_training_started_at")) if newest_md else None
        if started is None and events.series:
            firsts = [s.points[0].wall_time for s in events.series.values() if s.points]
            started = min(firsts) if firsts else None
        progress = compute_progress(
            config, epoch=epoch, epochs=epochs, step=step, total_steps=total, seconds_per_step=sps,
            elapsed_seconds=getattr(facts, "tqdm_elapsed", None), now=now, last_step_at=last_write,
            pause_seconds=pause, done=done, started_at=started, running=running, ext=ext,
        )

        disk_free = None
        try:
            disk_free = shutil.disk_usage(self.run_dir).free
        except OSError:
            pass
        remaining = count_upcoming_saves(config, step=step or 0, total_steps=total, done=done) if total else 0
        alerts = derive_alerts(AlertInputs(
            state=state, config=config, options=options, script=script, now=now, step=step,
            total_steps=total, seconds_per_step=sps, last_step_at=last_write,
            stall_after=stall_threshold(sps, self._stall_factor), oom=oom, host_oom=host_oom,
            traceback=traceback, keyboard_interrupt=ki, nan_step=nan_step, unrecognized_args=bad_args,
            exit_code=exit_code, exit_signal=exit_signal, process=tree,
            process_known=self._procs_arg is not False, checkpoints=checkpoints, states=scan.states,
            remaining_saves=remaining, state_dir_size=self._state_size(scan.states), disk_free=disk_free, gpu=self._gpu_status,
            gpu_temp_warn=self._temp_warn, problems=tuple(dict.fromkeys(problems)),
            log_name=os.path.basename(self._log_file or LOG_NAME),
        ))
        job_alert = scheduler_alert(state, reason, sched, now)
        if job_alert is not None:
            alerts = (*alerts, job_alert)
        lines = tuple(getattr(facts, "lines", ()) or ()) if facts is not None else ()
        line_count = getattr(facts, "line_count", None)
        if line_count is None:
            line_count = (lines[-1].number + 1) if lines and isinstance(lines[-1], LogLine) else 0
        return RunSnapshot(
            run_dir=self.run_dir,
            taken_at=now,
            state=state,
            state_reason=reason,
            config=config,
            progress=progress,
            series=MappingProxyType(series),
            checkpoints=checkpoints,
            states=scan.states,
            samples=scan.samples,
            evaluations=scan.evaluations,
            process=tree if tree is not None else self._ended_tree(record),
            gpu=self._gpu_status,
            alerts=alerts,
            log_path=self._log_file if log_mtime is not None else None,
            event_files=events.files,
            resume_steps=events.resume_steps,
            problems=tuple(dict.fromkeys(problems)),
            log_lines=lines,
            log_line_count=int(line_count),
            scheduler=sched,
        )


def _first_nan(series: Series | None) -> int | None:
    """First NaN step of a series when the log parser did not report one (display points)."""
    if series is None or series.last is None:
        return None
    if not math.isnan(series.last.value):
        return None
    for p in series.points:
        if math.isnan(p.value):
            return p.step
    return series.last.step


def _step_of(p: ScalarPoint) -> int:
    return p.step


def loss_at(series: Mapping[str, Series], step: int) -> float | None:
    """``loss/average`` (else ``loss/current``) at ``step``, or at the last point before it."""
    for tag in ("loss/average", "loss/current"):
        s = series.get(tag)
        if s is None or not s.points:
            continue
        i = bisect_right(s.points, step, key=_step_of)
        if i:
            return s.points[i - 1].value
    return None


def _close_events(reader: Any) -> None:
    """Stop an event reader's prefetch child, if it has one (readers may be injected)."""
    close = getattr(reader, "close", None)
    if close is not None:
        close()


def read_run(run_dir: str | os.PathLike[str], **kw: Any) -> RunSnapshot:
    """One-shot snapshot (``sdxl-tui status``); releases NVML before returning."""
    kw.setdefault("log_tail_bytes", 256 << 10)
    reader = RunReader(run_dir, **kw)
    try:
        reader.prefetch_events()
        return reader.refresh()
    finally:
        reader.close()
