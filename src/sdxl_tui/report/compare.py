"""Comparing runs: what differs in their configuration, and their loss curves on one axis.

Why: "sdxl_v1 or sdxl_v2?", "did the rerun with batch 2 x accumulation 4 behave like the
original?", "how does the SD1.5 best trial's curve compare?". The configuration is what each
run reports about itself (its log, command line and launch config, through the same reader
as the dashboard) plus the ``ss_*`` metadata sd-scripts writes into its newest checkpoint;
only the keys whose values differ are shown. Curves are aligned by optimizer step, by epoch
(step / steps per epoch of each run, so runs with other batch sizes line up) or by
wall-clock time from each run's first point, with TensorBoard's debiased EMA smoothing
(``charting.ema_debiased``, the dashboard's and the report's).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass

from sdxl_tui.charting import Canvas, Plot, ema_debiased, plot, y_range
from sdxl_tui.formats.safetensors import peek_metadata
from sdxl_tui.model import RunSnapshot

__all__ = [
    "ALIGNS",
    "CompareRun",
    "Curve",
    "aligned_curves",
    "chart_lines",
    "config_diff",
    "load_runs",
    "png_chart",
    "snapshot_config",
    "text_chart",
]

ALIGNS = ("step", "epoch", "wall")
#: ss_* keys that differ between any two runs by nature (ids, times, hashes, progress)
_NOISE = {
    "ss_session_id", "ss_training_started_at", "ss_training_finished_at", "ss_sd_model_hash",
    "ss_new_sd_model_hash", "ss_new_vae_hash", "ss_vae_hash", "ss_steps", "ss_epoch", "ss_tag_frequency",
    "ss_dataset_dirs", "ss_datasets", "ss_bucket_info", "ss_output_name", "ss_reg_dataset_dirs",
}
_MAX_VALUE = 60


@dataclass(frozen=True, slots=True)
class CompareRun:
    """One run as compared: its name, flat configuration and its snapshot (series)."""

    name: str
    run_dir: str
    config: dict[str, str]
    snapshot: RunSnapshot


@dataclass(frozen=True, slots=True)
class Curve:
    label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]  # smoothed
    raw: tuple[float, ...]


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def snapshot_config(snap: RunSnapshot) -> dict[str, str]:
    """The run's configuration, flat: the reader's fields, then the newest checkpoint's ``ss_*``."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(snap.config):
        value = getattr(snap.config, f.name)
        if value is not None and f.name != "logging_dir":
            out[f.name] = _short(value)
    if snap.checkpoints:
        newest = snap.checkpoints[-1]
        for key, value in peek_metadata(os.path.join(snap.run_dir, newest.name)).items():
            if key.startswith("ss_") and key not in _NOISE:
                out[key] = _short(value)
    return out


def load_runs(paths: Sequence[str]) -> list[CompareRun]:
    """Read each run once (no GPU, no process scan: the files are what is compared)."""
    from sdxl_tui.sources.rundir import read_run

    runs = []
    for path in paths:
        run_dir = os.path.abspath(os.path.expanduser(path))
        logs = os.path.join(run_dir, "logs")
        snap = read_run(run_dir, gpu=False, procs=False, logs_dir=logs if os.path.isdir(logs) else None)
        runs.append(CompareRun(os.path.basename(run_dir.rstrip(os.sep)), run_dir, snapshot_config(snap), snap))
    return runs


def config_diff(runs: Sequence[CompareRun]) -> list[tuple[str, tuple[str, ...]]]:
    """(key, value per run) for every key whose known values differ ("-": that run does not
    say, e.g. a run that failed before its first checkpoint has no ``ss_*`` metadata; a key
    only one run knows is not a difference)."""
    keys = sorted({k for r in runs for k in r.config})
    rows = []
    for key in keys:
        values = tuple(r.config.get(key, "-") for r in runs)
        if len({v for v in values if v != "-"}) > 1:
            rows.append((key, values))
    return rows


def _x(run: CompareRun, align: str) -> tuple[list[float], list[float]] | None:
    series = run.snapshot.series
    tag = next((t for t in ("loss/current", "loss/average") if t in series and series[t].points), None)
    if tag is None:
        return None
    pts = series[tag].points
    ys = [p.value for p in pts]
    if align == "wall":
        t0 = pts[0].wall_time
        return [(p.wall_time - t0) / 60.0 for p in pts], ys
    if align == "epoch":
        per = run.snapshot.config.steps_per_epoch
        if not per:
            return None
        return [p.step / per for p in pts], ys
    return [float(p.step) for p in pts], ys


