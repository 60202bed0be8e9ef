"""Keys as issue 15 asked: search hands focus back so n / N step through matches, `a` opens
the Alerts, `?` lists the log's and the chart's keys (from their bindings), the header shows
a pending stop-after-checkpoint, dialogs say what Enter does, and the chart's smoothed value
follows the smoothing."""

from __future__ import annotations

import re

from screen_text import screen_text
from stub_reader import StubReader, oom_alert, snapshot
from textual.widgets import Input, TabbedContent
from tui_helpers import settings, wait_for

from sdxl_tui.model import LogLine
from sdxl_tui.tui.app import SdxlTuiApp, make_app
from sdxl_tui.tui.screens.chart import ChartScreen
from sdxl_tui.tui.screens.confirm import ConfirmScreen
from sdxl_tui.tui.screens.help import HelpScreen
from sdxl_tui.tui.widgets.log_view import LogPane, LogView


def app_for(reader: StubReader) -> SdxlTuiApp:
    return make_app(settings(), "/runs/luca/sdxl_v1", reader=reader, gpu=False, watch=False, environ={})


def with_matches() -> StubReader:
    snap = snapshot(alerts=[oom_alert()])
    lines = tuple(LogLine(i, f"steps: {i}% avr_loss=0.{i:03d}" if i % 10 == 0 else f"line {i}") for i in range(60))
    return StubReader([snap.__class__(**{**{f: getattr(snap, f) for f in snap.__dataclass_fields__},
                                           "log_lines": lines, "log_line_count": 60})])


async def test_search_runs_on_enter_and_gives_focus_back_for_n_and_shift_n() -> None:
    app = app_for(with_matches())
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("slash")
        box = app.query_one("#log-search", Input)
        assert app.focused is box
        for ch in "avr_loss":
            await pilot.press(ch)
        await pilot.press("enter")
        view = app.query_one(LogView)
        assert await wait_for(pilot, lambda: app.focused is view)
        first = view.match_index
        assert first is not None and "avr_loss" in view.lines[first].text
        await pilot.press("n")  # older match
        assert await wait_for(pilot, lambda: view.match_index is not None and view.match_index < first)
        older = view.match_index
        await pilot.press("N")  # newer again
        assert await wait_for(pilot, lambda: view.match_index is not None and view.match_index > (older or 0))
        assert box.value == "avr_loss"  # n and N did not go into the query


async def test_a_toggles_the_alerts_tab_and_the_footer_shows_it() -> None:
    app = app_for(StubReader([snapshot(alerts=[oom_alert()])]))
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        assert await wait_for(pilot, lambda: "a Alerts" in screen_text(app))  # in the footer
        await pilot.press("a")
        tabs = app.query_one(TabbedContent)
        assert await wait_for(pilot, lambda: tabs.active == "tab-alerts")
        assert await wait_for(pilot, lambda: "CUDA out of memory at step 601" in screen_text(app))
        await pilot.press("a")
        assert await wait_for(pilot, lambda: tabs.active == "tab-log")


async def test_help_lists_the_log_and_chart_keys_from_their_bindings() -> None:
    app = app_for(StubReader([snapshot()]))
    async with app.run_test(size=(120, 60)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("question_mark")
        assert await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause(0.2)
        text = screen_text(app)
        for binding in [*LogView.BINDINGS, *LogPane.BINDINGS, *ChartScreen.BINDINGS]:
            assert binding.id and binding.id in text, binding.id  # type: ignore[union-attr]
        assert "show-alerts" in text and "log: Older match" in text
        assert re.search(r"\[\s+chart \(c\): Smooth -", text)


async def test_header_shows_a_pending_stop_until_it_is_cancelled() -> None:
    app = app_for(StubReader([snapshot()]))
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        assert "stopping after" not in screen_text(app).splitlines()[0]
        app.stop_armed = True  # what arming does once the watcher runs
        assert await wait_for(pilot, lambda: "stopping after -000006" in screen_text(app).splitlines()[0])
        app.stop_armed = False
        assert await wait_for(pilot, lambda: "stopping after" not in screen_text(app).splitlines()[0])


async def test_a_dialog_says_what_enter_does_and_enter_cancels() -> None:
    app = app_for(StubReader([snapshot()]))
    results: list[str | None] = []
    async with app.run_test(size=(100, 30)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        buttons = [("kill", "Kill 3 processes", "error"), ("cancel", "Cancel", "default")]
        app.push_screen(ConfirmScreen("Kill the training?", "pid 4242", buttons), results.append)
        assert await wait_for(pilot, lambda: "enter: Cancel (the default)" in screen_text(app))
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: results == [None])


async def test_the_charts_smoothed_value_follows_the_smoothing() -> None:
    app = app_for(StubReader([snapshot()]))
    async with app.run_test(size=(140, 45)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("c")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ChartScreen))

        def smoothed() -> str | None:
            m = re.search(r"\(smoothed ([0-9.e-]+) at ([0-9.]+)\)", screen_text(app))
            return None if m is None else f"{m.group(1)}@{m.group(2)}"

        assert await wait_for(pilot, lambda: smoothed() is not None)
        before = smoothed()
        for _ in range(6):
            await pilot.press("right_square_bracket")
        assert await wait_for(pilot, lambda: smoothed() is not None and smoothed() != before)
        value_before, value_after = (s.split("@")[0] for s in (before or "", smoothed() or ""))
        assert value_before != value_after


def test_readme_key_table_and_tui_help_agree_with_the_bindings() -> None:
    from pathlib import Path

    from sdxl_tui.commands.tui import KEYS
    from sdxl_tui.tui.bindings import APP_BINDINGS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = dict(re.findall(r"^\| `([^`]+)` \| `([a-z-]+)` \|", readme, re.M))
    shown = {"slash": "/", "question_mark": "?"}
    bound = {shown.get(b.key, b.key): b.id for b in APP_BINDINGS}
    assert table == bound
    for binding in APP_BINDINGS:
        assert f"[{binding.id}]" in KEYS, binding.id


async def test_a_missing_directory_says_it_waits_for_it(tmp_path: object) -> None:
    from pathlib import Path

    missing = Path(str(tmp_path)) / "not-yet"
    app = make_app(settings(), missing, gpu=False, watch=False, environ={})
    async with app.run_test(size=(120, 30)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        app.clear_notifications()
        await pilot.pause(0.2)
        # the state on the first line; a verdict too long for it wraps onto the next lines
        header = " ".join(" ".join(screen_text(app).splitlines()[:4]).split())
        assert "MISSING" in header and "waiting for it to be created (q quits)" in header, header
