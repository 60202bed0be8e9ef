"""``sources/minmax.py`` against a plain reference: per run of ``group`` values, the first
minimum and the first maximum in their original order, NaN ranked as an extreme."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from sdxl_tui.model import ScalarPoint
from sdxl_tui.sources.minmax import downsample_minmax, select_minmax


def reference(vals: list[float], group: int) -> list[int]:
    out: list[int] = []
    for i in range(0, len(vals), group):
        idx = range(i, min(len(vals), i + group))
        lo = min(idx, key=lambda k: -math.inf if math.isnan(vals[k]) else vals[k])
        hi = max(idx, key=lambda k: math.inf if math.isnan(vals[k]) else vals[k])
        out.extend(sorted({lo, hi}))
    return out


LOADED = settings(deadline=None)  # a loaded 2-core machine: no per-example deadline


@LOADED
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=300), st.integers(1, 40))
def test_select_minmax_equals_the_reference(vals: list[float], group: int) -> None:
    assert select_minmax(vals, 0, len(vals), group) == reference(vals, group)


@LOADED
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=300), st.integers(1, 40),
       st.data())
def test_a_window_is_the_reference_shifted(vals: list[float], group: int, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(vals)))
    end = data.draw(st.integers(start, len(vals)))
    assert select_minmax(vals, start, end, group) == [start + i for i in reference(vals[start:end], group)]


def test_downsample_keeps_spikes_and_nan() -> None:
    vals = [1.0, 2.0, 9.0, 2.0, 1.0, float("nan"), 0.5, 1.0]
    pts = [ScalarPoint(i, v, float(i)) for i, v in enumerate(vals)]
    kept = downsample_minmax(pts, 4)
    assert [p.step for p in kept] == [0, 2, 5] == reference(vals, 4)  # NaN is both extremes of its run
    assert any(math.isnan(p.value) for p in kept) and any(p.value == 9.0 for p in kept)
