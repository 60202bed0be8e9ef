"""The dashboard App and ``make_app``, the one factory used by the CLI, the demo and the tests.

State lives here: handlers for the feed messages store the latest values in reactives and
widgets follow them through ``data_bind`` (harlequin's rule: workers post, the App owns the
state, widgets render). Keys are Bindings with stable ids, rebindable with ``ui.keymap``;
``check_action`` greys out what cannot apply now and removes the destructive actions in
read-only mode. Quitting stops our threads only: the trainer is never ours to stop.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from typing import Any, ClassVar, Literal, TypeVar

from rich.console import RenderableType
from textual import work
from textual.actions import ActionParseResult
from textual.app import ComposeResult, SystemCommand
from textual.binding import BindingType
from textual.containers import Container, Vertical
from textual.css.query import NoMatches, WrongType
from textual.dom import DOMNode
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Footer, TabbedContent, TabPane
from textual.worker import get_current_worker

from sdxl_tui import notify
from sdxl_tui.config import Settings
from sdxl_tui.formats.slurm import ACTIVE_STATES
from sdxl_tui.model import Alert, GpuStatus, RunSnapshot
from sdxl_tui.sources.gpu import GpuMonitor, LatestGpu
from sdxl_tui.sources.ranks import vram_owners
from sdxl_tui.tui import actions
from sdxl_tui.tui.alerting import AlertNotices
from sdxl_tui.tui.bindings import APP_BINDINGS, DESTRUCTIVE, GATED, PALETTE, help_rows
from sdxl_tui.tui.feeds import Feeds, GpuSampler, Reader
from sdxl_tui.tui.messages import (
    ActionFinished,
    AlertsRaised,
    GpuSampled,
    LogLinesAdded,
    ReaderFailed,
    SnapshotUpdated,
    WatchModeChanged,
)
from sdxl_tui.tui.screens.chart import ChartScreen
from sdxl_tui.tui.screens.help import HelpScreen
from sdxl_tui.tui.screens.images import ImageScreen
from sdxl_tui.tui.widgets.alerts import AlertsPane
from sdxl_tui.tui.widgets.checkpoints import CheckpointTable
from sdxl_tui.tui.widgets.gpu import GpuPanel
from sdxl_tui.tui.widgets.log_view import LogPane, LogView
from sdxl_tui.tui.widgets.loss_chart import ChartOptions, LossChart
from sdxl_tui.tui.widgets.progress import ProgressPanel, RunHeader, run_name

_W = TypeVar("_W", bound=Widget)


def _alert_signature(alerts: tuple[Alert, ...]) -> tuple[tuple[str, str, str | None], ...]:
    return tuple((a.key or a.kind, a.message, a.fix) for a in alerts)


def css_path() -> str:
    """The stylesheet inside the installed package (works from a wheel, not only editable)."""
    return str(resources.files("sdxl_tui") / "styles" / "app.tcss")


class SdxlTuiApp(AlertNotices):
    """Live dashboard for one sd-scripts run directory."""

    CSS_PATH = css_path()
    TITLE = "sdxl-tui"
    # Textual declares the breakpoints as instance attributes (App.__init__ may set them)
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]  # noqa: RUF012
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]  # noqa: RUF012

    BINDINGS: ClassVar[list[BindingType]] = list(APP_BINDINGS)

    # App reactives never repaint the screen themselves (repaint=False): a plain reactive on
    # the App would redraw every widget for each snapshot; the bound widgets repaint alone.
    snapshot: reactive[RunSnapshot | None] = reactive(None, always_update=True, repaint=False)
    """The latest snapshot from the run reader."""
    gpu_status: reactive[GpuStatus | None] = reactive(None, repaint=False)
    """The latest GPU sample (own sampler, else the snapshot's)."""
    vram_owners: reactive[tuple[tuple[int, str], ...]] = reactive((), repaint=False)
    """Whose VRAM the GPU panel names: (pid, ``trainer`` or ``rank N``) of the live run."""
    alerts: reactive[tuple[Alert, ...]] = reactive((), repaint=False)
    selected_checkpoint: reactive[str | None] = reactive(None, repaint=False)
    """Path of the checkpoint under the table cursor."""
    watch_mode: reactive[str] = reactive("", repaint=False)
    stop_armed: reactive[bool] = reactive(False, repaint=False)
    """A stop-after-checkpoint watcher is waiting."""
    stop_pending: reactive[str] = reactive("", repaint=False)
    """The header's "stopping after -000004" while that watcher waits."""
    readonly: reactive[bool] = reactive(False, repaint=False)

    def __init__(
        self,
        settings: Settings,
        feeds: Feeds,
        *,
        run_dir: str,
        launch_file: str | None = None,
        notice: str | None = None,
        environ: dict[str, str] | None = None,
        actions_enabled: bool = True,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.feeds = feeds
        self.run_dir = run_dir
        self.launch_file = launch_file
        self.notice = notice
        #: A key's action to run once the run has been read (the runs view's k, e, x on a row).
        self.initial_action: str | None = None
        self.environ = dict(os.environ if environ is None else environ)
        self.actions_enabled = actions_enabled
        self.chart_options = ChartOptions()
        #: Seconds between two looks at a comparison job's status files.
        self.compare_poll = 0.5
        self.tracker = notify.AlertTracker()
        self._first_snapshot = True
        self._hook_notes: tuple[str, ...] = ()
        self._own_gpu = False
        self._exiting = False
        self._pending_log: list[LogLinesAdded] = []
        self._gates: tuple[object, ...] = ()
        self.set_reactive(SdxlTuiApp.readonly, settings.ui.readonly)
        theme = settings.ui.theme
        self._bad_theme: str | None = None
        if theme in self.available_themes:
            self.theme = theme
        else:  # a typo in the config must not stop the dashboard
            self._bad_theme = theme
        #: Written to the terminal for each new alert (tests read it; headless never writes).
        self.terminal_writes: list[str] = []

    # ------------------------------------------------------------------ composition
    def compose(self) -> ComposeResult:
        yield RunHeader(id="run-header").data_bind(
            SdxlTuiApp.snapshot, SdxlTuiApp.watch_mode, SdxlTuiApp.readonly, SdxlTuiApp.stop_pending
        )
        yield ProgressPanel(id="progress").data_bind(SdxlTuiApp.snapshot)
        # Width by content: the chart and the GPUs share the top band; the checkpoint table
        # (its columns) and the log (tqdm lines up to avr_loss) each get the full width.
        with Vertical(id="body"):
            with Container(id="top"):
                yield LossChart(id="loss-chart").data_bind(SdxlTuiApp.snapshot)
                yield GpuPanel(id="gpu").data_bind(status=SdxlTuiApp.gpu_status, vram_owners=SdxlTuiApp.vram_owners)
            yield CheckpointTable(id="checkpoints").data_bind(SdxlTuiApp.snapshot)
            with TabbedContent(id="tabs"):
                with TabPane("Log", id="tab-log"):
                    yield LogPane(id="log-pane")
                with TabPane("Alerts", id="tab-alerts"):
                    yield AlertsPane(id="alerts").data_bind(SdxlTuiApp.alerts)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        keymap = self.settings.ui.keymap
        if keymap:
            self.set_keymap(dict(keymap))
        self.query_one(CheckpointTable).border_title = "checkpoints"
        self.query_one(LossChart).border_title = "loss"
        self.query_one(GpuPanel).border_title = "GPU"
        if self.notice:
            self.notify(self.notice, title="sdxl-tui", timeout=8)
        if self._bad_theme:
            self.notify(
                f"unknown theme {self._bad_theme!r}; themes: {', '.join(sorted(self.available_themes))}",
                title="ui.theme",
                severity="warning",
                timeout=10,
            )
        self.run_worker(self._reader_thread, thread=True, name="run-reader", group="feeds", exit_on_error=False)
        if self.feeds.gpu_factory is not None:
            self._own_gpu = True
            self.run_worker(self._gpu_thread, thread=True, name="gpu-sampler", group="feeds", exit_on_error=False)
        self.query_one(LogView).focus()
        if self.actions_enabled:
            self.set_interval(3.0, self._poll_stop_watcher)
            self._poll_stop_watcher()

    def _reader_thread(self) -> None:
        worker = get_current_worker()
        self.feeds.run_reader(self.post_message, lambda: worker.is_cancelled)

    def _gpu_thread(self) -> None:
        worker = get_current_worker()
        self.feeds.run_gpu(self.post_message, lambda: worker.is_cancelled)

    # --------------------------------------------------------------- feed messages
    def _live(self) -> bool:
        """False while starting or shutting down (no screen to update)."""
        return bool(self.screen_stack) and not self._exiting

    def refresh_bindings(self) -> None:
        if self._live():
            super().refresh_bindings()

    def _refresh_gates(self) -> None:
        """Refresh the footer only when an action's availability changed: a refresh rebuilds
        the footer, far too costly to do for every snapshot."""
        gates = (self.readonly, tuple(self.why_not(a) for a in sorted(GATED)))
        if gates != self._gates:
            self._gates = gates
            self.refresh_bindings()

    def on_snapshot_updated(self, message: SnapshotUpdated) -> None:
        if not self._live():
            return
        snap = message.snapshot
        if message.lines or message.reset:
            self._add_log(LogLinesAdded(message.lines, message.reset))
        self.snapshot = snap
        proc = snap.process
        self.vram_owners = vram_owners(proc) if proc is not None and proc.alive else ()
        remote = snap.scheduler is not None  # a Slurm job: the snapshot carries its node's GPUs
        if (not self._own_gpu or self.gpu_status is None or remote) and snap.gpu != self.gpu_status:
            self.gpu_status = snap.gpu
        if _alert_signature(snap.alerts) != _alert_signature(self.alerts):
            self.alerts = snap.alerts
        self._sync_selection()
        fresh = self.tracker.new(snap.alerts)
        if fresh:
            self.post_message(AlertsRaised(tuple(fresh), initial=self._first_snapshot))
        self._first_snapshot = False
        self.sub_title = f"{run_name(snap)} · {snap.state.value}"
        self._refresh_gates()
        if self.initial_action is not None:
            action, self.initial_action = self.initial_action, None
            self.call_after_refresh(self.run_action, action)

    def on_gpu_sampled(self, message: GpuSampled) -> None:
        if self.snapshot is not None and self.snapshot.scheduler is not None:
            return  # this machine's GPUs are not the Slurm job's
        if message.status != self.gpu_status:
            self.gpu_status = message.status

    def main_query(self, selector: type[_W]) -> _W | None:
        """The widget on the dashboard screen, even while a chart or dialog is on top."""
        try:
            return self.screen_stack[0].query_one(selector)
        except (NoMatches, WrongType, IndexError):  # IndexError: the app is closing
            return None

    def on_log_lines_added(self, message: LogLinesAdded) -> None:
        self._add_log(message)

    def _add_log(self, message: LogLinesAdded) -> None:
        view = self.main_query(LogView)
        if view is None or not view.is_mounted:
            self._pending_log.append(message)
            return
        for pending in self._pending_log:
            view.add_lines(pending.lines, pending.reset)
        self._pending_log.clear()
        view.add_lines(message.lines, message.reset)

    def on_reader_failed(self, message: ReaderFailed) -> None:
        self.notify(message.error, title="reader error", severity="error", timeout=10)

    def on_watch_mode_changed(self, message: WatchModeChanged) -> None:
        self.watch_mode = message.mode

    def on_action_finished(self, message: ActionFinished) -> None:
        o = message.outcome
        # short: a toast covers the log's right side (the outcome is also in the log or a file)
        self.notify(o.message, title=o.action, severity="information" if o.ok else "error", timeout=6 if o.ok else 10)

    # ----------------------------------------------------------------- selection
    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._sync_selection()

    def _sync_selection(self) -> None:
        table = self.main_query(CheckpointTable)
        if table is None:
            return
        path = table.selected_path
        if path != self.selected_checkpoint:
            self.selected_checkpoint = path
            self._refresh_gates()

    def selected(self) -> Any:
        snap = self.snapshot
        if snap is None or self.selected_checkpoint is None:
            return None
        return next((c for c in snap.checkpoints if c.path == self.selected_checkpoint), None)

    # ------------------------------------------------------------ action gating
    @property
    def trainer_alive(self) -> bool:
        snap = self.snapshot
        if snap is not None and snap.scheduler is not None and snap.scheduler.state in ACTIVE_STATES:
            return True  # a queued or running Slurm job: kill cancels it, start is refused
        return bool(snap is not None and snap.process is not None and snap.process.alive)

    def why_not(self, action: str) -> str | None:
        """Why ``action`` cannot run now (``None``: it can). Shown instead of ignoring a key."""
        if action in DESTRUCTIVE and self.readonly:
            return "read-only mode"
        if action in DESTRUCTIVE and not self.actions_enabled:
            return "actions are disabled in this view"
        snap = self.snapshot
        if action == "start_run":
            if snap is None:
                return "the run is still being read"
            if self.trainer_alive:
                return "a trainer is already running for this directory"
        elif action in ("kill_run", "stop_after_checkpoint"):
            if not self.trainer_alive:
                return "no live trainer for this run"
        elif action == "compare_checkpoints":
            if snap is None:
                return "the run is still being read"
            if actions.complete_checkpoint_count(snap) < 2:
                return "a comparison needs at least 2 complete checkpoints"
        elif action in ("evaluate_checkpoint", "show_images"):
            ckpt = self.selected()
            if ckpt is None:
                return "no checkpoint selected"
            if not ckpt.complete:
                return f"{ckpt.name} is {ckpt.status.value}"
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in DESTRUCTIVE and self.readonly:
            return False  # removed, not just greyed
        if action in GATED:
            return True if self.why_not(action) is None else None
        return True

    async def run_action(
        self,
        action: str | ActionParseResult,
        default_namespace: DOMNode | None = None,
        namespaces: Mapping[str, DOMNode] | None = None,
    ) -> bool:
        """A greyed-out key still answers: it says why it cannot run now (never ignored)."""
        if (
            isinstance(action, str)
            and action in GATED
            and default_namespace in (None, self)
            and not (action in DESTRUCTIVE and self.readonly)
        ):
            reason = self.why_not(action)
            if reason is not None:
                self.notify(f"not now: {reason}", severity="warning", timeout=4)
                return True
        return await super().run_action(action, default_namespace, namespaces)

    def _refuse(self, action: str) -> bool:
        reason = self.why_not(action)
        if reason is not None:
            self.notify(f"not now: {reason}", severity="warning", timeout=4)
            return True
        return False

    def watch_readonly(self) -> None:
        self.refresh_bindings()

    # ----------------------------------------------------------- command palette
    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for title, help_text, action in PALETTE:
            if action in DESTRUCTIVE and self.readonly:
                continue
            reason = self.why_not(action)
            if reason is None:
                yield SystemCommand(title, help_text, self._palette_callback(action))
            else:
                yield SystemCommand(f"{title} (unavailable)", f"not now: {reason}", self._palette_callback(action))

    def _palette_callback(self, action: str) -> Callable[[], Any]:
        def run() -> None:
            self.call_later(self.run_action, action)

        return run

    # ------------------------------------------------------------------ actions
    def action_quit(self) -> None:  # type: ignore[override]
        """Quit now: stop our threads and observer; never signal the trainer."""
        self.feeds.stop()
        self.exit(0)

    def on_unmount(self) -> None:
        self.feeds.stop()

    def exit(
        self,
        result: Any | None = None,
        return_code: int = 0,
        message: RenderableType | None = None,
    ) -> None:
        """Leave the app; from now on feed messages are dropped (no screen to update)."""
        self._exiting = True
        super().exit(result, return_code, message)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.help_rows()))

    def help_rows(self) -> list[tuple[str, str, str, str]]:
        """(key, description, id, availability) for every binding, as bound now."""
        return help_rows(self)

    def action_toggle_chart(self) -> None:
        def remember(options: ChartOptions | None) -> None:
            if options is not None:
                self.chart_options = options

        self.push_screen(ChartScreen(self.snapshot, self.chart_options), remember)

    def action_morning_report(self) -> None:
        self.notify("writing the morning report…", timeout=3)
        self._report_worker()

    @work(thread=True, exclusive=True, group="report", exit_on_error=False)
    def _report_worker(self) -> None:
        """The report reads the whole run once (seconds on a long night): off the UI thread."""
        from sdxl_tui.report.write import write_report

        try:
            path = write_report(self.run_dir, settings=self.settings)
        except Exception as exc:  # noqa: BLE001 - shown to the user, never a crash
            self._finished("report", False, f"cannot write the report: {exc}")
            return
        self._finished("report", True, f"report written: {path}")

    def action_show_alerts(self) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = "tab-log" if tabs.active == "tab-alerts" else "tab-alerts"
        if tabs.active == "tab-log":
            self.query_one(LogView).focus()

    def action_search_log(self) -> None:
        self.query_one(TabbedContent).active = "tab-log"
        self.query_one(LogPane).open_search()

    def action_show_images(self) -> None:
        if self._refuse("show_images"):
            return
        ckpt = self.selected()
        assert ckpt is not None and self.snapshot is not None
        images = actions.images_for(self.snapshot, ckpt.path)
        self.push_screen(ImageScreen(ckpt.name, images))


