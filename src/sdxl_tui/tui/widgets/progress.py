"""Run header (name, state, elapsed, ETA and finish clock, next checkpoint) and progress bars.

Pure rendering of the latest snapshot: the text helpers are plain functions so tests can
check "done ~06:40" without a terminal.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Label, Static

from sdxl_tui.humanize import format_duration
from sdxl_tui.model import QueueEntry, RunSnapshot, RunState, SchedulerStatus
from sdxl_tui.sources.progress import run_elapsed

STATE_STYLE = {
    RunState.MISSING: "dim",
    RunState.UNREADABLE: "bold red",
    RunState.WAITING: "dim",
    RunState.LOADING: "cyan",
    RunState.CACHING: "cyan",
    RunState.TRAINING: "bold green",
    RunState.SAMPLING: "bold cyan",
    RunState.SAVING: "bold cyan",
    RunState.FINISHED: "bold blue",
    RunState.FAILED: "bold red",
    RunState.INTERRUPTED: "bold yellow",
    RunState.STOPPED: "bold magenta",
    RunState.STALLED: "bold yellow",
}


def run_name(snapshot: RunSnapshot) -> str:
    """``output_name`` when the run says it, else the directory's name."""
    return snapshot.config.output_name or os.path.basename(snapshot.run_dir.rstrip("/")) or "run"


def short_checkpoint(name: str, output_name: str | None) -> str:
    """``luca_sdxl_v1-000006.safetensors`` -> ``-000006`` (the run name is already shown)."""
    stem = os.path.basename(name)
    for ext in (".safetensors", ".ckpt", ".pt"):
        stem = stem.removesuffix(ext)
    if output_name and stem.startswith(output_name) and stem != output_name:
        stem = stem[len(output_name):]
    return stem


def finish_clock(eta_at: float | None, now: float) -> str:
    """``done ~06:40`` (local time); with the weekday when more than a day away."""
    if eta_at is None:
        return ""
    local = time.localtime(eta_at)
    if eta_at - now > 20 * 3600:
        return "done ~" + time.strftime("%a %H:%M", local)
    return "done ~" + time.strftime("%H:%M", local)


def job_text(job: SchedulerStatus) -> str:
    """``slurm 12 PENDING (Resources) #2``, ``slurm 12 RUNNING gpu07``, ``slurm 12 TIMEOUT``."""
    text = f"slurm {job.job_id} {job.state or '?'}"
    if job.state == "PENDING":
        text += (f" ({job.reason})" if job.reason else "") + (f" #{job.queue_position}" if job.queue_position else "")
    elif job.state == "RUNNING" and job.node:
        text += f" {job.node}"
    return text


def queue_text(queue: Sequence[QueueEntry]) -> str:
    """``queue: 1 running, 2 waiting`` while the night's queue has work left, else empty."""
    counts = {status: sum(1 for e in queue if e.status == status) for status in ("running", "submitted", "waiting")}
    parts = [f"{n} {status}" for status, n in counts.items() if n]
    return "queue: " + ", ".join(parts) if parts else ""


#: Header parts dropped first when the line is wider than the terminal (lowest first).
_DROP_ORDER = ("launches", "queue", "rate", "watch", "readonly", "clock", "next")


