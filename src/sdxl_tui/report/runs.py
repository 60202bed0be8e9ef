"""The runs table's cells: one definition for ``sdxl-tui status ROOT`` and the runs view."""

from __future__ import annotations

import os
import time
from typing import Any

from sdxl_tui.humanize import format_ago, format_duration

__all__ = ["HEADERS", "display_name", "row_cells"]


def _cell_progress(r: Any) -> str:
    if r.kind == "trials":
        return f"{r.step or 0}/{r.total_steps or 0} trials"
    if r.step is None:
        return "-"
    frac = f" {r.fraction * 100:.0f}%" if r.fraction is not None else ""
    return f"{r.step}/{r.total_steps or '?'}{frac}"


def _cell_eta(r: Any, now: float) -> str:
    if r.eta_seconds is None:
        return "-"
    clock = time.strftime("%H:%M", time.localtime(r.eta_at)) if r.eta_at else "?"
    return f"{format_duration(r.eta_seconds)} ({clock})"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def display_name(r: Any, root: str) -> str:
    """The run's path below the root (``luca/sdxl_v1``): names repeat across folders."""
    rel = os.path.relpath(r.run_dir, root)
    return r.name if rel.startswith("..") or rel == "." else rel


def row_cells(r: Any, now: float, root: str) -> tuple[str, ...]:
    """The runs table's cells for one row (shared by the text table and the TUI)."""
    return (
        display_name(r, root), r.kind, r.state, _cell_progress(r), _cell_eta(r, now), _num(r.loss), _num(r.best_loss),
        str(r.checkpoints), (f"{r.pid} {r.gpu}" if r.gpu else str(r.pid)) if r.pid else "-",
        format_ago(now - r.updated_at) if r.updated_at else "-", r.last_alert or "",
    )


HEADERS = ("run", "kind", "state", "progress", "eta", "loss", "best", "ckpts", "pid/GPU", "age", "last alert")
