"""The night as a timeline: phases (loading, caching, training, saving, sampling, stopped) and
the moments between them, from every clock the run leaves behind.

Why several clocks: each file knows a different part of the truth. The log's records give
loading, caching, sampling and ``model saved.`` to the second; TensorBoard's wall times give
when training sessions began and ended (a resumed run is a new session) and every pause
inside one; checkpoint and sample mtimes give when they were written; the run record of
``sdxl-tui start`` gives the start of the process and how it ended. Tqdm's own clock is not
used: it excludes pauses and restarts with every session.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from sdxl_tui.model import Checkpoint, CheckpointKind, RunState, Sample, ScalarPoint, Series
from sdxl_tui.report.logmarks import LogMark, LogMarks

__all__ = ["Phase", "RunEnd", "Timeline", "TimelineEvent", "TimelineInputs", "build_timeline", "sessions_of"]

#: A gap counts as a pause when it exceeds the usual step time by this factor and this floor.
PAUSE_FACTOR = 10.0
PAUSE_FLOOR_SECONDS = 20.0
#: A file modified this long after the run's last sign of life was touched by something else.
LATE_FILE_SECONDS = 600.0


_KINDS = ("start", "loading", "caching", "training", "resumed", "checkpoint", "sampling", "pause",
          "stopped", "finished", "error", "ended")
_ORDER = {kind: i for i, kind in enumerate(_KINDS)}


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One moment: when, what kind, what happened."""

    at: float
    kind: str  # start|loading|caching|training|resumed|checkpoint|sampling|pause|stopped|finished|error|ended
    text: str
    step: int | None = None
    approx: bool = False


@dataclass(frozen=True, slots=True)
class Phase:
    """A stretch of time spent in one phase."""

    kind: str  # loading|caching|training|saving|sampling|paused|stopped
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(frozen=True, slots=True)
class Session:
    """One training session: the TensorBoard points between two restarts."""

    first: ScalarPoint
    last: ScalarPoint
    points: tuple[ScalarPoint, ...]


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How the process ended, when sdxl-tui's supervisor saw it (the run record)."""

    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    signal: str | None = None


@dataclass(frozen=True, slots=True)
class Timeline:
    """Events in time order, the phases they delimit, and the span of the run."""

    events: tuple[TimelineEvent, ...] = ()
    phases: tuple[Phase, ...] = ()
    start: float | None = None
    end: float | None = None
    sessions: int = 0
    notes: tuple[str, ...] = ()  # why some clock was not used

    def total(self, kind: str) -> float:
        """Seconds spent in phases of ``kind``."""
        return sum(p.seconds for p in self.phases if p.kind == kind)

    def count(self, kind: str) -> int:
        return sum(1 for p in self.phases if p.kind == kind)


def _loss_points(series: Mapping[str, Series]) -> tuple[ScalarPoint, ...]:
    for tag in ("loss/current", "loss/average"):
        s = series.get(tag)
        if s is not None and s.points and s.points[-1].wall_time > 0:
            return tuple(p for p in s.points if p.wall_time > 0)
    return ()


def sessions_of(series: Mapping[str, Series], resume_steps: Sequence[int]) -> list[Session]:
    """Split the loss points at the (stitched) steps where a new TensorBoard run began."""
    points = _loss_points(series)
    if not points:
        return []
    bounds = sorted(resume_steps)
    groups: list[list[ScalarPoint]] = [[] for _ in range(len(bounds) + 1)]
    for p in points:
        i = sum(1 for b in bounds if p.step >= b)
        groups[i].append(p)
    return [Session(g[0], g[-1], tuple(g)) for g in groups if g]


def _step_seconds(points: Sequence[ScalarPoint]) -> float | None:
    rates = []
    for a, b in itertools.pairwise(points):
        if b.step > a.step and b.wall_time > a.wall_time:
            rates.append((b.wall_time - a.wall_time) / (b.step - a.step))
    return statistics.median(rates) if rates else None


def _label_pause(start: float, end: float, saves: Sequence[float], samples: Sequence[float]) -> list[Phase]:
    """A pause inside a session: saving up to the checkpoint's mtime, then sampling."""
    saved = [t for t in saves if start <= t <= end + 1.0]
    sampled = any(start <= t <= end + 1.0 for t in samples)
    if saved and sampled:
        cut = min(max(saved), end)
        return [Phase("saving", start, cut), Phase("sampling", cut, end)]
    if saved:
        return [Phase("saving", start, end)]
    if sampled:
        return [Phase("sampling", start, end)]
    return [Phase("paused", start, end)]