def header_parts(
    snapshot: RunSnapshot, *, watch_mode: str = "", readonly: bool = False, stop_pending: str = ""
) -> list[tuple[str, Text]]:
    """The header's parts in display order, each named for :data:`_DROP_ORDER`."""
    p = snapshot.progress
    parts: list[tuple[str, Text]] = []
    head = Text()
    head.append(run_name(snapshot), style="bold")
    head.append("  ")
    head.append(f" {snapshot.state.value.upper()} ", style=f"reverse {STATE_STYLE.get(snapshot.state, '')}")
    parts.append(("name", head))
    if snapshot.scheduler is not None:
        parts.append(("job", Text(f"  {job_text(snapshot.scheduler)}", style="bold")))
    if stop_pending and not snapshot.state.is_over:
        parts.append(("stop", Text(f"  {stop_pending}", style="bold magenta")))
    if not snapshot.state.is_over:
        # what the user came for first: when it will be done and when the next file lands
        eta = Text("  ETA ", style="dim")
        eta.append(format_duration(p.eta_seconds), style="")
        parts.append(("eta", eta))
        clock = finish_clock(p.eta_at, snapshot.taken_at)
        if clock:
            parts.append(("clock", Text(f" {clock}", style="bold")))
        if p.next_checkpoint:
            nxt = Text("  next ", style="dim")
            nxt.append(short_checkpoint(p.next_checkpoint, snapshot.config.output_name), style="")
            if p.next_checkpoint_eta_seconds is not None:
                nxt.append(f" in {format_duration(p.next_checkpoint_eta_seconds)}", style="")
            parts.append(("next", nxt))
    elapsed = Text("  elapsed ", style="dim")
    elapsed.append(format_duration(run_elapsed(snapshot)), style="")
    parts.append(("elapsed", elapsed))
    if p.seconds_per_step and p.seconds_per_step >= 0.01:
        parts.append(("rate", Text(f"  {p.seconds_per_step:.2f}s/step", style="dim")))
    resumed = [la for la in snapshot.launches if la.resumed_from is not None]
    if resumed:  # a resumed run: where it went on (status lists each launch)
        at = ", ".join(str(la.resume_step) if la.resume_step is not None else "?" for la in resumed)
        own = " (trainer's own counts)" if any(la.own_counts for la in resumed) else ""
        parts.append(("launches", Text(f"  resumed at step {at}{own}", style="dim")))
    queued = queue_text(snapshot.queue)
    if queued:
        parts.append(("queue", Text(f"  {queued}", style="dim")))
    if readonly:
        parts.append(("readonly", Text("  [read-only]", style="dim italic")))
    if watch_mode:
        parts.append(("watch", Text(f"  {watch_mode}", style="dim")))
    if snapshot.state_reason and snapshot.state in (
        RunState.FAILED,
        RunState.STALLED,
        RunState.INTERRUPTED,
        RunState.STOPPED,
        RunState.MISSING,
        RunState.UNREADABLE,
    ):
        # last: it is the part that is cut (with an ellipsis) when the line is too long
        reason = snapshot.state_reason
        if snapshot.state is RunState.MISSING:
            reason = "waiting for it to be created (q quits); " + reason
        parts.append(("reason", Text(f"  {reason}", style="italic")))
    return parts


#: Lines a verdict that does not fit beside the state may take below it (then it is cut).
REASON_LINES = 3


def header_text(
    snapshot: RunSnapshot | None,
    *,
    watch_mode: str = "",
    readonly: bool = False,
    stop_pending: str = "",
    width: int | None = None,
) -> Text:
    """The header; with ``width``, the least useful parts are dropped until the elapsed time,
    ETA and state fit. A verdict (why the run stopped, failed or waits, with the resume command)
    too long for the line goes below it, wrapped on up to :data:`REASON_LINES` lines: it is
    what the user needs to read in full."""
    if snapshot is None:
        return Text("reading the run…", style="dim")
    parts = header_parts(snapshot, watch_mode=watch_mode, readonly=readonly, stop_pending=stop_pending)
    reason = next((t for n, t in parts if n == "reason"), None)
    below: list[str] = []
    if width is not None:
        for name in _DROP_ORDER:
            if sum(t.cell_len for _, t in parts) <= width:
                break
            parts = [(n, t) for n, t in parts if n != name]
        if reason is not None and sum(t.cell_len for _, t in parts) > width:
            parts = [(n, t) for n, t in parts if n != "reason"]
            below = _wrap(reason.plain.strip(), width, REASON_LINES)
    text = Text(no_wrap=True, overflow="ellipsis")
    for _, part in parts:
        text.append_text(part)
    for line in below:
        text.append("\n")
        text.append(line, style="italic")
    return text


def _wrap(text: str, width: int, lines: int) -> list[str]:
    """``text`` in at most ``lines`` lines of ``width`` cells; the last ends in … when cut."""
    import textwrap

    wrapped = textwrap.wrap(text, width=max(10, width), break_on_hyphens=False) or [""]
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][: max(0, width - 1)].rstrip() + "…"
    return wrapped


