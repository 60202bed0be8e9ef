"""The dashboard's keys, command palette entries and the ``?`` table, in one place.

Why a module of their own: the footer, the help screen, the README's key table and
``sdxl-tui tui --help`` must agree; the help table is built from these bindings (and the log's
and chart's own), never from a hand-written list.
"""

from __future__ import annotations

from typing import Protocol

from textual.binding import Binding

from sdxl_tui.config import Settings
from sdxl_tui.tui.screens.chart import ChartScreen
from sdxl_tui.tui.widgets.log_view import LogPane, LogView


class HelpHost(Protocol):
    """What the help table needs of the App."""

    @property
    def settings(self) -> Settings: ...

    @property
    def readonly(self) -> bool: ...

    def why_not(self, action: str) -> str | None: ...

    def get_key_display(self, binding: Binding) -> str: ...

#: Actions that change the run; ``--readonly`` removes them (nvitop's read-only mode).
DESTRUCTIVE = frozenset(
    {"start_run", "kill_run", "evaluate_checkpoint", "stop_after_checkpoint", "compare_checkpoints"}
)

#: Actions whose availability depends on the run (greyed out when they cannot apply).
GATED = frozenset(
    {"start_run", "kill_run", "stop_after_checkpoint", "evaluate_checkpoint", "show_images", "compare_checkpoints"}
)

#: Command palette entries: (title, help, action).
PALETTE = (
    ("run: start", "preflight-check and start the training (detached)", "start_run"),
    ("run: kill", "stop the training process tree (asks first)", "kill_run"),
    (
        "run: stop after next checkpoint",
        "let the trainer save its next checkpoint, then stop it",
        "stop_after_checkpoint",
    ),
    ("checkpoint: evaluate", "evaluate the selected checkpoint", "evaluate_checkpoint"),
    (
        "checkpoint: compare",
        "comparison grid: same prompts and seeds over several checkpoints (e.g. epochs 6-10)",
        "compare_checkpoints",
    ),
    ("checkpoint: show images", "sample and evaluation images of the selected checkpoint", "show_images"),
    (
        "run: morning report",
        "write DIR/.sdxl-tui/report.html: outcome, timeline, charts, checkpoints, samples, GPU",
        "morning_report",
    ),
    ("view: loss chart", "full chart with smoothing, log-Y, LR and resume points", "toggle_chart"),
    ("log: search", "search the training log", "search_log"),
    ("help: keys", "every key, as bound now", "help"),
)


#: The App's bindings; ids are the names ``ui.keymap`` rebinds.
APP_BINDINGS: tuple[Binding, ...] = (
    Binding("s", "start_run", "Start", tooltip="Preflight-check and start the training", id="start-run"),
    Binding(
        "e", "evaluate_checkpoint", "Eval", tooltip="Evaluate the selected checkpoint", id="evaluate-checkpoint"
    ),
    Binding("k", "kill_run", "Kill", tooltip="Kill the training (asks first)", id="kill-run"),
    Binding(
        "x",
        "stop_after_checkpoint",
        "Stop",
        tooltip="Stop the training after its next checkpoint (again: cancel)",
        id="stop-after-checkpoint",
    ),
    Binding(
        "g",
        "compare_checkpoints",
        "Grid",
        tooltip="Comparison grid of several checkpoints (same prompts and seeds)",
        id="compare-checkpoints",
    ),
    Binding("i", "show_images", "Imgs", tooltip="Images of the selected checkpoint", id="show-images"),
    Binding("c", "toggle_chart", "Chart", tooltip="Full loss chart", id="toggle-chart"),
    Binding(
        "R",
        "morning_report",
        "Report",
        tooltip="Write the morning report (one HTML file) and show its path",
        id="morning-report",
        show=False,
    ),
    Binding(
        "a", "show_alerts", "Alerts", tooltip="Alerts and their fixes (again: back to the log)", id="show-alerts"
    ),
    Binding(
        "slash",
        "search_log",
        "Find",
        tooltip="Search the log (enter: run it, then n older / N newer match)",
        id="search-log",
    ),
    Binding("question_mark", "help", "Help", tooltip="All keys", id="help"),
    Binding("q", "quit", "Quit", tooltip="Quit (the training keeps running)", id="quit"),
)


def _shown(app: HelpHost, binding: Binding) -> str:
    keys = app.settings.ui.keymap.get(binding.id or "", binding.key)
    return ", ".join(app.get_key_display(Binding(k.strip(), binding.action)) for k in keys.split(","))


def help_rows(app: HelpHost) -> list[tuple[str, str, str, str]]:
    """(key, description, id, availability) for every binding as bound now: the App's, then the
    log's and the full chart's (their own BINDINGS), so ``?`` lists every key there is."""
    rows = []
    for binding in APP_BINDINGS:
        if binding.action in DESTRUCTIVE and app.readonly:
            continue
        reason = app.why_not(binding.action)
        rows.append((_shown(app, binding), binding.tooltip or binding.description, binding.id or "",
                     "ok" if reason is None else reason))
    rows.append(("ctrl+p", "command palette", "", "ok"))
    for where, bindings in (("log", [*LogView.BINDINGS, *LogPane.BINDINGS]), ("chart (c)", ChartScreen.BINDINGS)):
        for item in bindings:
            assert isinstance(item, Binding)
            rows.append((_shown(app, item), f"{where}: {item.tooltip or item.description}", item.id or "", "ok"))
    return rows