def aligned_curves(runs: Sequence[CompareRun], *, align: str = "step", smoothing: float = 0.6) -> list[Curve]:
    """Each run's loss (``loss/current``, else ``loss/average``) on the chosen x axis, smoothed.

    ``wall`` is in minutes from the run's first point; runs without what the axis needs
    (no steps per epoch for ``epoch``) are left out.
    """
    if align not in ALIGNS:
        raise ValueError(f"align must be one of {', '.join(ALIGNS)}")
    out = []
    for run in runs:
        xy = _x(run, align)
        if xy is None:
            continue
        xs, ys = xy
        out.append(Curve(run.name, tuple(xs), tuple(ema_debiased(ys, smoothing)), tuple(ys)))
    return out


X_LABELS = {"step": "step", "epoch": "epoch", "wall": "minutes from start"}


MARKS = "●◆▲■✚★"
CHART_LEFT = 10  # "{label:>8} ┤": the plot starts at this column of each chart line


def chart_lines(curves: Sequence[Curve], *, align: str = "step", width: int = 72,
                height: int = 14) -> tuple[list[str], list[list[int | None]]]:
    """The chart as text lines and, for the first ``height`` lines, each plot cell's curve
    index (None: empty) from column :data:`CHART_LEFT` (a terminal colours by it)."""
    xs = [x for c in curves for x in c.xs]
    bounds = y_range([y for c in curves for y in c.ys], clip_outliers=True)
    if not xs or bounds is None:
        return ["(no loss points to draw)"], []
    canvas = Canvas(width, height)
    x_bounds = (min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1)
    plot(canvas, [Plot(c.xs, c.ys, i) for i, c in enumerate(curves)], x_bounds=x_bounds, y_bounds=bounds)
    cells = canvas.rows()
    grid = [[ch for ch, _ in row] for row in cells]
    colours = [[col for _, col in row] for row in cells]
    for i, c in enumerate(curves):  # each curve's end carries its legend mark (no colour in plain text)
        col = min(width - 1, max(0, round((c.xs[-1] - x_bounds[0]) / (x_bounds[1] - x_bounds[0]) * (width - 1))))
        frac = (c.ys[-1] - bounds[0]) / ((bounds[1] - bounds[0]) or 1.0)
        row = round((1.0 - min(1.0, max(0.0, frac))) * (height - 1))
        grid[row][col] = MARKS[i % len(MARKS)]
        colours[row][col] = i
    lines = []
    for i, row_chars in enumerate(grid):
        label = f"{bounds[1]:.4g}" if i == 0 else f"{bounds[0]:.4g}" if i == height - 1 else ""
        lines.append(f"{label:>8} ┤" + "".join(row_chars))
    lines.append(" " * 9 + "└" + "─" * width)
    right = f"{x_bounds[1]:.4g} {X_LABELS[align]}"
    lines.append(" " * 10 + f"{x_bounds[0]:.4g}".ljust(width // 2) + right.rjust(width - width // 2))
    for i, c in enumerate(curves):
        lines.append(f"  {MARKS[i % len(MARKS)]} {c.label}: last {c.ys[-1]:.4g} smoothed, raw min {min(c.raw):.4g}, "
                     f"{len(c.xs)} points")
    return lines, colours


def text_chart(curves: Sequence[Curve], *, align: str = "step", width: int = 72, height: int = 14) -> str:
    """A braille chart of the smoothed curves (each run's end and legend carry its mark)."""
    lines, _ = chart_lines(curves, align=align, width=width, height=height)
    return "\n".join(line.rstrip() for line in lines) + "\n"


def png_chart(curves: Sequence[Curve], *, align: str = "step", smoothing: float = 0.6) -> bytes | None:
    """The same curves as a PNG (the report's renderer), light theme."""
    from sdxl_tui.report.charts import LIGHT, ChartLine, render_chart

    lines = [ChartLine(f"{c.label} (smoothed {smoothing:g})", c.xs, c.ys, i) for i, c in enumerate(curves)]
    return render_chart(lines, theme=LIGHT, x_label=X_LABELS[align])
