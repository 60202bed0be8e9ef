"""Everything the report says, read once from a run directory into frozen data.

Why one gathering step: the HTML and the Markdown report must tell the same story, so both
render the same :class:`ReportData`. It holds the dashboard's own snapshot (the same reader as
``sdxl-tui status``, with a larger point budget so the charts keep detail), the timeline, the
GPU summary and the exact command. Nothing here writes anything.
"""

from __future__ import annotations

import os
import shlex
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sdxl_tui import __version__
from sdxl_tui.config import Settings
from sdxl_tui.formats.gpulog import gpu_history_path, read_gpu_history
from sdxl_tui.formats.statedir import RunRecord, read_run_record
from sdxl_tui.model import RunSnapshot
from sdxl_tui.report.gpu import GpuSummary, summarize_gpu
from sdxl_tui.report.logmarks import scan_log
from sdxl_tui.report.timeline import RunEnd, Timeline, TimelineInputs, build_timeline

__all__ = ["CommandInfo", "ReportData", "collect"]

#: Display points per series for the charts (the dashboard keeps 4,000).
CHART_POINTS = 20_000


def _no_env() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class CommandInfo:
    """The trainer's command and where it is known from."""

    argv: tuple[str, ...]
    source: str  # a phrase: "the run record of sdxl-tui start", "the running process"
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=_no_env)

    def shell(self) -> str:
        """One line to paste into a shell: ``cd``, the environment additions, the argv, quoted."""
        parts = []
        if self.cwd:
            parts.append(f"cd {shlex.quote(self.cwd)} &&")
        parts.extend(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        parts.append(shlex.join(self.argv))
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class ReportData:
    """What both renderers show."""

    snapshot: RunSnapshot
    title: str
    generated_at: float
    timeline: Timeline
    gpu: GpuSummary
    command: CommandInfo | None
    run_end: RunEnd | None
    version: str = __version__


def _signal_name(number: int | None) -> str | None:
    if number is None:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _run_end(record: RunRecord | None) -> RunEnd | None:
    if record is None:
        return None
    return RunEnd(started_at=record.started_at, ended_at=record.ended_at, exit_code=record.exit_code,
                  signal=_signal_name(record.signal))


def _from_launch_config(root: str, launch_file: str | None) -> CommandInfo | None:
    """The command the launch config describes: what ``sdxl-tui start`` would run, which may
    differ from what ran (the file may have changed since), so it is labelled as such."""
    from sdxl_tui.formats.launch_config import (
        LaunchConfigError,
        find_launch_config,
        load_launch_config,
    )

    path = find_launch_config(root, launch_file)
    if path is None or not path.is_file():
        return None
    try:
        cfg = load_launch_config(path)
    except (OSError, LaunchConfigError):
        return None
    return CommandInfo(tuple(cfg.argv()), f"the launch config {path} (what `sdxl-tui start` would run; "
                       "not necessarily what ran)", cwd=cfg.sd_scripts_dir, env=cfg.env)


def _command(record: RunRecord | None, snap: RunSnapshot, root: str, launch_file: str | None) -> CommandInfo | None:
    """The exact command: the run record, else the live process, else the launch config."""
    if record is not None and record.argv:
        return CommandInfo(record.argv, "the run record of `sdxl-tui start`", cwd=record.cwd, env=record.extra_env)
    tree = snap.process
    if tree is not None:
        outer = tree.launchers[0] if tree.launchers else tree.trainer
        if outer.cmdline:
            return CommandInfo(tuple(outer.cmdline), "the running process")
    return _from_launch_config(root, launch_file)


def collect(
    run_dir: str | os.PathLike[str],
    *,
    settings: Settings | None = None,
    log_path: str | None = None,
    logs_dir: str | None = None,
    gpu: bool = True,
    procs: bool = True,
    launch_file: str | None = None,
    clock: Callable[[], float] = time.time,
) -> ReportData:
    """Read ``run_dir`` once (see the module docstring); raises ``OSError`` only as a last resort."""
    from sdxl_tui.sources.events import EventReader
    from sdxl_tui.sources.rundir import read_run

    root = os.path.abspath(os.fspath(run_dir))
    events = EventReader([logs_dir or root], max_points=CHART_POINTS)
    try:
        snap = read_run(root, log_path=log_path, logs_dir=logs_dir, gpu=gpu,
                        procs=None if procs else False, settings=settings, launch_file=launch_file,
                        event_reader=events, clock=clock)
    finally:
        events.close()
    record = read_run_record(root)
    run_end = _run_end(record)
    timeline = build_timeline(TimelineInputs(
        marks=scan_log(snap.log_path), series=snap.series, resume_steps=snap.resume_steps,
        checkpoints=snap.checkpoints, samples=snap.samples, state=snap.state, taken_at=snap.taken_at,
        run_end=run_end,
    ))
    history = read_gpu_history(gpu_history_path(root))
    current = snap.gpu if snap.gpu.available else None
    title = snap.config.output_name or os.path.basename(root.rstrip(os.sep)) or root
    return ReportData(
        snapshot=snap, title=title, generated_at=clock(), timeline=timeline,
        gpu=summarize_gpu(history, timeline.start, timeline.end, current),
        command=_command(record, snap, root, launch_file), run_end=run_end,
    )
