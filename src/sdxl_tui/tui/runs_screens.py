"""Screens of the runs view: compare (curves + config diff) and an optimisation's trials.

Both only show what a worker computed (``report.compare``, ``sources.optimisation``);
nothing here reads files on the event loop.
"""

from __future__ import annotations

import os
import sys
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Input, Static

from sdxl_tui.report.compare import ALIGNS

__all__ = ["CompareRunsScreen", "PlanScreen", "TrialsScreen", "compare_text", "next_output_dir"]


_PALETTE = ("bright_yellow", "bright_cyan", "bright_magenta", "bright_green", "bright_red", "bright_blue")


def compare_text(runs: list[Any], align: str, smoothing: float, width: int) -> Text:
    """The compare screen's body: the config diff, then the curves overlaid in colour (pure)."""
    from sdxl_tui.report.compare import CHART_LEFT, aligned_curves, chart_lines, config_diff

    out = Text(f"{len(runs)} runs: " + ", ".join(f"{r.name} ({r.snapshot.state.value})" for r in runs) + "\n\n")
    diff = config_diff(runs)
    out.append("configuration: only what differs\n" if diff else "configuration: identical\n", style="bold")
    for key, values in diff:
        out.append(f"  {key:<32} " + "  ".join(f"{v:<18}" for v in values).rstrip() + "\n")
    out.append(f"\nloss by {align} (smoothing {smoothing:g}; a: axis, [ ]: smoothing)\n", style="bold")
    curves = aligned_curves(runs, align=align, smoothing=smoothing)
    lines, colours = chart_lines(curves, align=align, width=max(20, width - CHART_LEFT - 4), height=12)
    for i, line in enumerate(lines):
        row = Text(line[:CHART_LEFT] if i < len(colours) else line)
        if i < len(colours):
            for ch, col in zip(line[CHART_LEFT:], colours[i], strict=False):
                row.append(ch, style=_PALETTE[col % len(_PALETTE)] if col is not None else "")
        elif i >= len(colours) + 2 and i - len(colours) - 2 < len(curves):  # the legend lines
            row.stylize(_PALETTE[(i - len(colours) - 2) % len(_PALETTE)], 0, 4)
        out.append_text(row)
        out.append("\n")
    return out


