"""The report's content as rows of plain text, shared by the HTML and the Markdown renderers.

Why: the two formats must never disagree on a number. Each function here turns
:class:`ReportData` into labelled strings once; the renderers only lay them out.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

from sdxl_tui.humanize import format_bytes, format_duration
from sdxl_tui.model import Checkpoint, TrainConfig
from sdxl_tui.report.gather import ReportData

__all__ = [
    "PHASE_KINDS",
    "Table",
    "checkpoint_table",
    "clock",
    "config_rows",
    "event_rows",
    "glance_rows",
    "gpu_table",
    "loss_text",
    "phase_rows",
]

#: Phase kinds in display order (the legend of the timeline bar).
PHASE_KINDS = ("loading", "caching", "training", "saving", "sampling", "paused", "stopped")


@dataclass(frozen=True, slots=True)
class Table:
    """Headers and rows of text; ``marks[i]`` tags row ``i`` (e.g. "best")."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    marks: tuple[str, ...] = ()


def loss_text(value: float | None) -> str:
    """Four significant digits: 1.052 and 1.054 must read differently when picking an epoch."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def clock(at: float | None, ref: float | None = None) -> str:
    """``23:41:07``, with the weekday when ``at`` is not on the day of ``ref``."""
    if at is None:
        return "-"
    lt = time.localtime(at)
    if ref is not None and time.localtime(ref)[:3] != lt[:3]:
        return time.strftime("%a %H:%M:%S", lt)
    return time.strftime("%H:%M:%S", lt)


def date_text(at: float | None) -> str:
    return "-" if at is None else time.strftime("%a %Y-%m-%d %H:%M", time.localtime(at))


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**30:.1f} GiB"


def best_checkpoint(checkpoints: tuple[Checkpoint, ...]) -> Checkpoint | None:
    """The complete checkpoint with the lowest loss at save (a hint, not a verdict)."""
    scored = [c for c in checkpoints if c.complete and c.loss_at_save is not None
              and math.isfinite(c.loss_at_save)]
    return min(scored, key=lambda c: c.loss_at_save or 0.0) if scored else None


def glance_rows(d: ReportData) -> list[tuple[str, str]]:
    """The first things to read: outcome, progress, time, loss, checkpoints, GPU, alerts."""
    s, p, t = d.snapshot, d.snapshot.progress, d.timeline
    rows = [("outcome", f"{s.state.value}: {s.state_reason}" if s.state_reason else s.state.value)]
    if p.step is not None:
        frac = f" ({p.fraction * 100:.0f}%)" if p.fraction is not None else ""
        epochs = f", epoch {p.epoch}/{p.epochs if p.epochs else '?'}" if p.epoch is not None else ""
        rows.append(("progress", f"step {p.step}/{p.total_steps or '?'}{frac}{epochs}"))
    if t.start is not None and t.end is not None:
        rows.append(("wall time", f"{format_duration(t.end - t.start)} ({clock(t.start)} to {clock(t.end, t.start)})"))
    if t.total("training"):
        sessions = f" in {t.sessions} sessions" if t.sessions > 1 else ""
        rows.append(("training time", f"{format_duration(t.total('training'))}{sessions}"))
    if p.seconds_per_step:
        spp = p.seconds_per_step
        rows.append(("speed", f"{spp:.2f} s/step" if spp >= 0.5 else f"{1 / spp:.1f} steps/s"))
    for label, tag in (("loss (average)", "loss/average"), ("loss (current)", "loss/current")):
        series = s.series.get(tag)
        if series is not None and series.last is not None:
            rows.append((label, f"{loss_text(series.last.value)} at step {series.last.step}"))
    best = best_checkpoint(s.checkpoints)
    complete = sum(1 for c in s.checkpoints if c.complete)
    rows.append(("checkpoints", f"{complete} complete of {len(s.checkpoints)}"
                 + (f"; lowest loss at save: {best.name} ({loss_text(best.loss_at_save)})" if best else "")))
    peaks = [g.peak_memory for g in d.gpu.devices if g.peak_memory is not None]
    if peaks:
        rows.append(("peak VRAM", _gib(max(peaks))))
    rows.append(("alerts", ", ".join(f"{a.severity.value} {a.kind}" for a in s.alerts) or "none"))
    return rows


def phase_rows(d: ReportData) -> list[tuple[str, str, str]]:
    """(phase, total time, how many times) for each phase that happened."""
    t = d.timeline
    out = []
    for kind in PHASE_KINDS:
        n = t.count(kind)
        if n:
            out.append((kind, format_duration(t.total(kind)), f"{n}x" if n > 1 else ""))
    return out


def event_rows(d: ReportData) -> list[tuple[str, str, str]]:
    """(time, kind, what) for each timeline event; ``~`` marks a time read from a nearby record."""
    ref = d.timeline.start
    return [(("~" if e.approx else "") + clock(e.at, ref), e.kind, e.text) for e in d.timeline.events]


def checkpoint_table(d: ReportData) -> Table:
    """Every checkpoint with its step, loss at save, size, save time, state and evaluation."""
    best = best_checkpoint(d.snapshot.checkpoints)
    ref = d.timeline.start
    rows, marks = [], []
    for c in d.snapshot.checkpoints:
        status = c.status.value + (f" ({c.problem})" if c.problem else "")
        rows.append((c.name, c.kind.value, "-" if c.epoch is None else str(c.epoch),
                     "-" if c.step is None else str(c.step), loss_text(c.loss_at_save),
                     format_bytes(c.size), clock(c.mtime, ref), status,
                     "yes" if c.state_dir else "-", c.evaluation or "-"))
        marks.append("best" if best is not None and c.path == best.path else "")
    return Table(("checkpoint", "kind", "epoch", "step", "loss at save", "size", "saved", "status",
                  "state", "evaluation"), tuple(rows), tuple(marks))


def gpu_table(d: ReportData) -> Table:
    """One row per GPU over the run's samples."""
    rows = []
    for g in d.gpu.devices:
        vram = _gib(g.peak_memory) + (f" / {_gib(g.memory_total)}" if g.memory_total else "")
        if g.peak_memory is not None and g.memory_total:
            vram += f" ({g.peak_memory / g.memory_total * 100:.0f}%)"
        temp = "-" if g.max_temperature is None else (
            f"{g.mean_temperature:.0f} C mean, {g.max_temperature} C max" if g.mean_temperature is not None
            else f"{g.max_temperature} C max")
        throttle = "-" if g.throttled_fraction is None else (
            "none" if not g.throttle_reasons else
            f"{g.throttled_fraction * 100:.0f}% of samples: " + ", ".join(f"{r} ({n})" for r, n in g.throttle_reasons))
        power = "-" if g.mean_power is None else f"{g.mean_power:.0f} W mean" + (
            f" of {g.power_limit:.0f} W" if g.power_limit else "")
        rows.append((f"{g.index}: {g.name}", vram, _gib(g.peak_process_memory),
                     "-" if g.mean_utilization is None else f"{g.mean_utilization:.0f}%",
                     temp, power, throttle, str(g.samples)))
    return Table(("GPU", "peak VRAM", "trainer VRAM", "mean util", "temperature", "power",
                  "throttling", "samples"), tuple(rows))


