"""Snapshot tests of the runs view at 80x24 and 160x48 (a folder of simulated runs and the
trials fixture, every file time frozen, no process scan, frozen clock)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from make_fixture import FROZEN

from sdxl_tui.sources.runs import RunsWatcher
from sdxl_tui.tui.runs_app import RunsApp
from tests.helpers.runs_folder import build_runs_folder


@pytest.fixture(scope="module")
def runs_luca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    luca = build_runs_folder(tmp_path_factory.mktemp("snapruns"))
    for dirpath, dirnames, filenames in os.walk(luca):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (FROZEN - 5400, FROZEN - 5400))
    os.utime(luca, (FROZEN - 5400, FROZEN - 5400))
    return luca


async def _loaded(pilot: Any) -> None:
    app = pilot.app
    for _ in range(200):
        if app.view is not None:
            break
        await pilot.pause(0.05)
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_runs_view(snap_compare: Any, runs_luca: Path, size: tuple[int, int]) -> None:
    watcher = RunsWatcher(runs_luca, live_dirs=frozenset, clock=lambda: FROZEN)
    app = RunsApp(str(runs_luca), watcher=watcher, interval=0, clock=lambda: FROZEN)
    assert snap_compare(app, terminal_size=size, run_before=_loaded)
