"""The loss at each checkpoint's save: the value logged at its step, kept once passed.

Why apart from :mod:`sdxl_tui.sources.fusion`: one rule (which point is "the loss at the save")
used by the snapshot and by the tests of the real run; fusion re-exports it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import replace

from sdxl_tui.model import Checkpoint, RunSnapshot, ScalarPoint, Series

__all__ = ["loss_at", "loss_point", "with_loss_at_save"]


def _last_loss_step(series: Mapping[str, Series]) -> int | None:
    s = series.get("loss/average") or series.get("loss/current")
    return s.last.step if s is not None and s.last is not None else None


def _step_of(p: ScalarPoint) -> int:
    return p.step


def loss_point(series: Mapping[str, Series], step: int) -> ScalarPoint | None:
    """The ``loss/average`` (else ``loss/current``) point logged at a checkpoint's save: the
    first point at the last step at or before ``step`` (its ``ss_steps``).

    Why the first: sd-scripts logs every micro-batch at the current global step
    (``train_network.py:NetworkTrainer.train``, ``accelerator.log(logs, step=global_step)``), so
    with gradient accumulation several points share a step. The first is the micro-batch that
    completed the step, logged before an epoch-end save; the later ones are the next epoch's
    first micro-batches, logged after it (the real run: -000001 at step 3 was saved at 1.095;
    1.101 came after it). File mtimes are not used: copies and touches move them. The point's
    step is below ``step`` when the event file ends earlier.
    """
    for tag in ("loss/average", "loss/current"):
        s = series.get(tag)
        if s is None or not s.points:
            continue
        i = bisect_right(s.points, step, key=_step_of)
        if not i:
            continue
        j = i - 1
        while j > 0 and s.points[j - 1].step == s.points[j].step:
            j -= 1
        return s.points[j]
    return None


def loss_at(series: Mapping[str, Series], step: int) -> float | None:
    """The value of :func:`loss_point`."""
    p = loss_point(series, step)
    return p.value if p is not None else None


def with_loss_at_save(checkpoints: Sequence[Checkpoint], series: Mapping[str, Series],
                      prev: RunSnapshot | None) -> tuple[Checkpoint, ...]:
    """Each checkpoint with the loss at its save (:func:`loss_point`) and the step it was
    logged at; a value is kept from the previous snapshot once the series had passed that step
    there (later downsampling must not move it)."""
    settled: dict[tuple[str, float, int], tuple[float, int | None]] = {}
    if prev is not None:
        passed = _last_loss_step(prev.series)
        for p in prev.checkpoints:
            if p.loss_at_save is not None and p.step is not None and passed is not None and passed > p.step:
                settled[(p.path, p.mtime, p.step)] = (p.loss_at_save, p.loss_step)
    out: list[Checkpoint] = []
    for c in checkpoints:
        if c.step is None or c.loss_at_save is not None:
            out.append(c)
            continue
        value = settled.get((c.path, c.mtime, c.step))
        if value is None:
            point = loss_point(series, c.step)
            value = (point.value, point.step) if point is not None else None
        out.append(c if value is None else replace(c, loss_at_save=value[0], loss_step=value[1]))
    return tuple(out)
