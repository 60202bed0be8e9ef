"""``RunsWatcher(root).refresh() -> RunsView``: every run and optimisation folder below a root.

Why one watcher: watching 50 idle runs must cost next to nothing. One refresh is one
discovery walk (a ``stat`` per directory while nothing changes: its verdicts are cached by
mtime), one process-table scan (which runs have a live trainer), and one ``stat`` signature
per run (its directory, log, newest event file); only a run whose signature changed, or that
is live, is read again (:func:`~sdxl_tui.sources.summary.read_summary`). There are no
per-run polling loops or threads: the caller decides the cadence (the TUI's worker, or one
call for ``status ROOT``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from sdxl_tui.config import Settings
from sdxl_tui.formats.names import LOG_NAME
from sdxl_tui.model import GpuStatus
from sdxl_tui.sources.discovery import Discovery, FoundRun, discover
from sdxl_tui.sources.optimisation import Optimisation, read_optimisation, signature
from sdxl_tui.sources.summary import RunSummary, gpu_text, read_summary, summarize_trials

__all__ = ["LazyGpu", "RunsView", "RunsWatcher", "sort_rows"]

_Sig = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class RunsView:
    """The root's runs now: rows sorted live first, the optimisation folders, the discovery."""

    root: str
    discovery: Discovery
    rows: tuple[RunSummary, ...]
    optimisations: tuple[Optimisation, ...]
    taken_at: float
    reread: int  # how many runs this refresh actually read (0 while nothing changes)

    def row(self, run_dir: str) -> RunSummary | None:
        return next((r for r in self.rows if r.run_dir == run_dir), None)