class RunHeader(Static):
    """Run name, state, elapsed, ETA with the finish clock, next checkpoint."""

    snapshot: reactive[RunSnapshot | None] = reactive(None, always_update=True, repaint=False)
    watch_mode: reactive[str] = reactive("")
    readonly: reactive[bool] = reactive(False)
    stop_pending: reactive[str] = reactive("")

    _last: str = ""
    _lines: int = 1  # the height in the CSS

    def _refresh_text(self) -> None:
        width = self.content_size.width or None
        text = header_text(
            self.snapshot,
            watch_mode=self.watch_mode,
            readonly=self.readonly,
            stop_pending=self.stop_pending,
            width=width,
        )
        if text.markup != self._last:  # an unchanged header costs no repaint
            self._last = text.markup
            lines = text.plain.count("\n") + 1
            if lines != self._lines:  # a verdict line came or went: the one change that re-lays out
                self._lines = lines
                self.styles.height = lines
            self.update(text, layout=False)

    def watch_snapshot(self) -> None:
        self._refresh_text()

    def watch_watch_mode(self) -> None:
        self._refresh_text()

    def watch_readonly(self) -> None:
        self._refresh_text()

    def watch_stop_pending(self) -> None:
        self._refresh_text()

    def on_resize(self) -> None:
        self._last = ""
        self._refresh_text()


class Meter(Widget):
    """A one-line progress bar with its percentage. Drawn in ``render``: Textual's ProgressBar
    re-lays out the screen on every percent change, too costly for a dashboard left open
    overnight on a run writing 10 steps a second."""

    DEFAULT_CSS = "Meter { height: 1; width: 1fr; }"

    fraction: reactive[float] = reactive(0.0)

    def render(self) -> Text:
        width = max(6, self.size.width - 6)
        frac = min(max(self.fraction, 0.0), 1.0)
        cells = frac * width
        full = int(cells)
        text = Text()
        done_style = "green" if frac >= 1.0 else "bright_magenta"
        text.append("━" * full, style=done_style)
        if full < width:
            tip = "╸" if cells - full >= 0.5 else ("╺" if full else "")
            text.append(tip, style=done_style if tip == "╸" else "grey35")
            text.append("━" * max(0, width - full - len(tip)), style="grey35")
        text.append(f" {frac * 100:3.0f}%")
        return text


class ProgressPanel(Widget):
    """Epoch and step progress bars with counts."""

    snapshot: reactive[RunSnapshot | None] = reactive(None, always_update=True, repaint=False)
    _state: tuple[object, ...] = ()

    def compose(self) -> ComposeResult:
        with Horizontal(id="epoch-row", classes="progress-row"):
            yield Label("epoch  --/--", id="epoch-label", classes="progress-label")
            yield Meter(id="epoch-bar")
        with Horizontal(id="step-row", classes="progress-row"):
            yield Label("step   --/--", id="step-label", classes="progress-label")
            yield Meter(id="step-bar")

    def watch_snapshot(self, snapshot: RunSnapshot | None) -> None:
        if snapshot is None or not self.is_mounted:
            return
        p = snapshot.progress
        epochs = p.epochs or snapshot.config.num_epochs
        epoch = p.epoch
        done_epochs: float | None = None
        if epochs:
            if snapshot.state is RunState.FINISHED:
                done_epochs = epochs
            elif p.step is not None and p.total_steps and epochs:
                done_epochs = min(epochs, p.step / p.total_steps * epochs)
            elif epoch is not None:
                done_epochs = max(0, epoch - 1)
        total = p.total_steps or snapshot.config.total_steps
        state = (epoch, epochs, done_epochs, p.step, total)
        if state == self._state:
            return
        self._state = state
        self.query_one("#epoch-label", Label).update(
            f"epoch {epoch if epoch is not None else '--':>3}/{epochs or '--'}", layout=False
        )
        self.query_one("#epoch-bar", Meter).fraction = (done_epochs or 0) / epochs if epochs else 0.0
        self.query_one("#step-label", Label).update(
            f"step {p.step if p.step is not None else '--':>6}/{total or '--'}", layout=False
        )
        self.query_one("#step-bar", Meter).fraction = (p.step or 0) / total if total else 0.0
