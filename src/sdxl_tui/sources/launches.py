"""A resumed run's launches, and its series and checkpoints put at their true steps.

Why: sd-scripts resumed with ``--resume DIR`` (no ``--skip_until_initial_step``) counts its
steps from 0 again (``formats/trainstate.py``): its bar ends at ``6/9``, its TensorBoard steps
and ``ss_steps`` overlap the first launch's. The true step of each of its points is its own
count plus the step of the state it resumed from (that folder's ``train_state.json``, as the
log recorded it when loaded, else as the folder says now), not where the previous launch
happened to end. The previous launch's points after that step were redone: they are the
discarded branch, kept apart so the chart can show them as such.

Pure: the event runs (``EventReader.runs``), the log's launches (``sources/launchlog.py``),
the ``--resume`` of the trainer's command line and the ``-state`` folders in; frozen data out.
"""

from __future__ import annotations

import os
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from sdxl_tui.formats.trainstate import TrainState, is_epoch_tag
from sdxl_tui.model import Checkpoint, Launch, ScalarPoint, Series, StateDir
from sdxl_tui.sources.events import EventRun
from sdxl_tui.sources.launchlog import LoggedLaunch

__all__ = [
    "Stitched",
    "attribute_checkpoints",
    "attribute_states",
    "describe_launch",
    "find_launches",
    "log_offset",
    "stitch",
]


def _state_of(folder: str, states: Sequence[StateDir]) -> TrainState | None:
    """The ``-state`` folder's train_state.json as scanned now (matched by path, else name)."""
    norm = os.path.normpath(folder)
    for s in states:
        if os.path.normpath(s.path) == norm or s.name == os.path.basename(norm):
            return TrainState(s.epoch, s.step) if s.complete else None
    return None


def _launch(index: int, run: EventRun | None, logged: LoggedLaunch | None, *, resume_arg: str | None,
            skip_arg: bool, states: Sequence[StateDir]) -> Launch:
    folder, state, source, skip = None, None, "", skip_arg
    if logged is not None and logged.resumed_from is not None:
        folder, state, source, skip = logged.resumed_from, logged.state, "log", logged.skip or skip_arg
        if state is None:  # the load line was not read: the folder's file now
            state = _state_of(folder, states)
    elif resume_arg:
        folder, state, source = resume_arg, _state_of(resume_arg, states), "command line"
    step = state.step if state is not None else None
    return Launch(
        index=index, started_at=(run.first_wall or run.file_time) if run is not None else None,
        resumed_from=folder, resume_step=step, resume_epoch=state.epoch if state is not None else None,
        offset=step if step is not None and not skip else 0, own_counts=skip and folder is not None,
        source=source if step is not None else "", in_log=logged is not None,
        saved_states=logged.saved if logged is not None else (),
    )


def _chained(la: Launch, before: Sequence[Launch], logged: Sequence[LoggedLaunch | None]) -> Launch:
    """A launch resumed from a state an already resumed launch saved: that state's
    ``current_step`` is the saving launch's own count, so its offset is added too (sd-scripts
    itself then restarts at the wrong epoch; the weights went through the steps all the same)."""
    if la.resumed_from is None or la.resume_step is None or la.own_counts:
        return la
    name = os.path.basename(os.path.normpath(la.resumed_from))
    for prev, said in zip(reversed(before), reversed(logged), strict=True):
        if said is not None and name in said.saved:
            if not prev.offset or prev.own_counts:
                return la
            step = la.resume_step + prev.offset
            return replace(la, resume_step=step, offset=step, chained_from=prev.index)
    return la


def _pair(runs: Sequence[EventRun], logged: Sequence[LoggedLaunch]) -> tuple[list[LoggedLaunch | None],
                                                                           list[LoggedLaunch]]:
    """The logged launch of each event run, and the logged launches newer than every run.

    By time when the log has it: an event folder is named when the trainer starts (before its
    ``running training`` block), the next launch starts after it ended; so a launch belongs to
    the newest folder named at or before its block, and a launch whose folder is not there yet
    (the trainer has not logged a scalar) is newer than all. Else from the newest back.
    """
    paired: list[LoggedLaunch | None] = [None] * len(runs)
    if runs and logged and all(la.at for la in logged):
        keys = [r.key for r in runs]
        newer: list[LoggedLaunch] = []
        for la in logged:
            i = bisect_right(keys, la.at or "") - 1
            if i < 0:
                continue
            if paired[i] is None:
                paired[i] = la
            elif i == len(runs) - 1:
                newer.append(la)  # started after the newest folder: its own is not there yet
        return paired, newer[-1:]
    for i in range(len(runs)):
        j = len(logged) - len(runs) + i
        paired[i] = logged[j] if 0 <= j < len(logged) else None
    return paired, [] if runs else list(logged)