def _session_phases(s: Session, saves: Sequence[float], samples: Sequence[float]) -> list[Phase]:
    spp = _step_seconds(s.points)
    out: list[Phase] = []
    if spp is None:
        return [Phase("training", s.first.wall_time, s.last.wall_time)]
    floor = max(PAUSE_FLOOR_SECONDS, PAUSE_FACTOR * spp)
    run_start = s.first.wall_time
    for a, b in itertools.pairwise(s.points):
        extra = (b.wall_time - a.wall_time) - max(0, b.step - a.step) * spp
        if extra > floor:
            out.append(Phase("training", run_start, a.wall_time))
            out.extend(_label_pause(a.wall_time, b.wall_time, saves, samples))
            run_start = b.wall_time
    out.append(Phase("training", run_start, s.last.wall_time))
    return [p for p in out if p.end > p.start or p.kind == "training"]


def _first(marks: Sequence[LogMark], kind: str, after: float | None = None) -> LogMark | None:
    for m in marks:
        if m.kind == kind and m.at is not None and (after is None or m.at >= after):
            return m
    return None


def _startup_phases(marks: LogMarks, training_start: float | None) -> list[Phase]:
    """Loading and caching before the first training step (of the session in this log)."""
    loading = _first(marks.marks, "loading")
    if loading is None or loading.at is None:
        return []
    caching = _first(marks.marks, "caching", loading.at)
    end = training_start
    if end is None:
        tm = _first(marks.marks, "training", loading.at)
        end = tm.at if tm is not None else marks.last_at
    if end is None:
        return []
    if caching is not None and caching.at is not None and caching.at <= end:
        return [Phase("loading", loading.at, caching.at), Phase("caching", caching.at, end)]
    return [Phase("loading", loading.at, end)]


@dataclass(frozen=True, slots=True)
class TimelineInputs:
    """Everything :func:`build_timeline` reads, as plain data."""

    marks: LogMarks
    series: Mapping[str, Series]
    resume_steps: tuple[int, ...]
    checkpoints: tuple[Checkpoint, ...]
    samples: tuple[Sample, ...]
    state: RunState
    taken_at: float
    run_end: RunEnd | None = None


def _sample_events(inp: TimelineInputs) -> list[TimelineEvent]:
    groups: dict[tuple[int, int], list[Sample]] = {}
    for s in inp.samples:
        groups.setdefault((s.epoch or 0, s.step or 0), []).append(s)
    out = []
    for (epoch, step), items in groups.items():
        where = f"epoch {epoch}" if epoch else (f"step {step}" if step else "")
        out.append(TimelineEvent(min(s.mtime for s in items), "sampling",
                                 f"{len(items)} sample image{'s' if len(items) != 1 else ''} {where}".rstrip(),
                                 step=step or None))
    if not out:
        out = [TimelineEvent(m.at, "sampling", "sample images", step=m.step)
               for m in inp.marks.marks if m.kind == "sampling" and m.at is not None]
    return out


def _session_events(sessions: Sequence[Session]) -> list[TimelineEvent]:
    out = []
    for i, s in enumerate(sessions):
        if i == 0:
            out.append(TimelineEvent(s.first.wall_time, "training", f"training started at step {s.first.step}",
                                     step=s.first.step))
        else:
            gap = s.first.wall_time - sessions[i - 1].last.wall_time
            out.append(TimelineEvent(s.first.wall_time, "resumed",
                                     f"resumed at step {s.first.step} after {_gap(gap)}", step=s.first.step))
        if i < len(sessions) - 1:
            out.append(TimelineEvent(s.last.wall_time, "stopped", f"stopped at step {s.last.step}",
                                     step=s.last.step))
    return out


def _gap(seconds: float) -> str:
    from sdxl_tui.humanize import format_duration

    return format_duration(seconds)


_MARK_EVENTS = {"loading": "loading", "caching": "caching", "finished": "finished", "error": "error",
                "traceback": "error", "oom": "error", "interrupt": "error"}


def _mark_events(marks: LogMarks, have_sessions: bool) -> list[TimelineEvent]:
    out = []
    seen_caching: set[float] = set()
    for m in marks.marks:
        if m.at is None:
            continue
        if m.kind == "caching":
            if m.at in seen_caching:
                continue
            seen_caching.add(m.at)
        if m.kind == "training" and not have_sessions:
            out.append(TimelineEvent(m.at, "training", "running training", approx=True))
        elif m.kind in _MARK_EVENTS:
            text = {"loading": "loading (first log record)", "finished": "model saved."}.get(m.kind, m.text)
            at = marks.log_mtime if m.approx and m.kind != "training" and marks.log_mtime else m.at
            out.append(TimelineEvent(at, _MARK_EVENTS[m.kind], text, step=m.step, approx=m.approx))
    return out


def _record_events(end: RunEnd | None) -> list[TimelineEvent]:
    if end is None:
        return []
    out = []
    if end.started_at is not None:
        out.append(TimelineEvent(end.started_at, "start", "started by sdxl-tui start"))
    if end.ended_at is not None:
        how = f"signal {end.signal}" if end.signal else f"exit status {end.exit_code}"
        out.append(TimelineEvent(end.ended_at, "ended", f"process ended ({how})"))
    return out


