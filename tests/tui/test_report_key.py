"""Key ``R`` (binding id ``morning-report``): the dashboard writes the morning report in a worker
thread and says where, on a real finished simulated run."""

from __future__ import annotations

from pathlib import Path

from tui_helpers import make_finished_run, settings, wait_for

from sdxl_tui.tui.app import make_app
from tests.helpers.html_check import check_html


async def test_report_key_writes_the_report_and_names_the_file(tmp_path: Path) -> None:
    run = make_finished_run(tmp_path)
    app = make_app(settings(), run, gpu=False, watch=False, environ={})
    target = run / ".sdxl-tui" / "report.html"
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        assert any(row[2] == "morning-report" and row[0] == "R" for row in app.help_rows())
        await pilot.press("R")
        assert await wait_for(pilot, lambda: any(n.message.startswith("report written:") for n in app._notifications),
                              timeout=60), [n.message for n in app._notifications]
        assert any(n.message == f"report written: {target}" for n in app._notifications)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "run: morning report" in titles
    parser = check_html(target.read_text())
    assert parser.title == "luca_sdxl_v1: finished - sdxl-tui report"
