"""The morning report as Markdown: for a terminal, a chat hook or an e-mail.

Why a second format: a phone notification or ``cat`` over SSH cannot show an HTML page. The
Markdown variant carries the same rows as the HTML report (:mod:`sdxl_tui.report.facts`), a
loss sparkline instead of the chart and the paths of the images instead of the images; it
reads well as plain text too (GitHub-style pipe tables, no HTML).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sdxl_tui.charting import ema_debiased
from sdxl_tui.report import facts
from sdxl_tui.report.charts import DEFAULT_SMOOTHING
from sdxl_tui.report.facts import Table
from sdxl_tui.report.gather import ReportData

__all__ = ["render_markdown", "sparkline"]

_BLOCKS = "▁▂▃▄▅▆▇█"
#: The Markdown event list keeps the first and the last of a long night.
MAX_EVENTS = 40


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(t: Table) -> list[str]:
    out = ["| " + " | ".join(t.headers) + " |", "|" + "|".join("---" for _ in t.headers) + "|"]
    for i, row in enumerate(t.rows):
        cells = [_cell(c) for c in row]
        if i < len(t.marks) and t.marks[i]:
            cells[0] = f"**{cells[0]}** ({t.marks[i]})"
        out.append("| " + " | ".join(cells) + " |")
    return out


def sparkline(values: Sequence[float], width: int = 60) -> str:
    """One line of block characters: the mean of each of ``width`` buckets of finite values.

    Means, not min/max: a sparkline shows the trend, and alternating bucket extremes would
    draw noise as a zigzag."""
    n = len(values)
    means: list[float] = []
    for b in range(min(width, n)):
        chunk = [v for v in values[b * n // min(width, n):(b + 1) * n // min(width, n)] if math.isfinite(v)]
        means.append(sum(chunk) / len(chunk) if chunk else math.nan)
    finite = [v for v in means if math.isfinite(v)]
    if not finite:
        return ""
    lo, hi = min(finite), max(finite)
    span = (hi - lo) or 1.0
    return "".join(_BLOCKS[min(7, int((v - lo) / span * 8))] if math.isfinite(v) else " " for v in means)


def _loss_lines(d: ReportData) -> list[str]:
    for tag in ("loss/current", "loss/average"):
        s = d.snapshot.series.get(tag)
        if s is not None and s.points:
            values = [p.value for p in s.points]
            smooth = ema_debiased(values, DEFAULT_SMOOTHING) if tag == "loss/current" else values
            finite = [v for v in smooth if math.isfinite(v)]
            if not finite:
                return []
            summary = (f"{tag} (smoothed {DEFAULT_SMOOTHING:g}) over steps {s.points[0].step}-{s.points[-1].step}: "
                       f"min {facts.loss_text(min(finite))}, max {facts.loss_text(max(finite))}, "
                       f"last {facts.loss_text(finite[-1])}")
            return [f"`{sparkline(smooth)}`", summary, ""]
    return []


def _events(d: ReportData) -> list[str]:
    rows = facts.event_rows(d)
    if len(rows) > MAX_EVENTS:
        half = MAX_EVENTS // 2
        rows = [*rows[:half], ("...", "", f"{len(rows) - 2 * half} more"), *rows[-half:]]
    return [f"- {t} {kind}: {what}" if kind else f"- {t} {what}" for t, kind, what in rows]


def _images(d: ReportData) -> list[str]:
    s = d.snapshot
    out = []
    if s.samples:
        newest = max((x.epoch or 0, x.step or 0) for x in s.samples)
        latest = [x for x in s.samples if (x.epoch or 0, x.step or 0) == newest]
        out.append(f"- latest samples: {len(latest)} images, e.g. `{latest[0].path}`")
    for e in s.evaluations:
        out.append(f"- evaluation {e.name}: {e.status} (`{e.path}`)")
    return out


def _gpu(d: ReportData) -> list[str]:
    out = []
    if d.gpu.devices:
        out += _table(facts.gpu_table(d))
    out.append(f"{d.gpu.note}.")
    if not d.gpu.devices and d.snapshot.gpu.reason:
        out.append(f"Now: {d.snapshot.gpu.reason}.")
    return out


def _alerts(d: ReportData) -> list[str]:
    out = []
    for a in d.snapshot.alerts:
        out.append(f"- **{a.severity.value.upper()} {a.kind}**: {a.message}")
        if a.fix:
            out.append(f"  - fix: {a.fix}")
    return out or ["None."]


def _command(d: ReportData) -> list[str]:
    out = []
    if d.command is not None:
        out += [f"From {d.command.source}:", "", "```sh", d.command.shell(), "```"]
    else:
        out.append("The exact command is not known (not started with `sdxl-tui start`, process gone).")
    if d.run_end is not None and d.run_end.ended_at is not None:
        how = f"signal {d.run_end.signal}" if d.run_end.signal else f"exit status {d.run_end.exit_code}"
        out += ["", f"The process ended with {how} at {facts.clock(d.run_end.ended_at)}."]
    rows = facts.config_rows(d.snapshot.config)
    if rows:
        out += ["", *_table(Table(("setting", "value"), tuple(rows)))]
    return out


def render_markdown(d: ReportData) -> str:
    """The whole report as Markdown text."""
    s = d.snapshot
    lines = [f"# {d.title}: {s.state.value}", "", f"{s.state_reason}" if s.state_reason else "",
             f"`{s.run_dir}` - report of {facts.date_text(d.generated_at)}", "", "## How the night went", ""]
    lines += [f"- **{k}**: {v}" for k, v in facts.glance_rows(d)]
    lines += ["", "## Timeline", ""]
    if facts.phase_rows(d):
        lines += [*_table(Table(("phase", "total", "times"), tuple(facts.phase_rows(d)))), ""]
    lines += _events(d) or ["No timestamps yet."]
    lines += [f"\n_{n}_" for n in d.timeline.notes]
    lines += ["", "## Loss", "", *(_loss_lines(d) or ["No loss values logged yet.", ""])]
    lines += ["## Checkpoints", ""]
    lines += _table(facts.checkpoint_table(d)) if s.checkpoints else ["No checkpoints yet."]
    lines += ["", "## Samples and evaluations", "", *(_images(d) or ["None."])]
    lines += ["", "## GPU", "", *_gpu(d)]
    lines += ["", "## Alerts", "", *_alerts(d)]
    lines += ["", "## Command and configuration", "", *_command(d)]
    if s.problems:
        lines += ["", "## Reader notes", "", *(f"- {p}" for p in s.problems)]
    lines += ["", f"_sdxl-tui {d.version}_", ""]
    return "\n".join(lines)
