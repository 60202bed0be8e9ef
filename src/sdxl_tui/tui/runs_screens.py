"""Screens of the runs view: compare (curves + config diff) and an optimisation's trials.

Both only show what a worker computed (``report.compare``, ``sources.optimisation``);
nothing here reads files on the event loop.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from sdxl_tui.report.compare import ALIGNS

__all__ = ["CompareRunsScreen", "TrialsScreen", "compare_text", "plan_command"]


def compare_text(runs: list[Any], align: str, smoothing: float, width: int) -> str:
    """The compare screen's body: the config diff, then the overlaid curves (pure)."""
    from sdxl_tui.report.compare import aligned_curves, config_diff, text_chart

    lines = [f"{len(runs)} runs: " + ", ".join(f"{r.name} ({r.snapshot.state.value})" for r in runs), ""]
    diff = config_diff(runs)
    lines.append("configuration: only what differs" if diff else "configuration: identical")
    for key, values in diff:
        lines.append(f"  {key:<28} " + "  ".join(f"{v:<16}" for v in values).rstrip())
    lines.append("")
    lines.append(f"loss by {align} (smoothing {smoothing:g}; a: axis, [ ]: smoothing)")
    curves = aligned_curves(runs, align=align, smoothing=smoothing)
    return "\n".join(lines) + "\n" + text_chart(curves, align=align, width=max(20, width - 14), height=12)


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
        self.app.call_from_thread(self.query_one("#compare-runs-body", Static).update, Text(text))

    def action_axis(self) -> None:
        self.align = ALIGNS[(ALIGNS.index(self.align) + 1) % len(ALIGNS)]
        self._load()

    def action_smoothing(self, delta: float) -> None:
        self.smoothing = round(min(0.95, max(0.0, self.smoothing + delta)), 2)
        self._load()


def plan_command(trial_path: str) -> list[str]:
    """The CLI twin of ``p``: ``sdxl-tui plan --from TRIAL`` (the user adds dataset, base, output)."""
    return ["sdxl-tui", "plan", "--from", trial_path]


class TrialsScreen(Screen[None]):
    """An optimisation folder: its trials, the best so far, the convergence alert."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "Back", id="trials-back"),
        Binding("p", "plan", "Plan SDXL from trial", id="trials-plan"),
        Binding("b", "best", "Best trial", id="trials-best"),
    ]

    def __init__(self, optimisation: Any) -> None:
        super().__init__(id="trials")
        self.opt = optimisation

    def compose(self) -> ComposeResult:
        yield Static(self._head(), id="trials-head", markup=False)
        yield DataTable(id="trials-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="trials-plan", markup=False)
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

    def action_best(self) -> None:
        if self.opt.best is not None:
            self.query_one(DataTable).move_cursor(row=list(self.opt.trials).index(self.opt.best))

    def action_plan(self) -> None:
        trial = self._selected()
        if trial is None:
            return
        import shlex

        cmd = shlex.join(plan_command(trial.path))
        self.query_one("#trials-plan", Static).update(
            f"plan the SDXL run from {trial.name}:\n  {cmd} --dataset DATASET.toml --base-model "
            "sd_xl_base_1.0.safetensors --output-dir OUT\n(the same as `sdxl-tui plan --help`; "
            "it prints the SD1.5 -> SDXL table and checks what it writes)")
        self.app.copy_to_clipboard(cmd)
        self.notify(f"copied: {cmd}", timeout=4)
