"""Feed workers and the watchdog bridge: the only code that calls the sources.

One long-lived thread per source (run reader, GPU sampler). Each loop refreshes, posts a
message and then waits, so polls never overlap (dolphie) and a stop is immediate: ``stop()``
sets the events every loop waits on. watchdog handlers run on the observer thread and only
set the wake event; the reader's directory listing stays the truth, events merely make the
next refresh happen sooner. Where inotify cannot work (a remote filesystem, the watch limit
reached, ``refresh.force_polling``) the loop simply polls at ``refresh.log_interval``.

Quitting never touches the training: nothing here sends signals or owns the trainer.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any, Protocol

from textual.message import Message

from sdxl_tui.model import GpuStatus, LogLine, RunSnapshot
from sdxl_tui.sources.gpu import LatestGpu
from sdxl_tui.tui.messages import (
    GpuSampled,
    LogLinesAdded,
    ReaderFailed,
    SnapshotUpdated,
    WatchModeChanged,
)

#: Filesystem types on which inotify sees no remote changes: poll instead.
REMOTE_FSTYPES = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "sshfs", "9p", "afs",
        "ceph", "fuse.rclone", "fuse.s3fs", "glusterfs", "fuse.glusterfs", "lustre",
        "fuse.gcsfuse", "davfs", "fuse.davfs2",
    }
)

Post = Callable[[Message], Any]

#: watchdog event types that reading produces (the reader itself would wake the reader).
_READ_EVENTS = frozenset({"opened", "closed_no_write"})


class Reader(Protocol):
    def refresh(self) -> RunSnapshot: ...


class GpuSampler(Protocol):
    def sample(self, trainer_pids: Collection[int] = ()) -> GpuStatus: ...

    def close(self) -> None: ...


def _unescape_mount(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")


def filesystem_type(path: str | os.PathLike[str], mounts_file: str = "/proc/mounts") -> str | None:
    """The fstype of the mount holding ``path`` (longest mount-point prefix), or ``None``."""
    try:
        real = os.path.realpath(path)
        with open(mounts_file, encoding="utf-8", errors="replace") as fh:
            rows = [line.split() for line in fh]
    except OSError:
        return None
    best: tuple[int, str] | None = None
    for row in rows:
        if len(row) < 3:
            continue
        mount = _unescape_mount(row[1])
        prefix = mount.rstrip("/") + "/"
        if (real == mount or real.startswith(prefix) or mount == "/") and (best is None or len(mount) > best[0]):
            best = (len(mount), row[2])
    return None if best is None else best[1]


def is_remote(path: str | os.PathLike[str], mounts_file: str = "/proc/mounts") -> str | None:
    """The remote fstype if ``path`` (or its nearest existing parent) is on NFS/SSHFS/…"""
    p = Path(path)
    while not p.exists() and p.parent != p:
        p = p.parent
    fstype = filesystem_type(p, mounts_file)
    return fstype if fstype in REMOTE_FSTYPES else None


class DirectoryWatcher:
    """watchdog on the run directory (+ TensorBoard dir) that only sets a wake event."""

    def __init__(self, wake: threading.Event, *, force_polling: bool = False) -> None:
        self._wake = wake
        self._force_polling = force_polling
        self._observer: Any = None
        self._watched: set[str] = set()
        self._failed: str | None = None
        self._paused = False
        self.mode = "polling"

    def sync(self, paths: Iterable[str | None]) -> str | None:
        """Watch every existing path not yet watched; returns a new mode string on change."""
        if self._force_polling:
            if self.mode != "polling (forced)":
                self.mode = "polling (forced)"
                return self.mode
            return None
        if self._failed is not None or self._paused:
            return None
        wanted = []
        for raw in paths:
            if not raw:
                continue
            path = os.path.realpath(raw)
            if path in self._watched or not os.path.isdir(path):
                continue
            if any(path.startswith(w.rstrip("/") + "/") for w in self._watched):
                continue
            wanted.append(path)
        if not wanted:
            return None
        for path in wanted:
            remote = is_remote(path)
            if remote:
                self._failed = f"polling ({remote} filesystem)"
                self.stop()
                self.mode = self._failed
                return self.mode
        try:
            if self._observer is None:
                from watchdog.observers import Observer

                self._observer = Observer()
                self._observer.daemon = True
                self._observer.start()
            from watchdog.events import FileSystemEventHandler

            wake = self._wake

            class _Wake(FileSystemEventHandler):
                def on_any_event(self, event: Any) -> None:  # observer thread: set a flag only
                    # Our own reads open and close files: those events must not wake us.
                    if event.event_type not in _READ_EVENTS:
                        wake.set()

            for path in wanted:
                self._observer.schedule(_Wake(), path, recursive=True)
                self._watched.add(path)
        except Exception as exc:  # noqa: BLE001 - inotify limit, missing module, …: the interval still works
            self._failed = f"polling (inotify unavailable: {exc})"
            self.stop()
            self.mode = self._failed
            return self.mode
        new_mode = "inotify"
        if new_mode != self.mode:
            self.mode = new_mode
            return new_mode
        return None

    def poll_instead(self, reason: str) -> str | None:
        """Stop watching for good and poll (a Slurm run: its node writes the files, and
        inotify on this machine never hears of it); returns the new mode once."""
        if self._failed is not None or self._force_polling:
            return None
        self._failed = reason
        self.stop()
        self.mode = reason
        return reason

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Stop receiving events while the run writes continuously.

        A run writing ten steps a second makes tens of inotify events a second, each one
        decoded and dispatched in Python by watchdog's threads, although the reader is then
        paced by ``busy_gap`` anyway: while busy the events buy nothing but CPU. The feed
        polls meanwhile and :meth:`resume` watches again once a read finds nothing new.
        """
        if self._paused or self._observer is None or self.mode != "inotify":
            return
        try:
            self._observer.unschedule_all()
        except Exception:  # noqa: BLE001 - an observer that cannot unschedule keeps running: no harm
            return
        self._paused = True

    def resume(self) -> None:
        """Watch the paused paths again (the caller re-reads after this: nothing is missed)."""
        if not self._paused:
            return
        self._paused = False
        paths = sorted(self._watched)
        self._watched.clear()
        self.sync(paths)

    def stop(self) -> None:
        """Stop the observer thread without waiting for it (it is a daemon)."""
        observer, self._observer = self._observer, None
        self._watched.clear()
        if observer is not None:
            try:
                observer.stop()
            except Exception:  # noqa: BLE001 - stopping the observer is best effort at quit
                pass


