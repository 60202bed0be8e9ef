"""Loss chart: a compact always-visible sparkline and the full chart (``c``).

The math lives in :mod:`sdxl_tui.charting` (pure, unit-tested); this widget only picks the
series out of the snapshot, asks for a canvas of its own size and paints it with Rich styles.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rich.text import Text
from textual.reactive import reactive
from textual.timer import Timer
from textual.widget import Widget

from sdxl_tui.charting import (
    Canvas,
    Plot,
    downsample_minmax,
    ema_debiased,
    plot,
    y_range,
)
from sdxl_tui.humanize import format_loss, format_value
from sdxl_tui.model import RunSnapshot, Series

COLORS = {0: "bright_cyan", 1: "orange1", 2: "magenta", 3: "green", 9: "grey50"}
RAW_COLOR = 4
COLORS[RAW_COLOR] = "grey39"
#: A resumed run's redone branch (RunSnapshot.discarded): dim, under the run's own curve.
DISCARDED_COLOR = 5
COLORS[DISCARDED_COLOR] = "grey30"


@dataclass(frozen=True)
class ChartOptions:
    """What the chart screen's controls change."""

    smoothing: float = 0.6
    log_y: bool = False
    clip_outliers: bool = True
    x_axis: str = "step"  # "step" | "wall"
    show_lr: bool = True
    show_raw: bool = True


def loss_series(series: Mapping[str, Series]) -> tuple[Series | None, Series | None]:
    """(``loss/current``, ``loss/average``), falling back to any ``loss*`` series (log-derived)."""
    current = series.get("loss/current")
    average = series.get("loss/average")
    if current is None and average is None:
        for tag, s in series.items():
            if tag.startswith("loss") and "epoch" not in tag and "validation" not in tag:
                average = s
                break
    return current, average


def lr_series(series: Mapping[str, Series]) -> list[Series]:
    """Learning-rate curves (``lr/unet``, ``lr/textencoder``; the duplicate groups are skipped)."""
    out = [
        s
        for tag, s in sorted(series.items())
        if tag.startswith("lr/") and "/group" not in tag and not tag.startswith("lr/d*lr")
    ]
    return out[:2]


def _xs(s: Series, x_axis: str) -> list[float]:
    if x_axis == "wall" and s.points and s.points[0].wall_time:
        t0 = s.points[0].wall_time
        return [(p.wall_time - t0) / 60.0 for p in s.points]
    return [float(p.step) for p in s.points]


def _last(s: Series | None, fmt: Callable[[float], str] = format_loss) -> str:
    if s is None or s.last is None:
        return "--"
    return fmt(s.last.value)


def smoothed_last(s: Series, smoothing: float) -> float | None:
    """The last point of the smoothed curve the chart draws (it moves with ``[`` / ``]``)."""
    ys = [p.value for p in s.points]
    return ema_debiased(ys, smoothing)[-1] if ys else None


