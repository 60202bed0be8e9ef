"""Bounded scalar series: exact last value and count, min/max-preserving display points.

Why its own module: the event reader keeps one accumulator per tag for runs of millions of
scalars; memory stays bounded because display points are downsampled (keeping each bucket's
minimum and maximum, so spikes survive) while ``last`` and ``count`` stay exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from sdxl_tui.model import ScalarPoint, Series
from sdxl_tui.sources.minmax import downsample_minmax, select_minmax

__all__ = ["SeriesAccumulator", "build_points", "columns_of", "downsample_minmax", "points_of"]


def _make_points_builder() -> Callable[[Iterable[int], Iterable[float], Iterable[float]], list[ScalarPoint]]:
    """A function building ``ScalarPoint`` objects from columns, faster than the constructor.

    Why: a cold read ends by building ~16,000 display points, and the frozen dataclass's
    ``__init__`` goes through ``object.__setattr__`` three times per point. Setting the three
    slots through their descriptors does exactly what that ``__init__`` does, in about 60%
    of the time. Used only while ``ScalarPoint`` is the plain three-field slotted dataclass
    it is today (checked here); anything else falls back to the constructor.
    """
    import dataclasses

    def plain(steps: Iterable[int], values: Iterable[float], walls: Iterable[float]) -> list[ScalarPoint]:
        return list(map(ScalarPoint, steps, values, walls))

    try:
        names = [f.name for f in dataclasses.fields(ScalarPoint)]
        slots = getattr(ScalarPoint, "__slots__", ())
        if names != ["step", "value", "wall_time"] or tuple(slots) != ("step", "value", "wall_time"):
            return plain
        new = ScalarPoint.__new__
        members = vars(ScalarPoint)  # the slots' member descriptors
        set_step = members["step"].__set__
        set_value = members["value"].__set__
        set_wall = members["wall_time"].__set__
    except (AttributeError, TypeError):  # pragma: no cover - a changed model
        return plain

    def fast(steps: Iterable[int], values: Iterable[float], walls: Iterable[float]) -> list[ScalarPoint]:
        out: list[ScalarPoint] = []
        append = out.append
        cls = ScalarPoint
        for s, v, w in zip(steps, values, walls, strict=False):
            p = new(cls)
            set_step(p, s)
            set_value(p, v)
            set_wall(p, w)
            append(p)
        return out

    return fast


build_points = _make_points_builder()


class SeriesAccumulator:
    """One tag's series: exact count/last, bounded display points.

    The display points are kept as columns (steps, values, wall times) and turned into
    ``ScalarPoint`` objects only when a ``Series`` is built, once per kept point (a prefix
    cache, rebuilt after a compaction), so points that later compactions drop are never
    built at all.
    """

    __slots__ = (
        "compacted",
        "count",
        "dirty",
        "kept",
        "last",
        "max_points",
        "new_cols",
        "new_n",
        "pend",
        "plugin",
        "pts",
        "tag",
        "width",
    )

    def __init__(self, tag: str, max_points: int) -> None:
        self.tag = tag
        self.max_points = max(8, max_points)
        self.count = 0
        self.last: ScalarPoint | None = None
        self.width = 1  # raw points per bucket
        # bucketed (min/max) points and the raw points of the open bucket, as columns
        self.kept: tuple[list[int], list[float], list[float]] = ([], [], [])
        self.pend: tuple[list[int], list[float], list[float]] = ([], [], [])
        self.pts: list[ScalarPoint] = []  # ScalarPoints of the first len(pts) kept points
        self.dirty = False
        self.compacted = False
        # the raw columns of this refresh's newest points (at most max_points in all); turned
        # into ScalarPoint objects only if a consumer asks for them (see _NewPoints)
        self.new_cols: list[tuple[Sequence[int], Sequence[float], Sequence[float]]] = []
        self.new_n = 0
        self.plugin: str | None = None

    def take_new(self) -> list[tuple[Sequence[int], Sequence[float], Sequence[float]]]:
        """This refresh's newest raw columns (bounded); forgets them."""
        cols = self.new_cols
        self.new_cols = []
        self.new_n = 0
        return cols

    def _keep(self, steps: Sequence[int], values: Sequence[float], walls: Sequence[float],
              idx: list[int]) -> None:
        ks, kv, kw = self.kept
        ks.extend(map(steps.__getitem__, idx))
        kv.extend(map(values.__getitem__, idx))
        kw.extend(map(walls.__getitem__, idx))

    def add_arrays(self, steps: Sequence[int], values: Sequence[float], walls: Sequence[float]) -> None:
        n = len(steps)
        if not n:
            return
        self.count += n
        self.dirty = True
        mp = self.max_points
        # newest raw points: keep references to (the tails of) the columns, never more than
        # max_points in all (the columns are never changed after they are handed over)
        if n > mp:
            steps_t, values_t, walls_t = steps[n - mp :], values[n - mp :], walls[n - mp :]
        else:
            steps_t, values_t, walls_t = steps, values, walls
        cols = self.new_cols
        cols.append((steps_t, values_t, walls_t))
        self.new_n += len(steps_t)
        while self.new_n - len(cols[0][0]) >= mp:
            self.new_n -= len(cols.pop(0)[0])
        # Widen the buckets first so a big batch never materialises more than the budget:
        # afterwards every bucket this batch completes fits (<= 2 points each), so no
        # compaction is needed midway.
        while len(self.kept[0]) + 2 * (len(self.pend[0]) + n) // self.width > mp:
            self._compact()
        width = self.width
        ps, pv, pw = self.pend
        i = 0
        if ps:  # fill the open bucket first
            i = min(n, width - len(ps))
            ps.extend(steps[:i])
            pv.extend(values[:i])
            pw.extend(walls[:i])
            if len(ps) >= width:
                self._keep(ps, pv, pw, select_minmax(pv, 0, len(pv), width))
                self.pend = ([], [], [])
        end = i + (n - i) // width * width  # whole buckets inside the arrays
        if end > i:
            self._keep(steps, values, walls, select_minmax(values, i, end, width))
        if end < n:
            ps, pv, pw = self.pend
            ps.extend(steps[end:])
            pv.extend(values[end:])
            pw.extend(walls[end:])
        if len(self.kept[0]) > mp:  # pragma: no cover - guarded by the widening above
            self._compact()
        self.last = ScalarPoint(steps[n - 1], values[n - 1], walls[n - 1])

    def _compact(self) -> None:
        """Halve the display points: min/max of each 4 kept points, buckets twice as wide."""
        ks, kv, kw = self.kept
        idx = select_minmax(kv, 0, len(kv), 4)
        self.kept = ([], [], [])
        self._keep(ks, kv, kw, idx)
        self.pts = []
        self.width *= 2
        self.compacted = True

    def points(self) -> list[ScalarPoint]:
        """The display points: kept (built once each), then the open bucket's raw points."""
        ks, kv, kw = self.kept
        pts = self.pts
        done = len(pts)
        if done < len(ks):
            pts.extend(build_points(ks[done:], kv[done:], kw[done:]))
        ps, pv, pw = self.pend
        return pts + build_points(ps, pv, pw)

    def series(self, source: str) -> Series:
        pts = self.points()
        last = self.last
        if last is not None and (
            not pts or (pts[-1].step, pts[-1].wall_time) != (last.step, last.wall_time)
        ):
            pts.append(last)
        return Series(self.tag, tuple(pts), self.count, self.last, source)


def columns_of(points: Sequence[ScalarPoint]) -> tuple[list[int], list[float], list[float]]:
    return [p.step for p in points], [p.value for p in points], [p.wall_time for p in points]


def points_of(cols: tuple[list[int], list[float], list[float]]) -> list[ScalarPoint]:
    return list(map(ScalarPoint, *cols))
