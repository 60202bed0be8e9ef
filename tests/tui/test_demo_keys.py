"""Every key of the footer and of `?`, pressed in the demo's setup (the simulated trainer and
the simulated evaluator, no GPU, no model), each with a real outcome: files written, screens
shown, the trainer untouched. Issue 15: "the demo shows every key working"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from screen_text import screen_text
from textual.widgets import TabbedContent
from tui_helpers import LiveSims, settings, wait_for

from sdxl_tui.commands.demo import with_simulated_evaluator
from sdxl_tui.control.evaluate import eval_record
from sdxl_tui.tui.actions import images_for
from sdxl_tui.tui.app import SdxlTuiApp, make_app
from sdxl_tui.tui.screens.chart import ChartScreen
from sdxl_tui.tui.screens.compare import CompareScreen
from sdxl_tui.tui.screens.confirm import ConfirmScreen
from sdxl_tui.tui.screens.help import HelpScreen
from sdxl_tui.tui.screens.images import ImageScreen
from sdxl_tui.tui.widgets.log_view import LogView

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def private_gpu_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))


def demo_app(run_dir: Path) -> SdxlTuiApp:
    return make_app(with_simulated_evaluator(settings()), run_dir, gpu=False, environ={})


def messages(app: SdxlTuiApp) -> list[str]:
    return [n.message for n in app._notifications]


async def test_every_key_on_a_finished_demo_run(finished_run: Path, tmp_path: Path, procs: object) -> None:
    run = tmp_path / "luca_sdxl_v1"
    shutil.copytree(finished_run, run)
    procs.watch_dir(run)  # type: ignore[attr-defined]
    app = demo_app(run)
    async with app.run_test(size=(140, 45)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None and len(app.snapshot.checkpoints) == 2)
        # e: evaluate the selected (newest) checkpoint with the simulated evaluator
        await pilot.press("e")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=30), messages(app)
        assert "sdxl_tui.sim.evaluator" in screen_text(app)
        await pilot.click("#now")
        name = Path(app.selected_checkpoint or "").name
        assert await wait_for(pilot, lambda: (r := eval_record(str(run), name)) is not None and r.status == "done",
                              timeout=90), messages(app)
        folder = Path(eval_record(str(run), name).output_dir)  # type: ignore[union-attr]
        assert (folder / "contact_sheet.png").is_file() and (folder / "manifest.json").is_file()
        assert len(list(folder.glob("0*_*.png"))) == 4
        # i: its images, in the terminal
        assert await wait_for(pilot, lambda: app.snapshot is not None and any(
            e.status == "done" and e.images for e in app.snapshot.evaluations), timeout=30), app.snapshot.evaluations
        assert await wait_for(pilot, lambda: app.check_action("show_images", ()) is True, timeout=30)
        # the dashboard has read the finished evaluation's images (its next refresh after the runner ended)
        assert await wait_for(pilot, lambda: bool(images_for(app.snapshot, app.selected_checkpoint or "")), timeout=30)
        await pilot.press("i")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ImageScreen))
        assert await wait_for(pilot, lambda: "▀" in screen_text(app), timeout=15), screen_text(app)
        await pilot.press("escape")
        # g: the comparison grid over both checkpoints (the final one is in the epoch range)
        await pilot.press("g")
        assert await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ImageScreen), timeout=120), messages(app)
        assert list(run.glob("compare_*.png"))
        await pilot.press("escape")
        # c: the chart; a: the alerts; /: the search; ?: the help; R: the report
        await pilot.press("c")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ChartScreen))
        await pilot.press("escape")
        await pilot.press("a")
        assert await wait_for(pilot, lambda: app.query_one(TabbedContent).active == "tab-alerts")
        assert await wait_for(pilot, lambda: "training finished" in screen_text(app))
        await pilot.press("a")
        await pilot.press("slash")
        for ch in "epoch":
            await pilot.press(ch)
        await pilot.press("enter")
        view = app.query_one(LogView)
        assert await wait_for(pilot, lambda: app.focused is view and view.match_index is not None)
        await pilot.press("question_mark")
        assert await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        await pilot.press("R")
        assert await wait_for(pilot, lambda: any(m.startswith("report written:") for m in messages(app)), timeout=60)
        # s: no launch config in a demo run: said so, nothing started
        await pilot.press("s")
        assert await wait_for(pilot, lambda: any("launch config" in m or "not now" in m for m in messages(app)))
        # k and x need a live trainer: greyed out and said so
        await pilot.press("k")
        assert await wait_for(pilot, lambda: any("no live trainer" in m for m in messages(app)))
        await pilot.press("q")
    assert app.return_code in (0, None)


async def test_kill_and_stop_keys_on_a_live_demo_run(live_sims: LiveSims) -> None:
    from sdxl_tui.sim import demo_args

    args = [*demo_args(live_sims.root / "demo"), "--sim-step-seconds", "0.2", "--sim-startup-seconds", "0"]
    run_dir, proc = live_sims.start("demo", args)
    app = demo_app(run_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.trainer_alive, timeout=60)
        # k: the dialog names the trainer's pid; enter is Cancel (said under the buttons)
        await pilot.press("k")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=30), messages(app)
        assert str(proc.pid) in screen_text(app) or "PID" in screen_text(app)
        assert "enter: Cancel (the default)" in screen_text(app)
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        assert proc.poll() is None
        # x: arm the stop after the next checkpoint: the header says so; x again cancels it
        await pilot.press("x")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=30)
        await pilot.click("#arm")
        assert await wait_for(pilot, lambda: "stopping after" in screen_text(app).splitlines()[0], timeout=30), \
            messages(app)
        await pilot.press("x")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=30)
        await pilot.click("#disarm")
        assert await wait_for(pilot, lambda: "stopping after" not in screen_text(app).splitlines()[0], timeout=30)
        await pilot.press("q")
    assert proc.poll() is None  # quitting never touches the training