def _span(
    inp: TimelineInputs, events: Sequence[TimelineEvent], phases: Sequence[Phase]
) -> tuple[float | None, float | None]:
    times = [e.at for e in events] + [p.start for p in phases] + [p.end for p in phases]
    if not times:
        return None, None
    end = max(times)
    if inp.state.is_live:
        end = max(end, inp.taken_at)
    return min(times), end


def _trusted_files(inp: TimelineInputs, sessions: Sequence[Session]) -> tuple[TimelineInputs, tuple[str, ...]]:
    """Leave out file times from after the run's own end: a run directory copied without
    keeping modification times (``cp -r``, ``rsync`` without ``-t``) dates its files to the copy."""
    ends = [t for t in (inp.marks.last_at, sessions[-1].last.wall_time if sessions else None,
                        inp.run_end.ended_at if inp.run_end else None) if t is not None]
    if inp.state.is_live or not ends:
        return inp, ()
    limit = max(ends) + LATE_FILE_SECONDS
    late = sum(1 for c in inp.checkpoints if c.mtime > limit) + sum(1 for s in inp.samples if s.mtime > limit)
    if not late:
        return inp, ()
    kept = replace(inp, checkpoints=tuple(c for c in inp.checkpoints if c.mtime <= limit),
                   samples=tuple(s for s in inp.samples if s.mtime <= limit))
    return kept, ((f"{late} file time{'s' if late != 1 else ''} left out: modified after the run ended "
                  "(copied without keeping modification times?)"),)


def build_timeline(inp: TimelineInputs) -> Timeline:
    """Merge every clock into events and phases (see the module docstring)."""
    sessions = sessions_of(inp.series, inp.resume_steps)
    inp, notes = _trusted_files(inp, sessions)
    saves = [c.mtime for c in inp.checkpoints]
    sample_times = [s.mtime for s in inp.samples] + [m.at for m in inp.marks.marks
                                                    if m.kind == "sampling" and m.at is not None]
    phases: list[Phase] = _startup_phases(inp.marks, sessions[0].first.wall_time if sessions else None)
    for i, s in enumerate(sessions):
        if i:
            phases.append(Phase("stopped", sessions[i - 1].last.wall_time, s.first.wall_time))
        phases.extend(_session_phases(s, saves, sample_times))
    events = [
        *_record_events(inp.run_end),
        *_mark_events(inp.marks, bool(sessions)),
        *_session_events(sessions),
        *_sample_events(inp),
        *(TimelineEvent(c.mtime, "checkpoint", f"saved {c.name}", step=c.step) for c in inp.checkpoints),
        *(TimelineEvent(p.start, "pause", f"paused {_gap(p.seconds)} (no save or sample in it)")
          for p in phases if p.kind == "paused"),
    ]
    events = _after_final_save(events, inp.checkpoints)
    if sessions:
        phases.extend(_tail_phases(sessions[-1].last.wall_time, inp, events, sample_times))
    # log records are cut to the second: within one second, the kind order decides
    events.sort(key=lambda e: (int(e.at), _ORDER.get(e.kind, 99), e.at))
    start, end = _span(inp, events, phases)
    return Timeline(events=tuple(events), phases=tuple(phases), start=start, end=end, sessions=len(sessions),
                    notes=notes)


def _after_final_save(events: list[TimelineEvent], checkpoints: Sequence[Checkpoint]) -> list[TimelineEvent]:
    """``model saved.`` follows the final save; its record time is cut to the second, the
    file's mtime is not, so within that second the record moves after the file."""
    finals = [c.mtime for c in checkpoints if c.kind is CheckpointKind.FINAL]
    if not finals:
        return events
    last = max(finals)
    return [replace(e, at=last) if e.kind == "finished" and 0 <= last - e.at < 1.0 else e for e in events]


def _tail_phases(last_step_at: float, inp: TimelineInputs, events: Sequence[TimelineEvent],
                 sample_times: Sequence[float]) -> list[Phase]:
    """After the last step: the last samples and the final save of a finished run (in that
    order, ``train_network.py:NetworkTrainer.train``), or the time to the end of a stopped one."""
    if inp.state is RunState.FINISHED:
        saved = [e.at for e in events if e.kind in ("checkpoint", "finished") and e.at > last_step_at]
        if not saved:
            return []
        end = max(saved)
        sampled = [t for t in sample_times if last_step_at < t < end]
        if sampled:
            return [Phase("sampling", last_step_at, max(sampled)), Phase("saving", max(sampled), end)]
        return [Phase("saving", last_step_at, end)]
    later = [e.at for e in events if e.at > last_step_at and e.kind in ("checkpoint", "ended", "error")]
    if inp.state.is_over and later:
        return [Phase("stopped", last_step_at, max(later))]
    return []