def find_launches(runs: Sequence[EventRun], logged: Sequence[LoggedLaunch], *, resume_arg: str | None = None,
                  resume_since: float | None = None, skip_arg: bool = False,
                  states: Sequence[StateDir] = ()) -> tuple[Launch, ...]:
    """One :class:`Launch` per event run, then any newer logged launch (empty for a run
    launched once and never resumed).

    The command line's ``--resume`` (live process, run record, launch config) speaks for the
    newest launch only, when the log does not; ``resume_since``: when that process started (a
    process started after the newest event folder's first scalar has no folder yet).
    """
    paired, newer = _pair(runs, logged)
    rows: list[tuple[EventRun | None, LoggedLaunch | None]] = [*zip(runs, paired, strict=True)]
    rows += [(None, la) for la in newer]
    last = rows[-1][0] if rows else None
    if resume_arg and (not rows or (last is not None and resume_since is not None
                                    and (last.first_wall or last.file_time) < resume_since)):
        rows.append((None, None))
    out: list[Launch] = []
    for i, (run, la) in enumerate(rows):
        launch = _launch(i, run, la, resume_arg=resume_arg if i == len(rows) - 1 else None, skip_arg=skip_arg,
                         states=states)
        out.append(_chained(launch, out, [r[1] for r in rows[:i]]))
    if len(out) <= 1 and not any(la.resume_step is not None for la in out):
        return ()
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Stitched:
    """The series at true steps, the redone points apart, the resume markers, the launches
    with their step ranges."""

    series: Mapping[str, Series]
    discarded: Mapping[str, Series]
    resume_steps: tuple[int, ...]
    launches: tuple[Launch, ...]


def _cuts(launches: Sequence[Launch]) -> list[tuple[int | None, int | None]]:
    """Per launch, (step, epoch) after which a later launch redid its work."""
    out: list[tuple[int | None, int | None]] = []
    for i in range(len(launches)):
        later = [la for la in launches[i + 1 :] if la.resume_step is not None]
        out.append((min((la.resume_step for la in later if la.resume_step is not None), default=None),
                    min((la.resume_epoch for la in later if la.resume_epoch is not None), default=None)))
    return out


def _series(tag: str, points: list[ScalarPoint], like: Series, *, count: int) -> Series:
    last = points[-1] if points else None
    if last is not None and like.last is not None and like.last.wall_time == last.wall_time:
        last = ScalarPoint(last.step, like.last.value, like.last.wall_time)
    return Series(tag=tag, points=tuple(points), count=max(len(points), count), last=last, source=like.source)


def _wall(p: ScalarPoint) -> float:
    return p.wall_time


def _step(p: ScalarPoint) -> int:
    return p.step


def _split(tag: str, points: Sequence[ScalarPoint], starts: Sequence[float], runs: Sequence[EventRun],
           launches: Sequence[Launch], cuts: Sequence[tuple[int | None, int | None]],
           ranges: dict[int, list[int]]) -> tuple[list[ScalarPoint], list[ScalarPoint]]:
    """One tag's points (in time order: each run a slice, its steps rising) shifted to true
    steps, split into the run's line and the redone branch; loss tags add to ``ranges``."""
    epochs = is_epoch_tag(tag)
    bounds = [0, *(bisect_left(points, t, key=_wall) for t in starts[1:]), len(points)]
    kept: list[ScalarPoint] = []
    dropped: list[ScalarPoint] = []
    for r in range(len(runs)):
        part = points[bounds[r] : max(bounds[r], bounds[r + 1])]
        if not part:
            continue
        la = launches[r]
        delta = 0
        if la.resume_step is not None and not la.own_counts:
            delta = (0 if epochs else la.resume_step) - runs[r].offsets.get(tag, 0)
        cut = cuts[r][1 if epochs else 0]
        k = len(part) if cut is None else bisect_right(part, cut - delta, key=_step)
        moved = list(part) if not delta else [ScalarPoint(p.step + delta, p.value, p.wall_time) for p in part]
        kept.extend(moved[:k])
        dropped.extend(moved[k:])
        if tag in ("loss/current", "loss/average"):
            ranges.setdefault(r, []).extend((moved[0].step, moved[-1].step))
    return kept, dropped


