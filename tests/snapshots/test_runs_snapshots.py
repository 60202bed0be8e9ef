"""Snapshot tests of the runs view at 80x24 and 160x48 (a folder of simulated runs and the
trials fixture, every file time frozen, no process scan, frozen clock)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from make_fixture import FROZEN
from rich.cells import cell_len

from sdxl_tui.sources.runs import RunsWatcher
from sdxl_tui.tui.runs_app import RunsApp
from sdxl_tui.tui.widgets.runs_table import RunsTable
from tests.helpers.runs_folder import build_runs_folder


@pytest.fixture(scope="module")
def runs_luca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    luca = build_runs_folder(tmp_path_factory.mktemp("snapruns"))
    for dirpath, dirnames, filenames in os.walk(luca):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (FROZEN - 5400, FROZEN - 5400))
    os.utime(luca, (FROZEN - 5400, FROZEN - 5400))
    return luca


def _widths_settled(table: RunsTable) -> bool:
    """Every column is as wide as its widest cell: DataTable applies ``update_width`` on idle,
    which a loaded machine can delay past a fixed pause (the snapshot then showed "converg")."""
    for column in table.columns.values():
        cells = [table.get_cell(row, column.key) for row in table.rows]
        if any(column.content_width < cell_len(str(c)) for c in cells):
            return False
    return bool(table.rows)


async def _loaded(pilot: Any) -> None:
    app = pilot.app
    for _ in range(400):
        if app.view is not None and _widths_settled(app.query_one(RunsTable)):
            break
        await pilot.pause(0.05)
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_runs_view(snap_compare: Any, runs_luca: Path, size: tuple[int, int]) -> None:
    watcher = RunsWatcher(runs_luca, live_dirs=frozenset, clock=lambda: FROZEN)
    app = RunsApp(str(runs_luca), watcher=watcher, interval=0, clock=lambda: FROZEN)
    assert snap_compare(app, terminal_size=size, run_before=_loaded)
