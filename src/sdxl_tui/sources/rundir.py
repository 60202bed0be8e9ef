"""``RunReader(run_dir).refresh() -> RunSnapshot``: the one place where the sub-readers meet.

Why an integrator: each sub-reader knows one file format (the log, TensorBoard events,
safetensors headers, the process table); none of them can say "this run failed at step 37
because CUDA ran out of memory, try batch 2 with accumulation 4". The reader owns one of
each and asks each for what changed (all of them are incremental); what they saw becomes one
frozen :class:`~sdxl_tui.sources.fusion.Observations`, and the pure
:func:`~sdxl_tui.sources.fusion.fuse` turns it into the snapshot (configuration, position,
state, ETA, alerts).

GPUs are not sampled here: the caller hands in a GPU source (``read_run`` samples NVML once;
the dashboard's own GPU feed samples it on its thread and the reader takes the latest).

It never writes into the run directory.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Literal

from sdxl_tui.config import Settings
from sdxl_tui.formats.cmdline import (
    OptionValues,
    config_file_options,
    options_from_argv,
    options_from_mapping,
    script_name,
)
from sdxl_tui.formats.launch_config import find_launch_config, load_launch_config
from sdxl_tui.formats.names import LOG_NAME
from sdxl_tui.formats.queue import queue_dir, read_queue
from sdxl_tui.formats.statedir import RunRecord, read_stop_record
from sdxl_tui.model import GpuStatus, ProcessTree, QueueEntry, RunSnapshot, RunState, StateDir
from sdxl_tui.sources.cache import CacheFile, event_cache, headers_cache, load_headers, save_headers
from sdxl_tui.sources.checkpoints import CheckpointScan, CheckpointScanner
from sdxl_tui.sources.events import EventReader
from sdxl_tui.sources.forked import ForkedCall, can_fork
from sdxl_tui.sources.fusion import Observations, fuse, logging_dir_of
from sdxl_tui.sources.gpu import GpuMonitor
from sdxl_tui.sources.logfacts import LogFacts
from sdxl_tui.sources.procs import ExitInfo, ProcessWatcher
from sdxl_tui.sources.runlog import RunLog
from sdxl_tui.sources.scheduler import SchedulerWatcher
from sdxl_tui.sources.state import StateInputs, decide_state
from sdxl_tui.sources.writtenlog import written_log

__all__ = ["GpuSource", "RunReader", "read_run"]

#: Where a reader gets the GPUs from: called with the trainer's pids, returns the status now.
GpuSource = Callable[[Sequence[int]], GpuStatus]

_NO_GPU = GpuStatus(available=False, reason="GPU monitoring disabled (--no-gpu)")


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
        gpu: where the GPU status comes from (see :data:`GpuSource`); None: no GPU information.
        procs: a ``ProcessWatcher``; ``None`` makes a default one; ``False`` disables the
            process table (liveness is then guessed from the log's age, and the reason says so).
        clock: "now" (injected in tests: no sleeps).
        settings: stall factor, GPU temperature, process-scan interval.
        launch_file: an explicit launch config TOML (default ``RUN_DIR/sdxl-tui.toml``).
        log_tail_bytes, log_head_bytes: how much of a big log the first refresh parses (its
            end, and its start for the ``running training`` block); the middle is skipped.
            Later refreshes read only appended bytes. ``read_run`` uses a smaller tail: a
            one-shot status needs the latest facts, not a long log pane.
        event_reader: an ``EventReader`` made (and maybe prefetching) by the caller, for the
            event roots it guessed (``logs_dir``, else the run directory); replaced (and
            closed) if the run's ``--logging_dir`` adds another root.
        cache: start from the event files' cached state and save it (``sources/cache.py``),
            if ``settings.cache.enabled``; ``sdxl-tui status`` and the dashboard turn it on.

    Not thread-safe: one reader belongs to one worker thread.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        log_path: str | os.PathLike[str] | None = None,
        logs_dir: str | os.PathLike[str] | None = None,
        gpu: GpuSource | None = None,
        procs: ProcessWatcher | Literal[False] | None = None,
        clock: Callable[[], float] = time.time,
        settings: Settings | None = None,
        launch_file: str | os.PathLike[str] | None = None,
        log_tail_bytes: int = 1 << 20,
        log_head_bytes: int = 256 << 10,
        event_reader: EventReader | None = None,
        cache: bool = False,
    ) -> None:
        self.run_dir = os.path.abspath(os.path.expanduser(os.fspath(run_dir)))
        self._log_tail_bytes = log_tail_bytes
        self._log_head_bytes = log_head_bytes
        self._explicit_log = os.fspath(log_path) if log_path is not None else None
        self._explicit_logs_dir = os.fspath(logs_dir) if logs_dir is not None else None
        self._launch_file = os.fspath(launch_file) if launch_file is not None else None
        self._gpu = gpu
        self._process_known = procs is not False
        self._procs: ProcessWatcher | None = procs if isinstance(procs, ProcessWatcher) else None
        self._clock = clock
        self._settings = settings or Settings()
        self._use_cache = cache
        self._side: ForkedCall[bool] | None = None  # the log and headers child (prefetch_first_read)
        self._headers_file: CacheFile | Literal[False] | None = None
        self._last_proc_at: float | None = None
        self._tree: ProcessTree | None = None
        self._exit: ExitInfo | None = None
        self._record: RunRecord | None = None
        self._events: EventReader | None = None
        self._event_roots: tuple[str, ...] = ()
        refresh = self._settings.refresh
        self._scheduler = SchedulerWatcher(  # a Slurm run's job: state, node, the node's GPUs
            self.run_dir, interval=refresh.scheduler_interval, gpu_interval=refresh.remote_gpu_interval)
        self._queue: tuple[QueueEntry, ...] = ()
        self._queue_at: float | None = None
        self._reset_readers()
        if event_reader is not None:
            self._events = event_reader
            self._event_roots = tuple(event_reader.roots)

    def _reset_readers(self) -> None:
        """Forget everything read so far (the directory vanished or was replaced)."""
        if self._events is not None:
            self._events.close()
        self._scanner = CheckpointScanner(self.run_dir, clock=self._clock)
        self._log = RunLog(self._log_tail_bytes, self._log_head_bytes, self._settings, cache=self._use_cache)
        self._events = None
        self._event_roots = ()
        self._dir_id: tuple[int, int] | None = None
        self._launch_options: OptionValues | None = None
        self._launch_sig: tuple[str, int, int] | None = None
        self._launch_log: str | None = None
        self._notes: list[str] = []
        self._prev: RunSnapshot | None = None
        self._state_size_cache: tuple[tuple[str, int], int] | None = None

    # -------------------------------------------------------------------------- sub-readers

    def _log_candidate(self) -> str:
        if self._explicit_log:
            return self._explicit_log
        default = os.path.join(self.run_dir, LOG_NAME)
        if self._tree is not None and self._tree.alive:
            # a rotated log: follow the file the trainer writes, not the new one by that name
            moved = written_log(self._tree.trainer.pid, default)
            if moved is not None:
                return moved
        if os.path.exists(default):
            return default
        if self._record is not None and self._record.log:
            return self._record.log
        if self._launch_log:
            return self._launch_log
        try:
            logs = [e for e in os.scandir(self.run_dir) if e.name.endswith(".log") and e.is_file()]
        except OSError:
            logs = []
        if logs:
            return max(logs, key=lambda e: e.stat().st_mtime).path
        return default

    def _event_reader(self, logging_dir: str | None) -> EventReader:
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
            if self._events is not None:
                self._events.close()  # e.g. a prefetch for other roots: stop it
            cache = event_cache(roots, EventReader.DEFAULT_MAX_POINTS, self._settings) if self._use_cache else None
            self._events = EventReader(roots, cache=cache)
            self._event_roots = key
        return self._events

    def prefetch_events(self) -> bool:
        """Start the first event read in a forked child (see ``EventReader.prefetch``).

        For one-shot, single-threaded callers (``read_run``): the records are decoded on the
        second core while this process reads the log, the checkpoint headers and the process
        table. The roots are guessed before the log is read (the run directory, or
        ``logs_dir``); if the log then names a ``--logging_dir`` outside the run directory,
        the prefetch is dropped and the files are read in-process as usual.
        """
        if self._events is not None:
            return self._events.prefetch()
        if not os.path.isdir(self.run_dir) or not os.access(self.run_dir, os.R_OK | os.X_OK):
            return False
        return self._event_reader(None).prefetch()

    def prefetch_first_read(self) -> bool:
        """The whole first read in forked children: one decodes the event files (their state
        is handed over), another reads the log and the checkpoint headers and leaves their
        state in the cache.

        For a caller whose own process is busy meanwhile (the dashboard imports Textual): the
        first ``refresh`` waits for both children, then takes the event state and loads the
        log's and the headers' from the cache, so each byte is still read once. Without the
        cache only the event files are prefetched (``prefetch_events``), and with little left
        to read after the cache only the log and headers are. Whether a child was started.
        """
        events = self.prefetch_events()  # not when little is left to read after the cache
        if not self._use_cache or not can_fork() or not os.access(self.run_dir, os.R_OK | os.X_OK):
            return events

        def log_and_headers() -> bool:  # in the child: its result is the cache it leaves
            self._log.read(self._log_candidate())
            self._log.save()
            self._scan_checkpoints()
            return True

        try:
            self._side = ForkedCall(log_and_headers)
        except OSError:
            return events
        return True

    def prefetch_done(self, timeout: float) -> bool:
        """Whether the prefetch children (if any) finish within ``timeout`` seconds: then the
        first ``refresh`` is quick (the state is handed over or in the cache)."""
        deadline = time.monotonic() + timeout
        if self._side is not None and not self._side.wait(timeout):
            return False
        return self._events is None or self._events.prefetch_done(deadline - time.monotonic())

    def _settle_prefetch(self) -> None:
        """Before the first read: wait for the prefetch children (see ``prefetch_first_read``)."""
        side, self._side = self._side, None
        if side is not None:
            side.result()
            side.close()
            if self._events is not None:
                self._events.settle()

    def _sample_procs(self, now: float) -> None:
        if not self._process_known:
            return
        if self._procs is None:
            self._procs = ProcessWatcher(self.run_dir)
        if self._last_proc_at is not None and now - self._last_proc_at < self._settings.refresh.process_interval:
            return
        self._last_proc_at = now
        try:
            self._tree = self._procs.sample()
        except Exception as exc:  # noqa: BLE001 - a psutil surprise must not kill the reader
            self._tree = None
            self._notes.append(f"process scan failed: {exc}")
        self._exit = self._procs.last_exit
        disc = self._procs.last_discovery
        self._record = disc.record if disc is not None else None

    def _launch(self) -> OptionValues:
        """Options and log path from the launch config (re-read only when its file changes)."""
        try:
            path = find_launch_config(self.run_dir, self._launch_file)
            st = os.stat(path) if path is not None else None
        except OSError:
            path, st = None, None
        sig = None if path is None or st is None else (str(path), st.st_mtime_ns, st.st_size)
        if self._launch_options is not None and sig == self._launch_sig:
            return self._launch_options
        self._launch_sig = sig
        self._launch_options = {}
        self._launch_log = None
        if path is None or st is None:
            return self._launch_options
        try:
            cfg = load_launch_config(path)
        except ValueError as exc:  # LaunchConfigError: a bad launch file is a note, not a crash
            self._notes.append(f"launch config not readable: {exc}")
            return self._launch_options
        opts: dict[str, bool | tuple[str, ...]] = {}
        if cfg.config_file:
            opts.update(config_file_options(cfg.config_file))
        opts.update(options_from_mapping(cfg.args))
        self._launch_options = opts
        self._launch_log = cfg.log_path
        return opts

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

    def close(self) -> None:
        """Stop a prefetch child (the only resource held between refreshes besides file fds);
        with the cache on, remember where the log was read to."""
        if self._side is not None:
            self._side.close()
            self._side = None
        if self._events is not None:
            self._events.close()
        self._log.close()

    # -------------------------------------------------------------------------- refresh

    def refresh(self) -> RunSnapshot:
        """Read what changed and return the run as it is now. Never raises for I/O trouble."""
        now = self._clock()
        try:
            st = os.stat(self.run_dir)
        except FileNotFoundError:
            if self._dir_id is not None:
                self._reset_readers()
            state, reason = decide_state(StateInputs(now=now, exists=False))
            return RunSnapshot(run_dir=self.run_dir, taken_at=now, state=state,
                               state_reason=f"{reason}: {self.run_dir}", gpu=self._gpu_status(()))
        except OSError as exc:
            return RunSnapshot(run_dir=self.run_dir, taken_at=now, state=RunState.WAITING,
                               state_reason=f"cannot read the run directory: {exc.strerror or exc}",
                               problems=(f"cannot stat {self.run_dir}: {exc}",))
        if not os.path.isdir(self.run_dir):
            return RunSnapshot(run_dir=self.run_dir, taken_at=now, state=RunState.MISSING,
                               state_reason=f"not a directory: {self.run_dir}")
        notes: list[str] = []
        dir_id = (st.st_dev, st.st_ino)
        if self._dir_id is not None and dir_id != self._dir_id:
            self._reset_readers()
            notes.append("the run directory was replaced; reading it from scratch")
        self._dir_id = dir_id
        snap = fuse(self._observe(now, notes), self._prev)
        self._prev = snap
        if self._scanner.output_name is None and snap.config.output_name:
            self._scanner.output_name = snap.config.output_name
        return snap

    def _scan_checkpoints(self) -> CheckpointScan:
        """Scan; with the cache on, start from the headers read last time and save new ones."""
        if not self._use_cache:
            return self._scanner.scan()
        if self._headers_file is None:
            self._headers_file = headers_cache(self.run_dir, self._settings) or False
            if self._headers_file:
                self._scanner.remember_headers(load_headers(self._headers_file))
        reads = self._scanner.header_reads
        scan = self._scanner.scan()
        if self._headers_file and self._scanner.header_reads != reads:
            save_headers(self._headers_file, self._scanner.known_headers())
        return scan

    def _gpu_status(self, pids: Sequence[int]) -> GpuStatus:
        if self._gpu is None:
            return _NO_GPU
        try:
            return self._gpu(pids)
        except Exception as exc:  # noqa: BLE001 - NVML surprises are a status, not a crash
            return GpuStatus(available=False, reason=f"GPU query failed: {exc}")

    def _observe(self, now: float, problems: list[str]) -> Observations:
        """Ask every sub-reader what changed (the only I/O of a refresh)."""
        self._settle_prefetch()  # the children's log and header state is in the cache now
        readable = os.access(self.run_dir, os.R_OK | os.X_OK)
        if not readable:
            problems.append(f"permission denied: {self.run_dir}")
        options = dict(self._launch())
        self._sample_procs(now)
        tree = self._tree
        # what the trainer was told: live command line > run record's argv > launch config
        argv = tree.trainer.cmdline if tree is not None else (self._record.argv if self._record else ())
        script = None
        if argv:
            options.update(options_from_argv(argv, cwd=self._record.cwd if self._record else None))
            script = script_name(argv)
        log_path = self._log_candidate()
        log: LogFacts | None = None
        if readable:
            log, log_problems = self._log.read(log_path)
            problems.extend(log_problems)
        problems.extend(self._notes)
        self._notes = []
        scan = self._scan_checkpoints()
        problems.extend(p for p in scan.problems if "run directory not found" not in p)
        # GPUs (only need the process tree): before the event files, which may still be
        # decoding in a prefetch child (read_run)
        scheduler = self._scheduler.sample()
        remote = self._scheduler.sample_gpu()  # a Slurm job's GPUs are its node's, not this machine's
        gpu = remote if remote is not None else self._gpu_status(tuple(p.pid for p in tree.all()) if tree else ())
        events = self._event_reader(logging_dir_of(log, options))
        if events.prefetching:
            self._log.save()  # while the prefetch child finishes (else on close)
        if readable:
            events.refresh()
        problems.extend(events.problems)
        try:
            disk_free: int | None = shutil.disk_usage(self.run_dir).free
        except OSError:
            disk_free = None
        return Observations(
            run_dir=self.run_dir, now=now, readable=readable, problems=tuple(problems), options=options,
            script=script, log=log, log_path=self._log.file,
            log_mtime=_mtime(self._log.file) if log is not None else None, scan=scan,
            state_dir_size=self._state_size(scan.states), disk_free=disk_free, series=events.series,
            event_files=events.files, resume_steps=events.resume_steps, event_runs=events.runs,
            events_last_wall_time=events.last_wall_time, process_known=self._process_known, process=tree,
            exit=self._exit if tree is None else None, record=self._record, gpu=gpu,
            stall_factor=self._settings.alerts.stall_factor, gpu_temp_warn=self._settings.alerts.gpu_temp_warn,
            scheduler=scheduler, queue=self._read_queue(now),
            stop=read_stop_record(self.run_dir),
        )

    def _read_queue(self, now: float) -> tuple[QueueEntry, ...]:
        """The night's queue, re-read at most every ``queue.poll_interval`` seconds."""
        if self._queue_at is None or now - self._queue_at >= self._settings.queue.poll_interval:
            self._queue_at = now
            self._queue = read_queue(queue_dir(self._settings.queue.dir))
        return self._queue


