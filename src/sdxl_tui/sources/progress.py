"""Progress and ETA arithmetic for a run: pure functions, no I/O.

Why a module of its own: the numbers the dashboard shows ("ETA 03:12, next checkpoint
luca_sdxl_v1-000008 in 41 min") depend on sd-scripts' exact save schedule
(``train_network.py:NetworkTrainer.train``: the last epoch is never saved under an epoch name, the
final file comes at the end) and on what the step rate really measures (tqdm's rate excludes time
spent sampling and saving). Keeping that arithmetic here, free of readers, lets it be tested on
hand-built numbers.

The "honest ETA" is::

    eta = remaining_steps * seconds_per_step          (pure training time, tqdm's rate)
        + remaining_saves * seconds_per_pause         (measured: wall time not spent on steps)
        - time already spent in the current step      (so the ETA does not jump at each step)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sdxl_tui.formats.names import epoch_file_name, final_file_name, step_file_name
from sdxl_tui.model import CheckpointKind, Progress, RunSnapshot, ScalarPoint, TrainConfig

#: A pause longer than this between two steps is not a save: it is a stop, a hang, a resume.
MAX_PAUSE_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class PlannedSave:
    """A checkpoint sd-scripts will write (or wrote) according to its schedule."""

    name: str  # file name, e.g. "luca_sdxl_v1-000002.safetensors"
    kind: CheckpointKind
    step: int  # global step at which it is written
    epoch: int | None


def epoch_end_step(epoch: int, steps_per_epoch: int, total_steps: int | None) -> int:
    """Global step at the end of 1-based ``epoch`` (the last epoch may be cut short)."""
    step = epoch * steps_per_epoch
    return min(step, total_steps) if total_steps else step


def upcoming_saves(
    config: TrainConfig,
    *,
    step: int,
    total_steps: int | None,
    done: Collection[str] = (),
    ext: str = ".safetensors",
    limit: int = 1000,
) -> tuple[PlannedSave, ...]:
    """Saves still to come after ``step``, in order (at most ``limit``, the final one last).

    A save scheduled exactly at ``step`` counts as still to come unless its file is in
    ``done`` (the epoch ended, the file is being written). Computed arithmetically, so a
    schedule of a million step saves costs nothing.

    Why ``limit``: a mis-set ``save_every_n_steps = 1`` must not build a huge tuple; the
    count of what remains is :func:`count_upcoming_saves`.
    """
    total = total_steps or config.total_steps
    if total is None:
        return ()
    out: list[PlannedSave] = []
    spe = config.steps_per_epoch
    epochs = config.num_epochs
    every_e = config.save_every_n_epochs
    if every_e and spe and epochs:
        first = max(1, math.ceil(step / spe))
        first = first + (-first) % every_e  # round up to a multiple of every_e
        for e in range(first, epochs, every_e):
            at = epoch_end_step(e, spe, total)
            name = epoch_file_name(config.output_name, e, ext)
            if at > step or (at == step and name not in done):
                out.append(PlannedSave(name, CheckpointKind.EPOCH, at, e))
            if len(out) >= limit:
                break
    every_s = config.save_every_n_steps
    if every_s and len(out) < limit:
        s = max(every_s, (step // every_s) * every_s)
        count = 0
        while s <= total and count < limit:
            name = step_file_name(config.output_name, s, ext)
            if s > step or (s == step and name not in done):
                out.append(PlannedSave(name, CheckpointKind.STEP, s, None))
                count += 1
            s += every_s
    out.sort(key=lambda p: (p.step, p.kind is CheckpointKind.STEP))
    out = out[:limit]
    final = final_file_name(config.output_name, ext)
    if final not in done:
        out.append(PlannedSave(final, CheckpointKind.FINAL, total, epochs))
    return tuple(out)


def count_upcoming_saves(
    config: TrainConfig, *, step: int, total_steps: int | None, done: Collection[str] = ()
) -> int:
    """How many saves remain after ``step`` (epoch + step + final), without listing them."""
    total = total_steps or config.total_steps
    if total is None:
        return 0
    n = 0
    spe, epochs, every_e = config.steps_per_epoch, config.num_epochs, config.save_every_n_epochs
    if every_e and spe and epochs:
        for e in range(every_e, epochs, every_e):
            at = epoch_end_step(e, spe, total)
            if at > step or (at == step and epoch_file_name(config.output_name, e) not in done):
                n += 1
    every_s = config.save_every_n_steps
    if every_s:
        n += max(0, total // every_s - step // every_s)
        if step % every_s == 0 and step > 0 and step_file_name(config.output_name, step) not in done:
            n += 1
    if final_file_name(config.output_name) not in done:
        n += 1
    return n


def steps_per_second_from_points(points: Sequence[ScalarPoint], *, window: int = 200) -> float | None:
    """Median seconds per optimizer step from event wall times (pauses excluded by the median).

    Why: without a tqdm line (a log we cannot read, a bare TensorBoard directory) the event
    wall times are the only clock. Points of one step value (gradient accumulation logs a
    point per micro-batch) are collapsed to the last wall time of that step.
    """
    last_wall: dict[int, float] = {}
    for p in points[-window * 4 :]:
        if p.wall_time > 0:
            last_wall[p.step] = p.wall_time
    steps = sorted(last_wall)
    deltas: list[float] = []
    for a, b in itertools.pairwise(steps):
        dt = last_wall[b] - last_wall[a]
        if dt > 0 and b > a:
            deltas.append(dt / (b - a))
    if not deltas:
        return None
    deltas = deltas[-window:]
    deltas.sort()
    mid = len(deltas) // 2
    return deltas[mid] if len(deltas) % 2 else (deltas[mid - 1] + deltas[mid]) / 2


def pause_per_save(
    first: ScalarPoint | None,
    last: ScalarPoint | None,
    seconds_per_step: float | None,
    pauses: int,
) -> float | None:
    """Mean wall seconds per save/sample pause, measured between two event points.

    The wall time between the first and the last logged point, minus the time the steps in
    between took at ``seconds_per_step``, is the time spent not stepping: saving, sampling,
    hashing. Divided by the number of saves that happened in between, it is what each future
    save will cost. ``None`` when it cannot be measured (no saves yet, no wall times).
    """
    if first is None or last is None or not seconds_per_step or pauses <= 0:
        return None
    if first.wall_time <= 0 or last.wall_time <= first.wall_time:
        return None
    span = last.wall_time - first.wall_time
    stepping = (last.step - first.step) * seconds_per_step
    extra = span - stepping
    if extra <= 0:
        return 0.0
    return min(extra / pauses, MAX_PAUSE_SECONDS)


def compute_progress(
    config: TrainConfig,
    *,
    epoch: int | None,
    epochs: int | None,
    step: int | None,
    total_steps: int | None,
    seconds_per_step: float | None,
    elapsed_seconds: float | None,
    now: float,
    last_step_at: float | None,
    pause_seconds: float | None = None,
    done: Collection[str] = (),
    started_at: float | None = None,
    running: bool = True,
    ext: str = ".safetensors",
) -> Progress:
    """Build :class:`Progress` with the honest ETA and the next scheduled checkpoint.

    Args:
        config: what the run reports (save schedule, steps per epoch, output name).
        step: optimizer steps done; total_steps: steps planned.
        seconds_per_step: pure training time per step (tqdm's rate).
        now: the injected clock; last_step_at: when the last step was seen (unix time).
        pause_seconds: measured mean cost of one save (see :func:`pause_per_save`).
        done: file names of checkpoints already complete.
        running: False once the run is over: no ETA then.
    """
    total = total_steps or config.total_steps
    epochs = epochs or config.num_epochs
    eta: float | None = None
    eta_at: float | None = None
    next_name: str | None = None
    next_eta: float | None = None
    if running and step is not None and total:
        upcoming = upcoming_saves(config, step=step, total_steps=total, done=done, ext=ext, limit=1)
        nxt = upcoming[0] if upcoming else None
        if seconds_per_step and seconds_per_step > 0:
            in_step = 0.0
            if last_step_at is not None:
                in_step = min(max(0.0, now - last_step_at), seconds_per_step)
            pause = pause_seconds or 0.0
            remaining = max(0, total - step)
            n_saves = count_upcoming_saves(config, step=step, total_steps=total, done=done)
            # the final save's pause is part of the run; each earlier save too
            eta = max(0.0, remaining * seconds_per_step + n_saves * pause - in_step)
            eta_at = now + eta
            if nxt is not None:
                next_eta = max(0.0, (nxt.step - step) * seconds_per_step - in_step)
        if nxt is not None:
            next_name = nxt.name
    elif not running:
        eta = None
    return Progress(
        epoch=epoch,
        epochs=epochs,
        step=step,
        total_steps=total,
        seconds_per_step=seconds_per_step,
        elapsed_seconds=elapsed_seconds,
        eta_seconds=eta,
        eta_at=eta_at,
        next_checkpoint=next_name,
        next_checkpoint_eta_seconds=next_eta,
        started_at=started_at,
    )


def run_elapsed(snapshot: RunSnapshot) -> float | None:
    """Seconds the run has taken, from its own timestamps: training start (metadata, else the
    first TensorBoard point) to now, or to its last trace once it is over. tqdm's elapsed is
    only the fallback: at short steps its clock is wrong, and it restarts with each tqdm bar."""
    p = snapshot.progress
    starts = [s.points[0].wall_time for s in snapshot.series.values() if s.points and s.points[0].wall_time]
    if p.started_at:
        starts.append(p.started_at)
    if not starts:
        return p.elapsed_seconds
    start = min(starts)
    end = snapshot.taken_at
    if snapshot.state.is_over:
        traces = [s.last.wall_time for s in snapshot.series.values() if s.last is not None and s.last.wall_time]
        if not traces:
            traces = [c.mtime for c in snapshot.checkpoints if c.mtime]
        end = max(traces) if traces else end
    return max(0.0, end - start)