class LogDelta:
    """Turns each snapshot's bounded ``log_lines`` window into append-only batches."""

    def __init__(self) -> None:
        self._last: LogLine | None = None
        self._count = 0

    def update(self, snapshot: RunSnapshot) -> tuple[tuple[LogLine, ...], bool]:
        lines = snapshot.log_lines
        reset = snapshot.log_line_count < self._count
        self._count = snapshot.log_line_count
        if reset:
            self._last = None
        last = self._last
        if last is None:
            fresh = tuple(lines)
        else:
            fresh = tuple(
                line for line in lines
                if line.number > last.number or (line.number == last.number and line.text != last.text)
            )
        if lines:
            self._last = lines[-1]
        return fresh, reset


def snapshot_signature(s: RunSnapshot) -> tuple[object, ...]:
    """What the screen shows of a snapshot, minus "now": equal signatures need no repaint.

    ETAs are left out (they tick with the clock); the heartbeat repaints them.
    """
    p = s.progress
    return (
        s.state, s.state_reason, s.config,
        (p.epoch, p.epochs, p.step, p.total_steps, p.elapsed_seconds, p.next_checkpoint, p.seconds_per_step),
        s.checkpoints, s.states, s.samples, s.evaluations, s.process,
        tuple((g.index, g.memory_used, g.utilization, g.temperature, g.power_draw) for g in s.gpu.gpus),
        s.gpu.available, s.gpu.reason,
        tuple((a.key or a.kind, a.message, a.fix) for a in s.alerts),
        s.log_line_count, s.log_lines[-1] if s.log_lines else None,
        tuple((tag, x.count) for tag, x in s.series.items()),
        s.resume_steps, s.launches, tuple((tag, x.count) for tag, x in s.discarded.items()),
        s.problems, s.scheduler, s.queue,
    )


