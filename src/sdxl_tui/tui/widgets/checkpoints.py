"""Checkpoint table: one row per saved LoRA, diffed by row key (the file path) inside
``batch_update`` so a refresh touches only the cells that changed (dolphie)."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from sdxl_tui.humanize import format_bytes, format_duration, format_loss
from sdxl_tui.model import Checkpoint, CheckpointStatus, RunSnapshot

COLUMNS = (
    ("name", "name"),
    ("status", "status"),
    ("epoch", "ep"),
    ("step", "step"),
    ("loss", "loss"),
    ("age", "age"),
    ("size", "size"),
    ("state", "resume"),
    ("eval", "eval"),
)

_STATUS_STYLE = {
    CheckpointStatus.COMPLETE: "green",
    CheckpointStatus.WRITING: "bold yellow",
    CheckpointStatus.CORRUPT: "bold red",
}


def short_name(name: str, output_name: str | None) -> str:
    """``luca_sdxl_v1-000004.safetensors`` -> ``-000004`` (the header names the run, and the
    table must fit 80 columns with its eval column); the final file keeps its whole name."""
    for ext in (".safetensors", ".ckpt", ".pt"):
        if name.endswith(ext) and len(name) > len(ext):
            name = name[: -len(ext)]
            break
    if output_name and name.startswith(output_name + "-") and len(name) > len(output_name) + 1:
        return name[len(output_name):]
    return name


def row_cells(ckpt: Checkpoint, now: float, output_name: str | None = None) -> tuple[object, ...]:
    """The visible cells of one checkpoint (age relative to the snapshot's time)."""
    status = Text(ckpt.status.value, style=_STATUS_STYLE.get(ckpt.status, ""))
    name = short_name(ckpt.name, output_name)
    return (
        name,
        status,
        "--" if ckpt.epoch is None else str(ckpt.epoch),
        "--" if ckpt.step is None else str(ckpt.step),
        "--" if ckpt.loss_at_save is None else format_loss(ckpt.loss_at_save),
        format_duration(max(0.0, now - ckpt.mtime)),
        format_bytes(ckpt.size),
        "yes" if ckpt.state_dir else "no",
        ckpt.evaluation or "--",
    )


class CheckpointTable(DataTable[object]):
    """Checkpoints in save order; the cursor row is the target of ``e`` and ``i``."""

    snapshot: reactive[RunSnapshot | None] = reactive(None, always_update=True, repaint=False)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self._rows: dict[str, tuple[object, ...]] = {}
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def watch_snapshot(self, snapshot: RunSnapshot | None) -> None:
        if snapshot is not None:
            self.update_checkpoints(snapshot.checkpoints, snapshot.taken_at, snapshot.config.output_name)

    def update_checkpoints(
        self, checkpoints: tuple[Checkpoint, ...], now: float, output_name: str | None = None
    ) -> None:
        """Add, change and remove rows by key; keep the cursor on the same checkpoint."""
        wanted = {c.path: row_cells(c, now, output_name) for c in checkpoints}
        if wanted == self._rows:
            return
        # Follow the newest checkpoint (the final one must be visible in a short table)
        # unless the user moved the cursor up to another row.
        follow = not self._rows or self.cursor_row >= len(self._rows) - 1
        with self.app.batch_update():
            for key in [k for k in self._rows if k not in wanted]:
                self.remove_row(key)
                del self._rows[key]
            for ckpt in checkpoints:
                cells = wanted[ckpt.path]
                old = self._rows.get(ckpt.path)
                if old is None:
                    self.add_row(*cells, key=ckpt.path)
                elif old != cells:
                    for (col, _), new_cell, old_cell in zip(COLUMNS, cells, old, strict=False):
                        if new_cell != old_cell:
                            self.update_cell(ckpt.path, col, new_cell)
                self._rows[ckpt.path] = cells
            if follow and self.row_count:
                self.move_cursor(row=self.row_count - 1, animate=False)

    @property
    def selected_path(self) -> str | None:
        """Path of the checkpoint under the cursor (``None`` when the table is empty)."""
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:  # an empty table has no cursor row
            return None
        return None if key.value is None else str(key.value)
