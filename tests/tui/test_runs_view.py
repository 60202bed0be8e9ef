"""The runs view: rows from a real folder of runs, Enter opens, space + c compares, t trials."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static

from sdxl_tui.sources.runs import RunsWatcher
from sdxl_tui.tui.runs_app import RunsApp
from sdxl_tui.tui.runs_screens import CompareRunsScreen, PlanScreen, TrialsScreen
from sdxl_tui.tui.widgets.runs_table import RunsTable
from tests.helpers.runs_folder import build_runs_folder


@pytest.fixture(scope="module")
def luca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_runs_folder(tmp_path_factory.mktemp("runsview"))


def _app(luca: Path) -> RunsApp:
    return RunsApp(str(luca), watcher=RunsWatcher(luca, live_dirs=frozenset), interval=0)


async def _rows(pilot: object, app: RunsApp) -> None:
    for _ in range(200):
        if app.view is not None:
            return
        await pilot.pause(0.05)  # type: ignore[attr-defined]
    raise AssertionError("the runs view never showed a table")


async def test_rows_and_enter_opens_the_selected_run(luca: Path) -> None:
    app = _app(luca)
    async with app.run_test(size=(160, 40)) as pilot:
        await _rows(pilot, app)
        table = app.query_one(RunsTable)
        assert table.row_count == 3
        keys = [str(k.value) for k in table.rows]
        assert {Path(k).name for k in keys} == {"sdxl_v1", "sdxl_v2", "optimization_overnight"}
        table.move_cursor(row=keys.index(str(luca / "sdxl_v1")))
        await pilot.pause()
        assert "sdxl_v1: finished" in str(app.query_one("#runs-detail", Static).render())
        await pilot.press("enter")
        await pilot.pause()
    assert app.return_value == ("open", str(luca / "sdxl_v1"))


async def test_idle_refresh_writes_no_cells(luca: Path) -> None:
    app = _app(luca)
    async with app.run_test(size=(120, 30)) as pilot:
        await _rows(pilot, app)
        view = app.watcher.refresh()
        table = app.query_one(RunsTable)
        rows = [(r.run_dir, table._cells[r.run_dir]) for r in view.rows]
        assert view.reread == 0 and table.show(rows) == 0


async def test_mark_two_and_compare(luca: Path) -> None:
    app = _app(luca)
    async with app.run_test(size=(160, 48)) as pilot:
        await _rows(pilot, app)
        table = app.query_one(RunsTable)
        keys = [str(k.value) for k in table.rows]
        for name in ("sdxl_v1", "sdxl_v2"):
            table.move_cursor(row=keys.index(str(luca / name)))
            await pilot.press("space")
        await pilot.press("c")
        screen = app.screen
        assert isinstance(screen, CompareRunsScreen)
        for _ in range(200):
            text = str(screen.query_one("#compare-runs-body", Static).render())
            if "loss by step" in text:
                break
            await pilot.pause(0.05)
        assert "output_name" in text and "● sdxl_v1" in text and "◆ sdxl_v2" in text
        await pilot.press("a")
        for _ in range(200):
            text = str(screen.query_one("#compare-runs-body", Static).render())
            if "loss by epoch" in text:
                break
            await pilot.pause(0.05)
        assert "loss by epoch" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, CompareRunsScreen)


async def test_trials_screen_marks_the_best_and_shows_the_plan_line(luca: Path) -> None:
    app = _app(luca)
    async with app.run_test(size=(160, 40)) as pilot:
        await _rows(pilot, app)
        table = app.query_one(RunsTable)
        keys = [str(k.value) for k in table.rows]
        table.move_cursor(row=keys.index(str(luca / "optimization_overnight")))
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, TrialsScreen)
        assert "CONVERGENCE_ALERT.txt: Convergence reached" in str(screen.query_one("#trials-head", Static).render())
        assert screen.query_one(DataTable).row_count == 6
        await pilot.press("b", "p")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, PlanScreen)
        assert dialog.trial_path == str(luca / "optimization_overnight" / "trial_0025")
        assert dialog.query_one("#plan-out", Input).value == str(luca / "sdxl_v3")  # sdxl_v1, v2 exist
        dialog.query_one("#plan-dataset", Input).value = str(luca / "missing_dataset.toml")
        dialog.query_one("#plan-base", Input).value = str(luca / "sd_xl_base_1.0.safetensors")
        dialog.query_one("#plan-dataset", Input).focus()
        await pilot.press("enter")
        text = ""
        for _ in range(400):  # the real CLI runs in a worker
            text = str(dialog.query_one("#plan-output", Static).render())
            if "(exit" in text:
                break
            await pilot.pause(0.05)
        assert "sdxl-tui plan --from" in text and "trial_0025" in text and "(exit 2)" in text
        assert "missing_dataset.toml" in text and "Traceback" not in text


async def test_a_convergence_alert_that_appears_is_announced(tmp_path: Path) -> None:
    import shutil

    from tests.helpers.runs_folder import FIXTURE_TRIALS

    folder = tmp_path / "optimization_overnight"
    shutil.copytree(FIXTURE_TRIALS, folder)
    (folder / "CONVERGENCE_ALERT.txt").unlink()
    app = RunsApp(str(tmp_path), watcher=RunsWatcher(tmp_path, live_dirs=frozenset), interval=0)
    async with app.run_test(size=(120, 30)) as pilot:
        await _rows(pilot, app)
        assert app.notices == []
        (folder / "CONVERGENCE_ALERT.txt").write_text("Convergence reached after 31 trials\n")
        await pilot.press("r")
        for _ in range(200):
            if app.notices:
                break
            await pilot.pause(0.05)
        assert app.notices == ["optimization_overnight: convergence: Convergence reached after 31 trials"]


async def test_escape_in_the_dashboard_goes_back_unless_a_log_search_is_open() -> None:
    """The dashboard opened from the runs view quits on Escape (back to the runs view); an
    open log search takes the first Escape."""
    from fakes.fake_nvml import FakeNVML
    from stub_reader import StubReader, snapshot
    from tui_helpers import settings, wait_for

    from sdxl_tui.commands.runs_tui import back_keymap
    from sdxl_tui.sources.gpu import GpuMonitor
    from sdxl_tui.tui.app import make_app

    app = make_app(back_keymap(settings()), "/runs/luca/sdxl_v1", reader=StubReader([snapshot(lines=0)]),
                   gpu=GpuMonitor(nvml=FakeNVML([])), watch=False, environ={})
    async with app.run_test(size=(100, 30)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("slash")
        await pilot.pause()
        search = app.query_one("#log-search", Input)
        assert search.display
        await pilot.press("escape")
        await pilot.pause()
        assert not search.display and app.is_running  # the search closed, the dashboard stays
        await pilot.press("escape")
        await pilot.pause()
    assert app.return_value == 0  # quit ran (leaving run_test alone would leave None)


async def test_R_writes_the_selected_runs_report(tmp_path: Path) -> None:
    luca = build_runs_folder(tmp_path)
    app = _app(luca)
    async with app.run_test(size=(160, 40)) as pilot:
        await _rows(pilot, app)
        table = app.query_one(RunsTable)
        keys = [str(k.value) for k in table.rows]
        table.move_cursor(row=keys.index(str(luca / "sdxl_v2")))
        await pilot.press("R")
        for _ in range(600):
            if app.notices:
                break
            await pilot.pause(0.05)
    report = luca / "sdxl_v2" / ".sdxl-tui" / "report.html"
    assert len(app.notices) == 1 and app.notices[0].startswith(f"sdxl_v2: report written: {report}")
    assert report.is_file() and "CUDA out of memory" in report.read_text()


async def test_trials_compare_the_best_three_by_default(tmp_path: Path) -> None:
    from sdxl_tui.sim.folders import build_demo_folder

    luca = build_demo_folder(tmp_path, trials=4)
    app = RunsApp(str(luca), watcher=RunsWatcher(luca, live_dirs=frozenset), interval=0)
    async with app.run_test(size=(160, 48)) as pilot:
        await _rows(pilot, app)
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, TrialsScreen)
        await pilot.press("c")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CompareRunsScreen)
        opt = luca / "optimization_overnight"
        assert screen.paths == [str(opt / "trial_0003"), str(opt / "trial_0002"), str(opt / "trial_0004")]


async def test_a_key_on_a_row_opens_its_dashboard_with_that_key(luca: Path) -> None:
    """k, x and e act on the selected run: its dashboard opens and runs the key once the run is
    read (its own dialog asks, as if pressed there)."""
    from tui_helpers import settings, wait_for

    from sdxl_tui.commands.demo import with_simulated_evaluator
    from sdxl_tui.tui.app import make_app
    from sdxl_tui.tui.screens.confirm import ConfirmScreen

    app = _app(luca)
    async with app.run_test(size=(160, 40)) as pilot:
        await _rows(pilot, app)
        table = app.query_one(RunsTable)
        keys = [str(k.value) for k in table.rows]
        table.move_cursor(row=keys.index(str(luca / "sdxl_v1")))
        await pilot.pause()
        await pilot.press("e")
        for _ in range(200):  # the exit is processed on the app's loop (slow on a loaded machine)
            if app.return_value is not None:
                break
            await pilot.pause(0.05)
    assert app.return_value == ("open", str(luca / "sdxl_v1"), "evaluate_checkpoint")
    dashboard = make_app(with_simulated_evaluator(settings()), str(luca / "sdxl_v1"), gpu=False, environ={})
    dashboard.initial_action = "evaluate_checkpoint"
    async with dashboard.run_test(size=(140, 45)) as pilot:
        assert await wait_for(pilot, lambda: isinstance(dashboard.screen, ConfirmScreen), timeout=30)