def stitch(series: Mapping[str, Series], runs: Sequence[EventRun], launches: Sequence[Launch],
           reader_resume_steps: Sequence[int] = ()) -> Stitched:
    """Each point at its true step (:class:`Launch`), the redone ones in ``discarded``."""
    known = [la for la in launches if la.resume_step is not None]
    if not known or not runs or len(runs) > len(launches):
        return Stitched(series, MappingProxyType({}), tuple(reader_resume_steps), tuple(launches))
    starts = [r.first_wall if r.first_wall is not None else r.file_time for r in runs]
    cuts = _cuts(launches)
    main: dict[str, Series] = {}
    gone: dict[str, Series] = {}
    ranges: dict[int, list[int]] = {}
    for tag, s in series.items():
        if s.source != "tensorboard":
            main[tag] = s
            continue
        kept, dropped = _split(tag, s.points, starts, runs, launches, cuts, ranges)
        main[tag] = _series(tag, kept, s, count=s.count - len(dropped))
        if dropped:
            gone[tag] = _series(tag, dropped, s, count=len(dropped))
    out: list[Launch] = []
    for i, la in enumerate(launches):
        steps = ranges.get(i, [])
        cut = cuts[i][0]
        out.append(replace(la, first_step=min(steps, default=None), last_step=max(steps, default=None),
                           discarded_after=cut if cut is not None and steps and max(steps) > cut else None))
    markers = tuple(sorted({la.resume_step for la in known if la.resume_step is not None}))
    return Stitched(MappingProxyType(main), MappingProxyType(gone), markers, tuple(out))


def _launch_of(c: Checkpoint, launches: Sequence[Launch]) -> int | None:
    """The launch that wrote ``c``: by ``ss_training_started_at`` (set before the launch's
    first scalar), else by the file's time."""
    starts = [la.started_at for la in launches if la.started_at is not None]
    if not starts:
        return None
    try:
        began = float(c.metadata["ss_training_started_at"])
    except (KeyError, ValueError):
        began = None
    if began is not None and began == began:
        return next((i for i, t in enumerate(starts) if t is not None and t >= began), len(launches) - 1)
    return max(0, bisect_right([t or 0.0 for t in starts], c.mtime) - 1)


def attribute_states(states: Sequence[StateDir], launches: Sequence[Launch]) -> tuple[StateDir, ...]:
    """Each ``-state`` folder at its true step: its ``train_state.json`` counts the steps of the
    launch that saved it (the newest the log shows saving it)."""
    if not launches:
        return tuple(states)
    out: list[StateDir] = []
    for st in states:
        la = next((la for la in reversed(launches) if st.name in la.saved_states), None)
        if la is not None and st.step is not None and la.offset and not la.own_counts:
            st = replace(st, step=st.step + la.offset)
        out.append(st)
    return tuple(out)


def attribute_checkpoints(checkpoints: Sequence[Checkpoint], launches: Sequence[Launch]) -> tuple[Checkpoint, ...]:
    """Each checkpoint with its launch and its true step (``trainer_step``: its ``ss_steps``)."""
    if not launches:
        return tuple(checkpoints)
    out: list[Checkpoint] = []
    for c in checkpoints:
        i = _launch_of(c, launches)
        if i is None:
            out.append(c)
            continue
        la = launches[i]
        if c.step is not None and la.offset and not la.own_counts:
            out.append(replace(c, launch=i, step=c.step + la.offset, trainer_step=c.step))
        else:
            out.append(replace(c, launch=i))
    return tuple(out)


def log_offset(launches: Sequence[Launch]) -> int:
    """What to add to the log's steps bar: the offset of the newest launch the log shows (a
    newer one known only from its command line has not drawn its bar yet)."""
    shown = [la for la in launches if la.in_log]
    return (shown[-1] if shown else launches[-1]).offset if launches else 0


def _span(a: int | None, b: int | None) -> str:
    return "" if a is None or b is None else (f"step {a}" if a == b else f"steps {a}-{b}")


def describe_launch(la: Launch) -> str:
    """One launch in words (the status line and the dashboard say the same)."""
    bits: list[str] = []
    if la.resumed_from is not None:
        where = os.path.basename(la.resumed_from.rstrip("/")) or la.resumed_from
        at = f" at step {la.resume_step}" if la.resume_step is not None else " (its train_state.json unread)"
        bits.append(f"resumed from {where}{at}" + (f", epoch {la.resume_epoch}" if la.resume_epoch else ""))
    if la.chained_from is not None:
        bits.append(f"that state counts launch #{la.chained_from + 1}'s own steps: sd-scripts went on from an "
                    "earlier epoch and trains more steps than planned")
    span = _span(la.first_step, la.last_step)
    if la.own_counts:
        bits.append("the step counts are the trainer's own (--skip_until_initial_step: sd-scripts mis-counts "
                    "them with gradient accumulation; its bar, TensorBoard steps and ss_steps are not true "
                    "steps); its points are drawn after the previous launch's")
    elif span:
        bits.append(span + (f" (its own count +{la.offset})" if la.offset else ""))
    if la.discarded_after is not None:
        bits.append(f"steps after {la.discarded_after} redone by a later launch (discarded branch)")
    if la.resumed_from is None and la.index > 0:
        bits.insert(0, "started again without --resume (its steps are drawn after the previous launch's)")
    return "; ".join(bits) or "first launch"
