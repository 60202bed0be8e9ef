"""`sdxl-tui ROOT` when ROOT holds runs: the runs view, and the dashboard of the run opened.

The runs view and the single-run dashboard are two apps run one after the other: Enter on a
run leaves the runs view, the dashboard opens on that run, and leaving the dashboard (Escape
or q) comes back to the runs view with the same row selected; q in the runs view quits. The
one watcher of the root is kept across, so coming back costs a refresh of what changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["back_keymap", "is_runs_root", "run_runs_view", "runs_below_notice"]


def is_runs_root(path: str) -> bool:
    """True when ``path`` is not a run itself but holds runs (or is an optimisation folder)."""
    from sdxl_tui.sources.discovery import discover

    found = discover(path)
    return not found.is_run and (found.holds_runs or found.is_trials)


def runs_below_notice(path: str) -> str | None:
    """For a run that holds other runs: the line that names them (None otherwise)."""
    import os

    from sdxl_tui.sources.discovery import discover

    found = discover(path)
    below = found.runs + found.trials
    if not found.is_run or not below:
        return None
    names = ", ".join(os.path.relpath(r.path, path) for r in below[:5]) + (" …" if len(below) > 5 else "")
    return f"this run holds {len(below)} other run(s): {names} (open one with its own path)"


def back_keymap(settings: Any) -> Any:
    """The dashboard's settings with Escape added to ``quit`` (back to the runs view)."""
    keymap = dict(settings.ui.keymap or {})
    keymap["quit"] = ",".join(dict.fromkeys([*(keymap.get("quit", "q").split(",")), "escape"]))
    return settings.replace(ui__keymap=keymap)


def run_runs_view(root: str, settings: Any, open_dashboard: Callable[[Any, str], Any], *, gpu: bool = True) -> int:
    """The loop: runs view -> dashboard -> runs view ... until q in the runs view."""
    from sdxl_tui.sources.runs import LazyGpu, RunsWatcher
    from sdxl_tui.tui.runs_app import RunsApp

    source = LazyGpu() if gpu else None
    watcher = RunsWatcher(root, settings=settings, gpu=source)
    selected: str | None = None
    dashboard_settings = back_keymap(settings)
    try:
        while True:
            result = RunsApp(root, watcher=watcher, selected=selected).run()
            if not (isinstance(result, tuple) and result and result[0] == "open"):
                return int(result or 0)
            selected = str(result[1])
            dashboard = open_dashboard(dashboard_settings, selected)
            if len(result) > 2:
                dashboard.initial_action = str(result[2])
            dashboard.run()
    finally:
        if source is not None:
            source.close()