class LossChart(Widget):
    """Braille chart of smoothed ``loss/current``, ``loss/average`` and optionally the LR."""

    snapshot: reactive[RunSnapshot | None] = reactive(None, always_update=True, repaint=False)
    options: reactive[ChartOptions] = reactive(ChartOptions, always_update=True)

    def __init__(
        self, *, full: bool = False, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.full = full
        self._cache_key: tuple[object, ...] | None = None
        self._cache: Text | None = None
        self._drawn_at = 0.0
        self._cache_shape: tuple[object, ...] | None = None
        self._timer: Timer | None = None
        #: Least seconds between two redraws caused only by series growing. The compact
        #: chart of a run writing ten steps a second would otherwise be redrawn on every
        #: snapshot (its redraw is most of a frame's cost); a few seconds late is invisible
        #: at that scale. The full chart (``c``) follows every snapshot.
        self.min_redraw = 0.0 if full else 5.0

    def _shape(self) -> tuple[object, ...]:
        """What a growing series leaves unchanged: size, options, tags and resume points."""
        snap = self.snapshot
        tags = (tuple(sorted(snap.series)), snap.resume_steps) if snap is not None else None
        return (self.size.width, self.size.height, self.options, self.full, tags)

    def watch_snapshot(self, old: RunSnapshot | None, new: RunSnapshot | None) -> None:
        key = self._key()
        if key == self._cache_key:  # redraw only when a series grew
            return
        wait = self._drawn_at + self.min_redraw - time.monotonic()
        if wait <= 0 or self._cache is None or self._shape() != self._cache_shape:
            self._redraw()
        elif self._timer is None:
            # a later snapshot past the wait redraws first; the timer covers a run gone quiet
            self._timer = self.set_timer(wait + 0.5, self._redraw)

    def _redraw(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.refresh()

    def watch_options(self) -> None:
        self.refresh()

    def _key(self) -> tuple[object, ...]:
        snap = self.snapshot
        counts: tuple[object, ...] = ()
        if snap is not None:
            counts = tuple((t, s.count, id(s.points)) for t, s in sorted(snap.series.items()))
            counts += (snap.resume_steps, tuple((t, s.count) for t, s in sorted(snap.discarded.items())))
        return (self.size.width, self.size.height, self.options, counts, self.full)

    def render(self) -> Text:
        key = self._key()
        if key != self._cache_key or self._cache is None:
            self._cache = self._draw()
            self._cache_key = key
            self._cache_shape = self._shape()
            self._drawn_at = time.monotonic()
        return self._cache

    def _legend(self, current: Series | None, average: Series | None, lrs: list[Series]) -> Text:
        opts = self.options
        legend = Text()
        legend.append("loss ", style="bold")
        if current is not None:
            legend.append("● current ", style=COLORS[0])
            legend.append(_last(current))
            smooth = smoothed_last(current, opts.smoothing) if self.full else None
            if smooth is not None:
                legend.append(f" (smoothed {format_loss(smooth)} at {opts.smoothing:.2f})", style="dim")
            legend.append("  ")
        if average is not None:
            legend.append("● average ", style=COLORS[1])
            legend.append(_last(average))
        for i, lr in enumerate(lrs):
            legend.append(f"  ● {lr.tag} ", style=COLORS[2 + i])
            legend.append(_last(lr, format_value))
        return legend

    def _loss_plots(self, snap: RunSnapshot, current: Series | None, average: Series | None, buckets: int,
                    legend: Text) -> tuple[list[Plot], list[float], float, float]:
        """The loss curves (raw, smoothed, average, a resumed run's discarded branch), the values
        that set the scale, and the x range."""
        opts = self.options
        plots: list[Plot] = []
        all_y: list[float] = []
        x_lo, x_hi = math.inf, -math.inf
        for idx, s in ((RAW_COLOR, current), (0, current), (1, average)):
            if s is None or not s.points:
                continue
            if idx == RAW_COLOR and not (self.full and opts.show_raw):
                continue
            xs = _xs(s, opts.x_axis)
            ys = [p.value for p in s.points]
            if idx == 0:
                ys = ema_debiased(ys, opts.smoothing if self.full else max(opts.smoothing, 0.6))
            dx, dy = downsample_minmax(xs, ys, buckets)
            plots.append(Plot(dx, dy, idx, connect=idx != RAW_COLOR))
            all_y.extend(dy if idx != RAW_COLOR or not opts.clip_outliers else [])
            if dx:
                x_lo, x_hi = min(x_lo, dx[0]), max(x_hi, dx[-1])
        gone = snap.discarded.get("loss/average") or snap.discarded.get("loss/current")
        if gone is not None and gone.points and opts.x_axis == "step":
            # steps after a resume point that a later launch redid: drawn apart, dim, first
            dx, dy = downsample_minmax(_xs(gone, "step"), [p.value for p in gone.points], buckets)
            plots.insert(0, Plot(dx, dy, DISCARDED_COLOR))
            all_y.extend(dy)
            x_lo, x_hi = min(x_lo, dx[0]), max(x_hi, dx[-1])
            legend.append("  ● discarded (redone after a resume)", style=COLORS[DISCARDED_COLOR])
        return plots, all_y, x_lo, x_hi

    def _lr_panel(self, out: Text, lrs: list[Series], size: tuple[int, int, int, int],
                  x_bounds: tuple[float, float], markers: list[float]) -> None:
        """The learning-rate curves below the loss (full chart)."""
        plot_w, lr_rows, buckets, axis_w = size
        lr_canvas = Canvas(plot_w, lr_rows)
        lr_plots = []
        lr_y: list[float] = []
        for i, s in enumerate(lrs):
            dx, dy = downsample_minmax(_xs(s, self.options.x_axis), [p.value for p in s.points], buckets)
            lr_plots.append(Plot(dx, dy, 2 + i))
            lr_y.extend(dy)
        lr_bounds = y_range(lr_y)
        if lr_bounds is not None:
            lo, hi = lr_bounds
            lr_bounds = (min(lo, 0.0), hi)
            plot(lr_canvas, lr_plots, x_bounds=x_bounds, y_bounds=lr_bounds, markers=markers)
            out.append("\n")
            self._paint(out, lr_canvas, lr_bounds, axis_w, log_y=False)

    def _draw(self) -> Text:
        width, height = self.size.width, self.size.height
        snap = self.snapshot
        if snap is None or width < 10 or height < 1:
            return Text("loss: waiting for data", style="dim")
        current, average = loss_series(snap.series)
        opts = self.options
        lrs = lr_series(snap.series) if (self.full and opts.show_lr) else []
        legend = self._legend(current, average, lrs)
        if current is None and average is None:
            legend.append(" no loss values yet", style="dim")
            return legend
        # the compact chart keeps a short scale (its max and min) so its height means something
        axis_w = 9 if self.full else (7 if width >= 40 else 0)
        lr_rows = max(3, height // 4) if lrs else 0
        footer_rows = 1 if self.full else 0
        chart_rows = max(1, height - 1 - footer_rows - lr_rows)
        plot_w = max(4, width - axis_w)
        buckets = plot_w * 2
        plots, all_y, x_lo, x_hi = self._loss_plots(snap, current, average, buckets, legend)
        if not math.isfinite(x_lo):
            return legend
        if x_hi <= x_lo:
            x_hi = x_lo + 1
        markers = [float(s) for s in snap.resume_steps] if self.full and opts.x_axis == "step" else []
        bounds = y_range(
            all_y or [p for pl in plots for p in pl.ys], clip_outliers=opts.clip_outliers, log_y=opts.log_y
        )
        if bounds is None:
            return legend
        canvas = Canvas(plot_w, chart_rows)
        plot(canvas, plots, x_bounds=(x_lo, x_hi), y_bounds=bounds, log_y=opts.log_y, markers=markers)
        out = Text()
        out.append_text(legend)
        out.append("\n")
        self._paint(out, canvas, bounds, axis_w, log_y=opts.log_y)
        if lrs:
            self._lr_panel(out, lrs, (plot_w, lr_rows, buckets, axis_w), (x_lo, x_hi), markers)
        if footer_rows:
            out.append("\n")
            unit = "step" if opts.x_axis == "step" else "min"
            left = format_value(x_lo) if opts.x_axis == "step" else f"{x_lo:.0f}"
            right = (format_value(x_hi) if opts.x_axis == "step" else f"{x_hi:.0f}") + f" {unit}"
            gap = max(1, plot_w - len(left) - len(right))
            out.append(" " * axis_w + left + " " * gap + right, style="dim")
        return out

    @staticmethod
    def _paint(out: Text, canvas: Canvas, bounds: tuple[float, float], axis_w: int, *, log_y: bool) -> None:
        rows = canvas.rows()
        lo, hi = bounds
        for r, row in enumerate(rows):
            if axis_w:
                if r == 0:
                    label = format_value(10**hi if log_y else hi)
                elif r == len(rows) - 1:
                    label = format_value(10**lo if log_y else lo)
                else:
                    label = ""
                out.append(f"{label:>{axis_w - 1}}┤" if label else " " * (axis_w - 1) + "│", style="dim")
            run: list[str] = []
            run_color: int | None = None
            for ch, color in row:  # one span per colour run, not per cell
                c = run_color if ch == " " else color
                if c != run_color and run:
                    out.append("".join(run), style=COLORS.get(run_color, "") if run_color is not None else "")
                    run = []
                run_color = c
                run.append(ch)
            if run:
                out.append("".join(run), style=COLORS.get(run_color, "") if run_color is not None else "")
            if r != len(rows) - 1:
                out.append("\n")
