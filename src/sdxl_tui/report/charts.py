"""Loss and learning-rate charts as PNG images, drawn with Pillow.

Why Pillow and not a plotting library: Pillow is already a dependency (contact sheets), a
line chart with axes, ticks, a legend and markers is a page of code, and the report must not
pull a hundred megabytes of plotting stack onto a training box. The math is the dashboard's
(``charting.py``): TensorBoard's debiased EMA smoothing, outlier-clipped y bounds and
min/max downsampling, so the report's curve is the one the user saw in the chart view and in
TensorBoard at the same smoothing. Lines are drawn at twice the size and scaled down, which
gives them smooth edges without an anti-aliasing renderer.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sdxl_tui.charting import downsample_minmax, ema_debiased, y_range
from sdxl_tui.humanize import format_value
from sdxl_tui.model import Series

if TYPE_CHECKING:  # pragma: no cover
    from PIL.ImageDraw import ImageDraw
    from PIL.ImageFont import FreeTypeFont, ImageFont

__all__ = ["DARK", "LIGHT", "ChartLine", "Theme", "loss_chart", "lr_chart", "nice_ticks"]

RGB = tuple[int, int, int]
SCALE = 2  # supersampling factor
#: TensorBoard's default smoothing slider value (and the dashboard chart's).
DEFAULT_SMOOTHING = 0.6


@dataclass(frozen=True, slots=True)
class Theme:
    """Colours of one chart variant (the HTML picks light or dark by the reader's scheme)."""

    background: RGB
    text: RGB
    grid: RGB
    axis: RGB
    palette: tuple[RGB, ...]
    faint: RGB  # raw points under a smoothed curve
    marker: RGB


#: ChartLine colour of a resumed run's discarded branch (the markers' grey)
DISCARDED = -2

LIGHT = Theme((255, 255, 255), (40, 40, 48), (232, 232, 238), (150, 150, 160),
              ((214, 96, 32), (40, 110, 200), (30, 150, 90), (150, 80, 180)), (240, 200, 176), (120, 120, 130))
DARK = Theme((30, 31, 36), (220, 220, 228), (52, 54, 62), (120, 122, 135),
             ((255, 140, 70), (110, 170, 255), (90, 210, 140), (200, 140, 240)), (105, 72, 58), (160, 160, 172))


@dataclass(frozen=True, slots=True)
class ChartLine:
    """One curve: x and y values, a label and a palette index (-1: the faint raw colour;
    ``DISCARDED``: grey, a resumed run's redone branch)."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: int = 0
    width: float = 2.0


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k) covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    v = first
    while v <= hi + step * 1e-9:
        ticks.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return ticks


def _font(size: int) -> FreeTypeFont | ImageFont:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _colour(theme: Theme, index: int) -> RGB:
    if index == DISCARDED:
        return theme.marker
    return theme.faint if index < 0 else theme.palette[index % len(theme.palette)]


@dataclass(frozen=True, slots=True)
class _Frame:
    left: int
    top: int
    right: int
    bottom: int
    x0: float
    x1: float
    y0: float
    y1: float
    log_y: bool

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / ((self.x1 - self.x0) or 1.0) * (self.right - self.left)

    def py(self, y: float) -> float | None:
        if self.log_y:
            if y <= 0:
                return None
            y = math.log10(y)
        v = min(max(y, self.y0), self.y1)
        return self.bottom - (v - self.y0) / ((self.y1 - self.y0) or 1.0) * (self.bottom - self.top)


def _axes(draw: ImageDraw, f: _Frame, theme: Theme, font: FreeTypeFont | ImageFont, x_label: str) -> None:
    s = SCALE
    for t in nice_ticks(f.y0, f.y1, 5):
        y = f.bottom - (t - f.y0) / ((f.y1 - f.y0) or 1.0) * (f.bottom - f.top)
        draw.line([(f.left, y), (f.right, y)], fill=theme.grid, width=s)
        label = format_value(10**t if f.log_y else t)
        draw.text((f.left - 8 * s, y), label, fill=theme.text, font=font, anchor="rm")
    for t in nice_ticks(f.x0, f.x1, 8):
        x = f.px(t)
        draw.line([(x, f.bottom), (x, f.bottom + 5 * s)], fill=theme.axis, width=s)
        draw.text((x, f.bottom + 8 * s), f"{t:,.0f}" if abs(t) >= 1 or t == 0 else f"{t:g}",
                  fill=theme.text, font=font, anchor="mt")
    draw.line([(f.left, f.top), (f.left, f.bottom), (f.right, f.bottom)], fill=theme.axis, width=s)
    draw.text((f.right, f.bottom + 28 * s), x_label, fill=theme.text, font=font, anchor="rt")


def _curve(draw: ImageDraw, f: _Frame, line: ChartLine, theme: Theme, buckets: int) -> None:
    xs, ys = downsample_minmax(line.xs, line.ys, buckets)
    run: list[tuple[float, float]] = []
    width = max(1, round(line.width * SCALE))
    for x, y in zip(xs, ys, strict=True):
        py = f.py(y) if math.isfinite(x) and math.isfinite(y) else None
        if py is None:
            if len(run) > 1:
                draw.line(run, fill=_colour(theme, line.color), width=width, joint="curve")
            run = []
            continue
        run.append((f.px(x), py))
    if len(run) > 1:
        draw.line(run, fill=_colour(theme, line.color), width=width, joint="curve")
    elif len(run) == 1:
        (x, y), r = run[0], width
        draw.ellipse([(x - r, y - r), (x + r, y + r)], fill=_colour(theme, line.color))


def _legend(
    draw: ImageDraw, f: _Frame, lines: Sequence[ChartLine], theme: Theme, font: FreeTypeFont | ImageFont
) -> None:
    x = f.left + 10 * SCALE
    y = f.top - 16 * SCALE
    for line in lines:
        draw.line([(x, y), (x + 18 * SCALE, y)], fill=_colour(theme, line.color), width=3 * SCALE)
        x += 24 * SCALE
        draw.text((x, y), line.label, fill=theme.text, font=font, anchor="lm")
        x += int(draw.textlength(line.label, font=font)) + 18 * SCALE


def render_chart(
    lines: Sequence[ChartLine],
    *,
    theme: Theme,
    x_label: str = "step",
    y_values: Sequence[float] | None = None,
    log_y: bool = False,
    markers: Sequence[float] = (),
    ticks: Sequence[float] = (),
    size: tuple[int, int] = (960, 340),
) -> bytes | None:
    """A PNG of ``lines``; ``markers`` are dashed vertical lines (resumes), ``ticks`` small
    triangles on the x axis (checkpoints). None when nothing finite is there to draw."""
    from PIL import Image, ImageDraw

    xs = [x for line in lines for x in line.xs if math.isfinite(x)]
    ys = list(y_values) if y_values is not None else [y for line in lines for y in line.ys]
    bounds = y_range(ys, clip_outliers=True, log_y=log_y)
    if not xs or bounds is None:
        return None
    w, h = size[0] * SCALE, size[1] * SCALE
    x0, x1 = min(xs), max(xs)
    frame = _Frame(84 * SCALE, 34 * SCALE, w - 20 * SCALE, h - 46 * SCALE, x0, x1 if x1 > x0 else x0 + 1,
                   bounds[0], bounds[1], log_y)
    img = Image.new("RGB", (w, h), theme.background)
    draw = ImageDraw.Draw(img)
    font = _font(12 * SCALE)
    _axes(draw, frame, theme, font, x_label)
    for m in markers:
        if frame.x0 <= m <= frame.x1:
            x = frame.px(m)
            for y in range(frame.top, frame.bottom, 10 * SCALE):
                draw.line([(x, y), (x, y + 5 * SCALE)], fill=theme.marker, width=SCALE)
    for t in ticks:
        if frame.x0 <= t <= frame.x1:
            x = frame.px(t)
            draw.polygon([(x, frame.bottom - 9 * SCALE), (x - 5 * SCALE, frame.bottom), (x + 5 * SCALE, frame.bottom)],
                         fill=theme.marker)
    for line in lines:
        _curve(draw, frame, line, theme, buckets=frame.right - frame.left)
    _legend(draw, frame, [line for line in lines if line.label], theme, font)
    out = io.BytesIO()
    # 64 colours keep the smoothed edges and cut the file to about a third (it is inlined)
    img.resize(size, Image.Resampling.LANCZOS).quantize(colors=64).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _xy(series: Series) -> tuple[list[float], list[float]]:
    return [float(p.step) for p in series.points], [p.value for p in series.points]


def loss_chart(series: Mapping[str, Series], *, theme: Theme, smoothing: float = DEFAULT_SMOOTHING,
               resume_steps: Sequence[int] = (), checkpoint_steps: Sequence[int] = (),
               discarded: Mapping[str, Series] | None = None) -> bytes | None:
    """``loss/current`` raw and smoothed, and ``loss/average``; None without loss points.
    ``discarded``: a resumed run's redone branch (``RunSnapshot.discarded``), drawn thin and grey."""
    lines: list[ChartLine] = []
    gone = (discarded or {}).get("loss/average") or (discarded or {}).get("loss/current")
    if gone is not None and gone.points:
        xs, ys = _xy(gone)
        lines.append(ChartLine("discarded (redone after a resume)", xs, ys, color=DISCARDED, width=1.2))
    current = series.get("loss/current")
    if current is not None and current.points:
        xs, ys = _xy(current)
        lines.append(ChartLine("", xs, ys, color=-1, width=1.0))
        lines.append(ChartLine(f"loss/current (smoothed {smoothing:g})", xs, ema_debiased(ys, smoothing), 0, 2.0))
    average = series.get("loss/average")
    if average is not None and average.points:
        xs, ys = _xy(average)
        lines.append(ChartLine("loss/average", xs, ys, 1, 1.6))
    if not lines:
        return None
    own = [line for line in lines if not line.label.startswith("discarded")]
    return render_chart(lines, theme=theme, y_values=[y for line in own[:1] for y in line.ys],
                        markers=resume_steps, ticks=checkpoint_steps)


def lr_tags(series: Mapping[str, Series]) -> list[str]:
    """The learning-rate tags worth a curve: ``lr/group{i}`` repeats ``lr/unet`` etc. (the
    for-else in ``train_network.py:NetworkTrainer.generate_step_logs``), so it is left out
    when named tags exist."""
    tags = sorted(t for t in series if t.startswith("lr/") and series[t].points)
    named = [t for t in tags if not t.startswith("lr/group")]
    return named or tags


def lr_chart(series: Mapping[str, Series], *, theme: Theme, resume_steps: Sequence[int] = ()) -> bytes | None:
    """Every learning-rate curve, unsmoothed (a schedule is exact); None without any."""
    lines = [ChartLine(tag, *_xy(series[tag]), color=i, width=2.0) for i, tag in enumerate(lr_tags(series))]
    if not lines:
        return None
    return render_chart(lines, theme=theme, markers=resume_steps)
