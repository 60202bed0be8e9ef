"""Snapshot tests of the dashboard at 80x24 and 160x48 (frozen time, stored run, fake GPU).

Review the report before ``--snapshot-update``: ``pytest tests/snapshots`` writes
``snapshot_report.html`` when a frame differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fakes.fake_nvml import FakeDevice, FakeNVML
from make_fixture import FROZEN

from sdxl_tui.config import Settings
from sdxl_tui.sources.gpu import GpuMonitor
from sdxl_tui.tui.app import SdxlTuiApp, make_app


def build(run_dir: Path) -> SdxlTuiApp:
    settings = Settings().replace(refresh__gpu_interval=1e9, refresh__log_interval=0.1)
    nvml = FakeNVML([FakeDevice(name="NVIDIA GeForce RTX 4090")])
    return make_app(settings, run_dir, gpu=GpuMonitor(nvml=nvml), clock=lambda: FROZEN, watch=False, environ={})


async def loaded(pilot: Any) -> None:
    app = pilot.app
    for _ in range(200):
        snap = app.snapshot
        if snap is not None and snap.checkpoints and snap.series:
            break
        await pilot.pause(0.05)
    app.clear_notifications()  # toasts time out on the wall clock
    app.feeds.stop()  # no more heartbeats: the frame no longer depends on timing
    await pilot.pause(0.3)
    from sdxl_tui.tui.widgets.checkpoints import CheckpointTable

    table = app.query_one(CheckpointTable)
    table.notify_style_update()  # re-render rows drawn after cell updates as whole spans
    await pilot.pause(0.1)
    await pilot.wait_for_scheduled_animations()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_dashboard(snap_compare: Any, snapshot_run: Path, size: tuple[int, int]) -> None:
    assert snap_compare(build(snapshot_run), terminal_size=size, run_before=loaded)


def test_chart_view(snap_compare: Any, snapshot_run: Path) -> None:
    async def chart(pilot: Any) -> None:
        await loaded(pilot)
        await pilot.press("c")
        await pilot.pause(0.3)

    assert snap_compare(build(snapshot_run), terminal_size=(160, 48), run_before=chart)


def test_help_screen(snap_compare: Any, snapshot_run: Path) -> None:
    async def help_screen(pilot: Any) -> None:
        await loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.3)

    assert snap_compare(build(snapshot_run), terminal_size=(80, 24), run_before=help_screen)