class CompareRunsScreen(Screen[None]):
    """The marked runs (or the selected one and its neighbours) overlaid; Escape goes back."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "Back", id="compare-runs-back"),
        Binding("a", "axis", "Axis", id="compare-runs-axis"),
        Binding("left_square_bracket", "smoothing(-0.1)", "Smooth -", id="compare-runs-smooth-less"),
        Binding("right_square_bracket", "smoothing(0.1)", "Smooth +", id="compare-runs-smooth-more"),
    ]

    def __init__(self, paths: list[str]) -> None:
        super().__init__(id="compare-runs")
        self.paths = paths
        self.align = "step"
        self.smoothing = 0.6
        self._runs: list[Any] | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(f"reading {len(self.paths)} runs…", id="compare-runs-body", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="compare-runs")
    def _load(self) -> None:
        from sdxl_tui.report.compare import load_runs

        if self._runs is None:
            self._runs = load_runs(self.paths)
        text = compare_text(self._runs, self.align, self.smoothing, self.app.size.width)
        self.app.call_from_thread(self.query_one("#compare-runs-body", Static).update, text)

    def action_axis(self) -> None:
        self.align = ALIGNS[(ALIGNS.index(self.align) + 1) % len(ALIGNS)]
        self._load()

    def action_smoothing(self, delta: float) -> None:
        self.smoothing = round(min(0.95, max(0.0, self.smoothing + delta)), 2)
        self._load()


class TrialsScreen(Screen[None]):
    """An optimisation folder: its trials, the best so far, the convergence alert."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "Back", id="trials-back"),
        Binding("p", "plan", "Plan SDXL (plan --from)", id="trials-plan"),
        Binding("b", "best", "Best trial", id="trials-best"),
        Binding("space", "mark", "Mark", id="trials-mark"),
        Binding("c", "compare", "Compare marked (or the best 3)", id="trials-compare"),
    ]

    def __init__(self, optimisation: Any) -> None:
        super().__init__(id="trials")
        self.opt = optimisation
        self.marked: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static(self._head(), id="trials-head", markup=False)
        yield Static(self._convergence(), id="trials-convergence", markup=False)
        yield DataTable(id="trials-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def _head(self) -> str:
        o = self.opt
        lines = [f"{o.name}: {len(o.trials)} trials, {o.state}"]
        if o.best is not None:
            lines.append(f"best {o.best.name}: {o.score_field} = {o.score(o.best):g} (from {o.score_source}; "
                         f"{'lowest' if o.pick.minimize else 'highest'} wins)")
        if o.best_so_far:
            lines.append("best so far: " + " → ".join(f"{v:g} ({n})" for n, _, v in o.best_so_far))
        if o.convergence_alert:
            lines.append(f"CONVERGENCE_ALERT.txt: {o.convergence_alert}")
        return "\n".join(lines)

    def _convergence(self) -> str:
        """Best so far against trials finished (the card's "watch convergence")."""
        from sdxl_tui.report.compare import Curve, chart_lines
        from sdxl_tui.sources.optimisation import convergence

        xs, ys = convergence(self.opt)
        if len(xs) < 2:
            return ""
        curve = Curve(f"best {self.opt.score_field} so far", tuple(xs), tuple(ys), tuple(ys))
        lines, _ = chart_lines([curve], width=48, height=4)
        return "\n".join(line.rstrip() for line in lines[:-1]).replace(" step", " trials finished")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        keys = ("learning_rate", "network_dim", "network_alpha", "optimizer_type", "lr_scheduler",
                "gradient_accumulation_steps", "max_train_epochs")
        table.add_columns("trial", "state", self.opt.score_field or "score", "from", *keys, "checkpoint")
        best = self.opt.best.name if self.opt.best is not None else None
        for t in self.opt.trials:
            score = self.opt.score(t)
            name = Text(("★ " if t.name == best else "  ") + t.name, style="bold" if t.name == best else "")
            table.add_row(name, t.state, "-" if score is None else f"{score:g}",
                          t.sources.get(self.opt.score_field or "", "-"),
                          *(str(t.params.get(k, "-")) for k in keys),
                          t.checkpoint.rsplit("/", 1)[-1] if t.checkpoint else "-", key=t.path)
        table.focus()

    def _selected(self) -> Any:
        table = self.query_one(DataTable)
        if not self.opt.trials:
            return None
        return self.opt.trials[min(table.cursor_row, len(self.opt.trials) - 1)]

    def action_mark(self) -> None:
        trial = self._selected()
        if trial is None:
            return
        if trial.path in self.marked:
            self.marked.remove(trial.path)
        else:
            self.marked.append(trial.path)
        self.notify(f"{len(self.marked)} trial(s) marked for compare", timeout=2)

    def action_compare(self) -> None:
        """The marked trials' curves and config diff; none marked: the best three by score."""
        from sdxl_tui.sources.discovery import trial_runs

        runs = set(trial_runs(self.opt.path))
        chosen = [p for p in self.marked if p in runs]
        if not chosen and self.opt.pick is not None:
            chosen = [t.path for t in self.opt.pick.ranked if t.path in runs][:3]
        if len(chosen) < 2:
            self.notify("compare needs two trials with their own training.log or logs/", severity="warning",
                        timeout=4)
            return
        self.app.push_screen(CompareRunsScreen(chosen))

    def action_best(self) -> None:
        if self.opt.best is not None:
            self.query_one(DataTable).move_cursor(row=list(self.opt.trials).index(self.opt.best))

    def action_plan(self) -> None:
        trial = self._selected()
        if trial is None:
            return
        parent = os.path.dirname(os.path.dirname(trial.path.rstrip(os.sep)))
        self.app.push_screen(PlanScreen(trial.name, trial.path, next_output_dir(parent)))


def next_output_dir(parent: str) -> str:
    """``PARENT/sdxl_vN`` with the first N not taken (the card's naming)."""
    n = 1
    while os.path.exists(os.path.join(parent, f"sdxl_v{n}")):
        n += 1
    return os.path.join(parent, f"sdxl_v{n}")


class PlanScreen(ModalScreen[None]):
    """``p`` on a trial: the inputs `sdxl-tui plan --from TRIAL` needs, then its output.

    The plan runs as the CLI itself (``python -m sdxl_tui plan ...``) in a worker thread, so
    the key and the command are one code path; it writes the launch files into the output
    folder and prints the SD1.5 -> SDXL table and the check report, shown here.
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back", id="plan-back")]

    def __init__(self, trial_name: str, trial_path: str, output_dir: str) -> None:
        super().__init__(id="plan-dialog")
        self.trial_name, self.trial_path, self.output_dir = trial_name, trial_path, output_dir

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(f"Plan the SDXL run from {self.trial_name} (sdxl-tui plan --from)", markup=False)
            yield Input(placeholder="dataset: the SD1.5 dataset config (.toml) or image folder", id="plan-dataset")
            yield Input(placeholder="SDXL base model: sd_xl_base_1.0.safetensors", id="plan-base")
            yield Input(self.output_dir, placeholder="output dir", id="plan-out")
            yield Button("Plan (writes the launch files)", id="plan-run", variant="primary")
            with VerticalScroll():
                yield Static("", id="plan-output", markup=False)

    def on_mount(self) -> None:
        self.query_one("#plan-dataset", Input).focus()

    def argv(self) -> list[str]:
        values = [self.query_one(f"#plan-{k}", Input).value.strip() for k in ("dataset", "base", "out")]
        return [sys.executable, "-m", "sdxl_tui", "plan", "--from", self.trial_path, "--dataset", values[0],
                "--base-model", values[1], "--output-dir", values[2], "--no-gpu"]

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self._plan(self.argv())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._plan(self.argv())

    @work(thread=True, exclusive=True, group="plan")
    def _plan(self, argv: list[str]) -> None:
        import shlex
        import subprocess

        out = self.query_one("#plan-output", Static)
        self.app.call_from_thread(out.update, "$ " + shlex.join(["sdxl-tui", *argv[3:]]) + "\n(running…)")
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        text = "$ " + shlex.join(["sdxl-tui", *argv[3:]]) + f"\n(exit {done.returncode})\n" + done.stdout + done.stderr
        self.app.call_from_thread(out.update, text)
