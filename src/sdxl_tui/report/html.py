"""The morning report as one self-contained HTML file.

Why one file with everything inside: it is read the morning after, often on another machine
(``scp`` from the GPU box, a chat attachment), so styles, charts and pictures are inlined and
nothing refers to the network or to files beside it. The markup is plain, hand-written and
escaped at every interpolation; the numbers come from :mod:`sdxl_tui.report.facts`, the same
rows the Markdown report shows.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence

from sdxl_tui.report import charts
from sdxl_tui.report.facts import (
    PHASE_KINDS,
    Table,
    checkpoint_table,
    clock,
    config_rows,
    date_text,
    event_rows,
    glance_rows,
    gpu_table,
    phase_rows,
)
from sdxl_tui.report.gather import ReportData
from sdxl_tui.report.images import (
    Budget,
    InlineImage,
    comparison_grids,
    evaluation_sheets,
    latest_samples,
)
from sdxl_tui.report.style import CSS

__all__ = ["render_html"]


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _prose(text: str) -> str:
    """Escape ``text`` and show its Markdown-style `code` spans as <code> (shared sentences)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def _table(t: Table, cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in t.headers)
    body = []
    for i, row in enumerate(t.rows):
        mark = t.marks[i] if i < len(t.marks) else ""
        cls = f' class="{_e(mark)}"' if mark else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    attr = f' class="{cls}"' if cls else ""
    return (f'<div class="scroll"><table{attr}><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _section(ident: str, title: str, body: str) -> str:
    return f'<section id="{ident}"><h2>{_e(title)}</h2>{body}</section>\n'


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _header(d: ReportData) -> str:
    s = d.snapshot
    return (
        f'<header><h1>{_e(d.title)} <span class="badge {_e(s.state.value)}">{_e(s.state.value)}</span></h1>'
        f'<p class="reason">{_e(s.state_reason)}</p>'
        f'<p class="sub">{_e(s.run_dir)} &middot; report of {_e(date_text(d.generated_at))}</p></header>\n'
    )


def _glance(d: ReportData) -> str:
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in glance_rows(d))
    return _section("glance", "How the night went", f'<dl class="glance">{items}</dl>')


def _phase_bar(d: ReportData) -> str:
    t = d.timeline
    if t.start is None or t.end is None or t.end <= t.start or not t.phases:
        return ""
    span = t.end - t.start
    spans = []
    for p in t.phases:
        left = (p.start - t.start) / span * 100
        width = max(p.seconds / span * 100, 0.15)
        tip = f"{p.kind} {clock(p.start, t.start)} to {clock(p.end, t.start)}"
        spans.append(f'<span class="k-{_e(p.kind)}" style="left:{left:.3f}%;width:{width:.3f}%" '
                     f'title="{_e(tip)}"></span>')
    present = {p.kind for p in t.phases}
    legend = "".join(f'<li><i class="k-{k}"></i>{k}</li>' for k in PHASE_KINDS if k in present)
    ends = f'<p class="muted">{_e(clock(t.start))} &rarr; {_e(clock(t.end, t.start))}</p>'
    bar = f'<div class="bar" role="img" aria-label="phases">{"".join(spans)}</div>'
    return f'{bar}{ends}<ul class="legend">{legend}</ul>'


def _timeline(d: ReportData) -> str:
    totals = phase_rows(d)
    parts = [_phase_bar(d)]
    if totals:
        parts.append(_table(Table(("phase", "total", "times"), tuple(totals)), "narrow"))
    events = event_rows(d)
    if events:
        parts.append("<h3>Events</h3>" + _table(Table(("time", "kind", "what"), tuple(events))))
        if any(r[0].startswith("~") for r in events):
            parts.append('<p class="muted">~ the time of the log record just before a line printed without one.</p>')
    parts.extend(f'<p class="muted">{_e(n)}</p>' for n in d.timeline.notes)
    if not totals and not events:
        parts.append('<p class="muted">No timestamps yet: no log records, event files or checkpoints.</p>')
    return _section("timeline", "Timeline", "".join(parts))


def _picture(light: bytes | None, dark: bytes | None, alt: str, caption: str) -> str:
    if light is None:
        return ""
    source = f'<source media="(prefers-color-scheme: dark)" srcset="{_png_uri(dark)}">' if dark else ""
    return (f'<figure><picture>{source}<img src="{_png_uri(light)}" alt="{_e(alt)}" width="960" height="340">'
            f'</picture><figcaption>{_e(caption)}</figcaption></figure>')


def _charts(d: ReportData) -> str:
    s = d.snapshot
    ticks = [c.step for c in s.checkpoints if c.step is not None]

    def loss(theme: charts.Theme) -> bytes | None:
        return charts.loss_chart(s.series, theme=theme, resume_steps=s.resume_steps, checkpoint_steps=ticks,
                                 discarded=s.discarded)

    def lr(theme: charts.Theme) -> bytes | None:
        return charts.lr_chart(s.series, theme=theme, resume_steps=s.resume_steps)

    source = next((x.source for t, x in s.series.items() if t.startswith("loss/")), "tensorboard")
    body = _picture(loss(charts.LIGHT), loss(charts.DARK), "loss by step",
                    f"Loss by step ({source}); smoothing {charts.DEFAULT_SMOOTHING:g} is TensorBoard's "
                    "debiased EMA. Triangles: checkpoints; dashed lines: resumes."
                    + (" Grey: steps a later launch redid (discarded)." if s.discarded else ""))
    body += _picture(lr(charts.LIGHT), lr(charts.DARK), "learning rate by step", "Learning rate by step.")
    return _section("charts", "Loss and learning rate", body or '<p class="muted">No loss values logged yet.</p>')


