"""The runs table: one row per run and optimisation folder, keyed by its path.

Updates are row-keyed: a refresh that changes one run's cells updates those cells only; rows
are rebuilt only when the set or order of runs changed (a run appeared, went live, ended).
The cells are the text table's (``commands.runs_status.row_cells``), so the view and
``sdxl-tui status ROOT`` always agree.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from sdxl_tui.report.runs import HEADERS

_STATE_STYLE = {
    "training": "bold green", "sampling": "green", "saving": "green", "loading": "cyan", "caching": "cyan",
    "finished": "blue", "failed": "bold red", "interrupted": "yellow", "stalled": "bold yellow",
    "stopped": "magenta", "searching": "bold green", "converged": "blue", "unreadable": "bold red",
}


class RunsTable(DataTable[Any]):
    """Rows keyed by run directory; ``marked`` holds the rows chosen for compare (space)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.marked: set[str] = set()
        self._order: tuple[str, ...] = ()
        self._cells: dict[str, tuple[str, ...]] = {}

    def on_mount(self) -> None:
        for h in HEADERS:
            self.add_column(h, key=h)

    def _styled(self, key: str, cells: tuple[str, ...]) -> list[Text]:
        out = [Text(c) for c in cells]
        out[0] = Text(("● " if key in self.marked else "  ") + cells[0], style="bold" if key in self.marked else "")
        out[2].stylize(_STATE_STYLE.get(cells[2], ""))
        if cells[-1].startswith("error"):
            out[-1].stylize("red")
        return out

    def show(self, rows: list[tuple[str, tuple[str, ...]]]) -> int:
        """Show ``(key, cells)`` rows in this order; returns how many cells were written."""
        order = tuple(k for k, _ in rows)
        if order != self._order:
            selected = self.selected_key()
            self.clear()
            for key, cells in rows:
                self.add_row(*self._styled(key, cells), key=key)
            self._order, self._cells = order, dict(rows)
            if selected in order:
                self.move_cursor(row=order.index(selected))
            return len(rows) * len(HEADERS)
        written = 0
        for key, cells in rows:
            old = self._cells.get(key)
            if old == cells:
                continue
            styled = self._styled(key, cells)
            for i, h in enumerate(HEADERS):
                if old is None or old[i] != cells[i] or i == 0:
                    self.update_cell(key, h, styled[i], update_width=True)
                    written += 1
            self._cells[key] = cells
        return written

    def selected_key(self) -> str | None:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        return self._order[self.cursor_row]

    def toggle_mark(self) -> None:
        key = self.selected_key()
        if key is None:
            return
        self.marked.symmetric_difference_update({key})
        cells = self._cells[key]
        self.update_cell(key, HEADERS[0], self._styled(key, cells)[0])
