"""``c``: the full loss chart with TensorBoard-style controls.

Smoothing (debiased EMA, 0..0.999), log-Y, outlier clipping, step or wall-clock x-axis, the
learning-rate curve and resume markers. The screen follows the App's snapshot while open.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Static

from sdxl_tui.model import RunSnapshot
from sdxl_tui.tui.widgets.loss_chart import ChartOptions, LossChart


def controls_text(o: ChartOptions) -> str:
    return (
        f"smoothing {o.smoothing:.3f} ([ ])   log-Y {'on' if o.log_y else 'off'} (l)   "
        f"outliers {'clipped' if o.clip_outliers else 'shown'} (o)   "
        f"x: {'step' if o.x_axis == 'step' else 'wall clock (min)'} (w)   "
        f"LR {'on' if o.show_lr else 'off'} (r)   raw {'on' if o.show_raw else 'off'} (a)   "
        "resume points: dotted lines"
    )


class ChartScreen(Screen[ChartOptions]):
    """Full-size loss and learning-rate chart."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,c", "close", "Back", id="chart-close"),
        Binding("left_square_bracket", "smoothing(-0.05)", "Smooth -", id="chart-smoothing-down"),
        Binding("right_square_bracket", "smoothing(0.05)", "Smooth +", id="chart-smoothing-up"),
        Binding("l", "toggle_option('log_y')", "Log-Y", id="chart-log-y"),
        Binding("o", "toggle_option('clip_outliers')", "Outliers", id="chart-outliers"),
        Binding("w", "x_axis", "Step/wall", id="chart-x-axis"),
        Binding("r", "toggle_option('show_lr')", "LR", id="chart-lr"),
        Binding("a", "toggle_option('show_raw')", "Raw", id="chart-raw"),
    ]

    options: reactive[ChartOptions] = reactive(ChartOptions)

    def __init__(self, snapshot: RunSnapshot | None, options: ChartOptions | None = None) -> None:
        super().__init__(id="chart-screen")
        self._initial = snapshot
        if options is not None:
            self.set_reactive(ChartScreen.options, options)

    def compose(self) -> ComposeResult:
        yield Static(controls_text(self.options), id="chart-controls")
        chart = LossChart(full=True, id="full-chart")
        chart.snapshot = self._initial
        chart.options = self.options
        yield chart
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "snapshot", self._snapshot_changed, init=False)

    def _snapshot_changed(self, snapshot: RunSnapshot | None) -> None:
        self.query_one(LossChart).snapshot = snapshot

    def watch_options(self, options: ChartOptions) -> None:
        if not self.is_mounted:
            return
        self.query_one(LossChart).options = options
        self.query_one("#chart-controls", Static).update(controls_text(options))

    def action_smoothing(self, delta: float) -> None:
        value = round(min(0.999, max(0.0, self.options.smoothing + delta)), 3)
        if self.options.smoothing >= 0.95 and delta > 0:
            value = 0.999 if self.options.smoothing >= 0.99 else 0.99
        self.options = replace(self.options, smoothing=value)

    def action_toggle_option(self, name: str) -> None:
        """Flip one of the chart's on/off options (log-Y, outliers, LR, raw)."""
        if name == "log_y":
            self.options = replace(self.options, log_y=not self.options.log_y)
        elif name == "clip_outliers":
            self.options = replace(self.options, clip_outliers=not self.options.clip_outliers)
        elif name == "show_lr":
            self.options = replace(self.options, show_lr=not self.options.show_lr)
        elif name == "show_raw":
            self.options = replace(self.options, show_raw=not self.options.show_raw)

    def action_x_axis(self) -> None:
        self.options = replace(self.options, x_axis="wall" if self.options.x_axis == "step" else "step")

    def action_close(self) -> None:
        self.dismiss(self.options)
