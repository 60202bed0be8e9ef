"""Pure chart math and a braille canvas for the loss and learning-rate charts.

No Textual, no Rich: lists of floats in, rows of characters (plus a colour index per cell)
out, so every rule here is unit-tested in milliseconds and the widget stays a thin painter.

Smoothing follows TensorBoard's scalar dashboard exactly (debiased exponential moving
average): ``last = last * w + (1 - w) * v``, divided by ``1 - w ** n`` where ``n`` counts the
finite values seen, and non-finite values pass through unsmoothed. That way a user who
compares our chart with TensorBoard at the same smoothing slider value sees the same curve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Braille dot bits, indexed [row 0..3][col 0..1] inside one 2x4 cell.
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
_BRAILLE_BASE = 0x2800


def ema_debiased(values: Sequence[float], smoothing: float) -> list[float]:
    """TensorBoard's debiased EMA. ``smoothing`` in [0, 1); 0 returns the values unchanged."""
    w = min(max(float(smoothing), 0.0), 0.999999)
    if w == 0.0:
        return [float(v) for v in values]
    out: list[float] = []
    last = 0.0
    n = 0
    for v in values:
        v = float(v)
        if not math.isfinite(v):
            out.append(v)
            continue
        last = last * w + (1.0 - w) * v
        n += 1
        out.append(last / (1.0 - w**n))
    return out


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values (non-empty)."""
    if not sorted_values:
        raise ValueError("quantile of no values")
    pos = (len(sorted_values) - 1) * min(max(q, 0.0), 1.0)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] * (1 - frac) + sorted_values[hi] * frac


def y_range(
    values: Sequence[float], *, clip_outliers: bool = False, log_y: bool = False
) -> tuple[float, float] | None:
    """Y bounds for the finite values; ``None`` when there is nothing to draw.

    With ``clip_outliers`` the bounds are the 2nd and 98th percentiles widened by a tenth of
    the spread (TensorBoard's "ignore outliers in chart scaling"), so one loss spike of 10x
    does not flatten the rest of the curve. With ``log_y`` only positive values count.
    """
    finite = sorted(v for v in values if math.isfinite(v) and (v > 0 or not log_y))
    if not finite:
        return None
    if clip_outliers and len(finite) >= 20:
        lo, hi = quantile(finite, 0.02), quantile(finite, 0.98)
        pad = (hi - lo) * 0.1
        lo, hi = max(lo - pad, finite[0]), min(hi + pad, finite[-1])
    else:
        lo, hi = finite[0], finite[-1]
    if log_y:
        lo, hi = math.log10(lo), math.log10(hi)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    return lo, hi


def downsample_minmax(
    xs: Sequence[float], ys: Sequence[float], buckets: int
) -> tuple[list[float], list[float]]:
    """Reduce to about ``2 * buckets`` points, keeping each bucket's min and max (in x order).

    Min/max rather than averaging: a NaN-free spike must stay visible on a narrow chart.
    """
    n = len(xs)
    if buckets <= 0 or n <= 2 * buckets:
        return list(xs), list(ys)
    out_x: list[float] = []
    out_y: list[float] = []
    size = n / buckets
    for b in range(buckets):
        start = int(b * size)
        end = max(start + 1, int((b + 1) * size))
        idx = [i for i in range(start, min(end, n)) if math.isfinite(ys[i])]
        if not idx:
            continue
        i_min = min(idx, key=lambda i: ys[i])
        i_max = max(idx, key=lambda i: ys[i])
        for i in sorted({i_min, i_max}):
            out_x.append(xs[i])
            out_y.append(ys[i])
    return out_x, out_y


@dataclass
class Canvas:
    """A braille canvas: each terminal cell holds 2x4 dots; one colour index per cell."""

    width: int  # cells
    height: int  # cells

    def __post_init__(self) -> None:
        self.width = max(1, self.width)
        self.height = max(1, self.height)
        self._bits = [[0] * self.width for _ in range(self.height)]
        self._color: list[list[int | None]] = [[None] * self.width for _ in range(self.height)]

    @property
    def dots_x(self) -> int:
        return self.width * 2

    @property
    def dots_y(self) -> int:
        return self.height * 4

    def set(self, x: int, y: int, color: int) -> None:
        """Set dot (x, y); y = 0 is the top row. Out-of-range dots are dropped."""
        if 0 <= x < self.dots_x and 0 <= y < self.dots_y:
            cx, cy = x // 2, y // 4
            self._bits[cy][cx] |= _DOTS[y % 4][x % 2]
            self._color[cy][cx] = color

    def line(self, x0: int, y0: int, x1: int, y1: int, color: int) -> None:
        """Bresenham line between two dots.

        The dot setting is inlined (locals, no method call per dot): a chart redraw sets a
        few thousand dots and this loop was most of its cost.
        """
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx = 1 if x0 < x1 else -1
        sy = 1 if y0 < y1 else -1
        err = dx + dy
        bits, colors, dots = self._bits, self._color, _DOTS
        max_x, max_y = self.width * 2, self.height * 4
        for _ in range(max_x + max_y + 2):
            if 0 <= x0 < max_x and 0 <= y0 < max_y:
                cy = y0 >> 2
                cx = x0 >> 1
                bits[cy][cx] |= dots[y0 & 3][x0 & 1]
                colors[cy][cx] = color
            if x0 == x1 and y0 == y1:
                break
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def vline(self, x: int, color: int) -> None:
        """A dotted vertical marker (resume points)."""
        for y in range(0, self.dots_y, 2):
            self.set(x, y, color)

    def rows(self) -> list[list[tuple[str, int | None]]]:
        """Each row as (character, colour index or None) per cell."""
        out = []
        for cy in range(self.height):
            row = []
            for cx in range(self.width):
                bits = self._bits[cy][cx]
                row.append((chr(_BRAILLE_BASE + bits) if bits else " ", self._color[cy][cx]))
            out.append(row)
        return out

    def text(self) -> str:
        """Plain text rendering (tests, logs)."""
        return "\n".join("".join(ch for ch, _ in row) for row in self.rows())


@dataclass(frozen=True)
class Plot:
    """One series to draw: x and y values of equal length and a colour index."""

    xs: Sequence[float]
    ys: Sequence[float]
    color: int = 0
    connect: bool = True  # False: dots only (raw points under a smoothed curve)


def plot(
    canvas: Canvas,
    series: Sequence[Plot],
    *,
    x_bounds: tuple[float, float],
    y_bounds: tuple[float, float],
    log_y: bool = False,
    markers: Sequence[float] = (),
    marker_color: int = 9,
) -> None:
    """Draw series as connected lines scaled into the canvas; values outside clip to the edge.

    Non-finite values (NaN loss) break the line instead of crashing the scale.
    """
    x0, x1 = x_bounds
    y0, y1 = y_bounds
    span_x = (x1 - x0) or 1.0
    span_y = (y1 - y0) or 1.0
    max_x, max_y = canvas.dots_x - 1, canvas.dots_y - 1

    def to_dot(x: float, y: float) -> tuple[int, int] | None:
        if not (math.isfinite(x) and math.isfinite(y)):
            return None
        if log_y:
            if y <= 0:
                return None
            y = math.log10(y)
        px = round((x - x0) / span_x * max_x)
        py = max_y - round((y - y0) / span_y * max_y)
        return min(max(px, 0), max_x), min(max(py, 0), max_y)

    for m in markers:
        if x0 <= m <= x1:
            canvas.vline(round((m - x0) / span_x * max_x), marker_color)
    for s in series:
        prev: tuple[int, int] | None = None
        for x, y in zip(s.xs, s.ys):
            dot = to_dot(x, y)
            if dot is None:
                prev = None
                continue
            if prev is None or not s.connect:
                canvas.set(dot[0], dot[1], s.color)
            else:
                canvas.line(prev[0], prev[1], dot[0], dot[1], s.color)
            prev = dot