_CONFIG_FIELDS: tuple[tuple[str, str], ...] = (
    ("output_name", "output name"), ("base_model_version", "base model"), ("resolution", "resolution"),
    ("network_dim", "network dim"), ("network_alpha", "network alpha"), ("learning_rate", "learning rate"),
    ("unet_lr", "U-Net lr"), ("text_encoder_lr", "text encoder lr"), ("optimizer", "optimizer"),
    ("scheduler", "scheduler"), ("batch_size", "batch size"),
    ("gradient_accumulation_steps", "gradient accumulation"), ("num_train_images", "images x repeats"),
    ("num_batches_per_epoch", "batches per epoch"), ("num_epochs", "epochs"), ("total_steps", "total steps"),
    ("save_every_n_epochs", "save every n epochs"), ("save_every_n_steps", "save every n steps"),
    ("mixed_precision", "mixed precision"), ("gradient_checkpointing", "gradient checkpointing"),
    ("attention", "attention"), ("cache_text_encoder_outputs", "cache text encoder outputs"),
    ("network_train_unet_only", "U-Net only"), ("save_state", "save state"), ("logging_dir", "logging dir"),
)


def config_rows(config: TrainConfig) -> list[tuple[str, str]]:
    """The configuration the run reports about itself (log block, metadata, command line)."""
    values = asdict(config)
    out = []
    for name, label in _CONFIG_FIELDS:
        value = values[name]
        if value is None:
            continue
        out.append((label, ("yes" if value else "no") if isinstance(value, bool) else f"{value:g}"
                    if isinstance(value, float) else str(value)))
    return out
