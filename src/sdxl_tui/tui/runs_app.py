"""The runs view (`sdxl-tui ROOT` when ROOT holds runs): one row per run, live first.

Thin on purpose: one thread worker refreshes the root's single
:class:`~sdxl_tui.sources.runs.RunsWatcher` every ``interval`` seconds and posts the view;
the handler only updates the table's changed cells. Enter on a run leaves this app with
``("open", RUN_DIR)``: the command opens the single-run dashboard on it, where Escape comes
back here (see ``commands/tui.py``). Enter on an optimisation folder opens its trials.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Footer, Static

from sdxl_tui.report.runs import display_name, row_cells
from sdxl_tui.sources.runs import RunsView, RunsWatcher
from sdxl_tui.tui.runs_screens import CompareRunsScreen, TrialsScreen
from sdxl_tui.tui.widgets.runs_table import RunsTable

__all__ = ["RunsApp", "RunsUpdated"]


class RunsUpdated(Message):
    """The watcher's latest view (a newer one replaces an unprocessed older one)."""

    def __init__(self, view: RunsView, *, partial: bool = False) -> None:
        super().__init__()
        self.view = view
        self.partial = partial  # discovery only: rows named, not read yet

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunsUpdated)


class RunsApp(App[Any]):
    """Exits with ``("open", run_dir)`` (Enter on a run), ``("open", run_dir, action)`` (a key that
    acts on one run: its dashboard opens and asks as it always does), or 0 (quit)."""

    TITLE = "sdxl-tui runs"
    CSS = """
    #runs-head { height: auto; padding: 0 1; background: $boost; }
    #runs-detail { height: auto; max-height: 4; padding: 0 1; color: $text-muted; }
    RunsTable { height: 1fr; }
    #trials-head { height: auto; padding: 0 1; background: $boost; }
    #trials-convergence { height: auto; padding: 0 1; color: $text-muted; }
    #trials-table { height: 1fr; }
    #plan-dialog { align: center middle; }
    #plan-dialog #dialog { width: 100; height: 90%; border: thick $accent; background: $surface; padding: 1 2; }
    #plan-dialog Input { margin-bottom: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", id="runs-open"),
        # the dashboard's keys on the selected run (kept out of the footer, which fits 80 columns)
        Binding("k", "on_run('kill_run')", "Kill", id="runs-kill", show=False),
        Binding("x", "on_run('stop_after_checkpoint')", "Stop@ckpt", id="runs-stop-after-checkpoint", show=False),
        Binding("e", "on_run('evaluate_checkpoint')", "Eval", id="runs-evaluate", show=False),
        Binding("space", "mark", "Mark", id="runs-mark"),
        Binding("c", "compare", "Compare", id="runs-compare"),
        Binding("t", "trials", "Trials", id="runs-trials"),
        Binding("R", "report", "Report", id="runs-report"),
        Binding("r", "refresh", "Refresh", id="runs-refresh"),
        Binding("q", "quit", "Quit", id="runs-quit"),
    ]

    def __init__(
        self,
        root: str,
        *,
        watcher: RunsWatcher | None = None,
        interval: float = 2.0,
        clock: Callable[[], float] = time.time,
        selected: str | None = None,
    ) -> None:
        super().__init__()
        self.root = os.path.abspath(root)
        self.watcher = watcher or RunsWatcher(self.root, clock=clock)
        self.interval = interval
        self.view: RunsView | None = None
        self._selected = selected
        self.notices: list[str] = []  # what was announced (tests read it; toasts time out)
        self.first_table_at: float | None = None  # monotonic time the first rows were shown

    def compose(self) -> ComposeResult:
        yield Static(f"{os.path.basename(self.root)}: reading…", id="runs-head", markup=False)
        yield RunsTable(id="runs-table")
        yield Static("", id="runs-detail", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(RunsTable).focus()
        self.action_refresh()
        if self.interval > 0:
            self.set_interval(self.interval, self.action_refresh)

    @work(thread=True, exclusive=True, group="runs-refresh")
    def action_refresh(self) -> None:
        if self.view is None:  # the names at once (discovery only), the cells when read
            self.post_message(RunsUpdated(self.watcher.skeleton(), partial=True))
        self.post_message(RunsUpdated(self.watcher.refresh()))

    def on_runs_updated(self, message: RunsUpdated) -> None:
        view = message.view
        found = self.screen_stack[0].query(RunsTable) if self.screen_stack else None
        if not found:  # a refresh that lands while the app is leaving
            return
        previous = self.view
        self.view = None if message.partial else view  # a partial view only names the rows
        if previous is not None and not message.partial:
            self._announce(previous, view)
        if self.first_table_at is None:
            self.first_table_at = time.monotonic()
        table = found.first()
        table.show([(r.run_dir, row_cells(r, view.taken_at, view.root)) for r in view.rows])
        if self._selected is not None and self._selected in [r.run_dir for r in view.rows]:
            table.move_cursor(row=[r.run_dir for r in view.rows].index(self._selected))
            self._selected = None
        live = sum(1 for r in view.rows if r.live)
        head = f"{os.path.basename(view.root) or view.root}: {len(view.rows)} runs, {live} live"
        if view.discovery.is_run:
            head += " (the folder is a run itself)"
        self.screen_stack[0].query_one("#runs-head", Static).update(
            head + "   enter: open  space: mark  c: compare marked  t: trials")
        self._show_detail()

    def _announce(self, before: RunsView, now: RunsView) -> None:
        """Toasts (and the bell) for what changed: a run that ended, a search that converged."""
        old = {r.run_dir: r for r in before.rows}
        for r in now.rows:
            prev = old.get(r.run_dir)
            if r.kind == "trials":
                if r.last_alert and (prev is None or prev.last_alert != r.last_alert):
                    self._notice(f"{r.name}: {r.last_alert}", "information")
            elif prev is not None and prev.state != r.state and r.state in ("finished", "failed", "stopped",
                                                                               "interrupted", "stalled"):
                self._notice(f"{r.name}: {r.state}: {r.reason}", "error" if r.state == "failed" else "information")

    def _notice(self, text: str, severity: Any) -> None:
        self.notices.append(text)
        self.notify(text, severity=severity, timeout=10)
        self.bell()

    def on_data_table_row_highlighted(self, _event: Any) -> None:
        self._show_detail()

    def on_data_table_row_selected(self, event: Any) -> None:
        """Enter on the runs table (the table takes the key first and says so with this)."""
        if isinstance(event.data_table, RunsTable):
            event.stop()
            self.action_open()

    def _row(self) -> Any:
        found = self.screen_stack[0].query(RunsTable) if self.screen_stack else None
        key = found.first().selected_key() if found else None
        return None if key is None or self.view is None else self.view.row(key)

    def _show_detail(self) -> None:
        if not self.screen_stack or not self.screen_stack[0].query("#runs-detail"):
            return
        r = self._row()
        text = "" if r is None else f"{display_name(r, self.root)}: {r.state}: {r.reason}" + (
            f"\n{r.last_alert}" if r.last_alert else "")
        self.screen_stack[0].query_one("#runs-detail", Static).update(text)

    def action_open(self) -> None:
        if len(self.screen_stack) > 1:  # keys of the runs table, not of the screen above it
            return
        r = self._row()
        if r is None:
            return
        if r.kind == "trials":
            self.action_trials()
        else:
            self.exit(("open", r.run_dir))

    def action_on_run(self, action: str) -> None:
        """k, x, e on the selected row: that run's dashboard, with the key pressed (its dialog asks)."""
        if len(self.screen_stack) > 1:
            return
        r = self._row()
        if r is None or r.kind == "trials":
            self.notify("select a run (not an optimisation folder)", severity="warning", timeout=4)
            return
        self.exit(("open", r.run_dir, action))

    def action_report(self) -> None:
        """The selected run's morning report (``sdxl-tui report RUN``, the CLI itself, in a worker)."""
        if len(self.screen_stack) > 1:
            return
        r = self._row()
        if r is None or r.kind == "trials":
            self.notify("select a run (not an optimisation folder) for its report", severity="warning", timeout=4)
            return
        self.notify(f"writing the report of {r.name}…", timeout=3)
        self._report(r.run_dir, r.name)

    @work(thread=True, group="runs-report")
    def _report(self, run_dir: str, name: str) -> None:
        import subprocess
        import sys

        done = subprocess.run([sys.executable, "-m", "sdxl_tui", "report", run_dir], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, check=False)
        text = (done.stdout.strip() or done.stderr.strip()).splitlines()
        message = f"{name}: " + (text[-1] if text else f"report: exit {done.returncode}")
        self.call_from_thread(self._notice, message, "information" if done.returncode == 0 else "error")

    def action_mark(self) -> None:
        if len(self.screen_stack) > 1:  # keys of the runs table, not of the screen above it
            return
        self.screen_stack[0].query_one(RunsTable).toggle_mark()

    def action_compare(self) -> None:
        if len(self.screen_stack) > 1:  # keys of the runs table, not of the screen above it
            return
        table = self.screen_stack[0].query_one(RunsTable)
        rows = {r.run_dir: r for r in (self.view.rows if self.view else ())}
        paths = [p for p in table.marked if p in rows and rows[p].kind != "trials"]
        if len(paths) < 2:
            self.notify("mark two or more runs with space, then c", severity="warning", timeout=4)
            return
        self.push_screen(CompareRunsScreen(sorted(paths)))

    def action_trials(self) -> None:
        if len(self.screen_stack) > 1:  # keys of the runs table, not of the screen above it
            return
        r = self._row()
        opts = {o.path: o for o in (self.view.optimisations if self.view else ())}
        opt = opts.get(r.run_dir) if r is not None else None
        if opt is None and len(opts) == 1:
            opt = next(iter(opts.values()))
        if opt is None:
            self.notify("no optimisation folder selected (a row of kind 'trials')", severity="warning", timeout=4)
            return
        self.push_screen(TrialsScreen(opt))