def read_run(
    run_dir: str | os.PathLike[str],
    *,
    gpu: GpuMonitor | bool = True,
    procs: ProcessWatcher | Literal[False] | None = None,
    log_path: str | os.PathLike[str] | None = None,
    logs_dir: str | os.PathLike[str] | None = None,
    settings: Settings | None = None,
    launch_file: str | os.PathLike[str] | None = None,
    event_reader: EventReader | None = None,
    clock: Callable[[], float] = time.time,
    log_tail_bytes: int = 256 << 10,
    cache: bool = False,
) -> RunSnapshot:
    """One-shot snapshot (``sdxl-tui status``): NVML sampled once (``gpu=False``: not at all;
    a monitor: that one) and released, a prefetch child started for the event files and reaped
    before returning. The other arguments are :class:`RunReader`'s."""
    monitor = GpuMonitor() if gpu is True else (gpu or None)
    reader = RunReader(
        run_dir, gpu=monitor.sample if monitor is not None else None, procs=procs, log_path=log_path,
        logs_dir=logs_dir, settings=settings, launch_file=launch_file, event_reader=event_reader,
        clock=clock, log_tail_bytes=log_tail_bytes, cache=cache,
    )
    try:
        reader.prefetch_events()
        return reader.refresh()
    finally:
        reader.close()
        if monitor is not None and gpu is True:
            monitor.close()