class Feeds:
    """The loops the App runs in thread workers; ``stop()`` ends them all at once."""

    def __init__(
        self,
        reader_factory: Callable[[], Reader],
        *,
        run_dir: str,
        logs_dir: str | None = None,
        interval: float = 0.25,
        busy_gap: float = 2.0,
        force_polling: bool = False,
        gpu_factory: Callable[[], GpuSampler] | None = None,
        gpu_interval: float = 1.0,
        gpu_latest: LatestGpu | None = None,
        watch: bool = True,
        heartbeat: float = 1.0,
    ) -> None:
        self.reader_factory = reader_factory
        #: The reader's first snapshot when the caller took it already (``build_app``): the
        #: feed posts it instead of refreshing first.
        self.first_snapshot: RunSnapshot | None = None
        self.run_dir = run_dir
        self.logs_dir = logs_dir
        self.interval = max(0.02, interval)
        #: Least time between two event-driven refreshes (``refresh.busy_interval``): a run
        #: writing 10 steps a second is read (and repainted) once per busy_gap, while a
        #: change after a quiet moment is read immediately.
        self.busy_gap = max(0.0, busy_gap)
        #: With inotify working, the listing is re-read this often even without events
        #: (process death, the clock for stalls); events bring the next read forward.
        self.idle_interval = max(self.interval, 1.0)
        self.gpu_factory = gpu_factory
        self.gpu_interval = max(0.1, gpu_interval)
        #: Where each GPU sample is also left for the run reader (its GPU alerts).
        self.gpu_latest = gpu_latest
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.watcher = DirectoryWatcher(self.wake, force_polling=force_polling) if watch else None
        self.trainer_pids: tuple[int, ...] = ()
        self.refreshes = 0
        self.posted = 0
        #: An unchanged snapshot is still posted this often (ages, ETAs, "now").
        self.heartbeat = heartbeat

    def stop(self) -> None:
        """End every loop now (quit must be immediate) and stop watching."""
        self.stopping.set()
        self.wake.set()
        if self.watcher is not None:
            self.watcher.stop()

    def _watch_paths(self, snap: RunSnapshot | None) -> list[str | None]:
        paths: list[str | None] = [self.run_dir, self.logs_dir]
        if snap is not None and snap.config.logging_dir:
            logging_dir = snap.config.logging_dir
            if not os.path.isabs(logging_dir):
                logging_dir = os.path.join(self.run_dir, logging_dir)
            paths.append(logging_dir)
        return paths

    def run_reader(self, post: Post, is_cancelled: Callable[[], bool] = lambda: False) -> None:
        """Refresh the run reader until stopped; post snapshots and log batches."""
        try:
            reader = self.reader_factory()
        except Exception as exc:  # noqa: BLE001 - reported in the dashboard, never a crash
            post(ReaderFailed(f"cannot open the run: {exc}"))
            return
        delta = LogDelta()
        snap: RunSnapshot | None = None
        last_sync = -1e9
        last_post = 0.0
        last_signature: tuple[object, ...] | None = None
        last_change = 0.0
        changed_before = False
        while not (self.stopping.is_set() or is_cancelled()):
            self.wake.clear()
            started = time.monotonic()
            try:
                snap, self.first_snapshot = self.first_snapshot or reader.refresh(), None
            except Exception as exc:  # noqa: BLE001 - a reader bug must not kill the dashboard
                post(ReaderFailed(f"{type(exc).__name__}: {exc}"))
            else:
                self.refreshes += 1
                if snap.process is not None and snap.process.alive:
                    self.trainer_pids = tuple(p.pid for p in snap.process.all() if p.alive)
                else:
                    self.trainer_pids = ()
                lines, reset = delta.update(snap)
                signature = snapshot_signature(snap)
                now = time.monotonic()
                changed = signature != last_signature
                if changed:
                    last_change = started
                watcher = self.watcher
                if watcher is not None:
                    if changed and changed_before:
                        watcher.pause()  # a stream of writes: poll every busy_gap instead
                    elif not changed and watcher.paused:
                        watcher.resume()
                        last_sync = time.monotonic()
                changed_before = changed
                if changed or now - last_post >= self.heartbeat:
                    last_signature, last_post = signature, now
                    self.posted += 1
                    post(SnapshotUpdated(snap, now - started, lines, reset))  # one message, one frame
                elif lines or reset:
                    post(LogLinesAdded(lines, reset))
            if self.stopping.is_set():
                break
            remote = snap is not None and snap.scheduler is not None
            if remote and self.watcher is not None:
                mode = self.watcher.poll_instead("polling (Slurm job: its node writes the files)")
                if mode is not None:
                    post(WatchModeChanged(mode))
            # after the post: starting watchdog must not delay the first frame
            if self.watcher is not None and time.monotonic() - last_sync >= 2.0:
                last_sync = time.monotonic()
                mode = self.watcher.sync(self._watch_paths(snap))
                if mode is not None:
                    post(WatchModeChanged(mode))
            if self.watcher is not None and self.watcher.paused:
                # busy: no events, read again once busy_gap has passed since the last change
                self.stopping.wait(max(0.0, max(started, last_change) + self.busy_gap - time.monotonic()))
                continue
            inotify = self.watcher is not None and self.watcher.mode == "inotify"
            idle = self.idle_interval if inotify else self.interval
            if remote:  # a shared filesystem written from another node: poll, but gently
                idle = max(idle, self.busy_gap)
            woken = self.wake.wait(max(0.0, started + idle - time.monotonic()))
            if woken and not self.stopping.is_set():
                # An isolated change is read at once (after a few ms that merge the write's
                # modify and close events); a stream of changes (a run writing ten steps a
                # second) is read at most once per busy_gap.
                self.stopping.wait(0.01)
                gap = (last_change + self.busy_gap) - time.monotonic()
                if gap > 0:
                    self.stopping.wait(gap)

    def run_gpu(self, post: Post, is_cancelled: Callable[[], bool] = lambda: False) -> None:
        """Sample the GPUs every ``gpu_interval`` seconds until stopped."""
        if self.gpu_factory is None:
            return
        try:
            gpu = self.gpu_factory()
        except Exception as exc:  # noqa: BLE001 - no GPU monitor is a status, not a crash
            post(GpuSampled(GpuStatus(available=False, reason=f"GPU monitor failed: {exc}")))
            return
        try:
            while not (self.stopping.is_set() or is_cancelled()):
                started = time.monotonic()
                try:
                    status = gpu.sample(self.trainer_pids)
                except Exception as exc:  # noqa: BLE001 - NVML surprises are a status, not a crash
                    status = GpuStatus(available=False, reason=f"NVML error: {exc}")
                if self.gpu_latest is not None:
                    self.gpu_latest.set(status)
                post(GpuSampled(status))
                self.stopping.wait(max(0.0, started + self.gpu_interval - time.monotonic()))
        finally:
            gpu.close()