def _stat_sig(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _newest_events(run_dir: str) -> tuple[int, int] | None:
    """(mtime, size) of the newest file in ``logs/*/*`` (two scandirs; the event files grow)."""
    best: tuple[int, int] | None = None
    try:
        with os.scandir(os.path.join(run_dir, "logs")) as runs:
            dirs = [e.path for e in runs if e.is_dir(follow_symlinks=False)]
    except OSError:
        return None
    for d in dirs:
        try:
            with os.scandir(d) as it:
                for e in it:
                    target = e.path
                    if e.is_dir(follow_symlinks=False):
                        target = max((x.path for x in os.scandir(e.path)), default=target)
                    s = _stat_sig(target)
                    if s is not None and (best is None or s > best):
                        best = s
        except OSError:
            continue
    return best


def run_signature(run_dir: str) -> _Sig:
    """What changes when the trainer writes: the directory, its log, its newest event file."""
    return (_stat_sig(run_dir), _stat_sig(os.path.join(run_dir, LOG_NAME)), _newest_events(run_dir))


def _updated_at(sig: _Sig) -> float | None:
    times = [s[0] for s in sig if isinstance(s, tuple)]
    return max(times) / 1e9 if times else None


def sort_rows(rows: list[RunSummary]) -> tuple[RunSummary, ...]:
    """Live first, then the most recently changed."""
    return tuple(sorted(rows, key=lambda r: (not r.live, -(r.updated_at or 0.0), r.name)))


class RunsWatcher:
    """Incremental watcher of a folder of runs (not thread-safe: one worker owns it).

    Args:
        root: the folder (a run itself is fine: it is one of the rows).
        live_dirs: which output dirs have a live trainer (default: one process-table scan per
            refresh, :func:`~sdxl_tui.sources.procs.trainer_output_dirs`); tests inject it.
        max_depth: how deep below ``root`` runs are looked for.
        workers: runs read in parallel on a cold refresh (I/O bound).
        settings: stall factor, and ``cache.enabled`` (the event cache of ``status``) for reads.
        gpu: called with the live trainers' pids, once per refresh and only while some run is
            live (e.g. ``GpuMonitor().sample``); None: no GPU column.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        live_dirs: Callable[[], frozenset[str]] | None = None,
        clock: Callable[[], float] = time.time,
        max_depth: int = 3,
        workers: int = 4,
        settings: Settings | None = None,
        gpu: Callable[[Sequence[int]], GpuStatus] | None = None,
    ) -> None:
        self.root = os.path.abspath(os.path.expanduser(os.fspath(root)))
        self._live_dirs = live_dirs or _scan_live
        self._clock = clock
        self._max_depth = max_depth
        self._workers = workers
        self._settings = settings
        self._gpu = gpu
        self._runs: dict[str, tuple[_Sig, RunSummary]] = {}
        self._opts: dict[str, tuple[_Sig, Optimisation, RunSummary]] = {}

    def refresh(self) -> RunsView:
        now = self._clock()
        found = discover(self.root, max_depth=self._max_depth)
        live = self._live_dirs()
        runs = [r for r in found.all if r.kind == "run"]
        stale = []
        for r in runs:
            sig = run_signature(r.path)
            hit = self._runs.get(r.path)
            is_live = os.path.realpath(r.path) in live
            if hit is None or hit[0] != sig or is_live or hit[1].live:
                stale.append((r, sig, is_live))
        if stale:
            self._read(stale)
        keep = {r.path for r in runs}
        self._runs = {k: v for k, v in self._runs.items() if k in keep}
        opts = self._read_optimisations([r for r in found.all if r.kind == "trials"], now)
        rows = [self._runs[r.path][1] for r in runs if r.path in self._runs]
        rows = self._with_gpus(rows) + [o[2] for o in opts]
        return RunsView(self.root, found, sort_rows(rows), tuple(o[1] for o in opts), now, len(stale))

    def skeleton(self) -> RunsView:
        """The rows discovery alone gives (name, kind "?" and state "reading" for a run not read
        yet; known rows as they were): a table at once, before a cold :meth:`refresh`."""
        now = self._clock()
        found = discover(self.root, max_depth=self._max_depth)
        rows = []
        for r in found.all:
            known = self._runs.get(r.path) if r.kind == "run" else None
            opt = self._opts.get(r.path) if r.kind == "trials" else None
            if known is not None:
                rows.append(known[1])
            elif opt is not None:
                rows.append(opt[2])
            else:
                rows.append(RunSummary(run_dir=r.path, name=r.name, kind="trials" if r.kind == "trials" else "?",
                                       state="reading", reason="reading the run's files…"))
        return RunsView(self.root, found, sort_rows(rows), (), now, 0)

    def _with_gpus(self, rows: list[RunSummary]) -> list[RunSummary]:
        pids = [r.pid for r in rows if r.live and r.pid]
        if self._gpu is None or not pids:
            return rows
        try:
            status = self._gpu(pids)
        except Exception:  # noqa: BLE001 - NVML surprises leave the column empty
            return rows
        return [replace(r, gpu=gpu_text(status, r.pid)) if r.live and r.pid else r for r in rows]

    def _read(self, stale: list[tuple[FoundRun, _Sig, bool]]) -> None:
        def one(item: tuple[FoundRun, _Sig, bool]) -> tuple[str, _Sig, RunSummary]:
            r, sig, is_live = item
            return r.path, sig, read_summary(r.path, live=is_live, updated_at=_updated_at(sig), clock=self._clock,
                                             settings=self._settings)

        if len(stale) == 1 or self._workers <= 1:
            results = [one(x) for x in stale]
        else:
            with ThreadPoolExecutor(max_workers=self._workers) as pool:
                results = list(pool.map(one, stale))
        for path, sig, summary in results:
            self._runs[path] = (sig, summary)

    def _read_optimisations(self, folders: list[FoundRun], now: float) -> list[tuple[_Sig, Optimisation, RunSummary]]:
        out = []
        for f in folders:
            sig: _Sig = signature(f.path)
            hit = self._opts.get(f.path)
            if hit is None or hit[0] != sig:
                opt = read_optimisation(f.path, now=now)
                hit = (sig, opt, summarize_trials(opt))
                self._opts[f.path] = hit
            out.append(hit)
        self._opts = {f.path: self._opts[f.path] for f in folders}
        return out


class LazyGpu:
    """A ``GpuMonitor`` made on the first call: a folder without a live run never loads NVML."""

    def __init__(self) -> None:
        self._monitor: object | None = None

    def __call__(self, pids: Sequence[int]) -> GpuStatus:
        from sdxl_tui.sources.gpu import GpuMonitor

        if self._monitor is None:
            self._monitor = GpuMonitor()
        assert isinstance(self._monitor, GpuMonitor)
        return self._monitor.sample(pids)

    def close(self) -> None:
        from sdxl_tui.sources.gpu import GpuMonitor

        if isinstance(self._monitor, GpuMonitor):
            self._monitor.close()
        self._monitor = None


def _scan_live() -> frozenset[str]:
    from sdxl_tui.sources.procs import trainer_output_dirs

    try:
        return trainer_output_dirs()
    except Exception:  # noqa: BLE001 - a psutil surprise: no run is known live (files decide)
        return frozenset()
