"""Min/max downsampling of scalar series: which points survive when a series is thinned.

Why its own module: the event reader keeps a bounded set of display points per tag for runs
of millions of scalars; each bucket keeps its minimum and its maximum (in their original
order), so spikes survive and a NaN (ranked as an extreme) is never thinned away, which is
the point of a NaN alert. ``charting.downsample_minmax`` is the chart's own thinning to its
width (finite values only, for drawing); this is the reader's, over the data.
"""

from __future__ import annotations

from collections.abc import Sequence

from sdxl_tui.model import ScalarPoint

__all__ = ["downsample_minmax", "select_minmax"]

def _key(v: float, high: bool = False) -> float:
    # NaN must survive downsampling (it is the point of a NaN alert): rank it as an extreme.
    if v != v:
        return float("inf") if high else float("-inf")
    return v


def select_minmax(vals: Sequence[float], start: int, end: int, group: int) -> list[int]:
    """Indices (ascending) of the min and the max of each run of ``group`` values in
    ``vals[start:end]`` (the last run may be shorter): what ``downsample_minmax`` keeps.

    The first index of an extreme wins ties; NaN ranks as an extreme (it is the point of a
    NaN alert). Without NaN the work is C-level: the runs as tuples, ``min``/``max`` and
    ``tuple.index`` mapped over them.
    """
    out: list[int] = []
    if end <= start:
        return out
    chunk = vals[start:end]
    total = sum(chunk)
    if total == total:
        whole = (end - start) // group * group
        groups: list[tuple[float, ...]] = list(zip(*[iter(chunk)] * group, strict=False)) if group > 1 else []
        if group > 1:
            if whole < len(chunk):
                groups.append(tuple(chunk[whole:]))
            los = map(tuple.index, groups, map(min, groups))
            his = map(tuple.index, groups, map(max, groups))
            base = start
            append = out.append
            for lo, hi in zip(los, his, strict=False):
                if lo == hi:
                    append(base + lo)
                elif lo < hi:
                    append(base + lo)
                    append(base + hi)
                else:
                    append(base + hi)
                    append(base + lo)
                base += group
            return out
        return list(range(start, end))
    for i in range(start, end, group):
        j = min(end, i + group)
        lo = min(range(i, j), key=lambda k: _key(vals[k]))
        hi = max(range(i, j), key=lambda k: _key(vals[k], high=True))
        if lo == hi:
            out.append(lo)
        else:
            out.extend((lo, hi) if lo < hi else (hi, lo))
    return out


def downsample_minmax(points: Sequence[ScalarPoint], group: int) -> list[ScalarPoint]:
    """Keep the min and the max (in their original order) of each run of ``group`` points."""
    return [points[i] for i in select_minmax([p.value for p in points], 0, len(points), group)]
