"""The loss chart of a resumed run: the discarded branch (steps a later launch redid) is drawn
dim and named in the legend; the header says where the run went on."""

from __future__ import annotations

import asyncio
from types import MappingProxyType

from textual.app import App, ComposeResult

from sdxl_tui.model import Launch, RunSnapshot, RunState, ScalarPoint, Series
from sdxl_tui.tui.widgets.loss_chart import COLORS, DISCARDED_COLOR, LossChart
from sdxl_tui.tui.widgets.progress import header_text


def _series(tag: str, steps: range, base: float) -> Series:
    pts = tuple(ScalarPoint(s, base - s / 100, float(s)) for s in steps)
    return Series(tag, pts, len(pts), pts[-1])


def _snapshot(discarded: bool) -> RunSnapshot:
    gone = {"loss/average": _series("loss/average", range(4, 10), 0.2)} if discarded else {}
    return RunSnapshot(
        run_dir="/o", taken_at=0.0, state=RunState.FINISHED,
        series=MappingProxyType({"loss/average": _series("loss/average", range(1, 10), 0.15)}),
        resume_steps=(3,), discarded=MappingProxyType(gone),
        launches=(Launch(0, discarded_after=3), Launch(1, resumed_from="/o/rs-000001-state", resume_step=3,
                                                       offset=3)),
    )


class _Chart(App[None]):
    def compose(self) -> ComposeResult:
        yield LossChart(full=True)


def _render(snap: RunSnapshot) -> tuple[str, set[str]]:
    async def go() -> tuple[str, set[str]]:
        app = _Chart()
        async with app.run_test(size=(90, 16)) as pilot:
            chart = app.query_one(LossChart)
            chart.snapshot = snap
            await pilot.pause()
            text = chart.render()
            return text.plain, {str(s.style) for s in text.spans}

    return asyncio.run(go())


def test_the_discarded_branch_is_drawn_dim_and_named() -> None:
    plain, styles = _render(_snapshot(discarded=True))
    assert "discarded (redone after a resume)" in plain and COLORS[DISCARDED_COLOR] in styles
    plain, styles = _render(_snapshot(discarded=False))
    assert "discarded" not in plain and COLORS[DISCARDED_COLOR] not in styles


def test_the_header_says_where_the_run_went_on() -> None:
    assert "resumed at step 3" in header_text(_snapshot(discarded=True)).plain