def make_app(
    settings: Settings,
    run_dir: str | os.PathLike[str],
    *,
    reader: Reader | None = None,
    reader_factory: Callable[[], Reader] | None = None,
    gpu: GpuMonitor | Literal[False] | None = None,
    gpu_latest: LatestGpu | None = None,
    clock: Callable[[], float] = time.time,
    log_path: str | None = None,
    logs_dir: str | None = None,
    launch_file: str | None = None,
    watch: bool = True,
    notice: str | None = None,
    environ: dict[str, str] | None = None,
    actions_enabled: bool = True,
) -> SdxlTuiApp:
    """Build the dashboard for ``run_dir``: the CLI, the demo, the tests and the benchmark
    all come through here (posting's factory), injecting fakes only at the boundaries.

    Args:
        settings: resolved settings (refresh.*, ui.*, alerts.*).
        run_dir: the sd-scripts output directory.
        reader: a ready object with ``refresh() -> RunSnapshot`` (tests); default is
            ``sources.rundir.RunReader``, built in the feed thread.
        gpu: the monitor the GPU feed samples every ``refresh.gpu_interval`` on its own thread
            (None: a ``GpuMonitor`` on the real NVML; a fake NVML in tests; ``False``: no GPUs).
        gpu_latest: where the GPU feed leaves each sample for the run reader (its GPU alerts);
            the CLI makes it before the prefetching reader, which must already know it.
        clock: "now" for the reader (frozen in snapshot tests).
        watch: False disables watchdog (pure polling), e.g. for snapshot tests.
    """
    run_dir = os.path.abspath(os.fspath(run_dir))
    if reader is not None:
        ready = reader

        def reader_factory() -> Reader:
            return ready

    elif reader_factory is None:

        def reader_factory() -> Reader:
            from sdxl_tui.sources.rundir import RunReader

            return RunReader(
                run_dir,
                log_path=log_path,
                logs_dir=logs_dir,
                gpu=latest if gpu is not False else None,
                clock=clock,
                settings=settings,
                launch_file=launch_file,
            )

    latest = gpu_latest or LatestGpu()
    gpu_factory: Callable[[], GpuSampler] | None = None
    if gpu is not False:
        monitor = gpu

        def gpu_factory() -> GpuSampler:
            return monitor if monitor is not None else GpuMonitor()
    feeds = Feeds(
        reader_factory,
        run_dir=run_dir,
        logs_dir=logs_dir,
        interval=settings.refresh.log_interval,
        busy_gap=settings.refresh.busy_interval,
        force_polling=settings.refresh.force_polling,
        gpu_factory=gpu_factory,
        gpu_interval=settings.refresh.gpu_interval,
        gpu_latest=latest,
        watch=watch,
    )
    return SdxlTuiApp(
        settings,
        feeds,
        run_dir=run_dir,
        launch_file=launch_file,
        notice=notice,
        environ=environ,
        actions_enabled=actions_enabled,
    )