def _thumbs(images: Sequence[InlineImage]) -> str:
    figs = "".join(
        f'<figure><img src="{im.data_uri}" alt="{_e(im.caption)}" width="{im.width}" height="{im.height}">'
        f"<figcaption>{_e(im.caption)}</figcaption></figure>" for im in images)
    return f'<div class="thumbs">{figs}</div>'


def _images(d: ReportData, budget: Budget) -> str:
    s = d.snapshot
    caption, samples = latest_samples(s.samples, budget)
    sheets = evaluation_sheets(s.evaluations, budget)
    grids = comparison_grids(s.run_dir, budget)
    parts = []
    if samples:
        parts.append(f"<h3>Latest samples ({_e(caption)})</h3>{_thumbs(samples)}")
    if sheets:
        parts.append(f"<h3>Evaluations</h3>{_thumbs(sheets)}")
    if grids:
        parts.append(f"<h3>Comparisons</h3>{_thumbs(grids)}")
    pending = [e for e in s.evaluations if e.status != "done"]
    if pending:
        parts.append('<p class="muted">Evaluations not done: '
                     + _e(", ".join(f"{e.name} ({e.status})" for e in pending)) + "</p>")
    if budget.skipped:
        parts.append('<p class="muted">Not inlined (size budget): ' + _e(", ".join(budget.skipped)) + "</p>")
    return _section("images", "Samples and evaluations",
                    "".join(parts) or '<p class="muted">No sample images or evaluations.</p>')


def _gpu(d: ReportData) -> str:
    g = d.gpu
    parts = [f'<p class="muted">{_prose(g.note)}</p>']
    if g.devices:
        parts.insert(0, _table(gpu_table(d)))
    elif g.current is not None and g.current.gpus:
        now = ", ".join(f"{x.index}: {x.name} {x.utilization if x.utilization is not None else '?'}% util, "
                        f"{(x.memory_used or 0) / 2**30:.1f} GiB used" for x in g.current.gpus)
        parts.append(f"<p>Now: {_e(now)}</p>")
    elif d.snapshot.gpu.reason:
        parts.append(f'<p class="muted">Now: {_e(d.snapshot.gpu.reason)}</p>')
    return _section("gpu", "GPU", "".join(parts))


def _alerts(d: ReportData) -> str:
    alerts = d.snapshot.alerts
    if not alerts:
        return _section("alerts", "Alerts", '<p class="muted">None.</p>')
    items = []
    for a in alerts:
        fix = f'<div class="fix"><strong>Fix:</strong> {_e(a.fix)}</div>' if a.fix else ""
        items.append(f'<li class="{_e(a.severity.value)}"><strong>{_e(a.severity.value.upper())} '
                     f"{_e(a.kind)}</strong>: {_e(a.message)}{fix}</li>")
    return _section("alerts", "Alerts", f'<ul class="alerts">{"".join(items)}</ul>')


def _command(d: ReportData) -> str:
    parts = []
    if d.command is not None:
        parts.append(f'<p class="muted">From {_prose(d.command.source)}:</p>')
        parts.append(f"<pre><code>{_e(d.command.shell())}</code></pre>")
    else:
        parts.append('<p class="muted">The exact command is not known: the run was not started with '
                     "<code>sdxl-tui start</code> and its process is gone. The configuration below is what "
                     "the log and the checkpoint metadata say.</p>")
    if d.run_end is not None and d.run_end.ended_at is not None:
        how = f"signal {d.run_end.signal}" if d.run_end.signal else f"exit status {d.run_end.exit_code}"
        parts.append(f"<p>The process ended with {_e(how)} at {_e(clock(d.run_end.ended_at))}.</p>")
    rows = config_rows(d.snapshot.config)
    if rows:
        parts.append(_table(Table(("setting", "value"), tuple(rows)), "narrow"))
    return _section("command", "Command and configuration", "".join(parts))


def _notes(d: ReportData) -> str:
    problems = d.snapshot.problems
    if not problems:
        return ""
    items = "".join(f"<li>{_e(p)}</li>" for p in problems)
    return _section("notes", "Reader notes", f'<ul class="muted">{items}</ul>')


def render_html(d: ReportData) -> str:
    """The whole document."""
    s = d.snapshot
    budget = Budget()
    body = "".join((
        _header(d), _glance(d), _timeline(d), _charts(d),
        _section("checkpoints", "Checkpoints", _table(checkpoint_table(d)) if s.checkpoints
                 else '<p class="muted">No checkpoints yet.</p>'),
        _images(d, budget), _gpu(d), _alerts(d), _command(d), _notes(d),
    ))
    title = f"{d.title}: {s.state.value} - sdxl-tui report"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>\n"
        f"<body><main>\n{body}"
        f"<footer>sdxl-tui {_e(d.version)} &middot; {_e(date_text(d.generated_at))} &middot; "
        "self-contained: no network, no files beside it</footer>\n"
        "</main></body></html>\n"
    )
