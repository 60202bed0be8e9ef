"""``g``: the comparison-grid dialog: which checkpoints go into the grid.

The selection is text because that is what the CLI takes too (``sdxl-tui eval --compare
6-10``): a range of epochs, a comma list (``6,8,10``) or file names. The dialog only collects
it; resolving and queueing happen in a worker (``tui/actions.py``), never here.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static


class CompareScreen(ModalScreen[tuple[str, str] | None]):
    """Asks for the selection; dismisses with ``(selection, when)`` or ``None``."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="compare-cancel")]

    def __init__(self, default: str, choices: str, *, training: bool = False) -> None:
        super().__init__(id="compare-dialog")
        self.default = default
        self.choices = choices
        self.training = training

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(
                "Comparison grid: same prompts and seeds, one row per checkpoint", id="dialog-title", markup=False
            )
            yield Static(
                "Checkpoints: an epoch range (6-10), a list (6,8,10) or file names.\n"
                + self.choices
                + (
                    "\n\nTraining is using the GPU: evaluating now competes for VRAM (risk of OOM);\n"
                    "queueing starts the evaluations when the training ends."
                    if self.training
                    else ""
                )
                + "\n\nExisting evaluation folders are reused; the grid is saved as OUTPUT_DIR/compare_<label>.png.",
                id="compare-help",
                markup=False,
            )
            yield Input(self.default, placeholder="6-10", id="compare-selection")
            with Horizontal(id="dialog-buttons"):
                if self.training:
                    yield Button("Queue until training ends", id="after-training", variant="primary")
                    yield Button("Compare now", id="now", variant="warning")
                else:
                    yield Button("Compare", id="now", variant="primary")
                yield Button("Cancel", id="cancel", variant="default")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def _submit(self, when: str) -> None:
        selection = self.query_one(Input).value.strip()
        if not selection:
            self.notify("type a selection, e.g. 6-10", severity="warning", timeout=4)
            return
        self.dismiss((selection, when))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit("after-training" if self.training else "now")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "cancel":
            self.dismiss(None)
        else:
            self._submit(str(event.button.id))

    def action_cancel(self) -> None:
        self.dismiss(None)
