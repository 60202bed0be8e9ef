"""``?`` help: the keys as they are bound now (so a rebinding from config shows here)."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    """Lists every binding of the screen below with its id, key and whether it applies now."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close", id="help-close"),
    ]

    def __init__(self, rows: list[tuple[str, str, str, str]]) -> None:
        """``rows``: (key display, description, binding id, availability note)."""
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        table = Table(box=None, expand=True, show_edge=False, pad_edge=False)
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("action", ratio=1)
        table.add_column("id (ui.keymap)", style="dim", no_wrap=True)
        for key, desc, binding_id, note in self.rows:
            action = Text(desc)
            if note != "ok":
                action.append(f"  (not now: {note})", style="dim italic")
            table.add_row(key, action, binding_id)
        with VerticalScroll(id="help-body"):
            yield Static(Text("sdxl-tui keys", style="bold"), id="help-title")
            yield Static(table, id="help-table")
            yield Static(
                Text(
                    "Rebind in the config file: [ui] keymap = { kill-run = \"ctrl+k\" }.\n"
                    "ctrl+p opens the command palette. Quitting never touches the training.\n"
                    "escape closes this help.",
                    style="dim",
                ),
                id="help-foot",
            )

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
